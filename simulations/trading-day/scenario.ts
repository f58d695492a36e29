/**
 * A trading day as a runnable Scenario (simulations/scenario.ts): the world,
 * one day's rebalancing into block orders, and that day's tape, gathered into
 * the reference data and the publish order that runScenario and the invariant
 * checker take. Gathered in memory: for the sizes a single run checks
 * exactly (tens of thousands of accounts); the million-account scenario needs
 * the streaming path (not built yet).
 */
import { PRO_RATA, type AllocationPolicy } from '../../actors/block-order/average.ts';
import { isAmendment, type Entry, type Fill } from '../../actors/block-order/decider.ts';
import { invariant } from '../../actors/errors.ts';
import type { SeedData } from '../../persistence/reference.ts';
import { defaultScenario, type Scenario } from '../scenario.ts';
import { streamAccounts, toSeedAccount } from './holdings.ts';
import type { TradingDayOptions } from './options.ts';
import {
  Eligibility,
  rebalanceDay,
  type CriteriaGroup,
  type RebalanceSummary,
} from './rebalance.ts';
import { toSeedSecurities } from './reference.ts';
import type { Schedule } from './shape.ts';
import { buildTape, tapeFills, type TapeOptions, type TapeSummary } from './tape.ts';
import { buildWorld } from './world.ts';
import { barOf } from './market.ts';
import {
  amendedTape,
  defaultAmendOptions,
  type AmendCounts,
  type AmendOptions,
} from './amendments.ts';

/** Fills a gathered scenario may hold (each is kept in memory twice). */
export const GATHERED_FILLS_MAX = 2_000_000;

/** The default day: eligible accounts of every model that drifted 2 % or more. */
export const DEFAULT_GROUPS: readonly CriteriaGroup[] = [
  { id: 'drifted', models: { kind: 'ANY' }, eligibility: Eligibility.Required, minDriftBps: 200 },
];

export interface TradingDayScenarioOptions {
  world: Partial<TradingDayOptions>;
  tape: Partial<TapeOptions>;
  groups: readonly CriteriaGroup[];
  dayIndex: number;
  /** The market's busts, corrections and cancels; null: a tape of fills only. */
  amend: Partial<AmendOptions> | null;
  /** Send only the first this many fills of the tape (and the amendments among them). */
  fillsMax: number;
  /**
   * How the block orders allocate (reference data). Average price: every
   * order's day ends with a cancel of its remainder (a day order expiring),
   * which releases what it still accumulates.
   */
  policy: AllocationPolicy;
}

export interface TradingDayScenario {
  scenario: Scenario;
  rebalance: RebalanceSummary;
  tape: TapeSummary;
  /** When each fill of the publish order is due (the tape's stream shape). */
  schedule: Schedule;
  /** When entry i of what is published (amendments included) is due, in ms from the start. */
  sendOffsetsMs: readonly number[];
  amendments: AmendCounts;
}

export function tradingDayScenario(
  options: Partial<TradingDayScenarioOptions> = {},
): TradingDayScenario {
  const world = buildWorld(options.world ?? {});
  const dayIndex = options.dayIndex ?? 0;
  const day = rebalanceDay(world, dayIndex, options.groups ?? DEFAULT_GROUPS);
  const tape = buildTape(world, dayIndex, day.blockOrders, options.tape ?? {});
  const fillsMax = Math.min(options.fillsMax ?? Infinity, tape.summary.fills);
  invariant(
    fillsMax <= GATHERED_FILLS_MAX,
    `${fillsMax} fills: more than a gathered scenario holds (${GATHERED_FILLS_MAX}); use fillsMax`,
  );
  const amend = options.amend === undefined ? {} : options.amend;
  const policy = options.policy ?? PRO_RATA;
  const dayGathered = gather(tape, day.blockOrders, amend, fillsMax);
  const gathered = policy.kind === 'PRO_RATA' ? dayGathered : withCloses(dayGathered);
  const { publishOrder, fillsByOrder } = gathered;
  invariant(publishOrder.length === fillsMax, 'the tape yielded the fills asked for');
  const seed: SeedData = {
    securities: toSeedSecurities(world.securities),
    accounts: tradingAccounts(world, day.blockOrders),
    blockOrders:
      policy.kind === 'PRO_RATA' ? day.blockOrders : day.blockOrders.map((o) => ({ ...o, policy })),
  };
  return {
    scenario: {
      options: {
        ...defaultScenario,
        seed: world.options.seed,
        securities: seed.securities.length,
        accounts: seed.accounts.length,
        blockOrders: seed.blockOrders.length,
        fills: publishOrder.length,
        idPrefix: world.options.idPrefix,
      },
      seed,
      fillsByOrder,
      publishOrder,
      ...(gathered.amended ? { amended: gathered.amended } : {}),
      rebalancePrices: new Map(
        world.securities.map((sec) => [sec.id, barOf(world.market, sec.index, dayIndex).openMicro]),
      ),
    },
    rebalance: day.summary,
    tape: tape.summary,
    schedule: tape.schedule,
    sendOffsetsMs: gathered.sendOffsetsMs,
    amendments: gathered.amended?.counts ?? { busts: 0, corrections: 0, cancels: 0 },
  };
}

/** The tape in memory: fills by order, and with amendments, every entry in publish order. */
function gather(
  tape: ReturnType<typeof buildTape>,
  blockOrders: SeedData['blockOrders'],
  amend: Partial<AmendOptions> | null,
  fillsMax: number,
) {
  const publishOrder: Fill[] = [];
  const fillsByOrder = new Map<string, Fill[]>(blockOrders.map((o) => [o.id, []]));
  const sendOffsetsMs: number[] = [];
  if (amend === null) {
    for (const { fill, sendOffsetMs } of tapeFills(tape)) {
      if (publishOrder.length >= fillsMax) break;
      publishOrder.push(fill);
      fillsByOrder.get(fill.blockOrderId)?.push(fill);
      sendOffsetsMs.push(sendOffsetMs);
    }
    return { publishOrder, fillsByOrder, sendOffsetsMs, amended: undefined };
  }
  const counts: AmendCounts = { busts: 0, corrections: 0, cancels: 0 };
  const entries: Entry[] = [];
  const entriesByOrder = new Map<string, Entry[]>(blockOrders.map((o) => [o.id, []]));
  const options = { ...defaultAmendOptions, ...amend };
  for (const { entry, sendOffsetMs } of amendedTape(tape, tapeFills(tape), options, counts)) {
    // A prefix of the day: its amendments all name fills inside it.
    if (!isAmendment(entry) && publishOrder.length >= fillsMax) break;
    entries.push(entry);
    entriesByOrder.get(entry.blockOrderId)?.push(entry);
    sendOffsetsMs.push(sendOffsetMs);
    if (isAmendment(entry)) continue;
    publishOrder.push(entry);
    fillsByOrder.get(entry.blockOrderId)?.push(entry);
  }
  const amended = { publishOrder: entries, entriesByOrder, counts };
  return { publishOrder, fillsByOrder, sendOffsetsMs, amended };
}

type Gathered = ReturnType<typeof gather>;

/**
 * The close of an average-price day: a cancel of the remainder at the end of
 * every order not cancelled already, sent after the last entry.
 */
function withCloses(g: Gathered): Gathered {
  const entriesByOrder = new Map<string, Entry[]>(
    g.amended
      ? [...g.amended.entriesByOrder].map(([id, entries]) => [id, [...entries]])
      : [...g.fillsByOrder].map(([id, fills]) => [id, [...fills]]),
  );
  const entries: Entry[] = [...(g.amended?.publishOrder ?? g.publishOrder)];
  const counts = { ...(g.amended?.counts ?? { busts: 0, corrections: 0, cancels: 0 }) };
  const sendOffsetsMs = [...g.sendOffsetsMs];
  const lastOffsetMs = sendOffsetsMs.at(-1) ?? 0;
  for (const [blockOrderId, list] of entriesByOrder) {
    if (list.some((e) => isAmendment(e) && e.kind === 'CANCEL')) continue;
    const last = list.at(-1);
    const close: Entry = {
      kind: 'CANCEL',
      amendmentId: `${blockOrderId}-CLOSE`,
      blockOrderId,
      seq: list.length + 1,
      executedAtMs: (last?.executedAtMs ?? 0) + 1,
    };
    list.push(close);
    entries.push(close);
    sendOffsetsMs.push(lastOffsetMs);
    counts.cancels++;
  }
  const amended = { publishOrder: entries, entriesByOrder, counts };
  return { ...g, sendOffsetsMs, amended };
}

/** The accounts the day's block orders serve (the only ones whose books change). */
function tradingAccounts(
  world: ReturnType<typeof buildWorld>,
  blockOrders: SeedData['blockOrders'],
): SeedData['accounts'] {
  const ids = new Set(blockOrders.flatMap((o) => o.targets.map((t) => t.accountId)));
  const accounts: SeedData['accounts'] = [];
  for (const account of streamAccounts(world)) {
    if (ids.has(account.id)) accounts.push(toSeedAccount(world, account));
  }
  invariant(accounts.length === ids.size, 'every target account exists in the world');
  return accounts;
}
