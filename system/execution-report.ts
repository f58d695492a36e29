/**
 * GET /execution/reports/:portfolioId: every allocation to one account whose
 * trade date (US Eastern, as booking has it) is in a window, read from the account's journal
 * (the books themselves), with totals and average prices per security. A bust
 * or correction shows as the REVERSAL of the line it replaced (and the new
 * line, if any), so the totals are exactly what the books moved.
 */
import { ACCOUNT_KIND } from '../actors/account/shell.ts';
import type { AccountEvent } from '../actors/account/decider.ts';
import { lineShares, movementsOf, type Movement } from '../actors/account/movements.ts';
import { formatPrice, vwap } from '../actors/domain/money.ts';
import { invariant } from '../actors/errors.ts';
import {
  EVENTS_PAGE_MAX,
  REPORT_EVENTS_MAX,
  REPORT_LINES_MAX,
  ReportTooLargeError,
  type ExecutionReportView,
  type InspectionPort,
  type ReportAllocationView,
  type ReportTotalView,
} from '../api/ports.ts';
import { decodeVersioned } from '../persistence/codec.ts';
import type { Database } from '../persistence/db.ts';
import type { Journal, StoredRecord } from '../persistence/journal.ts';
import { executionRefKey, executionsAt } from '../persistence/booking-sql.ts';
import { tradeDateNewYork } from './booking.ts';

export interface ReportDeps {
  db: Database;
  journal: Pick<Journal, 'load'>;
  inspection: Pick<InspectionPort, 'account'>;
}

/** The account's whole journal, a page at a time, bounded by REPORT_EVENTS_MAX. */
async function journalOf(deps: ReportDeps, key: string): Promise<StoredRecord[]> {
  const records: StoredRecord[] = [];
  for (;;) {
    const after = records.at(-1)?.seq ?? 0;
    const page = await deps.journal.load(key, after, EVENTS_PAGE_MAX);
    records.push(...page);
    if (records.length > REPORT_EVENTS_MAX)
      throw new ReportTooLargeError(
        `${key} has more than ${REPORT_EVENTS_MAX} journal rows: report a shorter window from its events (GET /accounts/:id/events)`,
      );
    if (page.length < EVENTS_PAGE_MAX) return records;
  }
}

interface Sums {
  bought: bigint;
  sold: bigint;
  buyNotional: bigint;
  sellNotional: bigint;
  cash: bigint;
}

/** Σ per security; movements are signed (a reversal takes shares and notional back out). */
function addTo(totals: Map<string, Sums>, m: Movement): void {
  const sums = totals.get(m.securityId) ?? {
    ...{ bought: 0n, sold: 0n, buyNotional: 0n },
    ...{ sellNotional: 0n, cash: 0n },
  };
  if (m.side === 'BUY') {
    sums.bought += m.quantity;
    sums.buyNotional += m.quantity * m.price;
  } else {
    sums.sold -= m.quantity;
    sums.sellNotional -= m.quantity * m.price;
  }
  sums.cash += m.cashDeltaMinor;
  totals.set(m.securityId, sums);
}

function totalsOf(totals: Map<string, Sums>): ReportTotalView[] {
  const price = (notional: bigint, quantity: bigint) => {
    const p = quantity > 0n ? vwap(notional, quantity) : null;
    return p === null ? null : formatPrice(p);
  };
  return [...totals.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([securityId, s]) => ({
      securityId,
      boughtQuantity: s.bought.toString(),
      soldQuantity: s.sold.toString(),
      netQuantity: (s.bought - s.sold).toString(),
      buyAveragePrice: price(s.buyNotional, s.bought),
      sellAveragePrice: price(s.sellNotional, s.sold),
      cashDeltaMinor: s.cash.toString(),
    }));
}

/**
 * The trade date of each line, as the booking file has it: the US Eastern
 * date of the execution that made the line (a reversal: the line it takes back).
 */
async function tradeDatesOfLines(db: Database, moves: readonly Movement[]) {
  const pairs = new Map<string, { blockOrderId: string; seq: number }>();
  for (const m of moves)
    pairs.set(executionRefKey(m.blockOrderId, m.fillSeq), {
      blockOrderId: m.blockOrderId,
      seq: m.fillSeq,
    });
  const refs = await executionsAt((sql, params) => db.query(sql, params), [...pairs.values()]);
  return new Map([...refs].map(([key, ref]) => [key, tradeDateNewYork(ref.executedAtMs)]));
}

export async function executionReport(
  deps: ReportDeps,
  portfolioId: string,
  startDate: string,
  endDate: string,
): Promise<ExecutionReportView | undefined> {
  invariant(startDate <= endDate, `a window from ${startDate} to ${endDate}`);
  const key = `${ACCOUNT_KIND}-${portfolioId}`;
  const records = await journalOf(deps, key);
  if (records.length === 0 && (await deps.inspection.account(portfolioId)) === undefined)
    return undefined;
  const decoded = records.map((r) => ({
    record: r,
    moves: movementsOf(decodeVersioned(r.payload, `${key}#${r.seq}`) as AccountEvent),
  }));
  const tradeDates = await tradeDatesOfLines(
    deps.db,
    decoded.flatMap((d) => d.moves),
  );
  const allocations: ReportAllocationView[] = [];
  const totals = new Map<string, Sums>();
  let count = 0;
  for (const { record, moves } of decoded) {
    for (const m of moves) {
      const tradeDate = tradeDates.get(executionRefKey(m.blockOrderId, m.fillSeq)) ?? '';
      if (tradeDate < startDate || tradeDate > endDate) continue;
      count++;
      addTo(totals, m);
      if (allocations.length < REPORT_LINES_MAX) allocations.push(lineOf(m, tradeDate, record));
    }
  }
  return {
    ...{ portfolioId, startDate, endDate, allocations, allocationCount: count },
    truncated: count > allocations.length,
    totals: totalsOf(totals),
  };
}

const lineOf = (m: Movement, tradeDate: string, record: StoredRecord): ReportAllocationView => ({
  blockOrderId: m.blockOrderId,
  fillSeq: m.fillSeq,
  tradeDate,
  securityId: m.securityId,
  side: m.side,
  type: m.kind,
  // The line's shares; `type` says whether they were booked or taken back.
  quantity: lineShares(m).toString(),
  price: formatPrice(m.price),
  cashDeltaMinor: m.cashDeltaMinor.toString(),
  journalSeq: record.seq,
  at: new Date(record.createdAtMs).toISOString(),
});
