/**
 * Reconciliation: the street (the fills, as they stand now) against the
 * books (the accounts' journals), per block order and per security, read
 * in one SERIALIZABLE transaction so every figure is of the same instant.
 *
 * Shares, per order, in the order's direction:
 *   street = books + open suspense + accumulated + in flight
 * - street: each fill's current version from the execution index (a busted
 *   fill counts 0, a corrected one its latest quantity);
 * - books: Σ the accounts' movements (actors/account/movements.ts) of the order;
 * - open suspense: refused lines not resolved (the suspense ledger);
 * - accumulated: an average-price order's fills not released yet, and
 * - in flight: lines the order decided whose account has not journaled
 *   them yet; both from folding the order's own journal (its decider's
 *   evolve, as recovery does: exact, O(the order's journal rows)).
 * Per account too: what the order says the account holds (target less
 * remaining) = its books + its suspense + its lines in flight; the
 * accounts that differ are named. A planted street figure moves no
 * account's side: then the order's accounts are named.
 *
 * Cash, per order whose shares agree and with nothing in flight: the books'
 * cash against the street notional of what is on the books (street less
 * suspense less accumulated, exact in price units). Lines round to the cent
 * one by one (money.ts), so they may differ by half a cent per line on the
 * books; an average-price release prices every line at the accumulation's
 * VWAP rounded to the price unit, which moves Q × P from the fills' exact
 * notional by at most Q/2 price units (Q: its released quantity). That is
 * the tolerance; beyond it, a break. (The order's residue, which its
 * rounding account keeps, is reported; the bound above already covers it.)
 *
 * Per security the figures are summed, signed by side (a BUY +, a SELL −;
 * cash as cashDelta: a BUY pays). Amounts are decimal strings; notional and
 * tolerance in cents with 4 fraction digits (price units), exact.
 *
 * Cost: reads every account journal row (accounts' journals are not indexed
 * by order) and the journals of the orders in scope; memory is per (order,
 * account). At most ORDERS_MAX orders per report.
 */
import {
  BreakKind,
  ReportTooLargeError,
  type ReconciliationBreak,
  type ReconciliationReport,
  type SecurityReconciliation,
} from '../api/ports.ts';
import { lineEvents, type AccountEvent } from '../actors/account/decider.ts';
import { movementsOf } from '../actors/account/movements.ts';
import { ACCOUNT_KIND } from '../actors/account/shell.ts';
import {
  allocatedOf,
  evolve,
  initialState,
  type BlockOrderEvent,
  type BlockOrderState,
} from '../actors/block-order/decider.ts';
import { BLOCK_ORDER_KIND } from '../actors/block-order/shell.ts';
import { absBig, PRICE_TO_CASH_DIVISOR, formatDecimal, type Side } from '../actors/domain/money.ts';
import { ValidationError, invariant } from '../actors/errors.ts';
import { decodeVersioned } from '../persistence/codec.ts';
import type { Database, Query } from '../persistence/db.ts';
import { likePrefix } from '../persistence/journal.ts';

export const ORDERS_MAX = 50_000;
/** Accounts and orders named per break, at most. */
export const NAMED_MAX = 50;
export const BREAKS_MAX = 1_000;
const PAGE_ROWS = 2_000;
const KEYS_PER_QUERY = 500;
const TRADE_DATE = /^\d{4}-\d\d-\d\d$/;
/** Price units per cent, and the fraction digits of a notional in cents. */
const D = PRICE_TO_CASH_DIVISOR;
const CENT_DIGITS = 4;

export interface ReconcileDeps {
  db: Database;
  nowMs?: () => number;
}

interface AccountBooks {
  /** In the order's direction. */
  quantity: bigint;
  cashMinor: bigint;
  /** Lines on the books now: allocations less reversals. */
  lines: bigint;
}

interface OrderFigures {
  id: string;
  securityId: string;
  side: Side;
  streetQuantity: bigint;
  /** Σ quantity × price of the fills' current versions, price units. */
  streetNotional: bigint;
  /** From the order's journal: what each account holds of it. */
  held: Map<string, bigint>;
  targets: string[];
  accumulatedQuantity: bigint;
  accumulatedNotional: bigint;
  releasedQuantity: bigint;
  residueMinor: bigint;
  /** Lines not confirmed yet: `${seq}|${accountId}` → quantity change. */
  pending: Map<string, bigint>;
  books: Map<string, AccountBooks>;
  suspense: Map<string, { quantity: bigint; notional: bigint }>;
  inFlight: Map<string, bigint>;
}

const add = (m: Map<string, bigint>, k: string, v: bigint) => m.set(k, (m.get(k) ?? 0n) + v);

/** An integer from the driver: BIGINT or an integral NUMERIC as text ("12", "12.000"). */
function integerOf(value: string | number | null): bigint {
  const text = String(value ?? '0');
  const match = /^(-?\d+)(?:\.0*)?$/.exec(text);
  invariant(match?.[1] !== undefined, `not an integer: ${text}`);
  return BigInt(match[1]);
}

async function readOrders(q: Query, tradeDate: string | null): Promise<Map<string, OrderFigures>> {
  const rows = await q<{ id: string; security_id: string; side: Side }>(
    `SELECT id, security_id, side FROM block_orders
     WHERE ($1::text IS NULL OR trade_date = $1) ORDER BY id LIMIT $2`,
    [tradeDate, ORDERS_MAX + 1],
  );
  if (rows.length > ORDERS_MAX)
    throw new ReportTooLargeError(
      `more than ${ORDERS_MAX} orders to reconcile${tradeDate ? ` on ${tradeDate}` : ''}: give a trade date`,
    );
  const orders = new Map<string, OrderFigures>();
  for (const r of rows)
    orders.set(r.id, {
      id: r.id,
      securityId: r.security_id,
      side: r.side,
      streetQuantity: 0n,
      streetNotional: 0n,
      held: new Map(),
      targets: [],
      accumulatedQuantity: 0n,
      accumulatedNotional: 0n,
      releasedQuantity: 0n,
      residueMinor: 0n,
      pending: new Map(),
      books: new Map(),
      suspense: new Map(),
      inFlight: new Map(),
    });
  return orders;
}

/** Each fill's latest version (a bust: 0; a correction: its quantity and price), summed per order. */
async function readStreet(q: Query, tradeDate: string | null, orders: Map<string, OrderFigures>) {
  const rows = await q<{ block_order_id: string; quantity: string; notional: string }>(
    `WITH v AS (
       SELECT e.block_order_id, e.quantity, e.price,
              row_number() OVER (PARTITION BY e.block_order_id, coalesce(e.amends_fill_id, e.fill_id)
                                 ORDER BY e.fill_seq DESC) AS rn
       FROM executions e JOIN block_orders o ON o.id = e.block_order_id
       WHERE e.kind IN ('FILL', 'BUST', 'CORRECTION') AND ($1::text IS NULL OR o.trade_date = $1))
     SELECT block_order_id, sum(quantity) AS quantity, sum(quantity::numeric * price) AS notional
     FROM v WHERE rn = 1 GROUP BY block_order_id`,
    [tradeDate],
  );
  for (const r of rows) {
    const f = orders.get(r.block_order_id);
    if (!f) continue;
    f.streetQuantity = integerOf(r.quantity);
    f.streetNotional = integerOf(r.notional);
  }
}

async function readSuspense(q: Query, tradeDate: string | null, orders: Map<string, OrderFigures>) {
  const rows = await q<{
    block_order_id: string;
    account_id: string;
    quantity: string;
    notional: string;
  }>(
    `SELECT s.block_order_id, s.account_id, sum(s.quantity) AS quantity,
            sum(s.quantity::numeric * s.price) AS notional
     FROM suspense s JOIN block_orders o ON o.id = s.block_order_id
     LEFT JOIN suspense_resolutions r ON r.block_order_id = s.block_order_id
       AND r.fill_seq = s.fill_seq AND r.account_id = s.account_id
     WHERE r.resolution IS NULL AND ($1::text IS NULL OR o.trade_date = $1)
     GROUP BY s.block_order_id, s.account_id`,
    [tradeDate],
  );
  for (const r of rows) {
    const f = orders.get(r.block_order_id);
    f?.suspense.set(r.account_id, {
      quantity: integerOf(r.quantity),
      notional: integerOf(r.notional),
    });
  }
}

type JournalFilter = { prefix: string } | { keys: string[] };

/** Journal rows of the keys under a prefix, or of the keys listed, in key and seq order. */
async function* journalRows(
  q: Query,
  filter: JournalFilter,
): AsyncGenerator<{ key: string; seq: number; event: unknown }> {
  const [where, arg] =
    'prefix' in filter
      ? ['persistence_key LIKE $1', likePrefix(filter.prefix)]
      : ['persistence_key = ANY($1::text[])', filter.keys];
  let after = { key: '', seq: 0 };
  for (;;) {
    const rows = await q<{ persistence_key: string; sequence_nr: string; payload: Buffer }>(
      `SELECT persistence_key, sequence_nr, payload FROM journal
       WHERE ${where} AND (persistence_key, sequence_nr) > ($2, $3)
       ORDER BY persistence_key, sequence_nr LIMIT $4`,
      [arg, after.key, after.seq, PAGE_ROWS],
    );
    for (const r of rows) {
      const key = r.persistence_key;
      yield { key, seq: Number(r.sequence_nr), event: decodeVersioned(r.payload, key) };
    }
    const last = rows.at(-1);
    if (!last || rows.length < PAGE_ROWS) return;
    after = { key: last.persistence_key, seq: Number(last.sequence_nr) };
  }
}

/** Folds each order's journal with its decider's evolve and keeps what reconciliation needs. */
async function foldOrders(q: Query, orders: Map<string, OrderFigures>): Promise<void> {
  const prefix = `${BLOCK_ORDER_KIND}-`;
  const keys = [...orders.keys()].map((id) => `${prefix}${id}`);
  for (let i = 0; i < keys.length; i += KEYS_PER_QUERY) {
    let key: string | undefined;
    let state: BlockOrderState = initialState();
    const finish = () => {
      const f = key === undefined ? undefined : orders.get(key.slice(prefix.length));
      if (f) orderFigures(f, state);
    };
    for await (const row of journalRows(q, { keys: keys.slice(i, i + KEYS_PER_QUERY) })) {
      if (row.key !== key) {
        finish();
        key = row.key;
        state = initialState();
      }
      state = evolve(state, row.event as BlockOrderEvent);
    }
    finish();
  }
}

function orderFigures(f: OrderFigures, state: BlockOrderState): void {
  if (state.status !== 'Open') return;
  invariant(state.def.securityId === f.securityId, `${f.id}: its journal names another security`);
  f.held = new Map(Object.entries(allocatedOf(state)));
  f.targets = state.def.targets.map((t) => t.accountId);
  const avg = state.average;
  if (avg) {
    f.accumulatedQuantity = avg.accumulation.quantity;
    f.accumulatedNotional = avg.accumulation.notional;
    f.releasedQuantity = avg.releasedQuantity;
    f.residueMinor = avg.residueMinor;
  }
  for (const p of state.pending)
    for (const l of p.lines)
      add(f.pending, `${p.seq}|${l.accountId}`, l.quantity - (l.previousQuantity ?? 0n));
}

/** Every account journal row: movements of the orders in scope, and which pending lines arrived. */
async function readBooks(q: Query, orders: Map<string, OrderFigures>): Promise<void> {
  const prefix = `${ACCOUNT_KIND}-`;
  const arrived = new Set<string>();
  for await (const row of journalRows(q, { prefix })) {
    const accountId = row.key.slice(prefix.length);
    const event = row.event as AccountEvent;
    for (const m of movementsOf(event)) {
      const f = orders.get(m.blockOrderId);
      if (!f) continue;
      const b = f.books.get(accountId) ?? { quantity: 0n, cashMinor: 0n, lines: 0n };
      f.books.set(accountId, b);
      b.quantity += f.side === 'BUY' ? m.quantity : -m.quantity;
      b.cashMinor += m.cashDeltaMinor;
      b.lines += m.kind === 'REVERSAL' ? -1n : 1n;
    }
    for (const l of lineEvents(event)) {
      const a = l.allocation;
      if (orders.get(a.blockOrderId)?.pending.size)
        arrived.add(`${a.blockOrderId}|${a.fillSeq}|${accountId}`);
    }
  }
  for (const f of orders.values())
    for (const [line, delta] of f.pending) {
      const accountId = line.slice(line.indexOf('|') + 1);
      if (!arrived.has(`${f.id}|${line}`)) add(f.inFlight, accountId, delta);
    }
}

async function readFigures(q: Query, tradeDate: string | null): Promise<Map<string, OrderFigures>> {
  const orders = await readOrders(q, tradeDate);
  await readStreet(q, tradeDate, orders);
  await readSuspense(q, tradeDate, orders);
  await foldOrders(q, orders);
  await readBooks(q, orders);
  return orders;
}

interface OrderVerdict {
  f: OrderFigures;
  books: bigint;
  suspense: bigint;
  inFlight: bigint;
  sharesOk: boolean;
  /** Accounts whose books + suspense + in flight differ from what the order says they hold. */
  offAccounts: string[];
  booksCash: bigint;
  /** The street notional of what is on the books, signed as cash, price units. */
  streetOnBooks: bigint;
  tolerance: bigint;
  cashChecked: boolean;
  cashOk: boolean;
}

const sumOf = (values: Iterable<bigint>): bigint => {
  let s = 0n;
  for (const v of values) s += v;
  return s;
};

function accountsOff(f: OrderFigures): string[] {
  const accounts = new Set([...f.held.keys(), ...f.books.keys(), ...f.suspense.keys()]);
  for (const a of f.inFlight.keys()) accounts.add(a);
  const off = [...accounts].filter((a) => {
    const there =
      (f.books.get(a)?.quantity ?? 0n) +
      (f.suspense.get(a)?.quantity ?? 0n) +
      (f.inFlight.get(a) ?? 0n);
    return there !== (f.held.get(a) ?? 0n);
  });
  return off.sort();
}

function judgeOrder(f: OrderFigures): OrderVerdict {
  const books = sumOf([...f.books.values()].map((b) => b.quantity));
  const suspense = sumOf([...f.suspense.values()].map((s) => s.quantity));
  const inFlight = sumOf(f.inFlight.values());
  const sharesOk = f.streetQuantity === books + suspense + f.accumulatedQuantity + inFlight;
  const offAccounts = accountsOff(f);
  const booksCash = sumOf([...f.books.values()].map((b) => b.cashMinor));
  const lines = sumOf([...f.books.values()].map((b) => b.lines));
  const onBooks =
    f.streetNotional -
    sumOf([...f.suspense.values()].map((s) => s.notional)) -
    f.accumulatedNotional;
  const streetOnBooks = f.side === 'BUY' ? -onBooks : onBooks;
  // Half a cent per line, Q/2 price units per average-price release: floor, as the difference is whole.
  const tolerance = ((lines > 0n ? lines : 0n) * D + f.releasedQuantity) / 2n;
  const cashChecked = sharesOk && offAccounts.length === 0 && f.inFlight.size === 0;
  const cashOk = !cashChecked || absBig(booksCash * D - streetOnBooks) <= tolerance;
  return {
    ...{ f, books, suspense, inFlight, sharesOk, offAccounts },
    ...{ booksCash, streetOnBooks, tolerance, cashChecked, cashOk },
  };
}

const cents = (priceUnits: bigint): string => formatDecimal(priceUnits, CENT_DIGITS);

function securityRow(
  securityId: string,
  verdicts: readonly OrderVerdict[],
): SecurityReconciliation {
  const signed = (pick: (v: OrderVerdict) => bigint) =>
    sumOf(verdicts.map((v) => (v.f.side === 'BUY' ? pick(v) : -pick(v))));
  const total = (pick: (v: OrderVerdict) => bigint) => sumOf(verdicts.map(pick));
  return {
    securityId,
    streetQuantity: signed((v) => v.f.streetQuantity).toString(),
    booksQuantity: signed((v) => v.books).toString(),
    suspenseQuantity: signed((v) => v.suspense).toString(),
    accumulatedQuantity: signed((v) => v.f.accumulatedQuantity).toString(),
    inFlightQuantity: signed((v) => v.inFlight).toString(),
    streetNotionalMinor: cents(total((v) => v.streetOnBooks)),
    booksCashMinor: total((v) => v.booksCash).toString(),
    cashToleranceMinor: cents(total((v) => v.tolerance)),
    residueMinor: total((v) => v.f.residueMinor).toString(),
    cashChecked: verdicts.every((v) => v.cashChecked),
    ok: verdicts.every((v) => v.sharesOk && v.offAccounts.length === 0 && v.cashOk),
  };
}

const firstOf = (items: Iterable<string>): string[] =>
  [...new Set(items)].sort().slice(0, NAMED_MAX);

function sharesBreak(securityId: string, bad: readonly OrderVerdict[]): ReconciliationBreak {
  const off = bad.flatMap((v) => v.offAccounts);
  const parts = bad.slice(0, 10).map((v) => {
    const f = v.f;
    const accounts = v.offAccounts.slice(0, 5).map((a) => {
      const there = `books ${f.books.get(a)?.quantity ?? 0n} + suspense ${f.suspense.get(a)?.quantity ?? 0n} + in flight ${f.inFlight.get(a) ?? 0n}`;
      return `${a} holds ${f.held.get(a) ?? 0n} by the order, ${there}`;
    });
    const figures = `street ${f.streetQuantity} vs books ${v.books} + suspense ${v.suspense} + accumulated ${f.accumulatedQuantity} + in flight ${v.inFlight}`;
    return `${f.id} (${f.side}): ${figures}${accounts.length ? `; ${accounts.join('; ')}` : ''}`;
  });
  return {
    kind: BreakKind.Shares,
    securityId,
    detail: `${securityId}: shares do not reconcile: ${parts.join(' | ')}`,
    // No account differs (a street figure moved alone): the accounts the orders allocate to.
    accounts: firstOf(off.length > 0 ? off : bad.flatMap((v) => v.f.targets)),
    orders: firstOf(bad.map((v) => v.f.id)),
  };
}

function cashBreak(securityId: string, bad: readonly OrderVerdict[]): ReconciliationBreak {
  const parts = bad.slice(0, 10).map((v) => {
    const off = cents(v.booksCash * D - v.streetOnBooks);
    return `${v.f.id}: books cash ${v.booksCash}, street ${cents(v.streetOnBooks)} on the books: off by ${off}, tolerance ${cents(v.tolerance)} (cents)`;
  });
  return {
    kind: BreakKind.Cash,
    securityId,
    detail: `${securityId}: cash does not reconcile: ${parts.join(' | ')}`,
    accounts: firstOf(bad.flatMap((v) => [...v.f.books.keys()])),
    orders: firstOf(bad.map((v) => v.f.id)),
  };
}

/**
 * Street against books for the orders of `tradeDate` (every order when
 * absent). `breaks` is empty when everything reconciles.
 */
export async function reconcile(
  deps: ReconcileDeps,
  options: { tradeDate?: string } = {},
): Promise<ReconciliationReport> {
  const tradeDate = options.tradeDate ?? null;
  if (tradeDate !== null && !TRADE_DATE.test(tradeDate))
    throw new ValidationError('tradeDate', 'must be a date, YYYY-MM-DD');
  const orders = await deps.db.serializable((q) => readFigures(q, tradeDate));
  const bySecurity = new Map<string, OrderVerdict[]>();
  for (const f of orders.values()) {
    const list = bySecurity.get(f.securityId) ?? [];
    bySecurity.set(f.securityId, list);
    list.push(judgeOrder(f));
  }
  const securities: SecurityReconciliation[] = [];
  const breaks: ReconciliationBreak[] = [];
  for (const securityId of [...bySecurity.keys()].sort()) {
    const verdicts = bySecurity.get(securityId) ?? [];
    securities.push(securityRow(securityId, verdicts));
    const shares = verdicts.filter((v) => !v.sharesOk || v.offAccounts.length > 0);
    if (shares.length > 0) breaks.push(sharesBreak(securityId, shares));
    const cash = verdicts.filter((v) => !v.cashOk);
    if (cash.length > 0) breaks.push(cashBreak(securityId, cash));
  }
  return {
    tradeDate,
    clean: breaks.length === 0,
    checkedAt: new Date(deps.nowMs?.() ?? Date.now()).toISOString(),
    orders: orders.size,
    securities,
    breaks: breaks.slice(0, BREAKS_MAX),
    breaksTruncated: breaks.length > BREAKS_MAX,
  };
}
