/**
 * Block order: one per security and side. Takes its fills in sequence order
 * and allocates each one to its accounts, pro-rata in whole lots.
 *
 * Pure: `decide(command, state) → decision` and `evolve(state, event) → state`;
 * the state is exactly the fold of the events. Delivery tracking (which
 * account settled which line) is not state: the shell's outbox (outbox.ts)
 * keeps it, rebuilt as "nothing settled after the watermark" on recovery, and
 * the shell re-delivers those lines. Accounts are idempotent, so re-delivering
 * a little too much is harmless; the persisted watermark guarantees nothing
 * is lost.
 */
import { allocateFill, type AllocationLine } from '../domain/allocation.ts';
import type { Side } from '../domain/money.ts';
import { own } from '../domain/records.ts';
import { assertNever, invariant } from '../errors.ts';

export interface Target {
  accountId: string;
  quantity: bigint;
}

export interface BlockOrderDef {
  blockOrderId: string;
  securityId: string;
  side: Side;
  tradeDate: string;
  lotSize: bigint;
  /** Sorted by accountId: the allocation's tie-break rotation depends on this order. */
  targets: Target[];
}

export interface Fill {
  fillId: string;
  blockOrderId: string;
  /** 1, 2, 3, ... within the block order. */
  seq: number;
  quantity: bigint;
  /** Fixed point, PRICE_DECIMALS. */
  price: bigint;
  venue: string;
  executedAtMs: number;
}

export type BlockOrderEvent =
  | { type: 'BlockOrderOpened'; def: BlockOrderDef; atMs: number }
  | { type: 'FillAllocated'; fill: Fill; lines: AllocationLine[]; atMs: number }
  /** `caughtUp`: every fill so far is confirmed (the journal's event_type tells, for the start-up sweep). */
  | { type: 'AllocationsConfirmed'; throughSeq: number; caughtUp: boolean; atMs: number };

export interface PendingLine {
  accountId: string;
  quantity: bigint;
  /** The previous fill seq that allocated to this account (0 = none): lets the account detect a gap. */
  prevSeq: number;
}

export interface PendingFill {
  seq: number;
  /** The fill itself: a re-sent message at this seq is compared with it. */
  execution: Fill;
  lines: PendingLine[];
}

export type BlockOrderState =
  | { status: 'Empty' }
  | {
      status: 'Open';
      def: BlockOrderDef;
      allocated: Record<string, bigint>;
      filledQuantity: bigint;
      /** Σ quantity × price over fills, for the VWAP. */
      filledNotional: bigint;
      fills: number;
      lastFillSeq: number;
      lastSeqByAccount: Record<string, number>;
      /** Fills after the watermark (not yet confirmed by all their accounts), oldest first. */
      pending: PendingFill[];
      confirmedThroughSeq: number;
    };

export type OpenState = Extract<BlockOrderState, { status: 'Open' }>;

export type BlockOrderCommand =
  | { type: 'Open'; def: BlockOrderDef; nowMs: number }
  /**
   * `prior`: when `fill.seq` is already applied, the execution applied at that
   * seq (from the pending fills or the execution index), or null if none is
   * on record. A fill id re-used at a NEW seq is caught by the index's unique
   * claim when the event commits (ledger.ts), not here: the state stays small.
   */
  | { type: 'AllocateFill'; fill: Fill; prior?: Fill | null; nowMs: number }
  /** `settledThroughSeq`: the shell's outbox says every line up to this fill is settled. */
  | { type: 'ConfirmProgress'; settledThroughSeq: number; nowMs: number };

export const FillRejection = {
  UnknownBlockOrder: 'UNKNOWN_BLOCK_ORDER',
  WrongBlockOrder: 'WRONG_BLOCK_ORDER',
  OutOfOrder: 'OUT_OF_ORDER',
  Overfill: 'OVERFILL',
  NonPositiveQuantity: 'NON_POSITIVE_QUANTITY',
  NonPositivePrice: 'NON_POSITIVE_PRICE',
  AlreadyOpen: 'ALREADY_OPEN',
  InvalidBlockOrder: 'INVALID_BLOCK_ORDER',
  /** The message collides with an applied execution: an exception, never a duplicate. */
  ConflictingExecution: 'CONFLICTING_EXECUTION',
} as const;
export type FillRejection = (typeof FillRejection)[keyof typeof FillRejection];

export type Decision =
  | { outcome: 'Accepted'; events: BlockOrderEvent[] }
  | { outcome: 'Duplicate'; reason: string; events: [] }
  | {
      outcome: 'Rejected';
      reason: FillRejection;
      detail: string;
      /** For a conflict: the execution already applied, the other version. */
      existing?: Fill;
      /** For OUT_OF_ORDER: the seq the order takes next. */
      expectedSeq?: number;
      events: [];
    };

const accepted = (...events: BlockOrderEvent[]): Decision => ({ outcome: 'Accepted', events });
const rejected = (
  reason: FillRejection,
  detail: string,
): Extract<Decision, { outcome: 'Rejected' }> => ({
  outcome: 'Rejected',
  reason,
  detail,
  events: [],
});

export const initialState = (): BlockOrderState => ({ status: 'Empty' });

export function totalTarget(def: BlockOrderDef): bigint {
  return def.targets.reduce((sum, t) => sum + t.quantity, 0n);
}

export function decide(command: BlockOrderCommand, state: BlockOrderState): Decision {
  switch (command.type) {
    case 'Open':
      return decideOpen(command, state);
    case 'AllocateFill':
      return decideFill(command, state);
    case 'ConfirmProgress': {
      if (state.status === 'Empty') return accepted();
      const through = command.settledThroughSeq;
      invariant(through <= state.lastFillSeq, `settled through ${through}, beyond the last fill`);
      return through > state.confirmedThroughSeq
        ? accepted({
            type: 'AllocationsConfirmed',
            throughSeq: through,
            caughtUp: through === state.lastFillSeq,
            atMs: command.nowMs,
          })
        : accepted();
    }
    default:
      return assertNever(command, 'block order command');
  }
}

function decideOpen(
  command: Extract<BlockOrderCommand, { type: 'Open' }>,
  state: BlockOrderState,
): Decision {
  if (state.status !== 'Empty')
    return rejected(FillRejection.AlreadyOpen, 'block order is already open');
  // Reference data is input too: a bad order is rejected (its fills are
  // dead-lettered), it does not crash the actor.
  const def = command.def;
  const invalid = (detail: string) => rejected(FillRejection.InvalidBlockOrder, detail);
  if (def.lotSize <= 0n) return invalid(`lot size ${def.lotSize} must be positive`);
  if (def.targets.length === 0) return invalid(`block order ${def.blockOrderId} has no targets`);
  const seen = new Set<string>();
  for (const t of def.targets) {
    if (t.quantity <= 0n) return invalid(`target of ${t.accountId} must be positive`);
    if (seen.has(t.accountId)) return invalid(`account ${t.accountId} is targeted twice`);
    seen.add(t.accountId);
  }
  return accepted({ type: 'BlockOrderOpened', def, atMs: command.nowMs });
}

function decideFill(
  command: Extract<BlockOrderCommand, { type: 'AllocateFill' }>,
  state: BlockOrderState,
): Decision {
  const { fill } = command;
  if (state.status === 'Empty')
    return rejected(FillRejection.UnknownBlockOrder, `no block order ${fill.blockOrderId}`);
  if (fill.blockOrderId !== state.def.blockOrderId)
    return rejected(FillRejection.WrongBlockOrder, `fill is for ${fill.blockOrderId}`);
  if (fill.seq <= state.lastFillSeq) return decideRepeat(fill, command.prior);
  if (fill.seq !== state.lastFillSeq + 1) {
    const detail = `expected seq ${state.lastFillSeq + 1}, got ${fill.seq}`;
    return { ...rejected(FillRejection.OutOfOrder, detail), expectedSeq: state.lastFillSeq + 1 };
  }
  if (fill.quantity <= 0n)
    return rejected(FillRejection.NonPositiveQuantity, 'quantity must be > 0');
  if (fill.price <= 0n) return rejected(FillRejection.NonPositivePrice, 'price must be > 0');
  const result = allocateFill({
    lotSize: state.def.lotSize,
    fillQuantity: fill.quantity,
    fillSeq: fill.seq,
    accounts: state.def.targets.map((t) => ({
      accountId: t.accountId,
      remaining: t.quantity - (own(state.allocated, t.accountId) ?? 0n),
    })),
  });
  // An empty order or an overfill: the fill is rejected whole.
  if (!result.ok) return rejected(FillRejection.Overfill, result.detail);
  return accepted({ type: 'FillAllocated', fill, lines: result.lines, atMs: command.nowMs });
}

/** Every field of a fill: the compiler keeps the list whole, so a new field is compared too. */
const FILL_FIELDS = {
  fillId: true,
  blockOrderId: true,
  seq: true,
  quantity: true,
  price: true,
  venue: true,
  executedAtMs: true,
} as const satisfies Record<keyof Fill, true>;

/** The fields in which two versions of an execution differ (none: the same execution). */
function executionDifferences(a: Fill, b: Fill): string[] {
  return (Object.keys(FILL_FIELDS) as (keyof Fill)[]).filter((f) => a[f] !== b[f]);
}

/** A decision against an applied execution: a duplicate, or a conflict. */
export type RepeatDecision = Extract<Decision, { outcome: 'Duplicate' | 'Rejected' }>;

/**
 * A message that meets an applied execution under the same key, its seq on
 * this order or its fill id anywhere: only the very same execution is a
 * duplicate. Anything else (another id, another quantity, ...) collides with
 * what the books hold and is raised, never acked away.
 */
export function decideAgainstApplied(
  fill: Fill,
  applied: Fill,
  by: 'seq' | 'fillId',
): RepeatDecision {
  const differences = executionDifferences(applied, fill);
  if (differences.length === 0)
    return {
      outcome: 'Duplicate',
      reason: `fill ${fill.fillId} already applied as seq ${applied.seq}`,
      events: [],
    };
  const held =
    by === 'seq'
      ? `seq ${fill.seq} is already applied as fill ${applied.fillId}`
      : `fill id ${fill.fillId} is already applied as ${applied.blockOrderId} seq ${applied.seq}`;
  return {
    outcome: 'Rejected',
    reason: FillRejection.ConflictingExecution,
    detail: `${held}; this message differs in ${differences.join(', ')}`,
    existing: applied,
    events: [],
  };
}

/** A message at an applied seq: compared with the execution applied there. */
function decideRepeat(fill: Fill, prior: Fill | null | undefined): Decision {
  invariant(
    prior !== undefined,
    `seq ${fill.seq} is applied: the shell must look up its execution`,
  );
  if (prior === null)
    return rejected(
      FillRejection.ConflictingExecution,
      `seq ${fill.seq} is already applied and no record of its execution is kept to compare`,
    );
  invariant(prior.seq === fill.seq, `prior execution is seq ${prior.seq}, not ${fill.seq}`);
  return decideAgainstApplied(fill, prior, 'seq');
}

export function evolve(state: BlockOrderState, event: BlockOrderEvent): BlockOrderState {
  switch (event.type) {
    case 'BlockOrderOpened':
      invariant(state.status === 'Empty', 'BlockOrderOpened on an open block order');
      return {
        status: 'Open',
        def: event.def,
        allocated: {},
        filledQuantity: 0n,
        filledNotional: 0n,
        fills: 0,
        lastFillSeq: 0,
        lastSeqByAccount: {},
        pending: [],
        confirmedThroughSeq: 0,
      };
    case 'FillAllocated':
      invariant(state.status === 'Open', 'FillAllocated before BlockOrderOpened');
      return evolveFill(state, event);
    case 'AllocationsConfirmed': {
      invariant(state.status === 'Open', 'AllocationsConfirmed before BlockOrderOpened');
      invariant(event.throughSeq <= state.lastFillSeq, 'confirmation beyond the last fill');
      if (event.throughSeq <= state.confirmedThroughSeq) return state;
      return {
        ...state,
        confirmedThroughSeq: event.throughSeq,
        pending: state.pending.filter((p) => p.seq > event.throughSeq),
      };
    }
    default:
      return assertNever(event, 'block order event');
  }
}

function evolveFill(
  state: OpenState,
  event: Extract<BlockOrderEvent, { type: 'FillAllocated' }>,
): OpenState {
  const { fill, lines } = event;
  invariant(fill.seq === state.lastFillSeq + 1, `fill seq ${fill.seq} after ${state.lastFillSeq}`);
  // Conservation: the parts sum exactly to the fill.
  const sum = lines.reduce((s, l) => s + l.quantity, 0n);
  invariant(
    sum === fill.quantity,
    `allocation of fill ${fill.fillId} sums to ${sum}, not ${fill.quantity}`,
  );
  const allocated = { ...state.allocated };
  const lastSeqByAccount = { ...state.lastSeqByAccount };
  const pendingLines: PendingLine[] = [];
  for (const line of lines) {
    allocated[line.accountId] = (own(allocated, line.accountId) ?? 0n) + line.quantity;
    const prevSeq = own(lastSeqByAccount, line.accountId) ?? 0;
    pendingLines.push({ accountId: line.accountId, quantity: line.quantity, prevSeq });
    lastSeqByAccount[line.accountId] = fill.seq;
  }
  return {
    ...state,
    allocated,
    lastSeqByAccount,
    filledQuantity: state.filledQuantity + fill.quantity,
    filledNotional: state.filledNotional + fill.quantity * fill.price,
    fills: state.fills + 1,
    lastFillSeq: fill.seq,
    pending: [...state.pending, { seq: fill.seq, execution: fill, lines: pendingLines }],
  };
}
