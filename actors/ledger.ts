/**
 * Ledger rows: what the journal writes beside an event, in the same commit,
 * so the database can answer questions the actors' small states cannot:
 * - the execution index: every fill id ever allocated, unique forever, so a
 *   re-used id is a conflict on any order at any age (not a memory of the
 *   last few fills);
 * - the suspense ledger: every line an account refused, per block order,
 *   and how each was resolved.
 * A row exists exactly when its event is durable; both are lost or kept together.
 */
import { linesFillIdOf, type Entry } from './block-order/decider.ts';
import type { Side } from './domain/money.ts';

/**
 * One entry as the index records it: the whole fill or amendment, so a
 * re-sent message can be compared. Its id (fill id or amendment id) is unique
 * forever, and so is its (order, seq).
 */
export type ExecutionRow = Entry;

/** One line an account refused: it left the block and sits on no account until resolved. */
export interface SuspenseRow {
  blockOrderId: string;
  fillSeq: number;
  accountId: string;
  securityId: string;
  side: Side;
  quantity: bigint;
  price: bigint;
  reason: string;
  detail: string;
}

export const SuspenseResolution = {
  /** Applied to the same account once it could take it. */
  Applied: 'APPLIED',
  /** The market busted or corrected the fill: the line left suspense (an amended one, if any, took its place). */
  Amended: 'AMENDED',
} as const;
export type SuspenseResolution = (typeof SuspenseResolution)[keyof typeof SuspenseResolution];

export interface ResolutionRow {
  blockOrderId: string;
  fillSeq: number;
  accountId: string;
  resolution: SuspenseResolution;
}

export interface LedgerRows {
  executions?: ExecutionRow[];
  /**
   * By execution index: the key whose lines the entry sets, where that is not
   * linesFillIdOf(entry): an average-price order's release key (null: none).
   */
  linesKeys?: (string | null)[];
  suspense?: SuspenseRow[];
  resolutions?: ResolutionRow[];
}

/** The key whose lines execution `i` of `rows` sets (the index's amends_fill_id), or null. */
export function linesKeyAt(rows: LedgerRows, i: number): string | null {
  const entry = rows.executions?.[i];
  if (entry === undefined) throw new Error(`ledger rows have no execution ${i}`);
  const key = rows.linesKeys?.[i];
  return key !== undefined ? key : (linesFillIdOf(entry) ?? null);
}
