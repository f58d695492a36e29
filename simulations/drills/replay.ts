/**
 * The replay drill: the books rebuilt from the EXECUTIONS stream alone (and
 * the reference data) must equal the books the live run built.
 *
 * A scenario runs end to end (simulations/run.ts: its own database and
 * namespace, books checked exactly), its fills with the market's busts,
 * corrections and cancels among them (amend-scenario.ts; `--amend-bps 0`:
 * fills only); then, with the service stopped: a digest
 * of every actor's state; every derived table truncated; the run's durable
 * consumers deleted (and, for --from-seq / --from-time, re-created at that
 * point); a fresh service replays the stream into fresh actors; a digest
 * again. The two digests must be equal.
 *
 *   npm run drill -- replay [--json] [--fills N] [--accounts N] [--orders N] [--full] ...
 */
import type { AllocationPolicy } from '../../actors/block-order/average.ts';
import { isAmendment, type Entry } from '../../actors/block-order/decider.ts';
import type { AllocationObserver } from '../../actors/protocol.ts';
import type { Database } from '../../persistence/db.ts';
import { NOT_DERIVED_TABLES } from '../../persistence/migrations/index.ts';
import { streamNames, type Config } from '../../system/config.ts';
import { ensureConsumers, openJetStream, type NatsHandles } from '../../system/jetstream.ts';
import { createLogger } from '../../system/log.ts';
import { openDatabase, startService } from '../../system/service.ts';
import { checkInvariants } from '../invariants.ts';
import { monotonicClock, runScenario } from '../run.ts';
import { entriesByOrderOf, entriesOf, generateScenario, type Scenario } from '../scenario.ts';
import {
  parseDrillOptions,
  round1,
  until,
  UsageError,
  usageResult,
  type DrillIO,
  type DrillResult,
} from './common.ts';
import { amendmentCounts, COUNT_OF_KIND, type AmendmentCounts } from './books.ts';
import { digestBooks } from './digest.ts';
import {
  AMEND_OPTION_RULES,
  AMEND_USAGE,
  amendSharesOf,
  POLICY_OPTION_RULES,
  POLICY_USAGE,
  policyName,
  policyOfOptions,
  withDrillAmendments,
  withPolicy,
  type AmendShares,
} from './harness.ts';
import { untilConfirmed, untilConsumersQuiet } from './sandbox.ts';

export const REPLAY_USAGE = `npm run drill -- replay [--json] [--fills N] [--accounts N] [--orders N]
    [--securities N] [--seed N] [--full] [--from-seq N | --from-time ISO]
    [--amend-bps N] [--cancel-bps N] [--policy pro-rata|avg-price] [--release-every-fills N]
    [--timeout-ms MS] [--keep]

Runs a scenario (fills, with the market's busts, corrections and cancels among
them), digests every account's and block order's state (folded from
the journal), truncates every derived table (all but the reference data),
replays the EXECUTIONS stream into fresh actors and digests again. Exit 0 only
if the digests are equal and the books of both runs are exact.

  --fills N  (default 2000)   --accounts N (default 200)   --orders N (default 20)
  --securities N (default 10) --seed N (default 42)
  --full              50,000 fills, 2,000 accounts, 200 orders, 50 securities
  --from-seq N        replay from stream sequence N instead of the start
  --from-time ISO     replay from that time instead of the start
                      (either one skips the fills before it: the digests then
                      differ unless nothing before it is needed; see docs/DRILLS.md)
  --timeout-ms MS     bound on each wait (default 120000)
  --keep              keep the run's database (its name is printed)
${AMEND_USAGE}
${POLICY_USAGE}`;

const FULL = { fills: 50_000, accounts: 2_000, orders: 200, securities: 50 };

interface ReplayOptions {
  scenario: Parameters<typeof generateScenario>[0];
  amend: AmendShares;
  policy: AllocationPolicy;
  fromSeq?: number;
  fromTime?: string;
  timeoutMs: number;
  keep: boolean;
  help: boolean;
}

export function parseReplayOptions(argv: string[]): ReplayOptions {
  const { numbers, values } = parseDrillOptions(
    argv,
    {
      fills: { fallback: 2_000, min: 1, max: 10_000_000 },
      accounts: { fallback: 200, min: 1, max: 10_000_000 },
      orders: { fallback: 20, min: 1, max: 1_000_000 },
      securities: { fallback: 10, min: 1, max: 100_000 },
      seed: { fallback: 42, min: 0, max: 2 ** 31 },
      'from-seq': { fallback: 0, min: 1, max: Number.MAX_SAFE_INTEGER },
      'timeout-ms': { fallback: 120_000, min: 1_000, max: 3_600_000 },
      ...AMEND_OPTION_RULES,
      ...POLICY_OPTION_RULES,
    },
    {
      full: { type: 'boolean' },
      keep: { type: 'boolean' },
      'from-time': { type: 'string' },
      policy: { type: 'string' },
    },
  );
  const given = (name: string) => argv.some((a) => a === `--${name}` || a.startsWith(`--${name}=`));
  const fromTime = values['from-time'] as string | undefined;
  if (fromTime !== undefined && Number.isNaN(Date.parse(fromTime)))
    throw new UsageError(`--from-time must be an ISO date-time, got ${fromTime}`);
  if (fromTime !== undefined && given('from-seq'))
    throw new UsageError('give --from-seq or --from-time, not both');
  const size = values.full
    ? FULL
    : {
        fills: numbers.fills,
        accounts: numbers.accounts,
        orders: numbers.orders,
        securities: numbers.securities,
      };
  if (values.full && ['fills', 'accounts', 'orders', 'securities'].some(given))
    throw new UsageError(
      '--full sets the size: leave out --fills, --accounts, --orders, --securities',
    );
  return {
    scenario: { ...size, blockOrders: size.orders, seed: numbers.seed },
    amend: amendSharesOf(numbers, values),
    policy: policyOfOptions(numbers, values),
    ...(given('from-seq') ? { fromSeq: numbers['from-seq'] } : {}),
    ...(fromTime !== undefined ? { fromTime: new Date(fromTime).toISOString() } : {}),
    timeoutMs: numbers['timeout-ms'],
    keep: values.keep === true,
    help: values.help === true,
  };
}

interface Rebuild {
  digestBefore: string;
  digestAfter: string;
  keys: { accounts: number; blockOrders: number };
  keysAfter: { accounts: number; blockOrders: number };
  eventsBefore: number;
  events: number;
  /** Settled in the replay, by kind (fills and amendments). */
  settled: Settled;
  seconds: number;
  truncated: string[];
  from: string;
  /** Messages before --from-seq / --from-time, acked unread. */
  skipped: number;
  drained: boolean;
  invariantsAfter?: { ok: boolean; checks: number; violations: string[] } & AmendmentCounts;
}

export async function runReplayDrill(argv: string[], io: DrillIO): Promise<DrillResult> {
  let options: ReplayOptions;
  try {
    options = parseReplayOptions(argv);
  } catch (error) {
    if (error instanceof UsageError) return usageResult(REPLAY_USAGE, error);
    throw error;
  }
  if (options.help) return usageResult(REPLAY_USAGE);
  const amended = withDrillAmendments(generateScenario(options.scenario), options.amend);
  const scenario = withPolicy(amended, options.policy);
  let rebuild: Rebuild | undefined;
  const live = await runScenario({
    scenario,
    tag: 'replay',
    keepDatabase: options.keep,
    publishInFlightMax: 1_000,
    settleTimeoutMs: options.timeoutMs,
    checkInvariants: true,
    // Fastify logs to stdout: silent, so that --json prints one object.
    env: { ...process.env, LOG_LEVEL: 'silent' },
    progress: io.progress,
    afterStop: async (config) => {
      rebuild = await rebuildFromStream(config, scenario, options, io);
    },
  });
  if (!rebuild) throw new Error('the scenario ended without the rebuild');
  return report(live, rebuild, amendmentCounts(entriesOf(scenario)), options.policy);
}

type LiveRun = Awaited<ReturnType<typeof runScenario>>;

/** Each published bust, correction and cancel is in the journal of a run: as many of each. */
function amendmentFailures(
  what: string,
  journaled: AmendmentCounts | undefined,
  published: AmendmentCounts,
): string[] {
  if (!journaled) return [];
  const counts = pickCounts(journaled);
  return JSON.stringify(counts) === JSON.stringify(published)
    ? []
    : [
        `${what}: amendments published ${JSON.stringify(published)}, journaled ${JSON.stringify(counts)}`,
      ];
}

const pickCounts = (c: AmendmentCounts): AmendmentCounts => ({
  busts: c.busts,
  corrections: c.corrections,
  cancels: c.cancels,
});

function report(
  live: LiveRun,
  r: Rebuild,
  published: AmendmentCounts,
  policy: AllocationPolicy,
): DrillResult {
  const equal = r.digestBefore === r.digestAfter;
  const failures: string[] = [];
  if (!live.invariantsOk)
    failures.push(...(live.invariants?.violations ?? []).map((v) => `live run books: ${v}`));
  failures.push(...amendmentFailures('live run', live.invariants, published));
  failures.push(...amendmentFailures('replayed books', r.invariantsAfter, published));
  if (!equal) {
    const skipped =
      r.from === 'start'
        ? ''
        : ` (the replay started at ${r.from}: fills before it were not replayed)`;
    failures.push(`digest after the replay differs from before${skipped}`);
  }
  if (r.invariantsAfter && !r.invariantsAfter.ok)
    failures.push(...r.invariantsAfter.violations.map((v) => `replayed books: ${v}`));
  if (!r.drained)
    failures.push(
      r.from === 'start'
        ? `only ${r.settled.entries} messages settled within the timeout`
        : 'messages stayed unsettled: fills whose order lost its earlier fills (before the start) cannot apply',
    );
  const eventsPerSec = r.seconds > 0 ? Math.round(r.events / r.seconds) : 0;
  const json = {
    events: r.events,
    /** Settled in the replay: messages, and the fills and amendments among them. */
    entries: r.settled.entries,
    fills: r.settled.fills,
    busts: r.settled.busts,
    corrections: r.settled.corrections,
    cancels: r.settled.cancels,
    /** The amendments the stream carries (a full replay settles every one). */
    published,
    eventsPerSec,
    seconds: round1(r.seconds),
    digestBefore: r.digestBefore,
    digestAfter: r.digestAfter,
    equal,
    from: r.from,
    skippedMessages: r.skipped,
    eventsBefore: r.eventsBefore,
    keys: r.keys,
    truncatedTables: r.truncated,
    liveRun: liveRunFigures(live),
    policy: policyName(policy),
    invariantsAfterOk: r.invariantsAfter?.ok ?? null,
    ok: failures.length === 0,
  };
  const s = r.settled;
  const summary = [
    `live run (${json.policy}): ${live.fills} messages at ${live.fillsPerSec}/s (${kinds(json.liveRun)}), books ${live.invariantsOk ? 'exact' : 'WRONG'}`,
    `truncated: ${r.truncated.join(', ')}`,
    `replay from ${r.from}: ${s.entries} messages (${kinds(s)}), ${r.events} journal rows in ${json.seconds} s (${eventsPerSec} events/s)`,
    `digest before ${r.digestBefore}`,
    `digest after  ${r.digestAfter}  ${equal ? 'equal' : 'DIFFERENT'}`,
    `${r.keys.accounts} accounts and ${r.keys.blockOrders} block orders digested` +
      (r.invariantsAfter ? `; replayed books ${r.invariantsAfter.ok ? 'exact' : 'WRONG'}` : ''),
  ];
  return { ok: failures.length === 0, json, summary, failures };
}

const kinds = (c: { fills: number | null } & AmendmentCounts) =>
  `${c.fills} fills, ${c.busts} busts, ${c.corrections} corrections, ${c.cancels} cancels`;

/** The live run's figures; fills and amendments as its journal holds them. */
function liveRunFigures(live: LiveRun) {
  const i = live.invariants;
  return {
    entries: live.fills,
    entriesPerSec: live.fillsPerSec,
    fills: i?.fills ?? null,
    busts: i?.busts ?? 0,
    corrections: i?.corrections ?? 0,
    cancels: i?.cancels ?? 0,
    averageReleases: i?.averageReleases ?? 0,
    releaseAmendments: i?.releaseAmendments ?? 0,
    invariantsOk: live.invariantsOk,
  };
}

async function countJournal(db: Database): Promise<number> {
  const [row] = await db.query<{ n: string }>('SELECT count(*)::text AS n FROM journal');
  return Number(row?.n ?? 0);
}

/**
 * Empties every table that is not reference data: the journal, snapshots and
 * whatever derived table a later migration adds (read from the catalog, so
 * it is covered without a change here). Returns the tables emptied.
 */
export async function truncateDerivedTables(db: Database): Promise<string[]> {
  const rows = await db.query<{ table_name: string }>(
    `SELECT table_name FROM information_schema.tables
     WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY table_name`,
  );
  const keep = new Set(NOT_DERIVED_TABLES);
  const derived = rows.map((r) => r.table_name).filter((t) => !keep.has(t));
  if (derived.length === 0) return [];
  const quoted = derived.map((t) => `"${t.replace(/"/g, '""')}"`);
  await db.query(`TRUNCATE TABLE ${quoted.join(', ')}`);
  return derived;
}

/** Where a replay starts: the first message it takes. */
interface ReplayStart {
  seq?: number;
  /** ISO date-time. */
  time?: string;
}

/**
 * Deletes the run's durable consumers, so the service re-creates them at the
 * start of the stream. For a replay from a point, they are re-created here
 * exactly as the service creates them (ensureConsumers: a durable with
 * another deliver policy makes its add() fail on NATS 2.9, "deliver policy
 * can not be updated") and every message before the point is acked, unread
 * by any actor. Returns how many were skipped.
 */
async function resetDurables(
  nats: NatsHandles,
  config: Config,
  from: ReplayStart,
): Promise<number> {
  const names = streamNames(config);
  for (let p = 0; p < config.partitions; p++) {
    await nats.jsm.consumers
      .delete(names.executions, `${names.durablePrefix}_P${p}`)
      .catch((error: Error) => {
        if (!/not found/i.test(error.message)) throw error;
      });
  }
  if (from.seq === undefined && from.time === undefined) return 0;
  const before = beforeStart(from);
  const skip = await countBeforeStart(nats, config, before);
  const durables = await ensureConsumers(nats.jsm, names, config);
  for (const [p, durable] of durables.entries()) {
    await ackUnread(nats, names.executions, durable, skip[p] ?? 0, before);
  }
  return skip.reduce((a, b) => a + b, 0);
}

type Before = (m: { seq: number; timestampNanos: bigint }) => boolean;

function beforeStart(from: ReplayStart): Before {
  if (from.seq !== undefined) {
    const seq = from.seq;
    return (m) => m.seq < seq;
  }
  const nanos = BigInt(Date.parse(from.time ?? '')) * 1_000_000n;
  return (m) => m.timestampNanos < nanos;
}

/** Messages before the start, per partition (an ordered consumer reads the stream's head). */
async function countBeforeStart(
  nats: NatsHandles,
  config: Config,
  before: Before,
): Promise<number[]> {
  const names = streamNames(config);
  const counts = new Array<number>(config.partitions).fill(0);
  const { last_seq: lastSeq, messages } = (await nats.jsm.streams.info(names.executions)).state;
  if (messages === 0) return counts;
  const reader = await nats.js.consumers.get(names.executions, { headers_only: true });
  const partitionAt = names.subjectRoot.split('.').length;
  for (;;) {
    let last = 0;
    const batch = await reader.fetch({ max_messages: 1_000, expires: 2_000 });
    for await (const m of batch) {
      last = m.seq;
      if (!before(m)) return counts;
      const p = Number(m.subject.split('.')[partitionAt]);
      counts[p] = (counts[p] ?? 0) + 1;
      if (m.seq >= lastSeq) return counts;
    }
    if (last === 0) throw new Error('the stream stopped delivering before its last message');
  }
}

/** Takes `count` messages from `durable` and acks them unread; each must lie before the start. */
async function ackUnread(
  nats: NatsHandles,
  stream: string,
  durable: string,
  count: number,
  before: Before,
): Promise<void> {
  const consumer = await nats.js.consumers.get(stream, durable);
  let acked = 0;
  while (acked < count) {
    const batch = await consumer.fetch({
      max_messages: Math.min(1_000, count - acked),
      expires: 2_000,
    });
    let got = 0;
    for await (const m of batch) {
      if (!before(m)) throw new Error(`${durable}: stream seq ${m.seq} is not before the start`);
      m.ack();
      got++;
    }
    if (got === 0)
      throw new Error(`${durable}: ${count - acked} messages before the start did not come`);
    acked += got;
  }
  await nats.nc.flush();
  await until(
    `${durable}: the skipped messages acknowledged`,
    async () =>
      (await nats.jsm.consumers.info(stream, durable)).num_ack_pending === 0 ? true : undefined,
    20_000,
  );
}

/** Fills the durables will deliver: what is pending on them before anything is consumed. */
async function pendingOnDurables(nats: NatsHandles, config: Config): Promise<number> {
  const names = streamNames(config);
  let pending = 0;
  for (let p = 0; p < config.partitions; p++) {
    const info = await nats.jsm.consumers.info(names.executions, `${names.durablePrefix}_P${p}`);
    pending += info.num_pending;
  }
  return pending;
}

/** Messages settled in the replay, by kind. */
export interface Settled extends AmendmentCounts {
  entries: number;
  fills: number;
}

/** Counts settled entries (each order's seq once), by kind, from what the stream carries there. */
class SettleCounter implements AllocationObserver {
  readonly #seen = new Set<string>();
  readonly #entriesByOrder: ReadonlyMap<string, readonly Entry[]>;
  readonly counts: Settled = { entries: 0, fills: 0, busts: 0, corrections: 0, cancels: 0 };
  lastSettledAtMs = 0;

  constructor(scenario: Scenario) {
    this.#entriesByOrder = entriesByOrderOf(scenario);
  }

  fillSettled(blockOrderId: string, seq: number, atMs: number): void {
    const key = `${blockOrderId}#${seq}`;
    this.lastSettledAtMs = atMs;
    if (this.#seen.has(key)) return;
    this.#seen.add(key);
    this.counts.entries++;
    const entry = this.#entriesByOrder.get(blockOrderId)?.[seq - 1];
    if (entry && isAmendment(entry)) this.counts[COUNT_OF_KIND[entry.kind]]++;
    else this.counts.fills++;
  }
  accountLineDurable(): void {}
  get settled(): number {
    return this.#seen.size;
  }
}

async function rebuildFromStream(
  config: Config,
  scenario: Scenario,
  options: ReplayOptions,
  io: DrillIO,
): Promise<Rebuild> {
  const db = await openDatabase(config, 4);
  const nats = await openJetStream(config, 'blockfill-replay-drill');
  try {
    io.progress('digesting the live books ...');
    const before = await digestBooks(db);
    const eventsBefore = await countJournal(db);
    const truncated = await truncateDerivedTables(db);
    io.progress(`truncated ${truncated.join(', ')}`);
    const skipped = await resetDurables(nats, config, {
      seq: options.fromSeq,
      time: options.fromTime,
    });
    if (skipped > 0) io.progress(`skipped ${skipped} messages before the start`);
    const replayed = await replayService(config, scenario, options, nats, io);
    io.progress('digesting the replayed books ...');
    const after = await digestBooks(db);
    return {
      ...{ digestBefore: before.digest, digestAfter: after.digest, eventsBefore, truncated },
      keys: { accounts: before.accounts, blockOrders: before.blockOrders },
      keysAfter: { accounts: after.accounts, blockOrders: after.blockOrders },
      events: await countJournal(db),
      skipped,
      from:
        options.fromSeq !== undefined ? `seq ${options.fromSeq}` : (options.fromTime ?? 'start'),
      ...replayed,
    };
  } finally {
    await nats.nc.close().catch(() => undefined);
    await db.close();
  }
}

/** Settings of the replaying service for a replay from a point: fills whose predecessors were skipped are dead-lettered quickly. */
const PARTIAL_REPLAY = {
  consumerDeliveriesMax: 3,
  consumerNakDelayMs: 20,
  consumerAckWaitMs: 1_000,
};

async function replayService(
  config: Config,
  scenario: Scenario,
  options: ReplayOptions,
  nats: NatsHandles,
  io: DrillIO,
): Promise<Pick<Rebuild, 'settled' | 'seconds' | 'drained' | 'invariantsAfter'>> {
  const partial = options.fromSeq !== undefined || options.fromTime !== undefined;
  const total = partial
    ? await pendingOnDurables(nats, config)
    : (await nats.jsm.streams.info(streamNames(config).executions)).state.messages;
  io.progress(`replaying ${total} messages into fresh actors ...`);
  // Fastify logs to stdout: silent, so that --json prints one object; the service's log goes to stderr.
  const serviceConfig: Config = {
    ...config,
    logLevel: 'silent',
    ...(partial ? PARTIAL_REPLAY : {}),
  };
  const counter = new SettleCounter(scenario);
  const log = createLogger((process.env.LOG_LEVEL as 'error' | undefined) ?? 'error', {
    service: 'blockfill',
  });
  const t0Ms = monotonicClock.nowMs();
  const service = await startService(serviceConfig, {
    observer: counter,
    clock: monotonicClock,
    log,
  });
  const ticker = setInterval(
    () => io.progress(`  settled ${counter.settled}/${total} messages`),
    2_000,
  );
  try {
    let drained: boolean;
    if (partial) {
      const stats = service.consumer.stats;
      const moved = () => counter.settled + stats.deadLettered + stats.acked;
      const quiet = await untilConsumersQuiet(nats, config, moved, {
        quietMs: 5_000,
        timeoutMs: options.timeoutMs,
      });
      drained = quiet.drained;
    } else {
      drained = await until(
        'every replayed message settled',
        () => (counter.settled >= total ? true : undefined),
        options.timeoutMs,
      ).catch(() => false);
    }
    await untilConfirmed(service.db, options.timeoutMs);
    await service.journal.drain();
    const seconds = (monotonicClock.nowMs() - t0Ms) / 1000;
    const invariantsAfter = partial
      ? undefined
      : await checkInvariants({
          db: service.db,
          app: service.app,
          seed: scenario.seed,
          fillsByOrder: entriesByOrderOf(scenario),
          idPrefix: '',
        });
    return { settled: { ...counter.counts }, seconds, drained, invariantsAfter };
  } finally {
    clearInterval(ticker);
    await service.stop();
  }
}
