/**
 * The kill drill: the service as a child process, SIGKILLed K times at
 * random moments (before it is ready, while it catches up, in steady state)
 * and restarted each time, while this process streams fills into JetStream
 * at a steady rate whatever the child is doing, with the market's busts,
 * corrections and cancels among them (amend-scenario.ts; `--amend-bps 0`:
 * fills only). Afterwards: nothing lost, nothing applied twice, every
 * invariant exact (every amendment reflected), nothing dead-lettered; and
 * how long each restart took to be ready and to catch up, and how many
 * redeliveries the crashes cost.
 *
 *   npm run drill -- kill [--json] [--kills K] [--rate msgs/s] [--fills N] ...
 *
 * Everything is measured from outside the child (its counters die with it):
 * what was applied from the database (live: the execution index, one row per
 * fill or amendment applied; at the end: the journal itself, folded),
 * deliveries from the JetStream server's consumer state.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { AllocationPolicy } from '../../actors/block-order/average.ts';
import type { Database } from '../../persistence/db.ts';
import { migrate } from '../../persistence/migrate.ts';
import { seedReferenceData } from '../../persistence/reference.ts';
import { loadConfig, streamNames, type Config } from '../../system/config.ts';
import { ensureStreams, openJetStream, type NatsHandles } from '../../system/jetstream.ts';
import { openDatabase } from '../../system/service.ts';
import { percentiles, round3 } from '../arms/common.ts';
import { entriesOf, prng, type Scenario } from '../scenario.ts';
import {
  claimNamespace,
  deleteStreams,
  dropDatabase,
  freshDatabase,
  databaseNameOf,
  runNames,
  withDatabaseName,
} from '../support.ts';
import {
  verdictFailures,
  verdictFigures,
  verifyRun,
  type Verdict,
  type VerdictFigures,
} from './books.ts';
import { ChildService, describeExit, freePort, type ChildExit } from './child-service.ts';
import { parseDrillOptions, type DrillIO, type DrillResult } from './common.ts';
import {
  AMEND_OPTION_RULES,
  AMEND_USAGE,
  POLICY_OPTION_RULES,
  POLICY_USAGE,
  policyName,
  policyOfOptions,
  withPolicy,
  amendSharesOf,
  drillScenario,
  endChildren,
  FillFeed,
  HOST,
  jetStreamFeed,
  pause,
  REPO_ROOT,
  runGuarded,
  SERVICE_ENTRY,
  stopService,
  whileAlive,
  withDrillAmendments,
  type AmendShares,
  type ScenarioSize,
  type ServiceEnd,
} from './harness.ts';
import { untilConfirmed } from './sandbox.ts';

/** How a life is ended: what the plan asked for (the phase actually hit is recorded apart). */
export const KillMode = {
  /** Within 100 ms of the spawn: before it is ready. */
  Starting: 'starting',
  /** Just after it is ready, while it works off the backlog of its outage. */
  Recovering: 'recovering',
  /** After it caught up, at a random moment. */
  Steady: 'steady',
} as const;
export type KillMode = (typeof KillMode)[keyof typeof KillMode];

/** Where the child was when the SIGKILL landed. */
export const Phase = {
  NotReady: 'notReady',
  Recovering: 'recovering',
  Steady: 'steady',
} as const;
export type Phase = (typeof Phase)[keyof typeof Phase];

/** The performance targets: reported met / not met, not part of `ok`. */
export const Targets = {
  readyMsP99: 2_000,
  catchUpSecondsP99: 10,
  /** "No nak storm": on average at most one redelivery per message (fill or amendment) over the run. */
  naksPerFill: 1,
} as const;

/** Every wait of the drill is bounded. */
const Limits = {
  readyTimeoutMs: 60_000,
  /** The resolution of ready times; probing faster only steals CPU from the booting child. */
  readyPollMs: 25,
  /** A steady kill waits for catch-up at most this long, then kills anyway (recorded). */
  catchUpWaitMaxMs: 60_000,
  drainTimeoutMs: 180_000,
  confirmTimeoutMs: 60_000,
  /** SIGTERM → exit; the service's own shutdown bound is ask timeout + 10 s. */
  stopTimeoutMs: 30_000,
  reapTimeoutMs: 5_000,
  /** The resolution of catch-up times. */
  meterIntervalMs: 200,
  meterFailuresMax: 5,
  /**
   * Caught up = allocated ≥ published this long ago: back at the offered rate
   * with at most this much lag (a fill's latency on a quiet machine is ~20 ms;
   * on a busy one it reaches hundreds of ms without any backlog building).
   */
  catchUpSlackMs: 1_000,
  /**
   * No buffer beyond what is in flight (behind, the schedule lags); every
   * publish failing for 30 s ends the drill (NATS is not meant to go away here).
   */
  feed: { inFlightMax: 64, bufferMax: 64, publishTimeoutMs: 5_000, failingForMaxMs: 30_000 },
  startingKillWithinMs: 100,
  recoveringKillWithinMs: 300,
  /** A steady life runs this long after catching up, uniformly at random. */
  steadyDwellMinMs: 1_000,
  steadyDwellMaxMs: 4_000,
  /** Publishing goes on this long after the last child is ready, then stops. */
  tailPublishMs: 5_000,
} as const;

/** The service's own default: the drill measures what ships. */
const DEFAULT_ACK_WAIT_MS = loadConfig({}).consumerAckWaitMs;

export const USAGE = `npm run drill -- kill [--json] [--kills K] [--rate MSGS_PER_S] [--fills N]
    [--accounts N] [--orders N] [--securities N] [--seed N] [--ack-wait-ms MS]
    [--amend-bps N] [--cancel-bps N] [--policy pro-rata|avg-price] [--release-every-fills N] [--keep]

Runs the service as a child process (node system/main.ts), SIGKILLs it K times
(default 20) at seeded random moments and restarts it, while fills, with the
market's busts, corrections and cancels among them, stream into JetStream at a
steady rate (default 400 messages/s). Then checks that no fill or amendment was
lost, none applied twice, every invariant holds (every amendment reflected) and
nothing was dead-lettered, and reports ready time, catch-up time and
redeliveries per message.
Publishing goes on until ${Limits.tailPublishMs / 1000} s after the last restart is ready; --fills caps the
scenario's fills (default rate x (10 s per kill + 60 s)). --ack-wait-ms is the child's
CONSUMER_ACK_WAIT_MS (default ${DEFAULT_ACK_WAIT_MS}: a SIGKILLed child's unacked messages wait
that long before the server redelivers them); --keep keeps the database and streams.
${AMEND_USAGE}
${POLICY_USAGE}`;

export interface KillOptions extends ScenarioSize {
  kills: number;
  /** Messages per second: fills and amendments. */
  ratePerSec: number;
  amend: AmendShares;
  policy: AllocationPolicy;
  ackWaitMs: number;
  keep: boolean;
  help: boolean;
}

/** Parses the drill's options (`--json` is accepted and left to the command line); throws UsageError. */
export function parseKillOptions(
  argv: string[],
  env: Record<string, string | undefined> = process.env,
): KillOptions {
  const { numbers: n, values } = parseDrillOptions(
    argv,
    {
      kills: { fallback: 20, min: 0, max: 1_000 },
      rate: { fallback: 400, min: 1, max: 100_000 },
      // 0: derived from kills and rate below.
      fills: { fallback: 0, min: 1, max: 10_000_000 },
      accounts: { fallback: 2_000, min: 1, max: 10_000_000 },
      orders: { fallback: 200, min: 1, max: 1_000_000 },
      securities: { fallback: 50, min: 1, max: 100_000 },
      seed: { fallback: 42, min: 0, max: 2 ** 31 },
      'ack-wait-ms': {
        fallback: Number(env.CONSUMER_ACK_WAIT_MS) || DEFAULT_ACK_WAIT_MS,
        min: 1_000,
        max: 3_600_000,
      },
      ...AMEND_OPTION_RULES,
      ...POLICY_OPTION_RULES,
    },
    { keep: { type: 'boolean' }, policy: { type: 'string' } },
  );
  return {
    kills: n.kills,
    ratePerSec: n.rate,
    fills: n.fills || n.rate * (n.kills * 10 + 60),
    accounts: n.accounts,
    orders: n.orders,
    securities: n.securities,
    seed: n.seed,
    ackWaitMs: n['ack-wait-ms'],
    amend: amendSharesOf(n, values),
    policy: policyOfOptions(n, values),
    keep: values.keep === true,
    help: values.help === true,
  };
}

/** The modes of K kills: an even mix of the three, in a seeded random order. */
export function planKills(kills: number, rnd: () => number): KillMode[] {
  const modes = [KillMode.Starting, KillMode.Recovering, KillMode.Steady];
  const plan = Array.from({ length: kills }, (_, i) => modes[i % modes.length] ?? KillMode.Steady);
  for (let i = plan.length - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [plan[i], plan[j]] = [plan[j] ?? KillMode.Steady, plan[i] ?? KillMode.Steady];
  }
  return plan;
}

interface Sample {
  /** performance.now() when the count query started: the count is at least this fresh. */
  atMs: number;
  allocated: number;
}

/** Polls the count of applied entries (fills and amendments); `next()` waits for the next sample. */
class AllocationMeter {
  latest: Sample = { atMs: 0, allocated: 0 };
  readonly #db: Database;
  readonly #signal: AbortSignal;
  readonly #waiters: Array<{ resolve(s: Sample): void; reject(e: unknown): void }> = [];
  #failure: unknown;
  #stopped = false;
  readonly done: Promise<void>;

  constructor(db: Database, signal: AbortSignal) {
    this.#db = db;
    this.#signal = signal;
    this.done = this.#run();
  }

  next(): Promise<Sample> {
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }

  stop(): void {
    this.#stopped = true;
  }

  async #run(): Promise<void> {
    let failures = 0;
    try {
      while (!this.#stopped) {
        const atMs = performance.now();
        try {
          this.latest = { atMs, allocated: await countAllocated(this.#db) };
          failures = 0;
          for (const w of this.#waiters.splice(0)) w.resolve(this.latest);
        } catch (error) {
          if (++failures >= Limits.meterFailuresMax) throw error;
        }
        await sleep(Limits.meterIntervalMs, undefined, { signal: this.#signal });
      }
      throw new Error('the allocation meter was stopped');
    } catch (error) {
      this.#failure = error;
      for (const w of this.#waiters.splice(0)) w.reject(error);
    }
  }
}

/**
 * Entries applied so far: fills and amendments, the count the feed's
 * `published` is compared with. The execution index holds one row per entry
 * (a fill id or an amendment id), written in the same commit as the journal
 * row that applied it, so its count is the count of those rows; it is a
 * narrow table, where counting the journal's rows (wide, with payloads)
 * costs ~100 ms per poll at 100k rows and would eat the CPU the service
 * under test needs. The final checks fold the journal itself.
 */
async function countAllocated(db: Database): Promise<number> {
  const rows = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM executions');
  return rows[0]?.n ?? 0;
}

export interface LifeRecord {
  life: number;
  pid: number;
  port: number;
  /** The planned kill, or `final` for the last child (stopped with SIGTERM). */
  mode: KillMode | 'final';
  /** Seconds since the drill started publishing. */
  spawnedAtS: number;
  /** Published minus allocated when it was spawned. */
  backlogAtSpawn: number;
  /** Spawn → /readyz 200; null if it was killed first. */
  readyMs: number | null;
  /**
   * Spawn → the first sample, once ready, where every fill published before
   * the spawn is allocated and allocation is within catchUpSlackMs of
   * publishing; null if it was killed first.
   */
  catchUpMs: number | null;
  /**
   * A steady life that had not caught up after catchUpWaitMaxMs: how long it
   * had been running then (a lower bound of its catch-up time, counted as one).
   */
  catchUpAtLeastMs: number | null;
  killedAfterMs: number | null;
  phaseAtKill: Phase | null;
  backlogAtKill: number | null;
  exit: ChildExit | null;
}

/** One child's life: its watchers record ready and catch-up times as they happen. */
class Life {
  readonly record: LifeRecord;
  readonly child: ChildService;
  /** When we signalled it; samples from then on no longer count for it. */
  endedAtMs: number | undefined;
  readonly ready: Promise<{ ok: true } | { ok: false; error: unknown }>;
  readonly caughtUp: Promise<unknown>;
  readonly #publishedAtSpawn: number;

  constructor(ctx: Ctx, child: ChildService, record: LifeRecord) {
    this.child = child;
    this.record = record;
    this.#publishedAtSpawn = ctx.feed.published;
    this.ready = child
      .waitReady({
        url: `http://${HOST}:${record.port}/readyz`,
        timeoutMs: Limits.readyTimeoutMs,
        pollMs: Limits.readyPollMs,
        signal: ctx.signal,
      })
      .then(
        (ms) => {
          record.readyMs = round3(ms);
          return { ok: true as const };
        },
        (error: unknown) => ({ ok: false as const, error }),
      );
    this.caughtUp = this.#watchCatchUp(ctx).catch((error: unknown) => error);
  }

  get phase(): Phase {
    if (this.record.readyMs === null) return Phase.NotReady;
    return this.record.catchUpMs === null ? Phase.Recovering : Phase.Steady;
  }

  async #watchCatchUp(ctx: Ctx): Promise<void> {
    const spawnedAtMs = this.child.spawnedAtMs;
    for (;;) {
      const s = await ctx.meter.next();
      if (this.endedAtMs !== undefined && s.atMs >= this.endedAtMs) return;
      if (!this.child.alive) return;
      // Caught up: everything published before the spawn is allocated (the
      // outage's backlog is worked off) and allocation keeps pace with new fills.
      const due = Math.max(
        this.#publishedAtSpawn,
        ctx.feed.publishedAt(s.atMs - Limits.catchUpSlackMs),
      );
      // Only a child that is ready (consuming) can be back at the offered rate.
      const readyAtMs = this.record.readyMs === null ? Infinity : spawnedAtMs + this.record.readyMs;
      if (s.atMs >= readyAtMs && s.allocated >= due) {
        this.record.catchUpMs = round3(s.atMs - spawnedAtMs);
        return;
      }
    }
  }
}

interface Ctx {
  options: KillOptions;
  config: Config;
  db: Database;
  nats: NatsHandles;
  feed: FillFeed;
  meter: AllocationMeter;
  rnd: () => number;
  signal: AbortSignal;
  io: DrillIO;
  lives: Life[];
  t0Ms: number;
}

async function spawnLife(ctx: Ctx, index: number, mode: LifeRecord['mode']): Promise<Life> {
  const port = await freePort(HOST);
  const child = await ChildService.spawn({
    entry: SERVICE_ENTRY,
    cwd: REPO_ROOT,
    env: {
      ...process.env,
      DATABASE_URL: ctx.config.databaseUrl,
      BLOCKFILL_NAMESPACE: ctx.config.namespace,
      PORT: String(port),
      HOST,
      CONSUMER_ACK_WAIT_MS: String(ctx.options.ackWaitMs),
    },
  });
  const backlog = ctx.feed.published - ctx.meter.latest.allocated;
  const record: LifeRecord = {
    life: index,
    pid: child.pid,
    port,
    mode,
    spawnedAtS: round3((child.spawnedAtMs - ctx.t0Ms) / 1000),
    backlogAtSpawn: Math.max(0, backlog),
    readyMs: null,
    catchUpMs: null,
    catchUpAtLeastMs: null,
    killedAfterMs: null,
    phaseAtKill: null,
    backlogAtKill: null,
    exit: null,
  };
  const life = new Life(ctx, child, record);
  ctx.lives.push(life);
  return life;
}

/** Waits for `work`, but fails at once if the child exits by itself meanwhile. */
const alive = <T>(life: Life, work: Promise<T>): Promise<T> =>
  whileAlive(life.child, work, `life ${life.record.life}`);

async function untilReady(life: Life): Promise<void> {
  // A child that exited by itself makes `alive` throw with its output.
  const ready = await alive(life, life.ready);
  if (!ready.ok) throw ready.error;
}

/** Waits for catch-up at most `timeoutMs`; returns whether it caught up. */
async function untilCaughtUp(ctx: Ctx, life: Life, timeoutMs: number): Promise<boolean> {
  const timedOut = pause(ctx.signal, timeoutMs).then(() => 'timeout' as const);
  const outcome = await alive(life, Promise.race([life.caughtUp, timedOut]));
  if (outcome === 'timeout') return false;
  if (outcome !== undefined) throw outcome;
  return life.record.catchUpMs !== null;
}

async function untilKillMoment(ctx: Ctx, life: Life, mode: KillMode): Promise<void> {
  switch (mode) {
    case KillMode.Starting:
      return alive(life, pause(ctx.signal, ctx.rnd() * Limits.startingKillWithinMs));
    case KillMode.Recovering:
      await untilReady(life);
      return alive(life, pause(ctx.signal, ctx.rnd() * Limits.recoveringKillWithinMs));
    case KillMode.Steady: {
      await untilReady(life);
      if (!(await untilCaughtUp(ctx, life, Limits.catchUpWaitMaxMs))) {
        life.record.catchUpAtLeastMs = round3(performance.now() - life.child.spawnedAtMs);
        ctx.io.progress(`  life ${life.record.life}: not caught up after the wait; killing anyway`);
      }
      const { steadyDwellMinMs: min, steadyDwellMaxMs: max } = Limits;
      return alive(life, pause(ctx.signal, min + ctx.rnd() * (max - min)));
    }
    default: {
      const never: never = mode;
      throw new Error(`unknown kill mode ${String(never)}`);
    }
  }
}

async function killLife(ctx: Ctx, life: Life): Promise<void> {
  const r = life.record;
  const atMs = performance.now();
  r.phaseAtKill = life.phase;
  r.backlogAtKill = Math.max(0, ctx.feed.published - ctx.meter.latest.allocated);
  life.endedAtMs = atMs;
  r.exit = await life.child.kill(Limits.reapTimeoutMs);
  r.killedAfterMs = round3(atMs - life.child.spawnedAtMs);
  await life.ready;
  await life.caughtUp;
}

function describeLife(r: LifeRecord): string {
  const ms = (x: number | null) => (x === null ? '-' : `${Math.round(x)} ms`);
  const end =
    r.mode === 'final'
      ? 'stopped with SIGTERM'
      : `SIGKILL (${r.mode}, hit ${r.phaseAtKill}) after ${ms(r.killedAfterMs)}, backlog ${r.backlogAtKill}`;
  return `  life ${r.life} pid ${r.pid}: ready ${ms(r.readyMs)}, caught up ${ms(r.catchUpMs)}, ${end}`;
}

/** K lives ended by SIGKILL, then the last one, left running for the drain. */
async function runLives(ctx: Ctx): Promise<Life> {
  const plan = planKills(ctx.options.kills, ctx.rnd);
  ctx.io.progress(`kill plan: ${plan.join(', ') || '(none)'}`);
  for (let i = 0; i < plan.length; i++) {
    const mode = plan[i] ?? KillMode.Steady;
    const life = await spawnLife(ctx, i, mode);
    await untilKillMoment(ctx, life, mode);
    await killLife(ctx, life);
    ctx.io.progress(describeLife(life.record));
  }
  const last = await spawnLife(ctx, plan.length, 'final');
  await untilReady(last);
  ctx.io.progress(
    `all ${plan.length} kills done; ${ctx.feed.published} messages published, ` +
      `${ctx.meter.latest.allocated} applied; publishing ${Limits.tailPublishMs / 1000} s more, then draining ...`,
  );
  return last;
}

/** Publishing ends after a last stretch; every fill is allocated and every allocation confirmed; bounded. */
async function drain(ctx: Ctx, last: Life): Promise<void> {
  if (ctx.feed.endedAtMs === undefined) await alive(last, pause(ctx.signal, Limits.tailPublishMs));
  ctx.feed.stop();
  await alive(last, ctx.feed.done);
  const deadlineMs = performance.now() + Limits.drainTimeoutMs;
  for (;;) {
    const s = await alive(last, ctx.meter.next());
    if (s.allocated >= ctx.feed.published) break;
    if (performance.now() > deadlineMs)
      throw new Error(
        `only ${s.allocated}/${ctx.feed.published} entries applied ${Limits.drainTimeoutMs} ms after publishing ended`,
      );
  }
  await alive(last, untilConfirmed(ctx.db, Limits.confirmTimeoutMs));
}

async function stopLast(ctx: Ctx, last: Life): Promise<ServiceEnd> {
  last.endedAtMs = performance.now();
  const end = await stopService(last.child, Limits.stopTimeoutMs);
  last.record.exit = end.exit;
  await last.ready;
  await last.caughtUp;
  ctx.io.progress(describeLife(last.record));
  return end;
}

/** The checks of the books every drill shares, and the kill drill's own. */
function failuresOf(v: Verdict, stop: ServiceEnd): string[] {
  const failures = verdictFailures(v);
  // Fewer messages than published is a check of verdictFailures already.
  if (v.streamMessages > v.entriesPublished)
    failures.push(
      `the stream holds ${v.streamMessages} messages, ${v.entriesPublished} were published`,
    );
  if (!stop.graceful || stop.exit.code !== 0)
    failures.push(
      `the last child did not exit 0 within ${Limits.stopTimeoutMs} ms of SIGTERM (${describeExit(stop.exit)})`,
    );
  return failures;
}

const notNull = <T>(x: T | null): x is T => x !== null;

/**
 * From each kill that found the service caught up to the next moment some
 * life caught up: how long one crash, and any further crashes during its
 * recovery, kept the service below the offered rate.
 */
export function outagesMs(records: readonly LifeRecord[]): number[] {
  const out: number[] = [];
  let startMs: number | undefined;
  for (const r of records) {
    const spawnMs = r.spawnedAtS * 1000;
    if (startMs !== undefined && r.catchUpMs !== null) {
      out.push(spawnMs + r.catchUpMs - startMs);
      startMs = undefined;
    }
    if (startMs === undefined && r.phaseAtKill === Phase.Steady && r.killedAfterMs !== null)
      startMs = spawnMs + r.killedAfterMs;
  }
  return out;
}

function timing(records: LifeRecord[]) {
  const readyMs = records.map((r) => r.readyMs).filter(notNull);
  const catchUpMs = records.map((r) => r.catchUpMs ?? r.catchUpAtLeastMs).filter(notNull);
  const ready = percentiles(readyMs);
  const catchUp = percentiles(catchUpMs);
  const outages = percentiles(outagesMs(records));
  const seconds = (ms: number | undefined) => (ms === undefined ? null : round3(ms / 1000));
  const spread = (p: ReturnType<typeof percentiles>) => ({
    p50: seconds(p?.p50),
    p99: seconds(p?.p99),
    max: seconds(p?.max),
  });
  return {
    readyMsP99: ready?.p99 ?? null,
    catchUpSecondsP99: seconds(catchUp?.p99),
    readyMs: { p50: ready?.p50 ?? null, p99: ready?.p99 ?? null, max: ready?.max ?? null },
    catchUpSeconds: spread(catchUp),
    outageSeconds: spread(outages),
    /** Lives killed before they were ready / had caught up: no figure for them. */
    livesWithoutReady: records.length - readyMs.length,
    livesWithoutCatchUp: records.length - catchUpMs.length,
  };
}

function killsByPhase(records: LifeRecord[]): Record<Phase, number> {
  const out: Record<Phase, number> = { notReady: 0, recovering: 0, steady: 0 };
  for (const r of records) if (r.phaseAtKill) out[r.phaseAtKill]++;
  return out;
}

function drillConfig(ctx: Ctx) {
  const o = ctx.options;
  return {
    kills: o.kills,
    ratePerSec: o.ratePerSec,
    fills: o.fills,
    accounts: o.accounts,
    orders: o.orders,
    securities: o.securities,
    seed: o.seed,
    amendBps: o.amend.amendBps,
    cancelBps: o.amend.cancelBps,
    policy: policyName(o.policy),
    releaseEveryFills: o.policy.kind === 'AVERAGE_PRICE' ? o.policy.everyFills : null,
    partitions: ctx.config.partitions,
    consumerAckWaitMs: o.ackWaitMs,
    consumerNakDelayMs: ctx.config.consumerNakDelayMs,
    catchUpSlackMs: Limits.catchUpSlackMs,
    meterIntervalMs: Limits.meterIntervalMs,
    database: databaseNameOf(ctx.config.databaseUrl),
    namespace: ctx.config.namespace,
    kept: o.keep,
  };
}

type Timing = ReturnType<typeof timing>;
type Target = { max: number; met: boolean };

/** The drill's figures: the JSON of --json (a type, not an interface, so it is a plain record). */
export type KillReport = VerdictFigures & {
  kills: number;
  readyMsP99: number | null;
  catchUpSecondsP99: number | null;
  /** Every redelivery per published message (fill or amendment): naks and ack-wait expiries alike. */
  naksPerFill: number;
  deadLettered: number;
  deadLetterReasons: string[];
  duplicateFills: number;
  duplicateLines: number;
  unpublishedAllocations: number;
  redeliveries: number;
  deliveries: number;
  targets: { readyMsP99: Target; catchUpSecondsP99: Target; naksPerFill: Target };
  readyMs: Timing['readyMs'];
  catchUpSeconds: Timing['catchUpSeconds'];
  /** Kill in steady state → caught up again, across kills during the recovery (outagesMs). */
  outageSeconds: Timing['outageSeconds'];
  livesWithoutReady: number;
  livesWithoutCatchUp: number;
  killsByPhase: Record<Phase, number>;
  sigterm: { exitCode: number | null; signal: string | null; graceful: boolean; ms: number };
  invariantChecks: number;
  durationSeconds: number;
  /** When publishing ended (seconds since it started): after the kills, unless --fills ran out. */
  publishingEndedAtS: number | null;
  /** Kills with no fills flowing any more (--fills ran out first): they test less. */
  killsAfterPublishingEnded: number;
  config: ReturnType<typeof drillConfig>;
  timeline: LifeRecord[];
};

function buildReport(ctx: Ctx, v: Verdict, stop: ServiceEnd, durationMs: number): KillReport {
  const records = ctx.lives.map((l) => l.record);
  const t = timing(records);
  const naksPerFill = round3(v.redeliveries / Math.max(1, v.entriesPublished));
  const target = (x: number | null, max: number) => ({ max, met: x !== null && x <= max });
  const ended = ctx.feed.endedAtMs;
  const endedS = ended === undefined ? null : round3((ended - ctx.t0Ms) / 1000);
  return {
    kills: records.filter((r) => r.mode !== 'final' && r.exit !== null).length,
    ...verdictFigures(v),
    readyMsP99: t.readyMsP99,
    catchUpSecondsP99: t.catchUpSecondsP99,
    naksPerFill,
    deadLettered: v.deadLettered,
    deadLetterReasons: v.deadLetterReasons,
    duplicateFills: v.duplicated.length,
    duplicateLines: v.duplicateLines.repeats,
    unpublishedAllocations: v.unexpected.length,
    redeliveries: v.redeliveries,
    deliveries: v.deliveries,
    targets: {
      readyMsP99: target(t.readyMsP99, Targets.readyMsP99),
      catchUpSecondsP99: target(t.catchUpSecondsP99, Targets.catchUpSecondsP99),
      naksPerFill: target(naksPerFill, Targets.naksPerFill),
    },
    readyMs: t.readyMs,
    catchUpSeconds: t.catchUpSeconds,
    outageSeconds: t.outageSeconds,
    livesWithoutReady: t.livesWithoutReady,
    livesWithoutCatchUp: t.livesWithoutCatchUp,
    killsByPhase: killsByPhase(records),
    sigterm: {
      exitCode: stop.exit.code,
      signal: stop.exit.signal,
      graceful: stop.graceful,
      ms: stop.ms,
    },
    invariantChecks: v.invariants.checks,
    durationSeconds: round3(durationMs / 1000),
    publishingEndedAtS: endedS,
    killsAfterPublishingEnded: records.filter(
      (r) =>
        endedS !== null &&
        r.killedAfterMs !== null &&
        r.spawnedAtS + r.killedAfterMs / 1000 > endedS,
    ).length,
    config: drillConfig(ctx),
    timeline: records,
  };
}

function summaryLines(r: KillReport): string[] {
  const metText = (t: Target) => (t.met ? 'met' : 'NOT MET');
  const spread = (
    x: { p50: number | null; p99: number | null; max: number | null },
    unit: string,
  ) => (x.p99 === null ? '-' : `p50 ${x.p50} ${unit}, p99 ${x.p99} ${unit}, max ${x.max} ${unit}`);
  const p = r.killsByPhase;
  const c = r.config;
  const ranOut = r.killsAfterPublishingEnded;
  return [
    `kill drill: ${r.kills} SIGKILLs (${p.notReady} before ready, ${p.recovering} while catching up, ${p.steady} steady) at ${c.ratePerSec} messages/s over ${r.durationSeconds} s`,
    `messages published ${r.entriesPublished} (until ${r.publishingEndedAtS} s${ranOut > 0 ? `; --fills ran out before ${ranOut} kills` : ''}): ${r.fillsPublished} fills, ${r.busts} busts, ${r.corrections} corrections, ${r.cancels} cancels`,
    `applied ${r.entriesApplied} (${r.fillsAllocated} fills), lost ${r.lostFills} fills and ${r.lostAmendments} amendments, applied twice ${r.duplicateApplications}, dead-lettered ${r.deadLettered}`,
    `invariants ${r.invariantsOk ? 'ALL HOLD' : 'VIOLATED'} (${r.invariantChecks} exact checks)`,
    `ready (spawn -> /readyz 200): ${spread(r.readyMs, 'ms')}; target p99 <= ${r.targets.readyMsP99.max} ms: ${metText(r.targets.readyMsP99)} (${r.livesWithoutReady} lives killed before ready)`,
    `catch-up (spawn -> allocated = published): ${spread(r.catchUpSeconds, 's')}; target p99 <= ${r.targets.catchUpSecondsP99.max} s: ${metText(r.targets.catchUpSecondsP99)} (${r.livesWithoutCatchUp} lives killed before catching up; a steady life still behind after ${Limits.catchUpWaitMaxMs / 1000} s counts with the time it ran)`,
    `outage (SIGKILL in steady state -> caught up again, kills during recovery included): ${spread(r.outageSeconds, 's')}`,
    `redeliveries ${r.redeliveries} = ${r.naksPerFill} per message (every redelivery: naks and ack-wait expiries); target <= ${r.targets.naksPerFill.max}: ${metText(r.targets.naksPerFill)}`,
    `last child: SIGTERM -> exit ${r.sigterm.exitCode} in ${r.sigterm.ms} ms${r.sigterm.graceful ? '' : ' (NOT graceful)'}`,
    `allocation ${c.policy}${c.releaseEveryFills === null ? '' : ` (released every ${c.releaseEveryFills} fills)`}; child CONSUMER_ACK_WAIT_MS ${c.consumerAckWaitMs}, CONSUMER_NAK_DELAY_MS ${c.consumerNakDelayMs}, ${c.partitions} partitions; database ${c.database}${c.kept ? ' (kept)' : ' (dropped)'}`,
  ];
}

/** What a run holds, so the teardown can release it however the run ended. */
interface Held {
  db?: Database;
  nats?: NatsHandles;
  ctx?: Ctx;
  /** What this run created: only that is removed at the end (a name taken is another run's). */
  createdDatabase?: boolean;
  createdStreams?: boolean;
}

async function prepare(config: Config, scenario: Scenario, held: Held): Promise<void> {
  held.db = await openDatabase(config, 4);
  await migrate(held.db);
  await seedReferenceData(held.db, scenario.seed);
  held.nats = await openJetStream(config, 'blockfill-kill-drill');
  held.createdStreams = true;
  await ensureStreams(held.nats.jsm, streamNames(config), config.partitions, {
    replicas: config.streamReplicas,
    maxAgeMs: config.streamMaxAgeMs,
  });
}

/** The run's database and streams, the feed and the meter: everything but the children. */
async function start(run: KillRun, io: DrillIO, signal: AbortSignal, held: Held) {
  const { options, config } = run;
  const amended = withDrillAmendments(drillScenario(options), options.amend);
  const scenario = withPolicy(amended, options.policy);
  const entries = entriesOf(scenario);
  const c = scenario.amended?.counts ?? { busts: 0, corrections: 0, cancels: 0 };
  io.progress(
    `scenario: ${options.securities} securities, ${options.accounts} accounts, ${options.orders} block orders, up to ${scenario.publishOrder.length} fills with ${c.busts} busts, ${c.corrections} corrections, ${c.cancels} cancels at ${options.ratePerSec} messages/s, ${policyName(options.policy)}; database ${run.databaseName}, namespace ${config.namespace}`,
  );
  await claimNamespace(config, config.namespace);
  await freshDatabase(config.databaseUrl, run.databaseName);
  held.createdDatabase = true;
  await prepare(config, scenario, held);
  const { db, nats } = held;
  if (!db || !nats) throw new Error('prepare left no database or NATS connection');
  const feed = jetStreamFeed(nats.js, config, {
    ...{ fills: entries, ratePerSec: options.ratePerSec, signal },
    ...Limits.feed,
  });
  const ctx: Ctx = {
    ...{ options, config, db, nats, feed, signal, io, lives: [], t0Ms: feed.startedAtMs },
    meter: new AllocationMeter(db, signal),
    // A separate stream of randomness from the scenario's, same seed → same kills.
    rnd: prng(options.seed ^ 0x5eed_c0de),
  };
  held.ctx = ctx;
  return { ctx, scenario };
}

async function drill(
  run: KillRun,
  io: DrillIO,
  signal: AbortSignal,
  held: Held,
): Promise<DrillResult> {
  const { ctx, scenario } = await start(run, io, signal, held);
  const last = await runLives(ctx);
  await drain(ctx, last);
  const stop = await stopLast(ctx, last);
  const durationMs = performance.now() - ctx.t0Ms;
  ctx.meter.stop();
  const verdict = await verifyRun({ ...ctx, scenario, published: ctx.feed.published });
  const report = buildReport(ctx, verdict, stop, durationMs);
  const failures = failuresOf(verdict, stop);
  return { ok: failures.length === 0, json: report, summary: summaryLines(report), failures };
}

function abortedResult(
  message: string,
  ctx: Ctx | undefined,
): Pick<DrillResult, 'json' | 'summary'> {
  const timeline = ctx?.lives.map((l) => l.record) ?? [];
  const kills = timeline.filter((r) => r.mode !== 'final' && r.exit !== null).length;
  return {
    json: {
      kills,
      entriesPublished: ctx?.feed.published ?? 0,
      entriesApplied: ctx?.meter.latest.allocated ?? 0,
      invariantsOk: false,
      error: message,
      ...(ctx ? { config: drillConfig(ctx) } : {}),
      timeline,
    },
    summary: [`kill drill aborted after ${kills} kills: ${message.split('\n')[0]}`],
  };
}

/** Ends every child, the publishing and the meter; removes the run's streams and database. */
async function teardown(run: KillRun, held: Held, abort: AbortController, io: DrillIO) {
  const { config, databaseName, options } = run;
  await endChildren(held.ctx?.lives.map((l) => l.child) ?? [], abort);
  await held.ctx?.feed.done.catch(() => undefined);
  await held.ctx?.meter.done;
  await held.db?.close().catch(() => undefined);
  const nats =
    held.nats ?? (await openJetStream(config, 'blockfill-kill-cleanup').catch(() => undefined));
  if (nats) {
    if (!options.keep && held.createdStreams)
      await deleteStreams(nats.jsm, config.namespace).catch(() => undefined);
    await nats.nc.close().catch(() => undefined);
  }
  if (options.keep) io.progress(`kept database ${databaseName} and namespace ${config.namespace}`);
  else if (held.createdDatabase)
    await dropDatabase(run.baseUrl, databaseName).catch((error: Error) =>
      io.progress(`could not drop database ${databaseName}: ${error.message}`),
    );
}

/** The options, and the run's own database and namespace on the shared servers. */
interface KillRun {
  options: KillOptions;
  help: boolean;
  config: Config;
  /** The shared server's URL, to drop the run's database through. */
  baseUrl: string;
  databaseName: string;
}

function planRun(argv: string[]): KillRun {
  const options = parseKillOptions(argv);
  const base = loadConfig(process.env);
  const { databaseName, namespace } = runNames('kill');
  const config: Config = {
    ...base,
    databaseUrl: withDatabaseName(base.databaseUrl, databaseName),
    namespace,
  };
  return { options, help: options.help, config, baseUrl: base.databaseUrl, databaseName };
}

export function runKillDrill(argv: string[], io: DrillIO): Promise<DrillResult> {
  const held: Held = {};
  return runGuarded({
    ...{ argv, io, usage: USAGE, parse: planRun },
    run: (run, signal) => drill(run, io, signal, held),
    aborted: (message) => abortedResult(message, held.ctx),
    teardown: (run, abort) => teardown(run, held, abort, io),
  });
}
