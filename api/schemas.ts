/**
 * TypeBox schemas of the inspection API. Response schemas are compiled by
 * fastify into serializers: they keep responses fast and drop any property
 * that is not declared here, so internal state cannot leak by accident.
 * The type-level checks at the bottom keep them identical to the views.
 */
import { Type } from 'typebox';
import type { Static } from 'typebox';
import { BlockOrderStatus } from '../actors/views.ts';
import type {
  AccountView,
  BlockOrderAccountView,
  BlockOrderView,
  SuspenseLineView,
} from '../actors/views.ts';
import {
  FAULT_COUNT_MAX,
  FAULT_DELAY_MAX_MS,
  type AccountEventsPage,
  type ConsumerStatsView,
  type FaultPlanView,
  type Readiness,
  type ReadinessCheck,
  type SuspenseRetryResult,
} from './ports.ts';

// No '.': an id is one NATS subject token (executions.<partition>.<blockOrderId>).
export const ID_PATTERN = '^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$';

export const IdParams = Type.Object(
  { id: Type.String({ pattern: ID_PATTERN }) },
  { additionalProperties: false },
);

/** Exact integer as a decimal string (JSON numbers would lose precision). */
export const DecimalInteger = Type.String({ pattern: '^-?(0|[1-9][0-9]*)$' });
/** A price: fixed point with exactly 6 fraction digits, e.g. "187.123456". */
export const Price = Type.String({ pattern: '^-?(0|[1-9][0-9]*)\\.[0-9]{6}$' });
export const Seq = Type.Integer({ minimum: 0 });
export const Count = Type.Integer({ minimum: 0 });

const Side = Type.Union([Type.Literal('BUY'), Type.Literal('SELL')]);

const SuspenseLineViewSchema = Type.Object(
  {
    blockOrderId: Type.String(),
    fillSeq: Seq,
    accountId: Type.String(),
    securityId: Type.String(),
    side: Side,
    quantity: DecimalInteger,
    price: Price,
    reason: Type.String(),
    detail: Type.String(),
    resolution: Type.Union([Type.String(), Type.Null()]),
  },
  { additionalProperties: false },
);

const AverageViewSchema = Type.Object(
  {
    releaseEveryFills: Type.Union([Type.Integer({ minimum: 1 }), Type.Null()]),
    releaseEveryMarketMs: Type.Union([Type.Integer({ minimum: 1 }), Type.Null()]),
    releases: Count,
    releasedQuantity: DecimalInteger,
    accumulatedQuantity: DecimalInteger,
    accumulatedFills: Count,
    residueMinor: DecimalInteger,
  },
  { additionalProperties: false },
);

const BlockOrderSuspenseViewSchema = Type.Object(
  {
    openLines: Count,
    openQuantity: DecimalInteger,
    resolvedLines: Count,
    resolvedQuantity: DecimalInteger,
    lines: Type.Array(SuspenseLineViewSchema),
  },
  { additionalProperties: false },
);

export const AccountViewSchema = Type.Object(
  {
    accountId: Type.String(),
    opened: Type.Boolean(),
    cashMinor: DecimalInteger,
    positions: Type.Record(Type.String(), DecimalInteger),
    lastAppliedSeqByOrder: Type.Record(Type.String(), Seq),
    rejectedAllocations: Count,
    negativePositionFlags: Count,
    suspense: Type.Array(SuspenseLineViewSchema),
    suspenseOpen: Count,
    journalSeq: Seq,
  },
  { additionalProperties: false },
);

const BlockOrderAccountViewSchema = Type.Object(
  {
    accountId: Type.String(),
    targetQuantity: DecimalInteger,
    allocatedQuantity: DecimalInteger,
  },
  { additionalProperties: false },
);

export const BlockOrderViewSchema = Type.Object(
  {
    blockOrderId: Type.String(),
    securityId: Type.String(),
    side: Side,
    tradeDate: Type.String(),
    lotSize: DecimalInteger,
    status: Type.Union([
      Type.Literal(BlockOrderStatus.New),
      Type.Literal(BlockOrderStatus.PartiallyFilled),
      Type.Literal(BlockOrderStatus.Filled),
      Type.Literal(BlockOrderStatus.Cancelled),
    ]),
    targetQuantity: DecimalInteger,
    filledQuantity: DecimalInteger,
    fills: Count,
    busts: Count,
    corrections: Count,
    cancelledQuantity: Type.Union([DecimalInteger, Type.Null()]),
    lastFillSeq: Seq,
    vwapPrice: Type.Union([Price, Type.Null()]),
    accounts: Type.Array(BlockOrderAccountViewSchema),
    confirmedThroughSeq: Seq,
    unconfirmedLines: Count,
    journalSeq: Seq,
    suspense: BlockOrderSuspenseViewSchema,
    allocationPolicy: Type.Union([Type.Literal('PRO_RATA'), Type.Literal('AVERAGE_PRICE')]),
    average: Type.Union([AverageViewSchema, Type.Null()]),
  },
  { additionalProperties: false },
);

const ReadinessCheckSchema = Type.Object(
  { ok: Type.Boolean(), detail: Type.Optional(Type.String()) },
  { additionalProperties: false },
);

export const ReadinessSchema = Type.Object(
  {
    ready: Type.Boolean(),
    checks: Type.Object(
      {
        database: ReadinessCheckSchema,
        nats: ReadinessCheckSchema,
        consumer: ReadinessCheckSchema,
      },
      { additionalProperties: false },
    ),
    stoppedActors: Type.Array(Type.String()),
  },
  { additionalProperties: false },
);

export const SuspenseRetryParams = Type.Object(
  {
    id: Type.String({ pattern: ID_PATTERN }),
    blockOrderId: Type.String({ pattern: ID_PATTERN }),
    fillSeq: Type.String({ pattern: '^[1-9][0-9]{0,14}$' }),
  },
  { additionalProperties: false },
);

/** `after`: a seq (default 0, the start); `limit`: 1 to 500 (default 100). Query strings: no coercion. */
export const AccountEventsQuery = Type.Object(
  {
    after: Type.Optional(Type.String({ pattern: '^(0|[1-9][0-9]{0,14})$' })),
    limit: Type.Optional(Type.String({ pattern: '^([1-9][0-9]?|[1-4][0-9]{2}|500)$' })),
  },
  { additionalProperties: false },
);

export const JournalEventViewSchema = Type.Object(
  {
    seq: Seq,
    type: Type.String(),
    at: Type.String(),
    event: Type.Record(Type.String(), Type.Unknown()),
  },
  { additionalProperties: false },
);

export const AccountEventsPageSchema = Type.Object(
  {
    accountId: Type.String(),
    events: Type.Array(JournalEventViewSchema),
    nextAfter: Type.Union([Seq, Type.Null()]),
  },
  { additionalProperties: false },
);

export const SuspenseRetryResultSchema = Type.Object(
  {
    outcome: Type.Literal('APPLIED'),
    accountId: Type.String(),
    blockOrderId: Type.String(),
    fillSeq: Seq,
    cashDeltaMinor: DecimalInteger,
  },
  { additionalProperties: false },
);

const FaultCount = Type.Integer({ minimum: 0, maximum: FAULT_COUNT_MAX });

export const FaultRequestSchema = Type.Object(
  {
    actorThrows: Type.Optional(
      Type.Object(
        {
          kind: Type.Union([Type.Literal('account'), Type.Literal('block-order')]),
          id: Type.Optional(Type.String({ pattern: ID_PATTERN })),
          count: FaultCount,
          transient: Type.Optional(Type.Boolean()),
        },
        { additionalProperties: false },
      ),
    ),
    journalFailures: Type.Optional(FaultCount),
    journalDelayMs: Type.Optional(Type.Integer({ minimum: 0, maximum: FAULT_DELAY_MAX_MS })),
  },
  { additionalProperties: false },
);

export const FaultPlanSchema = Type.Object(
  {
    actorThrows: Type.Array(
      Type.Object(
        {
          kind: Type.String(),
          id: Type.Optional(Type.String()),
          remaining: Count,
          transient: Type.Boolean(),
        },
        { additionalProperties: false },
      ),
    ),
    journalFailures: Count,
    journalDelayMs: Count,
  },
  { additionalProperties: false },
);

export const ConsumerStatsSchema = Type.Object(
  {
    acked: Count,
    duplicates: Count,
    deadLettered: Count,
    conflicts: Count,
    nakked: Count,
    heldFills: Count,
  },
  { additionalProperties: false },
);

export const HealthSchema = Type.Object(
  { status: Type.Literal('ok') },
  { additionalProperties: false },
);

export const ErrorBodySchema = Type.Object(
  {
    error: Type.String(),
    message: Type.String(),
    field: Type.Optional(Type.String()),
    rule: Type.Optional(Type.String()),
    statusCode: Type.Integer(),
  },
  { additionalProperties: false },
);
export type ErrorBody = Static<typeof ErrorBodySchema>;

// Compile-time proof that each schema describes exactly its view type.
export type Equal<A, B> =
  (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
export type Assert<T extends true> = T;
type _SchemasMatchViews = [
  Assert<Equal<Static<typeof AccountViewSchema>, AccountView>>,
  Assert<Equal<Static<typeof BlockOrderAccountViewSchema>, BlockOrderAccountView>>,
  Assert<Equal<Static<typeof BlockOrderViewSchema>, BlockOrderView>>,
  Assert<Equal<Static<typeof SuspenseLineViewSchema>, SuspenseLineView>>,
  Assert<Equal<Static<typeof SuspenseRetryResultSchema>, SuspenseRetryResult>>,
  Assert<Equal<Static<typeof FaultPlanSchema>, FaultPlanView>>,
  Assert<Equal<Static<typeof ReadinessCheckSchema>, ReadinessCheck>>,
  Assert<Equal<Static<typeof ReadinessSchema>, Readiness>>,
  Assert<Equal<Static<typeof ConsumerStatsSchema>, ConsumerStatsView>>,
  Assert<Equal<Static<typeof AccountEventsPageSchema>, AccountEventsPage>>,
];
