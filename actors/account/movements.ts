/**
 * What an account event did to the books, as signed movements. Pure.
 *
 * - AllocationApplied: one ALLOCATION of its line.
 * - SuspenseApplied: one SUSPENSE_APPLIED (a refused line, on the books now).
 * - AllocationAmended, not suspended: a REVERSAL of the line it amends
 *   (`amends`: its seq, quantity and price) and, when the account still has
 *   some of the fill, an ALLOCATION of the new line. Taking the old line back
 *   whole and booking the new one (rather than a net difference) lets a
 *   portfolio-accounting system cancel the very lot it booked.
 * - AllocationRejected, a suspended amendment, AccountOpened: none (the
 *   books did not move).
 * - AllocationBatch: its line events' movements, in order.
 *
 * Sign convention: `side` is always the line's own side (its order's);
 * `quantity` is the position's change in shares, signed (+ a buy or a
 * sell's reversal, − a sell or a buy's reversal); `cashDeltaMinor` is the
 * cash change in cents, signed as cashDelta (a buy pays). Each movement's
 * cash is its line's cash rounded as a line is (money.ts), so the movements
 * of an event sum exactly to the event's own cashDeltaMinor (asserted).
 */
import { absBig, cashDelta, type Side } from '../domain/money.ts';
import { assertNever, invariant } from '../errors.ts';
import type { AccountEvent, Allocation, LineEvent } from './decider.ts';

export const MovementKind = {
  Allocation: 'ALLOCATION',
  Reversal: 'REVERSAL',
  SuspenseApplied: 'SUSPENSE_APPLIED',
} as const;
export type MovementKind = (typeof MovementKind)[keyof typeof MovementKind];

export interface Movement {
  kind: MovementKind;
  blockOrderId: string;
  /** The seq of the line booked: an allocation's own; a reversal's, the seq of the line it takes back. */
  fillSeq: number;
  /** The order's seq whose line event made the movement: fillSeq, except a reversal's (its amendment's). */
  entrySeq: number;
  securityId: string;
  /** The line's side, whatever the kind. */
  side: Side;
  /** Signed shares: the position's change. */
  quantity: bigint;
  /** Fixed point, PRICE_DECIMALS: the price of the line booked (a reversal: the old line's). */
  price: bigint;
  /** Signed cents, as cashDelta. */
  cashDeltaMinor: bigint;
}

/** The shares of the line a movement books or takes back (its quantity is signed by its effect). */
export const lineShares = (m: Pick<Movement, 'quantity'>): bigint => absBig(m.quantity);

export function movementsOf(event: AccountEvent): Movement[] {
  switch (event.type) {
    case 'AccountOpened':
      return [];
    case 'SuspenseApplied': {
      const out = [lineMovement(event.allocation, MovementKind.SuspenseApplied)];
      return checked(out, event.cashDeltaMinor, 'SuspenseApplied');
    }
    case 'AllocationApplied':
    case 'AllocationRejected':
    case 'AllocationAmended':
      return lineMovements(event);
    case 'AllocationBatch':
      invariant(event.events.length > 0, 'an empty AllocationBatch');
      return event.events.flatMap(lineMovements);
    default:
      return assertNever(event, 'account event');
  }
}

function lineMovements(event: LineEvent): Movement[] {
  switch (event.type) {
    case 'AllocationApplied': {
      const out = [lineMovement(event.allocation, MovementKind.Allocation)];
      return checked(out, event.cashDeltaMinor, 'AllocationApplied');
    }
    case 'AllocationRejected':
      return [];
    case 'AllocationAmended':
      if (event.suspended) {
        invariant(event.cashDeltaMinor === 0n, 'a suspended amendment moves no cash');
        return [];
      }
      return checked(amendedMovements(event.allocation), event.cashDeltaMinor, 'AllocationAmended');
    default:
      return assertNever(event, 'line event');
  }
}

/** The old line taken back (if the account had any of it), then the new one (if any is left). */
function amendedMovements(a: Allocation): Movement[] {
  const was = a.amends;
  invariant(was !== undefined, `${a.blockOrderId} seq ${a.fillSeq}: an amendment amends nothing`);
  const out: Movement[] = [];
  if (was.quantity > 0n) {
    const cash = cashDelta(a.side, was.quantity, was.price);
    out.push({
      ...base(a, MovementKind.Reversal),
      fillSeq: was.seq,
      quantity: -signed(a.side, was.quantity),
      price: was.price,
      cashDeltaMinor: -cash,
    });
  }
  if (a.quantity > 0n) out.push(lineMovement(a, MovementKind.Allocation));
  return out;
}

function lineMovement(a: Allocation, kind: MovementKind): Movement {
  invariant(a.quantity > 0n, `${a.blockOrderId} seq ${a.fillSeq}: a booked line of ${a.quantity}`);
  return {
    ...base(a, kind),
    fillSeq: a.fillSeq,
    quantity: signed(a.side, a.quantity),
    price: a.price,
    cashDeltaMinor: cashDelta(a.side, a.quantity, a.price),
  };
}

function base(a: Allocation, kind: MovementKind) {
  const { blockOrderId, securityId, side } = a;
  return { kind, blockOrderId, entrySeq: a.fillSeq, securityId, side };
}

/** The movements, once their cash is seen to be exactly the event's. */
function checked(out: Movement[], cashDeltaMinor: bigint, what: string): Movement[] {
  const sum = out.reduce((s, m) => s + m.cashDeltaMinor, 0n);
  invariant(
    sum === cashDeltaMinor,
    `${what}: movements move ${sum} cents, the event ${cashDeltaMinor}`,
  );
  return out;
}

const signed = (side: Side, quantity: bigint): bigint => (side === 'BUY' ? quantity : -quantity);

/** Books after movements: cash (cents) and positions (shares), as deltas from where they started. */
export interface BooksDelta {
  cashMinor: bigint;
  positions: Map<string, bigint>;
}

/** Folds movements into `into` (a fresh delta if absent): cash plus cash, position plus shares. */
export function foldMovements(movements: Iterable<Movement>, into?: BooksDelta): BooksDelta {
  const books = into ?? { cashMinor: 0n, positions: new Map<string, bigint>() };
  for (const m of movements) {
    books.cashMinor += m.cashDeltaMinor;
    books.positions.set(m.securityId, (books.positions.get(m.securityId) ?? 0n) + m.quantity);
  }
  return books;
}
