/**
 * Pro-rata allocation of one block fill across the accounts of a block order.
 * Pure and exact: bigint arithmetic only, no floats, no I/O.
 *
 * Rule (product spec):
 * 1. Each account's exact quota is q_i = F * r_i / R, where F is the fill
 *    quantity, r_i the account's REMAINING quantity and R = sum(r_i).
 *    Its base is b_i = floor(q_i / lot) * lot (whole lots).
 * 2. The leftover L = F - sum(b_i) goes out by largest remainder: accounts are
 *    ordered by (q_i - b_i) descending, ties broken by a rotation that depends
 *    on fillSeq (tie key = (i - fillSeq mod n + n) mod n ascending, i = input
 *    index) so no account is always favoured. Chunks of
 *    min(lot, L, capacity_i), capacity_i = r_i - what i already got, are
 *    handed out in that order until L = 0. A fill that is not a whole number
 *    of lots therefore yields one odd-lot piece (when the remainings are
 *    lot-aligned).
 * 3. A fill that completes the order (F == R) gives every account exactly r_i.
 *    (Steps 1-2 would give the same; this is a short cut that states it.)
 *
 * Guarantees: parts sum exactly to F; 0 <= part_i <= r_i (an account never
 * exceeds its target); a fill larger than R is rejected whole (OVERFILL).
 *
 * Fairness: floorLot(q_i) <= part_i <= ceilLot(q_i) for every account, hence
 * |part_i - q_i| < lot, for ANY remainings (lot-aligned or not) and any fill.
 * Why: capacity_i = r_i - b_i >= q_i - b_i (as q_i <= r_i), and the fractional
 * parts (q_i - b_i), each < lot, sum exactly to L. So the accounts with a
 * positive fractional part, which come first in the order, can together take
 * all of L with one chunk each (sum of min(lot, capacity_i) >= L): a single
 * pass always suffices, every account gets at most one chunk (<= lot) on top
 * of its base, and accounts with a zero fractional part get nothing extra.
 */
import { invariant } from '../errors.ts';

/** remaining = target - allocated so far, >= 0. */
export interface AccountRemaining {
  accountId: string;
  remaining: bigint;
}

/** quantity > 0. */
export interface AllocationLine {
  accountId: string;
  quantity: bigint;
}

export type AllocateRejection = 'NON_POSITIVE_QUANTITY' | 'OVERFILL' | 'NOTHING_REMAINING';

export type AllocateResult =
  { ok: true; lines: AllocationLine[] } | { ok: false; reason: AllocateRejection; detail: string };

export interface AllocateInput {
  lotSize: bigint;
  fillQuantity: bigint;
  /** Positive integer, distinct per fill of the order; drives the tie rotation. */
  fillSeq: number;
  accounts: readonly AccountRemaining[];
}

/**
 * Upper bound on largest-remainder passes. One pass always suffices (see the
 * module comment); the bound makes a broken argument crash instead of loop.
 */
const MAX_LEFTOVER_PASSES = 2;

/** invariant() with a lazily built message: these checks sit on a hot path. */
function ensure(condition: boolean, message: () => string): asserts condition {
  if (!condition) invariant(false, message());
}

export function allocateFill(input: AllocateInput): AllocateResult {
  const { lotSize: lot, fillQuantity: fill, fillSeq, accounts } = input;
  const n = accounts.length;

  // Preconditions: violations are programmer errors, not bad input.
  invariant(n > 0, 'allocateFill: an order has at least one account');
  ensure(lot > 0n, () => `allocateFill: lotSize must be > 0, got ${lot}`);
  ensure(
    Number.isSafeInteger(fillSeq) && fillSeq > 0,
    () => `allocateFill: fillSeq must be a positive integer, got ${fillSeq}`,
  );
  const seen = new Set<string>();
  let total = 0n;
  for (const { accountId, remaining } of accounts) {
    ensure(remaining >= 0n, () => `allocateFill: account ${accountId} has remaining ${remaining}`);
    ensure(!seen.has(accountId), () => `allocateFill: duplicate account ${accountId}`);
    seen.add(accountId);
    total += remaining;
  }

  // Business rejections: the fill is refused whole, nothing is applied.
  if (fill <= 0n) {
    return { ok: false, reason: 'NON_POSITIVE_QUANTITY', detail: `fill quantity ${fill} <= 0` };
  }
  if (total === 0n) {
    return { ok: false, reason: 'NOTHING_REMAINING', detail: 'the order has nothing remaining' };
  }
  if (fill > total) {
    return {
      ok: false,
      reason: 'OVERFILL',
      detail: `fill quantity ${fill} exceeds the order's remaining ${total}`,
    };
  }

  const parts =
    fill === total
      ? accounts.map((a) => a.remaining)
      : largestRemainder(lot, fill, total, fillSeq, accounts);

  // Postconditions.
  let sum = 0n;
  const lines: AllocationLine[] = [];
  for (let i = 0; i < n; i++) {
    const part = parts[i] ?? -1n;
    const { accountId, remaining } = accounts[i]!;
    ensure(
      part >= 0n && part <= remaining,
      () => `allocateFill: account ${accountId} got ${part}, remaining ${remaining}`,
    );
    sum += part;
    if (part > 0n) lines.push({ accountId, quantity: part });
  }
  ensure(sum === fill, () => `allocateFill: parts sum to ${sum}, fill is ${fill}`);
  return { ok: true, lines };
}

/** Parts, in input order, for 0 < fill < total. */
function largestRemainder(
  lot: bigint,
  fill: bigint,
  total: bigint,
  fillSeq: number,
  accounts: readonly AccountRemaining[],
): bigint[] {
  const n = accounts.length;
  const parts: bigint[] = [];
  // Fractional part of each quota as a numerator over the common denominator
  // `total`: q_i - b_i = frac[i] / total, with 0 <= frac[i] < lot * total.
  const frac: bigint[] = [];
  const lotTimesTotal = lot * total;
  let leftover = fill;
  for (const { remaining } of accounts) {
    const quotaNumerator = fill * remaining; // q_i = quotaNumerator / total
    // All operands >= 0, so / is floor and % is the (non-negative) remainder:
    // b_i = floor(q_i / lot) * lot and (q_i - b_i) * total = quotaNumerator mod (lot * total).
    const base = (quotaNumerator / lotTimesTotal) * lot;
    parts.push(base);
    frac.push(quotaNumerator % lotTimesTotal);
    leftover -= base;
  }
  if (leftover === 0n) return parts;

  // Priority: largest fractional part first; ties by rotation on fillSeq.
  const rotation = fillSeq % n;
  const tieKey = (i: number): number => (i - rotation + n) % n;
  const order: number[] = [];
  for (let i = 0; i < n; i++) {
    if (accounts[i]!.remaining > parts[i]!) order.push(i); // capacity > 0
  }
  order.sort((a, b) => {
    const fa = frac[a]!;
    const fb = frac[b]!;
    if (fa !== fb) return fa > fb ? -1 : 1;
    return tieKey(a) - tieKey(b);
  });

  for (let pass = 0; leftover > 0n; pass++) {
    ensure(
      pass < MAX_LEFTOVER_PASSES,
      () => `allocateFill: leftover ${leftover} not placed after ${MAX_LEFTOVER_PASSES} passes`,
    );
    for (const i of order) {
      if (leftover === 0n) break;
      const capacity = accounts[i]!.remaining - parts[i]!;
      let chunk = lot < leftover ? lot : leftover;
      if (capacity < chunk) chunk = capacity;
      parts[i] = parts[i]! + chunk;
      leftover -= chunk;
    }
  }
  return parts;
}
