/**
 * One end-to-end run on the local services: a database and stream namespace
 * of its own, seeded; the service in-process; the fills through JetStream;
 * a wait until every fill is allocated and every line durable on its
 * account; figures; the books checked exactly; everything it created removed.
 *
 * Two ways to feed it:
 * - `prepublish`: the whole stream is published before the service starts,
 *   so every fill has arrived at t0 (a saturation run, comparable to the
 *   other designs' floods; the publisher's own CPU is not in the figure);
 * - otherwise fills are published while the service runs, at
 *   `publishRatePerSec` or as fast as JetStream takes them.
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Entry } from '../actors/block-order/decider.ts';
import { BLOCK_ORDER_KIND, UNCONFIRMED_EVENT_TYPES } from '../actors/block-order/shell.ts';
import type { AllocationObserver, Clock } from '../actors/protocol.ts';
import { invariant } from '../actors/errors.ts';
import type { Database } from '../persistence/db.ts';
import { keysWhoseLastEventIs } from '../persistence/journal.ts';
import { migrate } from '../persistence/migrate.ts';
import { seedReferenceData } from '../persistence/reference.ts';
import { loadConfig, streamNames, type Config } from '../system/config.ts';
import {
  ensureStreams,
  fillPublisher,
  openJetStream,
  type Publisher,
} from '../system/jetstream.ts';
import { createLogger } from '../system/log.ts';
import { openDatabase, startService, type Service } from '../system/service.ts';
import { percentiles, type LatencyMs } from './arms/common.ts';
import { Permits } from '../system/permits.ts';
import { checkInvariants, type InvariantReport } from './invariants.ts';
import { checkBookingAndReconciliation, type BookingCheck } from './booking-check.ts';
import type { Phase } from './progress.ts';
import type { MemoryPoint } from './report/types.ts';

/** Where the long phases report (simulations/progress.ts makes one). */
export interface PhaseBoard {
  phase(name: string, total: number): Phase;
}

const noPhase: Phase = { update: () => {}, increment: () => {}, stop: () => {} };
const phaseOf = (options: RunOptions, name: string, total: number): Phase =>
  options.phases?.phase(name, total) ?? noPhase;
import {
  entriesByOrderOf,
  entriesOf,
  generateScenario,
  type Scenario,
  type ScenarioOptions,
} from './scenario.ts';
import { claimNamespace, deleteStreams, dropDatabase, freshDatabase, runNames } from './support.ts';

export interface RunOptions {
  scenario: Partial<ScenarioOptions> | Scenario;
  /** A tag for this run's database and streams; a random suffix makes them its own. */
  tag: string;
  /** Leave the run's database and streams for inspection (else both are removed at the end). */
  keepDatabase: boolean;
  publishInFlightMax: number;
  /** Publish everything before the service starts (a backlog at t0). */
  prepublish?: boolean;
  /** Fills per second while the service runs; absent = as fast as JetStream takes them. */
  publishRatePerSec?: number;
  /** When fill i (0-based) is due, in ms from the start (a stream shape); not with a rate. */
  publishScheduleMs?: (index: number) => number;
  /**
   * Latency percentiles leave out the first this many fills (they still must
   * settle): a steady-state figure, without the cold start of every actor.
   */
  latencyFromFill?: number;
  settleTimeoutMs: number;
  checkInvariants: boolean;
  /** After the invariants: book the day through the API, fold the files back, and reconcile. */
  checkBooking?: boolean;
  /** Runs after the service stopped, before the run's database is dropped (e.g. recovery figures). */
  afterStop?: (config: Config) => Promise<void>;
  env: Record<string, string | undefined>;
  progress: (line: string) => void;
  /** Progress bars for the long phases (seeding, publishing, draining, checking). */
  phases?: PhaseBoard;
  /** This run's database and stream namespace; default: random names of its own (runNames). */
  names?: { databaseName: string; namespace: string };
}

export interface RunResult {
  invariantsOk: boolean;
  invariants?: InvariantReport;
  /** The day's booking files folded back onto the books, and reconciliation (with the invariants). */
  booking?: BookingCheck;
  /** Entries settled: fills, and amendments when the scenario has them. */
  fills: number;
  /** The run second by second (settled, lines, latency, lag). */
  series: SeriesPoint[];
  /** Allocation lines durably applied (or durably rejected) on accounts. */
  lines: number;
  fillsPerSec: number;
  linesPerSec: number;
  /** From a fill's arrival (its publish, or t0 for a backlog) until all its lines are durable. */
  latencyMs: LatencyMs;
  elapsedMs: number;
  publishMs: number;
  databaseName: string;
  journal: Service['journal']['stats'];
  consumer: Service['consumer']['stats'];
  actorCrashes: number;
  /** Memory at the end of seeding, publishing, settling and checking. */
  memory: MemoryPoint[];
  config: Pick<
    Config,
    | 'partitions'
    | 'journalBatchEventsMax'
    | 'journalFlushIntervalMs'
    | 'journalFlushesInFlightMax'
    | 'consumerInFlightMax'
    | 'actorBatchCommandsMax'
    | 'snapshotEveryEvents'
  >;
}

/** The process's memory now, named for the phase that just ended. */
export function memoryAt(phase: string): MemoryPoint {
  const { rss, heapUsed, external } = process.memoryUsage();
  const peakRssBytes = Math.max(process.resourceUsage().maxRSS * 1024, rss);
  return { phase, rssBytes: rss, heapUsedBytes: heapUsed, externalBytes: external, peakRssBytes };
}

export const monotonicClock: Clock = { nowMs: () => performance.timeOrigin + performance.now() };

/** What was published: the fills, or with the market's amendments, every entry. */
/** One second of a run: what settled in it, how fast, and what was still waiting at its end. */
export interface SeriesPoint {
  tSec: number;
  fillsPerSec: number;
  linesPerSec: number;
  p50Ms: number | null;
  p99Ms: number | null;
  lagFills: number;
}

/** Per-second buckets, at most this many (a longer run folds its tail into the last one). */
const SERIES_SECONDS_MAX = 6 * 3_600;

/** Watches settlements: arrival times in, latencies and counts out. */
class Progress implements AllocationObserver {
  readonly arrivedAtMs = new Map<string, number>();
  readonly latenciesMs: number[] = [];
  settled = 0;
  lines = 0;
  published = 0;
  lastSettledAtMs = 0;
  /** Per second since `startMs`: settled, lines, latencies, and published-but-unsettled at its end. */
  readonly #buckets: Array<{ settled: number; lines: number; latenciesMs: number[]; lag: number }> =
    [];
  startMs = 0;
  readonly #total: number;
  readonly #done: () => void;
  readonly allSettled: Promise<void>;

  constructor(total: number) {
    this.#total = total;
    let done!: () => void;
    this.allSettled = new Promise<void>((resolve) => (done = resolve));
    this.#done = done;
  }

  /** Fills whose latency is not counted (the warm-up of a steady run). */
  readonly unmeasured = new Set<string>();

  arrived(fill: Entry, atMs: number, measured = true): void {
    const key = `${fill.blockOrderId}#${fill.seq}`;
    this.arrivedAtMs.set(key, atMs);
    this.published++;
    if (!measured) this.unmeasured.add(key);
  }

  #bucket(atMs: number) {
    const i = Math.min(Math.max(0, Math.floor((atMs - this.startMs) / 1000)), SERIES_SECONDS_MAX);
    while (this.#buckets.length <= i)
      this.#buckets.push({ settled: 0, lines: 0, latenciesMs: [], lag: 0 });
    return this.#buckets[i]!;
  }

  /** The run second by second. */
  series(): SeriesPoint[] {
    return this.#buckets.map((b, tSec) => {
      const p = percentiles(b.latenciesMs);
      const point = { tSec, fillsPerSec: b.settled, linesPerSec: b.lines, lagFills: b.lag };
      return { ...point, p50Ms: p ? p.p50 : null, p99Ms: p ? p.p99 : null };
    });
  }

  fillSettled(blockOrderId: string, seq: number, atMs: number): void {
    const key = `${blockOrderId}#${seq}`;
    const t0 = this.arrivedAtMs.get(key);
    if (t0 === undefined) return; // a re-report after a restart, or not ours
    this.arrivedAtMs.delete(key);
    const bucket = this.#bucket(atMs);
    bucket.settled++;
    if (!this.unmeasured.delete(key)) {
      this.latenciesMs.push(atMs - t0);
      bucket.latenciesMs.push(atMs - t0);
    }
    bucket.lag = this.published - this.settled - 1;
    this.lastSettledAtMs = atMs;
    if (++this.settled === this.#total) this.#done();
  }

  accountLineDurable(): void {
    this.lines++;
    this.#bucket(monotonicClock.nowMs()).lines++;
  }
}

async function prepareDatabase(config: Config, scenario: Scenario): Promise<void> {
  const db = await openDatabase(config, 2);
  try {
    await migrate(db);
    await seedReferenceData(db, scenario.seed);
  } finally {
    await db.close();
  }
}

/** Publishes `fills` in order with a bounded number unacknowledged (so each order's fills stay in sequence). */
async function publishAll(
  publisher: Publisher,
  fills: readonly Entry[],
  options: {
    inFlightMax: number;
    /** When fill i is due, in ms from the start; absent = at once. */
    dueMs?: (index: number) => number;
    onPublish: (fill: Entry, index: number) => void;
  },
): Promise<void> {
  const startedMs = monotonicClock.nowMs();
  const { dueMs } = options;
  const gate = new Permits(options.inFlightMax);
  const failures: unknown[] = [];
  for (let i = 0; i < fills.length && failures.length === 0; i++) {
    const fill = fills[i];
    if (!fill) break;
    if (dueMs !== undefined) {
      const waitMs = startedMs + dueMs(i) - monotonicClock.nowMs();
      if (waitMs > 1) await new Promise((resolve) => setTimeout(resolve, waitMs));
    }
    await gate.acquire();
    options.onPublish(fill, i);
    publishWithRetry(publisher, fill)
      .catch((error: unknown) => failures.push(error))
      .finally(() => gate.release());
  }
  await gate.idle();
  if (failures.length > 0) throw failures[0];
}

/** Publish attempts per entry: a loaded server can let an ack time out. */
const PUBLISH_ATTEMPTS_MAX = 5;

/**
 * Publishes one entry; a timed-out publish is sent again (the stream
 * deduplicates by the entry's id, so a retry can never double it).
 */
async function publishWithRetry(publisher: Publisher, entry: Entry): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await publisher.publishEntry(entry);
    } catch (error) {
      const timedOut = /timeout/i.test(`${(error as Error).name} ${(error as Error).message}`);
      if (!timedOut || attempt >= PUBLISH_ATTEMPTS_MAX) throw error;
      await new Promise((resolve) => setTimeout(resolve, 250 * attempt));
    }
  }
}

/** The publish pace: a schedule, a steady rate, or none (as fast as JetStream takes them). */
function dueOf(options: RunOptions): { dueMs?: (index: number) => number } {
  const rate = options.publishRatePerSec;
  const schedule = options.publishScheduleMs;
  invariant(rate === undefined || schedule === undefined, 'a publish rate or a schedule, not both');
  if (schedule) return { dueMs: schedule };
  return rate === undefined ? {} : { dueMs: (i) => (i * 1000) / rate };
}

async function prepublish(config: Config, scenario: Scenario, inFlightMax: number): Promise<void> {
  const nats = await openJetStream(config, 'blockfill-prepublish');
  try {
    const names = streamNames(config);
    await ensureStreams(nats.jsm, names, config.partitions, {
      replicas: config.streamReplicas,
      maxAgeMs: config.streamMaxAgeMs,
    });
    const publisher = fillPublisher(nats.js, names, config.partitions);
    await publishAll(publisher, entriesOf(scenario), { inFlightMax, onPublish: () => {} });
  } finally {
    await nats.nc.close();
  }
}

async function untilSettled(progress: Progress, total: number, timeoutMs: number): Promise<void> {
  const timeout = new Promise<'timeout'>((resolve) =>
    setTimeout(() => resolve('timeout'), timeoutMs).unref(),
  );
  const outcome = await Promise.race([progress.allSettled.then(() => 'done' as const), timeout]);
  if (outcome === 'timeout')
    throw new Error(`only ${progress.settled}/${total} fills settled within ${timeoutMs} ms`);
}

export async function runScenario(options: RunOptions): Promise<RunResult> {
  const base = loadConfig(options.env);
  const scenario =
    'publishOrder' in options.scenario ? options.scenario : generateScenario(options.scenario);
  const total = entriesOf(scenario).length;
  const amended = scenario.amended ? ` and ${total - scenario.publishOrder.length} amendments` : '';
  options.progress(
    `scenario: ${scenario.seed.securities.length} securities, ${scenario.seed.accounts.length} accounts, ${scenario.seed.blockOrders.length} block orders, ${scenario.publishOrder.length} fills${amended}`,
  );
  const { databaseName, namespace } = options.names ?? runNames(options.tag);
  // Before anything is created: what this run removes at the end must be its own.
  await claimNamespace(base, namespace);
  const config: Config = {
    ...base,
    databaseUrl: await freshDatabase(base.databaseUrl, databaseName),
    namespace,
  };
  try {
    const seeding = phaseOf(options, 'seeding', scenario.seed.accounts.length);
    await prepareDatabase(config, scenario);
    seeding.update(scenario.seed.accounts.length);
    seeding.stop();
    const seeded = memoryAt('seeded');
    if (options.prepublish) {
      options.progress(`publishing ${total} fills before the service starts ...`);
      await prepublish(config, scenario, options.publishInFlightMax);
    }
    const result = await runService(options, config, scenario, databaseName);
    await options.afterStop?.(config);
    return { ...result, memory: [seeded, ...result.memory] };
  } finally {
    if (!options.keepDatabase) {
      const nats = await openJetStream(config, 'blockfill-cleanup').catch(() => undefined);
      if (nats) {
        await deleteStreams(nats.jsm, namespace).catch(() => undefined);
        await nats.nc.close();
      }
      await dropDatabase(base.databaseUrl, databaseName);
      // The run's booking files go with its database (service.ts: a folder per namespace).
      await rm(join(base.bookingDir, namespace), { recursive: true, force: true });
    }
  }
}

async function runService(
  options: RunOptions,
  config: Config,
  scenario: Scenario,
  databaseName: string,
): Promise<RunResult> {
  const entries = entriesOf(scenario);
  const total = entries.length;
  const progress = new Progress(total);
  const log = createLogger(config.logLevel === 'info' ? 'warn' : config.logLevel, {
    service: 'blockfill',
  });
  // A backlog has arrived at t0: when the service starts taking it.
  const t0Ms = monotonicClock.nowMs();
  progress.startMs = t0Ms;
  if (options.prepublish) for (const fill of entries) progress.arrived(fill, t0Ms);
  const service = await startService(config, { observer: progress, clock: monotonicClock, log });
  const memory: MemoryPoint[] = [];
  try {
    const draining = phaseOf(options, 'settling', total);
    const ticker = setInterval(() => draining.update(progress.settled), 250);
    let publishMs = 0;
    try {
      if (!options.prepublish) {
        const publishing = phaseOf(options, 'publishing', total);
        await publishAll(service.publisher, entries, {
          inFlightMax: options.publishInFlightMax,
          ...dueOf(options),
          onPublish: (fill, i) => {
            publishing.increment();
            progress.arrived(fill, monotonicClock.nowMs(), i >= (options.latencyFromFill ?? 0));
          },
        });
        publishing.stop();
        publishMs = monotonicClock.nowMs() - t0Ms;
        memory.push(memoryAt('published'));
      }
      await untilSettled(progress, total, options.settleTimeoutMs);
      memory.push(memoryAt('settled'));
    } finally {
      clearInterval(ticker);
      draining.update(progress.settled);
      draining.stop();
    }
    const elapsedMs = progress.lastSettledAtMs - t0Ms;
    // Let the last watermarks land before reading the books.
    await waitForConfirmations(service.db, options.settleTimeoutMs);
    await service.journal.drain();
    const invariants = options.checkInvariants
      ? await check(service, scenario, options)
      : undefined;
    if (invariants) memory.push(memoryAt('checked'));
    const booking =
      invariants && options.checkBooking
        ? await checkBooking(service, invariants, options)
        : undefined;
    const r = { progress, service, config, invariants, elapsedMs, publishMs, databaseName, memory };
    return {
      ...summarize(r),
      ...(booking ? { booking, invariantsOk: invariants?.ok ?? false } : {}),
    };
  } finally {
    await service.stop();
  }
}

/** The day booked and reconciled through the API; a difference fails the run's invariants. */
async function checkBooking(service: Service, invariants: InvariantReport, options: RunOptions) {
  options.progress('booking the day and reconciling it through the API ...');
  const booking = await checkBookingAndReconciliation(service.app, invariants.accountDeltas);
  if (booking.violations.length > 0) {
    invariants.ok = false;
    invariants.violations.push(...booking.violations);
  }
  return booking;
}

async function check(service: Service, scenario: Scenario, options: RunOptions) {
  options.progress('checking invariants against the journal and the live actors ...');
  // Counted in views read back through the API (the journals are read first, uncounted).
  const views = scenario.seed.accounts.length + scenario.seed.blockOrders.length;
  const checking = phaseOf(options, 'checking', views);
  const report = await checkInvariants({
    db: service.db,
    app: service.app,
    seed: scenario.seed,
    fillsByOrder: entriesByOrderOf(scenario),
    idPrefix: scenario.options.idPrefix,
    ...(scenario.rebalancePrices ? { rebalancePrices: scenario.rebalancePrices } : {}),
    onViewChecked: () => checking.increment(),
  });
  checking.update(views);
  checking.stop();
  return report;
}

function summarize(r: {
  progress: Progress;
  service: Service;
  config: Config;
  invariants: InvariantReport | undefined;
  elapsedMs: number;
  publishMs: number;
  databaseName: string;
  memory: MemoryPoint[];
}): RunResult {
  const seconds = r.elapsedMs / 1000;
  const { config } = r;
  return {
    invariantsOk: r.invariants ? r.invariants.ok : true,
    invariants: r.invariants,
    fills: r.progress.settled,
    series: r.progress.series(),
    lines: r.progress.lines,
    fillsPerSec: Math.round(r.progress.settled / seconds),
    linesPerSec: Math.round(r.progress.lines / seconds),
    latencyMs: percentiles(r.progress.latenciesMs) ?? { p50: 0, p90: 0, p99: 0, p999: 0, max: 0 },
    elapsedMs: Math.round(r.elapsedMs),
    publishMs: Math.round(r.publishMs),
    databaseName: r.databaseName,
    journal: { ...r.service.journal.stats },
    consumer: { ...r.service.consumer.stats },
    actorCrashes: r.service.accounts.crashCount + r.service.blockOrders.crashCount,
    memory: r.memory,
    config: {
      partitions: config.partitions,
      journalBatchEventsMax: config.journalBatchEventsMax,
      journalFlushIntervalMs: config.journalFlushIntervalMs,
      journalFlushesInFlightMax: config.journalFlushesInFlightMax,
      consumerInFlightMax: config.consumerInFlightMax,
      actorBatchCommandsMax: config.actorBatchCommandsMax,
      snapshotEveryEvents: config.snapshotEveryEvents,
    },
  };
}

/** Waits until no block order's journal ends with unconfirmed allocations. */
async function waitForConfirmations(db: Database, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const keys = await keysWhoseLastEventIs(db, `${BLOCK_ORDER_KIND}-`, UNCONFIRMED_EVENT_TYPES);
    if (keys.length === 0) return;
    if (Date.now() > deadline) {
      throw new Error(`${keys.length} block orders still have unconfirmed allocations`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
