/**
 * TypeBox schemas of the operations routes: lists, executions, dead letters
 * and actors. As in schemas.ts, response schemas are the serializers (nothing
 * undeclared leaves), query values are strings checked by pattern (no
 * coercion), and the checks at the bottom keep each schema equal to its view.
 */
import { Type } from 'typebox';
import type { Static } from 'typebox';
import { BlockOrderStatus } from '../actors/views.ts';
import { CURSOR_PATTERN } from './cursor.ts';
import { DATE_PATTERN } from './dates.ts';
import {
  ACTOR_KINDS,
  INTAKE_ITEMS_MAX,
  IntakeStatus,
  type ActorKindStats,
  type BookingBatchView,
  type MembershipView,
  type ReconciliationReport,
  type ActorStatusView,
  type BlockOrderSummary,
  type DeadLetterView,
  type ExecutionReportView,
  type FillDetailsView,
  type IntakeResult,
  type OrderExecutionStatus,
  type ReplayResult,
} from './ports.ts';
import {
  Count,
  DecimalInteger,
  ID_PATTERN,
  Price,
  Seq,
  type Assert,
  type Equal,
} from './schemas.ts';

const Id = Type.String({ pattern: ID_PATTERN });
const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(t: T) =>
  Type.Union([t, Type.Null()]);
const Side = Type.Union([Type.Literal('BUY'), Type.Literal('SELL')]);
const Cursor = Type.String({ pattern: CURSOR_PATTERN });
/** "1".."100" (LIST_PAGE_MAX) */
const LIMIT_PATTERN = '^([1-9][0-9]?|100)$';
const Closed = { additionalProperties: false } as const;

export const BlockOrderListQuerySchema = Type.Object(
  {
    status: Type.Optional(Type.Union(Object.values(BlockOrderStatus).map((s) => Type.Literal(s)))),
    security: Type.Optional(Id),
    tradeDate: Type.Optional(Type.String({ pattern: DATE_PATTERN })),
    side: Type.Optional(Side),
    cursor: Type.Optional(Cursor),
    limit: Type.Optional(Type.String({ pattern: LIMIT_PATTERN })),
  },
  Closed,
);

export const BlockOrderSummarySchema = Type.Object(
  {
    blockOrderId: Type.String(),
    securityId: Type.String(),
    side: Side,
    tradeDate: Type.String(),
    status: Type.String(),
    targetQuantity: DecimalInteger,
    filledQuantity: DecimalInteger,
    remainingQuantity: DecimalInteger,
    vwapPrice: Nullable(Price),
  },
  Closed,
);

export const BlockOrderListSchema = Type.Object(
  { items: Type.Array(BlockOrderSummarySchema), nextCursor: Nullable(Type.String()) },
  Closed,
);

export const OrderIdParams = Type.Object({ orderId: Id }, Closed);
export const FillIdParams = Type.Object({ fillId: Id }, Closed);
export const PortfolioIdParams = Type.Object({ portfolioId: Id }, Closed);

export const OrderExecutionStatusSchema = Type.Object(
  {
    orderId: Type.String(),
    securityId: Type.String(),
    side: Side,
    tradeDate: Type.String(),
    status: Type.String(),
    targetQuantity: DecimalInteger,
    filledQuantity: DecimalInteger,
    remainingQuantity: DecimalInteger,
    vwapPrice: Nullable(Price),
    fills: Count,
    busts: Count,
    corrections: Count,
    cancelledQuantity: Nullable(DecimalInteger),
    lastUpdate: Nullable(Type.String()),
    lastExecutionAt: Nullable(Type.String()),
  },
  Closed,
);

const FillLineSchema = Type.Object(
  {
    accountId: Type.String(),
    quantity: DecimalInteger,
    previousQuantity: Type.Optional(DecimalInteger),
  },
  Closed,
);

export const FillDetailsSchema = Type.Object(
  {
    fillId: Type.String(),
    blockOrderId: Type.String(),
    securityId: Nullable(Type.String()),
    side: Nullable(Type.String()),
    venue: Type.String(),
    executedAt: Type.String(),
    current: Type.Object(
      { quantity: DecimalInteger, price: Price, busted: Type.Boolean() },
      Closed,
    ),
    lines: Type.Array(FillLineSchema),
    history: Type.Array(
      Type.Object(
        {
          seq: Seq,
          kind: Type.String(),
          entryId: Type.String(),
          quantity: Nullable(DecimalInteger),
          price: Nullable(Price),
          executedAt: Type.String(),
          journaledAt: Type.String(),
          lines: Type.Array(FillLineSchema),
          releaseKey: Nullable(Type.String()),
        },
        Closed,
      ),
    ),
  },
  Closed,
);

export const ExecutionReportQuerySchema = Type.Object(
  {
    start_date: Type.String({ pattern: DATE_PATTERN }),
    end_date: Type.String({ pattern: DATE_PATTERN }),
  },
  Closed,
);

export const ExecutionReportSchema = Type.Object(
  {
    portfolioId: Type.String(),
    startDate: Type.String(),
    endDate: Type.String(),
    allocations: Type.Array(
      Type.Object(
        {
          blockOrderId: Type.String(),
          fillSeq: Seq,
          tradeDate: Type.String(),
          securityId: Type.String(),
          side: Type.String(),
          type: Type.String(),
          quantity: DecimalInteger,
          price: Price,
          cashDeltaMinor: DecimalInteger,
          journalSeq: Seq,
          at: Type.String(),
        },
        Closed,
      ),
    ),
    allocationCount: Count,
    truncated: Type.Boolean(),
    totals: Type.Array(
      Type.Object(
        {
          securityId: Type.String(),
          boughtQuantity: DecimalInteger,
          soldQuantity: DecimalInteger,
          netQuantity: DecimalInteger,
          buyAveragePrice: Nullable(Price),
          sellAveragePrice: Nullable(Price),
          cashDeltaMinor: DecimalInteger,
        },
        Closed,
      ),
    ),
  },
  Closed,
);

/** Items are checked one by one (each gets its own field and rule), so any JSON is let in. */
export const IntakeBodySchema = Type.Array(Type.Unknown(), {
  maxItems: INTAKE_ITEMS_MAX,
  minItems: 1,
});

export const IntakeResultSchema = Type.Object(
  {
    created: Count,
    duplicates: Count,
    errors: Count,
    items: Type.Array(
      Type.Object(
        {
          index: Count,
          id: Nullable(Type.String()),
          status: Type.Union([
            Type.Literal(IntakeStatus.Created),
            Type.Literal(IntakeStatus.Duplicate),
            Type.Literal(IntakeStatus.Error),
          ]),
          field: Type.Optional(Type.String()),
          rule: Type.Optional(Type.String()),
          streamSequence: Type.Optional(Count),
        },
        Closed,
      ),
    ),
  },
  Closed,
);

export const DeadLetterListQuerySchema = Type.Object(
  {
    reason: Type.Optional(Type.String({ pattern: '^[A-Z][A-Z_]{0,63}$' })),
    cursor: Type.Optional(Cursor),
    limit: Type.Optional(Type.String({ pattern: LIMIT_PATTERN })),
  },
  Closed,
);

export const DeadLetterIdParams = Type.Object(
  { id: Type.String({ pattern: '^[1-9][0-9]{0,14}$' }) },
  Closed,
);

export const DeadLetterSchema = Type.Object(
  {
    id: Type.String(),
    reason: Type.String(),
    field: Nullable(Type.String()),
    rule: Nullable(Type.String()),
    detail: Nullable(Type.String()),
    originalSubject: Nullable(Type.String()),
    originalSequence: Nullable(Count),
    deadLetteredAt: Type.String(),
    execution: Nullable(Type.Record(Type.String(), Type.Union([Type.String(), Type.Number()]))),
    bodyBase64: Type.String(),
  },
  Closed,
);

export const DeadLetterListSchema = Type.Object(
  { items: Type.Array(DeadLetterSchema), nextCursor: Nullable(Type.String()) },
  Closed,
);

/** No body, `{}`, or a corrected execution (checked like a wire message). */
export const ReplayBodySchema = Type.Union([
  Type.Null(),
  Type.Object({ execution: Type.Optional(Type.Unknown()) }, Closed),
]);

export const ReplayResultSchema = Type.Object(
  {
    id: Type.String(),
    outcome: Type.Union([Type.Literal('PUBLISHED'), Type.Literal('DUPLICATE')]),
    subject: Type.String(),
    streamSequence: Count,
  },
  Closed,
);

const ActorKind = Type.Union([Type.Literal(ACTOR_KINDS[0]), Type.Literal(ACTOR_KINDS[1])]);

export const ActorParams = Type.Object({ kind: ActorKind, id: Id }, Closed);

export const ActorStatsSchema = Type.Object(
  {
    kinds: Type.Array(
      Type.Object(
        {
          kind: ActorKind,
          live: Count,
          passivated: Count,
          stopped: Count,
          mailboxDepth: Count,
          mailboxDepthMax: Count,
          restarts: Count,
        },
        Closed,
      ),
    ),
  },
  Closed,
);

export const ActorStatusSchema = Type.Object(
  {
    kind: ActorKind,
    id: Type.String(),
    state: Type.Union([
      Type.Literal('LIVE'),
      Type.Literal('PASSIVATED'),
      Type.Literal('STOPPED'),
      Type.Literal('ABSENT'),
    ]),
    mailboxDepth: Count,
    stoppedReason: Nullable(Type.String()),
    view: Nullable(Type.Record(Type.String(), Type.Unknown())),
  },
  Closed,
);

export const ActorRestartSchema = Type.Object(
  { kind: ActorKind, id: Type.String(), restarted: Type.Literal(true) },
  Closed,
);

// Compile-time proof that each schema describes exactly its view type.
type _SchemasMatchViews = [
  Assert<Equal<Static<typeof BlockOrderSummarySchema>, BlockOrderSummary>>,
  Assert<Equal<Static<typeof OrderExecutionStatusSchema>, OrderExecutionStatus>>,
  Assert<Equal<Static<typeof FillDetailsSchema>, FillDetailsView>>,
  Assert<Equal<Static<typeof ExecutionReportSchema>, ExecutionReportView>>,
  Assert<Equal<Static<typeof IntakeResultSchema>, IntakeResult>>,
  Assert<Equal<Static<typeof DeadLetterSchema>, DeadLetterView>>,
  Assert<Equal<Static<typeof ReplayResultSchema>, ReplayResult>>,
  Assert<Equal<Static<typeof ActorStatsSchema>['kinds'][number], ActorKindStats>>,
  Assert<Equal<Static<typeof ActorStatusSchema>, ActorStatusView>>,
];

export const BookingCloseBodySchema = Type.Union([
  Type.Null(),
  Type.Object({ cleanup: Type.Optional(Type.Boolean()) }, Closed),
]);

export const BookingBatchIdParams = Type.Object(
  { id: Type.String({ pattern: '^BKG-[0-9]{10}$' }) },
  Closed,
);

export const BookingBatchSchema = Type.Object(
  {
    id: Type.String(),
    batchNo: Count,
    windowStart: Nullable(Type.String()),
    closedAt: Type.String(),
    lineCount: Count,
    allocationCount: Count,
    accountCount: Count,
    journalRowCount: Count,
    capped: Type.Boolean(),
    fileName: Type.String(),
    checksumSha256: Type.String(),
    fileKept: Type.Boolean(),
    fileError: Type.Optional(Type.String()),
  },
  Closed,
);

export const MembershipQuerySchema = Type.Object({ fillId: Id }, Closed);

export const MembershipSchema = Type.Object(
  {
    fillId: Type.String(),
    batches: Type.Array(
      Type.Object({ id: Type.String(), batchNo: Count, closedAt: Type.String() }, Closed),
    ),
    lines: Type.Array(
      Type.Object(
        {
          batchId: Type.String(),
          lineNo: Count,
          sourceId: Type.String(),
          accountId: Type.String(),
          securityId: Type.String(),
          side: Type.String(),
          movementKind: Type.String(),
          transactionType: Type.String(),
          quantity: DecimalInteger,
          price: Price,
          cashDeltaMinor: DecimalInteger,
          transactionDate: Type.String(),
          blockOrderId: Type.String(),
          fillSeq: Seq,
          entrySeq: Seq,
          fillId: Type.String(),
          executionId: Type.String(),
          persistenceKey: Type.String(),
          sequenceNr: Seq,
        },
        Closed,
      ),
    ),
    truncated: Type.Boolean(),
  },
  Closed,
);

export const ReconciliationQuerySchema = Type.Object(
  { tradeDate: Type.Optional(Type.String({ pattern: DATE_PATTERN })) },
  Closed,
);

/** Signed decimals: the notional columns carry 4 fraction digits of a cent. */
const SignedDecimal = Type.String({ pattern: '^-?(0|[1-9][0-9]*)(\\.[0-9]+)?$' });

export const ReconciliationSchema = Type.Object(
  {
    tradeDate: Nullable(Type.String()),
    clean: Type.Boolean(),
    checkedAt: Type.String(),
    orders: Count,
    securities: Type.Array(
      Type.Object(
        {
          securityId: Type.String(),
          streetQuantity: SignedDecimal,
          booksQuantity: SignedDecimal,
          suspenseQuantity: SignedDecimal,
          accumulatedQuantity: SignedDecimal,
          inFlightQuantity: SignedDecimal,
          streetNotionalMinor: SignedDecimal,
          booksCashMinor: SignedDecimal,
          cashToleranceMinor: SignedDecimal,
          residueMinor: SignedDecimal,
          cashChecked: Type.Boolean(),
          ok: Type.Boolean(),
        },
        Closed,
      ),
    ),
    breaks: Type.Array(
      Type.Object(
        {
          kind: Type.Union([Type.Literal('SHARES'), Type.Literal('CASH')]),
          securityId: Type.String(),
          detail: Type.String(),
          accounts: Type.Array(Type.String()),
          orders: Type.Array(Type.String()),
        },
        Closed,
      ),
    ),
    breaksTruncated: Type.Boolean(),
  },
  Closed,
);

type _OperationsSchemasMatchViews = [
  Assert<Equal<Static<typeof BookingBatchSchema>, BookingBatchView>>,
  Assert<Equal<Static<typeof MembershipSchema>, MembershipView>>,
  Assert<Equal<Static<typeof ReconciliationSchema>, ReconciliationReport>>,
];
