/**
 * The service's one logger: pino, shared with Fastify (its request logs
 * carry the request id), JSON lines on stderr with ISO timestamps and the
 * level by name. Pretty-printed (pino-pretty) on a terminal, or with
 * LOG_FORMAT=pretty; LOG_FORMAT=json forces JSON lines.
 */
import pino, { type Logger as PinoLogger } from 'pino';
import { invariant } from '../actors/errors.ts';
import { errnoOf } from '../persistence/addresses.ts';

const LEVELS = {
  trace: 10,
  debug: 20,
  info: 30,
  warn: 40,
  error: 50,
  fatal: 60,
  silent: 100,
} as const;
export type LogLevel = keyof typeof LEVELS;

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  /** The pino instance underneath, for Fastify (absent in a hand-made test logger). */
  readonly pino?: PinoLogger;
}

/** How deep a field is made JSON-safe; deeper values are left to pino. */
const PLAIN_DEPTH_MAX = 8;

/**
 * Fields made JSON-safe: bigints as decimal strings, errors as name, message,
 * code and stack, at any depth of plain objects and arrays. Class instances
 * (a Fastify request) are left to pino's serializers.
 */
function plain(value: unknown, depth = 0): unknown {
  if (typeof value === 'bigint') return value.toString();
  if (depth >= PLAIN_DEPTH_MAX || value === null || typeof value !== 'object') return value;
  if (value instanceof Error) {
    const { name, message, stack } = value;
    const cause = value.cause === undefined ? {} : { cause: plain(value.cause, depth + 1) };
    return { name, message, code: (value as { code?: unknown }).code, stack, ...cause };
  }
  if (Array.isArray(value)) return value.map((v) => plain(v, depth + 1));
  const proto: unknown = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = plain(v, depth + 1);
  return out;
}

export type LogFormat = 'json' | 'pretty';

/** The format LOG_FORMAT asked for (config.ts checked it); auto: pretty on a terminal only. */
export const logFormatOf = (asked: LogFormat | 'auto'): LogFormat =>
  asked === 'auto' ? (process.stderr.isTTY ? 'pretty' : 'json') : asked;

export function createLogger(
  level: LogLevel,
  base: Record<string, unknown> = {},
  format: LogFormat = 'json',
): Logger {
  invariant(level in LEVELS, `unknown log level ${level}`);
  const options: pino.LoggerOptions = {
    level,
    base,
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: {
      level: (label) => ({ level: label }),
      log: (fields) => plain(fields) as Record<string, unknown>,
    },
  };
  const instance =
    format === 'pretty'
      ? pino({ ...options, transport: { target: 'pino-pretty', options: { destination: 2 } } })
      : // process.stderr, not a file descriptor: written synchronously, in order with the rest.
        pino(options, process.stderr);
  return {
    debug: (m, f) => instance.debug(f ?? {}, m),
    info: (m, f) => instance.info(f ?? {}, m),
    warn: (m, f) => instance.warn(f ?? {}, m),
    error: (m, f) => instance.error(f ?? {}, m),
    pino: instance,
  };
}

// ------------------------------------------------------------ repeat limiting

export interface RepeatLimiterOptions {
  /** A repeat within this long of its window's start is counted, not written. */
  windowMs: number;
  /** Distinct (key, message, code) entries tracked; the oldest is evicted beyond it. */
  keysMax?: number;
  /** Injected in tests; Date.now otherwise. */
  nowMs?: () => number;
  /** Runs `fn` after `ms`; returns its cancel. Injected in tests; an unref'd setTimeout otherwise. */
  setTimer?: (fn: () => void, ms: number) => () => void;
}

/**
 * A logger for failures that repeat (an actor crashing on every retry during
 * a database outage): the first occurrence is written, repeats within the
 * window are counted, and each window that saw repeats ends with one summary
 * line. A window without repeats forgets its entry, so a later occurrence is
 * written in full again.
 */
export interface RepeatLimiter {
  warn(key: string, msg: string, fields?: Record<string, unknown>): void;
  error(key: string, msg: string, fields?: Record<string, unknown>): void;
  /** Writes the pending summaries and forgets every entry (shutdown). */
  close(): void;
  /** Entries tracked now. */
  readonly size: number;
}

export const REPEAT_KEYS_MAX = 1_000;

interface Entry {
  level: 'warn' | 'error';
  key: string;
  msg: string;
  code: string | undefined;
  windowStartMs: number;
  repeats: number;
}

const codeOf = errnoOf;

/**
 * Infrastructure errors (transient ones, and driver errors carrying a SQLSTATE
 * or errno) have a known cause: their stack, repeated, is noise. Programming
 * errors and broken invariants keep theirs.
 */
function isInfrastructure(error: Error): boolean {
  const transient = (error as { transient?: unknown }).transient;
  if (typeof transient === 'boolean') return transient;
  return codeOf(error) !== undefined;
}

/** `fields` with infrastructure errors reduced to name, message and code. */
function withoutNoisyStacks(fields: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(fields)) {
    out[k] =
      v instanceof Error && isInfrastructure(v)
        ? { name: v.name, message: v.message, code: codeOf(v) }
        : v;
  }
  return out;
}

function firstErrorCode(fields: Record<string, unknown>): string | undefined {
  for (const v of Object.values(fields)) if (v instanceof Error) return codeOf(v);
  return undefined;
}

function formatDuration(ms: number): string {
  return ms < 1_000 ? `${ms} ms` : `${Math.round(ms / 1_000)} s`;
}

/** One line for a window's suppressed repeats (none for a window without repeats). */
function writeSummary(log: Logger, e: Entry, now: number): void {
  if (e.repeats === 0) return;
  const elapsedMs = now - e.windowStartMs;
  log[e.level](
    `${e.msg}: repeated ${e.repeats} ${e.repeats === 1 ? 'time' : 'times'} in the last ${formatDuration(elapsedMs)}`,
    {
      key: e.key,
      ...(e.code === undefined ? {} : { code: e.code }),
      repeated: e.repeats,
      windowMs: elapsedMs,
    },
  );
}

const unrefTimer = (fn: () => void, ms: number) => {
  const timer = setTimeout(fn, ms);
  timer.unref();
  return () => clearTimeout(timer);
};

/**
 * Ends the windows due by `now` (the map is in window-start order): one with
 * repeats is summarized and starts the next window at the back.
 */
function expireWindows(log: Logger, entries: Map<string, Entry>, windowMs: number, now: number) {
  for (const [id, e] of entries) {
    if (now - e.windowStartMs < windowMs) break;
    entries.delete(id);
    if (e.repeats === 0) continue;
    writeSummary(log, e, now);
    e.repeats = 0;
    e.windowStartMs = now;
    entries.set(id, e);
  }
}

export function createRepeatLimiter(log: Logger, options: RepeatLimiterOptions): RepeatLimiter {
  const { windowMs } = options;
  const keysMax = options.keysMax ?? REPEAT_KEYS_MAX;
  const nowMs = options.nowMs ?? Date.now;
  const setTimer = options.setTimer ?? unrefTimer;
  // Insertion order is window-start order: a new window re-inserts its entry.
  const entries = new Map<string, Entry>();
  let cancel: (() => void) | undefined;

  const summarize = (e: Entry, now: number) => writeSummary(log, e, now);
  const expire = (now: number) => expireWindows(log, entries, windowMs, now);
  const arm = () => {
    const first = entries.values().next().value;
    if (first === undefined || cancel) return;
    const dueMs = Math.max(0, first.windowStartMs + windowMs - nowMs());
    cancel = setTimer(() => {
      cancel = undefined;
      expire(nowMs());
      arm();
    }, dueMs);
  };
  const record = (
    level: Entry['level'],
    key: string,
    msg: string,
    fields: Record<string, unknown> = {},
  ) => {
    const now = nowMs();
    expire(now);
    const code = firstErrorCode(fields);
    const id = JSON.stringify([key, msg, code ?? null]);
    const entry = entries.get(id);
    if (entry) {
      entry.repeats++;
      return;
    }
    if (entries.size >= keysMax) {
      const [oldestId, oldest] = entries.entries().next().value as [string, Entry];
      entries.delete(oldestId);
      summarize(oldest, now);
    }
    entries.set(id, { level, key, msg, code, windowStartMs: now, repeats: 0 });
    invariant(entries.size <= keysMax, 'the repeat limiter holds at most keysMax keys');
    log[level](msg, { key, ...withoutNoisyStacks(fields) });
    arm();
  };
  return {
    warn: (key, msg, fields) => record('warn', key, msg, fields),
    error: (key, msg, fields) => record('error', key, msg, fields),
    close: () => {
      cancel?.();
      cancel = undefined;
      const now = nowMs();
      for (const e of entries.values()) summarize(e, now);
      entries.clear();
    },
    get size() {
      return entries.size;
    },
  };
}
