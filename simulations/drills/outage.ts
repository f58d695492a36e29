/**
 * The outage drill: the service (a child process) runs against a PostgreSQL
 * and a NATS of the drill's own (simulations/drills/private-servers.ts),
 * while this process streams fills at a steady rate. Mid-stream the database
 * is stopped (`pg_ctl stop -m immediate`) for --db-down-s and started again
 * on the same port and data; later NATS is SIGKILLed and restarted on the
 * same port and store after --nats-down-s. The service must ride both out:
 * never exit, say 503 on /readyz meanwhile, come back by itself, lose and
 * double nothing.
 *
 *   npm run drill -- outage [--json] [--rate FILLS_PER_S] [--db-down-s S] [--nats-down-s S] [--quick] ...
 *
 * Per outage a timeline: down, noticed (first /readyz 503), back (server
 * restarted), ready again (/readyz 200), drained (allocations caught up with
 * the fills offered), and the backlog's drain rate. The child's RSS peak.
 *
 * This module also holds what the burst drill shares with it: the feed (a
 * rate-driven publisher that buffers and retries while NATS is down), the
 * progress meter, the RSS sampler and the final checks of the books.
 */
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { JetStreamClient } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import pg from 'pg';
import { lineEvents, type AccountEvent } from '../../actors/account/decider.ts';
import type { BlockOrderEvent, Fill } from '../../actors/block-order/decider.ts';
import { BLOCK_ORDER_KIND } from '../../actors/block-order/shell.ts';
import type { Database } from '../../persistence/db.ts';
import { migrate } from '../../persistence/migrate.ts';
import { seedReferenceData } from '../../persistence/reference.ts';
import { ConfigError, loadConfig, streamNames, type Config } from '../../system/config.ts';
import { encodeFill, fillSubject } from '../../system/fill-wire.ts';
import {
  DeadLetterHeader,
  ensureStreams,
  openJetStream,
  type NatsHandles,
  type StreamNames,
} from '../../system/jetstream.ts';
import { createLogger } from '../../system/log.ts';
import { openDatabase, startService } from '../../system/service.ts';
import { round3 } from '../arms/common.ts';
import { checkInvariants, readJournal, type InvariantReport } from '../invariants.ts';
import { generateScenario, type Scenario } from '../scenario.ts';
import { freshDatabase } from '../support.ts';
import {
  ChildService,
  describeExit,
  freePort,
  killAllChildren,
  type ChildExit,
} from './child-service.ts';
import {
  parseDrillOptions,
  round1,
  UsageError,
  usageResult,
  type DrillIO,
  type DrillResult,
} from './common.ts';
import { compareAllocations, publishedPart, RepeatCounter } from './kill.ts';
import {
  cleanupAllPrivateServersSync,
  PrivateServers,
  type PrivateNats,
  type PrivatePostgres,
} from './private-servers.ts';
import { untilConfirmed } from './sandbox.ts';

export const HOST = '127.0.0.1';
export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const SERVICE_ENTRY = fileURLToPath(new URL('../../system/main.ts', import.meta.url));
const MIB = 1024 * 1024;

// ------------------------------------------------------------------ the feed

export interface PublishAck {
  /** The server had this Nats-Msg-Id already (a re-publish it dropped). */
  duplicate: boolean;
}
export type PublishFill = (fill: Fill) => Promise<PublishAck>;

/** One JetStream publish per fill (Nats-Msg-Id = fill id), each bounded by `timeoutMs`. */
export function jetStreamPublisher(
  js: JetStreamClient,
  names: StreamNames,
  partitions: number,
  timeoutMs: number,
): PublishFill {
  return async (fill) => {
    const ack = await js.publish(
      fillSubject(names.subjectRoot, fill.blockOrderId, partitions),
      encodeFill(fill),
      { msgID: fill.fillId, expect: { streamName: names.executions }, timeout: timeoutMs },
    );
    return { duplicate: ack.duplicate };
  };
}

export interface FeedOptions {
  publish: PublishFill;
  fills: readonly Fill[];
  ratePerSec: number;
  /** Publishes awaiting their ack at once. */
  inFlightMax: number;
  /** Fills due and not yet acknowledged; beyond it the schedule waits (lags) instead. */
  bufferMax: number;
  /** Every publish failing for this long ends the feed with the last error. */
  failingForMaxMs: number;
  /** False while the connection is down: nothing is sent then (see connectionGate). */
  canSend?: () => boolean;
  signal: AbortSignal;
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
export class FillFeed {
  readonly startedAtMs: number;
  readonly done: Promise<void>;
  failedAttempts = 0;
  /** Acks that said the server had the message already (re-publishes it dropped). */
  serverDuplicates = 0;
  bufferedMax = 0;
  /** The most fills that were due but not let into the full buffer. */
  lagMaxFills = 0;
  readonly #o: FeedOptions;
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

  constructor(options: FeedOptions) {
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
      .publish(this.#o.fills[index] as Fill)
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

/**
 * Whether the connection is up, from its status events. A publish issued
 * while it is down is buffered by the client and sent on reconnect, but here
 * (nats.js 3.4, a restarted nats-server 2.9) its ack never came: it timed
 * out, and the publisher resumed only ~3 s after the server was back. So the
 * feed sends nothing while the connection is down.
 */
export function connectionGate(nc: NatsConnection): { up: () => boolean } {
  let up = !nc.isClosed();
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect') up = false;
      else if (s.type === 'reconnect') up = true;
    }
  })().catch(() => undefined);
  return { up: () => up && !nc.isClosed() };
}

/** How many of the ascending `sorted` are ≤ `x`. */
export function countAtOrBefore(sorted: readonly number[], x: number): number {
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

export interface MeterOptions {
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
      const allocated = await bounded(this.#o.probe(), this.#o.probeTimeoutMs).catch(
        (error: unknown) => {
          this.probeFailures++;
          this.lastProbeError = error instanceof Error ? error.message : String(error);
          return null;
        },
      );
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

function bounded<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Allocated fills = rows of the execution index (one per FillAllocated, same
 * commit), through a one-connection pool of our own that rides out the
 * database's outages (a narrow table: cheap to count at this size).
 */
export function executionsProbe(databaseUrl: string): {
  probe: () => Promise<number>;
  close: () => Promise<void>;
} {
  const pool = new pg.Pool({
    connectionString: databaseUrl,
    max: 1,
    connectionTimeoutMillis: 1_000,
    query_timeout: 5_000,
    idleTimeoutMillis: 5_000,
  });
  // A server that goes away errors the idle client: that is expected here.
  pool.on('error', () => undefined);
  return {
    probe: async () => {
      const { rows } = await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM executions');
      return rows[0]?.n ?? 0;
    },
    close: () => pool.end().catch(() => undefined),
  };
}

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

// ------------------------------------------------------------- the timeline

export const OutageKind = { Database: 'database', Nats: 'nats' } as const;
export type OutageKind = (typeof OutageKind)[keyof typeof OutageKind];

/** What the drill did, in performance.now() time. */
export interface OutageMarks {
  what: OutageKind;
  /** The stop (pg_ctl stop -m immediate) or the SIGKILL was issued. */
  downAtMs: number;
  /** The restart was issued (down for the planned time). */
  upAtMs: number;
  /** The server was back (accepting connections / "Server is ready"). */
  backAtMs: number;
}

/** One outage as reported: downAtMs from the drill's start, everything else from down. */
export interface OutageTimeline {
  what: OutageKind;
  downAtMs: number;
  /** First /readyz 503 at or after down. */
  noticedMs: number | null;
  backMs: number;
  /** How long the restart took (pg_ctl start -w / nats-server to "Server is ready"). */
  restartMs: number;
  /** First /readyz 200 at or after back (and after noticed). */
  readyMs: number | null;
  /** First tick after back at which the drill's publisher got an ack again. */
  publishingResumedMs: number | null;
  /** First count after back that is higher than the last one before it: allocation resumed. */
  resumedMs: number | null;
  /** First count, after back, that covers every fill offered up to `slackMs` before it. */
  drainedMs: number | null;
  /** (allocated when drained − allocated at back) / (drained − back). */
  drainFillsPerSec: number | null;
  /** Offered minus allocated when the server came back. */
  backlogAtBack: number;
  /** /readyz's reason at the first 503. */
  notReadyDetail: string | null;
  /** /readyz from down to drained: each change of answer, ms from down (at most 20). */
  readyz: Array<{ ms: number; status: number; detail?: string }>;
}

const TRANSITIONS_MAX = 20;

/** The polls in [fromMs, toMs] whose answer differs from the one before. */
export function readinessTransitions(
  polls: readonly ReadinessPoll[],
  fromMs: number,
  toMs: number,
): Array<{ ms: number; status: number; detail?: string }> {
  const out: Array<{ ms: number; status: number; detail?: string }> = [];
  let previous: number | undefined;
  for (const p of polls) {
    if (p.atMs < fromMs || p.atMs > toMs) continue;
    if (p.status !== previous || p.detail !== undefined) {
      const ms = Math.round(p.atMs - fromMs);
      out.push(
        p.detail === undefined
          ? { ms, status: p.status }
          : { ms, status: p.status, detail: p.detail },
      );
    }
    previous = p.status;
    if (out.length >= TRANSITIONS_MAX) break;
  }
  return out;
}

/** The last sample at or before `atMs` (samples ascending), with a count if `counted`. */
function sampleAt(
  samples: readonly MeterSample[],
  atMs: number,
  counted: boolean,
): MeterSample | undefined {
  let lo = 0;
  let hi = samples.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((samples[mid]?.atMs ?? Infinity) <= atMs) lo = mid + 1;
    else hi = mid;
  }
  for (let i = lo - 1; i >= 0; i--) {
    const s = samples[i];
    if (s && (!counted || s.allocated !== null)) return s;
  }
  return undefined;
}

/**
 * Drained: a count taken after `backAtMs` covers every fill the feed had
 * offered `slackMs` before it, so the backlog is worked off and allocation
 * keeps pace again (a fill's normal latency is well under the slack).
 */
export function drainedSample(
  samples: readonly MeterSample[],
  backAtMs: number,
  slackMs: number,
): MeterSample | undefined {
  const enqueuedBack = sampleAt(samples, backAtMs, false)?.enqueued ?? 0;
  return samples.find(
    (s) =>
      s.atMs >= backAtMs &&
      s.allocated !== null &&
      s.allocated >=
        Math.max(enqueuedBack, sampleAt(samples, s.atMs - slackMs, false)?.enqueued ?? 0),
  );
}

export function outageTimeline(args: {
  marks: OutageMarks;
  t0Ms: number;
  polls: readonly ReadinessPoll[];
  samples: readonly MeterSample[];
  slackMs: number;
}): OutageTimeline {
  const { marks, polls, samples } = args;
  const down = marks.downAtMs;
  const since = (atMs: number | undefined) => (atMs === undefined ? null : Math.round(atMs - down));
  const noticed = polls.find((p) => p.atMs >= down && p.status === 503);
  const readyFrom = Math.max(marks.backAtMs, noticed?.atMs ?? marks.backAtMs);
  const ready = polls.find((p) => p.atMs >= readyFrom && p.status === 200);
  const atBack = sampleAt(samples, marks.backAtMs, true);
  const allocatedAtBack = atBack?.allocated ?? 0;
  const enqueuedAtBack = sampleAt(samples, marks.backAtMs, false)?.enqueued ?? 0;
  const drained = drainedSample(samples, marks.backAtMs, args.slackMs);
  const publishedAtBack = sampleAt(samples, marks.backAtMs, false)?.published ?? 0;
  const publishing = samples.find((s) => s.atMs >= marks.backAtMs && s.published > publishedAtBack);
  const resumed = samples.find(
    (s) => s.atMs >= marks.backAtMs && s.allocated !== null && s.allocated > allocatedAtBack,
  );
  const drainMs = drained ? drained.atMs - marks.backAtMs : 0;
  const drainFillsPerSec =
    drained && drainMs > 0
      ? Math.round((((drained.allocated ?? 0) - allocatedAtBack) * 1000) / drainMs)
      : null;
  const detail = noticed
    ? polls.slice(polls.indexOf(noticed)).find((p) => p.status === 503 && p.detail !== undefined)
        ?.detail
    : undefined;
  const endMs = drained?.atMs ?? polls.at(-1)?.atMs ?? down;
  return {
    what: marks.what,
    downAtMs: Math.round(down - args.t0Ms),
    noticedMs: since(noticed?.atMs),
    backMs: Math.round(marks.backAtMs - down),
    restartMs: Math.round(marks.backAtMs - marks.upAtMs),
    readyMs: since(ready?.atMs),
    publishingResumedMs: since(publishing?.atMs),
    resumedMs: since(resumed?.atMs),
    drainedMs: since(drained?.atMs),
    drainFillsPerSec,
    backlogAtBack: Math.max(0, enqueuedAtBack - allocatedAtBack),
    notReadyDetail: detail ?? null,
    readyz: readinessTransitions(polls, down, endMs),
  };
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

// ------------------------------------------------------------- the checks

export interface Verdict {
  fillsPublished: number;
  fillsAllocated: number;
  lost: string[];
  duplicated: string[];
  unexpected: string[];
  /** Account lines applied more than once (each extra application counts), with a few examples. */
  duplicateLines: { repeats: number; examples: string[] };
  invariants: InvariantReport;
  /** Journal rows a fresh start wrote on the drained journal (must be 0: it was final). */
  rowsWrittenByChecker: number;
  streamMessages: number;
  /** Every delivery of the run's durables, and those beyond each message's first (naks, ack-wait expiries). */
  deliveries: number;
  redeliveries: number;
  deadLettered: number;
  deadLetterReasons: string[];
}

const EXAMPLES_MAX = 10;

/**
 * Every allocated fill id (once per FillAllocated) and every account line,
 * from the journal. Minutes after a long burst: an interrupt ends it.
 */
async function foldJournal(db: Database, signal: AbortSignal) {
  const allocatedFillIds: string[] = [];
  for await (const { event } of readJournal(db, `${BLOCK_ORDER_KIND}-`)) {
    const e = event as BlockOrderEvent;
    if (e.type === 'FillAllocated') allocatedFillIds.push(e.fill.fillId);
    if (allocatedFillIds.length % 10_000 === 0) signal.throwIfAborted();
  }
  const lines = new RepeatCounter();
  let rows = 0;
  for await (const { key, event } of readJournal(db, 'account-')) {
    const accountId = key.slice('account-'.length);
    for (const line of lineEvents(event as AccountEvent))
      lines.add(`${line.allocation.blockOrderId}|${line.allocation.fillSeq}|${accountId}`);
    if (++rows % 10_000 === 0) signal.throwIfAborted();
  }
  return { allocatedFillIds, lines };
}

async function countJournalRows(db: Database): Promise<number> {
  const rows = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM journal');
  return rows[0]?.n ?? 0;
}

/** checkInvariants needs live actors: a service in this process on the drained journal. */
async function checkBooks(config: Config, db: Database, scenario: Scenario) {
  const rowsBefore = await countJournalRows(db);
  const service = await startService(config, {
    log: createLogger('error', { service: 'blockfill-drill-check' }),
  });
  try {
    const report = await checkInvariants({
      db: service.db,
      app: service.app,
      seed: scenario.seed,
      fillsByOrder: scenario.fillsByOrder,
      idPrefix: scenario.options.idPrefix,
    });
    return { report, rowsWrittenByChecker: (await countJournalRows(db)) - rowsBefore };
  } finally {
    await service.stop();
  }
}

async function deadLetters(nats: NatsHandles, names: StreamNames) {
  const dlq = await nats.jsm.streams.info(names.deadLetter);
  const reasons: string[] = [];
  const first = dlq.state.first_seq;
  for (let seq = first; seq < first + Math.min(dlq.state.messages, EXAMPLES_MAX); seq++) {
    const m = await nats.jsm.streams.getMessage(names.deadLetter, { seq }).catch(() => null);
    if (m)
      reasons.push(
        `${m.header.get(DeadLetterHeader.Reason)} ${m.header.get(DeadLetterHeader.OriginalSubject)}: ${m.header.get(DeadLetterHeader.Detail)}`,
      );
  }
  return { deadLettered: dlq.state.messages, deadLetterReasons: reasons };
}

async function deliveryCounts(nats: NatsHandles, names: StreamNames, partitions: number) {
  const stream = await nats.jsm.streams.info(names.executions);
  let deliveries = 0;
  let pending = 0;
  for (let p = 0; p < partitions; p++) {
    const info = await nats.jsm.consumers.info(names.executions, `${names.durablePrefix}_P${p}`);
    deliveries += info.delivered.consumer_seq;
    pending += info.num_pending;
  }
  const firstDeliveries = stream.state.messages - pending;
  return {
    streamMessages: stream.state.messages,
    deliveries,
    redeliveries: deliveries - firstDeliveries,
  };
}

/**
 * With the service stopped: the journal folded here (lost, doubled and
 * unpublished fills, lines applied twice), every invariant of
 * simulations/invariants.ts over the published part of the scenario, and the
 * server's counts (stream, dead letters).
 */
export async function verifyRun(args: {
  config: Config;
  db: Database;
  nats: NatsHandles;
  scenario: Scenario;
  published: number;
  io: DrillIO;
  signal: AbortSignal;
}): Promise<Verdict> {
  const scenario = publishedPart(args.scenario, args.published);
  const names = streamNames(args.config);
  args.io.progress('folding the journal: lost and duplicated fills and lines ...');
  // Only counts leave this block: the fold's sets are garbage before the
  // invariant check builds its own (millions of lines after a long burst).
  const { comparison, fillsAllocated, duplicateLines } = await (async () => {
    const fold = await foldJournal(args.db, args.signal);
    return {
      comparison: compareAllocations(
        scenario.publishOrder.map((f) => f.fillId),
        fold.allocatedFillIds,
      ),
      fillsAllocated: new Set(fold.allocatedFillIds).size,
      duplicateLines: { repeats: fold.lines.repeats, examples: fold.lines.examples },
    };
  })();
  args.io.progress('checking every invariant (journal and live actors) ...');
  args.signal.throwIfAborted();
  const { report, rowsWrittenByChecker } = await checkBooks(args.config, args.db, scenario);
  args.signal.throwIfAborted();
  return {
    fillsPublished: args.published,
    fillsAllocated,
    ...comparison,
    duplicateLines,
    invariants: report,
    rowsWrittenByChecker,
    ...(await deliveryCounts(args.nats, names, args.config.partitions)),
    ...(await deadLetters(args.nats, names)),
  };
}

/** The failed checks every drill of this kind shares: nothing lost, doubled, or dead-lettered. */
export function verdictFailures(v: Verdict): string[] {
  const failures: string[] = [];
  const examples = (ids: string[]) => ids.slice(0, EXAMPLES_MAX).join(', ');
  if (v.lost.length > 0)
    failures.push(`${v.lost.length} published fills never allocated: ${examples(v.lost)}`);
  if (v.duplicated.length > 0)
    failures.push(
      `${v.duplicated.length} fills allocated more than once: ${examples(v.duplicated)}`,
    );
  if (v.unexpected.length > 0)
    failures.push(
      `${v.unexpected.length} allocated fills were never published: ${examples(v.unexpected)}`,
    );
  if (v.duplicateLines.repeats > 0)
    failures.push(
      `${v.duplicateLines.repeats} account lines applied more than once: ${v.duplicateLines.examples.join(', ')}`,
    );
  for (const violation of v.invariants.violations.slice(0, EXAMPLES_MAX))
    failures.push(`invariant: ${violation}`);
  if (v.deadLettered > 0)
    failures.push(`${v.deadLettered} good fills dead-lettered: ${v.deadLetterReasons.join('; ')}`);
  if (v.streamMessages < v.fillsPublished)
    failures.push(
      `the stream holds ${v.streamMessages} messages, ${v.fillsPublished} fills were acknowledged: it lost some`,
    );
  if (v.rowsWrittenByChecker !== 0)
    failures.push(
      `the drained journal was not final: a fresh start wrote ${v.rowsWrittenByChecker} rows`,
    );
  return failures;
}

// ------------------------------------------------------------ the child

/** Output of the child kept for the log summary (a ring: the newest wins). */
export const CHILD_OUTPUT_CHARS_MAX = 16 * MIB;

/** The service as a child against `config`, on a free port, logging warnings and worse. */
export async function spawnService(config: Config): Promise<{ child: ChildService; port: number }> {
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
  return { child, port };
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

/** The drill's own SIGINT/SIGTERM: kill the child and the servers' work at once; a second one exits. */
export function onInterrupt(abort: AbortController, io: DrillIO): () => void {
  let signals = 0;
  const handler = (signal: NodeJS.Signals) => {
    killAllChildren();
    if (++signals > 1) {
      cleanupAllPrivateServersSync();
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

// ------------------------------------------------------------ the outage drill

export const OUTAGE_USAGE = `npm run drill -- outage [--json] [--rate FILLS_PER_S] [--fills N | --seconds S]
    [--db-down-s S] [--nats-down-s S] [--accounts N] [--orders N] [--securities N]
    [--seed N] [--quick] [--keep]

Starts a PostgreSQL and a NATS of its own on free ports (temp directories,
never the shared servers), runs the service against them as a child process
and streams fills at a steady rate (default 200/s). Mid-stream it stops
PostgreSQL (pg_ctl stop -m immediate) for --db-down-s (default 30) and starts
it again on the same port and data; later it SIGKILLs NATS and restarts it on
the same port and store after --nats-down-s (default 10). Per outage: down,
noticed (first /readyz 503), back, ready again, drained, and the drain rate.
Exit 0 only if the service never exited, nothing was lost or doubled, every
invariant holds, nothing was dead-lettered and /readyz said 503 during each
outage and 200 after it.

  --fills N / --seconds S   the scenario's size (default: rate x the plan + 120 s);
                            publishing ends when the plan is done or the fills run out
  --quick                   db down 5 s, nats down 3 s, shorter steady stretches (< 60 s)
  --keep                    keep the servers' temp directory (its path is printed)`;

export interface OutageOptions {
  ratePerSec: number;
  fills: number;
  dbDownS: number;
  natsDownS: number;
  /** Steady publishing before the first outage, between them, and after the last. */
  warmUpS: number;
  gapS: number;
  tailS: number;
  accounts: number;
  orders: number;
  securities: number;
  seed: number;
  quick: boolean;
  keep: boolean;
  help: boolean;
}

/** Time allowed per outage for the recovery and drain, in the default size. */
const RECOVERY_ALLOWANCE_S = 120;

export function parseOutageOptions(argv: string[]): OutageOptions {
  const { numbers: n, values } = parseDrillOptions(
    argv,
    {
      rate: { fallback: 200, min: 1, max: 100_000 },
      fills: { fallback: 0, min: 1, max: 10_000_000 },
      seconds: { fallback: 0, min: 1, max: 86_400 },
      'db-down-s': { fallback: 30, min: 0, max: 3_600 },
      'nats-down-s': { fallback: 10, min: 0, max: 3_600 },
      accounts: { fallback: 500, min: 1, max: 1_000_000 },
      orders: { fallback: 50, min: 1, max: 100_000 },
      securities: { fallback: 20, min: 1, max: 10_000 },
      seed: { fallback: 42, min: 0, max: 2 ** 31 },
    },
    { quick: { type: 'boolean' }, keep: { type: 'boolean' } },
  );
  const given = (name: string) => argv.some((a) => a === `--${name}` || a.startsWith(`--${name}=`));
  if (given('fills') && given('seconds'))
    throw new UsageError('give --fills or --seconds, not both');
  const quick = values.quick === true;
  const dbDownS = quick && !given('db-down-s') ? 5 : n['db-down-s'];
  const natsDownS = quick && !given('nats-down-s') ? 3 : n['nats-down-s'];
  const [warmUpS, gapS, tailS] = quick ? [3, 2, 2] : [10, 5, 5];
  const planS =
    warmUpS + dbDownS + gapS + natsDownS + tailS + (quick ? 30 : 2 * RECOVERY_ALLOWANCE_S);
  const fills = n.fills || n.rate * (n.seconds || planS);
  return {
    ...{ ratePerSec: n.rate, fills, dbDownS, natsDownS, warmUpS, gapS, tailS },
    ...{ accounts: n.accounts, orders: n.orders, securities: n.securities, seed: n.seed },
    ...{ quick, keep: values.keep === true, help: values.help === true },
  };
}

/** Every wait of the drill is bounded. */
const Limits = {
  readyTimeoutMs: 60_000,
  /** From back to ready and drained. */
  recoveryTimeoutMs: RECOVERY_ALLOWANCE_S * 1_000,
  finalDrainTimeoutMs: 120_000,
  confirmTimeoutMs: 60_000,
  stopTimeoutMs: 30_000,
  readinessPollMs: 100,
  readinessProbeTimeoutMs: 1_000,
  meterIntervalMs: 200,
  rssIntervalMs: 250,
  /** Drained = allocated covers everything offered this long before (see drainedSample). */
  drainSlackMs: 1_000,
  publishTimeoutMs: 2_000,
  publishInFlightMax: 64,
  /** Fills the feed holds while NATS is down: two minutes at the rate, at least 10,000. */
  bufferSeconds: 120,
  failingForMaxMs: 120_000,
} as const;

interface OutageCtx {
  options: OutageOptions;
  config: Config;
  io: DrillIO;
  signal: AbortSignal;
  pg: PrivatePostgres;
  nats: PrivateNats;
  child: ChildService;
  feed: FillFeed;
  meter: ProgressMeter;
  readiness: ReadinessWatch;
  rss: RssSampler;
  t0Ms: number;
  marks: OutageMarks[];
  windows: Array<{ name: string; fromEpochMs: number; toEpochMs: number }>;
}

/** What a run holds, so the teardown can release it however the run ended. */
interface Held {
  servers?: PrivateServers;
  handles?: NatsHandles;
  db?: Database;
  probe?: { close: () => Promise<void> };
  ctx?: Partial<OutageCtx> & { child?: ChildService };
}

const pause = (signal: AbortSignal, ms: number) => sleep(Math.max(0, ms), undefined, { signal });

/** The service's config against the private servers: its own database and namespace. */
function privateConfig(base: Config, pgServer: PrivatePostgres, nats: PrivateNats): Config {
  return {
    ...base,
    databaseUrl: pgServer.url('blockfill_outage'),
    natsServers: [nats.url],
    namespace: 'OUTAGE',
    logLevel: 'silent',
  };
}

async function prepare(config: Config, scenario: Scenario, held: Held): Promise<NatsHandles> {
  await freshDatabase(config.databaseUrl, 'blockfill_outage');
  const db = await openDatabase(config, 2);
  try {
    await migrate(db);
    await seedReferenceData(db, scenario.seed);
  } finally {
    await db.close();
  }
  held.handles = await openJetStream(config, 'blockfill-outage-drill');
  await ensureStreams(held.handles.jsm, streamNames(config), config.partitions, {
    replicas: config.streamReplicas,
    maxAgeMs: config.streamMaxAgeMs,
  });
  return held.handles;
}

/** Waits until, after `backAtMs`, /readyz said 200 and the backlog is drained; bounded. */
async function untilRecovered(ctx: OutageCtx, marks: OutageMarks): Promise<void> {
  const deadlineMs = marks.backAtMs + Limits.recoveryTimeoutMs;
  for (;;) {
    await whileAlive(ctx.child, ctx.meter.next(), `the ${marks.what} outage`);
    const t = outageTimeline({
      marks,
      t0Ms: ctx.t0Ms,
      polls: ctx.readiness.polls,
      samples: ctx.meter.samples,
      slackMs: Limits.drainSlackMs,
    });
    if (t.readyMs !== null && t.drainedMs !== null) return;
    if (performance.now() > deadlineMs) {
      const last = ctx.readiness.polls.at(-1);
      throw new Error(
        `${marks.what}: not recovered ${Limits.recoveryTimeoutMs} ms after it came back ` +
          `(ready ${t.readyMs === null ? 'never' : `after ${t.readyMs} ms`}, ` +
          `allocated ${ctx.meter.latest?.allocated ?? 0} of ${ctx.feed.enqueued} offered; ` +
          `last /readyz ${last?.status ?? '-'}); the service's last output:\n${ctx.child.output(4_000)}`,
      );
    }
  }
}

async function runOutage(
  ctx: OutageCtx,
  what: OutageKind,
  downS: number,
  server: { down: () => Promise<void>; up: () => Promise<void> },
): Promise<void> {
  ctx.io.progress(
    `${what}: taking it down for ${downS} s (${ctx.feed.published} fills published so far) ...`,
  );
  // Down from the moment the stop is issued: the service may notice before it returns.
  const downAtMs = performance.now();
  const fromEpochMs = Date.now();
  await server.down();
  const downForMs = downS * 1000 - (performance.now() - downAtMs);
  await whileAlive(ctx.child, pause(ctx.signal, downForMs), `the ${what} outage`);
  const upAtMs = performance.now();
  await server.up();
  const marks: OutageMarks = { what, downAtMs, upAtMs, backAtMs: performance.now() };
  ctx.marks.push(marks);
  ctx.io.progress(
    `${what}: back after ${Math.round(marks.backAtMs - downAtMs)} ms; waiting for ready and drained ...`,
  );
  try {
    await untilRecovered(ctx, marks);
  } finally {
    ctx.windows.push({ name: what, fromEpochMs, toEpochMs: Date.now() });
  }
  const t = outageTimeline({
    marks,
    t0Ms: ctx.t0Ms,
    polls: ctx.readiness.polls,
    samples: ctx.meter.samples,
    slackMs: Limits.drainSlackMs,
  });
  ctx.io.progress(describeOutage(t));
}

export function describeOutage(t: OutageTimeline): string {
  const ms = (x: number | null) => (x === null ? 'never' : `+${x} ms`);
  return (
    `  ${t.what.padEnd(8)} down at ${t.downAtMs} ms; noticed ${ms(t.noticedMs)}, back +${t.backMs} ms (restart ${t.restartMs} ms), ` +
    `ready ${ms(t.readyMs)}, allocating again ${ms(t.resumedMs)}, drained ${ms(t.drainedMs)}; backlog ${t.backlogAtBack} drained at ` +
    `${t.drainFillsPerSec ?? '-'} fills/s${t.notReadyDetail ? `; /readyz said: ${t.notReadyDetail}` : ''}`
  );
}

/** The run: warm-up, database outage, gap, NATS outage, tail; then drain and stop. */
async function runPlan(ctx: OutageCtx): Promise<void> {
  const o = ctx.options;
  const steady = (s: number, what: string) =>
    whileAlive(ctx.child, pause(ctx.signal, s * 1000), what);
  await steady(o.warmUpS, 'the warm-up');
  await runOutage(ctx, OutageKind.Database, o.dbDownS, {
    down: () => ctx.pg.stop(),
    up: () => ctx.pg.start(),
  });
  await steady(o.gapS, 'the steady stretch between the outages');
  await runOutage(ctx, OutageKind.Nats, o.natsDownS, {
    down: () => ctx.nats.kill(),
    up: () => ctx.nats.start(),
  });
  await steady(o.tailS, 'the tail');
  ctx.feed.stop();
  await whileAlive(
    ctx.child,
    bounded(ctx.feed.done, Limits.finalDrainTimeoutMs),
    'the last publishes',
  );
  const deadlineMs = performance.now() + Limits.finalDrainTimeoutMs;
  for (;;) {
    const s = await whileAlive(ctx.child, ctx.meter.next(), 'the final drain');
    if ((s.allocated ?? 0) >= ctx.feed.published) return;
    if (performance.now() > deadlineMs)
      throw new Error(
        `only ${s.allocated}/${ctx.feed.published} fills allocated ${Limits.finalDrainTimeoutMs} ms after publishing ended`,
      );
  }
}

/** Servers, database, streams, the child ready; then the feed, meter, readiness and RSS watches. */
async function setUp(options: OutageOptions, io: DrillIO, signal: AbortSignal, held: Held) {
  const scenario = generateScenario({
    seed: options.seed,
    fills: options.fills,
    accounts: options.accounts,
    blockOrders: options.orders,
    securities: options.securities,
  });
  const servers = await PrivateServers.create('blockfill-outage-');
  held.servers = servers;
  const pgServer = await servers.startPostgres();
  const nats = await servers.startNats();
  const config = privateConfig(loadConfig(process.env), pgServer, nats);
  io.progress(
    `private servers in ${servers.rootDir}: PostgreSQL on port ${pgServer.port}, NATS on port ${nats.port}; ` +
      `up to ${options.fills} fills at ${options.ratePerSec}/s`,
  );
  const handles = await prepare(config, scenario, held);
  const { child, port } = await spawnService(config);
  held.ctx = { child };
  await child.waitReady({
    url: `http://${HOST}:${port}/readyz`,
    timeoutMs: Limits.readyTimeoutMs,
    signal,
  });
  io.progress(`service pid ${child.pid} ready on port ${port}; publishing ...`);
  const feed = new FillFeed({
    publish: jetStreamPublisher(
      handles.js,
      streamNames(config),
      config.partitions,
      Limits.publishTimeoutMs,
    ),
    fills: scenario.publishOrder,
    ratePerSec: options.ratePerSec,
    inFlightMax: Limits.publishInFlightMax,
    bufferMax: Math.max(10_000, options.ratePerSec * Limits.bufferSeconds),
    failingForMaxMs: Limits.failingForMaxMs,
    canSend: connectionGate(handles.nc).up,
    signal,
  });
  const probe = executionsProbe(config.databaseUrl);
  held.probe = probe;
  const meter = new ProgressMeter({
    probe: probe.probe,
    feed: () => ({ enqueued: feed.enqueued, published: feed.published }),
    intervalMs: Limits.meterIntervalMs,
    probeTimeoutMs: 2_000,
    samplesMax: 1_000_000,
  });
  const readiness = new ReadinessWatch({
    url: `http://${HOST}:${port}/readyz`,
    pollMs: Limits.readinessPollMs,
    probeTimeoutMs: Limits.readinessProbeTimeoutMs,
    pollsMax: 1_000_000,
  });
  const rss = new RssSampler(child.pid, Limits.rssIntervalMs);
  const ctx: OutageCtx = {
    ...{ options, config, io, signal, pg: pgServer, nats, child, feed, meter, readiness, rss },
    ...{ t0Ms: feed.startedAtMs, marks: [], windows: [] },
  };
  held.ctx = ctx;
  return { ctx, scenario, handles };
}

interface Ending {
  stop: { exit: ChildExit; graceful: boolean; ms: number };
  restarts: number;
}

/** The watches stop; the child's peak RSS is read; the child gets SIGTERM (it must exit 0). */
async function endRun(ctx: OutageCtx): Promise<Ending> {
  ctx.meter.stop();
  await ctx.readiness.stop();
  await ctx.rss.stop();
  const restarts = ctx.child.exitedUnasked ? 1 : 0;
  const startedMs = performance.now();
  const { exit, graceful } = await ctx.child.stop(Limits.stopTimeoutMs);
  return { stop: { exit, graceful, ms: Math.round(performance.now() - startedMs) }, restarts };
}

export type OutageReport = {
  outages: OutageTimeline[];
  fillsPublished: number;
  fillsAllocated: number;
  lostFills: number;
  duplicateApplications: number;
  invariantsOk: boolean;
  restarts: number;
  rssPeakMiB: number;
  [more: string]: unknown;
};

function buildReport(ctx: OutageCtx, v: Verdict, ending: Ending, durationMs: number): OutageReport {
  const timelines = ctx.marks.map((marks) =>
    outageTimeline({
      marks,
      t0Ms: ctx.t0Ms,
      polls: ctx.readiness.polls,
      samples: ctx.meter.samples,
      slackMs: Limits.drainSlackMs,
    }),
  );
  const log = summarizeLog(
    ctx.child.output(),
    ctx.windows,
    ctx.child.output().length >= CHILD_OUTPUT_CHARS_MAX,
  );
  const o = ctx.options;
  const endedAtMs = ctx.feed.endedAtMs;
  const lastBackMs = ctx.marks.at(-1)?.backAtMs ?? 0;
  return {
    outages: timelines,
    fillsPublished: v.fillsPublished,
    fillsAllocated: v.fillsAllocated,
    lostFills: v.lost.length,
    duplicateApplications: v.duplicated.length + v.duplicateLines.repeats,
    invariantsOk: v.invariants.ok,
    restarts: ending.restarts,
    rssPeakMiB: ctx.rss.peakMiB,
    rssMiB: rssByPhase(ctx, timelines),
    pid: ctx.child.pid,
    deadLettered: v.deadLettered,
    deadLetterReasons: v.deadLetterReasons,
    streamMessages: v.streamMessages,
    deliveries: v.deliveries,
    redeliveries: v.redeliveries,
    invariantChecks: v.invariants.checks,
    publish: {
      failedAttempts: ctx.feed.failedAttempts,
      serverDuplicates: ctx.feed.serverDuplicates,
      bufferedMax: ctx.feed.bufferedMax,
      lagMaxFills: ctx.feed.lagMaxFills,
      endedBeforeLastOutage: endedAtMs !== undefined && endedAtMs < lastBackMs,
    },
    readiness: {
      polls: ctx.readiness.polls.length,
      notReady: ctx.readiness.polls.filter((p) => p.status !== 200).length,
    },
    rssSamples: ctx.rss.samples,
    meterProbeFailures: ctx.meter.probeFailures,
    childLog: log,
    sigterm: {
      exitCode: ending.stop.exit.code,
      signal: ending.stop.exit.signal,
      graceful: ending.stop.graceful,
      ms: ending.stop.ms,
    },
    durationSeconds: round3(durationMs / 1000),
    config: {
      ...{ ratePerSec: o.ratePerSec, fills: o.fills, dbDownS: o.dbDownS, natsDownS: o.natsDownS },
      ...{ warmUpS: o.warmUpS, gapS: o.gapS, tailS: o.tailS, seed: o.seed, quick: o.quick },
      ...{ accounts: o.accounts, orders: o.orders, securities: o.securities },
      partitions: ctx.config.partitions,
      drainSlackMs: Limits.drainSlackMs,
    },
  };
}

/** The child's RSS peak before the outages and in each one (down to drained), and its VmHWM. */
function rssByPhase(ctx: OutageCtx, timelines: OutageTimeline[]): Record<string, number> {
  const out: Record<string, number> = {};
  const firstDownMs = ctx.marks[0]?.downAtMs ?? performance.now();
  out.beforeOutages = ctx.rss.peakBetweenMiB(ctx.t0Ms, firstDownMs);
  ctx.marks.forEach((m, i) => {
    const drainedMs = timelines[i]?.drainedMs;
    const endMs =
      drainedMs === null || drainedMs === undefined ? performance.now() : m.downAtMs + drainedMs;
    out[m.what] = ctx.rss.peakBetweenMiB(m.downAtMs, endMs);
  });
  out.hwm = round1(ctx.rss.hwmKiB / 1024);
  return out;
}

function outageFailures(report: OutageReport, v: Verdict, ending: Ending): string[] {
  const failures = verdictFailures(v);
  if (ending.restarts > 0) failures.push('the service exited by itself during the drill');
  for (const t of report.outages) {
    if (t.noticedMs === null || t.noticedMs > t.backMs)
      failures.push(`${t.what}: /readyz never said 503 while the server was down`);
    if (t.readyMs === null) failures.push(`${t.what}: /readyz never said 200 again`);
    if (t.drainedMs === null) failures.push(`${t.what}: the backlog was never drained`);
  }
  if (!ending.stop.graceful || ending.stop.exit.code !== 0)
    failures.push(
      `the service did not exit 0 within ${Limits.stopTimeoutMs} ms of SIGTERM (${describeExit(ending.stop.exit)})`,
    );
  return failures;
}

function summaryLines(r: OutageReport): string[] {
  const log = r.childLog as LogSummary;
  const publish = r.publish as {
    failedAttempts: number;
    serverDuplicates: number;
    bufferedMax: number;
  };
  return [
    `outage drill: service pid ${String(r.pid)} (restarts ${r.restarts}), ${r.durationSeconds} s`,
    ...r.outages.map(describeOutage),
    `fills published ${r.fillsPublished}, allocated ${r.fillsAllocated}, lost ${r.lostFills}, applied twice ${r.duplicateApplications}, dead-lettered ${String(r.deadLettered)}`,
    `invariants ${r.invariantsOk ? 'ALL HOLD' : 'VIOLATED'} (${String(r.invariantChecks)} exact checks)`,
    `publisher: ${publish.failedAttempts} failed attempts retried, ${publish.serverDuplicates} re-publishes dropped by the server, at most ${publish.bufferedMax} fills buffered`,
    `deliveries ${String(r.deliveries)}, of which redeliveries ${String(r.redeliveries)} (naks and ack-wait expiries)`,
    `child RSS peak ${r.rssPeakMiB} MiB ${JSON.stringify(r.rssMiB)}; its log: ${log.lines} lines ${JSON.stringify(log.byLevel)}, per outage window ${JSON.stringify(log.inWindows)}`,
    ...log.top.slice(0, 5).map((e) => `  ${e.count} x ${e.level} ${e.msg}`),
  ];
}

function abortedResult(error: unknown, held: Held, signal: AbortSignal): DrillResult {
  const reason = signal.aborted ? signal.reason : error;
  const message = reason instanceof Error ? reason.message : String(reason);
  const ctx = held.ctx;
  const outages =
    ctx?.marks && ctx.readiness && ctx.meter && ctx.t0Ms !== undefined
      ? ctx.marks.map((marks) =>
          outageTimeline({
            marks,
            t0Ms: ctx.t0Ms as number,
            polls: ctx.readiness?.polls ?? [],
            samples: ctx.meter?.samples ?? [],
            slackMs: Limits.drainSlackMs,
          }),
        )
      : [];
  return {
    ok: false,
    json: {
      outages,
      fillsPublished: ctx?.feed?.published ?? 0,
      fillsAllocated: ctx?.meter?.latest?.allocated ?? 0,
      invariantsOk: false,
      restarts: ctx?.child?.exitedUnasked ? 1 : 0,
      rssPeakMiB: ctx?.rss?.peakMiB ?? null,
      error: message,
    },
    summary: [`outage drill aborted: ${message.split('\n')[0]}`, ...outages.map(describeOutage)],
    failures: [`drill aborted: ${message}`],
  };
}

async function teardown(
  held: Held,
  abort: AbortController,
  keep: boolean,
  io: DrillIO,
): Promise<void> {
  const ctx = held.ctx;
  if (ctx?.child?.alive) await ctx.child.kill().catch(() => undefined);
  killAllChildren();
  abort.abort(new Error('the drill is over'));
  ctx?.meter?.stop();
  await ctx?.feed?.done.catch(() => undefined);
  await ctx?.readiness?.stop().catch(() => undefined);
  await ctx?.rss?.stop().catch(() => undefined);
  await held.probe?.close();
  await held.db?.close().catch(() => undefined);
  await held.handles?.nc.close().catch(() => undefined);
  if (keep && held.servers) io.progress(`kept the servers' data in ${held.servers.rootDir}`);
  await held.servers?.cleanup({ keepDir: keep });
}

async function outageDrill(
  options: OutageOptions,
  io: DrillIO,
  signal: AbortSignal,
  held: Held,
): Promise<DrillResult> {
  const { ctx, scenario, handles } = await setUp(options, io, signal, held);
  await runPlan(ctx);
  held.db = await openDatabase(ctx.config, 4);
  await untilConfirmed(held.db, Limits.confirmTimeoutMs);
  const durationMs = performance.now() - ctx.t0Ms;
  const ending = await endRun(ctx);
  const verdict = await untilAborted(
    verifyRun({
      config: ctx.config,
      db: held.db,
      nats: handles,
      scenario,
      published: ctx.feed.published,
      io,
      signal: ctx.signal,
    }),
    ctx.signal,
  );
  const report = buildReport(ctx, verdict, ending, durationMs);
  const failures = outageFailures(report, verdict, ending);
  return { ok: failures.length === 0, json: report, summary: summaryLines(report), failures };
}

export async function runOutageDrill(argv: string[], io: DrillIO): Promise<DrillResult> {
  let options: OutageOptions;
  try {
    options = parseOutageOptions(argv);
    loadConfig(process.env);
  } catch (error) {
    if (error instanceof UsageError || error instanceof ConfigError)
      return usageResult(OUTAGE_USAGE, error);
    throw error;
  }
  if (options.help) return usageResult(OUTAGE_USAGE);
  const abort = new AbortController();
  const removeHandlers = onInterrupt(abort, io);
  const held: Held = {};
  try {
    return await outageDrill(options, io, abort.signal, held);
  } catch (error) {
    return abortedResult(error, held, abort.signal);
  } finally {
    await teardown(held, abort, options.keep, io).finally(removeHandlers);
  }
}
