/**
 * The trading day's execution tape, in given (a world and its rebalance) /
 * when (the tape is built and streamed) / then (sizes, limits, prices,
 * venues, wire validity, order, cash, schedule) form. Pure: no services.
 * The cash rule is checked by replaying every fill through the actors' own
 * allocation (allocateFill) and cash rule (cashDelta).
 */
import t from 'tap';
import fc from 'fast-check';
import { allocateFill } from '../actors/domain/allocation.ts';
import { cashDelta } from '../actors/domain/money.ts';
import { ID_PATTERN, decodeFill, encodeFill, fillSubject } from '../system/fill-wire.ts';
import { streamAccounts, toSeedAccount } from '../simulations/trading-day/holdings.ts';
import { barOf } from '../simulations/trading-day/market.ts';
import { Eligibility, rebalanceDay } from '../simulations/trading-day/rebalance.ts';
import { SESSION_MS, sessionOf } from '../simulations/trading-day/session.ts';
import { scheduleOf, type StreamShape } from '../simulations/trading-day/shape.ts';
import {
  VENUES,
  buildTape,
  fillIdOf,
  tapeFills,
  type Tape,
  type TapeFill,
  type TapeOptions,
} from '../simulations/trading-day/tape.ts';
import type { SeedData } from '../persistence/reference.ts';
import type { TradingDayOptions } from '../simulations/trading-day/options.ts';
import { buildWorld, type World } from '../simulations/trading-day/world.ts';

// ---------------------------------------------------------------- helpers

const json = (value: unknown): string =>
  JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v));

const everyone = [
  { id: 'ALL', models: { kind: 'ANY' }, eligibility: Eligibility.Any, minDriftBps: 0 },
] as const;

const DAY = 1;

function dayOf(world: Partial<TradingDayOptions>, tape: Partial<TapeOptions> = {}) {
  const w: World = buildWorld({ accounts: 300, ...world });
  const { blockOrders } = rebalanceDay(w, DAY, everyone);
  return { world: w, blockOrders, tape: buildTape(w, DAY, blockOrders, tape) };
}

const all = (tape: Tape): TapeFill[] => [...tapeFills(tape)];

function byOrder(fills: readonly TapeFill[]): Map<string, TapeFill[]> {
  const map = new Map<string, TapeFill[]>();
  for (const f of fills) {
    const list = map.get(f.fill.blockOrderId) ?? [];
    map.set(f.fill.blockOrderId, list);
    list.push(f);
  }
  return map;
}

/** Fills whose size was drawn freely: neither an order's last accepted fill (cut) nor an overfill. */
function drawnFills(tape: Tape, fills: readonly TapeFill[]): TapeFill[] {
  const lastSeq = new Map(
    tape.plans.map((p) => [p.id, p.overfill ? p.fills - 1 : p.fills] as const),
  );
  return fills.filter((f) => !f.overfill && f.fill.seq !== lastSeq.get(f.fill.blockOrderId));
}

/**
 * Replays `fills` through the actors' allocation and cash rule; returns the
 * first account whose cash or position goes below zero, or ''.
 */
function firstNegative(
  world: World,
  blockOrders: SeedData['blockOrders'],
  fills: Iterable<TapeFill>,
): string {
  const cash = new Map<string, bigint>();
  const held = new Map<string, bigint>();
  for (const a of streamAccounts(world)) {
    const seed = toSeedAccount(world, a);
    cash.set(a.id, seed.openingCashMinor);
    for (const [sec, q] of Object.entries(seed.positions)) held.set(`${a.id}/${sec}`, q);
  }
  const orders = new Map(
    blockOrders.map((o) => {
      const lotSize = world.securities.find((s) => s.id === o.securityId)?.lotSize ?? 1n;
      const remaining = o.targets.map((x) => ({ accountId: x.accountId, remaining: x.quantity }));
      return [o.id, { order: o, lotSize, remaining }] as const;
    }),
  );
  for (const { fill, overfill } of fills) {
    const o = orders.get(fill.blockOrderId);
    if (o === undefined) return `unknown order ${fill.blockOrderId}`;
    const result = allocateFill({
      lotSize: o.lotSize,
      fillQuantity: fill.quantity,
      fillSeq: fill.seq,
      accounts: o.remaining,
    });
    if (!result.ok) {
      if (overfill) continue; // dead-lettered: changes nothing
      return `${fill.fillId} refused: ${result.reason}`;
    }
    if (overfill) return `${fill.fillId} is marked overfill but was accepted`;
    for (const line of result.lines) {
      const r = o.remaining.find((x) => x.accountId === line.accountId);
      if (r !== undefined) r.remaining -= line.quantity;
      const c =
        (cash.get(line.accountId) ?? 0n) + cashDelta(o.order.side, line.quantity, fill.price);
      cash.set(line.accountId, c);
      const key = `${line.accountId}/${o.order.securityId}`;
      const h = (held.get(key) ?? 0n) + (o.order.side === 'BUY' ? line.quantity : -line.quantity);
      held.set(key, h);
      if (c < 0n) return `${line.accountId}: cash ${c} after ${fill.fillId}`;
      if (h < 0n) return `${line.accountId}: position ${h} after ${fill.fillId}`;
    }
  }
  return '';
}

// ---------------------------------------------------------------- determinism and streaming

t.test('given the same seed, when the tape is built twice, then it is the same tape', (t) => {
  const a = dayOf({ seed: 9 });
  const b = dayOf({ seed: 9 });
  const c = dayOf({ seed: 10 });
  t.ok(a.tape.summary.fills > 100, 'a tape worth comparing');
  t.equal(json(all(a.tape)), json(all(b.tape)), 'same fills, same order, same schedule');
  t.equal(json(a.tape.summary), json(b.tape.summary));
  t.not(json(all(a.tape).slice(0, 50)), json(all(c.tape).slice(0, 50)), 'another seed differs');
  t.end();
});

t.test('given a tape, then its fills stream lazily and match the summary', (t) => {
  const { tape } = dayOf({ seed: 4 }, { overfillShareBps: 1_000 });
  const iterator = tapeFills(tape);
  t.equal(typeof iterator.next, 'function', 'an iterator, not an array');
  t.notOk(Array.isArray(iterator));
  const fills = all(tape);
  const s = tape.summary;
  t.equal(fills.length, s.fills);
  t.equal(fills.filter((f) => f.overfill).length, s.overfills);
  t.ok(s.overfills > 0, 'overfills asked for, some injected');
  const accepted = fills.filter((f) => !f.overfill);
  t.equal(
    accepted.reduce((sum, f) => sum + f.fill.quantity, 0n),
    s.shares,
    'shares',
  );
  t.equal(fills.filter((f) => f.side === 'BUY').length, s.buy.fills, 'buy fills');
  t.equal(fills.filter((f) => f.side === 'SELL').length, s.sell.fills, 'sell fills');
  t.equal(s.orders, tape.plans.length);
  t.equal(s.ordersCompleted, tape.plans.filter((p) => p.complete).length);
  t.same(
    fills.map((f) => f.index),
    fills.map((_, i) => i),
    'indexes count the publish order',
  );
  t.end();
});

// ---------------------------------------------------------------- sizes and limits

t.test(
  'given a large sample, then sizes are mostly 50-450 with the asked share of large prints',
  (t) => {
    const { tape } = dayOf({ seed: 21, accounts: 1_500 }, { largeShareBps: 500 });
    const drawn = drawnFills(tape, all(tape));
    t.ok(drawn.length > 5_000, `a large sample (${drawn.length})`);
    const small = drawn.filter((f) => f.fill.quantity >= 50n && f.fill.quantity <= 450n).length;
    const large = drawn.filter(
      (f) => f.fill.quantity >= 1_000n && f.fill.quantity <= 10_000n,
    ).length;
    t.equal(small + large, drawn.length, 'every drawn size is in one of the two ranges');
    const largeBps = (large * 10_000) / drawn.length;
    t.ok(Math.abs(largeBps - 500) < 100, `large prints ${largeBps.toFixed(0)} bps, asked 500`);
    const none = dayOf({ seed: 21, accounts: 300 }, { largeShareBps: 0 });
    t.notOk(
      all(none.tape).some((f) => f.fill.quantity > 450n),
      'largeShareBps 0: no fill above 450',
    );
    t.end();
  },
);

t.test(
  'given any tape, then no order gets more than its target, partial ones stop at 60-95 %',
  (t) => {
    const { tape, blockOrders } = dayOf({ seed: 5, accounts: 800 }, { completeShareBps: 5_000 });
    const fills = byOrder(all(tape));
    let partial = 0;
    for (const order of blockOrders) {
      const target = order.targets.reduce((s, x) => s + x.quantity, 0n);
      const plan = tape.plans.find((p) => p.id === order.id);
      const filled = (fills.get(order.id) ?? []).reduce((s, f) => s + f.fill.quantity, 0n);
      if (plan === undefined) return t.fail(`no plan for ${order.id}`);
      if (plan.targetQuantity !== target) t.fail(`${order.id}: target ${plan.targetQuantity}`);
      if (order.side === 'SELL' && !plan.complete) t.fail(`${order.id}: a sell left partial`);
      if (plan.complete) {
        if (filled !== target) t.fail(`${order.id}: complete, filled ${filled} of ${target}`);
      } else {
        partial += 1;
        const okStop = filled * 100n <= target * 95n && (filled + 1n) * 100n > target * 60n;
        if (!okStop) t.fail(`${order.id}: partial, filled ${filled} of ${target}`);
      }
    }
    const buys = tape.plans.filter((p) => p.side === 'BUY');
    const completeBuys = buys.filter((p) => p.complete).length;
    t.ok(partial > 0, 'some orders stop early');
    t.ok(
      completeBuys > buys.length * 0.25 && completeBuys < buys.length * 0.75,
      `about half the buys complete (${completeBuys} of ${buys.length})`,
    );
    t.end();
  },
);

t.test(
  'given a small maxFillsPerOrder, then every order keeps to it and still fills its quantity',
  (t) => {
    const { tape } = dayOf({ seed: 5 }, { maxFillsPerOrder: 3, overfillShareBps: 10_000 });
    const fills = byOrder(all(tape));
    for (const plan of tape.plans) {
      const list = fills.get(plan.id) ?? [];
      if (list.length > 3) t.fail(`${plan.id}: ${list.length} fills`);
      const accepted = list.filter((f) => !f.overfill).reduce((s, f) => s + f.fill.quantity, 0n);
      if (accepted !== plan.fillQuantity) t.fail(`${plan.id}: ${accepted} of ${plan.fillQuantity}`);
    }
    t.ok(tape.summary.fills <= 3 * tape.plans.length);
    t.throws(
      () => dayOf({ seed: 5 }, { maxFills: 10 }),
      /maxFills/,
      'a tape beyond maxFills fails',
    );
    t.throws(() => dayOf({ seed: 5 }, { sizeMin: 0 }), /sizeMin/, 'bad options fail');
    t.throws(() => dayOf({ seed: 5 }, { maxFillsPerOrder: 1 }), /maxFillsPerOrder/);
    t.end();
  },
);

t.test(
  "given overfills asked for, then each marked one is its order's last and beyond the rest",
  (t) => {
    const { tape } = dayOf({ seed: 13 }, { overfillShareBps: 3_000 });
    const fills = byOrder(all(tape));
    let marked = 0;
    for (const plan of tape.plans) {
      const list = fills.get(plan.id) ?? [];
      const overfills = list.filter((f) => f.overfill).length;
      if (overfills !== (plan.overfill ? 1 : 0)) t.fail(`${plan.id}: ${overfills} overfills`);
      if (!plan.overfill) continue;
      marked += 1;
      const last = list[list.length - 1];
      if (last?.overfill !== true) t.fail(`${plan.id}: the overfill is not last`);
      const before = list.slice(0, -1).reduce((s, f) => s + f.fill.quantity, 0n);
      if ((last?.fill.quantity ?? 0n) <= plan.targetQuantity - before)
        t.fail(`${plan.id}: the overfill fits the remaining`);
    }
    t.ok(marked > 0 && marked < tape.plans.length, `some orders overfill (${marked})`);
    const none = dayOf({ seed: 13 }, { overfillShareBps: 0 });
    t.equal(none.tape.summary.overfills, 0);
    t.notOk(
      all(none.tape).some((f) => f.overfill),
      'none asked, none injected',
    );
    t.end();
  },
);

// ---------------------------------------------------------------- prices, venues, the wire

t.test('given a tape, then prices are on the tick, in the bar, limited at the open', (t) => {
  const { tape, world } = dayOf({ seed: 8, accounts: 600 });
  const security = new Map(world.securities.map((s) => [s.id, s.index]));
  const plan = new Map(tape.plans.map((p) => [p.id, p]));
  let bad = 0;
  for (const { fill, side } of tapeFills(tape)) {
    const bar = barOf(world.market, plan.get(fill.blockOrderId)?.securityIndex ?? -1, DAY);
    const inBar = fill.price >= bar.lowMicro && fill.price <= bar.highMicro;
    const limited = side === 'BUY' ? fill.price <= bar.openMicro : fill.price >= bar.openMicro;
    if (!inBar || !limited || fill.price % 10_000n !== 0n) bad += 1;
  }
  t.equal(bad, 0, 'fills off the tick, outside [low, high], or through the open');
  t.equal(security.size, world.securities.length);
  t.end();
});

t.test('given a tape, then every fill round-trips the wire and decodes as valid', (t) => {
  const { tape } = dayOf({ seed: 2 }, { overfillShareBps: 2_000 });
  const [root, partitions] = ['blockfill.test.fills', 8];
  const venues = new Set<string>();
  let bad = '';
  for (const { fill } of tapeFills(tape)) {
    venues.add(fill.venue);
    const subject = fillSubject(root, fill.blockOrderId, partitions);
    const decoded = decodeFill(encodeFill(fill), subject, root, partitions);
    if (!decoded.ok) bad ||= `${fill.fillId}: ${decoded.field} ${decoded.rule}`;
    else if (json(decoded.fill) !== json(fill)) bad ||= `${fill.fillId}: changed on the wire`;
    if (fill.fillId !== fillIdOf(fill.blockOrderId, fill.seq)) bad ||= `${fill.fillId}: id`;
  }
  t.equal(bad, '', 'every fill decodes to itself');
  t.same([...venues].sort(), [...VENUES].sort(), 'every venue of the list is used');
  t.ok(ID_PATTERN.test(fillIdOf(`${'X'.repeat(20)}BO-20261117-ZZZZ-SELL`, 9_999_999)));
  t.end();
});

// ---------------------------------------------------------------- order and time

t.test('given a tape, then seq runs 1.. per order and market time never steps back', (t) => {
  const { tape } = dayOf({ seed: 3, accounts: 600 }, { overfillShareBps: 1_000 });
  const { openMs, closeMs } = tape.session;
  const fills = all(tape);
  for (const [id, list] of byOrder(fills)) {
    const seqs = list.map((f) => f.fill.seq);
    if (json(seqs) !== json(seqs.map((_, i) => i + 1))) t.fail(`${id}: seqs ${json(seqs)}`);
    for (let i = 1; i < list.length; i++)
      if ((list[i]?.fill.executedAtMs ?? 0) < (list[i - 1]?.fill.executedAtMs ?? 0))
        t.fail(`${id}: market time steps back at seq ${i + 1}`);
  }
  const times = fills.map((f) => f.fill.executedAtMs);
  t.ok(
    times.every((ms) => ms >= openMs && ms < closeMs),
    'inside the session',
  );
  t.ok((times[times.length - 1] ?? 0) - (times[0] ?? 0) > SESSION_MS * 0.9, 'spread over the day');
  const sends = fills.map((f) => f.sendOffsetMs);
  t.ok(
    sends.every((ms, i) => i === 0 || ms >= (sends[i - 1] ?? 0)),
    'send offsets non-decreasing',
  );
  t.end();
});

t.test('given trade dates across the year, then the session opens at 09:30 New York time', (t) => {
  const fmt = new Intl.DateTimeFormat('en-US', {
    timeZone: 'America/New_York',
    hour: '2-digit',
    minute: '2-digit',
    hourCycle: 'h23',
  });
  for (const date of [
    '2026-01-05',
    '2026-03-06',
    '2026-03-09',
    '2026-07-01',
    '2026-10-30',
    '2026-11-02',
    '2027-03-15',
    '2027-11-05',
    '2027-11-08',
  ]) {
    const s = sessionOf(date);
    t.equal(fmt.format(s.openMs), '09:30', `${date} open`);
    t.equal(fmt.format(s.closeMs), '16:00', `${date} close`);
  }
  t.equal(sessionOf('2026-07-01').utcOffsetHours, 4, 'summer: EDT');
  t.equal(sessionOf('2026-12-01').utcOffsetHours, 5, 'winter: EST');
  t.throws(() => sessionOf('2026-11-21'), /weekend/);
  t.end();
});

t.test('given a tape, then every SELL fill is published before every BUY fill', (t) => {
  const { tape } = dayOf({ seed: 6 }, { overfillShareBps: 1_000 });
  const sides = all(tape).map((f) => f.side);
  const firstBuy = sides.indexOf('BUY');
  t.ok(firstBuy > 0, 'both sides present');
  t.equal(firstBuy, tape.summary.sell.fills, 'buys start after the last sell');
  t.notOk(sides.slice(firstBuy).includes('SELL'), 'no sell after the first buy');
  t.end();
});

// ---------------------------------------------------------------- cash

t.test(
  "given tapes of many seeds, when replayed through the actors' rules, then no cash or position goes negative",
  (t) => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 1_000_000 }), (seed) => {
        const { world, blockOrders, tape } = dayOf(
          { seed, accounts: 120, allCashBps: 1_000, offModelBps: 3_000 },
          { overfillShareBps: 1_000, completeShareBps: 5_000, largeShareBps: 2_000 },
        );
        const problem = firstNegative(world, blockOrders, tapeFills(tape));
        if (problem !== '') throw new Error(`seed ${seed}: ${problem}`);
      }),
      { numRuns: 25 },
    );
    t.pass('every account stays >= 0 after every fill');
    t.end();
  },
);

t.test(
  'given the same fills with buys first, then the check finds negative cash (it has teeth)',
  (t) => {
    const { world, blockOrders, tape } = dayOf({ seed: 1, accounts: 300, offModelBps: 3_000 });
    const fills = all(tape);
    const buysFirst = [
      ...fills.filter((f) => f.side === 'BUY'),
      ...fills.filter((f) => f.side === 'SELL'),
    ];
    t.equal(firstNegative(world, blockOrders, fills), '', 'the tape as published: fine');
    t.match(
      firstNegative(world, blockOrders, buysFirst),
      /cash -\d+/,
      'buys before sells: negative',
    );
    const plans = new Map(tape.plans.map((p) => [p.id, p]));
    const buysAtHigh = fills.map((f) => {
      const bar = barOf(world.market, plans.get(f.fill.blockOrderId)?.securityIndex ?? -1, DAY);
      return f.side === 'BUY' ? { ...f, fill: { ...f.fill, price: bar.highMicro } } : f;
    });
    const atHigh = firstNegative(world, blockOrders, buysAtHigh);
    t.match(atHigh, /cash -\d+/, 'buys above the open: negative');
    t.end();
  },
);

// ---------------------------------------------------------------- stream shapes

/** Fills sent within [fromSec, toSec). */
const sentIn = (offsets: readonly number[], fromSec: number, toSec: number): number =>
  offsets.filter((ms) => ms >= fromSec * 1_000 && ms < toSec * 1_000).length;

function offsetsOf(shape: StreamShape, n: number): number[] {
  const schedule = scheduleOf(shape, n);
  return Array.from({ length: n }, (_, k) => schedule.offsetMsOf(k));
}

t.test('given a steady shape, then n fills at X/s end at about n/X s', (t) => {
  const offsets = offsetsOf({ kind: 'STEADY', ratePerSec: 2_000 }, 50_000);
  const last = offsets[offsets.length - 1] ?? 0;
  t.ok(Math.abs(last - 25_000) <= 1, `last at ${last} ms, expected 25,000`);
  t.equal(sentIn(offsets, 3, 4), 2_000, 'a second holds X fills');
  const { tape } = dayOf({ seed: 3 }, { shape: { kind: 'STEADY', ratePerSec: 500 } });
  const n = tape.summary.fills;
  t.ok(Math.abs(tape.summary.durationMs - (n * 1_000) / 500) <= 1, "the tape's duration is n/X");
  t.end();
});

t.test('given a burst shape, then bursts run at factor × the base rate', (t) => {
  const shape = {
    kind: 'BURST',
    ratePerSec: 1_000,
    factor: 5,
    burstSec: 2,
    periodSec: 10,
  } as const;
  const offsets = offsetsOf(shape, 180_000); // 2 s × 5,000 + 8 s × 1,000 a period: 10 periods
  let burst = 0;
  let calm = 0;
  for (let p = 0; p < 10; p++) {
    burst += sentIn(offsets, p * 10, p * 10 + 2) / 2;
    calm += sentIn(offsets, p * 10 + 2, p * 10 + 10) / 8;
  }
  const factor = burst / calm;
  t.ok(Math.abs(factor - 5) < 0.05, `burst / calm rate ${factor.toFixed(3)}, asked 5`);
  t.ok(Math.abs(calm / 10 - 1_000) < 10, `calm rate ${(calm / 10).toFixed(0)}/s`);
  t.end();
});

t.test('given an auctions shape, then the open and close run at factor × the middle', (t) => {
  const shape = { kind: 'AUCTIONS', ratePerSec: 1_000, factor: 4, peakBps: 1_000 } as const;
  const n = 100_000;
  const schedule = scheduleOf(shape, n);
  const offsets = offsetsOf(shape, n);
  const d = schedule.durationSec;
  const rate = (from: number, to: number) => sentIn(offsets, from * d, to * d) / ((to - from) * d);
  const [open, middle, close] = [rate(0, 0.1), rate(0.1, 0.9), rate(0.9, 1.0001)];
  t.ok(Math.abs(open / middle - 4) < 0.1, `open / middle ${(open / middle).toFixed(3)}`);
  t.ok(Math.abs(close / middle - 4) < 0.1, `close / middle ${(close / middle).toFixed(3)}`);
  t.ok(Math.abs(middle - 1_000) < 20, `middle rate ${middle.toFixed(0)}/s`);
  const { tape } = dayOf({ seed: 3, accounts: 600 }, { shape });
  const times = all(tape).map((f) => f.fill.executedAtMs - tape.session.openMs);
  const hour = SESSION_MS / 6.5;
  const firstHalfHour = times.filter((ms) => ms < hour / 2).length;
  const middleHalfHour = times.filter((ms) => ms >= 3 * hour && ms < 3.5 * hour).length;
  t.ok(firstHalfHour > 2.5 * middleHalfHour, 'market time is U-shaped too');
  t.end();
});
