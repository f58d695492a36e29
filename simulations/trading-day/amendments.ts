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
import type { Entry } from '../../actors/block-order/decider.ts';
import type { Side } from '../../actors/domain/money.ts';
import { invariant } from '../../actors/errors.ts';
import { barOf, type Bar } from './market.ts';
import { Stream, rngAt } from './random.ts';
import type { Tape, TapeFill } from './tape.ts';
import {
  assertWoven,
  weaveFill,
  weaveOrder,
  type AmendDraw,
  type WeaveOrder,
} from '../amend-weave.ts';

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

/** The tape's fills with the day's amendments woven in (amend-weave.ts), in publish order. */
export function* amendedTape(
  tape: Tape,
  fills: Iterable<TapeFill>,
  options: AmendOptions,
  counts: AmendCounts,
): Generator<TapeEntry, void, undefined> {
  checkAmendOptions(options);
  const rng = rngAt(tape.world.options.seed, Stream.TapeAmend, tape.dayIndex);
  const orders = new Map<string, WeaveOrder>();
  for (const plan of tape.plans) {
    const bar = barOf(tape.world.market, plan.securityIndex, tape.dayIndex);
    const shape = { fills: plan.fills, target: plan.targetQuantity, complete: plan.complete };
    const shift = (price: bigint, draw: AmendDraw) => shiftedPrice(price, bar, plan.side, draw);
    orders.set(plan.id, weaveOrder(plan.id, shape, shift));
  }
  let index = 0;
  for (const t of fills) {
    const o = orders.get(t.fill.blockOrderId);
    invariant(o !== undefined, `${t.fill.blockOrderId}: not on the tape`);
    invariant(!t.overfill, 'amendments are woven into a tape without overfills');
    for (const entry of weaveFill(o, t.fill, index, rng, options, counts))
      yield { entry, side: t.side, index: index++, sendOffsetMs: t.sendOffsetMs };
  }
  assertWoven(orders.values());
}

/** 1-3 ticks away, within the bar and the side's limit at the open (never the same price). */
function shiftedPrice(price: bigint, bar: Bar, side: Side, rng: AmendDraw): bigint {
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
