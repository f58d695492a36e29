/**
 * Weaving the market's busts, corrections and cancels into a stream of
 * fills: the one rule the trading day's tape (trading-day/amendments.ts)
 * and the drills' scenarios (amend-scenario.ts) share. Only the price a
 * correction moves to is the caller's (`WeaveOrder.shiftPrice`). The draws
 * are taken in one fixed order, so a seed gives the same stream whoever
 * weaves it:
 * - per fill, a roll in 0..9999 (bust below `bustShareBps`, else a
 *   correction below `bustShareBps + correctionShareBps`), then for an
 *   amendment its delay in 0..`delayEntriesMax` entries;
 * - per correction, its price (`shiftPrice`), then whether the quantity
 *   changes: lowered to 50-99 %, or for the order's last fill only, raised
 *   by up to what the order still lacks (nothing later can overfill);
 * - after an order's last fill (and the amendments still due, which all go
 *   then), a cancel of its remainder with `cancelShareBps` if it stops short.
 * Every entry takes its order's next seq. Amendment ids are
 * `<order>-A<the fill's input seq, 7 digits>` and `<order>-X` (the cancel).
 */
import type { Amendment } from '../actors/block-order/amendments.ts';
import type { Entry, Fill } from '../actors/block-order/decider.ts';
import { invariant } from '../actors/errors.ts';
import type { AmendCounts, AmendOptions } from './trading-day/amendments.ts';

/** Seeded draws: whole numbers in [min, max], and a chance in basis points. */
export interface AmendDraw {
  int(min: number, max: number): number;
  chance(bps: number): boolean;
}

/** A bust or correction waiting for its moment. */
interface Due {
  /** Sent once the publish order reaches this index (or the order's last fill). */
  dueIndex: number;
  fillId: string;
  /** The fill's seq on the input: names the amendment, tells the last fill. */
  inputSeq: number;
  kind: 'BUST' | 'CORRECTION';
}

/** One order while its entries are woven. */
export interface WeaveOrder {
  readonly id: string;
  /** Fills of the order on the input. */
  readonly fills: number;
  readonly target: bigint;
  /** The input's fills reach the target: no remainder to cancel. */
  readonly complete: boolean;
  /** A corrected price: 1-3 ticks from `price`, never `price` itself. */
  readonly shiftPrice: (price: bigint, draw: AmendDraw) => bigint;
  /** Entries published so far: the next one takes seq + 1. */
  seq: number;
  fillsSeen: number;
  /** Live fills: quantity and price now. */
  live: Map<string, { quantity: bigint; price: bigint }>;
  filled: bigint;
  due: Due[];
}

export function weaveOrder(
  id: string,
  shape: { fills: number; target: bigint; complete: boolean },
  shiftPrice: WeaveOrder['shiftPrice'],
): WeaveOrder {
  return { id, ...shape, shiftPrice, seq: 0, fillsSeen: 0, live: new Map(), filled: 0n, due: [] };
}

/**
 * The order's next input fill, at its next seq, followed by what is due
 * right after it: amendments, and after its last fill maybe the cancel.
 * `index`: the entries published before this fill (all orders).
 */
export function weaveFill(
  o: WeaveOrder,
  input: Fill,
  index: number,
  draw: AmendDraw,
  options: AmendOptions,
  counts: AmendCounts,
): Entry[] {
  o.fillsSeen += 1;
  o.seq += 1;
  const fill: Fill = { ...input, seq: o.seq };
  o.live.set(fill.fillId, { quantity: fill.quantity, price: fill.price });
  o.filled += fill.quantity;
  const out: Entry[] = [fill];
  planAmendment(o, fill.fillId, input.seq, index + 1, draw, options);
  const last = o.fillsSeen === o.fills;
  for (const d of takeDue(o, index + 1, last))
    out.push(amend(o, d, draw, fill.executedAtMs, counts));
  if (last && !o.complete && draw.chance(options.cancelShareBps)) {
    counts.cancels += 1;
    o.seq += 1;
    const cancel = { kind: 'CANCEL' as const, amendmentId: `${o.id}-X`, blockOrderId: o.id };
    out.push({ ...cancel, seq: o.seq, executedAtMs: fill.executedAtMs });
  }
  return out;
}

function planAmendment(
  o: WeaveOrder,
  fillId: string,
  inputSeq: number,
  index: number,
  draw: AmendDraw,
  options: AmendOptions,
): void {
  const roll = draw.int(0, 9_999);
  const kind =
    roll < options.bustShareBps
      ? 'BUST'
      : roll < options.bustShareBps + options.correctionShareBps
        ? 'CORRECTION'
        : undefined;
  if (!kind) return;
  const dueIndex = index + draw.int(0, options.delayEntriesMax);
  o.due.push({ dueIndex, fillId, inputSeq, kind });
}

/** The order's amendments due now: all of them once it has published its last fill. */
function takeDue(o: WeaveOrder, index: number, last: boolean): Due[] {
  if (last) return o.due.splice(0);
  // Only this order's dues are checked per entry: O(its dues), not O(orders).
  const ready = o.due.filter((d) => d.dueIndex <= index);
  if (ready.length > 0) o.due = o.due.filter((d) => d.dueIndex > index);
  return ready;
}

function amend(
  o: WeaveOrder,
  d: Due,
  draw: AmendDraw,
  executedAtMs: number,
  counts: AmendCounts,
): Amendment {
  const now = o.live.get(d.fillId);
  invariant(now !== undefined, `${d.fillId}: amended but not live`);
  o.seq += 1;
  const base = {
    amendmentId: `${o.id}-A${String(d.inputSeq).padStart(7, '0')}`,
    blockOrderId: o.id,
    seq: o.seq,
    executedAtMs,
  };
  if (d.kind === 'BUST') {
    counts.busts += 1;
    o.live.delete(d.fillId);
    o.filled -= now.quantity;
    return { kind: 'BUST', ...base, fillId: d.fillId };
  }
  counts.corrections += 1;
  const price = o.shiftPrice(now.price, draw);
  const quantity = correctedQuantity(o, d, now.quantity, draw);
  o.live.set(d.fillId, { quantity, price });
  o.filled += quantity - now.quantity;
  invariant(o.filled <= o.target, `${o.id}: a correction would overfill`);
  return { kind: 'CORRECTION', ...base, fillId: d.fillId, quantity, price };
}

/** Half the corrections change the quantity: down to 50-99 %, or (last fill only) up within the target. */
function correctedQuantity(o: WeaveOrder, d: Due, quantity: bigint, draw: AmendDraw): bigint {
  if (!draw.chance(5_000)) return quantity;
  const room = o.target - o.filled;
  if (d.inputSeq === o.fills && room > 0n && draw.chance(5_000))
    return quantity + BigInt(draw.int(1, Number(room < 1_000n ? room : 1_000n)));
  const lowered = (quantity * BigInt(draw.int(50, 99))) / 100n;
  return lowered > 0n ? lowered : quantity;
}

/** Every order has sent what it planned: an amendment left over is a bug in the weaving. */
export function assertWoven(orders: Iterable<WeaveOrder>): void {
  for (const o of orders)
    invariant(o.due.length === 0, `${o.id}: ${o.due.length} amendments never sent`);
}
