/**
 * What the API needs from the running system: the port the composition root
 * (system/inspection.ts) implements. The views themselves are the actors'.
 */
import type { AccountView, BlockOrderView } from '../actors/views.ts';

export interface ReadinessCheck {
  ok: boolean;
  detail?: string;
}

export interface Readiness {
  ready: boolean;
  checks: { database: ReadinessCheck; nats: ReadinessCheck; consumer: ReadinessCheck };
  /** Actors stopped by a supervisor after repeated crashes, by path. */
  stoppedActors: string[];
}

/** Prometheus metrics: the text of a scrape, and each request's duration to record. */
export interface MetricsPort {
  readonly contentType: string;
  render(): Promise<string>;
  /** `route`: the route's pattern (never the raw URL: the label set stays bounded). */
  observeRequest(method: string, route: string, status: number, seconds: number): void;
}

/** Events one page holds, at most, and by default. */
export const EVENTS_PAGE_MAX = 500;
export const EVENTS_PAGE_DEFAULT = 100;

/** One journaled event of an account, decoded; amounts as decimal strings. */
export interface JournalEventView {
  seq: number;
  type: string;
  /** When it was journaled (ISO). */
  at: string;
  event: Record<string, unknown>;
}

export interface AccountEventsPage {
  accountId: string;
  events: JournalEventView[];
  /** The `after` of the next page; null when this page is the last. */
  nextAfter: number | null;
}

/** What the API needs from the running system. */
export interface InspectionPort {
  /** undefined when no such account exists (404). */
  account(id: string): Promise<AccountView | undefined>;
  /** undefined when no such block order exists (404). */
  blockOrder(id: string): Promise<BlockOrderView | undefined>;
  readiness(): Promise<Readiness>;
  /** What the fill consumer did since this process started (in memory, never fails). */
  consumerStats(): ConsumerStatsView;
  /**
   * Resolution of a refused line: apply it to its account now. undefined when
   * no such account exists (404); throws SuspenseNotAppliedError when the line
   * is not in suspense there (404) or the account still cannot take it (409).
   */
  retrySuspense(
    accountId: string,
    blockOrderId: string,
    fillSeq: number,
  ): Promise<SuspenseRetryResult | undefined>;
  /**
   * The account's journal after seq `after`, oldest first, at most `limit`
   * events (1..EVENTS_PAGE_MAX). undefined when no such account exists (404).
   */
  accountEvents(id: string, after: number, limit: number): Promise<AccountEventsPage | undefined>;
}

/**
 * The fill consumer's counters since start: how many messages it acked as
 * allocated, acked as exact duplicates, dead-lettered (conflicts among them)
 * and nak'ed, and how many fills it holds now ahead of their predecessor.
 */
export interface ConsumerStatsView {
  acked: number;
  duplicates: number;
  deadLettered: number;
  /** Of deadLettered: CONFLICTING_EXECUTION, a collision with an applied execution. */
  conflicts: number;
  nakked: number;
  heldFills: number;
}

/** Bounds of a fault plan: the schema and the injector both hold to them. */
export const FAULT_COUNT_MAX = 10_000;
export const FAULT_DELAY_MAX_MS = 60_000;

/** Fault injection (tests and drills only): refuses every request unless enabled. */
export interface FaultPort {
  readonly enabled: boolean;
  readonly plan: FaultPlanView;
  readonly fired: number;
  inject(request: FaultRequestBody): FaultPlanView;
  clear(): void;
}

export interface FaultRequestBody {
  actorThrows?: { kind: string; id?: string; count: number; transient?: boolean };
  journalFailures?: number;
  journalDelayMs?: number;
}

export interface FaultPlanView {
  actorThrows: Array<{ kind: string; id?: string; remaining: number; transient: boolean }>;
  journalFailures: number;
  journalDelayMs: number;
}

export interface SuspenseRetryResult {
  outcome: 'APPLIED';
  accountId: string;
  blockOrderId: string;
  fillSeq: number;
  cashDeltaMinor: string;
}

/** Why a suspense retry applied nothing: NOT_IN_SUSPENSE (404) or STILL_REFUSED (409). */
export class SuspenseNotAppliedError extends Error {
  readonly outcome: 'NOT_IN_SUSPENSE' | 'STILL_REFUSED';
  constructor(outcome: 'NOT_IN_SUSPENSE' | 'STILL_REFUSED', message: string) {
    super(message);
    this.name = 'SuspenseNotAppliedError';
    this.outcome = outcome;
  }
}

/** Items one list page holds, at most, and by default. */
export const LIST_PAGE_MAX = 100;
export const LIST_PAGE_DEFAULT = 25;

/** A block order in a list: its terms and where it stands (from its live actor). */
export interface BlockOrderSummary {
  blockOrderId: string;
  securityId: string;
  side: 'BUY' | 'SELL';
  tradeDate: string;
  status: string;
  targetQuantity: string;
  filledQuantity: string;
  remainingQuantity: string;
  vwapPrice: string | null;
}

export interface BlockOrderListQuery {
  status?: string;
  securityId?: string;
  tradeDate?: string;
  side?: string;
  /** Keyset: orders with ids after this one ('' = from the start). */
  afterId: string;
  limit: number;
}

export interface BlockOrderListPage {
  items: BlockOrderSummary[];
  /** The last id scanned (the next page starts after it); null when none remain. */
  lastScannedId: string | null;
}

/** GET /execution/:orderId/status: filled, remaining, VWAP, status, last update. */
export interface OrderExecutionStatus extends Omit<BlockOrderSummary, 'blockOrderId'> {
  orderId: string;
  fills: number;
  busts: number;
  corrections: number;
  cancelledQuantity: string | null;
  /** When the order's last event became durable (ISO); null before any. */
  lastUpdate: string | null;
  /** The market time of its last execution (ISO); null before any. */
  lastExecutionAt: string | null;
}

/** One account's line of a fill version. */
export interface FillLineView {
  accountId: string;
  quantity: string;
  /** What the account had of the fill before this version (amendments only). */
  previousQuantity?: string;
}

/** One version of a fill: the fill itself, or a bust or correction of it. */
export interface FillVersionView {
  seq: number;
  kind: string;
  /** The fill's id, or the amendment's. */
  entryId: string;
  quantity: string | null;
  price: string | null;
  executedAt: string;
  journaledAt: string;
  /** The lines this version set (empty while an average-price order accumulates). */
  lines: FillLineView[];
  /** Average price: the release this version fired or changed, if any. */
  releaseKey: string | null;
}

export interface FillDetailsView {
  fillId: string;
  blockOrderId: string;
  securityId: string | null;
  side: string | null;
  venue: string;
  executedAt: string;
  /** As it stands now: after its latest correction, or busted (quantity 0). */
  current: { quantity: string; price: string; busted: boolean };
  /** The lines it holds now, per account. */
  lines: FillLineView[];
  history: FillVersionView[];
}

export interface ReportAllocationView {
  blockOrderId: string;
  fillSeq: number;
  tradeDate: string;
  securityId: string;
  side: string;
  /** ALLOCATION, REVERSAL (a bust or correction took the previous line back) or SUSPENSE_APPLIED. */
  type: string;
  quantity: string;
  price: string;
  cashDeltaMinor: string;
  journalSeq: number;
  at: string;
}

export interface ReportTotalView {
  securityId: string;
  boughtQuantity: string;
  soldQuantity: string;
  netQuantity: string;
  buyAveragePrice: string | null;
  sellAveragePrice: string | null;
  cashDeltaMinor: string;
}

export interface ExecutionReportView {
  portfolioId: string;
  startDate: string;
  endDate: string;
  allocations: ReportAllocationView[];
  /** All allocations in the window; `allocations` lists at most REPORT_LINES_MAX. */
  allocationCount: number;
  truncated: boolean;
  totals: ReportTotalView[];
}

/** Allocations one report lists; its totals always cover all of them. */
export const REPORT_LINES_MAX = 5_000;
/** Journal events one report reads, at most: a larger account gets 422, not an OOM. */
export const REPORT_EVENTS_MAX = 200_000;

export const IntakeStatus = { Created: 'CREATED', Duplicate: 'DUPLICATE', Error: 'ERROR' } as const;
export type IntakeStatus = (typeof IntakeStatus)[keyof typeof IntakeStatus];

export interface IntakeItemResult {
  index: number;
  id: string | null;
  status: IntakeStatus;
  field?: string;
  rule?: string;
  /** Its sequence in the executions stream (CREATED, DUPLICATE). */
  streamSequence?: number;
}

export interface IntakeResult {
  created: number;
  duplicates: number;
  errors: number;
  items: IntakeItemResult[];
}

/** Executions intake at most per request. */
export const INTAKE_ITEMS_MAX = 100;

/** The executions and order read models, and the intake. */
export interface ExecutionsPort {
  listBlockOrders(query: BlockOrderListQuery): Promise<BlockOrderListPage>;
  orderStatus(orderId: string): Promise<OrderExecutionStatus | undefined>;
  fill(fillId: string): Promise<FillDetailsView | undefined>;
  /** undefined: no such account. Throws ReportTooLargeError past REPORT_EVENTS_MAX. */
  report(
    portfolioId: string,
    startDate: string,
    endDate: string,
  ): Promise<ExecutionReportView | undefined>;
  /** Validates each item like a wire message and publishes it; replies after JetStream's ack. */
  intake(items: readonly unknown[]): Promise<IntakeResult>;
}

export class ReportTooLargeError extends Error {
  readonly code = 'REPORT_TOO_LARGE';
  constructor(message: string) {
    super(message);
    this.name = 'ReportTooLargeError';
  }
}

/** One message of the dead-letter stream, with why it is there. */
export interface DeadLetterView {
  /** Its sequence in the dead-letter stream. */
  id: string;
  reason: string;
  field: string | null;
  rule: string | null;
  detail: string | null;
  originalSubject: string | null;
  originalSequence: number | null;
  deadLetteredAt: string;
  /** The execution as JSON when the bytes decode as one; null otherwise. */
  execution: Record<string, string | number> | null;
  /** The bytes as they arrived. */
  bodyBase64: string;
}

export interface DeadLetterPage {
  items: DeadLetterView[];
  /** The last stream sequence scanned; null when none remain. */
  lastScanned: number | null;
}

export interface ReplayResult {
  id: string;
  outcome: 'PUBLISHED' | 'DUPLICATE';
  subject: string;
  streamSequence: number;
}

export interface DeadLettersPort {
  list(query: { reason?: string; afterSeq: number; limit: number }): Promise<DeadLetterPage>;
  get(seq: number): Promise<DeadLetterView | undefined>;
  /** undefined: no such dead letter. Throws ReplayRefusedError when the body is not an execution. */
  replay(seq: number, corrected: unknown): Promise<ReplayResult | undefined>;
}

/** The replayed body is not a valid execution: 400 naming the field and the rule. */
export class ReplayRefusedError extends Error {
  readonly code = 'VALIDATION';
  readonly field: string;
  readonly rule: string;
  constructor(field: string, rule: string) {
    super(`execution.${field} ${rule}`);
    this.name = 'ReplayRefusedError';
    this.field = field;
    this.rule = rule;
  }
}

export const ACTOR_KINDS = ['account', 'block-order'] as const;
export type ActorKind = (typeof ACTOR_KINDS)[number];

export interface ActorKindStats {
  kind: ActorKind;
  live: number;
  /** Woken since start and passivated since (their state is in the journal). */
  passivated: number;
  /** Stopped by their supervisor after repeated crashes (POST .../restart). */
  stopped: number;
  /** Commands queued over all live actors of the kind, and the deepest mailbox. */
  mailboxDepth: number;
  mailboxDepthMax: number;
  /** Crashes since start (each one a reset, or the stop that ended a series). */
  restarts: number;
}

export interface ActorStatusView {
  kind: ActorKind;
  id: string;
  state: 'LIVE' | 'PASSIVATED' | 'STOPPED' | 'ABSENT';
  mailboxDepth: number;
  stoppedReason: string | null;
  /** Its live view (null when stopped, or when no such entity exists). */
  view: Record<string, unknown> | null;
}

export interface ActorsPort {
  stats(): ActorKindStats[];
  status(kind: ActorKind, id: string): Promise<ActorStatusView>;
  /** false: the actor was not stopped (409). */
  restart(kind: ActorKind, id: string): boolean;
}

/** The request conflicts with the state (a booking close in progress, a restart of a running actor): 409. */
export class ConflictError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = 'ConflictError';
    this.code = code;
  }
}
export const DataType = {
  FillNotification: 'FILL_NOTIFICATION',
  Allocation: 'ALLOCATION',
  OrderUpdate: 'ORDER_UPDATE',
  Bust: 'BUST',
  Correction: 'CORRECTION',
} as const;
export type DataType = (typeof DataType)[keyof typeof DataType];
export const DATA_TYPES: readonly DataType[] = Object.values(DataType);

export interface ExecutionUpdate {
  /** `<persistence key>@<first row seq>.<index>`: unique, and the same on every subscriber. */
  eventId: string;
  /** When the batch became durable (ISO). */
  timestamp: string;
  dataType: DataType;
  orderId: string;
  data: Record<string, string | number | boolean | null>;
}

export interface FeedFilter {
  /** null: every order. */
  orderIds: ReadonlySet<string> | null;
  dataTypes: ReadonlySet<DataType>;
}

/** Subscribers at once, at most: each holds a socket and its buffers. */
export const FEED_SUBSCRIBERS_MAX = 256;

export class TooManySubscribersError extends Error {
  readonly code = 'TOO_MANY_SUBSCRIBERS';
  constructor() {
    super(`the stream has its bound of ${FEED_SUBSCRIBERS_MAX} subscribers`);
    this.name = 'TooManySubscribersError';
  }
}

/** The live feed the stream route subscribes to. */
export interface StreamPort {
  /** Returns the unsubscribe; throws TooManySubscribersError at the bound. */
  /** `deliver` gets the update and its JSON (serialized once for every subscriber). */
  subscribe(
    filter: FeedFilter,
    deliver: (update: ExecutionUpdate, json: string) => void,
  ): () => void;
}

/** Booking batches (system/booking.ts): a close, a record, the file, and membership. */
export interface BookingBatchView {
  id: string;
  batchNo: number;
  /** The previous batch's close (null for the first); membership is decided by per-key marks. */
  windowStart: string | null;
  closedAt: string;
  /** Rows in the file. */
  lineCount: number;
  /** Account line events booked (an amendment's reversal and new line are one). */
  allocationCount: number;
  accountCount: number;
  /** Account journal rows read (rows that moved nothing too). */
  journalRowCount: number;
  /** The batch reached its bound: more lines wait for the next close. */
  capped: boolean;
  fileName: string;
  checksumSha256: string;
  fileKept: boolean;
  /** The file could not be written after the commit: it is regenerated on request. */
  fileError?: string;
}

export interface MembershipLineView {
  batchId: string;
  lineNo: number;
  sourceId: string;
  accountId: string;
  securityId: string;
  side: string;
  movementKind: string;
  transactionType: string;
  quantity: string;
  price: string;
  cashDeltaMinor: string;
  transactionDate: string;
  blockOrderId: string;
  fillSeq: number;
  entrySeq: number;
  fillId: string;
  executionId: string;
  persistenceKey: string;
  sequenceNr: number;
}

export interface MembershipView {
  fillId: string;
  batches: Array<{ id: string; batchNo: number; closedAt: string }>;
  lines: MembershipLineView[];
  /** More than MEMBERSHIP_LINES_MAX lines: the oldest are shown. */
  truncated: boolean;
}

export interface SecurityReconciliation {
  securityId: string;
  streetQuantity: string;
  booksQuantity: string;
  suspenseQuantity: string;
  accumulatedQuantity: string;
  inFlightQuantity: string;
  /** The fills' notional for what is on the books, signed as cash, in cents (4 fraction digits). */
  streetNotionalMinor: string;
  booksCashMinor: string;
  cashToleranceMinor: string;
  /** Average-price orders' residue (their rounding account), signed cents. */
  residueMinor: string;
  /** False when some order's shares disagree or have lines in flight: its cash is not compared. */
  cashChecked: boolean;
  ok: boolean;
}

export const BreakKind = { Shares: 'SHARES', Cash: 'CASH' } as const;

export type BreakKind = (typeof BreakKind)[keyof typeof BreakKind];

export interface ReconciliationBreak {
  kind: BreakKind;
  securityId: string;
  detail: string;
  accounts: string[];
  orders: string[];
}

export interface ReconciliationReport {
  tradeDate: string | null;
  clean: boolean;
  checkedAt: string;
  orders: number;
  securities: SecurityReconciliation[];
  breaks: ReconciliationBreak[];
  /** More than BREAKS_MAX breaks: the first are shown. */
  breaksTruncated: boolean;
}

export interface BookingPort {
  /** Throws ConflictError when a close is in progress, or nothing is new since the last batch. */
  close(options: { cleanup: boolean }): Promise<BookingBatchView>;
  batch(id: string): Promise<BookingBatchView | undefined>;
  file(id: string): Promise<{ fileName: string; csv: string } | undefined>;
  membership(fillId: string): Promise<MembershipView>;
}

export interface ReconciliationPort {
  /** Throws ValidationError on a bad trade date (400). */
  reconcile(tradeDate: string | undefined): Promise<ReconciliationReport>;
}
