/**
 * The market's amendments (busts, corrections, cancels) woven into a
 * fills-only Scenario (generateScenario's), so the drills can publish them
 * on the same subjects as the fills. The rules are amendedTape's
 * (simulations/trading-day/amendments.ts), so that every amendment generated
 * is one the service must accept:
 * - a fill is busted with `bustShareBps`, or else corrected with
 *   `correctionShareBps`; at most one amendment per fill. Each comes
 *   0..`delayEntriesMax` publish entries after its fill, and at the latest
 *   right after its order's last fill;
 * - a correction moves the price by 1-3 ticks of 0.01 (never to 0 or below,
 *   never to the same price), and in half the cases also changes the
 *   quantity: lowered to 50-99 % (at least 1), or, for an order's LAST fill
 *   only, raised by up to what the order still lacks (nothing later can
 *   overfill then);
 * - an order whose fills stop short of its target gets a cancel of its
 *   unfilled remainder with `cancelShareBps`, right after its last fill and
 *   the amendments due with it;
 * - every entry takes its order's next seq: the fills are re-numbered as
 *   amendments are inserted. Amendment ids are `<order>-A<fill's original
 *   seq>` and `<order>-X` (the cancel).
 * Deterministic from `seed`; the input scenario is not changed.
 */
import type { Amendment } from '../actors/block-order/amendments.ts';
import type { Entry, Fill } from '../actors/block-order/decider.ts';
import { invariant } from '../actors/errors.ts';
import { prng, type Scenario } from './scenario.ts';
import {
  checkAmendOptions,
  type AmendCounts,
  type AmendOptions,
} from './trading-day/amendments.ts';

/** The trading day's amendment knobs (checked by the same rule), and the seed of the draws. */
export type AmendScenarioOptions = AmendOptions & { seed: number };

/** A tick of 0.01 in price units (1e-6). */
const TICK = 10_000n;
const PAD = 7;

/** Seeded draws: whole numbers in [min, max], and a chance in basis points. */
interface Draw {
  int(min: number, max: number): number;
  chance(bps: number): boolean;
}

function drawOf(seed: number): Draw {
  const rnd = prng(seed);
  const int = (min: number, max: number) => min + Math.floor(rnd() * (max - min + 1));
  return { int, chance: (bps) => int(0, 9_999) < bps };
}

/** A bust or correction waiting for its moment. */
interface Due {
  /** Sent once the publish order reaches this index (or the order's last fill). */
  dueIndex: number;
  fillId: string;
  /** The fill's seq in the input scenario: names the amendment, tells the last fill. */
  originalSeq: number;
  kind: 'BUST' | 'CORRECTION';
}

/** One order while its entries are woven. */
interface OrderWeave {
  id: string;
  /** Fills of the order in the input scenario. */
  fills: number;
  target: bigint;
  /** The input's fills reach the target: no remainder to cancel. */
  complete: boolean;
  /** Entries published so far: the next one takes seq + 1. */
  seq: number;
  fillsSeen: number;
  /** Live fills: quantity and price now. */
  live: Map<string, { quantity: bigint; price: bigint }>;
  filled: bigint;
  due: Due[];
  entries: Entry[];
  newFills: Fill[];
}

function weavesOf(scenario: Scenario): Map<string, OrderWeave> {
  const weaves = new Map<string, OrderWeave>();
  for (const order of scenario.seed.blockOrders) {
    const fills = scenario.fillsByOrder.get(order.id) ?? [];
    const target = order.targets.reduce((s, t) => s + t.quantity, 0n);
    const filled = fills.reduce((s, f) => s + f.quantity, 0n);
    invariant(filled <= target, `${order.id}: its fills overfill the target`);
    weaves.set(order.id, {
      ...{ id: order.id, fills: fills.length, target, complete: filled === target },
      ...{ seq: 0, fillsSeen: 0, live: new Map(), filled: 0n, due: [], entries: [], newFills: [] },
    });
  }
  return weaves;
}

/** `scenario` with the market's amendments woven in (see the module's comment). */
export function withAmendments(scenario: Scenario, options: AmendScenarioOptions): Scenario {
  checkAmendOptions(options);
  invariant(scenario.amended === undefined, 'the scenario has amendments already');
  const draw = drawOf(options.seed);
  const weaves = weavesOf(scenario);
  const counts: AmendCounts = { busts: 0, corrections: 0, cancels: 0 };
  const publishOrder: Entry[] = [];
  const fills: Fill[] = [];
  const emit = (o: OrderWeave, entry: Entry) => {
    invariant(entry.seq === o.entries.length + 1, `${o.id}: seq ${entry.seq} out of order`);
    publishOrder.push(entry);
    o.entries.push(entry);
  };
  for (const original of scenario.publishOrder) {
    const o = weaves.get(original.blockOrderId);
    invariant(o !== undefined, `${original.blockOrderId}: a fill of no block order`);
    o.fillsSeen += 1;
    o.seq += 1;
    const fill: Fill = { ...original, seq: o.seq };
    o.live.set(fill.fillId, { quantity: fill.quantity, price: fill.price });
    o.filled += fill.quantity;
    fills.push(fill);
    o.newFills.push(fill);
    emit(o, fill);
    planAmendment(o, fill.fillId, original.seq, publishOrder.length, draw, options);
    const last = o.fillsSeen === o.fills;
    for (const d of takeDue(o, publishOrder.length, last))
      emit(o, amend(o, d, draw, fill.executedAtMs, counts));
    if (last && !o.complete && draw.chance(options.cancelShareBps)) {
      counts.cancels += 1;
      o.seq += 1;
      const cancel = { kind: 'CANCEL' as const, amendmentId: `${o.id}-X`, blockOrderId: o.id };
      emit(o, { ...cancel, seq: o.seq, executedAtMs: fill.executedAtMs });
    }
  }
  for (const o of weaves.values())
    invariant(o.due.length === 0, `${o.id}: ${o.due.length} amendments never sent`);
  const entriesByOrder = new Map([...weaves].map(([id, o]) => [id, o.entries]));
  const fillsByOrder = new Map([...weaves].map(([id, o]) => [id, o.newFills]));
  return {
    ...scenario,
    publishOrder: fills,
    fillsByOrder,
    amended: { publishOrder, entriesByOrder, counts },
  };
}

function planAmendment(
  o: OrderWeave,
  fillId: string,
  originalSeq: number,
  index: number,
  draw: Draw,
  options: AmendScenarioOptions,
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
  o.due.push({ dueIndex, fillId, originalSeq, kind });
}

/** The order's amendments due now: all of them once it has published its last fill. */
function takeDue(o: OrderWeave, index: number, last: boolean): Due[] {
  if (last) return o.due.splice(0);
  const ready = o.due.filter((d) => d.dueIndex <= index);
  if (ready.length > 0) o.due = o.due.filter((d) => d.dueIndex > index);
  return ready;
}

function amend(
  o: OrderWeave,
  d: Due,
  draw: Draw,
  executedAtMs: number,
  counts: AmendCounts,
): Amendment {
  const now = o.live.get(d.fillId);
  invariant(now !== undefined, `${d.fillId}: amended but not live`);
  o.seq += 1;
  const base = {
    amendmentId: `${o.id}-A${String(d.originalSeq).padStart(PAD, '0')}`,
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
  const price = shiftedPrice(now.price, draw);
  const quantity = correctedQuantity(o, d, now.quantity, draw);
  o.live.set(d.fillId, { quantity, price });
  o.filled += quantity - now.quantity;
  invariant(o.filled <= o.target, `${o.id}: a correction would overfill`);
  return { kind: 'CORRECTION', ...base, fillId: d.fillId, quantity, price };
}

/** Half the corrections change the quantity: down to 50-99 %, or (last fill only) up within the target. */
function correctedQuantity(o: OrderWeave, d: Due, quantity: bigint, draw: Draw): bigint {
  if (!draw.chance(5_000)) return quantity;
  const room = o.target - o.filled;
  if (d.originalSeq === o.fills && room > 0n && draw.chance(5_000))
    return quantity + BigInt(draw.int(1, Number(room < 1_000n ? room : 1_000n)));
  const lowered = (quantity * BigInt(draw.int(50, 99))) / 100n;
  return lowered > 0n ? lowered : quantity;
}

/** 1-3 ticks up or down, staying > 0; never the same price (so every correction changes something). */
function shiftedPrice(price: bigint, draw: Draw): bigint {
  const ticks = BigInt(draw.int(1, 3)) * TICK;
  const down = price - ticks;
  return draw.chance(5_000) || down <= 0n ? price + ticks : down;
}
