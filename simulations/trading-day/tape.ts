/**
 * The execution tape of a trading day: the market's fills of the block
 * orders `rebalanceDay` produced, in publish order, with a send schedule.
 * Pure and deterministic from (seed, day, orders); streaming: `buildTape`
 * keeps one small plan per order (O(orders)) and `tapeFills` yields the fills
 * one at a time, never holding them (O(orders) memory for any number of fills).
 *
 * Rules:
 * - Sizes: `sizeMin..sizeMax` shares (50-450), or with `largeShareBps` a
 *   large print (`largeMin..largeMax`); a fill never exceeds the order's
 *   remaining quantity (the last one is cut to fit). Fill `maxFillsPerOrder`
 *   takes the whole rest, so the bound holds whatever the order's size.
 * - Completion: BUY orders fill completely with `completeShareBps`, else stop
 *   at 60-95 % (floored to a share). SELL orders always fill completely (why:
 *   see below).
 * - Overfills: with `overfillShareBps`, an order gets one last fill of its
 *   unfilled rest plus a normal size: more than remaining, so the service
 *   dead-letters it as OVERFILL. It is marked `overfill` and changes nothing.
 * - Prices: on the one-cent tick, within the day's bar, limited at the OPEN:
 *   a BUY fills in [low, open], a SELL in [open, high] (the rebalance sizes
 *   its trades at the open: think of limit orders at the open price).
 * - Venues: one of VENUES, uniformly.
 * - Publish order: every SELL fill before every BUY fill; within a side the
 *   next fill comes from a live order picked uniformly, so each order's fills
 *   stay in seq order.
 * - Market time (executedAtMs): the send offset scaled onto the session
 *   (09:30-16:00 US Eastern, session.ts), so it is non-decreasing along the
 *   whole tape and follows the stream's shape (a U shape is a U-shaped day).
 *
 * Cash never goes negative, at any point of the publish order. An account's
 * buys were sized so their cost at the open <= its opening cash + its sells'
 * proceeds at the open (rebalance.ts, fitBuys). Then:
 * 1. All its sells complete and come before any buy, and each sell price is
 *    >= open: when buys start, its cash >= opening cash + proceeds at the open.
 * 2. Each buy price is <= open, and the allocation never gives an account more
 *    than its target: what its buys take, at any point, <= target × open.
 * 3. Prices are whole cents, so quantity × price is whole cents: the actors'
 *    per-line half-even rounding (money.ts) rounds nothing away or up.
 * A partly filled sell would break 1 (its proceeds were spent), hence sells
 * always complete. The test replays every fill through the actors' own
 * allocation and cashDelta and checks each account's cash after each fill.
 */
import type { Fill } from '../../actors/block-order/decider.ts';
import type { Side } from '../../actors/domain/money.ts';
import { assertNever, invariant } from '../../actors/errors.ts';
import type { SeedData } from '../../persistence/reference.ts';
import { FILL_NOTIONAL_MAX, ID_PATTERN } from '../../system/fill-wire.ts';
import { barOf, type Bar } from './market.ts';
import { TRADING_DAY_LIMITS, tradeDateOf } from './options.ts';
import { Stream, rngAt, type Rng } from './random.ts';
import { SESSION_MS, sessionOf, type Session } from './session.ts';
import { checkShape, scheduleOf, type Schedule, type StreamShape } from './shape.ts';
import type { World } from './world.ts';

/** Market identifier codes (ISO 10383) of US exchanges the tape prints on. */
export const VENUES = ['XNYS', 'XNAS', 'ARCX', 'BATS', 'EDGX', 'IEXG', 'MEMX', 'XBOS'] as const;
export type Venue = (typeof VENUES)[number];

export const TAPE_LIMITS = {
  /** Seven digits in a fill id. */
  fillsPerOrderMax: 9_999_999,
  fillsMax: 100_000_000,
  sizeMax: 10_000_000,
  /** Orders of one day: a BUY and a SELL per security. */
  ordersMax: 2 * TRADING_DAY_LIMITS.securitiesMax,
} as const;

const TICK_MICRO = 10_000n; // one cent, in price units

export interface TapeOptions {
  sizeMin: number;
  sizeMax: number;
  /** Share of fills that are large prints, in basis points. */
  largeShareBps: number;
  largeMin: number;
  largeMax: number;
  /** Share of BUY orders filled completely (SELL orders always are), in basis points. */
  completeShareBps: number;
  /** Share of orders that get one overfilling last fill, in basis points. */
  overfillShareBps: number;
  maxFillsPerOrder: number;
  /** The whole tape's bound: building a larger one fails before any fill is made. */
  maxFills: number;
  shape: StreamShape;
  /** For the publisher: ignore the schedule's pacing and send as fast as accepted. */
  asFastAsPossible: boolean;
}

export const defaultTape: TapeOptions = {
  sizeMin: 50,
  sizeMax: 450,
  largeShareBps: 300,
  largeMin: 1_000,
  largeMax: 10_000,
  completeShareBps: 9_000,
  overfillShareBps: 0,
  maxFillsPerOrder: 100_000,
  maxFills: 10_000_000,
  shape: { kind: 'STEADY', ratePerSec: 1_000 },
  asFastAsPossible: false,
};

const isCount = (n: number, min: number, max: number): boolean =>
  Number.isSafeInteger(n) && n >= min && n <= max;

export function resolveTapeOptions(overrides: Partial<TapeOptions> = {}): TapeOptions {
  const o: TapeOptions = { ...defaultTape, ...overrides };
  const L = TAPE_LIMITS;
  invariant(isCount(o.sizeMin, 1, o.sizeMax), 'sizeMin: 1..sizeMax');
  invariant(isCount(o.sizeMax, o.sizeMin, L.sizeMax), `sizeMax: sizeMin..${L.sizeMax}`);
  invariant(isCount(o.largeMin, 1, o.largeMax), 'largeMin: 1..largeMax');
  invariant(isCount(o.largeMax, o.largeMin, L.sizeMax), `largeMax: largeMin..${L.sizeMax}`);
  for (const key of ['largeShareBps', 'completeShareBps', 'overfillShareBps'] as const)
    invariant(isCount(o[key], 0, 10_000), `${key}: 0..10000`);
  // Two slots at least: an overfilling order needs one beside its normal fills.
  invariant(isCount(o.maxFillsPerOrder, 2, L.fillsPerOrderMax), 'maxFillsPerOrder out of range');
  invariant(isCount(o.maxFills, 0, L.fillsMax), `maxFills: 0..${L.fillsMax}`);
  checkShape(o.shape);
  return o;
}

/** One block order as the tape sees it: O(1) whatever its number of fills. */
export interface OrderPlan {
  /** Position in the day's block orders: keys the order's random streams. */
  index: number;
  id: string;
  side: Side;
  securityIndex: number;
  targetQuantity: bigint;
  /** What the accepted fills add up to: the target, or 60-95 % of it. */
  fillQuantity: bigint;
  complete: boolean;
  overfill: boolean;
  /** Fills on the tape, the overfill included. */
  fills: number;
}

export interface SideTotals {
  orders: number;
  ordersCompleted: number;
  /** Fills on the tape, overfills included. */
  fills: number;
  /** Shares the service applies: overfills excluded. */
  shares: bigint;
  overfills: number;
}

export interface TapeSummary {
  tradeDate: string;
  orders: number;
  ordersCompleted: number;
  fills: number;
  shares: bigint;
  overfills: number;
  buy: SideTotals;
  sell: SideTotals;
  /** The schedule's length: when the last fill is sent, roughly. */
  durationMs: number;
}

export interface Tape {
  world: World;
  dayIndex: number;
  options: TapeOptions;
  session: Session;
  plans: readonly OrderPlan[];
  schedule: Schedule;
  summary: TapeSummary;
}

/** One fill in publish order. */
export interface TapeFill {
  fill: Fill;
  side: Side;
  /** Beyond the order's remaining: the service must dead-letter it as OVERFILL. */
  overfill: boolean;
  /** 0-based position in the publish order. */
  index: number;
  /** When to send it, in ms from the start of the run (the publish schedule). */
  sendOffsetMs: number;
}

/** `<orderId>-F<seq>`, seq on seven digits: sorts as text in seq order. */
export const fillIdOf = (blockOrderId: string, seq: number): string =>
  `${blockOrderId}-F${String(seq).padStart(7, '0')}`;

/** Each (day, order) its own streams: index = day × ordersMax + order. */
const orderStreamIndex = (dayIndex: number, orderIndex: number): number =>
  dayIndex * TAPE_LIMITS.ordersMax + orderIndex;

const drawSize = (o: TapeOptions, rng: Rng): bigint =>
  BigInt(
    rng.chance(o.largeShareBps) ? rng.int(o.largeMin, o.largeMax) : rng.int(o.sizeMin, o.sizeMax),
  );

/** The order's fill sizes, in seq order; the overfill, if any, last. */
export function* fillSizes(
  tape: Pick<Tape, 'world' | 'dayIndex' | 'options'>,
  plan: Omit<OrderPlan, 'fills'>,
): Generator<{ quantity: bigint; overfill: boolean }, void, undefined> {
  const o = tape.options;
  const rng = rngAt(
    tape.world.options.seed,
    Stream.TapeSize,
    orderStreamIndex(tape.dayIndex, plan.index),
  );
  const slots = o.maxFillsPerOrder - (plan.overfill ? 1 : 0);
  let remaining = plan.fillQuantity;
  for (let seq = 1; remaining > 0n; seq++) {
    const drawn = drawSize(o, rng);
    const quantity = drawn > remaining || seq === slots ? remaining : drawn;
    remaining -= quantity;
    yield { quantity, overfill: false };
  }
  // Beyond the rest by a normal size: strictly more than the order has remaining.
  if (plan.overfill)
    yield { quantity: plan.targetQuantity - plan.fillQuantity + drawSize(o, rng), overfill: true };
}

function planOrder(
  tape: Pick<Tape, 'world' | 'dayIndex' | 'options'>,
  order: SeedData['blockOrders'][number],
  index: number,
  securityIndex: number,
): OrderPlan {
  const o = tape.options;
  const rng = rngAt(
    tape.world.options.seed,
    Stream.TapeOrder,
    orderStreamIndex(tape.dayIndex, index),
  );
  const targetQuantity = order.targets.reduce((s, t) => s + t.quantity, 0n);
  invariant(targetQuantity > 0n, `${order.id}: nothing to fill`);
  const completeDrawn = rng.chance(o.completeShareBps);
  const stopPercent = BigInt(rng.int(60, 95));
  const overfill = rng.chance(o.overfillShareBps);
  let fillQuantity: bigint;
  switch (order.side) {
    case 'SELL': // always complete: the buys spend the proceeds (see the header)
      fillQuantity = targetQuantity;
      break;
    case 'BUY':
      fillQuantity = completeDrawn ? targetQuantity : (targetQuantity * stopPercent) / 100n;
      break;
    default:
      return assertNever(order.side, 'side');
  }
  if (fillQuantity === 0n) fillQuantity = 1n; // a one-share order cannot stop at 60 %
  const plan = { index, id: order.id, side: order.side, securityIndex, targetQuantity };
  const sized = { ...plan, fillQuantity, complete: fillQuantity === targetQuantity, overfill };
  let fills = 0;
  for (const _ of fillSizes(tape, sized)) fills += 1; // sizes only: O(1) memory
  invariant(fills <= o.maxFillsPerOrder, `${order.id}: ${fills} fills > maxFillsPerOrder`);
  return { ...sized, fills };
}

function emptyTotals(): SideTotals {
  return { orders: 0, ordersCompleted: 0, fills: 0, shares: 0n, overfills: 0 };
}

function summarise(
  tradeDate: string,
  plans: readonly OrderPlan[],
  schedule: Schedule,
): TapeSummary {
  const buy = emptyTotals();
  const sell = emptyTotals();
  for (const p of plans) {
    const side = p.side === 'BUY' ? buy : sell;
    side.orders += 1;
    side.ordersCompleted += p.complete ? 1 : 0;
    side.fills += p.fills;
    side.shares += p.fillQuantity;
    side.overfills += p.overfill ? 1 : 0;
  }
  return {
    tradeDate,
    orders: buy.orders + sell.orders,
    ordersCompleted: buy.ordersCompleted + sell.ordersCompleted,
    fills: buy.fills + sell.fills,
    shares: buy.shares + sell.shares,
    overfills: buy.overfills + sell.overfills,
    buy,
    sell,
    durationMs: Math.ceil(schedule.durationSec * 1_000),
  };
}

/** Plans the day's tape: one O(1) plan per order; no fill is kept. */
export function buildTape(
  world: World,
  dayIndex: number,
  blockOrders: SeedData['blockOrders'],
  overrides: Partial<TapeOptions> = {},
): Tape {
  const options = resolveTapeOptions(overrides);
  const tradeDate = tradeDateOf(world.options, dayIndex);
  invariant(
    blockOrders.length <= TAPE_LIMITS.ordersMax,
    `more than ${TAPE_LIMITS.ordersMax} orders`,
  );
  const securityIndexes = new Map(world.securities.map((s) => [s.id, s.index]));
  const base = { world, dayIndex, options };
  const plans = blockOrders.map((order, index) => {
    invariant(
      order.tradeDate === tradeDate,
      `${order.id}: trade date ${order.tradeDate} is not ${tradeDate}`,
    );
    const securityIndex = securityIndexes.get(order.securityId);
    invariant(securityIndex !== undefined, `${order.id}: unknown security ${order.securityId}`);
    invariant(
      ID_PATTERN.test(fillIdOf(order.id, 1)),
      `${order.id}: its fill ids break the wire pattern`,
    );
    return planOrder(base, order, index, securityIndex);
  });
  const fills = plans.reduce((s, p) => s + p.fills, 0);
  invariant(
    fills <= options.maxFills,
    `the tape has ${fills} fills > maxFills ${options.maxFills}`,
  );
  const schedule = scheduleOf(options.shape, fills);
  const summary = summarise(tradeDate, plans, schedule);
  return { ...base, session: sessionOf(tradeDate), plans, schedule, summary };
}

/** A price on the tick within [open, high] for a SELL, [low, open] for a BUY. */
function drawPriceMicro(rng: Rng, bar: Bar, side: Side): bigint {
  const [fromMicro, toMicro] =
    side === 'BUY' ? [bar.lowMicro, bar.openMicro] : [bar.openMicro, bar.highMicro];
  const ticks = rng.int(Number(fromMicro / TICK_MICRO), Number(toMicro / TICK_MICRO));
  return BigInt(ticks) * TICK_MICRO;
}

/** An order being published: its sizes stream and its print stream. */
interface Cursor {
  plan: OrderPlan;
  sizes: Generator<{ quantity: bigint; overfill: boolean }, void, undefined>;
  print: Rng;
  bar: Bar;
  seq: number;
}

function cursorOf(tape: Tape, plan: OrderPlan): Cursor {
  const seed = tape.world.options.seed;
  return {
    plan,
    sizes: fillSizes(tape, plan),
    print: rngAt(seed, Stream.TapePrint, orderStreamIndex(tape.dayIndex, plan.index)),
    bar: barOf(tape.world.market, plan.securityIndex, tape.dayIndex),
    seq: 0,
  };
}

/** The order's next fill, but for its market time. */
function nextFill(c: Cursor): { fill: Omit<Fill, 'executedAtMs'>; overfill: boolean } {
  const next = c.sizes.next();
  invariant(next.done !== true, `${c.plan.id}: no fill after seq ${c.seq}`);
  c.seq += 1;
  const price = drawPriceMicro(c.print, c.bar, c.plan.side);
  const venue = VENUES[c.print.int(0, VENUES.length - 1)] ?? VENUES[0];
  const { quantity, overfill } = next.value;
  invariant(
    quantity * price <= FILL_NOTIONAL_MAX,
    `${c.plan.id}: fill ${c.seq} notional too large`,
  );
  const fillId = fillIdOf(c.plan.id, c.seq);
  return {
    fill: { fillId, blockOrderId: c.plan.id, seq: c.seq, quantity, price, venue },
    overfill,
  };
}

/** The phases of the publish order: every SELL fill, then every BUY fill. */
const PHASES: readonly Side[] = ['SELL', 'BUY'];

/** The tape's fills in publish order, one at a time. */
export function* tapeFills(tape: Tape): Generator<TapeFill, void, undefined> {
  const { schedule, session } = tape;
  const pick = rngAt(tape.world.options.seed, Stream.TapeInterleave, tape.dayIndex);
  let index = 0;
  let sendOffsetMs = 0;
  let executedAtMs = session.openMs;
  for (const side of PHASES) {
    const live = tape.plans
      .filter((p) => p.side === side && p.fills > 0)
      .map((p) => cursorOf(tape, p));
    while (live.length > 0) {
      const i = pick.int(0, live.length - 1);
      const cursor = live[i];
      invariant(cursor !== undefined, 'tapeFills: no cursor');
      const { fill, overfill } = nextFill(cursor);
      if (cursor.seq === cursor.plan.fills) {
        const last = live.pop(); // swap-remove: O(1), the order of the rest does not matter
        if (last !== undefined && last !== cursor) live[i] = last;
      }
      // Running maxima: float rounding can never make either clock step back.
      sendOffsetMs = Math.max(sendOffsetMs, schedule.offsetMsOf(index));
      const sessionMs = Math.floor(
        (schedule.offsetSecOf(index) / schedule.durationSec) * SESSION_MS,
      );
      executedAtMs = Math.max(
        executedAtMs,
        Math.min(session.openMs + sessionMs, session.closeMs - 1),
      );
      yield { fill: { ...fill, executedAtMs }, side, overfill, index, sendOffsetMs };
      index += 1;
    }
  }
  invariant(
    index === tape.summary.fills,
    `tapeFills: ${index} fills, planned ${tape.summary.fills}`,
  );
}
