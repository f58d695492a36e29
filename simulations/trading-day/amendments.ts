/**
 * The market's corrections on a day's tape: busts, corrections and order
 * cancels, woven into the fills' publish order. Deterministic from the seed
 * and streaming (per order it keeps its live fills' sizes and the few
 * amendments not yet due: O(fills in flight), never the tape).
 *
 * Rules, chosen so the books stay exact and the stream stays valid (every
 * amendment generated is one the service must accept):
 * - A fill is busted with `bustShareBps`, or else corrected with
 *   `correctionShareBps`; at most one amendment per fill. Each comes
 *   0..`delayEntriesMax` publish entries after its fill (a bust arrives
 *   minutes later), and at the latest right after its order's last fill.
 * - A correction moves the price by 1-3 ticks within the day's bar and the
 *   side's limit (BUY ≤ open, SELL ≥ open, as the tape's prices), and in
 *   half the cases also lowers the quantity (to 50-99 %, at least 1 share).
 *   A quantity above the original is drawn only for an order's LAST fill,
 *   and only up to what the order still lacks: nothing later can overfill.
 * - An order that stops short of its target gets a cancel of its unfilled
 *   remainder with `cancelShareBps`, right after its last amendment.
 * - Every entry takes its order's next seq: a fill's seq is its tape seq
 *   plus the amendments its order published before it. Fill ids keep the
 *   tape's numbering; amendment ids are `<order>-A<fill's tape seq>` and
 *   `<order>-X` (the cancel).
 * Busts and corrections of SELL fills may take back proceeds an account
 * already spent on buys: cash may then go below zero. That is the books
 * following the market; the tape's no-negative-cash property (tape.ts)
 * holds for a tape without amendments.
 */
import type { Amendment } from '../../actors/block-order/amendments.ts';
import type { Entry, Fill } from '../../actors/block-order/decider.ts';
import type { Side } from '../../actors/domain/money.ts';
import { invariant } from '../../actors/errors.ts';
import { barOf, type Bar } from './market.ts';
import { Stream, rngAt, type Rng } from './random.ts';
import type { OrderPlan, Tape, TapeFill } from './tape.ts';

export interface AmendOptions {
  bustShareBps: number;
  correctionShareBps: number;
  /** Of the orders that stop short of their target. */
  cancelShareBps: number;
  delayEntriesMax: number;
}

/** About 1 % each, as the market does on a normal day. */
export const defaultAmendOptions: AmendOptions = {
  bustShareBps: 100,
  correctionShareBps: 100,
  cancelShareBps: 100,
  delayEntriesMax: 200,
};

export const AMEND_LIMITS = { delayEntriesMax: 100_000 } as const;

export function checkAmendOptions(o: AmendOptions): AmendOptions {
  for (const key of ['bustShareBps', 'correctionShareBps', 'cancelShareBps'] as const)
    invariant(
      Number.isSafeInteger(o[key]) && o[key] >= 0 && o[key] <= 10_000,
      `${key} must be 0..10000, got ${o[key]}`,
    );
  invariant(o.bustShareBps + o.correctionShareBps <= 10_000, 'busts + corrections exceed 100 %');
  invariant(
    Number.isSafeInteger(o.delayEntriesMax) &&
      o.delayEntriesMax >= 0 &&
      o.delayEntriesMax <= AMEND_LIMITS.delayEntriesMax,
    `delayEntriesMax must be 0..${AMEND_LIMITS.delayEntriesMax}`,
  );
  return o;
}

/** One entry in publish order: a fill or an amendment. */
export interface TapeEntry {
  entry: Entry;
  side: Side;
  /** 0-based position in the publish order (fills and amendments). */
  index: number;
  sendOffsetMs: number;
}

export interface AmendCounts {
  busts: number;
  corrections: number;
  cancels: number;
}

const TICK_MICRO = 10_000n;

interface Due {
  /** Sent once the publish order reaches this index (or the order's last fill). */
  dueIndex: number;
  fillId: string;
  tapeSeq: number;
  kind: 'BUST' | 'CORRECTION';
}

/** One order's state while the tape is woven. */
interface OrderState {
  plan: OrderPlan;
  bar: Bar;
  /** Entries of this order published so far: the next one takes seq + 1. */
  seq: number;
  fillsSeen: number;
  /** Live fills: quantity and price now. */
  live: Map<string, { quantity: bigint; price: bigint }>;
  filled: bigint;
  due: Due[];
}

/** The tape's fills with the day's amendments woven in, in publish order. */
export function* amendedTape(
  tape: Tape,
  fills: Iterable<TapeFill>,
  options: AmendOptions,
  counts: AmendCounts,
): Generator<TapeEntry, void, undefined> {
  checkAmendOptions(options);
  const seed = tape.world.options.seed;
  const rng = rngAt(seed, Stream.TapeAmend, tape.dayIndex);
  const orders = new Map<string, OrderState>();
  for (const plan of tape.plans) {
    const bar = barOf(tape.world.market, plan.securityIndex, tape.dayIndex);
    orders.set(plan.id, { plan, bar, seq: 0, fillsSeen: 0, live: new Map(), filled: 0n, due: [] });
  }
  let index = 0;
  const emit = (entry: Entry, side: Side, sendOffsetMs: number): TapeEntry => ({
    entry,
    side,
    index: index++,
    sendOffsetMs,
  });
  for (const t of fills) {
    const o = orders.get(t.fill.blockOrderId);
    invariant(o !== undefined, `${t.fill.blockOrderId}: not on the tape`);
    invariant(!t.overfill, 'amendments are woven into a tape without overfills');
    o.fillsSeen += 1;
    o.seq += 1;
    const fill: Fill = { ...t.fill, seq: o.seq };
    o.live.set(fill.fillId, { quantity: fill.quantity, price: fill.price });
    o.filled += fill.quantity;
    yield emit(fill, t.side, t.sendOffsetMs);
    planAmendment(o, fill, t.fill.seq, index, rng, options);
    const last = o.fillsSeen === o.plan.fills;
    for (const due of takeDue(o, index, last))
      yield emit(amend(due.o, due.d, rng, fill.executedAtMs, counts), t.side, t.sendOffsetMs);
    if (last && !o.plan.complete && rng.chance(options.cancelShareBps)) {
      counts.cancels += 1;
      o.seq += 1;
      const cancel: Amendment = {
        kind: 'CANCEL',
        amendmentId: `${o.plan.id}-X`,
        blockOrderId: o.plan.id,
        seq: o.seq,
        executedAtMs: fill.executedAtMs,
      };
      yield emit(cancel, t.side, t.sendOffsetMs);
    }
  }
  for (const o of orders.values())
    invariant(o.due.length === 0, `${o.plan.id}: ${o.due.length} amendments never sent`);
}

function planAmendment(
  o: OrderState,
  fill: Fill,
  tapeSeq: number,
  index: number,
  rng: Rng,
  options: AmendOptions,
): void {
  const draw = rng.int(0, 9_999);
  const kind =
    draw < options.bustShareBps
      ? 'BUST'
      : draw < options.bustShareBps + options.correctionShareBps
        ? 'CORRECTION'
        : undefined;
  if (!kind) return;
  const dueIndex = index + rng.int(0, options.delayEntriesMax);
  o.due.push({ dueIndex, fillId: fill.fillId, tapeSeq, kind });
}

/** The amendments due now: this order's all when it has published its last fill. */
function* takeDue(
  current: OrderState,
  index: number,
  last: boolean,
): Generator<{ o: OrderState; d: Due }> {
  if (last) {
    for (const d of current.due.splice(0)) yield { o: current, d };
    return;
  }
  // Only the current order's dues are checked per entry: O(its dues), not O(orders).
  const ready = current.due.filter((d) => d.dueIndex <= index);
  if (ready.length === 0) return;
  current.due = current.due.filter((d) => d.dueIndex > index);
  for (const d of ready) yield { o: current, d };
}

function amend(
  o: OrderState,
  d: Due,
  rng: Rng,
  executedAtMs: number,
  counts: AmendCounts,
): Amendment {
  const now = o.live.get(d.fillId);
  invariant(now !== undefined, `${d.fillId}: amended but not live`);
  o.seq += 1;
  const base = {
    amendmentId: `${o.plan.id}-A${String(d.tapeSeq).padStart(7, '0')}`,
    blockOrderId: o.plan.id,
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
  const price = shiftedPrice(now.price, o.bar, o.plan.side, rng);
  const quantity = correctedQuantity(o, d, now.quantity, rng);
  o.live.set(d.fillId, { quantity, price });
  o.filled += quantity - now.quantity;
  invariant(o.filled <= o.plan.targetQuantity, `${o.plan.id}: a correction would overfill`);
  return { kind: 'CORRECTION', ...base, fillId: d.fillId, quantity, price };
}

/** Half the corrections change the quantity: down to 50-99 %, or (last fill only) up to the target. */
function correctedQuantity(o: OrderState, d: Due, quantity: bigint, rng: Rng): bigint {
  if (!rng.chance(5_000)) return quantity;
  const lastFill = d.tapeSeq === o.plan.fills;
  const room = o.plan.targetQuantity - o.filled;
  if (lastFill && room > 0n && rng.chance(5_000))
    return quantity + BigInt(rng.int(1, Number(room < 1_000n ? room : 1_000n)));
  const lowered = (quantity * BigInt(rng.int(50, 99))) / 100n;
  return lowered > 0n ? lowered : quantity;
}

/** 1-3 ticks away, within the bar and the side's limit at the open (never the same price). */
function shiftedPrice(price: bigint, bar: Bar, side: Side, rng: Rng): bigint {
  const [low, high] =
    side === 'BUY' ? [bar.lowMicro, bar.openMicro] : [bar.openMicro, bar.highMicro];
  for (let attempt = 0; attempt < 4; attempt++) {
    const ticks = BigInt(rng.int(1, 3)) * (rng.chance(5_000) ? 1n : -1n);
    const moved = price + ticks * TICK_MICRO;
    if (moved >= low && moved <= high && moved > 0n && moved !== price) return moved;
  }
  // A bar too narrow to move in: the other end of the range (a tick away at least, or the same).
  const other = price === low ? high : low;
  return other !== price ? other : price + TICK_MICRO;
}
