/**
 * The expected final books of a Scenario, computed without any service: every
 * fill, in arrival order (so each order's fills in seq order), goes through the
 * project's own allocateFill exactly as the block-order decider calls it, and
 * every line through the account rule (BUY adds position and pays
 * cashDelta, SELL takes position and receives it; a SELL beyond the position
 * is a rejected line that changes nothing). The arms are checked against it.
 */
import type { Fill } from '../../actors/block-order/decider.ts';
import { allocateFill } from '../../actors/domain/allocation.ts';
import type { Side } from '../../actors/domain/money.ts';
import { applyToPosition } from '../../actors/domain/position.ts';
import { invariant } from '../../actors/errors.ts';
import type { Scenario } from '../scenario.ts';

export interface AccountBook {
  cashMinor: bigint;
  /** securityId → quantity; a missing security means 0. */
  positions: Map<string, bigint>;
}

export interface Books {
  accounts: Map<string, AccountBook>;
  /** Allocation lines written (applied and rejected). */
  lines: number;
}

export interface ExpectedBooks extends Books {
  fills: number;
  rejectedLines: number;
}

/** A block order's static definition plus what it has allocated so far. */
export interface OrderBook {
  securityId: string;
  side: Side;
  lotSize: bigint;
  /** Sorted by accountId: allocateFill's tie rotation depends on this order. */
  targets: Array<{ accountId: string; quantity: bigint }>;
  allocated: Map<string, bigint>;
  lastSeq: number;
}

export function openingBooks(scenario: Scenario): Map<string, AccountBook> {
  const accounts = new Map<string, AccountBook>();
  for (const a of scenario.seed.accounts) {
    accounts.set(a.id, {
      cashMinor: a.openingCashMinor,
      positions: new Map(Object.entries(a.positions)),
    });
  }
  return accounts;
}

export function orderBooks(scenario: Scenario): Map<string, OrderBook> {
  const lots = new Map(scenario.seed.securities.map((s) => [s.id, s.lotSize]));
  const orders = new Map<string, OrderBook>();
  for (const o of scenario.seed.blockOrders) {
    const lotSize = lots.get(o.securityId);
    invariant(lotSize !== undefined, `order ${o.id}: unknown security ${o.securityId}`);
    const targets = [...o.targets].sort((x, y) => (x.accountId < y.accountId ? -1 : 1));
    orders.set(o.id, {
      securityId: o.securityId,
      side: o.side,
      lotSize,
      targets,
      allocated: new Map(),
      lastSeq: 0,
    });
  }
  return orders;
}

/**
 * Allocates `fill` on `order` (which must expect exactly this seq) and
 * advances the order's allocated amounts. Same inputs as the block-order
 * decider: lot size, fill quantity and seq, targets by account id with
 * remaining = target − allocated.
 */
export function allocateOn(
  order: OrderBook,
  fill: Fill,
): Array<{ accountId: string; quantity: bigint }> {
  invariant(
    fill.seq === order.lastSeq + 1,
    `${fill.fillId}: seq ${fill.seq} after ${order.lastSeq}`,
  );
  const result = allocateFill({
    lotSize: order.lotSize,
    fillQuantity: fill.quantity,
    fillSeq: fill.seq,
    accounts: order.targets.map((t) => ({
      accountId: t.accountId,
      remaining: t.quantity - (order.allocated.get(t.accountId) ?? 0n),
    })),
  });
  invariant(result.ok, `${fill.fillId} is not allocatable: ${result.ok ? '' : result.detail}`);
  for (const line of result.lines) {
    order.allocated.set(
      line.accountId,
      (order.allocated.get(line.accountId) ?? 0n) + line.quantity,
    );
  }
  order.lastSeq = fill.seq;
  return result.lines;
}

/**
 * The account rule on one line (the account decider's own, from
 * actors/domain/position.ts), on a mutable book. Returns the cash delta applied, or undefined
 * when the line is rejected (a SELL beyond the position: nothing changes).
 */
export function applyLine(
  book: AccountBook,
  line: { securityId: string; side: Side; quantity: bigint; price: bigint },
): bigint | undefined {
  invariant(line.quantity > 0n, `applyLine: quantity ${line.quantity} must be positive`);
  const outcome = applyToPosition(book.positions.get(line.securityId) ?? 0n, line);
  if (!outcome.ok) return undefined;
  book.positions.set(line.securityId, outcome.position);
  book.cashMinor += outcome.cashDeltaMinor;
  return outcome.cashDeltaMinor;
}

export function expectedBooks(scenario: Scenario): ExpectedBooks {
  const accounts = openingBooks(scenario);
  const orders = orderBooks(scenario);
  let lines = 0;
  let rejectedLines = 0;
  // Arrival order keeps each order's seq order; it also fixes the order in
  // which a SELL meets the position, should a rejection ever depend on it.
  for (const fill of scenario.publishOrder) {
    const order = orders.get(fill.blockOrderId);
    invariant(order, `fill ${fill.fillId} for unknown order ${fill.blockOrderId}`);
    for (const line of allocateOn(order, fill)) {
      const book = accounts.get(line.accountId);
      invariant(book, `line for unknown account ${line.accountId}`);
      const applied = applyLine(book, { ...order, quantity: line.quantity, price: fill.price });
      lines++;
      if (applied === undefined) rejectedLines++;
    }
  }
  return { accounts, lines, rejectedLines, fills: scenario.publishOrder.length };
}

export const VIOLATIONS_MAX = 50;

/**
 * Exact comparison: every account's cash, every position (a missing one is
 * 0) and the total line count. `checks` counts the comparisons made.
 */
export function compareBooks(
  expected: Books,
  actual: Books,
): { ok: boolean; checks: number; violations: string[] } {
  const violations: string[] = [];
  let found = 0;
  let checks = 0;
  const fail = (text: string) => {
    found++;
    if (violations.length < VIOLATIONS_MAX) violations.push(text);
  };
  const check = (ok: boolean, text: () => string) => {
    checks++;
    if (!ok) fail(text());
  };
  check(actual.lines === expected.lines, () => `lines: ${actual.lines} != ${expected.lines}`);
  for (const [id, want] of expected.accounts) {
    const got = actual.accounts.get(id);
    check(got !== undefined, () => `account ${id}: missing`);
    if (!got) continue;
    check(
      got.cashMinor === want.cashMinor,
      () => `${id} cash ${got.cashMinor} != ${want.cashMinor}`,
    );
    for (const sec of new Set([...want.positions.keys(), ...got.positions.keys()])) {
      const [g, w] = [got.positions.get(sec) ?? 0n, want.positions.get(sec) ?? 0n];
      check(g === w, () => `${id} position ${sec} ${g} != ${w}`);
    }
  }
  for (const id of actual.accounts.keys()) {
    check(expected.accounts.has(id), () => `account ${id}: not expected`);
  }
  if (found > VIOLATIONS_MAX) {
    // Capped at VIOLATIONS_MAX lines, the last one counting the rest.
    violations.length = VIOLATIONS_MAX - 1;
    violations.push(`… and ${found - violations.length} more`);
  }
  return { ok: found === 0, checks, violations };
}
