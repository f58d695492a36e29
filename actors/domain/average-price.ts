/**
 * Average-price allocation policy. Pure and exact: bigint arithmetic only, no
 * floats, no I/O.
 *
 * Fills accumulate on the block order and are allocated together when a
 * release trigger fires (releaseDue, asked after each fill is accumulated):
 * - every N fills: the accumulation holds policy.everyFills fills;
 * - every T ms of market time: market time (the latest fill's executedAtMs)
 *   is at least policy.everyMarketMs after the first accumulated fill's;
 * - completion: the order's filled quantity reaches its target total. Always
 *   on, so nothing stays accumulated on a complete order.
 * A null trigger is off. An order that stops short of its target is released
 * by whoever closes it (end of day, cancel).
 *
 * Release (releaseAtAverage): the accumulated quantity Q is split with the
 * per-fill pro-rata rule (allocateFill with fillSeq = releaseSeq) against each
 * account's remaining, and every line is priced at the one average price
 * P = VWAP of the accumulation, rounded half-even to PRICE_DECIMALS.
 *
 * Residue rule. Amounts are notionals in cents, positive whatever the side:
 * - street cash S = accumulation.cashMinor = sum over the accumulated fills of
 *   notionalMinor(fill quantity, fill price): what the block paid (BUY) or
 *   received (SELL) on the street, to the cent;
 * - accounts' cash A = sum over the release's lines of
 *   notionalMinor(line quantity, P): what the accounts are charged (BUY) or
 *   credited (SELL), rounded per line like any line (money.ts);
 * - residueMinor = S - A, signed, in cents. It is never lost: it stays on the
 *   block order, in its rounding account, and is reported per release and
 *   summed per order; A + residueMinor = S exactly (asserted). The rounding
 *   account's cash moves by -residueMinor on a BUY (it pays the part of the
 *   street cost the accounts were not charged) and by +residueMinor on a SELL
 *   (it keeps the part of the proceeds the accounts were not credited).
 *
 * Bound (asserted). With k accumulated fills, m lines, N = sum of fill
 * quantity x price (price units) and D = 10^(PRICE_DECIMALS - CASH_DECIMALS)
 * price units per cent:
 *   |S - N/D|   <= k/2     each fill's notional is rounded to the cent;
 *   |A - Q*P/D| <= m/2     each line's notional is rounded to the cent;
 *   |Q*P - N|   <= Q/2     P is N/Q rounded to the price unit;
 * so |residueMinor| <= (k + m)/2 + Q/(2D) = (D(k + m) + Q) / (2D) cents, and
 * as the residue is a whole number of cents, <= floor((D(k + m) + Q) / (2D)).
 */
import { allocateFill, type AccountRemaining, type AllocationLine } from './allocation.ts';
import { PRICE_TO_CASH_DIVISOR, notionalMinor, vwap, type Side } from './money.ts';
import { ValidationError, assertNever, invariant } from '../errors.ts';

/** Release triggers besides completion; null turns one off. */
export interface AveragePricePolicy {
  /** Release once this many fills are accumulated. */
  everyFills: number | null;
  /** Release once market time is this far past the first accumulated fill. */
  everyMarketMs: number | null;
}

/** Release on completion only: one price for the whole order. */
export const COMPLETION_ONLY: AveragePricePolicy = { everyFills: null, everyMarketMs: null };

/** Fills accumulated since the last release. */
export interface Accumulation {
  readonly fills: number;
  readonly quantity: bigint;
  /** Sum of quantity x price, in price units (PRICE_DECIMALS). */
  readonly notional: bigint;
  /** Sum of notionalMinor(quantity, price) per fill: the street's cash, to the cent. */
  readonly cashMinor: bigint;
  /** Market time of the first accumulated fill; null when empty. */
  readonly firstExecutedAtMs: number | null;
}

export interface AccumulatedFill {
  quantity: bigint;
  /** Fixed point, PRICE_DECIMALS. */
  price: bigint;
  executedAtMs: number;
}

export interface ReleaseClock {
  /** Market time now: the latest fill's executedAtMs. */
  executedAtMs: number;
  /** The order's filled quantity has reached its target total. */
  orderComplete: boolean;
}

export interface ReleaseInput {
  lotSize: bigint;
  /** Positive integer, distinct per release of the order: drives allocateFill's tie rotation. */
  releaseSeq: number;
  accounts: readonly AccountRemaining[];
  accumulation: Accumulation;
  side: Side;
}

export interface Release {
  lines: AllocationLine[];
  /** The one price of every line: the accumulation's VWAP, rounded half-even. */
  averagePrice: bigint;
  /** A: sum of notionalMinor(line quantity, averagePrice). */
  accountsCashMinor: bigint;
  /** S - A, signed cents: stays on the block order (see the module comment). */
  residueMinor: bigint;
  /** The rounding account's cash change: -residue on a BUY, +residue on a SELL. */
  roundingCashMinor: bigint;
}

export const emptyAccumulation: Accumulation = {
  fills: 0,
  quantity: 0n,
  notional: 0n,
  cashMinor: 0n,
  firstExecutedAtMs: null,
};

/** The policy unchanged, or a ValidationError naming the bad trigger. */
export function validateAveragePricePolicy(policy: AveragePricePolicy): AveragePricePolicy {
  const problem = averagePricePolicyProblem(policy);
  if (problem) throw new ValidationError(problem.field, problem.rule);
  return policy;
}

/** The first trigger that is neither null nor a positive integer, with the rule; null if none. */
export function averagePricePolicyProblem(
  policy: AveragePricePolicy,
): { field: string; rule: string } | null {
  for (const field of ['everyFills', 'everyMarketMs'] as const) {
    const value = policy[field];
    if (value !== null && !(Number.isSafeInteger(value) && value > 0))
      return { field, rule: 'must be a positive integer or null' };
  }
  return null;
}

export function accumulate(acc: Accumulation, fill: AccumulatedFill): Accumulation {
  invariant(
    fill.quantity > 0n && fill.price > 0n,
    `accumulate: a fill has quantity and price > 0, got ${fill.quantity} @ ${fill.price}`,
  );
  invariant(
    Number.isSafeInteger(fill.executedAtMs),
    `accumulate: bad executedAtMs ${fill.executedAtMs}`,
  );
  return {
    fills: acc.fills + 1,
    quantity: acc.quantity + fill.quantity,
    notional: acc.notional + fill.quantity * fill.price,
    cashMinor: acc.cashMinor + notionalMinor(fill.quantity, fill.price),
    firstExecutedAtMs: acc.firstExecutedAtMs ?? fill.executedAtMs,
  };
}

/**
 * Takes a fill that is still accumulated back out (a bust; a correction is
 * unaccumulate(old) then accumulate(new)): the exact inverse of accumulate.
 * Taking out the first of several fills keeps its time: the window opened
 * when it arrived, so the market-time trigger fires no later than promised.
 */
export function unaccumulate(acc: Accumulation, fill: AccumulatedFill): Accumulation {
  invariant(
    acc.fills > 0 && fill.quantity > 0n && fill.quantity <= acc.quantity,
    `unaccumulate: ${fill.quantity} is not in an accumulation of ${acc.quantity}`,
  );
  const fills = acc.fills - 1;
  const out: Accumulation = {
    fills,
    quantity: acc.quantity - fill.quantity,
    notional: acc.notional - fill.quantity * fill.price,
    cashMinor: acc.cashMinor - notionalMinor(fill.quantity, fill.price),
    firstExecutedAtMs: fills === 0 ? null : acc.firstExecutedAtMs,
  };
  // Each fill adds a positive quantity and notional: what is left must add up.
  const consistent =
    fills === 0
      ? out.quantity === 0n && out.notional === 0n && out.cashMinor === 0n
      : out.quantity > 0n && out.notional > 0n && out.cashMinor >= 0n;
  invariant(consistent, 'unaccumulate: the fill was not accumulated');
  return out;
}

/** Whether the accumulation is to be released now (see the module comment). */
export function releaseDue(
  acc: Accumulation,
  policy: AveragePricePolicy,
  clock: ReleaseClock,
): boolean {
  invariant(
    (acc.fills === 0) === (acc.firstExecutedAtMs === null),
    `releaseDue: ${acc.fills} fills but first fill time ${acc.firstExecutedAtMs}`,
  );
  invariant(
    Number.isSafeInteger(clock.executedAtMs),
    `releaseDue: bad executedAtMs ${clock.executedAtMs}`,
  );
  if (acc.firstExecutedAtMs === null) return false; // nothing to release
  if (clock.orderComplete) return true;
  if (policy.everyFills !== null && acc.fills >= policy.everyFills) return true;
  return (
    policy.everyMarketMs !== null &&
    clock.executedAtMs - acc.firstExecutedAtMs >= policy.everyMarketMs
  );
}

/** floor((D(k + m) + Q) / (2D)) cents: the residue bound of the module comment. */
export function residueBoundMinor(fills: number, lines: number, quantity: bigint): bigint {
  invariant(fills >= 0 && lines >= 0 && quantity >= 0n, 'residueBoundMinor: negative count');
  const d = PRICE_TO_CASH_DIVISOR;
  return (d * BigInt(fills + lines) + quantity) / (2n * d);
}

/** Allocates the whole accumulation at its average price (see the module comment). */
export function releaseAtAverage(input: ReleaseInput): Release {
  const { accumulation: acc } = input;
  invariant(acc.quantity > 0n, 'releaseAtAverage: nothing accumulated');
  const result = allocateFill({
    lotSize: input.lotSize,
    fillQuantity: acc.quantity,
    fillSeq: input.releaseSeq,
    accounts: input.accounts,
  });
  // Fills are checked against the remaining on arrival: a rejection here is a bug.
  invariant(result.ok, `releaseAtAverage: ${result.ok ? '' : result.detail}`);
  return priceRelease(result.lines, acc, input.side);
}

/**
 * Prices given lines at the accumulation's average price, with the residue
 * rule of the module comment. Also re-prices a release whose fills were
 * corrected in price only: the same quantities, a new average.
 */
export function priceRelease(lines: AllocationLine[], acc: Accumulation, side: Side): Release {
  const averagePrice = vwap(acc.notional, acc.quantity);
  invariant(averagePrice !== null, 'priceRelease: nothing accumulated');
  let accountsCashMinor = 0n;
  let quantity = 0n;
  for (const line of lines) {
    accountsCashMinor += notionalMinor(line.quantity, averagePrice);
    quantity += line.quantity;
  }
  invariant(quantity === acc.quantity, `priceRelease: lines hold ${quantity} of ${acc.quantity}`);
  const residueMinor = acc.cashMinor - accountsCashMinor;
  const bound = residueBoundMinor(acc.fills, lines.length, acc.quantity);
  invariant(
    accountsCashMinor + residueMinor === acc.cashMinor &&
      residueMinor <= bound &&
      -residueMinor <= bound,
    `priceRelease: residue ${residueMinor} beyond its bound ${bound}`,
  );
  return {
    lines,
    averagePrice,
    accountsCashMinor,
    residueMinor,
    roundingCashMinor: roundingCash(side, residueMinor),
  };
}

function roundingCash(side: Side, residueMinor: bigint): bigint {
  switch (side) {
    case 'BUY':
      return -residueMinor;
    case 'SELL':
      return residueMinor;
    default:
      return assertNever(side, 'side');
  }
}
