/**
 * JSON-ready views of live actor state, as the inspection API returns them.
 * Exact integers (quantities, cash, prices) are decimal strings: JSON numbers
 * are binary floats and would lose precision.
 */

export interface AccountView {
  accountId: string;
  /** false until the account's first event; the view then shows reference data. */
  opened: boolean;
  /** Cash in minor units (e.g. cents), as a decimal integer string. */
  cashMinor: string;
  /** Position per security id, in shares, as decimal integer strings. */
  positions: Record<string, string>;
  /** Last applied fill sequence number per block order id. */
  lastAppliedSeqByOrder: Record<string, number>;
  /** Number of allocations rejected (e.g. a sell beyond the position). */
  rejectedAllocations: number;
  /** Amendments that took a position below zero: applied and flagged (the written rule). */
  negativePositionFlags: number;
  /** Refused lines not yet resolved (oldest first, at most SUSPENSE_VIEW_MAX). */
  suspense: SuspenseLineView[];
  /** How many refused lines are not yet resolved (all of them, not only those listed). */
  suspenseOpen: number;
  /** Sequence number of the last journal event of this actor (0 = none). */
  journalSeq: number;
}

/** Lines listed in one view, at most: the counts and totals always cover all of them. */
export const SUSPENSE_VIEW_MAX = 500;

/** One line an account refused (the suspense ledger). */
export interface SuspenseLineView {
  blockOrderId: string;
  fillSeq: number;
  accountId: string;
  securityId: string;
  side: 'BUY' | 'SELL';
  quantity: string;
  /** Fixed point, 6 fraction digits. */
  price: string;
  reason: string;
  detail: string;
  /** null while open; how it was resolved (e.g. APPLIED) once resolved. */
  resolution: string | null;
}

/** A block order's exceptions: lines that left the block and sit on no account until resolved. */
export interface BlockOrderSuspenseView {
  openLines: number;
  openQuantity: string;
  resolvedLines: number;
  resolvedQuantity: string;
  /** Open lines first, then resolved, by fill seq and account; at most SUSPENSE_VIEW_MAX. */
  lines: SuspenseLineView[];
}

export const BlockOrderStatus = {
  /** Known from reference data, no fill yet. */
  New: 'NEW',
  PartiallyFilled: 'PARTIALLY_FILLED',
  Filled: 'FILLED',
  /** The unfilled remainder was cancelled (by the market's cancel). */
  Cancelled: 'CANCELLED',
} as const;
export type BlockOrderStatus = (typeof BlockOrderStatus)[keyof typeof BlockOrderStatus];

export interface BlockOrderAccountView {
  accountId: string;
  targetQuantity: string;
  allocatedQuantity: string;
}

export interface BlockOrderView {
  blockOrderId: string;
  securityId: string;
  side: 'BUY' | 'SELL';
  tradeDate: string;
  lotSize: string;
  status: BlockOrderStatus;
  targetQuantity: string;
  filledQuantity: string;
  fills: number;
  /** Fills busted, and corrections applied (each is its own seq). */
  busts: number;
  corrections: number;
  /** Quantity the order's cancel took off (null: not cancelled). */
  cancelledQuantity: string | null;
  /** Last sequence number applied, fill or amendment (0 = none). */
  lastFillSeq: number;
  /** Volume-weighted average price as a decimal string with 6 fraction digits, rounded half-even; null before any fill. */
  vwapPrice: string | null;
  accounts: BlockOrderAccountView[];
  /** All allocations of fills up to this sequence are confirmed by their accounts. */
  confirmedThroughSeq: number;
  /** Allocation lines delivered but not yet confirmed. */
  unconfirmedLines: number;
  journalSeq: number;
  /** From the suspense ledger; per order, filled = applied on accounts + open + resolved suspense. */
  suspense: BlockOrderSuspenseView;
  allocationPolicy: 'PRO_RATA' | 'AVERAGE_PRICE';
  /** The average-price policy's figures; null for a pro-rata order. */
  average: AverageView | null;
}

/** An average-price order: its triggers, what it released, and what it holds back. */
export interface AverageView {
  /** Release triggers (null: off); completion and the order's cancel always release. */
  releaseEveryFills: number | null;
  releaseEveryMarketMs: number | null;
  releases: number;
  /** On the accounts (or in suspense): the releases' quantity. */
  releasedQuantity: string;
  /** Filled but not yet released: on no account yet. */
  accumulatedQuantity: string;
  accumulatedFills: number;
  /** Σ residue over releases, signed cents: street cash less the accounts' cash, kept on the order. */
  residueMinor: string;
}

/** What the block order actor itself knows; the inspection adds the suspense ledger. */
export type BlockOrderActorView = Omit<BlockOrderView, 'suspense'>;
