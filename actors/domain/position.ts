/**
 * The account rule for one allocation line on its position, shared by the
 * account decider and by anything that must compute the same books (the
 * benchmark's other designs): a BUY adds the quantity and pays its cash, a
 * SELL takes the quantity and receives its cash, and a SELL beyond the
 * position is refused whole (nothing changes).
 */
import { cashDelta, type Side } from './money.ts';

export interface PositionLine {
  securityId: string;
  side: Side;
  quantity: bigint;
  /** Fixed point, PRICE_DECIMALS. */
  price: bigint;
}

export type PositionOutcome =
  { ok: true; position: bigint; cashDeltaMinor: bigint } | { ok: false; detail: string };

export function applyToPosition(position: bigint, line: PositionLine): PositionOutcome {
  if (line.side === 'SELL' && position < line.quantity) {
    return {
      ok: false,
      detail: `sell of ${line.quantity} exceeds position ${position} in ${line.securityId}`,
    };
  }
  return {
    ok: true,
    position: line.side === 'BUY' ? position + line.quantity : position - line.quantity,
    cashDeltaMinor: cashDelta(line.side, line.quantity, line.price),
  };
}
