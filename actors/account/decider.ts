/**
 * Account: applies allocations to positions and cash, exactly.
 *
 * Idempotent per block order: it keeps the last applied fill seq of each
 * block order; an allocation at or below it is a duplicate and changes
 * nothing. Each allocation names the previous fill seq that allocated to this
 * account (`prevSeq`); if that is not the last one applied, an earlier
 * allocation was lost in flight and this one is refused as a GAP (nothing
 * persisted), so the block order re-delivers in order.
 *
 * Amendment lines (a bust or correction of a fill) travel the same chain.
 * Each says what the account had of the fill (`amends`) and what it has now;
 * the account applies the difference, in quantity and in cash, where cash
 * is the difference of the two lines' cash (each rounded as a line is), so a
 * bust gives back exactly what the fill took. If the amended line sits in
 * suspense, the suspended line is amended instead and the position is not
 * touched.
 *
 * The written rule for a position below zero: an amendment is the market's
 * word and is never refused. If it takes a position below zero (a bust of a
 * buy whose shares were sold since), it is applied AND flagged
 * (`negativePosition`): the account shows the flag and the position, and
 * the ledger checker accepts a negative position only with that flag.
 */
import { cashDelta, type Side } from '../domain/money.ts';
import { applyToPosition } from '../domain/position.ts';
import { own } from '../domain/records.ts';
import { assertNever, invariant } from '../errors.ts';

export interface AccountDef {
  accountId: string;
  cashMinor: bigint;
  positions: Record<string, bigint>;
}

export interface Allocation {
  blockOrderId: string;
  fillSeq: number;
  prevSeq: number;
  securityId: string;
  side: Side;
  /** > 0 for a fill's line; >= 0 for an amendment line (0: the account has none of the fill now). */
  quantity: bigint;
  price: bigint;
  /** An amendment line: the account's line of the fill as it was before (its seq, quantity and price). */
  amends?: { seq: number; quantity: bigint; price: bigint };
}

export const AllocationRejection = {
  InsufficientPosition: 'INSUFFICIENT_POSITION',
} as const;
export type AllocationRejection = (typeof AllocationRejection)[keyof typeof AllocationRejection];

/** The outcome of one allocation line. */
export type LineEvent =
  | { type: 'AllocationApplied'; allocation: Allocation; cashDeltaMinor: bigint; atMs: number }
  | {
      type: 'AllocationRejected';
      allocation: Allocation;
      reason: AllocationRejection;
      detail: string;
      atMs: number;
    }
  /**
   * An amendment line, applied: the position and cash move by the
   * difference (`suspended`: the amended line sat in suspense, so the
   * suspended line changed instead and the books did not move).
   */
  | {
      type: 'AllocationAmended';
      allocation: Allocation;
      cashDeltaMinor: bigint;
      suspended: boolean;
      /** The rule for a position below zero: applied, and flagged here. */
      negativePosition: boolean;
      atMs: number;
    };

export type AccountEvent =
  | { type: 'AccountOpened'; def: AccountDef; atMs: number }
  | LineEvent
  /** A refused line, retried once the account could take it: applied now, out of suspense. */
  | { type: 'SuspenseApplied'; allocation: Allocation; cashDeltaMinor: bigint; atMs: number }
  /**
   * Several line events decided in one mailbox batch, journaled as one row:
   * evolving it is exactly evolving its events in order.
   */
  | { type: 'AllocationBatch'; events: LineEvent[] };

export type AccountState =
  | { status: 'Empty' }
  | {
      status: 'Open';
      accountId: string;
      cashMinor: bigint;
      positions: Record<string, bigint>;
      lastSeqByOrder: Record<string, number>;
      rejected: number;
      /** Amendments that took a position below zero (applied and flagged, by the written rule). */
      negativePositionFlags: number;
      /**
       * Lines this account refused and that are not resolved yet, by
       * `suspenseKey`: they left the block and sit on no account (the
       * suspense ledger, ledger.ts, holds them per block order too).
       */
      suspense: Record<string, SuspenseEntry>;
    };

export interface SuspenseEntry {
  allocation: Allocation;
  reason: AllocationRejection;
  detail: string;
}

const NO_SUSPENSE: Record<string, SuspenseEntry> = Object.freeze({});

export const suspenseKey = (blockOrderId: string, fillSeq: number): string =>
  `${blockOrderId}#${fillSeq}`;

export type AccountCommand =
  | { type: 'Open'; def: AccountDef; nowMs: number }
  | { type: 'Apply'; allocation: Allocation; nowMs: number }
  /** Resolution: apply a suspended line to this account, now that it may take it. */
  | { type: 'RetrySuspense'; blockOrderId: string; fillSeq: number; nowMs: number };

export const ApplyOutcome = {
  Applied: 'APPLIED',
  Rejected: 'REJECTED',
  Duplicate: 'DUPLICATE',
  Gap: 'GAP',
  NotOpen: 'NOT_OPEN',
  AlreadyOpen: 'ALREADY_OPEN',
  Opened: 'OPENED',
  /** RetrySuspense: no such line in suspense (never refused, or already resolved). */
  NotInSuspense: 'NOT_IN_SUSPENSE',
  /** RetrySuspense: the account still cannot take it; nothing persisted. */
  StillRefused: 'STILL_REFUSED',
} as const;
export type ApplyOutcome = (typeof ApplyOutcome)[keyof typeof ApplyOutcome];

export interface Decision {
  outcome: ApplyOutcome;
  events: AccountEvent[];
  /** Why, for an outcome that persisted nothing. */
  detail?: string;
}

export const initialState = (): AccountState => ({ status: 'Empty' });

export function decide(command: AccountCommand, state: AccountState): Decision {
  switch (command.type) {
    case 'Open':
      if (state.status !== 'Empty') return { outcome: ApplyOutcome.AlreadyOpen, events: [] };
      for (const [securityId, qty] of Object.entries(command.def.positions)) {
        invariant(
          qty >= 0n,
          `opening position of ${command.def.accountId} in ${securityId} is negative`,
        );
      }
      return {
        outcome: ApplyOutcome.Opened,
        events: [{ type: 'AccountOpened', def: command.def, atMs: command.nowMs }],
      };
    case 'Apply': {
      if (state.status === 'Empty') return { outcome: ApplyOutcome.NotOpen, events: [] };
      const a = command.allocation;
      invariant(a.prevSeq < a.fillSeq, `prevSeq ${a.prevSeq} must precede fillSeq ${a.fillSeq}`);
      const last = own(state.lastSeqByOrder, a.blockOrderId) ?? 0;
      if (a.fillSeq <= last) return { outcome: ApplyOutcome.Duplicate, events: [] };
      if (a.prevSeq !== last) return { outcome: ApplyOutcome.Gap, events: [] };
      if (a.amends) return decideAmendment(state, a, a.amends, command.nowMs);
      invariant(a.quantity > 0n, `allocation quantity must be positive, got ${a.quantity}`);
      const outcome = applyToPosition(own(state.positions, a.securityId) ?? 0n, a);
      if (!outcome.ok) {
        return {
          outcome: ApplyOutcome.Rejected,
          events: [
            {
              type: 'AllocationRejected',
              allocation: a,
              reason: AllocationRejection.InsufficientPosition,
              detail: outcome.detail,
              atMs: command.nowMs,
            },
          ],
        };
      }
      return {
        outcome: ApplyOutcome.Applied,
        events: [
          {
            type: 'AllocationApplied',
            allocation: a,
            cashDeltaMinor: outcome.cashDeltaMinor,
            atMs: command.nowMs,
          },
        ],
      };
    }
    case 'RetrySuspense':
      return decideRetry(command, state);
    default:
      return assertNever(command, 'account command');
  }
}

/** The position and cash an amendment line leaves, by the written rule (never refused). */
export function amendPosition(
  position: bigint,
  a: Allocation,
  amends: NonNullable<Allocation['amends']>,
): { position: bigint; cashDeltaMinor: bigint } {
  const sign = a.side === 'BUY' ? 1n : -1n;
  return {
    position: position + sign * (a.quantity - amends.quantity),
    cashDeltaMinor:
      cashDelta(a.side, a.quantity, a.price) - cashDelta(a.side, amends.quantity, amends.price),
  };
}

function decideAmendment(
  state: Extract<AccountState, { status: 'Open' }>,
  a: Allocation,
  amends: NonNullable<Allocation['amends']>,
  nowMs: number,
): Decision {
  invariant(a.quantity >= 0n && amends.quantity >= 0n, 'amendment quantities are >= 0');
  invariant(amends.seq < a.fillSeq, `amends seq ${amends.seq} is not before ${a.fillSeq}`);
  const suspended = own(state.suspense, suspenseKey(a.blockOrderId, amends.seq)) !== undefined;
  const moved = suspended
    ? { position: 0n, cashDeltaMinor: 0n }
    : amendPosition(own(state.positions, a.securityId) ?? 0n, a, amends);
  const event = {
    type: 'AllocationAmended' as const,
    allocation: a,
    cashDeltaMinor: moved.cashDeltaMinor,
    suspended,
    negativePosition: moved.position < 0n,
    atMs: nowMs,
  };
  return { outcome: ApplyOutcome.Applied, events: [event] };
}

function decideRetry(
  command: Extract<AccountCommand, { type: 'RetrySuspense' }>,
  state: AccountState,
): Decision {
  if (state.status === 'Empty') return { outcome: ApplyOutcome.NotOpen, events: [] };
  const entry = own(state.suspense, suspenseKey(command.blockOrderId, command.fillSeq));
  if (!entry) return { outcome: ApplyOutcome.NotInSuspense, events: [] };
  const a = entry.allocation;
  const outcome = applyToPosition(own(state.positions, a.securityId) ?? 0n, a);
  // A rejection persists nothing: the line stays in suspense, as it was.
  if (!outcome.ok)
    return { outcome: ApplyOutcome.StillRefused, events: [], detail: outcome.detail };
  return {
    outcome: ApplyOutcome.Applied,
    events: [
      {
        type: 'SuspenseApplied',
        allocation: a,
        cashDeltaMinor: outcome.cashDeltaMinor,
        atMs: command.nowMs,
      },
    ],
  };
}

export function evolve(state: AccountState, event: AccountEvent): AccountState {
  switch (event.type) {
    case 'AccountOpened':
      invariant(state.status === 'Empty', 'AccountOpened on an open account');
      return {
        status: 'Open',
        accountId: event.def.accountId,
        cashMinor: event.def.cashMinor,
        positions: { ...event.def.positions },
        lastSeqByOrder: {},
        rejected: 0,
        negativePositionFlags: 0,
        // Shared and frozen: an account with nothing in suspense costs one pointer.
        suspense: NO_SUSPENSE,
      };
    case 'AllocationApplied': {
      invariant(state.status === 'Open', 'AllocationApplied before AccountOpened');
      const a = event.allocation;
      const outcome = applyToPosition(own(state.positions, a.securityId) ?? 0n, a);
      invariant(outcome.ok, `position of ${state.accountId} in ${a.securityId} would go negative`);
      invariant(
        event.cashDeltaMinor === outcome.cashDeltaMinor,
        'cash delta does not match the allocation',
      );
      const position = outcome.position;
      return {
        ...state,
        cashMinor: state.cashMinor + event.cashDeltaMinor,
        positions: { ...state.positions, [a.securityId]: position },
        lastSeqByOrder: { ...state.lastSeqByOrder, [a.blockOrderId]: a.fillSeq },
      };
    }
    case 'AllocationRejected': {
      invariant(state.status === 'Open', 'AllocationRejected before AccountOpened');
      const a = event.allocation;
      const entry = { allocation: a, reason: event.reason, detail: event.detail };
      return {
        ...state,
        lastSeqByOrder: { ...state.lastSeqByOrder, [a.blockOrderId]: a.fillSeq },
        rejected: state.rejected + 1,
        suspense: { ...state.suspense, [suspenseKey(a.blockOrderId, a.fillSeq)]: entry },
      };
    }
    case 'SuspenseApplied':
      invariant(state.status === 'Open', 'SuspenseApplied before AccountOpened');
      return evolveSuspenseApplied(state, event);
    case 'AllocationAmended':
      invariant(state.status === 'Open', 'AllocationAmended before AccountOpened');
      return evolveAmended(state, event);
    case 'AllocationBatch':
      invariant(event.events.length > 0, 'an empty AllocationBatch');
      return event.events.reduce<AccountState>(evolve, state);
    default:
      return assertNever(event, 'account event');
  }
}

function evolveSuspenseApplied(
  state: Extract<AccountState, { status: 'Open' }>,
  event: Extract<AccountEvent, { type: 'SuspenseApplied' }>,
): AccountState {
  const a = event.allocation;
  const key = suspenseKey(a.blockOrderId, a.fillSeq);
  const entry = own(state.suspense, key);
  invariant(entry !== undefined, `${key} is not in suspense`);
  // The line applied is the very line refused: the books and the suspense ledger agree.
  const held = entry.allocation;
  invariant(
    held.securityId === a.securityId &&
      held.side === a.side &&
      held.quantity === a.quantity &&
      held.price === a.price,
    `${key}: the applied line differs from the one in suspense`,
  );
  const outcome = applyToPosition(own(state.positions, a.securityId) ?? 0n, a);
  invariant(outcome.ok, `position of ${state.accountId} in ${a.securityId} would go negative`);
  invariant(event.cashDeltaMinor === outcome.cashDeltaMinor, 'cash delta does not match');
  const suspense = { ...state.suspense };
  delete suspense[key];
  return {
    ...state,
    cashMinor: state.cashMinor + event.cashDeltaMinor,
    positions: { ...state.positions, [a.securityId]: outcome.position },
    suspense,
  };
}

function evolveAmended(
  state: Extract<AccountState, { status: 'Open' }>,
  event: Extract<AccountEvent, { type: 'AllocationAmended' }>,
): AccountState {
  const a = event.allocation;
  invariant(a.amends !== undefined, 'AllocationAmended of a line that amends nothing');
  const lastSeqByOrder = { ...state.lastSeqByOrder, [a.blockOrderId]: a.fillSeq };
  const oldKey = suspenseKey(a.blockOrderId, a.amends.seq);
  const held = own(state.suspense, oldKey);
  invariant(
    event.suspended === (held !== undefined),
    `${oldKey}: suspense does not match the event`,
  );
  if (held) {
    // The suspended line is amended: it moves to this seq (or leaves, when nothing is left).
    invariant(event.cashDeltaMinor === 0n, 'a suspended line moves no cash');
    const suspense = { ...state.suspense };
    delete suspense[oldKey];
    if (a.quantity > 0n) {
      const { amends: _, ...line } = a;
      // The refusal's words stay (why it was refused); the line is the amended one.
      const detail = `amended by the market at seq ${a.fillSeq} to ${a.quantity}; refused: ${held.detail}`;
      suspense[suspenseKey(a.blockOrderId, a.fillSeq)] = { ...held, allocation: line, detail };
    }
    return { ...state, lastSeqByOrder, suspense };
  }
  const moved = amendPosition(own(state.positions, a.securityId) ?? 0n, a, a.amends);
  invariant(
    event.cashDeltaMinor === moved.cashDeltaMinor,
    'cash delta does not match the amendment',
  );
  invariant(
    event.negativePosition === moved.position < 0n,
    'negative position flag does not match',
  );
  return {
    ...state,
    cashMinor: state.cashMinor + moved.cashDeltaMinor,
    positions: { ...state.positions, [a.securityId]: moved.position },
    lastSeqByOrder,
    negativePositionFlags: state.negativePositionFlags + (event.negativePosition ? 1 : 0),
  };
}

/** The line events an event carries (a batch carries several). */
export function lineEvents(event: AccountEvent): LineEvent[] {
  switch (event.type) {
    case 'AccountOpened':
    case 'SuspenseApplied':
      return [];
    case 'AllocationApplied':
    case 'AllocationRejected':
    case 'AllocationAmended':
      return [event];
    case 'AllocationBatch':
      return event.events;
    default:
      return assertNever(event, 'account event');
  }
}

/**
 * What to journal for the events one mailbox batch decided: each run of two
 * or more line events becomes one AllocationBatch, so an account that took k
 * lines at once writes one row, not k. Folding the result equals folding the input.
 */
export function packForJournal(events: readonly AccountEvent[]): AccountEvent[] {
  const out: AccountEvent[] = [];
  let run: LineEvent[] = [];
  const flush = () => {
    if (run.length === 1 && run[0]) out.push(run[0]);
    else if (run.length > 1) out.push({ type: 'AllocationBatch', events: run });
    run = [];
  };
  for (const event of events) {
    if (
      event.type === 'AllocationApplied' ||
      event.type === 'AllocationRejected' ||
      event.type === 'AllocationAmended'
    )
      run.push(event);
    else {
      flush();
      out.push(event);
    }
  }
  flush();
  return out;
}
