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

/** Inputs up to this many accounts are checked for a duplicate id on every call. */
const DUPLICATE_CHECK_ACCOUNTS_MAX = 1_024;

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
  let total = 0n;
  for (const { accountId, remaining } of accounts) {
    ensure(remaining >= 0n, () => `allocateFill: account ${accountId} has remaining ${remaining}`);
    total += remaining;
  }
  // Hashing every id costs more than the whole allocation on a large order,
  // once per fill: the block order checks its targets once, when it opens
  // (decider.ts, decideOpen); here the check runs where it costs nothing.
  if (n <= DUPLICATE_CHECK_ACCOUNTS_MAX) {
    const seen = new Set<string>();
    for (const { accountId } of accounts) {
      ensure(!seen.has(accountId), () => `allocateFill: duplicate account ${accountId}`);
      seen.add(accountId);
    }
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

  // Parts by input index, only the non-zero ones: a fill of a few lots on an
  // order of tens of thousands of accounts touches a few of them.
  const parts =
    fill === total
      ? new Map(accounts.map((a, i) => [i, a.remaining] as const))
      : largestRemainder(lot, fill, total, fillSeq, accounts);

  // Postconditions (an absent part is 0, which every account can take).
  let sum = 0n;
  const lines: AllocationLine[] = [];
  for (const i of [...parts.keys()].sort((a, b) => a - b)) {
    const part = parts.get(i) ?? -1n;
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

/** The leftover candidates looked at first: enough for one pass in practice (see below). */
const LEFTOVER_CANDIDATES_MIN = 64;

/** Parts by input index (non-zero only), for 0 < fill < total. */
function largestRemainder(
  lot: bigint,
  fill: bigint,
  total: bigint,
  fillSeq: number,
  accounts: readonly AccountRemaining[],
): Map<number, bigint> {
  const n = accounts.length;
  const parts = new Map<number, bigint>();
  // Fractional part of each quota as a numerator over the common denominator
  // `total`: q_i - b_i = frac[i] / total, with 0 <= frac[i] < lot * total.
  const frac: bigint[] = new Array<bigint>(n);
  const lotTimesTotal = lot * total;
  let leftover = fill;
  for (let i = 0; i < n; i++) {
    const quotaNumerator = fill * accounts[i]!.remaining; // q_i = quotaNumerator / total
    if (quotaNumerator < lotTimesTotal) {
      frac[i] = quotaNumerator; // base 0: the common case for a small fill
      continue;
    }
    // All operands >= 0, so / is floor and % is the (non-negative) remainder:
    // b_i = floor(q_i / lot) * lot and (q_i - b_i) * total = quotaNumerator mod (lot * total).
    const base = (quotaNumerator / lotTimesTotal) * lot;
    parts.set(i, base);
    frac[i] = quotaNumerator % lotTimesTotal;
    leftover -= base;
  }
  if (leftover === 0n) return parts;

  // Priority: largest fractional part first; ties by rotation on fillSeq.
  const rotation = fillSeq % n;
  const before = (a: number, b: number): boolean => {
    const fa = frac[a]!;
    const fb = frac[b]!;
    if (fa !== fb) return fa > fb;
    return (a - rotation + n) % n < (b - rotation + n) % n;
  };
  const hasCapacity = (i: number) => accounts[i]!.remaining > (parts.get(i) ?? 0n);
  // Each account takes one chunk of at most a lot, so about leftover/lot of the
  // first candidates suffice: select those (O(n)), not sort all n (O(n log n)).
  const k = Math.min(n, Number(leftover / lot) * 2 + LEFTOVER_CANDIDATES_MIN);
  const top = topCandidates(n, k, before, hasCapacity);
  // With others beyond the first k, only one pass over the k is the rule's own
  // order; if it falls short, the whole order is walked instead, from scratch.
  const trial = new Map(parts);
  const passes = top.more ? 1 : MAX_LEFTOVER_PASSES;
  const rest = placeLeftover(lot, leftover, top.order, trial, accounts, passes);
  if (rest === 0n || !top.more) {
    ensure(rest === 0n, () => `allocateFill: leftover ${rest} not placed`);
    return trial;
  }
  const order = [...Array(n).keys()].filter(hasCapacity);
  order.sort((a, b) => (a === b ? 0 : before(a, b) ? -1 : 1));
  const last = placeLeftover(lot, leftover, order, parts, accounts, MAX_LEFTOVER_PASSES);
  ensure(last === 0n, () => `allocateFill: leftover ${last} not placed`);
  return parts;
}

/** The first `k` indexes with capacity, in priority order; `more`: others with capacity exist. */
function topCandidates(
  n: number,
  k: number,
  before: (a: number, b: number) => boolean,
  hasCapacity: (i: number) => boolean,
): { order: number[]; more: boolean } {
  invariant(k >= 1 && k <= n, `topCandidates: k ${k} of ${n}`);
  // A binary heap with the LAST of the k so far on top: O(n log k), whatever the input order.
  const heap: number[] = [];
  const worse = (a: number, b: number) => before(b, a);
  let more = false;
  for (let i = 0; i < n; i++) {
    if (!hasCapacity(i)) continue;
    if (heap.length < k) {
      heap.push(i);
      siftUp(heap, heap.length - 1, worse);
    } else {
      more = true;
      if (!before(i, heap[0]!)) continue;
      heap[0] = i;
      siftDown(heap, 0, worse);
    }
  }
  heap.sort((a, b) => (a === b ? 0 : before(a, b) ? -1 : 1));
  return { order: heap, more };
}

function siftUp(heap: number[], at: number, above: (a: number, b: number) => boolean): void {
  while (at > 0) {
    const parent = (at - 1) >> 1;
    if (!above(heap[at]!, heap[parent]!)) return;
    [heap[at], heap[parent]] = [heap[parent]!, heap[at]!];
    at = parent;
  }
}

function siftDown(heap: number[], at: number, above: (a: number, b: number) => boolean): void {
  for (;;) {
    const left = 2 * at + 1;
    const right = left + 1;
    let top = at;
    if (left < heap.length && above(heap[left]!, heap[top]!)) top = left;
    if (right < heap.length && above(heap[right]!, heap[top]!)) top = right;
    if (top === at) return;
    [heap[at], heap[top]] = [heap[top]!, heap[at]!];
    at = top;
  }
}

/** Hands out chunks of min(lot, leftover, capacity) in `order`, `passes` times at most; returns what is left. */
function placeLeftover(
  lot: bigint,
  leftover: bigint,
  order: readonly number[],
  parts: Map<number, bigint>,
  accounts: readonly AccountRemaining[],
  passes: number,
): bigint {
  invariant(passes >= 1 && passes <= MAX_LEFTOVER_PASSES, `placeLeftover: ${passes} passes`);
  for (let pass = 0; leftover > 0n && pass < passes; pass++) {
    for (const i of order) {
      if (leftover === 0n) break;
      const capacity = accounts[i]!.remaining - (parts.get(i) ?? 0n);
      let chunk = lot < leftover ? lot : leftover;
      if (capacity < chunk) chunk = capacity;
      if (chunk === 0n) continue;
      parts.set(i, (parts.get(i) ?? 0n) + chunk);
      leftover -= chunk;
    }
  }
  return leftover;
}
