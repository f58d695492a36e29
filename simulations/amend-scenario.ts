/**
 * The market's amendments (busts, corrections, cancels) woven into a
 * fills-only Scenario (generateScenario's), so the drills can publish them
 * on the same subjects as the fills. The weaving is the trading day's
 * (amend-weave.ts), so every amendment generated is one the service must
 * accept; only the corrected price differs: 1-3 ticks of 0.01 either way,
 * never to 0 or below (generateScenario has no day's bar to stay inside).
 * Deterministic from `seed`; the input scenario is not changed.
 */
import { isAmendment, type Entry, type Fill } from '../actors/block-order/decider.ts';
import { invariant } from '../actors/errors.ts';
import {
  assertWoven,
  weaveFill,
  weaveOrder,
  type AmendDraw,
  type WeaveOrder,
} from './amend-weave.ts';
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

function drawOf(seed: number): AmendDraw {
  const rnd = prng(seed);
  const int = (min: number, max: number) => min + Math.floor(rnd() * (max - min + 1));
  return { int, chance: (bps) => int(0, 9_999) < bps };
}

/** `scenario` with the market's amendments woven in (see the module's comment). */
export function withAmendments(scenario: Scenario, options: AmendScenarioOptions): Scenario {
  checkAmendOptions(options);
  invariant(scenario.amended === undefined, 'the scenario has amendments already');
  const draw = drawOf(options.seed);
  const weaves = new Map<string, WeaveOrder>();
  for (const order of scenario.seed.blockOrders) {
    const fills = scenario.fillsByOrder.get(order.id) ?? [];
    const target = order.targets.reduce((s, t) => s + t.quantity, 0n);
    const filled = fills.reduce((s, f) => s + f.quantity, 0n);
    invariant(filled <= target, `${order.id}: its fills overfill the target`);
    const shape = { fills: fills.length, target, complete: filled === target };
    weaves.set(order.id, weaveOrder(order.id, shape, shiftedPrice));
  }
  const counts: AmendCounts = { busts: 0, corrections: 0, cancels: 0 };
  const publishOrder: Entry[] = [];
  const entriesByOrder = new Map<string, Entry[]>([...weaves.keys()].map((id) => [id, []]));
  for (const input of scenario.publishOrder) {
    const o = weaves.get(input.blockOrderId);
    invariant(o !== undefined, `${input.blockOrderId}: a fill of no block order`);
    const woven = weaveFill(o, input, publishOrder.length, draw, options, counts);
    publishOrder.push(...woven);
    entriesByOrder.get(o.id)!.push(...woven);
  }
  assertWoven(weaves.values());
  const fillsOf = (entries: Entry[]) => entries.filter((e): e is Fill => !isAmendment(e));
  const fillsByOrder = new Map([...entriesByOrder].map(([id, e]) => [id, fillsOf(e)]));
  return {
    ...scenario,
    publishOrder: fillsOf(publishOrder),
    fillsByOrder,
    amended: { publishOrder, entriesByOrder, counts },
  };
}

/** 1-3 ticks up or down, staying > 0; never the same price (so every correction changes something). */
function shiftedPrice(price: bigint, draw: AmendDraw): bigint {
  const ticks = BigInt(draw.int(1, 3)) * TICK;
  const down = price - ticks;
  return draw.chance(5_000) || down <= 0n ? price + ticks : down;
}
