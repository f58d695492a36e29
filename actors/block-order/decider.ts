/**
 * Block order: one per security and side. Takes its fills in sequence order
 * and allocates each one to its accounts, pro-rata in whole lots. The same
 * sequence carries the market's amendments (amendments.ts): a bust, a
 * correction or a cancel of the unfilled remainder, each at its own seq.
 *
 * Pure: `decide(command, state) → decision` and `evolve(state, event) → state`;
 * the state is exactly the fold of the events. Delivery tracking (which
 * account settled which line) is not state: the shell's outbox (outbox.ts)
 * keeps it, rebuilt as "nothing settled after the watermark" on recovery, and
 * the shell re-delivers those lines. Accounts are idempotent, so re-delivering
 * a little too much is harmless; the persisted watermark guarantees nothing
 * is lost.
 */
import { allocateFill, type AccountRemaining, type AllocationLine } from '../domain/allocation.ts';
import {
  decideAmend,
  evolveAmendment,
  sameAmendment,
  type AmendLine,
  type Amendment,
  type FillVersion,
} from './amendments.ts';
import {
  decideAveragedFill,
  evolveAccumulated,
  evolveAveragedAmend,
  invalidPolicy,
  openAverage,
  policyOf,
  type AllocationPolicy,
  type AverageRelease,
  type AverageState,
  type ReleaseChange,
  type ReleaseLines,
} from './average.ts';
import type { Side } from '../domain/money.ts';
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
  /** How fills reach the accounts (absent: pro-rata per fill). */
  policy?: AllocationPolicy;
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

/** What the order's subject carries at one seq: a fill or an amendment (only amendments have `kind`). */
export type Entry = Fill | Amendment;

export const isAmendment = (entry: Entry): entry is Amendment => 'kind' in entry;

/** The fill whose lines an entry sets: a fill's own, a bust's or correction's target; a cancel's none. */
export const linesFillIdOf = (entry: Entry): string | undefined =>
  !isAmendment(entry) || entry.kind !== 'CANCEL' ? entry.fillId : undefined;

/** The id an entry claims in the execution index: a fill id or an amendment id (one id space). */
export const entryIdOf = (entry: Entry): string =>
  isAmendment(entry) ? entry.amendmentId : entry.fillId;

/** A bust or correction: the fill it amends, and that fill's version before it. */
export interface AmendedFill {
  /** The fill as first applied. */
  fill: Fill;
  /** The seq of the entry that set the lines amended now (the fill's own, or its last correction's). */
  amendsSeq: number;
  previousQuantity: bigint;
  previousPrice: bigint;
}

export type BlockOrderEvent =
  | { type: 'BlockOrderOpened'; def: BlockOrderDef; atMs: number }
  | { type: 'FillAllocated'; fill: Fill; lines: AllocationLine[]; atMs: number }
  /** Every account's share of the fill, reversed: `lines` hold what each had (quantity 0 now). */
  | {
      type: 'FillBusted';
      amendment: Extract<Amendment, { kind: 'BUST' }>;
      amended: AmendedFill;
      lines: AmendLine[];
      atMs: number;
    }
  /** The fill's lines as they are after the correction (each with what it replaced). */
  | {
      type: 'FillCorrected';
      amendment: Extract<Amendment, { kind: 'CORRECTION' }>;
      amended: AmendedFill;
      lines: AmendLine[];
      atMs: number;
    }
  /** The unfilled remainder is cancelled: no fill is taken after it. An average-price order releases what it accumulated. */
  | {
      type: 'OrderCancelled';
      amendment: Extract<Amendment, { kind: 'CANCEL' }>;
      cancelledQuantity: bigint;
      release?: AverageRelease | null;
      atMs: number;
    }
  /** Average price (average.ts): the fill is accumulated; a trigger fired when `release` is set. */
  | { type: 'FillAccumulated'; fill: Fill; release: AverageRelease | null; atMs: number }
  /** Average price: a bust or correction; `change` is its release's, when the fill was released. */
  | {
      type: 'AveragedFillAmended';
      amendment: Extract<Amendment, { kind: 'BUST' | 'CORRECTION' }>;
      /** The fill's version before it. */
      amended: { fillId: string; quantity: bigint; price: bigint };
      change: ReleaseChange | null;
      /** A correction of an accumulated fill that completed the order: the accumulation released. */
      release?: AverageRelease;
      atMs: number;
    }
  /** `caughtUp`: every fill so far is confirmed (the journal's event_type tells, for the start-up sweep). */
  | { type: 'AllocationsConfirmed'; throughSeq: number; caughtUp: boolean; atMs: number };

export interface PendingLine {
  accountId: string;
  quantity: bigint;
  /** The previous seq that sent this account a line (0 = none): lets the account detect a gap. */
  prevSeq: number;
  /** An amendment line: the quantity this account had of the amended fill. */
  previousQuantity?: bigint;
}

/** An entry after the watermark (a fill or an amendment) whose lines are not all confirmed. */
export interface PendingFill {
  seq: number;
  /** The entry itself: a re-sent message at this seq is compared with it. */
  execution: Entry;
  /** The price of every line: the fill's, a correction's new one, a bust's original one. */
  price: bigint;
  lines: PendingLine[];
  /** For a bust or correction: what it amends (the account applies the difference). */
  amended?: AmendedFill;
  /** Average price: the release whose lines these are (null: the entry sets no lines). */
  linesKey?: string | null;
}

export type BlockOrderState =
  | { status: 'Empty' }
  | {
      status: 'Open';
      def: BlockOrderDef;
      /**
       * Per target, in def.targets order: what the account still needs (its
       * target less what it holds of the order). Arrays, not records: a fill
       * copies them (a pointer per account) and allocates straight from them,
       * so an order of 40,000 accounts costs microseconds per fill, not a
       * rebuild of a 40,000-key object.
       */
      remaining: AccountRemaining[];
      filledQuantity: bigint;
      /** Σ quantity × price over fills, for the VWAP. */
      filledNotional: bigint;
      /** Fills taken (a busted one still counts: it happened). */
      fills: number;
      busts: number;
      corrections: number;
      /** What the cancel took off the unfilled remainder (null: not cancelled); no fill is taken after it. */
      cancelledQuantity: bigint | null;
      /** The last seq applied: fills and amendments share the order's sequence. */
      lastFillSeq: number;
      /** Per target: the last seq that sent it a line (0 = none). */
      lastSeq: number[];
      /** Fills after the watermark (not yet confirmed by all their accounts), oldest first. */
      pending: PendingFill[];
      confirmedThroughSeq: number;
      /** The average-price policy's accumulation and releases; null for a pro-rata order. */
      average: AverageState | null;
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
  | { type: 'AllocateFill'; fill: Fill; prior?: Entry | null; nowMs: number }
  /**
   * A bust, correction or cancel. `prior` as for a fill; `target`: for a bust
   * or correction at a new seq, the amended fill's current version (from the
   * pending entries or the journal), or null if no such fill is on record.
   */
  | {
      type: 'Amend';
      amendment: Amendment;
      prior?: Entry | null;
      target?: FillVersion | null;
      /** Average price: the current lines of the amended fill's release, if it is released. */
      release?: ReleaseLines | null;
      nowMs: number;
    }
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
  /** A bust or correction of a fill this order never took. */
  UnknownFill: 'UNKNOWN_FILL',
  /** A bust or correction of a fill already busted. */
  AlreadyBusted: 'ALREADY_BUSTED',
  /** A correction that would fill beyond the order's remaining (or a cancelled order's filled) quantity. */
  CorrectionOverfill: 'CORRECTION_OVERFILL',
  /** A correction to the quantity and price the fill has already. */
  CorrectionChangesNothing: 'CORRECTION_CHANGES_NOTHING',
  /** A fill after the order's remainder was cancelled. */
  OrderCancelled: 'ORDER_CANCELLED',
  AlreadyCancelled: 'ALREADY_CANCELLED',
} as const;
export type FillRejection = (typeof FillRejection)[keyof typeof FillRejection];

export type Decision =
  | { outcome: 'Accepted'; events: BlockOrderEvent[] }
  | { outcome: 'Duplicate'; reason: string; events: [] }
  | {
      outcome: 'Rejected';
      reason: FillRejection;
      detail: string;
      /** For a conflict: the entry already applied, the other version. */
      existing?: Entry;
      /** For OUT_OF_ORDER: the seq the order takes next. */
      expectedSeq?: number;
      events: [];
    };

export const accepted = (...events: BlockOrderEvent[]): Decision => ({
  outcome: 'Accepted',
  events,
});
export const rejected = (
  reason: FillRejection,
  detail: string,
): Extract<Decision, { outcome: 'Rejected' }> => ({
  outcome: 'Rejected',
  reason,
  detail,
  events: [],
});

export const initialState = (): BlockOrderState => ({ status: 'Empty' });

/** Target positions by account id, per def (a memo: the def never changes once opened). */
const TARGET_INDEXES = new WeakMap<BlockOrderDef, Map<string, number>>();

/** The position of `accountId` in def.targets; an account the order does not serve is a bug. */
export function targetIndex(def: BlockOrderDef, accountId: string): number {
  let index = TARGET_INDEXES.get(def);
  if (!index) {
    index = new Map(def.targets.map((t, i) => [t.accountId, i]));
    TARGET_INDEXES.set(def, index);
  }
  const i = index.get(accountId);
  invariant(i !== undefined, `${accountId} is not a target of ${def.blockOrderId}`);
  return i;
}

/** What each account holds of the order (target less remaining), for views and tests. */
export function allocatedOf(state: OpenState): Record<string, bigint> {
  const out: Record<string, bigint> = {};
  state.def.targets.forEach((t, i) => {
    const held = t.quantity - state.remaining[i]!.remaining;
    if (held !== 0n) out[t.accountId] = held;
  });
  return out;
}

/** Σ target per def (a memo: asked on every average-price fill). */
const TOTAL_TARGETS = new WeakMap<BlockOrderDef, bigint>();

export function totalTarget(def: BlockOrderDef): bigint {
  let total = TOTAL_TARGETS.get(def);
  if (total === undefined) {
    total = def.targets.reduce((sum, t) => sum + t.quantity, 0n);
    TOTAL_TARGETS.set(def, total);
  }
  return total;
}

export function decide(command: BlockOrderCommand, state: BlockOrderState): Decision {
  switch (command.type) {
    case 'Open':
      return decideOpen(command, state);
    case 'AllocateFill':
      return decideFill(command, state);
    case 'Amend':
      return decideAmend(command, state);
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
  const policy = invalidPolicy(policyOf(def));
  if (policy !== null) return invalid(policy);
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
  if (fill.seq !== state.lastFillSeq + 1) return outOfOrder(state, fill.seq);
  if (state.cancelledQuantity !== null)
    return rejected(FillRejection.OrderCancelled, `the order's remainder is cancelled`);
  if (fill.quantity <= 0n)
    return rejected(FillRejection.NonPositiveQuantity, 'quantity must be > 0');
  if (fill.price <= 0n) return rejected(FillRejection.NonPositivePrice, 'price must be > 0');
  if (state.average !== null)
    return decideAveragedFill({ ...state, average: state.average }, fill, command.nowMs);
  const result = allocateFill({
    lotSize: state.def.lotSize,
    fillQuantity: fill.quantity,
    fillSeq: fill.seq,
    accounts: state.remaining,
  });
  // An empty order or an overfill: the fill is rejected whole.
  if (!result.ok) return rejected(FillRejection.Overfill, result.detail);
  return accepted({ type: 'FillAllocated', fill, lines: result.lines, atMs: command.nowMs });
}

export function outOfOrder(state: OpenState, seq: number): Decision {
  const detail = `expected seq ${state.lastFillSeq + 1}, got ${seq}`;
  return { ...rejected(FillRejection.OutOfOrder, detail), expectedSeq: state.lastFillSeq + 1 };
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
function executionDifferences(a: Entry, b: Entry): string[] {
  if (isAmendment(a) || isAmendment(b)) {
    if (!isAmendment(a) || !isAmendment(b)) return ['kind'];
    return sameAmendment(a, b);
  }
  return (Object.keys(FILL_FIELDS) as (keyof Fill)[]).filter((f) => a[f] !== b[f]);
}

const describe = (entry: Entry): string =>
  isAmendment(entry) ? `${entry.kind.toLowerCase()} ${entry.amendmentId}` : `fill ${entry.fillId}`;

/** A decision against an applied execution: a duplicate, or a conflict. */
export type RepeatDecision = Extract<Decision, { outcome: 'Duplicate' | 'Rejected' }>;

/**
 * A message that meets an applied execution under the same key, its seq on
 * this order or its fill id anywhere: only the very same execution is a
 * duplicate. Anything else (another id, another quantity, ...) collides with
 * what the books hold and is raised, never acked away.
 */
export function decideAgainstApplied(
  fill: Entry,
  applied: Entry,
  by: 'seq' | 'fillId',
): RepeatDecision {
  const differences = executionDifferences(applied, fill);
  if (differences.length === 0)
    return {
      outcome: 'Duplicate',
      reason: `${describe(fill)} already applied as seq ${applied.seq}`,
      events: [],
    };
  const held =
    by === 'seq'
      ? `seq ${fill.seq} is already applied as ${describe(applied)}`
      : `id ${entryIdOf(fill)} is already applied as ${applied.blockOrderId} seq ${applied.seq}`;
  return {
    outcome: 'Rejected',
    reason: FillRejection.ConflictingExecution,
    detail: `${held}; this message differs in ${differences.join(', ')}`,
    existing: applied,
    events: [],
  };
}

/** A message at an applied seq: compared with the entry applied there. */
export function decideRepeat(fill: Entry, prior: Entry | null | undefined): Decision {
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
        remaining: event.def.targets.map((t) =>
          Object.freeze({ accountId: t.accountId, remaining: t.quantity }),
        ),
        filledQuantity: 0n,
        filledNotional: 0n,
        fills: 0,
        busts: 0,
        corrections: 0,
        cancelledQuantity: null,
        lastFillSeq: 0,
        lastSeq: event.def.targets.map(() => 0),
        pending: [],
        confirmedThroughSeq: 0,
        average: openAverage(policyOf(event.def)),
      };
    case 'FillAllocated':
      invariant(state.status === 'Open', 'FillAllocated before BlockOrderOpened');
      return evolveFill(state, event);
    case 'FillBusted':
    case 'FillCorrected':
    case 'OrderCancelled':
      invariant(state.status === 'Open', `${event.type} before BlockOrderOpened`);
      return evolveAmendment(state, event);
    case 'FillAccumulated':
      invariant(state.status === 'Open', 'FillAccumulated before BlockOrderOpened');
      return evolveAccumulated(state, event);
    case 'AveragedFillAmended':
      invariant(state.status === 'Open', 'AveragedFillAmended before BlockOrderOpened');
      return evolveAveragedAmend(state, event);
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
  const { remaining, lastSeq, pendingLines } = moveLines(state, lines, fill.seq, false);
  return {
    ...state,
    remaining,
    lastSeq,
    filledQuantity: state.filledQuantity + fill.quantity,
    filledNotional: state.filledNotional + fill.quantity * fill.price,
    fills: state.fills + 1,
    lastFillSeq: fill.seq,
    pending: [
      ...state.pending,
      { seq: fill.seq, execution: fill, price: fill.price, lines: pendingLines },
    ],
  };
}

/**
 * Each account's remaining after `lines` (what it had → what it has; a new
 * line had nothing), and the pending lines with the seq each account last
 * had (its prevSeq chain). `amending`: the pending lines keep what each had.
 */
export function moveLines(
  state: OpenState,
  lines: readonly { accountId: string; quantity: bigint; previousQuantity?: bigint }[],
  seq: number,
  amending: boolean,
) {
  const remaining = state.remaining.slice();
  const lastSeq = state.lastSeq.slice();
  const pendingLines: PendingLine[] = [];
  for (const line of lines) {
    const i = targetIndex(state.def, line.accountId);
    const now = remaining[i]!.remaining - line.quantity + (line.previousQuantity ?? 0n);
    const target = state.def.targets[i]!.quantity;
    invariant(now >= 0n && now <= target, `${line.accountId} would need ${now} of ${target}`);
    remaining[i] = Object.freeze({ accountId: line.accountId, remaining: now });
    pendingLines.push(
      amending
        ? { ...line, previousQuantity: line.previousQuantity ?? 0n, prevSeq: lastSeq[i]! }
        : { accountId: line.accountId, quantity: line.quantity, prevSeq: lastSeq[i]! },
    );
    lastSeq[i] = seq;
  }
  return { remaining, lastSeq, pendingLines };
}

/** The entry an event applies at its seq (claimed in the execution index), if any. */
export function entryOf(event: BlockOrderEvent): Entry | undefined {
  switch (event.type) {
    case 'FillAllocated':
    case 'FillAccumulated':
      return event.fill;
    case 'FillBusted':
    case 'FillCorrected':
    case 'OrderCancelled':
    case 'AveragedFillAmended':
      return event.amendment;
    case 'BlockOrderOpened':
    case 'AllocationsConfirmed':
      return undefined;
    default:
      return assertNever(event, 'block order event');
  }
}
