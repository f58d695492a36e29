/**
 * Trading-day rebalancing, in given (world, accounts) / when (rebalance a
 * day) / then (trades, block orders, summary) form: drift at the open (the
 * max over securities), selection by criteria groups (once a day), whole
 * lots within holdings and cash (checked with money.ts, the actors' rule),
 * and aggregation into one block order per (security, side).
 * Pure: no database, no streams.
 */
import t from 'tap';
import fc from 'fast-check';
import { cashDelta, notionalMinor, type Side } from '../actors/domain/money.ts';
import {
  accountAt,
  streamAccounts,
  type HoldingAccount,
} from '../simulations/trading-day/holdings.ts';
import { barOf } from '../simulations/trading-day/market.ts';
import { resolveOptions } from '../simulations/trading-day/options.ts';
import {
  Eligibility,
  driftBpsOf,
  fitBuys,
  planTrades,
  rebalanceDay,
  type CriteriaGroup,
} from '../simulations/trading-day/rebalance.ts';
import { AssetClass, tickerOf } from '../simulations/trading-day/reference.ts';
import { buildWorld, type World } from '../simulations/trading-day/world.ts';

// ---------------------------------------------------------------- helpers

const json = (value: unknown): string =>
  JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v));

const group = (id: string, minDriftBps: number, over: Partial<CriteriaGroup> = {}) => ({
  id,
  models: { kind: 'ANY' } as const,
  eligibility: Eligibility.Required,
  minDriftBps,
  ...over,
});

const dollars = (d: number): bigint => BigInt(Math.round(d * 1_000_000)); // price, micro

/** A world written by hand: securities i with price prices[i] and lot lots[i], one model. */
function handWorld(prices: bigint[], lots: bigint[], weightsBps: number[]): World {
  const options = resolveOptions({ securities: prices.length, accounts: 10, days: 1, models: 1 });
  const securities = prices.map((_, index) => ({
    index,
    id: `SEC${index}`,
    ticker: tickerOf(index),
    assetClass: lots[index] === 100n ? AssetClass.Equity : AssetClass.Etf,
    lotSize: lots[index] ?? 1n,
  }));
  const bars = prices.map((p) => [{ openMicro: p, highMicro: p, lowMicro: p, closeMicro: p }]);
  const weights = weightsBps
    .map((weightBps, securityIndex) => ({ securityIndex, weightBps }))
    .filter((w) => w.weightBps > 0);
  const models = [{ index: 0, id: 'MODEL001', weights }];
  return { options, securities, market: { days: 1, bars }, models };
}

function handAccount(cashMinor: bigint, quantities: bigint[], index = 0): HoldingAccount {
  const positions = quantities
    .map((quantity, securityIndex) => ({ securityIndex, quantity }))
    .filter((p) => p.quantity > 0n);
  const id = `ACC${String(index).padStart(4, '0')}`;
  return { index, id, name: id, modelId: 'MODEL001', eligible: true, cashMinor, positions };
}

/** Every account's lines, from the block orders: accountId -> [securityId, side, quantity]. */
function linesByAccount(orders: ReturnType<typeof rebalanceDay>['blockOrders']) {
  const byAccount = new Map<string, Array<{ securityId: string; side: Side; quantity: bigint }>>();
  for (const o of orders)
    for (const target of o.targets) {
      const lines = byAccount.get(target.accountId) ?? [];
      byAccount.set(target.accountId, lines);
      lines.push({ securityId: o.securityId, side: o.side, quantity: target.quantity });
    }
  return byAccount;
}

/** Where an account breaks a rebalancing limit, checked with the actors' cash rule; '' if nowhere. */
function limitBreach(
  world: World,
  account: HoldingAccount,
  lines: ReturnType<typeof linesByAccount>,
  day: number,
) {
  let cashMinor = account.cashMinor;
  const ordered = [...(lines.get(account.id) ?? [])].sort(
    (a, b) => (a.side === 'SELL' ? -1 : 1) - (b.side === 'SELL' ? -1 : 1),
  );
  for (const line of ordered) {
    const security = world.securities.find((s) => s.id === line.securityId);
    if (security === undefined) return `unknown security ${line.securityId}`;
    if (line.quantity <= 0n || line.quantity % security.lotSize !== 0n)
      return `${line.quantity} of ${security.id} is not whole lots of ${security.lotSize}`;
    const held = account.positions.find((p) => p.securityIndex === security.index)?.quantity ?? 0n;
    if (line.side === 'SELL' && line.quantity > held)
      return `sells ${line.quantity} of ${security.id}, holds ${held}`;
    cashMinor += cashDelta(
      line.side,
      line.quantity,
      barOf(world.market, security.index, day).openMicro,
    );
    if (cashMinor < 0n) return `cash ${cashMinor} after ${line.side} of ${security.id}`;
  }
  return '';
}

// ---------------------------------------------------------------- drift

t.test(
  'given a hand-built account, when its drift is measured, then it is the max, not the sum',
  (t) => {
    // Model 50/30/20 on three securities at 10.00; held 60/30/10 % of 10,000.00.
    const world = handWorld(
      [dollars(10), dollars(10), dollars(10)],
      [100n, 1n, 1n],
      [5_000, 3_000, 2_000],
    );
    const account = handAccount(0n, [600n, 300n, 100n]);
    t.equal(
      driftBpsOf(world, account, 0),
      1_000,
      '|60-50| and |10-20| are 1,000 bps each; sum would be 2,000',
    );
    t.equal(driftBpsOf(world, handAccount(0n, [500n, 300n, 200n]), 0), 0, 'on model: no drift');
    t.equal(driftBpsOf(world, handAccount(0n, [0n, 0n, 0n]), 0), 0, 'empty account: no drift');
    t.equal(
      driftBpsOf(world, handAccount(1_000_000n, [0n, 0n, 0n]), 0),
      5_000,
      'all cash: the largest weight',
    );
    t.end();
  },
);

t.test(
  'given drift exactly at and one below the minimum, when a group selects, then only at-or-over is taken',
  (t) => {
    const world = handWorld(
      [dollars(10), dollars(10), dollars(10)],
      [100n, 1n, 1n],
      [5_000, 3_000, 2_000],
    );
    const account = handAccount(0n, [600n, 300n, 100n]); // drift 1,000
    const at = rebalanceDay(world, 0, [group('g', 1_000)], [account]);
    const over = rebalanceDay(world, 0, [group('g', 1_001)], [account]);
    t.equal(at.summary.groups[0]?.selected, 1, 'drift 1,000 >= minimum 1,000: selected');
    t.equal(over.summary.groups[0]?.selected, 0, 'drift 1,000 < minimum 1,001: not selected');
    t.equal(over.blockOrders.length, 0, 'not selected: no orders');
    t.end();
  },
);

t.test(
  'given generated accounts, when rebalanced at a minimum drift, then exactly those at or over it trade',
  (t) => {
    const world = buildWorld({ seed: 21, accounts: 2_000, days: 3 });
    const minDriftBps = 300;
    const result = rebalanceDay(world, 2, [group('g', minDriftBps)]);
    const trading = linesByAccount(result.blockOrders);
    let expected = 0;
    for (const a of streamAccounts(world)) {
      const drift = driftBpsOf(world, a, 2);
      if (a.eligible && drift >= minDriftBps) expected += 1;
      if (trading.has(a.id) && (drift < minDriftBps || !a.eligible))
        t.fail(`${a.id} trades with drift ${drift} (eligible ${a.eligible})`);
    }
    t.equal(
      result.summary.groups[0]?.selected,
      expected,
      'selected = eligible accounts at or over',
    );
    t.ok(
      expected > 100 && expected < 1_900,
      `the threshold splits the accounts (${expected} over)`,
    );
    t.ok(trading.size <= expected && trading.size > expected * 0.9, 'most selected accounts trade');
    t.end();
  },
);

// ---------------------------------------------------------------- trades

t.test(
  'given a hand-built account, when planned, then it sells the overweight and buys the underweight',
  (t) => {
    const world = handWorld(
      [dollars(10), dollars(10), dollars(10)],
      [100n, 1n, 1n],
      [5_000, 3_000, 2_000],
    );
    const trades = planTrades(world, handAccount(0n, [600n, 300n, 100n]), 0);
    t.same(
      trades.map((x) => [x.securityIndex, x.side, x.quantity]),
      [
        [0, 'SELL', 100n],
        [2, 'BUY', 100n],
      ],
    );
    t.end();
  },
);

t.test('given buys rounded up past the cash, when planned, then they are cut to fit', (t) => {
  // Target 5.00 each at 3.33: 1.5 shares round to 2 each (13.32), the cash is 10.00.
  const world = handWorld([dollars(3.33), dollars(3.33)], [1n, 1n], [5_000, 5_000]);
  const trades = planTrades(world, handAccount(1_000n, [0n, 0n]), 0);
  const spentMinor = trades.reduce((s, x) => s - cashDelta(x.side, x.quantity, x.priceMicro), 0n);
  t.ok(trades.every((x) => x.side === 'BUY'));
  t.ok(spentMinor > 0n && spentMinor <= 1_000n, `spends ${spentMinor} of 1000`);
  t.end();
});

t.test(
  'given a holding outside the model with an odd lot, when planned, then only whole lots are sold',
  (t) => {
    const world = handWorld([dollars(10), dollars(10)], [1n, 100n], [10_000, 0]);
    const trades = planTrades(world, handAccount(0n, [0n, 250n]), 0);
    const sell = trades.find((x) => x.side === 'SELL');
    t.equal(sell?.quantity, 200n, '2 of 2.5 lots: the odd 50 stay');
    t.ok(trades.every((x) => x.quantity % world.securities[x.securityIndex]!.lotSize === 0n));
    t.end();
  },
);

t.test(
  'given random prices, lots, holdings and cash, then trades stay within holdings and cash',
  (t) => {
    const price = fc.bigInt({ min: 10_000n, max: 2_000_000_000n }); // 0.01 .. 2,000.00, any micro
    const prop = fc.property(
      fc.array(
        fc.tuple(
          price,
          fc.constantFrom(1n, 100n),
          fc.bigInt({ min: 0n, max: 5_000n }),
          fc.integer({ min: 0, max: 100 }),
        ),
        { minLength: 2, maxLength: 8 },
      ),
      fc.bigInt({ min: 0n, max: 100_000_000n }),
      (rows, cashMinor) => {
        const total = rows.reduce((s, r) => s + r[3], 0) || 1;
        const weights = rows.map((r) => Math.floor((r[3] * 10_000) / total));
        weights[0] = (weights[0] ?? 0) + 10_000 - weights.reduce((a, b) => a + b, 0);
        const world = handWorld(
          rows.map((r) => r[0]),
          rows.map((r) => r[1]),
          weights,
        );
        const account = handAccount(
          cashMinor,
          rows.map((r) => r[2]),
        );
        const result = rebalanceDay(
          world,
          0,
          [group('all', 0, { eligibility: Eligibility.Any })],
          [account],
        );
        const breach = limitBreach(world, account, linesByAccount(result.blockOrders), 0);
        if (breach !== '') throw new Error(breach);
      },
    );
    t.doesNotThrow(() => fc.assert(prop, { numRuns: 300 }));
    t.end();
  },
);

t.test(
  'given thousands of generated accounts, then no sell beyond holdings, no buy beyond cash, whole lots',
  (t) => {
    const world = buildWorld({ seed: 22, accounts: 4_000, securities: 120, models: 12, days: 4 });
    const result = rebalanceDay(world, 3, [group('all', 0, { eligibility: Eligibility.Any })]);
    const lines = linesByAccount(result.blockOrders);
    const breaches = [...streamAccounts(world)]
      .map((a) => [a.id, limitBreach(world, a, lines, 3)])
      .filter(([, breach]) => breach !== '');
    t.same(breaches, [], 'accounts breaking a limit');
    t.ok(lines.size > 3_000, `${lines.size} accounts trade`);
    const sides = new Set(result.blockOrders.map((o) => o.side));
    t.same([...sides].sort(), ['BUY', 'SELL'], 'both sides traded');
    t.end();
  },
);

t.test('given buys over the cash, when fitted, then each keeps the same share of its wish', (t) => {
  const tenDollars = { lotSize: 1n, priceMicro: dollars(10) };
  const wishes = [
    { holding: tenDollars, lots: 10n },
    { holding: tenDollars, lots: 10n },
  ];
  t.same(
    fitBuys(wishes, 10_000n).map((f) => f.lots),
    [5n, 5n],
    'half the cash: half of each, not all of the first',
  );
  t.same(
    fitBuys(wishes, 20_000n).map((f) => f.lots),
    [10n, 10n],
    'enough cash: untouched',
  );
  t.end();
});

t.test(
  'given pro-rata buys that round over the cash by a cent, when fitted, then the last is trimmed',
  (t) => {
    // 2 shares at 0.035 cost 7 cents; 1 share costs 3.5, rounded half-even to 4.
    // Cash 7 of a 14-cent wish: pro rata gives 1 + 1 shares = 8 cents, over by one.
    const cheap = { lotSize: 1n, priceMicro: 35_000n };
    const fitted = fitBuys(
      [
        { holding: cheap, lots: 2n },
        { holding: cheap, lots: 2n },
      ],
      7n,
    );
    t.same(
      fitted.map((f) => f.lots),
      [1n, 0n],
    );
    const spent = fitted.reduce((s, f) => s - cashDelta('BUY', f.lots, cheap.priceMicro), 0n);
    t.ok(spent <= 7n, `spends ${spent} of 7`);
    t.end();
  },
);

// ---------------------------------------------------------------- aggregation

t.test(
  "given a rebalance, then one block order per (security, side), its targets the accounts' trades",
  (t) => {
    const world = buildWorld({ seed: 23, accounts: 3_000, securities: 80, days: 2 });
    const result = rebalanceDay(world, 1, [group('g', 150)]);
    const keys = result.blockOrders.map((o) => `${o.securityId}/${o.side}`);
    t.equal(new Set(keys).size, keys.length, 'no (security, side) twice');
    t.equal(new Set(result.blockOrders.map((o) => o.id)).size, keys.length, 'ids unique');
    t.ok(
      result.blockOrders.every((o) => o.tradeDate === result.summary.tradeDate),
      'trade date',
    );
    t.match(result.blockOrders[0]?.id, /^BO-\d{8}-[A-Z]{4}-(BUY|SELL)$/);
    // Recompute every selected account's trades alone and sum them per (security, side).
    const expected = new Map<string, bigint>();
    const orders = new Map(result.blockOrders.map((o) => [`${o.securityId}/${o.side}`, o]));
    for (const a of streamAccounts(world)) {
      if (!a.eligible || driftBpsOf(world, a, 1) < 150) continue;
      for (const trade of planTrades(world, a, 1)) {
        const key = `${world.securities[trade.securityIndex]?.id}/${trade.side}`;
        expected.set(key, (expected.get(key) ?? 0n) + trade.quantity);
        const target = orders.get(key)?.targets.find((x) => x.accountId === a.id);
        if (target?.quantity !== trade.quantity) t.fail(`${a.id} ${key}: ${target?.quantity}`);
      }
    }
    const actual = new Map(
      result.blockOrders.map((o) => [
        `${o.securityId}/${o.side}`,
        o.targets.reduce((s, x) => s + x.quantity, 0n),
      ]),
    );
    t.same(actual, expected, "each order totals its accounts' quantities");
    t.end();
  },
);

t.test('given a rebalance, then the summary counts what the orders hold', (t) => {
  const world = buildWorld({ seed: 24, accounts: 2_500, days: 2 });
  const { blockOrders, summary } = rebalanceDay(world, 1, [group('g', 200)]);
  const all = [...streamAccounts(world)];
  t.equal(summary.accountsScanned, 2_500);
  t.equal(summary.accountsEligible, all.filter((a) => a.eligible).length);
  t.equal(summary.orders, blockOrders.length);
  t.equal(
    summary.lines,
    blockOrders.reduce((s, o) => s + o.targets.length, 0),
  );
  t.equal(summary.accountsTrading, linesByAccount(blockOrders).size);
  const notional = (side: Side) =>
    blockOrders
      .filter((o) => o.side === side)
      .reduce((s, o) => {
        const open = barOf(
          world.market,
          world.securities.findIndex((x) => x.id === o.securityId),
          1,
        ).openMicro;
        return s + o.targets.reduce((n, x) => n + notionalMinor(x.quantity, open), 0n);
      }, 0n);
  t.equal(summary.buyNotionalMinor, notional('BUY'));
  t.equal(summary.sellNotionalMinor, notional('SELL'));
  t.ok(summary.buyNotionalMinor > 0n && summary.sellNotionalMinor > 0n);
  t.end();
});

// ---------------------------------------------------------------- groups

t.test('given an intraday group with the same criteria, then each account rebalances once', (t) => {
  const world = buildWorld({ seed: 25, accounts: 2_000 });
  const once = rebalanceDay(world, 0, [group('open', 200)]);
  const twice = rebalanceDay(world, 0, [group('open', 200), group('intraday', 200)]);
  const selected = once.summary.groups[0]?.selected ?? 0;
  t.ok(selected > 0);
  t.same(twice.summary.groups[1], { groupId: 'intraday', selected: 0, alreadyTaken: selected });
  t.equal(json(twice.blockOrders), json(once.blockOrders), 'the second group adds no line');
  t.end();
});

t.test('given groups by model, then each takes its models and a later group only the rest', (t) => {
  const world = buildWorld({ seed: 26, accounts: 2_000, models: 4 });
  const first = world.models[0]?.id ?? '';
  const groups = [
    group('model-1', 100, { models: { kind: 'IN', modelIds: [first] } }),
    group('rest', 100, { eligibility: Eligibility.Any }),
  ];
  const result = rebalanceDay(world, 0, groups);
  let inFirst = 0;
  let rest = 0;
  for (const a of streamAccounts(world)) {
    if (driftBpsOf(world, a, 0) < 100) continue;
    if (a.modelId === first && a.eligible) inFirst += 1;
    else rest += 1;
  }
  t.same(result.summary.groups[0], { groupId: 'model-1', selected: inFirst, alreadyTaken: 0 });
  t.same(result.summary.groups[1], { groupId: 'rest', selected: rest, alreadyTaken: inFirst });
  t.ok(inFirst > 0 && rest > 0);
  t.throws(
    () => rebalanceDay(world, 0, [group('x', 0, { models: { kind: 'IN', modelIds: ['NOPE'] } })]),
    /unknown model/,
  );
  t.throws(() => rebalanceDay(world, 0, [group('x', 0), group('x', 1)]), /unique/);
  t.end();
});

// ---------------------------------------------------------------- determinism

t.test(
  'given the same options, when rebalanced twice, then the orders are byte-identical; another seed differs',
  (t) => {
    const run = (seed: number) =>
      json(rebalanceDay(buildWorld({ seed, accounts: 1_500, days: 3 }), 2, [group('g', 150)]));
    t.equal(run(31), run(31));
    t.not(run(31), run(32));
    t.end();
  },
);

t.test('given an account streamed or built alone, then its plan is the same', (t) => {
  const world = buildWorld({ seed: 33, accounts: 500 });
  const streamed = [...streamAccounts(world)].map((a) => planTrades(world, a, 0));
  t.same(planTrades(world, accountAt(world, 321), 0), streamed[321]);
  t.end();
});
