/**
 * Fairness figures of an allocation policy, for the run report:
 * - price: each account's average price against the block's VWAP, as
 *   |avg_i - vwap| / vwap in basis points (largest, p99, histogram);
 * - fill rate: the largest |q_i / t_i - Q / T| over accounts (account filled
 *   quantity and target against the block's), 0..1.
 * Deviations are computed exactly (bigint fractions) and only turned into
 * numbers for the report, at REPORT_SCALE resolution.
 *
 * counterfactualFairness replays a tape's fills through either policy's pure
 * rule, so one run reports both policies from the same fills. It streams: one
 * order at a time; only the list of price deviations grows with the input.
 */
import { allocateFill, type AccountRemaining } from '../actors/domain/allocation.ts';
import {
  COMPLETION_ONLY,
  accumulate,
  emptyAccumulation,
  releaseAtAverage,
  releaseDue,
  validateAveragePricePolicy,
  type AveragePricePolicy,
} from '../actors/domain/average-price.ts';
import { absBig, roundHalfEven, type Side } from '../actors/domain/money.ts';
import { assertNever, invariant } from '../actors/errors.ts';

import type { FairnessFigures } from './report/types.ts';

/** The report's fairness figures: one type, with its schema, in report/types.ts. */
export type { FairnessFigures };

export type AllocationPolicyName = 'pro-rata' | 'avg-price';

export interface AccountOutcome {
  accountId: string;
  target: bigint;
  quantity: bigint;
  /** Sum of line quantity x line price, in price units. */
  notional: bigint;
}

/** One order as allocated: the block's totals and each account's. */
export interface OrderOutcome {
  blockQuantity: bigint;
  /** Sum of fill quantity x fill price, in price units. */
  blockNotional: bigint;
  targetTotal: bigint;
  accounts: readonly AccountOutcome[];
}

export interface OrderFairness {
  /** Accounts measured (all of the order's, priced or not). */
  accounts: number;
  /** One per account with a quantity > 0; the others have no average price. */
  priceDeviationsBps: number[];
  maxFillRateDeviation: number;
}

export interface TapeFill {
  seq: number;
  quantity: bigint;
  price: bigint;
  executedAtMs: number;
}

export interface TapeOrder {
  def: {
    lotSize: bigint;
    side: Side;
    /** Sorted by accountId, as on the block order. */
    targets: ReadonlyArray<{ accountId: string; quantity: bigint }>;
  };
  /** In seq order. */
  fills: readonly TapeFill[];
}

export interface CounterfactualInput {
  orders: Iterable<TapeOrder>;
  policy: AllocationPolicyName;
  /** Triggers of the avg-price policy; completion only when absent. */
  avgPrice?: AveragePricePolicy;
}

/**
 * Histogram bucket k counts deviations d with upperBps[k-1] < d <= upperBps[k]
 * (bucket 0: exactly 0). The last edge stands for +Infinity, which JSON lacks.
 */
export const HISTOGRAM_UPPER_BPS: readonly number[] = [
  0,
  0.5,
  1,
  2,
  5,
  10,
  20,
  50,
  100,
  Number.MAX_SAFE_INTEGER,
];

/** Report resolution: deviations are rounded half-even to 10^-12 (bps, or fill rate). */
const REPORT_SCALE = 10n ** 12n;
const BPS = 10_000n;

/** num / den as a number, rounded at REPORT_SCALE: exact first, a float last. */
function ratioToNumber(num: bigint, den: bigint): number {
  return Number(roundHalfEven(num * REPORT_SCALE, den)) / Number(REPORT_SCALE);
}

export function orderFairness(order: OrderOutcome): OrderFairness {
  const { blockQuantity: q, blockNotional: n, targetTotal: t } = order;
  invariant(
    t > 0n && q >= 0n && q <= t && (q === 0n ? n === 0n : n > 0n),
    `orderFairness: block of ${q} (notional ${n}) against targets ${t}`,
  );
  const priceDeviationsBps: number[] = [];
  // The largest |q_i t - q t_i| / (t_i t), kept as an exact fraction.
  let worstNum = 0n;
  let worstDen = 1n;
  let quantitySum = 0n;
  let targetSum = 0n;
  for (const a of order.accounts) {
    invariant(
      a.target > 0n && a.quantity >= 0n && a.quantity <= a.target && a.notional >= 0n,
      `orderFairness: account ${a.accountId} has ${a.quantity} of ${a.target}`,
    );
    quantitySum += a.quantity;
    targetSum += a.target;
    if (a.quantity > 0n) {
      // |n_i / q_i - n / q| / (n / q) = |n_i q - n q_i| / (q_i n)
      const deviation = absBig(a.notional * q - n * a.quantity);
      priceDeviationsBps.push(ratioToNumber(deviation * BPS, a.quantity * n));
    }
    const rateNum = absBig(a.quantity * t - q * a.target);
    const rateDen = a.target * t;
    if (rateNum * worstDen > worstNum * rateDen) {
      worstNum = rateNum;
      worstDen = rateDen;
    }
  }
  invariant(
    quantitySum === q && targetSum === t,
    `orderFairness: accounts hold ${quantitySum} of ${targetSum}, the block ${q} of ${t}`,
  );
  return {
    accounts: order.accounts.length,
    priceDeviationsBps,
    maxFillRateDeviation: ratioToNumber(worstNum, worstDen),
  };
}

/** Running figures over orders: only the deviations list grows. */
interface Tally {
  orders: number;
  accounts: number;
  deviationsBps: number[];
  maxFillRateDeviation: number;
}

const newTally = (): Tally => ({
  orders: 0,
  accounts: 0,
  deviationsBps: [],
  maxFillRateDeviation: 0,
});

function addOrder(tally: Tally, order: OrderFairness): void {
  tally.orders += 1;
  tally.accounts += order.accounts;
  for (const d of order.priceDeviationsBps) tally.deviationsBps.push(d);
  tally.maxFillRateDeviation = Math.max(tally.maxFillRateDeviation, order.maxFillRateDeviation);
}

/**
 * p99 by NEAREST RANK: the smallest deviation d such that at least 99 % of
 * the deviations are <= d, i.e. sorted[ceil(0.99 n) - 1]; 0 when none.
 */
function figuresOf(tally: Tally, residueMinor: bigint): FairnessFigures {
  const sorted = tally.deviationsBps.sort((a, b) => a - b);
  const n = sorted.length;
  const rank = Math.ceil((99 * n) / 100); // exact: 99n is a safe integer
  const counts = HISTOGRAM_UPPER_BPS.map(() => 0);
  let bucket = 0;
  for (const d of sorted) {
    while (bucket < counts.length - 1 && d > HISTOGRAM_UPPER_BPS[bucket]!) bucket++;
    counts[bucket]! += 1;
  }
  invariant(
    counts.reduce((s, c) => s + c, 0) === n,
    `fairness: the histogram holds ${counts.reduce((s, c) => s + c, 0)} of ${n} deviations`,
  );
  return {
    orders: tally.orders,
    accounts: tally.accounts,
    maxPriceDeviationBps: n === 0 ? 0 : sorted[n - 1]!,
    p99PriceDeviationBps: n === 0 ? 0 : sorted[rank - 1]!,
    maxFillRateDeviation: tally.maxFillRateDeviation,
    residueMinor: residueMinor.toString(),
    histogram: { upperBps: [...HISTOGRAM_UPPER_BPS], counts },
  };
}

/** The report's figures over orders already measured; `residueMinor` summed by the caller. */
export function summarizeFairness(
  perOrder: Iterable<OrderFairness>,
  residueMinor: bigint,
): FairnessFigures {
  const tally = newTally();
  for (const order of perOrder) addOrder(tally, order);
  return figuresOf(tally, residueMinor);
}

/**
 * Replays each order's fills through the policy's pure rule and measures it.
 * A fill the block order would reject (quantity or price <= 0, or beyond the
 * order's remaining: the tape's overfills) is skipped, as the service
 * dead-letters it; the same fills are skipped under both policies.
 */
export function counterfactualFairness(input: CounterfactualInput): FairnessFigures {
  const avgPolicy = validateAveragePricePolicy(input.avgPrice ?? COMPLETION_ONLY);
  const tally = newTally();
  let residueMinor = 0n;
  for (const order of input.orders) {
    const book = openBook(order);
    switch (input.policy) {
      case 'pro-rata':
        replayProRata(book, order.fills);
        break;
      case 'avg-price':
        residueMinor += replayAvgPrice(book, order, avgPolicy);
        break;
      default:
        return assertNever(input.policy, 'allocation policy');
    }
    addOrder(tally, orderFairness(outcomeOf(book)));
  }
  return figuresOf(tally, residueMinor);
}

/** One order's allocation so far, accounts in target order. */
interface Book {
  lotSize: bigint;
  accountIds: string[];
  index: Map<string, number>;
  targets: bigint[];
  quantity: bigint[];
  notional: bigint[];
  targetTotal: bigint;
  filled: bigint;
  filledNotional: bigint;
  lastSeq: number;
}

function openBook(order: TapeOrder): Book {
  const { lotSize, targets } = order.def;
  invariant(lotSize > 0n && targets.length > 0, 'fairness: an order has a lot and targets');
  const accountIds = targets.map((x) => x.accountId);
  const index = new Map(accountIds.map((id, i) => [id, i]));
  invariant(index.size === accountIds.length, 'fairness: an account is targeted twice');
  return {
    lotSize,
    accountIds,
    index,
    targets: targets.map((x) => x.quantity),
    quantity: targets.map(() => 0n),
    notional: targets.map(() => 0n),
    targetTotal: targets.reduce((s, x) => s + x.quantity, 0n),
    filled: 0n,
    filledNotional: 0n,
    lastSeq: 0,
  };
}

/** Records the fill on the block if the block order would accept it. */
function acceptFill(book: Book, fill: TapeFill): boolean {
  invariant(fill.seq > book.lastSeq, `fairness: fill seq ${fill.seq} after ${book.lastSeq}`);
  book.lastSeq = fill.seq;
  const accepted =
    fill.quantity > 0n && fill.price > 0n && book.filled + fill.quantity <= book.targetTotal;
  if (accepted) {
    book.filled += fill.quantity;
    book.filledNotional += fill.quantity * fill.price;
  }
  return accepted;
}

const remainingsOf = (book: Book): AccountRemaining[] =>
  book.accountIds.map((accountId, i) => ({
    accountId,
    remaining: book.targets[i]! - book.quantity[i]!,
  }));

function bookLines(
  book: Book,
  lines: ReadonlyArray<{ accountId: string; quantity: bigint }>,
  price: bigint,
): void {
  for (const line of lines) {
    const i = book.index.get(line.accountId);
    invariant(i !== undefined, `fairness: line for unknown account ${line.accountId}`);
    book.quantity[i] = book.quantity[i]! + line.quantity;
    book.notional[i] = book.notional[i]! + line.quantity * price;
  }
}

/** Pro-rata per fill: each fill allocated on arrival, its lines at its price. */
function replayProRata(book: Book, fills: readonly TapeFill[]): void {
  for (const fill of fills) {
    if (!acceptFill(book, fill)) continue;
    const result = allocateFill({
      lotSize: book.lotSize,
      fillQuantity: fill.quantity,
      fillSeq: fill.seq,
      accounts: remainingsOf(book),
    });
    invariant(result.ok, `fairness: fill ${fill.seq}: ${result.ok ? '' : result.detail}`);
    bookLines(book, result.lines, fill.price);
  }
}

/**
 * Average price: fills accumulate and are released at their VWAP when a
 * trigger fires; whatever is still accumulated after the last fill is
 * released then (the order is closed). Returns the order's residue, in cents.
 */
function replayAvgPrice(book: Book, order: TapeOrder, policy: AveragePricePolicy): bigint {
  let acc = emptyAccumulation;
  let releaseSeq = 0;
  let residueMinor = 0n;
  const release = (): void => {
    releaseSeq += 1;
    const r = releaseAtAverage({
      lotSize: book.lotSize,
      releaseSeq,
      accounts: remainingsOf(book),
      accumulation: acc,
      side: order.def.side,
    });
    bookLines(book, r.lines, r.averagePrice);
    residueMinor += r.residueMinor;
    acc = emptyAccumulation;
  };
  for (const fill of order.fills) {
    if (!acceptFill(book, fill)) continue;
    acc = accumulate(acc, fill);
    const clock = {
      executedAtMs: fill.executedAtMs,
      orderComplete: book.filled === book.targetTotal,
    };
    if (releaseDue(acc, policy, clock)) release();
  }
  if (acc.fills > 0) release();
  return residueMinor;
}

function outcomeOf(book: Book): OrderOutcome {
  return {
    blockQuantity: book.filled,
    blockNotional: book.filledNotional,
    targetTotal: book.targetTotal,
    accounts: book.accountIds.map((accountId, i) => ({
      accountId,
      target: book.targets[i]!,
      quantity: book.quantity[i]!,
      notional: book.notional[i]!,
    })),
  };
}
