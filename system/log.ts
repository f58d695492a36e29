/** A small structured logger: one JSON object per line on stderr. */
import { bigintsAsStrings, invariant } from '../actors/errors.ts';
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
}

function serialize(fields: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(fields)) {
    if (v instanceof Error) {
      out[k] = {
        name: v.name,
        message: v.message,
        code: (v as { code?: unknown }).code,
        stack: v.stack,
      };
    } else out[k] = v;
  }
  return out;
}

export function createLogger(level: LogLevel, base: Record<string, unknown> = {}): Logger {
  const threshold = LEVELS[level];
  const write = (lvl: LogLevel, msg: string, fields: Record<string, unknown> = {}) => {
    if (LEVELS[lvl] < threshold) return;
    process.stderr.write(
      `${JSON.stringify({ level: lvl, time: Date.now(), msg, ...base, ...serialize(fields) }, bigintsAsStrings)}\n`,
    );
  };
  return {
    debug: (m, f) => write('debug', m, f),
    info: (m, f) => write('info', m, f),
    warn: (m, f) => write('warn', m, f),
    error: (m, f) => write('error', m, f),
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
