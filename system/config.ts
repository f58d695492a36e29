/**
 * All configuration in one place: environment variables with defaults and
 * validation. An invalid value stops start-up with a message naming the variable.
 */
import { ConnectionError, TimeoutError } from '@nats-io/transport-node';
import { BlockfillError, ErrorCode } from '../actors/errors.ts';
import { errnoOf, redactSecrets, UNREACHABLE_ERRNOS } from '../persistence/addresses.ts';

export class ConfigError extends BlockfillError {
  readonly variable: string;
  constructor(variable: string, rule: string, value: string) {
    super(
      ErrorCode.ConfigInvalid,
      `invalid configuration: ${variable}=${JSON.stringify(redactSecrets(value))}: ${rule}`,
    );
    this.name = 'ConfigError';
    this.variable = variable;
  }
}

export interface Config {
  databaseUrl: string;
  dbPoolMax: number;
  dbRetriesMax: number;
  dbRetryBackoffMs: number;
  /** Start-up bound on connecting to the database, and again on its first query. */
  dbConnectTimeoutMs: number;
  natsServers: string[];
  /** Empty for production names (EXECUTIONS); tests use a unique namespace per run. */
  namespace: string;
  partitions: number;
  /** JetStream replicas of both streams (3 on a 3-node cluster). */
  streamReplicas: number;
  /** How long the streams keep messages; 0 = until deleted. */
  streamMaxAgeMs: number;
  consumerInFlightMax: number;
  consumerMaxAckPending: number;
  consumerAckWaitMs: number;
  consumerDeliveriesMax: number;
  consumerNakDelayMs: number;
  journalBatchEventsMax: number;
  journalFlushIntervalMs: number;
  journalFlushesInFlightMax: number;
  journalPendingEventsMax: number;
  replayPageEvents: number;
  snapshotEveryEvents: number;
  recoveryConcurrencyMax: number;
  actorIdleMs: number;
  actorAskTimeoutMs: number;
  actorMailboxMax: number;
  actorBatchCommandsMax: number;
  supervisorCrashesMax: number;
  supervisorWindowMs: number;
  supervisorBackoffMinMs: number;
  supervisorBackoffMaxMs: number;
  redeliveryAttemptsMax: number;
  redeliveryBackoffMs: number;
  /** Fills a block order keeps awaiting their accounts before it refuses more. */
  outboxFillsMax: number;
  httpHost: string;
  httpPort: number;
  /** API_KEY: required (Bearer or X-Api-Key) on every mutating route; absent: they are open. */
  apiKey: string | null;
  /** API_KEY_READS: the key guards the reads under /api/v1 too (probes, /metrics, /docs stay open). */
  apiKeyReads: boolean;
  /** CORS_ORIGINS: origins browsers may call the API from (comma-separated); empty: none. */
  corsOrigins: string[];
  /** RATE_LIMIT_PER_MINUTE: requests per client address per minute; 0: no limit. */
  rateLimitPerMinute: number;
  /** STREAM_BUFFERED_BYTES_MAX: unsent bytes a stream client may fall behind before it is cut off. */
  streamBufferedBytesMax: number;
  /** BOOKING_DIR: where booking files are written (a folder per namespace below it). */
  bookingDir: string;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** LOG_FORMAT: json lines, or pretty (pino-pretty); absent: pretty on a terminal, else json. */
  logFormat: 'json' | 'pretty' | 'auto';
  /** Tests and drills only: POST /faults may inject failures (system/faults.ts). */
  faultInjection: boolean;
}

type Env = Record<string, string | undefined>;

/**
 * The error of connecting to NATS_URL at start-up, as NATS_UNREACHABLE naming
 * the variable and its servers (credentials hidden: a NATS user may be a
 * token). Other errors (a refused account, JetStream disabled) stay as they are.
 */
export function natsStartupFailure(error: unknown, servers: readonly string[]): unknown {
  const errno = errnoOf(error) ?? errnoOf((error as { cause?: unknown } | null)?.cause);
  const silent = error instanceof TimeoutError;
  if (!silent && !(error instanceof ConnectionError) && !(errno && UNREACHABLE_ERRNOS.has(errno)))
    return error;
  const where = `NATS_URL=${redactSecrets(servers.join(','))}`;
  const what = silent
    ? 'no NATS server answered in time'
    : `cannot reach NATS (${errno ?? 'no connection'})`;
  return new BlockfillError(
    ErrorCode.NatsUnreachable,
    `${what} at ${where}: check that the server runs and that host and port are right`,
    { cause: error, transient: false },
  );
}

function str(
  env: Env,
  name: string,
  fallback: string,
  rule?: { re: RegExp; text: string },
): string {
  const raw = env[name];
  const value = raw === undefined || raw === '' ? fallback : raw;
  if (rule && !rule.re.test(value)) throw new ConfigError(name, rule.text, value);
  return value;
}

/** At least 16 characters of a token alphabet: a guessable or header-breaking key is refused. */
function apiKeyOf(env: Env): string | null {
  const raw = env.API_KEY;
  if (raw === undefined || raw === '') return null;
  if (!/^[A-Za-z0-9._~+/=-]{16,256}$/.test(raw))
    throw new ConfigError(
      'API_KEY',
      'must be 16 to 256 characters of A-Z a-z 0-9 . _ ~ + / = -',
      '(hidden)',
    );
  return raw;
}

/** Comma-separated http(s) origins, each exactly scheme://host[:port]. */
function originsOf(env: Env): string[] {
  const raw = env.CORS_ORIGINS ?? '';
  const origins = raw
    .split(',')
    .map((o) => o.trim())
    .filter((o) => o !== '');
  for (const origin of origins) {
    let parsed: URL | undefined;
    try {
      parsed = new URL(origin);
    } catch {
      parsed = undefined;
    }
    if (!parsed || !['http:', 'https:'].includes(parsed.protocol) || parsed.origin !== origin)
      throw new ConfigError(
        'CORS_ORIGINS',
        'must be http(s) origins like https://ops.example.com, comma-separated',
        raw,
      );
  }
  return origins;
}

function int(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!/^\d+$/.test(raw)) throw new ConfigError(name, 'must be a whole number', raw);
  const value = Number(raw);
  if (value < min || value > max)
    throw new ConfigError(name, `must be between ${min} and ${max}`, raw);
  return value;
}

function url(env: Env, name: string, fallback: string, protocols: string[]): string {
  const value = str(env, name, fallback);
  for (const part of value.split(',')) {
    let parsed: URL;
    try {
      parsed = new URL(part.trim());
    } catch {
      throw new ConfigError(name, 'must be a URL (or comma-separated URLs)', value);
    }
    if (!protocols.includes(parsed.protocol)) {
      throw new ConfigError(name, `protocol must be one of ${protocols.join(', ')}`, value);
    }
  }
  return value;
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

export function loadConfig(env: Env = process.env): Config {
  const logLevel = str(env, 'LOG_LEVEL', 'info');
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    throw new ConfigError('LOG_LEVEL', `must be one of ${LOG_LEVELS.join(', ')}`, logLevel);
  }
  const logFormat = str(env, 'LOG_FORMAT', 'auto');
  if (!['json', 'pretty', 'auto'].includes(logFormat))
    throw new ConfigError('LOG_FORMAT', 'must be one of json, pretty, auto', logFormat);
  const journalBatchEventsMax = int(env, 'JOURNAL_BATCH_EVENTS_MAX', 2000, 1, 10_000);
  const config: Config = {
    faultInjection: onOff(env, 'FAULT_INJECTION', 'off'),
    databaseUrl: url(env, 'DATABASE_URL', 'postgres://postgres@127.0.0.1:5432/blockfill', [
      'postgres:',
      'postgresql:',
    ]),
    dbPoolMax: int(env, 'DB_POOL_MAX', 8, 2, 256),
    dbRetriesMax: int(env, 'DB_RETRIES_MAX', 8, 0, 100),
    dbRetryBackoffMs: int(env, 'DB_RETRY_BACKOFF_MS', 5, 1, 10_000),
    dbConnectTimeoutMs: int(env, 'DB_CONNECT_TIMEOUT_MS', 5_000, 100, 600_000),
    natsServers: url(env, 'NATS_URL', 'nats://127.0.0.1:4222', ['nats:', 'tls:'])
      .split(',')
      .map((s) => s.trim()),
    namespace: str(env, 'BLOCKFILL_NAMESPACE', '', {
      re: /^([A-Za-z][A-Za-z0-9_]{0,31})?$/,
      text: 'must be empty or a letter followed by up to 31 letters, digits or _',
    }),
    partitions: int(env, 'PARTITIONS', 4, 1, 256),
    streamReplicas: int(env, 'STREAM_REPLICAS', 1, 1, 5),
    streamMaxAgeMs: int(env, 'STREAM_MAX_AGE_MS', 7 * 86_400_000, 0, 3_650 * 86_400_000),
    consumerInFlightMax: int(env, 'CONSUMER_IN_FLIGHT_MAX', 2000, 1, 100_000),
    consumerMaxAckPending: int(env, 'CONSUMER_MAX_ACK_PENDING', 4000, 1, 1_000_000),
    // Short: a crashed process's fills come back soon (the kill drill measured
    // catch-up p99 2.2-2.4 s at 2 s against 6.5-7.6 s at 5 s); a live process
    // sends in-progress acks for every fill it holds or handles.
    consumerAckWaitMs: int(env, 'CONSUMER_ACK_WAIT_MS', 2_000, 1_000, 3_600_000),
    consumerDeliveriesMax: int(env, 'CONSUMER_DELIVERIES_MAX', 100, 1, 10_000),
    consumerNakDelayMs: int(env, 'CONSUMER_NAK_DELAY_MS', 200, 0, 60_000),
    journalBatchEventsMax,
    journalFlushIntervalMs: int(env, 'JOURNAL_FLUSH_INTERVAL_MS', 2, 0, 1_000),
    journalFlushesInFlightMax: int(env, 'JOURNAL_FLUSHES_IN_FLIGHT_MAX', 3, 1, 64),
    journalPendingEventsMax: int(env, 'JOURNAL_PENDING_EVENTS_MAX', 200_000, 1, 10_000_000),
    replayPageEvents: int(env, 'REPLAY_PAGE_EVENTS', 500, 1, 100_000),
    snapshotEveryEvents: int(env, 'SNAPSHOT_EVERY_EVENTS', 100, 1, 1_000_000),
    recoveryConcurrencyMax: int(env, 'RECOVERY_CONCURRENCY_MAX', 64, 1, 10_000),
    actorIdleMs: int(env, 'ACTOR_IDLE_MS', 120_000, 10, 86_400_000),
    actorAskTimeoutMs: int(env, 'ACTOR_ASK_TIMEOUT_MS', 10_000, 10, 600_000),
    actorMailboxMax: int(env, 'ACTOR_MAILBOX_MAX', 20_000, 1, 10_000_000),
    actorBatchCommandsMax: int(env, 'ACTOR_BATCH_COMMANDS_MAX', 256, 1, 10_000),
    supervisorCrashesMax: int(env, 'SUPERVISOR_CRASHES_MAX', 5, 1, 1_000),
    supervisorWindowMs: int(env, 'SUPERVISOR_WINDOW_MS', 60_000, 1, 86_400_000),
    supervisorBackoffMinMs: int(env, 'SUPERVISOR_BACKOFF_MIN_MS', 10, 0, 60_000),
    supervisorBackoffMaxMs: int(env, 'SUPERVISOR_BACKOFF_MAX_MS', 2_000, 0, 600_000),
    redeliveryAttemptsMax: int(env, 'REDELIVERY_ATTEMPTS_MAX', 10, 1, 1_000),
    redeliveryBackoffMs: int(env, 'REDELIVERY_BACKOFF_MS', 50, 1, 60_000),
    outboxFillsMax: int(env, 'OUTBOX_FILLS_MAX', 10_000, 1, 1_000_000),
    httpHost: str(env, 'HOST', '127.0.0.1'),
    httpPort: int(env, 'PORT', 3000, 0, 65_535),
    apiKey: apiKeyOf(env),
    apiKeyReads: onOff(env, 'API_KEY_READS', 'off'),
    corsOrigins: originsOf(env),
    rateLimitPerMinute: int(env, 'RATE_LIMIT_PER_MINUTE', 0, 0, 1_000_000),
    streamBufferedBytesMax: int(
      env,
      'STREAM_BUFFERED_BYTES_MAX',
      1024 * 1024,
      16 * 1024,
      256 * 1024 * 1024,
    ),
    bookingDir: env.BOOKING_DIR ?? 'bookings',
    logLevel: logLevel as Config['logLevel'],
    logFormat: logFormat as Config['logFormat'],
  };
  checkRelations(config);
  return config;
}

/** `on` or `off`, nothing else. */
function onOff(env: Env, name: string, fallback: 'on' | 'off'): boolean {
  const value = str(env, name, fallback);
  if (value !== 'on' && value !== 'off') throw new ConfigError(name, 'must be on or off', value);
  return value === 'on';
}

/** Rules between settings, each named by the setting that breaks it. */
function checkRelations(config: Config): void {
  if (config.apiKeyReads && config.apiKey === null)
    throw new ConfigError('API_KEY_READS', 'needs API_KEY: there is no key to ask for', 'on');
  if (config.supervisorBackoffMinMs > config.supervisorBackoffMaxMs) {
    throw new ConfigError(
      'SUPERVISOR_BACKOFF_MIN_MS',
      'must not exceed SUPERVISOR_BACKOFF_MAX_MS',
      String(config.supervisorBackoffMinMs),
    );
  }
  if (config.journalPendingEventsMax < config.journalBatchEventsMax) {
    throw new ConfigError(
      'JOURNAL_PENDING_EVENTS_MAX',
      'must be at least JOURNAL_BATCH_EVENTS_MAX',
      String(config.journalPendingEventsMax),
    );
  }
}

/** JetStream names derived from the namespace, so concurrent test runs never share a stream. */
export function streamNames(config: Pick<Config, 'namespace'>) {
  const ns = config.namespace;
  // Namespaced subjects live under `ns.<namespace>.`, a root production never
  // uses, so no namespace can overlap production or another namespace.
  const prefix = ns ? `ns.${ns}.` : '';
  const subjectRoot = `${prefix}executions`;
  return {
    executions: ns ? `${ns}_EXECUTIONS` : 'EXECUTIONS',
    deadLetter: ns ? `${ns}_EXECUTIONS_DLQ` : 'EXECUTIONS_DLQ',
    subjectRoot,
    dlqSubjectRoot: `${prefix}dlq.executions`,
    durablePrefix: ns ? `${ns}_ALLOCATOR` : 'ALLOCATOR',
  };
}
