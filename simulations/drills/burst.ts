/**
 * The burst drill: the service (a child process, on the shared servers with
 * a database and namespace of the run's own) takes fills at its sustainable
 * rate for a warm-up, then at 10 x that rate for --seconds. Its RSS is
 * sampled every 250 ms: the peak must stay under a stated bound, since every
 * queue in the service is bounded (in-flight fills, mailboxes, outboxes, the
 * journal's pending rows) and overload must become back-pressure in
 * JetStream, not memory. After the burst, publishing stops; every fill must
 * be allocated, once, with the books exact.
 *
 *   npm run drill -- burst [--json] [--sustainable FILLS_PER_S] [--seconds S] [--rss-bound-mib M] [--quick] ...
 *
 * The publisher itself may not reach 10 x on this machine: the rate the
 * server actually acknowledged during the burst is reported as offered.
 */
import type { JetStreamManager } from '@nats-io/jetstream';
import type { Database } from '../../persistence/db.ts';
import { loadConfig, streamNames, type Config } from '../../system/config.ts';
import {
  ensureStreams,
  openJetStream,
  type NatsHandles,
  type StreamNames,
} from '../../system/jetstream.ts';
import { openDatabase } from '../../system/service.ts';
import { round3 } from '../arms/common.ts';
import {
  verdictFailures,
  verdictFigures,
  verifyRun,
  type Verdict,
  type VerdictFigures,
} from './books.ts';
import type { ChildService } from './child-service.ts';
import { parseDrillOptions, round1, type DrillIO, type DrillResult } from './common.ts';
import {
  childLog,
  drillScenario,
  endChildren,
  FillFeed,
  jetStreamFeed,
  pause,
  ProgressMeter,
  RssSampler,
  runGuarded,
  serviceEndFailures,
  spawnService,
  stopService,
  whileAlive,
  withTimeout,
  type LogSummary,
  type ScenarioSize,
  type ServiceEnd,
} from './harness.ts';
import { openSandbox, untilConfirmed, type Sandbox } from './sandbox.ts';

/** See docs/DRILLS.md (`burst`) for how this default was chosen. */
export const DEFAULT_RSS_BOUND_MIB = 1024;

/**
 * Accounts per block order in the burst's scenario. Fewer than the default
 * scenario's 5-30: a 60 s burst is up to 1.2 million fills, and the exact
 * invariant check holds every allocation line in memory (~300 bytes each);
 * at 2-6 accounts that is ~4 lines per fill instead of ~16, which fits.
 */
export const BURST_ACCOUNTS_PER_ORDER = { min: 2, max: 6 } as const;

export const BURST_USAGE = `npm run drill -- burst [--json] [--sustainable FILLS_PER_S] [--factor F]
    [--seconds S] [--warm-up-s S] [--rss-bound-mib M] [--fills N] [--accounts N]
    [--orders N] [--securities N] [--seed N] [--drain-timeout-s S] [--quick] [--keep]

Runs the service as a child process (own database and namespace on the shared
servers), publishes at the sustainable rate (default 2000 fills/s) for the
warm-up (default 5 s), then at --factor (default 10) x that rate for --seconds
(default 60; --quick: 10 s, warm-up 2 s). The child's RSS is sampled every
250 ms. Then publishing stops and the drill waits until every fill is allocated.
Exit 0 only if the RSS peak stayed within --rss-bound-mib (default ${DEFAULT_RSS_BOUND_MIB}),
nothing was lost or doubled, every invariant holds and nothing was dead-lettered.

  --fills N    caps the scenario (default: what the plan can publish); publishing
               ends early if it runs out (reported)
  --keep       keep the run's database and streams`;

export interface BurstOptions extends ScenarioSize {
  sustainablePerSec: number;
  factor: number;
  seconds: number;
  warmUpS: number;
  rssBoundMiB: number;
  drainTimeoutS: number;
  quick: boolean;
  keep: boolean;
  help: boolean;
}

export function parseBurstOptions(argv: string[]): BurstOptions {
  const { numbers: n, values } = parseDrillOptions(
    argv,
    {
      sustainable: { fallback: 2_000, min: 1, max: 1_000_000 },
      factor: { fallback: 10, min: 1, max: 1_000 },
      seconds: { fallback: 60, min: 1, max: 3_600 },
      'warm-up-s': { fallback: 5, min: 0, max: 3_600 },
      'rss-bound-mib': { fallback: DEFAULT_RSS_BOUND_MIB, min: 1, max: 1_000_000 },
      fills: { fallback: 0, min: 1, max: 10_000_000 },
      accounts: { fallback: 2_000, min: 1, max: 1_000_000 },
      orders: { fallback: 200, min: 1, max: 100_000 },
      securities: { fallback: 50, min: 1, max: 10_000 },
      seed: { fallback: 42, min: 0, max: 2 ** 31 },
      'drain-timeout-s': { fallback: 1_800, min: 1, max: 86_400 },
    },
    { quick: { type: 'boolean' }, keep: { type: 'boolean' } },
  );
  const given = (name: string) => argv.some((a) => a === `--${name}` || a.startsWith(`--${name}=`));
  const quick = values.quick === true;
  const seconds = quick && !given('seconds') ? 10 : n.seconds;
  const warmUpS = quick && !given('warm-up-s') ? 2 : n['warm-up-s'];
  const planned = n.sustainable * warmUpS + n.factor * n.sustainable * seconds;
  return {
    ...{ sustainablePerSec: n.sustainable, factor: n.factor, seconds, warmUpS },
    ...{ rssBoundMiB: n['rss-bound-mib'], fills: n.fills || planned },
    ...{ accounts: n.accounts, orders: n.orders, securities: n.securities, seed: n.seed },
    ...{ drainTimeoutS: n['drain-timeout-s'], quick },
    ...{ keep: values.keep === true, help: values.help === true },
  };
}

/** Every wait of the drill is bounded (the drain by --drain-timeout-s). */
const Limits = {
  readyTimeoutMs: 60_000,
  flushTimeoutMs: 120_000,
  confirmTimeoutMs: 300_000,
  stopTimeoutMs: 60_000,
  rssIntervalMs: 250,
  meterIntervalMs: 500,
  meterProbeTimeoutMs: 5_000,
  /**
   * Enough unacknowledged publishes to keep one connection busy at tens of
   * thousands per second; a small buffer, so the publisher lags rather than
   * buffers (the burst is what the server took).
   */
  feed: { inFlightMax: 1_024, bufferMax: 4_096, publishTimeoutMs: 10_000, failingForMaxMs: 60_000 },
} as const;

/**
 * Acknowledged (so allocated, or dead-lettered) messages of the stream: all
 * of them minus what the durables have yet to deliver or have unacked. Cheap
 * to ask at any backlog, unlike counting a million-row table.
 */
function ackedProbe(jsm: JetStreamManager, names: StreamNames, partitions: number) {
  return async (): Promise<number> => {
    const stream = await jsm.streams.info(names.executions);
    let outstanding = 0;
    for (let p = 0; p < partitions; p++) {
      const info = await jsm.consumers.info(names.executions, `${names.durablePrefix}_P${p}`);
      outstanding += info.num_pending + info.num_ack_pending;
    }
    return stream.state.messages - outstanding;
  };
}

interface BurstCtx {
  options: BurstOptions;
  config: Config;
  io: DrillIO;
  signal: AbortSignal;
  child: ChildService;
  feed: FillFeed;
  meter: ProgressMeter;
  rss: RssSampler;
  t0Ms: number;
  phases: Phases;
}

/** performance.now() of each phase's end (undefined until reached). */
interface Phases {
  warmUpEndMs?: number;
  burstEndMs?: number;
  drainedAtMs?: number;
  /** Published and allocated when the burst ended. */
  publishedAtBurstEnd?: number;
  allocatedAtBurstEnd?: number;
}

interface Held {
  sandbox?: Sandbox;
  handles?: NatsHandles;
  db?: Database;
  ctx?: Partial<BurstCtx>;
}

async function setUp(options: BurstOptions, io: DrillIO, signal: AbortSignal, held: Held) {
  const scenario = drillScenario(options, {
    accountsPerOrderMin: BURST_ACCOUNTS_PER_ORDER.min,
    accountsPerOrderMax: BURST_ACCOUNTS_PER_ORDER.max,
  });
  const sandbox = await openSandbox(
    'burst',
    { ...process.env, LOG_LEVEL: 'silent' },
    scenario.seed,
    io,
  );
  held.sandbox = sandbox;
  const config = sandbox.config;
  const handles = await openJetStream(config, 'blockfill-burst-drill');
  held.handles = handles;
  const names = streamNames(config);
  await ensureStreams(handles.jsm, names, config.partitions, {
    replicas: config.streamReplicas,
    maxAgeMs: config.streamMaxAgeMs,
  });
  const { child } = await spawnService(config, {
    readyTimeoutMs: Limits.readyTimeoutMs,
    signal,
    spawned: (c) => (held.ctx = { child: c }),
  });
  io.progress(
    `database ${sandbox.databaseName}, namespace ${config.namespace}; service pid ${child.pid} ready; ` +
      `warm-up ${options.warmUpS} s at ${options.sustainablePerSec}/s, then ${options.seconds} s at ` +
      `${options.factor * options.sustainablePerSec}/s (scenario: up to ${options.fills} fills)`,
  );
  const rss = new RssSampler(child.pid, Limits.rssIntervalMs);
  const feed = jetStreamFeed(handles.js, config, {
    ...{ fills: scenario.publishOrder, ratePerSec: options.sustainablePerSec, signal },
    ...Limits.feed,
  });
  const meter = new ProgressMeter({
    probe: ackedProbe(handles.jsm, names, config.partitions),
    feed: () => ({ enqueued: feed.enqueued, published: feed.published }),
    intervalMs: Limits.meterIntervalMs,
    probeTimeoutMs: Limits.meterProbeTimeoutMs,
    samplesMax: 1_000_000,
  });
  const ctx: BurstCtx = {
    ...{ options, config, io, signal, child, feed, meter, rss },
    ...{ t0Ms: feed.startedAtMs, phases: {} },
  };
  held.ctx = ctx;
  return { ctx, scenario, handles };
}

const steady = (ctx: BurstCtx, ms: number, what: string) =>
  whileAlive(ctx.child, pause(ctx.signal, ms), what);

/** Warm-up at the sustainable rate, the burst, then the last publishes acknowledged. */
async function publish(ctx: BurstCtx): Promise<void> {
  const { options: o, phases, feed } = ctx;
  await steady(ctx, o.warmUpS * 1000, 'the warm-up');
  phases.warmUpEndMs = performance.now();
  feed.setRate(o.factor * o.sustainablePerSec);
  ctx.io.progress(`burst: ${o.factor * o.sustainablePerSec} fills/s for ${o.seconds} s ...`);
  // Against a deadline: on a busy machine timers fire late, and late pauses would add up.
  const endMs = phases.warmUpEndMs + o.seconds * 1000;
  for (let reportMs = phases.warmUpEndMs + 10_000; performance.now() < endMs;) {
    await steady(ctx, Math.min(endMs, reportMs) - performance.now(), 'the burst');
    if (performance.now() < reportMs) continue;
    const atS = Math.round((reportMs - phases.warmUpEndMs) / 1000);
    reportMs += 10_000;
    ctx.io.progress(
      `  +${atS} s: published ${feed.published}, allocated ${ctx.meter.latest?.allocated ?? 0}, RSS peak so far ${round1(ctx.rss.peakKiB / 1024)} MiB`,
    );
  }
  feed.stop();
  phases.burstEndMs = performance.now();
  phases.publishedAtBurstEnd = feed.published;
  phases.allocatedAtBurstEnd = ctx.meter.latest?.allocated ?? 0;
  await whileAlive(
    ctx.child,
    withTimeout(feed.done, Limits.flushTimeoutMs, 'the last publishes'),
    'the last publishes',
  );
}

/** Until every published fill is acknowledged by the service (bounded by --drain-timeout-s). */
async function drain(ctx: BurstCtx): Promise<void> {
  ctx.io.progress(
    `burst over: ${ctx.feed.published} published, backlog ${ctx.feed.published - (ctx.meter.latest?.allocated ?? 0)}; draining ...`,
  );
  const deadlineMs = performance.now() + ctx.options.drainTimeoutS * 1000;
  let reportAtMs = performance.now() + 30_000;
  for (;;) {
    const s = await whileAlive(ctx.child, ctx.meter.next(), 'the drain');
    if ((s.allocated ?? 0) >= ctx.feed.published) {
      ctx.phases.drainedAtMs = s.atMs;
      return;
    }
    if (performance.now() > reportAtMs) {
      reportAtMs += 30_000;
      ctx.io.progress(
        `  draining: ${s.allocated} of ${ctx.feed.published} allocated, RSS ${round1(ctx.rss.peakKiB / 1024)} MiB peak`,
      );
    }
    if (performance.now() > deadlineMs)
      throw new Error(
        `only ${s.allocated}/${ctx.feed.published} fills allocated ${ctx.options.drainTimeoutS} s after the burst`,
      );
  }
}

export type BurstReport = VerdictFigures & {
  sustainablePerSec: number;
  offeredPerSec: number;
  seconds: number;
  rssPeakMiB: number;
  rssBoundMiB: number;
  withinBound: boolean;
  drainSeconds: number;
  [more: string]: unknown;
};

/** Offered = what the server acknowledged during the burst window, per second of it. */
export function offeredPerSec(
  feed: Pick<FillFeed, 'publishedAt'>,
  fromMs: number,
  toMs: number,
): number {
  const seconds = (toMs - fromMs) / 1000;
  return seconds > 0
    ? Math.round((feed.publishedAt(toMs) - feed.publishedAt(fromMs)) / seconds)
    : 0;
}

function buildReport(ctx: BurstCtx, v: Verdict, stop: ServiceEnd): BurstReport {
  const { options: o, phases: p, feed, rss } = ctx;
  const warmEnd = p.warmUpEndMs ?? ctx.t0Ms;
  const burstEnd = p.burstEndMs ?? warmEnd;
  const drainedAt = p.drainedAtMs ?? burstEnd;
  const drainSeconds = round3((drainedAt - burstEnd) / 1000);
  const backlog = (p.publishedAtBurstEnd ?? 0) - (p.allocatedAtBurstEnd ?? 0);
  const log = childLog(ctx.child);
  const f = verdictFigures(v);
  return {
    sustainablePerSec: o.sustainablePerSec,
    offeredPerSec: offeredPerSec(feed, warmEnd, burstEnd),
    seconds: round3((burstEnd - warmEnd) / 1000),
    // The order of docs/DRILLS.md's example.
    fillsPublished: f.fillsPublished,
    fillsAllocated: f.fillsAllocated,
    rssPeakMiB: rss.peakMiB,
    rssBoundMiB: o.rssBoundMiB,
    withinBound: rss.peakMiB <= o.rssBoundMiB,
    drainSeconds,
    lostFills: f.lostFills,
    duplicateApplications: f.duplicateApplications,
    invariantsOk: f.invariantsOk,
    // The rest of the shared figures (entries and amendments), after the example's.
    entriesPublished: f.entriesPublished,
    entriesApplied: f.entriesApplied,
    busts: f.busts,
    corrections: f.corrections,
    cancels: f.cancels,
    lostAmendments: f.lostAmendments,
    averageReleases: f.averageReleases,
    releaseAmendments: f.releaseAmendments,
    targetPerSec: o.factor * o.sustainablePerSec,
    warmUpPerSec: offeredPerSec(feed, ctx.t0Ms, warmEnd),
    rssMiB: {
      warmUp: rss.peakBetweenMiB(ctx.t0Ms, warmEnd),
      burst: rss.peakBetweenMiB(warmEnd, burstEnd),
      drain: rss.peakBetweenMiB(burstEnd, drainedAt),
      hwm: round1(rss.hwmKiB / 1024),
    },
    backlogAtBurstEnd: backlog,
    drainFillsPerSec: drainSeconds > 0 ? Math.round(backlog / drainSeconds) : null,
    publisherLagMaxFills: feed.lagMaxFills,
    publishFailedAttempts: feed.failedAttempts,
    deadLettered: v.deadLettered,
    deadLetterReasons: v.deadLetterReasons,
    streamMessages: v.streamMessages,
    redeliveries: v.redeliveries,
    invariantChecks: v.invariants.checks,
    childLog: log,
    sigterm: { exitCode: stop.exit.code, signal: stop.exit.signal, graceful: stop.graceful },
    config: {
      ...{ factor: o.factor, warmUpS: o.warmUpS, fills: o.fills, accounts: o.accounts },
      ...{ orders: o.orders, securities: o.securities, seed: o.seed, quick: o.quick },
      accountsPerOrder: BURST_ACCOUNTS_PER_ORDER,
      partitions: ctx.config.partitions,
      consumerInFlightMax: ctx.config.consumerInFlightMax,
      outboxFillsMax: ctx.config.outboxFillsMax,
      actorMailboxMax: ctx.config.actorMailboxMax,
      journalPendingEventsMax: ctx.config.journalPendingEventsMax,
    },
  };
}

function summaryLines(r: BurstReport): string[] {
  const rssMiB = r.rssMiB as Record<string, number>;
  const log = r.childLog as LogSummary;
  return [
    `burst drill: ${r.seconds} s offered ${r.offeredPerSec} fills/s (target ${String(r.targetPerSec)} = 10 x sustainable ${r.sustainablePerSec}; warm-up ${String(r.warmUpPerSec)}/s)`,
    `child RSS peak ${r.rssPeakMiB} MiB (warm-up ${rssMiB.warmUp}, burst ${rssMiB.burst}, drain ${rssMiB.drain}); bound ${r.rssBoundMiB} MiB: ${r.withinBound ? 'within' : 'EXCEEDED'}`,
    `backlog at the burst's end ${String(r.backlogAtBurstEnd)}, drained in ${r.drainSeconds} s (${String(r.drainFillsPerSec)} fills/s)`,
    `fills published ${r.fillsPublished}, allocated ${r.fillsAllocated}, lost ${r.lostFills}, applied twice ${r.duplicateApplications}, dead-lettered ${String(r.deadLettered)}`,
    `invariants ${r.invariantsOk ? 'ALL HOLD' : 'VIOLATED'} (${String(r.invariantChecks)} exact checks); child log ${log.lines} lines ${JSON.stringify(log.byLevel)}`,
    ...log.top.slice(0, 5).map((e) => `  ${e.count} x ${e.level} ${e.msg}`),
  ];
}

async function burstDrill(
  options: BurstOptions,
  io: DrillIO,
  signal: AbortSignal,
  held: Held,
): Promise<DrillResult> {
  const { ctx, scenario, handles } = await setUp(options, io, signal, held);
  await publish(ctx);
  await drain(ctx);
  held.db = await openDatabase(ctx.config, 4);
  await untilConfirmed(held.db, Limits.confirmTimeoutMs);
  ctx.meter.stop();
  await ctx.rss.stop();
  const end = await stopService(ctx.child, Limits.stopTimeoutMs);
  const verdict = await verifyRun({
    ...{ config: ctx.config, db: held.db, nats: handles, scenario, io, signal },
    published: ctx.feed.published,
  });
  const report = buildReport(ctx, verdict, end);
  const failures = verdictFailures(verdict);
  if (!report.withinBound)
    failures.push(
      `the child's RSS peaked at ${report.rssPeakMiB} MiB, above the bound of ${report.rssBoundMiB} MiB`,
    );
  failures.push(...serviceEndFailures(end, Limits.stopTimeoutMs));
  if (ctx.feed.endedAtMs !== undefined && ctx.feed.endedAtMs < (ctx.phases.burstEndMs ?? 0) - 1_000)
    io.progress(`note: the scenario's ${options.fills} fills ran out before the burst ended`);
  return { ok: failures.length === 0, json: report, summary: summaryLines(report), failures };
}

function abortedResult(message: string, held: Held): Pick<DrillResult, 'json' | 'summary'> {
  const ctx = held.ctx;
  return {
    json: {
      fillsPublished: ctx?.feed?.published ?? 0,
      fillsAllocated: ctx?.meter?.latest?.allocated ?? 0,
      rssPeakMiB: ctx?.rss?.peakMiB ?? null,
      invariantsOk: false,
      error: message,
    },
    summary: [`burst drill aborted: ${message.split('\n')[0]}`],
  };
}

async function teardown(held: Held, abort: AbortController, keep: boolean): Promise<void> {
  const ctx = held.ctx;
  await endChildren([ctx?.child], abort);
  ctx?.meter?.stop();
  await ctx?.feed?.done.catch(() => undefined);
  await ctx?.rss?.stop().catch(() => undefined);
  await held.db?.close().catch(() => undefined);
  await held.handles?.nc.close().catch(() => undefined);
  await held.sandbox?.cleanup(keep);
}

export function runBurstDrill(argv: string[], io: DrillIO): Promise<DrillResult> {
  const held: Held = {};
  return runGuarded({
    ...{ argv, io, usage: BURST_USAGE },
    parse: (args) => {
      const options = parseBurstOptions(args);
      loadConfig(process.env); // a bad environment is a usage error, before the sandbox
      return options;
    },
    run: (options, signal) => burstDrill(options, io, signal, held),
    aborted: (message) => abortedResult(message, held),
    teardown: (options, abort) => teardown(held, abort, options.keep),
  });
}
