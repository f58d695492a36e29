/**
 * A trading day as a runnable Scenario (simulations/scenario.ts): the world,
 * one day's rebalancing into block orders, and that day's tape, gathered into
 * the reference data and the publish order that runScenario and the invariant
 * checker take. Gathered in memory: for the sizes a single run checks
 * exactly (tens of thousands of accounts); the million-account scenario needs
 * the streaming path (not built yet).
 */
import type { Fill } from '../../actors/block-order/decider.ts';
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
}

export interface TradingDayScenario {
  scenario: Scenario;
  rebalance: RebalanceSummary;
  tape: TapeSummary;
  /** When each fill of the publish order is due (the tape's stream shape). */
  schedule: Schedule;
}

export function tradingDayScenario(
  options: Partial<TradingDayScenarioOptions> = {},
): TradingDayScenario {
  const world = buildWorld(options.world ?? {});
  const dayIndex = options.dayIndex ?? 0;
  const day = rebalanceDay(world, dayIndex, options.groups ?? DEFAULT_GROUPS);
  const tape = buildTape(world, dayIndex, day.blockOrders, options.tape ?? {});
  invariant(
    tape.summary.fills <= GATHERED_FILLS_MAX,
    `${tape.summary.fills} fills: more than a gathered scenario holds (${GATHERED_FILLS_MAX})`,
  );
  const publishOrder: Fill[] = [];
  const fillsByOrder = new Map<string, Fill[]>(day.blockOrders.map((o) => [o.id, []]));
  for (const { fill } of tapeFills(tape)) {
    publishOrder.push(fill);
    fillsByOrder.get(fill.blockOrderId)?.push(fill);
  }
  invariant(publishOrder.length === tape.summary.fills, 'the tape yielded its summary count');
  const seed: SeedData = {
    securities: toSeedSecurities(world.securities),
    accounts: tradingAccounts(world, day.blockOrders),
    blockOrders: day.blockOrders,
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
    },
    rebalance: day.summary,
    tape: tape.summary,
    schedule: tape.schedule,
  };
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
