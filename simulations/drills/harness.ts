/**
 * What the drills that run the service as a child share at run time: the
 * feed (a rate-driven publisher that buffers and retries while NATS is down),
 * the progress meter, the RSS sampler, the readiness watch, the child itself
 * and its log, bounded waits, and the guarded runner every such drill ends
 * in (usage, interrupts, the aborted result, the teardown).
 */
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { JetStreamClient } from '@nats-io/jetstream';
import { PRO_RATA, type AllocationPolicy } from '../../actors/block-order/average.ts';
import { entryIdOf, type Entry } from '../../actors/block-order/decider.ts';
import { ConfigError, streamNames, type Config } from '../../system/config.ts';
import { encodeEntry, fillSubject } from '../../system/fill-wire.ts';
import { tookLonger, withTimeout as boundedBy } from '../../persistence/timeouts.ts';
import type { StreamNames } from '../../system/jetstream.ts';
import { withAmendments } from '../amend-scenario.ts';
import { generateScenario, type Scenario, type ScenarioOptions } from '../scenario.ts';
import {
  ChildService,
  describeExit,
  freePort,
  killAllChildren,
  type ChildExit,
} from './child-service.ts';
import {
  round1,
  UsageError,
  usageResult,
  type DrillIO,
  type DrillResult,
  type NumberRule,
} from './common.ts';

export const HOST = '127.0.0.1';
export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const SERVICE_ENTRY = fileURLToPath(new URL('../../system/main.ts', import.meta.url));
const MIB = 1024 * 1024;

// ------------------------------------------------------------------ the feed

interface PublishAck {
  /** The server had this Nats-Msg-Id already (a re-publish it dropped). */
  duplicate: boolean;
}
/** Publishes one entry: a fill, or a bust, correction or cancel (they share the order's subject). */
type PublishFill<E extends Entry = Entry> = (fill: E) => Promise<PublishAck>;

/** One JetStream publish per entry (Nats-Msg-Id = its fill or amendment id), each bounded by `timeoutMs`. */
function jetStreamPublisher(
  js: JetStreamClient,
  names: StreamNames,
  partitions: number,
  timeoutMs: number,
): PublishFill {
  return async (fill) => {
    const ack = await js.publish(
      fillSubject(names.subjectRoot, fill.blockOrderId, partitions),
      encodeEntry(fill),
      { msgID: entryIdOf(fill), expect: { streamName: names.executions }, timeout: timeoutMs },
    );
    return { duplicate: ack.duplicate };
  };
}

/** `E`: what the feed publishes; a test's fake publisher may take fills only. */
interface FeedOptions<E extends Entry = Entry> {
  publish: PublishFill<E>;
  /** What is published, in order: fills, and the amendments among them when the scenario has some. */
  fills: readonly E[];
  ratePerSec: number;
  /** Publishes awaiting their ack at once. */
  inFlightMax: number;
  /** Fills due and not yet acknowledged; beyond it the schedule waits (lags) instead. */
  bufferMax: number;
  /** Every publish failing for this long ends the feed with the last error. */
  failingForMaxMs: number;
  /** False while the connection is down: nothing is sent then (outage.ts: connectionGate). */
  canSend?: () => boolean;
  signal: AbortSignal;
}

/** A drill's bounds of its feed. */
type FeedLimits = Pick<FeedOptions, 'inFlightMax' | 'bufferMax' | 'failingForMaxMs'> & {
  publishTimeoutMs: number;
};

/** A feed of `fills` into the run's EXECUTIONS stream (see FillFeed). */
export function jetStreamFeed(
  js: JetStreamClient,
  config: Pick<Config, 'namespace' | 'partitions'>,
  o: Omit<FeedOptions, 'publish'> & FeedLimits,
): FillFeed {
  const { publishTimeoutMs, ...options } = o;
  const names = streamNames(config);
  const publish = jetStreamPublisher(js, names, config.partitions, publishTimeoutMs);
  return new FillFeed({ ...options, publish });
}

const RETRY_BACKOFF_MIN_MS = 50;
const RETRY_BACKOFF_MAX_MS = 1_000;
/** The loop re-checks the schedule at least this often. */
const FEED_TICK_MAX_MS = 20;

/**
 * Fills published at a steady rate, in order, from this process. A failed
 * publish (NATS down, JetStream not ready yet) goes back, in order, to the
 * front of what waits, and is tried again after a backoff with the same
 * Nats-Msg-Id: every fill is acknowledged exactly once here, and the server's
 * duplicate window drops a re-publish of one that had landed. Fills that fall
 * due meanwhile wait in a bounded buffer; beyond it the schedule lags.
 * Fills [0, enqueued) are exactly the ones offered, so what was published is
 * always a prefix of the scenario once the feed is done.
 */
export class FillFeed<E extends Entry = Entry> {
  readonly startedAtMs: number;
  readonly done: Promise<void>;
  failedAttempts = 0;
  /** Acks that said the server had the message already (re-publishes it dropped). */
  serverDuplicates = 0;
  bufferedMax = 0;
  /** The most fills that were due but not let into the full buffer. */
  lagMaxFills = 0;
  readonly #o: FeedOptions<E>;
  readonly #ackedAtMs: number[] = [];
  readonly #retry: number[] = [];
  #rate: { atMs: number; index: number; perSec: number };
  #enqueued = 0;
  #sent = 0;
  #inFlight = 0;
  #pausedUntilMs = 0;
  #consecutiveFailures = 0;
  #failingSinceMs: number | undefined;
  #lastError: unknown;
  #stopRequested = false;
  #endedAtMs: number | undefined;
  #wake: (() => void) | undefined;

  constructor(options: FeedOptions<E>) {
    this.#o = options;
    this.startedAtMs = performance.now();
    this.#rate = { atMs: this.startedAtMs, index: 0, perSec: options.ratePerSec };
    this.done = this.#run();
    this.done.catch(() => undefined);
  }

  get published(): number {
    return this.#ackedAtMs.length;
  }
  /** Fills offered so far: due by the schedule and let into the buffer. */
  get enqueued(): number {
    return this.#enqueued;
  }
  get buffered(): number {
    return this.#enqueued - this.published;
  }
  get ratePerSec(): number {
    return this.#rate.perSec;
  }
  get endedAtMs(): number | undefined {
    return this.#endedAtMs;
  }

  /** Fills acknowledged at or before `atMs` (performance.now() time). */
  publishedAt(atMs: number): number {
    return countAtOrBefore(this.#ackedAtMs, atMs);
  }

  /** From now on, this rate (the schedule restarts here: a lag is not made up). */
  setRate(perSec: number): void {
    this.#rate = { atMs: performance.now(), index: this.#enqueued, perSec };
    this.#wake?.();
  }

  /** No more fills fall due; `done` resolves once every fill offered is acknowledged. */
  stop(): void {
    this.#stopRequested = true;
    this.#wake?.();
  }

  async #run(): Promise<void> {
    for (;;) {
      this.#o.signal.throwIfAborted();
      const nowMs = performance.now();
      if (!this.#stopRequested) this.#schedule(nowMs);
      if (this.#finished()) break;
      if (
        this.#failingSinceMs !== undefined &&
        nowMs - this.#failingSinceMs > this.#o.failingForMaxMs
      )
        throw new Error(
          `every publish failed for ${this.#o.failingForMaxMs} ms; the last error: ${String(this.#lastError)}`,
        );
      this.#sendWhatFits(nowMs);
      await this.#waitForWork(nowMs);
    }
    this.#endedAtMs = performance.now();
  }

  #schedule(nowMs: number): void {
    const r = this.#rate;
    const total = this.#o.fills.length;
    const due = Math.min(total, r.index + Math.floor(((nowMs - r.atMs) * r.perSec) / 1000) + 1);
    const room = this.published + this.#o.bufferMax;
    this.#enqueued = Math.max(this.#enqueued, Math.min(due, room));
    this.lagMaxFills = Math.max(this.lagMaxFills, due - this.#enqueued);
    this.bufferedMax = Math.max(this.bufferedMax, this.buffered);
  }

  #finished(): boolean {
    const noMore = this.#stopRequested || this.#enqueued === this.#o.fills.length;
    return noMore && this.published === this.#enqueued;
  }

  #sendWhatFits(nowMs: number): void {
    if (this.#o.canSend && !this.#o.canSend()) return;
    while (this.#inFlight < this.#o.inFlightMax && nowMs >= this.#pausedUntilMs) {
      let index: number;
      if (this.#retry.length > 0) index = this.#retry.shift() as number;
      else if (this.#sent < this.#enqueued) index = this.#sent++;
      else return;
      this.#attempt(index);
    }
  }

  #attempt(index: number): void {
    this.#inFlight++;
    this.#o
      .publish(this.#o.fills[index] as E)
      .then(
        (ack) => {
          this.#ackedAtMs.push(performance.now());
          if (ack.duplicate) this.serverDuplicates++;
          this.#consecutiveFailures = 0;
          this.#failingSinceMs = undefined;
        },
        (error: unknown) => {
          this.failedAttempts++;
          this.#lastError = error;
          insertSorted(this.#retry, index);
          const nowMs = performance.now();
          this.#failingSinceMs ??= nowMs;
          const backoffMs = Math.min(
            RETRY_BACKOFF_MAX_MS,
            RETRY_BACKOFF_MIN_MS * 2 ** Math.min(this.#consecutiveFailures++, 10),
          );
          this.#pausedUntilMs = nowMs + backoffMs;
        },
      )
      .finally(() => {
        this.#inFlight--;
        this.#wake?.();
      });
  }

  /** Until the next fill falls due, a publish settles, or a tick; never a busy loop. */
  async #waitForWork(nowMs: number): Promise<void> {
    // Nothing goes out while the connection is down: only the tick can change that.
    const blocked = this.#o.canSend !== undefined && !this.#o.canSend();
    let waitMs = FEED_TICK_MAX_MS;
    if (this.#pausedUntilMs > nowMs) waitMs = Math.min(waitMs, this.#pausedUntilMs - nowMs);
    else if (!blocked && !this.#stopRequested && this.#enqueued < this.#o.fills.length) {
      const r = this.#rate;
      const nextDueMs = r.atMs + ((this.#enqueued - r.index) * 1000) / r.perSec;
      waitMs = Math.min(waitMs, Math.max(0, nextDueMs - nowMs));
    }
    if (waitMs <= 0 && this.#inFlight < this.#o.inFlightMax) return;
    let timer: NodeJS.Timeout | undefined;
    await new Promise<void>((resolve) => {
      this.#wake = resolve;
      timer = setTimeout(resolve, Math.max(1, waitMs));
    });
    clearTimeout(timer);
    this.#wake = undefined;
  }
}

/** How many of the ascending `sorted` are ≤ `x`. */
function countAtOrBefore(sorted: readonly number[], x: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((sorted[mid] ?? Infinity) <= x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function insertSorted(list: number[], x: number): void {
  list.splice(countAtOrBefore(list, x), 0, x);
}

// ----------------------------------------------------------------- the meter

/** One tick of the meter; `allocated` is null when the probe failed (the database is down). */
export interface MeterSample {
  /** performance.now() before the probe: the count is at least this fresh. */
  atMs: number;
  allocated: number | null;
  /** The feed's offered and acknowledged counts at atMs. */
  enqueued: number;
  published: number;
}

interface MeterOptions {
  probe: () => Promise<number>;
  feed: () => { enqueued: number; published: number };
  intervalMs: number;
  probeTimeoutMs: number;
  /** Ticks kept; the oldest are dropped beyond it. */
  samplesMax: number;
}

/** Counts allocations every interval; a failing probe is a tick without a count, not an error. */
export class ProgressMeter {
  readonly samples: MeterSample[] = [];
  probeFailures = 0;
  lastProbeError: string | undefined;
  readonly done: Promise<void>;
  readonly #o: MeterOptions;
  readonly #stop = new AbortController();
  #latest: MeterSample | undefined;
  readonly #waiters: Array<(s: MeterSample) => void> = [];

  constructor(options: MeterOptions) {
    this.#o = options;
    this.done = this.#run();
  }

  /** The latest tick that has a count. */
  get latest(): MeterSample | undefined {
    return this.#latest;
  }

  /** The next tick that has a count (waits through failing probes). */
  next(): Promise<MeterSample> {
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  stop(): void {
    this.#stop.abort();
  }

  async #run(): Promise<void> {
    const signal = this.#stop.signal;
    while (!signal.aborted) {
      const atMs = performance.now();
      const feed = this.#o.feed();
      const probe = withTimeout(this.#o.probe(), this.#o.probeTimeoutMs, 'the count');
      const allocated = await probe.catch((error: unknown) => {
        this.probeFailures++;
        this.lastProbeError = error instanceof Error ? error.message : String(error);
        return null;
      });
      const sample: MeterSample = { atMs, allocated, ...feed };
      this.samples.push(sample);
      if (this.samples.length > this.#o.samplesMax) this.samples.shift();
      if (allocated !== null) {
        this.#latest = sample;
        for (const w of this.#waiters.splice(0)) w(sample);
      }
      await sleep(this.#o.intervalMs, undefined, { signal }).catch(() => undefined);
    }
  }
}

/** `work`, or an error naming `what` after `ms`. */
export const withTimeout = <T>(work: Promise<T>, ms: number, what: string): Promise<T> =>
  boundedBy(work, ms, tookLonger(what, ms));

// ------------------------------------------------------------------ the RSS

/** VmRSS and VmHWM (the peak RSS of the process's life) of a /proc/<pid>/status text, in KiB. */
export function parseProcStatus(text: string): { rssKiB?: number; hwmKiB?: number } {
  const field = (name: string) => {
    const m = new RegExp(`^${name}:\\s+(\\d+)\\s+kB$`, 'm').exec(text);
    return m ? Number(m[1]) : undefined;
  };
  const rssKiB = field('VmRSS');
  const hwmKiB = field('VmHWM');
  return {
    ...(rssKiB === undefined ? {} : { rssKiB }),
    ...(hwmKiB === undefined ? {} : { hwmKiB }),
  };
}

/** Samples a process's VmRSS every interval; keeps the peak and a bounded series. */
export class RssSampler {
  peakKiB = 0;
  hwmKiB = 0;
  samples = 0;
  readFailures = 0;
  /** [performance.now(), KiB]; at most seriesMax, then no more are kept (the peak still is). */
  readonly series: Array<[number, number]> = [];
  readonly done: Promise<void>;
  readonly #pid: number;
  readonly #stop = new AbortController();
  readonly #seriesMax: number;

  constructor(pid: number, intervalMs: number, seriesMax = 50_000) {
    this.#pid = pid;
    this.#seriesMax = seriesMax;
    this.done = this.#run(intervalMs);
  }

  get peakMiB(): number {
    return round1(Math.max(this.peakKiB, this.hwmKiB) / 1024);
  }

  /** The highest sample within [fromMs, toMs]. */
  peakBetweenMiB(fromMs: number, toMs: number): number {
    let peak = 0;
    for (const [atMs, kib] of this.series)
      if (atMs >= fromMs && atMs <= toMs) peak = Math.max(peak, kib);
    return round1(peak / 1024);
  }

  /** One more read (VmHWM covers the whole life, between samples too), then stops. */
  async stop(): Promise<void> {
    await this.#read();
    this.#stop.abort();
    await this.done;
  }

  async #run(intervalMs: number): Promise<void> {
    const signal = this.#stop.signal;
    while (!signal.aborted) {
      await this.#read();
      await sleep(intervalMs, undefined, { signal }).catch(() => undefined);
    }
  }

  async #read(): Promise<void> {
    const text = await readFile(`/proc/${this.#pid}/status`, 'utf8').catch(() => undefined);
    const status = text === undefined ? {} : parseProcStatus(text);
    if (status.rssKiB === undefined) {
      this.readFailures++;
      return;
    }
    this.samples++;
    this.peakKiB = Math.max(this.peakKiB, status.rssKiB);
    this.hwmKiB = Math.max(this.hwmKiB, status.hwmKiB ?? 0);
    if (this.series.length < this.#seriesMax) this.series.push([performance.now(), status.rssKiB]);
  }
}

// ------------------------------------------------------------ the readiness

export interface ReadinessPoll {
  atMs: number;
  /** 200, 503, or 0 for no answer within the probe's bound. */
  status: number;
  /** What /readyz said failed, on a poll whose answer differs from the previous one. */
  detail?: string;
}

/** Polls /readyz one probe at a time; keeps every answer (bounded). */
export class ReadinessWatch {
  readonly polls: ReadinessPoll[] = [];
  readonly done: Promise<void>;
  readonly #stop = new AbortController();

  constructor(args: { url: string; pollMs: number; probeTimeoutMs: number; pollsMax: number }) {
    this.done = this.#run(args);
  }

  async stop(): Promise<void> {
    this.#stop.abort();
    await this.done;
  }

  /** The first poll at or after `fromMs` with this status. */
  first(status: number, fromMs: number): ReadinessPoll | undefined {
    return this.polls.find((p) => p.atMs >= fromMs && p.status === status);
  }

  async #run(args: { url: string; pollMs: number; probeTimeoutMs: number; pollsMax: number }) {
    const signal = this.#stop.signal;
    let lastKey = '';
    while (!signal.aborted) {
      const atMs = performance.now();
      const { status, body } = await fetch(args.url, {
        signal: AbortSignal.timeout(args.probeTimeoutMs),
      })
        .then(async (res) => ({ status: res.status, body: await res.text() }))
        .catch(() => ({ status: 0, body: '' }));
      const detail = status === 503 ? failingChecks(body) : undefined;
      const key = `${status} ${detail ?? ''}`;
      if (this.polls.length < args.pollsMax)
        this.polls.push(key === lastKey || !detail ? { atMs, status } : { atMs, status, detail });
      lastKey = key;
      const waitMs = Math.max(0, args.pollMs - (performance.now() - atMs));
      await sleep(waitMs, undefined, { signal }).catch(() => undefined);
    }
  }
}

/** The failing checks of a /readyz 503 body, in one short line. */
function failingChecks(body: string): string {
  try {
    const r = JSON.parse(body) as {
      checks?: Record<string, { ok: boolean; detail?: string }>;
      stoppedActors?: string[];
    };
    const failing = Object.entries(r.checks ?? {})
      .filter(([, c]) => !c.ok)
      .map(([name, c]) => `${name}: ${c.detail ?? 'not ok'}`);
    if ((r.stoppedActors ?? []).length > 0)
      failing.push(`stopped actors: ${r.stoppedActors?.length}`);
    // Not the readiness shape (an error answer): its text says why.
    return (failing.length > 0 ? failing.join('; ') : body || '(empty body)').slice(0, 300);
  } catch {
    return (body || '(empty body)').slice(0, 300);
  }
}

// ------------------------------------------------------------ the child's log

export interface LogSummary {
  /** Lines kept (the ring holds the newest output up to its bound). */
  lines: number;
  /** True when the ring was full: there was more output than this. */
  truncated: boolean;
  byLevel: Record<string, number>;
  /** The most frequent (level, msg), most first. */
  top: Array<{ level: string; msg: string; count: number }>;
  /** Lines whose time falls in each named window (epoch ms, inclusive). */
  inWindows: Record<string, number>;
}

/** The service's JSON log lines, counted (evidence of log spam, or of silence). */
export function summarizeLog(
  text: string,
  windows: ReadonlyArray<{ name: string; fromEpochMs: number; toEpochMs: number }>,
  truncated: boolean,
): LogSummary {
  const byLevel: Record<string, number> = {};
  const counts = new Map<string, { level: string; msg: string; count: number }>();
  const inWindows: Record<string, number> = Object.fromEntries(windows.map((w) => [w.name, 0]));
  let lines = 0;
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    lines++;
    let entry: { level?: unknown; msg?: unknown; time?: unknown } = {};
    try {
      entry = JSON.parse(line) as typeof entry;
    } catch {
      entry = { level: 'raw', msg: line.slice(0, 120) };
    }
    const level = typeof entry.level === 'string' ? entry.level : String(entry.level ?? 'raw');
    const msg = typeof entry.msg === 'string' ? entry.msg : String(entry.msg ?? '');
    byLevel[level] = (byLevel[level] ?? 0) + 1;
    const key = `${level}\u0000${msg}`;
    const c = counts.get(key) ?? { level, msg, count: 0 };
    c.count++;
    counts.set(key, c);
    const time = typeof entry.time === 'number' ? entry.time : undefined;
    for (const w of windows)
      if (time !== undefined && time >= w.fromEpochMs && time <= w.toEpochMs)
        inWindows[w.name] = (inWindows[w.name] ?? 0) + 1;
  }
  const top = [...counts.values()].sort((a, b) => b.count - a.count).slice(0, 8);
  return { lines, truncated, byLevel, top, inWindows };
}

// ------------------------------------------------------------ the child

/** Output of the child kept for the log summary (a ring: the newest wins). */
const CHILD_OUTPUT_CHARS_MAX = 16 * MIB;

/** The child's log as the drill's JSON reports it (counts, not the text). */
export function childLog(
  child: ChildService,
  windows: Parameters<typeof summarizeLog>[1] = [],
): LogSummary {
  const text = child.output();
  return summarizeLog(text, windows, text.length >= CHILD_OUTPUT_CHARS_MAX);
}

/**
 * The service as a child against `config`, on a free port, logging warnings
 * and worse, and ready. `spawned` hears of it at once, so that a teardown
 * can end it if it never gets ready.
 */
export async function spawnService(
  config: Config,
  o: { readyTimeoutMs: number; signal: AbortSignal; spawned: (child: ChildService) => void },
): Promise<{ child: ChildService; port: number; readyUrl: string }> {
  const port = await freePort(HOST);
  const child = await ChildService.spawn({
    entry: SERVICE_ENTRY,
    cwd: REPO_ROOT,
    outputCharsMax: CHILD_OUTPUT_CHARS_MAX,
    env: {
      ...process.env,
      DATABASE_URL: config.databaseUrl,
      NATS_URL: config.natsServers.join(','),
      BLOCKFILL_NAMESPACE: config.namespace,
      PORT: String(port),
      HOST,
      // Warnings and errors are the evidence of how it lived through the drill.
      LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn',
    },
  });
  o.spawned(child);
  const readyUrl = `http://${HOST}:${port}/readyz`;
  await child.waitReady({ url: readyUrl, timeoutMs: o.readyTimeoutMs, signal: o.signal });
  return { child, port, readyUrl };
}

/** How the service's last child ended. */
export interface ServiceEnd {
  exit: ChildExit;
  /** It exited by itself within the bound after SIGTERM. */
  graceful: boolean;
  ms: number;
  /** It had exited before the SIGTERM, unasked: a crash. */
  exitedByItself: boolean;
}

/** SIGTERM, and a bounded wait for the exit (then SIGKILL). */
export async function stopService(child: ChildService, timeoutMs: number): Promise<ServiceEnd> {
  const exitedByItself = child.exitedUnasked;
  const startedMs = performance.now();
  const { exit, graceful } = await child.stop(timeoutMs);
  return { exit, graceful, ms: Math.round(performance.now() - startedMs), exitedByItself };
}

/** The service must live through the drill and exit 0 on SIGTERM. */
export function serviceEndFailures(end: ServiceEnd, timeoutMs: number): string[] {
  const failures: string[] = [];
  if (end.exitedByItself) failures.push('the service exited by itself during the drill');
  if (!end.graceful || end.exit.code !== 0)
    failures.push(
      `the service did not exit 0 within ${timeoutMs} ms of SIGTERM (${describeExit(end.exit)})`,
    );
  return failures;
}

/** `work`, unless the child exits by itself first (then an error with its last output). */
export async function whileAlive<T>(
  child: ChildService,
  work: Promise<T>,
  what: string,
): Promise<T> {
  const exited = Symbol('exited');
  const outcome = await Promise.race([work, child.exited.then(() => exited)]);
  if (outcome === exited || child.exitedUnasked) {
    const exit = child.exit ?? { code: null, signal: null };
    throw new Error(
      `the service (pid ${child.pid}) exited by itself (${describeExit(exit)}) during ${what}; its last output:\n${child.output(8_000)}`,
    );
  }
  return outcome as T;
}

/**
 * `work`, or the abort's reason as soon as `signal` aborts (a check that runs
 * for minutes must not hold up an interrupted drill's cleanup; the cleanup
 * closes what `work` uses, and it ends on its own).
 */
export function untilAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  work.catch(() => undefined);
  if (signal.aborted) return Promise.reject(signal.reason);
  return Promise.race([
    work,
    new Promise<never>((_, reject) =>
      signal.addEventListener('abort', () => reject(signal.reason), { once: true }),
    ),
  ]);
}

/** A wait that ends early, with the abort's reason, when the drill is interrupted. */
export const pause = (signal: AbortSignal, ms: number): Promise<void> =>
  sleep(Math.max(0, ms), undefined, { signal });

/** The options of a drill's scenario (`--fills --accounts --orders --securities --seed`). */
export interface ScenarioSize {
  fills: number;
  accounts: number;
  orders: number;
  securities: number;
  seed: number;
}

/** The scenario of a drill's size options (any other scenario option in `more`). */
export function drillScenario(o: ScenarioSize, more: Partial<ScenarioOptions> = {}): Scenario {
  return generateScenario({
    seed: o.seed,
    fills: o.fills,
    accounts: o.accounts,
    blockOrders: o.orders,
    securities: o.securities,
    ...more,
  });
}

// ------------------------------------------------------ the market's amendments

/** The market's amendments in a drill's stream (`--amend-bps`, `--cancel-bps`). */
export interface AmendShares {
  /** Per 10,000 fills: busted, and as many again corrected; 0 with cancelBps 0 = fills only. */
  amendBps: number;
  /** Per 10,000 orders whose fills stop short of their target: the remainder cancelled. */
  cancelBps: number;
}

/** ~2 % busts and ~2 % corrections; half the orders that stop short cancel their remainder. */
export const AMEND_OPTION_RULES = {
  'amend-bps': { fallback: 200, min: 0, max: 5_000 },
  'cancel-bps': { fallback: 5_000, min: 0, max: 10_000 },
} as const satisfies Record<string, NumberRule>;

export const AMEND_USAGE = `  --amend-bps N   busts per 10,000 fills, and as many corrections (default ${AMEND_OPTION_RULES['amend-bps'].fallback});
                  0 = a stream of fills only (no cancels either, unless --cancel-bps)
  --cancel-bps N  per 10,000 orders that stop short of their target: the remainder
                  cancelled after their last fill (default ${AMEND_OPTION_RULES['cancel-bps'].fallback})`;

/** The shares the options ask for: `--amend-bps 0` alone turns the cancels off too. */
export function amendSharesOf(
  numbers: Record<keyof typeof AMEND_OPTION_RULES, number>,
  values: Record<string, unknown>,
): AmendShares {
  const amendBps = numbers['amend-bps'];
  const cancelGiven = values['cancel-bps'] !== undefined;
  return { amendBps, cancelBps: amendBps === 0 && !cancelGiven ? 0 : numbers['cancel-bps'] };
}

/**
 * An amendment comes at most this many published entries after its fill (or
 * right after its order's last fill): at a drill's rate, seconds later, so
 * kills land between fills and their amendments too.
 */
const AMEND_DELAY_ENTRIES_MAX = 200;

/** `scenario` with the drill's amendments woven in (none asked: the scenario as it is). */
export function withDrillAmendments(scenario: Scenario, shares: AmendShares): Scenario {
  if (shares.amendBps === 0 && shares.cancelBps === 0) return scenario;
  return withAmendments(scenario, {
    // Its own stream of randomness, from the scenario's seed: same seed, same stream.
    seed: scenario.options.seed ^ 0x0a3e_4d5e,
    bustShareBps: shares.amendBps,
    correctionShareBps: shares.amendBps,
    cancelShareBps: shares.cancelBps,
    delayEntriesMax: AMEND_DELAY_ENTRIES_MAX,
  });
}

// ------------------------------------------------------- the allocation policy

/** `--release-every-fills`: how often an average-price order releases (and at completion). */
export const POLICY_OPTION_RULES = {
  'release-every-fills': { fallback: 5, min: 1, max: 100_000 },
} as const satisfies Record<string, NumberRule>;

export const POLICY_USAGE = `  --policy P      the block orders' allocation: pro-rata (default) or avg-price
  --release-every-fills N
                  avg-price: release the accumulation every N fills (default ${POLICY_OPTION_RULES['release-every-fills'].fallback}),
                  at completion and on a cancel; busts and corrections amend releases`;

/** The policy the options ask for; a UsageError names a bad --policy. */
export function policyOfOptions(
  numbers: Record<keyof typeof POLICY_OPTION_RULES, number>,
  values: Record<string, unknown>,
): AllocationPolicy {
  const name = values.policy ?? 'pro-rata';
  if (name === 'pro-rata') return PRO_RATA;
  if (name !== 'avg-price')
    throw new UsageError(`--policy must be pro-rata or avg-price, got ${String(name)}`);
  return { kind: 'AVERAGE_PRICE', everyFills: numbers['release-every-fills'], everyMarketMs: null };
}

/** The drills' name for a policy (the simulator's). */
export const policyName = (policy: AllocationPolicy): 'pro-rata' | 'avg-price' =>
  policy.kind === 'PRO_RATA' ? 'pro-rata' : 'avg-price';

/** `scenario` with every block order allocating by `policy` (reference data). */
export function withPolicy(scenario: Scenario, policy: AllocationPolicy): Scenario {
  if (policy.kind === 'PRO_RATA') return scenario;
  const blockOrders = scenario.seed.blockOrders.map((o) => ({ ...o, policy }));
  return { ...scenario, seed: { ...scenario.seed, blockOrders } };
}

/**
 * The first part of every teardown: each child SIGKILLed and reaped, then
 * the run's work aborted, so what is left only needs closing.
 */
export async function endChildren(
  children: Iterable<ChildService | undefined>,
  abort: AbortController,
): Promise<void> {
  for (const child of children) if (child?.alive) await child.kill().catch(() => undefined);
  killAllChildren();
  abort.abort(new Error('the drill is over'));
}

/**
 * The drill's own SIGINT/SIGTERM: kill the children at once and let the run
 * clean up; a second one gives up waiting (after `onSecondSignal`, for what
 * must not outlive the process) and exits 130.
 */
function onInterrupt(abort: AbortController, io: DrillIO, onSecondSignal?: () => void) {
  let signals = 0;
  const handler = (signal: NodeJS.Signals) => {
    killAllChildren();
    if (++signals > 1) {
      onSecondSignal?.();
      process.exit(130);
    }
    io.progress(`${signal}: killed the service; cleaning up ...`);
    abort.abort(new Error(`interrupted by ${signal}`));
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return () => {
    process.off('SIGINT', handler);
    process.off('SIGTERM', handler);
  };
}

interface GuardedDrill<O extends { help: boolean }> {
  argv: string[];
  io: DrillIO;
  usage: string;
  /** The options; throws UsageError or ConfigError for a bad command line. */
  parse: (argv: string[]) => O;
  run: (options: O, signal: AbortSignal) => Promise<DrillResult>;
  /** What the run got to before it broke or was interrupted (`message` says why). */
  aborted: (message: string) => Pick<DrillResult, 'json' | 'summary'>;
  /** Releases whatever the run holds, however it ended; `abort` ends its waits. */
  teardown: (options: O, abort: AbortController) => Promise<void>;
  onSecondSignal?: () => void;
}

/**
 * A drill's command line and lifetime: the usage for --help or a bad option,
 * interrupts handled, a broken or interrupted run turned into a failed
 * result with what it got to, and the teardown always.
 */
export async function runGuarded<O extends { help: boolean }>(
  d: GuardedDrill<O>,
): Promise<DrillResult> {
  let options: O;
  try {
    options = d.parse(d.argv);
  } catch (error) {
    if (error instanceof UsageError || error instanceof ConfigError)
      return usageResult(d.usage, error);
    throw error;
  }
  if (options.help) return usageResult(d.usage);
  const abort = new AbortController();
  const removeHandlers = onInterrupt(abort, d.io, d.onSecondSignal);
  try {
    return await d.run(options, abort.signal);
  } catch (error) {
    // An interrupt's reason says more than the error it caused downstream.
    const reason = abort.signal.aborted ? abort.signal.reason : error;
    const message = reason instanceof Error ? reason.message : String(reason);
    return { ok: false, ...d.aborted(message), failures: [`drill aborted: ${message}`] };
  } finally {
    await d.teardown(options, abort).finally(removeHandlers);
  }
}
