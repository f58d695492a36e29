/**
 * Rebalancing for one trading day: criteria groups pick the accounts that
 * drifted from their model, each picked account gets buy and sell
 * quantities in whole lots within its holdings and cash, and the lines are
 * aggregated into one block order per (security, side), as reference data
 * the block-order actors read.
 *
 * Definitions (tested in test/trading-day-rebalance.test.ts):
 * - Everything is priced at the day's OPEN. An account's value is its cash
 *   plus its positions at the open.
 * - A security's drift is |actual weight - target weight| in basis points of
 *   the account's value (target 0 for a security outside the model), rounded
 *   half-to-even. An account's drift is the MAX over its securities, not the
 *   sum: a tolerance band is breached when any one position is out of line,
 *   and the max does not grow with the number of securities in the model.
 * - A trade is the difference to the target value, rounded to the NEAREST
 *   whole lot. A sell is then capped at the whole lots held; the buys are
 *   capped, together, at the cash left after the account's sells (cashDelta,
 *   the actors' own rule): scaled down pro rata when they do not fit, then
 *   trimmed a lot at a time from the last until they do.
 * - An account rebalances at most once a day: the first group that selects it.
 */
import { cashDelta, notionalMinor, roundHalfEven, type Side } from '../../actors/domain/money.ts';
import { assertNever, invariant } from '../../actors/errors.ts';
import type { SeedData } from '../../persistence/reference.ts';
import {
  MICRO_PER_MINOR,
  WEIGHT_TOTAL_BPS,
  streamAccounts,
  type HoldingAccount,
  type ModelPortfolio,
} from './holdings.ts';
import { barOf } from './market.ts';
import { TRADING_DAY_LIMITS, tradeDateOf } from './options.ts';
import type { World } from './world.ts';

export const Eligibility = {
  /** Only accounts whose eligibility flag is set. */
  Required: 'REQUIRED',
  /** Eligible or not. */
  Any: 'ANY',
} as const;
export type Eligibility = (typeof Eligibility)[keyof typeof Eligibility];

export type ModelSelector = { kind: 'ANY' } | { kind: 'IN'; modelIds: readonly string[] };

export interface CriteriaGroup {
  id: string;
  models: ModelSelector;
  eligibility: Eligibility;
  /** Selected when the account's drift is at least this. */
  minDriftBps: number;
}

export interface AccountTrade {
  securityIndex: number;
  side: Side;
  quantity: bigint;
  /** The day's open: what the limits were checked at. */
  priceMicro: bigint;
}

/** One security of an account, priced at the day's open. */
interface Holding {
  securityIndex: number;
  lotSize: bigint;
  priceMicro: bigint;
  heldQuantity: bigint;
  targetBps: number;
}

const BPS = BigInt(WEIGHT_TOTAL_BPS);
const modelIndexes = new WeakMap<World, Map<string, ModelPortfolio>>();

function modelOf(world: World, modelId: string): ModelPortfolio {
  let byId = modelIndexes.get(world);
  if (byId === undefined) {
    byId = new Map(world.models.map((m) => [m.id, m]));
    modelIndexes.set(world, byId);
  }
  const model = byId.get(modelId);
  invariant(model !== undefined, `unknown model ${modelId}`);
  return model;
}

/** The model's securities and the held ones, merged in security order, at the day's open. */
function holdingsOf(world: World, account: HoldingAccount, dayIndex: number): Holding[] {
  const targets = modelOf(world, account.modelId).weights;
  const holdings: Holding[] = [];
  let t = 0;
  let p = 0;
  while (t < targets.length || p < account.positions.length) {
    const target = targets[t];
    const position = account.positions[p];
    const securityIndex = Math.min(
      target?.securityIndex ?? Infinity,
      position?.securityIndex ?? Infinity,
    );
    const security = world.securities[securityIndex];
    invariant(security !== undefined, `account ${account.id}: no security ${securityIndex}`);
    const inModel = target?.securityIndex === securityIndex;
    const held = position?.securityIndex === securityIndex;
    holdings.push({
      securityIndex,
      lotSize: security.lotSize,
      priceMicro: barOf(world.market, securityIndex, dayIndex).openMicro,
      heldQuantity: held ? (position?.quantity ?? 0n) : 0n,
      targetBps: inModel ? (target?.weightBps ?? 0) : 0,
    });
    if (inModel) t++;
    if (held) p++;
  }
  return holdings;
}

/** Cash plus positions at the open, in micro-currency (price units times shares). */
function valueMicroOf(account: HoldingAccount, holdings: readonly Holding[]): bigint {
  let valueMicro = account.cashMinor * MICRO_PER_MINOR;
  for (const h of holdings) valueMicro += h.heldQuantity * h.priceMicro;
  invariant(valueMicro >= 0n, `account ${account.id}: negative value`);
  return valueMicro;
}

/** The account's drift at the day's open: the max over its securities (see the header). */
export function driftBpsOf(world: World, account: HoldingAccount, dayIndex: number): number {
  return maxDriftBps(account, holdingsOf(world, account, dayIndex));
}

/** The drift the account would have at the open once `trades` were done there (its cash moved too). */
export function driftAfterBpsOf(
  world: World,
  account: HoldingAccount,
  dayIndex: number,
  trades: readonly AccountTrade[],
): number {
  let cashMinor = account.cashMinor;
  const holdings = holdingsOf(world, account, dayIndex).map((h) => {
    const t = trades.find((x) => x.securityIndex === h.securityIndex);
    if (!t) return h;
    cashMinor += cashDelta(t.side, t.quantity, t.priceMicro);
    const signed = t.side === 'BUY' ? t.quantity : -t.quantity;
    return { ...h, heldQuantity: h.heldQuantity + signed };
  });
  return maxDriftBps({ ...account, cashMinor }, holdings);
}

function maxDriftBps(account: HoldingAccount, holdings: readonly Holding[]): number {
  const valueMicro = valueMicroOf(account, holdings);
  if (valueMicro === 0n) return 0; // nothing to weigh: an empty account cannot drift
  let driftBps = 0n;
  for (const h of holdings) {
    const gap = h.heldQuantity * h.priceMicro * BPS - BigInt(h.targetBps) * valueMicro;
    const bps = roundHalfEven(gap < 0n ? -gap : gap, valueMicro);
    if (bps > driftBps) driftBps = bps;
  }
  invariant(driftBps <= BPS, `account ${account.id}: drift ${driftBps} bps > 100 %`);
  return Number(driftBps);
}

/** What a buy's cost depends on. */
export interface Lot {
  lotSize: bigint;
  priceMicro: bigint;
}

/** Cost in cents of buying `lots` lots: the cash the account decider will take. */
const buyCostMinor = (h: Lot, lots: bigint): bigint =>
  -cashDelta('BUY', lots * h.lotSize, h.priceMicro);

/**
 * Lots per wished buy, cut to fit `cashMinor`: pro rata (every buy keeps the
 * same share of its wish), then a lot at a time from the last until the
 * cents, rounded per line as the actors round them, fit.
 */
export function fitBuys<H extends Lot>(
  wishes: ReadonlyArray<{ holding: H; lots: bigint }>,
  cashMinor: bigint,
): Array<{ holding: H; lots: bigint }> {
  invariant(cashMinor >= 0n, `fitBuys: negative cash ${cashMinor}`);
  const wishedMinor = wishes.reduce((s, w) => s + buyCostMinor(w.holding, w.lots), 0n);
  const fitted = wishes.map((w) => ({
    holding: w.holding,
    lots: wishedMinor <= cashMinor ? w.lots : (w.lots * cashMinor) / wishedMinor,
  }));
  // Each line's cost rounds half-even to the cent, so the scaled sum can still be
  // over by up to half a cent a line: trim until it fits.
  let spentMinor = fitted.reduce((s, f) => s + buyCostMinor(f.holding, f.lots), 0n);
  for (let i = fitted.length - 1; i >= 0 && spentMinor > cashMinor; i--) {
    const f = fitted[i];
    while (f !== undefined && f.lots > 0n && spentMinor > cashMinor) {
      spentMinor -= buyCostMinor(f.holding, f.lots) - buyCostMinor(f.holding, f.lots - 1n);
      f.lots -= 1n;
    }
  }
  invariant(spentMinor <= cashMinor, `fitBuys: ${spentMinor} spent of ${cashMinor}`);
  return fitted;
}

/**
 * The trades that bring the account back to its model at the day's open, in
 * security order, within its holdings and cash (see the header).
 */
export function planTrades(
  world: World,
  account: HoldingAccount,
  dayIndex: number,
): AccountTrade[] {
  const holdings = holdingsOf(world, account, dayIndex);
  const valueMicro = valueMicroOf(account, holdings);
  const trades: AccountTrade[] = [];
  const wishes: Array<{ holding: Holding; lots: bigint }> = [];
  let cashMinor = account.cashMinor;
  for (const h of holdings) {
    const gapMicro = (BigInt(h.targetBps) * valueMicro) / BPS - h.heldQuantity * h.priceMicro;
    const lots = roundHalfEven(gapMicro, h.priceMicro * h.lotSize);
    if (lots > 0n) wishes.push({ holding: h, lots });
    if (lots >= 0n) continue;
    const heldLots = h.heldQuantity / h.lotSize;
    const quantity = (-lots < heldLots ? -lots : heldLots) * h.lotSize;
    if (quantity === 0n) continue;
    cashMinor += cashDelta('SELL', quantity, h.priceMicro);
    trades.push({
      securityIndex: h.securityIndex,
      side: 'SELL',
      quantity,
      priceMicro: h.priceMicro,
    });
  }
  for (const { holding: h, lots } of fitBuys(wishes, cashMinor)) {
    if (lots === 0n) continue;
    const quantity = lots * h.lotSize;
    trades.push({
      securityIndex: h.securityIndex,
      side: 'BUY',
      quantity,
      priceMicro: h.priceMicro,
    });
  }
  invariant(
    trades.every((t) => t.quantity > 0n),
    `account ${account.id}: a zero trade`,
  );
  return trades.sort((a, b) => a.securityIndex - b.securityIndex);
}

export interface GroupCount {
  groupId: string;
  /** Accounts this group rebalances (no earlier group took them). */
  selected: number;
  /** Accounts this group would have selected, already taken by an earlier group. */
  alreadyTaken: number;
}

export interface RebalanceSummary {
  tradeDate: string;
  accountsScanned: number;
  accountsEligible: number;
  groups: GroupCount[];
  /** Selected accounts with at least one trade (lot rounding can leave none). */
  accountsTrading: number;
  orders: number;
  lines: number;
  buyNotionalMinor: bigint;
  sellNotionalMinor: bigint;
  /** Per model: each trading account's drift before and after its trades, in bps (bounded: see DRIFT_SAMPLES_MAX). */
  driftByModel: Map<string, { before: number[]; after: number[] }>;
}

/** Drift samples kept per model: enough for percentiles, bounded for a million accounts. */
export const DRIFT_SAMPLES_MAX = 100_000;

export interface RebalanceResult {
  blockOrders: SeedData['blockOrders'];
  summary: RebalanceSummary;
}

function checkGroups(world: World, groups: readonly CriteriaGroup[]): void {
  invariant(groups.length <= TRADING_DAY_LIMITS.groupsMax, `more than groupsMax groups`);
  invariant(new Set(groups.map((g) => g.id)).size === groups.length, 'group ids must be unique');
  for (const g of groups) {
    invariant(Number.isSafeInteger(g.minDriftBps), `group ${g.id}: minDriftBps not an integer`);
    invariant(g.minDriftBps >= 0 && g.minDriftBps <= WEIGHT_TOTAL_BPS, `group ${g.id}: 0..10000`);
    if (g.models.kind === 'IN') for (const id of g.models.modelIds) modelOf(world, id); // throws on an unknown model
  }
}

/** Whether the group's model and eligibility criteria take the account (drift aside). */
function criteriaMatch(group: CriteriaGroup, account: HoldingAccount): boolean {
  const { models, eligibility } = group;
  let modelOk: boolean;
  switch (models.kind) {
    case 'ANY':
      modelOk = true;
      break;
    case 'IN':
      modelOk = models.modelIds.includes(account.modelId);
      break;
    default:
      return assertNever(models, 'model selector');
  }
  switch (eligibility) {
    case Eligibility.Required:
      return modelOk && account.eligible;
    case Eligibility.Any:
      return modelOk;
    default:
      return assertNever(eligibility, 'eligibility');
  }
}

/** Index of the first group that selects the account, or -1; counts every group that would. */
function selectGroup(
  world: World,
  groups: readonly CriteriaGroup[],
  counts: GroupCount[],
  account: HoldingAccount,
  dayIndex: number,
): number {
  let driftBps: number | undefined; // measured once, and only if a group's criteria match
  let chosen = -1;
  groups.forEach((group, g) => {
    if (!criteriaMatch(group, account)) return;
    driftBps ??= driftBpsOf(world, account, dayIndex);
    if (driftBps < group.minDriftBps) return;
    const count = counts[g];
    invariant(count !== undefined, `no count for group ${group.id}`);
    if (chosen === -1) {
      chosen = g;
      count.selected += 1;
    } else count.alreadyTaken += 1;
  });
  return chosen;
}

function sampleDrift(
  byModel: RebalanceSummary['driftByModel'],
  world: World,
  account: HoldingAccount,
  dayIndex: number,
  trades: readonly AccountTrade[],
): void {
  const samples = byModel.get(account.modelId) ?? { before: [], after: [] };
  byModel.set(account.modelId, samples);
  if (samples.before.length >= DRIFT_SAMPLES_MAX) return;
  samples.before.push(driftBpsOf(world, account, dayIndex));
  samples.after.push(driftAfterBpsOf(world, account, dayIndex, trades));
}

/** Deterministic: the same (prefix, day, security, side) always names the same order. */
export function blockOrderIdOf(
  world: World,
  tradeDate: string,
  securityIndex: number,
  side: Side,
): string {
  const security = world.securities[securityIndex];
  invariant(security !== undefined, `blockOrderIdOf: no security ${securityIndex}`);
  return `${world.options.idPrefix}BO-${tradeDate.replaceAll('-', '')}-${security.ticker}-${side}`;
}

/** Targets sorted by account id, each account once (an account rebalances once a day). */
function inAccountOrder<T extends { accountId: string }>(orderId: string, targets: T[] = []): T[] {
  targets.sort((a, b) => (a.accountId < b.accountId ? -1 : a.accountId > b.accountId ? 1 : 0));
  for (let i = 1; i < targets.length; i++)
    invariant(
      (targets[i - 1]?.accountId ?? '') < (targets[i]?.accountId ?? ''),
      `${orderId}: account ${targets[i]?.accountId} twice`,
    );
  invariant(targets.length > 0, `${orderId}: no targets`);
  return targets;
}

/** Order key: security-major, BUY before SELL, so sorting keys sorts the orders. */
const orderKey = (securityIndex: number, side: Side): number =>
  securityIndex * 2 + (side === 'BUY' ? 0 : 1);

/**
 * Rebalances day `dayIndex`: streams `accounts` (by default every account of
 * the world, one at a time), keeps only the order lines, and returns one
 * block order per (security, side) with its targets in account order.
 */
export function rebalanceDay(
  world: World,
  dayIndex: number,
  groups: readonly CriteriaGroup[],
  accounts: Iterable<HoldingAccount> = streamAccounts(world),
): RebalanceResult {
  checkGroups(world, groups);
  const tradeDate = tradeDateOf(world.options, dayIndex);
  const counts = groups.map((g) => ({ groupId: g.id, selected: 0, alreadyTaken: 0 }));
  const lines = new Map<number, Array<{ accountId: string; quantity: bigint }>>();
  const summary: RebalanceSummary = {
    ...{ tradeDate, accountsScanned: 0, accountsEligible: 0, groups: counts, accountsTrading: 0 },
    ...{ orders: 0, lines: 0, buyNotionalMinor: 0n, sellNotionalMinor: 0n },
    driftByModel: new Map(),
  };
  for (const account of accounts) {
    summary.accountsScanned += 1;
    if (account.eligible) summary.accountsEligible += 1;
    if (selectGroup(world, groups, counts, account, dayIndex) === -1) continue;
    const trades = planTrades(world, account, dayIndex);
    if (trades.length > 0) {
      summary.accountsTrading += 1;
      sampleDrift(summary.driftByModel, world, account, dayIndex, trades);
    }
    for (const t of trades) {
      const key = orderKey(t.securityIndex, t.side);
      const targets = lines.get(key) ?? [];
      if (targets.length === 0) lines.set(key, targets);
      targets.push({ accountId: account.id, quantity: t.quantity });
      const notionalMinorOfLine = notionalMinor(t.quantity, t.priceMicro);
      if (t.side === 'BUY') summary.buyNotionalMinor += notionalMinorOfLine;
      else summary.sellNotionalMinor += notionalMinorOfLine;
      summary.lines += 1;
    }
    invariant(summary.lines <= TRADING_DAY_LIMITS.linesMax, `more than linesMax order lines`);
  }
  const blockOrders = [...lines.keys()]
    .sort((a, b) => a - b)
    .map((key) => {
      const securityIndex = Math.floor(key / 2);
      const side: Side = key % 2 === 0 ? 'BUY' : 'SELL';
      const securityId = world.securities[securityIndex]?.id ?? '';
      const id = blockOrderIdOf(world, tradeDate, securityIndex, side);
      return { id, securityId, side, tradeDate, targets: inAccountOrder(id, lines.get(key)) };
    });
  summary.orders = blockOrders.length;
  return { blockOrders, summary };
}
