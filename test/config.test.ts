import { TimeoutError } from '@nats-io/transport-node';
import t, { type Test } from 'tap';
import {
  ConfigError,
  loadConfig,
  natsStartupFailure,
  streamNames,
  type Config,
} from '../system/config.ts';
import { redactUrl } from '../persistence/addresses.ts';

type Env = Record<string, string | undefined>;

/** The ConfigError loadConfig(env) throws; a failed assertion when it does not throw one. */
function configError(t: Test, env: Env): ConfigError | undefined {
  try {
    loadConfig(env);
  } catch (error) {
    t.type(error, ConfigError);
    return error instanceof ConfigError ? error : undefined;
  }
  t.fail(`expected a ConfigError for ${JSON.stringify(env)}`);
  return undefined;
}

const DEFAULTS: Config = {
  databaseUrl: 'postgres://postgres@127.0.0.1:5432/blockfill',
  dbPoolMax: 8,
  dbRetriesMax: 8,
  dbRetryBackoffMs: 5,
  dbConnectTimeoutMs: 5_000,
  natsServers: ['nats://127.0.0.1:4222'],
  namespace: '',
  partitions: 4,
  streamReplicas: 1,
  streamMaxAgeMs: 604_800_000,
  consumerInFlightMax: 2000,
  consumerMaxAckPending: 4000,
  consumerAckWaitMs: 2_000,
  consumerDeliveriesMax: 100,
  consumerNakDelayMs: 200,
  journalBatchEventsMax: 2000,
  journalFlushIntervalMs: 2,
  journalFlushesInFlightMax: 3,
  journalPendingEventsMax: 200_000,
  replayPageEvents: 500,
  snapshotEveryEvents: 100,
  recoveryConcurrencyMax: 64,
  actorIdleMs: 120_000,
  actorAskTimeoutMs: 10_000,
  actorMailboxMax: 20_000,
  actorBatchCommandsMax: 256,
  supervisorCrashesMax: 5,
  supervisorWindowMs: 60_000,
  supervisorBackoffMinMs: 10,
  supervisorBackoffMaxMs: 2_000,
  redeliveryAttemptsMax: 10,
  redeliveryBackoffMs: 50,
  outboxFillsMax: 10_000,
  httpHost: '127.0.0.1',
  httpPort: 3000,
  logLevel: 'info',
  logFormat: 'auto',
  apiKey: null,
  corsOrigins: [],
  rateLimitPerMinute: 0,
  apiKeyReads: false,
  streamBufferedBytesMax: 1024 * 1024,
  bookingDir: 'bookings',
  faultInjection: false,
};

t.test('loadConfig({}) gives the defaults', async (t) => {
  t.strictSame(loadConfig({}), DEFAULTS);
});

t.test('empty values fall back to the defaults', async (t) => {
  t.strictSame(
    loadConfig({ PORT: '', LOG_LEVEL: '', DATABASE_URL: '', BLOCKFILL_NAMESPACE: '', HOST: '' }),
    DEFAULTS,
  );
});

t.test('valid values are parsed', async (t) => {
  const config = loadConfig({
    DATABASE_URL: 'postgresql://app:pw@db.internal:6543/blockfill_test',
    NATS_URL: 'nats://n1:4222, tls://n2:4223',
    BLOCKFILL_NAMESPACE: 'T1_run',
    PARTITIONS: '16',
    PORT: '0',
    HOST: '0.0.0.0',
    LOG_LEVEL: 'silent',
    SUPERVISOR_BACKOFF_MIN_MS: '500',
    SUPERVISOR_BACKOFF_MAX_MS: '500',
    JOURNAL_BATCH_EVENTS_MAX: '10',
    JOURNAL_PENDING_EVENTS_MAX: '10',
    CONSUMER_NAK_DELAY_MS: '007',
    DB_CONNECT_TIMEOUT_MS: '250',
  });
  t.strictSame(config, {
    ...DEFAULTS,
    databaseUrl: 'postgresql://app:pw@db.internal:6543/blockfill_test',
    natsServers: ['nats://n1:4222', 'tls://n2:4223'],
    namespace: 'T1_run',
    partitions: 16,
    httpPort: 0,
    httpHost: '0.0.0.0',
    logLevel: 'silent',
    supervisorBackoffMinMs: 500,
    supervisorBackoffMaxMs: 500,
    journalBatchEventsMax: 10,
    journalPendingEventsMax: 10,
    consumerNakDelayMs: 7,
    dbConnectTimeoutMs: 250,
  });
});

t.test('range bounds are inclusive', async (t) => {
  t.equal(loadConfig({ PORT: '65535' }).httpPort, 65_535);
  t.equal(loadConfig({ PARTITIONS: '1' }).partitions, 1);
  t.equal(loadConfig({ PARTITIONS: '256' }).partitions, 256);
  t.equal(loadConfig({ DB_POOL_MAX: '2' }).dbPoolMax, 2);
  t.equal(loadConfig({ DB_CONNECT_TIMEOUT_MS: '100' }).dbConnectTimeoutMs, 100);
  t.equal(loadConfig({ DB_CONNECT_TIMEOUT_MS: '600000' }).dbConnectTimeoutMs, 600_000);
  t.equal(loadConfig({ BLOCKFILL_NAMESPACE: `a${'b'.repeat(31)}` }).namespace.length, 32);
});

t.test('every kind of invalid value throws a ConfigError naming the variable', async (t) => {
  const cases: Array<[variable: string, value: string, rule: RegExp]> = [
    // not a whole number
    ['PORT', 'abc', /must be a whole number/],
    ['PORT', '-1', /must be a whole number/],
    ['PORT', '80.5', /must be a whole number/],
    ['PORT', ' 80', /must be a whole number/],
    ['PORT', '1e3', /must be a whole number/],
    ['PORT', '0x10', /must be a whole number/],
    ['DB_RETRIES_MAX', 'eight', /must be a whole number/],
    // out of range
    ['PORT', '65536', /must be between 0 and 65535/],
    ['PARTITIONS', '0', /must be between 1 and 256/],
    ['PARTITIONS', '257', /must be between 1 and 256/],
    ['DB_POOL_MAX', '1', /must be between 2 and 256/],
    ['CONSUMER_ACK_WAIT_MS', '999', /must be between 1000 and 3600000/],
    ['ACTOR_ASK_TIMEOUT_MS', '9'.repeat(400), /must be between 10 and 600000/],
    ['DB_CONNECT_TIMEOUT_MS', '99', /must be between 100 and 600000/],
    ['DB_CONNECT_TIMEOUT_MS', '600001', /must be between 100 and 600000/],
    ['DB_CONNECT_TIMEOUT_MS', '5s', /must be a whole number/],
    // URLs
    ['DATABASE_URL', 'mysql://db:3306/blockfill', /protocol must be one of postgres:, postgresql:/],
    ['DATABASE_URL', 'not a url', /must be a URL/],
    ['NATS_URL', 'http://127.0.0.1:4222', /protocol must be one of nats:, tls:/],
    ['NATS_URL', 'nats://n1:4222,', /must be a URL/],
    ['NATS_URL', 'nats://n1:4222,ws://n2:80', /protocol must be one of nats:, tls:/],
    // namespace
    ['BLOCKFILL_NAMESPACE', '1abc', /letter followed by up to 31/],
    ['BLOCKFILL_NAMESPACE', 'a-b', /letter followed by up to 31/],
    ['BLOCKFILL_NAMESPACE', 'a.b', /letter followed by up to 31/],
    ['BLOCKFILL_NAMESPACE', '_ab', /letter followed by up to 31/],
    ['BLOCKFILL_NAMESPACE', `a${'b'.repeat(32)}`, /letter followed by up to 31/],
    // log level
    ['LOG_LEVEL', 'verbose', /must be one of fatal, error, warn, info, debug, trace, silent/],
    ['LOG_LEVEL', 'INFO', /must be one of/],
    ['LOG_FORMAT', 'xml', /must be one of json, pretty, auto/],
    ['CORS_ORIGINS', 'ops.example.com', /must be http\(s\) origins/],
    ['CORS_ORIGINS', 'https://ops.example.com/path', /must be http\(s\) origins/],
    ['RATE_LIMIT_PER_MINUTE', '-1', /must be a whole number/],
    ['API_KEY_READS', 'on', /API_KEY_READS="on": needs API_KEY/],
    ['FAULT_INJECTION', 'yes', /must be on or off/],
  ];
  for (const [variable, value, rule] of cases) {
    const error = configError(t, { [variable]: value });
    t.equal(error?.variable, variable, `${variable}=${value}: .variable`);
    t.equal(error?.code, 'CONFIG_INVALID');
    t.equal(error?.name, 'ConfigError');
    t.match(error?.message, rule, `${variable}=${value}: rule`);
    t.ok(
      error?.message.startsWith(`invalid configuration: ${variable}=${JSON.stringify(value)}: `),
      `${variable}=${value}: message names the variable and the value`,
    );
  }
});

t.test('cross-field rules name the offending variable', async (t) => {
  const backoff = configError(t, {
    SUPERVISOR_BACKOFF_MIN_MS: '5000',
    SUPERVISOR_BACKOFF_MAX_MS: '100',
  });
  t.equal(backoff?.variable, 'SUPERVISOR_BACKOFF_MIN_MS');
  t.match(
    backoff?.message,
    /SUPERVISOR_BACKOFF_MIN_MS="5000": must not exceed SUPERVISOR_BACKOFF_MAX_MS/,
  );
  // Against the default maximum (2000) too.
  t.equal(
    configError(t, { SUPERVISOR_BACKOFF_MIN_MS: '2001' })?.variable,
    'SUPERVISOR_BACKOFF_MIN_MS',
  );

  const pending = configError(t, { JOURNAL_PENDING_EVENTS_MAX: '1999' });
  t.equal(pending?.variable, 'JOURNAL_PENDING_EVENTS_MAX');
  t.match(pending?.message, /must be at least JOURNAL_BATCH_EVENTS_MAX/);
});

t.test('the first invalid variable is reported even when others are valid', async (t) => {
  t.equal(configError(t, { PORT: '3000', PARTITIONS: 'x' })?.variable, 'PARTITIONS');
});

// ------------------------------------------------------------------ redactUrl

t.test('redactUrl hides the password and keeps the role, host, port and database', async (t) => {
  t.equal(
    redactUrl('postgres://app:s3cret@db.internal:6543/blockfill'),
    'postgres://app:***@db.internal:6543/blockfill',
  );
  t.equal(
    redactUrl('postgres://postgres@127.0.0.1:5432/blockfill'),
    'postgres://postgres@127.0.0.1:5432/blockfill',
  );
  t.equal(
    redactUrl('postgresql://app@db/blockfill?password=s3cret&sslmode=require'),
    'postgresql://app@db/blockfill?password=***&sslmode=require',
  );
  t.notMatch(redactUrl('not a url://app:s3cret@db'), /s3cret/);
});

t.test(
  'a rejected URL setting never echoes a password, in the user part or the query',
  async (t) => {
    for (const value of [
      'mysql://u:s3cret@h/db?password=hunter2',
      'postgres://u:s3cret@h:99999/db?sslpassword=hunter2&password=hunter2',
    ]) {
      const error = configError(t, { DATABASE_URL: value });
      t.notMatch(error?.message, /s3cret|hunter2/, value);
      t.match(error?.message, /DATABASE_URL=/);
    }
  },
);

t.test('natsStartupFailure names NATS_URL for a silent server, hiding credentials', async (t) => {
  const servers = ['nats://tok3n@n1:4222', 'nats://n2:4222'];
  const silent = natsStartupFailure(new TimeoutError(), servers);
  t.match(silent, { code: 'NATS_UNREACHABLE', transient: false });
  t.equal(
    (silent as Error).message,
    'no NATS server answered in time at NATS_URL=nats://***@n1:4222,nats://n2:4222: ' +
      'check that the server runs and that host and port are right',
  );
  const other = new Error('jetstream not enabled');
  t.equal(natsStartupFailure(other, servers), other, 'other failures stay what they are');
});

// ---------------------------------------------------------------- streamNames

t.test('streamNames without a namespace are the production names', async (t) => {
  t.strictSame(streamNames({ namespace: '' }), {
    executions: 'EXECUTIONS',
    deadLetter: 'EXECUTIONS_DLQ',
    subjectRoot: 'executions',
    dlqSubjectRoot: 'dlq.executions',
    durablePrefix: 'ALLOCATOR',
  });
  t.strictSame(streamNames(loadConfig({})), streamNames({ namespace: '' }));
});

t.test('streamNames with a namespace prefix every name', async (t) => {
  t.strictSame(streamNames({ namespace: 'T1a2b' }), {
    executions: 'T1a2b_EXECUTIONS',
    deadLetter: 'T1a2b_EXECUTIONS_DLQ',
    subjectRoot: 'ns.T1a2b.executions',
    dlqSubjectRoot: 'ns.T1a2b.dlq.executions',
    durablePrefix: 'T1a2b_ALLOCATOR',
  });
});

/**
 * The subject patterns the two streams of a namespace claim, as ensureStreams
 * (system/jetstream.ts) creates them: fills on `root.<partition>.<blockOrderId>`,
 * dead letters anywhere under the DLQ root.
 */
const claims = (ns: string): string[] => {
  const names = streamNames({ namespace: ns });
  return [`${names.subjectRoot}.*.*`, `${names.dlqSubjectRoot}.>`];
};

/** Whether some subject matches both NATS subject patterns. */
function patternsOverlap(a: string, b: string): boolean {
  const ta = a.split('.');
  const tb = b.split('.');
  for (let i = 0; i < Math.max(ta.length, tb.length); i++) {
    const x = ta[i];
    const y = tb[i];
    if (x === undefined || y === undefined) return false;
    if (x === '>' || y === '>') return true;
    if (x !== '*' && y !== '*' && x !== y) return false;
  }
  return true;
}

t.test('patternsOverlap (the test helper) follows NATS wildcard rules', async (t) => {
  t.equal(patternsOverlap('a.*.*', 'a.b.c'), true);
  t.equal(patternsOverlap('a.*.*', 'a.b.c.d'), false);
  t.equal(patternsOverlap('a.*.*', 'a.>'), true);
  t.equal(patternsOverlap('a.b.>', 'a.*.*'), true);
  t.equal(patternsOverlap('a.b.>', 'a.b'), false);
  t.equal(patternsOverlap('x.*.*', 'y.*.*'), false);
});

/** Every pair of streams/subjects two namespaces would share. */
function clashes(namespaces: readonly string[]): string[] {
  const out: string[] = [];
  for (const [i, a] of namespaces.entries()) {
    const na = streamNames({ namespace: a });
    for (const b of namespaces.slice(i + 1)) {
      const nb = streamNames({ namespace: b });
      for (const s of [na.executions, na.deadLetter]) {
        if (s === nb.executions || s === nb.deadLetter) out.push(`"${a}" / "${b}": stream ${s}`);
      }
      for (const pa of claims(a)) {
        for (const pb of claims(b)) {
          if (patternsOverlap(pa, pb)) out.push(`"${a}" / "${b}": subjects ${pa} and ${pb}`);
        }
      }
    }
  }
  return out;
}

t.test('the streams of typical namespaces never overlap', async (t) => {
  t.strictSame(clashes(['', 'T1', 'T2', 'T1_X', 'DEMO', 'BENCH', 'EXECUTIONS', 'dlq_x']), []);
  // Within one namespace, the fill stream and the DLQ stay apart.
  for (const ns of ['', 'T1', 'dlq']) {
    const [fills = '', dlq = ''] = claims(ns);
    t.equal(patternsOverlap(fills, dlq), false, `"${ns}": fills vs DLQ`);
  }
});

t.test('no accepted namespace shares subjects with another namespace', async (t) => {
  // Both namespaces pass validation...
  const namespaces = ['', 'dlq', 'DLQ', 'Ab', 'aB'];
  for (const ns of namespaces) t.equal(loadConfig({ BLOCKFILL_NAMESPACE: ns }).namespace, ns);
  // ...so their streams must not claim the same subjects (JetStream refuses
  // to create a stream whose subjects overlap another's).
  t.strictSame(clashes(namespaces), [], 'no two namespaces share a stream or a subject');
});

t.test('a bad API_KEY is refused without repeating it', async (t) => {
  for (const key of ['short', `${'k'.repeat(20)} space`]) {
    const error = t.throws(() => loadConfig({ API_KEY: key })) as Error | undefined;
    t.equal(error?.name, 'ConfigError');
    t.match(error?.message, /API_KEY="\(hidden\)": must be 16 to 256 characters/);
    t.notOk(error?.message.includes(key), 'the key is not in the message');
  }
});

t.test('API_KEY, CORS_ORIGINS and RATE_LIMIT_PER_MINUTE when given', async (t) => {
  const config = loadConfig({
    API_KEY: 'k3y-for-tests-0123456789',
    CORS_ORIGINS: 'https://ops.example.com, http://127.0.0.1:8080',
    RATE_LIMIT_PER_MINUTE: '600',
  });
  t.equal(config.apiKey, 'k3y-for-tests-0123456789');
  t.same(config.corsOrigins, ['https://ops.example.com', 'http://127.0.0.1:8080']);
  t.equal(config.rateLimitPerMinute, 600);
});
