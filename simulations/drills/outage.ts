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
 */
import type { NatsConnection } from '@nats-io/transport-node';
import pg from 'pg';
import type { Database } from '../../persistence/db.ts';
import { migrate } from '../../persistence/migrate.ts';
import { seedReferenceData } from '../../persistence/reference.ts';
import { loadConfig, streamNames, type Config } from '../../system/config.ts';
import { ensureStreams, openJetStream, type NatsHandles } from '../../system/jetstream.ts';
import { openDatabase } from '../../system/service.ts';
import { round3 } from '../arms/common.ts';
import type { Scenario } from '../scenario.ts';
import { databaseNameOf, freshDatabase, runNames } from '../support.ts';
import {
  verdictFailures,
  verdictFigures,
  verifyRun,
  type Verdict,
  type VerdictFigures,
} from './books.ts';
import type { ChildService } from './child-service.ts';
import { parseDrillOptions, round1, UsageError, type DrillIO, type DrillResult } from './common.ts';
import {
  childLog,
  drillScenario,
  endChildren,
  FillFeed,
  jetStreamFeed,
  pause,
  ProgressMeter,
  ReadinessWatch,
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
  type MeterSample,
  type ReadinessPoll,
} from './harness.ts';
import {
  cleanupAllPrivateServersSync,
  PrivateServers,
  type PrivateNats,
  type PrivatePostgres,
} from './private-servers.ts';
import { untilConfirmed } from './sandbox.ts';

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

export interface OutageOptions extends ScenarioSize {
  ratePerSec: number;
  dbDownS: number;
  natsDownS: number;
  /** Steady publishing before the first outage, between them, and after the last. */
  warmUpS: number;
  gapS: number;
  tailS: number;
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
  feed: { inFlightMax: 64, publishTimeoutMs: 2_000, failingForMaxMs: 120_000 },
  /** Fills the feed holds while NATS is down: two minutes at the rate, at least 10,000. */
  bufferSeconds: 120,
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
function readinessTransitions(
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

// ---------------------------------------------------- the servers going away

/**
 * Whether the connection is up, from its status events. A publish issued
 * while it is down is buffered by the client and sent on reconnect, but here
 * (nats.js 3.4, a restarted nats-server 2.9) its ack never came: it timed
 * out, and the publisher resumed only ~3 s after the server was back. So the
 * feed sends nothing while the connection is down.
 */
function connectionGate(nc: NatsConnection): { up: () => boolean } {
  let up = !nc.isClosed();
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect') up = false;
      else if (s.type === 'reconnect') up = true;
    }
  })().catch(() => undefined);
  return { up: () => up && !nc.isClosed() };
}

/**
 * Allocated fills = rows of the execution index (one per FillAllocated, same
 * commit), through a one-connection pool of our own that rides out the
 * database's outages (a narrow table: cheap to count at this size).
 */
function executionsProbe(databaseUrl: string): {
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

// ------------------------------------------------------------ the run

/**
 * The service's config against the private servers, with names of the run's
 * own even there: a server restarted after its outage could in principle
 * come back on a port another run's private server took meanwhile, and then
 * these names fail loudly instead of sharing that run's state.
 */
function privateConfig(base: Config, pgServer: PrivatePostgres, nats: PrivateNats): Config {
  const { databaseName, namespace } = runNames('outage');
  return {
    ...base,
    databaseUrl: pgServer.url(databaseName),
    natsServers: [nats.url],
    namespace,
    logLevel: 'silent',
  };
}

async function prepare(config: Config, scenario: Scenario, held: Held): Promise<NatsHandles> {
  await freshDatabase(config.databaseUrl, databaseNameOf(config.databaseUrl));
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

/** One outage's timeline as far as the watches have seen it. */
function timelineOf(
  ctx: Pick<OutageCtx, 't0Ms' | 'readiness' | 'meter'>,
  marks: OutageMarks,
): OutageTimeline {
  return outageTimeline({
    marks,
    t0Ms: ctx.t0Ms,
    polls: ctx.readiness.polls,
    samples: ctx.meter.samples,
    slackMs: Limits.drainSlackMs,
  });
}

/** Waits until, after `backAtMs`, /readyz said 200 and the backlog is drained; bounded. */
async function untilRecovered(ctx: OutageCtx, marks: OutageMarks): Promise<void> {
  const deadlineMs = marks.backAtMs + Limits.recoveryTimeoutMs;
  for (;;) {
    await whileAlive(ctx.child, ctx.meter.next(), `the ${marks.what} outage`);
    const t = timelineOf(ctx, marks);
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
  ctx.io.progress(describeOutage(timelineOf(ctx, marks)));
}

function describeOutage(t: OutageTimeline): string {
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
    withTimeout(ctx.feed.done, Limits.finalDrainTimeoutMs, 'the last publishes'),
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
  const scenario = drillScenario(options);
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
  const { child, port, readyUrl } = await spawnService(config, {
    readyTimeoutMs: Limits.readyTimeoutMs,
    signal,
    spawned: (c) => (held.ctx = { child: c }),
  });
  io.progress(`service pid ${child.pid} ready on port ${port}; publishing ...`);
  const feed = jetStreamFeed(handles.js, config, {
    ...{ fills: scenario.publishOrder, ratePerSec: options.ratePerSec, signal },
    ...Limits.feed,
    bufferMax: Math.max(10_000, options.ratePerSec * Limits.bufferSeconds),
    canSend: connectionGate(handles.nc).up,
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
    url: readyUrl,
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

/** The watches stop; the child's peak RSS is read; the child gets SIGTERM (it must exit 0). */
async function endRun(ctx: OutageCtx): Promise<ServiceEnd> {
  ctx.meter.stop();
  await ctx.readiness.stop();
  await ctx.rss.stop();
  return stopService(ctx.child, Limits.stopTimeoutMs);
}

export type OutageReport = VerdictFigures & {
  outages: OutageTimeline[];
  restarts: number;
  rssPeakMiB: number;
  [more: string]: unknown;
};

function buildReport(
  ctx: OutageCtx,
  v: Verdict,
  end: ServiceEnd,
  durationMs: number,
): OutageReport {
  const timelines = ctx.marks.map((marks) => timelineOf(ctx, marks));
  const log = childLog(ctx.child, ctx.windows);
  const o = ctx.options;
  const endedAtMs = ctx.feed.endedAtMs;
  const lastBackMs = ctx.marks.at(-1)?.backAtMs ?? 0;
  return {
    outages: timelines,
    ...verdictFigures(v),
    restarts: end.exitedByItself ? 1 : 0,
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
      exitCode: end.exit.code,
      signal: end.exit.signal,
      graceful: end.graceful,
      ms: end.ms,
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

function outageFailures(report: OutageReport, v: Verdict, end: ServiceEnd): string[] {
  const failures = verdictFailures(v);
  for (const t of report.outages) {
    if (t.noticedMs === null || t.noticedMs > t.backMs)
      failures.push(`${t.what}: /readyz never said 503 while the server was down`);
    if (t.readyMs === null) failures.push(`${t.what}: /readyz never said 200 again`);
    if (t.drainedMs === null) failures.push(`${t.what}: the backlog was never drained`);
  }
  return [...failures, ...serviceEndFailures(end, Limits.stopTimeoutMs)];
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

function abortedResult(message: string, held: Held): Pick<DrillResult, 'json' | 'summary'> {
  const ctx = held.ctx;
  const { marks, readiness, meter, t0Ms } = ctx ?? {};
  const outages =
    marks && readiness && meter && t0Ms !== undefined
      ? marks.map((m) => timelineOf({ t0Ms, readiness, meter }, m))
      : [];
  return {
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
  };
}

async function teardown(
  held: Held,
  abort: AbortController,
  keep: boolean,
  io: DrillIO,
): Promise<void> {
  const ctx = held.ctx;
  await endChildren([ctx?.child], abort);
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
  const end = await endRun(ctx);
  const verdict = await verifyRun({
    ...{ config: ctx.config, db: held.db, nats: handles, scenario, io, signal },
    published: ctx.feed.published,
  });
  const report = buildReport(ctx, verdict, end, durationMs);
  const failures = outageFailures(report, verdict, end);
  return { ok: failures.length === 0, json: report, summary: summaryLines(report), failures };
}

export function runOutageDrill(argv: string[], io: DrillIO): Promise<DrillResult> {
  const held: Held = {};
  return runGuarded({
    ...{ argv, io, usage: OUTAGE_USAGE },
    parse: (args) => {
      const options = parseOutageOptions(args);
      loadConfig(process.env); // a bad environment is a usage error, before any server starts
      return options;
    },
    run: (options, signal) => outageDrill(options, io, signal, held),
    aborted: (message) => abortedResult(message, held),
    teardown: (options, abort) => teardown(held, abort, options.keep, io),
    // A second interrupt exits at once: the private servers must not outlive it.
    onSecondSignal: cleanupAllPrivateServersSync,
  });
}
