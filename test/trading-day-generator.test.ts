/**
 * Trading-day scenario generator, reference data, market and holdings:
 * deterministic from the seed, within their invariants, and streaming
 * (account i alone equals account i of a full pass; memory stays flat).
 * Pure: no database, no streams.
 */
import t from 'tap';
import v8 from 'node:v8';
import vm from 'node:vm';
import { accountAt, streamAccounts, toSeedAccount } from '../simulations/trading-day/holdings.ts';
import { tradeDateOf } from '../simulations/trading-day/options.ts';
import { AssetClass, toSeedSecurities } from '../simulations/trading-day/reference.ts';
import { buildWorld, type World } from '../simulations/trading-day/world.ts';

// ---------------------------------------------------------------- helpers

const json = (value: unknown): string =>
  JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v));

/** Everything a world and its first `n` accounts are, as one string. */
const fingerprint = (world: World, n: number): string =>
  json({ world, accounts: [...streamAccounts(world, 0, n)] });

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

/** Heap in use after a full collection: only what is still reachable. */
function liveHeapBytes(): number {
  gc();
  return process.memoryUsage().heapUsed;
}

/** The largest growth of the live heap, sampled every `every` accounts, over `count` accounts. */
function heapGrowthOver(accounts: Iterable<unknown>, every: number, keep: unknown[] | null) {
  const baseBytes = liveHeapBytes();
  let peakBytes = 0;
  let count = 0;
  for (const account of accounts) {
    keep?.push(account);
    count += 1;
    if (count % every === 0) peakBytes = Math.max(peakBytes, liveHeapBytes() - baseBytes);
  }
  return { count, peakBytes };
}

// ---------------------------------------------------------------- determinism

t.test('given the same options, when generated twice, then the output is byte-identical', (t) => {
  const options = { seed: 7, securities: 40, accounts: 300, days: 10, models: 6 };
  t.equal(fingerprint(buildWorld(options), 300), fingerprint(buildWorld(options), 300));
  t.end();
});

t.test('given another seed, when generated, then the output differs', (t) => {
  const options = { securities: 40, accounts: 300, days: 10, models: 6 };
  const a = buildWorld({ ...options, seed: 7 });
  const b = buildWorld({ ...options, seed: 8 });
  t.not(json(a.market), json(b.market), 'market');
  t.not(json(a.models), json(b.models), 'models');
  t.not(json(accountAt(a, 0)), json(accountAt(b, 0)), 'account 0');
  t.end();
});

t.test('given a seed above 2^32, when generated, then its high bits count', (t) => {
  const options = { securities: 10, accounts: 1, days: 2, models: 1 };
  const low = buildWorld({ ...options, seed: 5 });
  const high = buildWorld({ ...options, seed: 5 + 2 ** 32 });
  t.not(json(low.market), json(high.market));
  t.end();
});

// ---------------------------------------------------------------- reference and market

t.test('given a world, then securities have unique ids and tickers and both lot sizes', (t) => {
  const world = buildWorld({ seed: 3, securities: 300 });
  const securities = world.securities;
  t.equal(new Set(securities.map((s) => s.id)).size, 300, 'ids unique');
  t.equal(new Set(securities.map((s) => s.ticker)).size, 300, 'tickers unique');
  t.ok(
    securities.some((s) => s.lotSize === 100n),
    'a round lot of 100',
  );
  t.ok(
    securities.some((s) => s.lotSize === 1n),
    'a round lot of 1',
  );
  t.ok(
    securities.every((s) => s.lotSize === (s.assetClass === AssetClass.Equity ? 100n : 1n)),
    'lot size follows the asset class',
  );
  const classes = new Set(securities.map((s) => s.assetClass));
  t.same([...classes].sort(), Object.values(AssetClass).sort(), 'every asset class present');
  t.same(toSeedSecurities(securities)[0], { id: 'SEC00001', ticker: 'AAAA', lotSize: 100n });
  t.end();
});

t.test('given the smallest world (2 securities), then both lot sizes are still present', (t) => {
  const world = buildWorld({ seed: 11, securities: 2, models: 1 });
  t.same(
    world.securities.map((s) => s.lotSize),
    [100n, 1n],
  );
  t.end();
});

t.test(
  'given a market over many days, then every bar keeps 0 < low <= open, close <= high',
  (t) => {
    const world = buildWorld({ seed: 5, securities: 200, days: 260 });
    let bad = 0;
    let bars = 0;
    let moved = 0;
    for (const series of world.market.bars) {
      t.equal(series.length, 260);
      for (const b of series) {
        bars += 1;
        const lowOk = b.lowMicro > 0n && b.lowMicro <= b.openMicro && b.lowMicro <= b.closeMicro;
        const highOk = b.highMicro >= b.openMicro && b.highMicro >= b.closeMicro;
        if (!lowOk || !highOk || b.openMicro % 10_000n !== 0n) bad += 1;
        if (b.openMicro !== b.closeMicro) moved += 1;
      }
    }
    t.equal(bars, 200 * 260);
    t.equal(bad, 0, 'bars breaking low <= open, close <= high, or off the cent tick');
    t.ok(moved > bars / 2, 'the walk moves: most days close away from the open');
    t.end();
  },
);

t.test('given a first trade date, then days are consecutive weekdays', (t) => {
  const world = buildWorld({ days: 7, firstTradeDate: '2026-11-19' }); // a Thursday
  const dates = Array.from({ length: 7 }, (_, d) => tradeDateOf(world.options, d));
  t.same(dates, [
    '2026-11-19',
    '2026-11-20',
    '2026-11-23',
    '2026-11-24',
    '2026-11-25',
    '2026-11-26',
    '2026-11-27',
  ]);
  t.throws(() => buildWorld({ firstTradeDate: '2026-11-21' }), /weekday/, 'a Saturday');
  t.end();
});

t.test('given options beyond a limit, then the world is refused', (t) => {
  t.throws(() => buildWorld({ securities: 5_001 }), /securities/);
  t.throws(() => buildWorld({ accounts: 10_000_001 }), /accounts/);
  t.throws(() => buildWorld({ days: 261 }), /days/);
  t.throws(() => buildWorld({ securities: 1 }), /securities/);
  t.end();
});

// ---------------------------------------------------------------- holdings

t.test('given models, then their weights are positive bps summing to 10,000', (t) => {
  const world = buildWorld({ seed: 9, securities: 100, models: 50 });
  for (const m of world.models) {
    const total = m.weights.reduce((s, w) => s + w.weightBps, 0);
    if (total !== 10_000 || m.weights.some((w) => w.weightBps <= 0))
      t.fail(`${m.id}: weights sum to ${total}`);
    const indexes = m.weights.map((w) => w.securityIndex);
    t.same(
      indexes,
      [...new Set(indexes)].sort((a, b) => a - b),
      `${m.id}: distinct, sorted`,
    );
  }
  t.equal(new Set(world.models.map((m) => m.id)).size, 50);
  t.end();
});

t.test('given accounts, then each has cash >= 0, positive sorted positions and a model', (t) => {
  const world = buildWorld({ seed: 4, accounts: 3_000 });
  const modelIds = new Set(world.models.map((m) => m.id));
  let eligible = 0;
  let oddLots = 0;
  for (const a of streamAccounts(world)) {
    if (a.cashMinor < 0n) t.fail(`${a.id}: negative cash`);
    if (!modelIds.has(a.modelId)) t.fail(`${a.id}: unknown model ${a.modelId}`);
    const indexes = a.positions.map((p) => p.securityIndex);
    if (a.positions.some((p) => p.quantity <= 0n)) t.fail(`${a.id}: a position <= 0`);
    if (indexes.some((x, i) => i > 0 && x <= (indexes[i - 1] ?? -1))) t.fail(`${a.id}: order`);
    if (a.eligible) eligible += 1;
    for (const p of a.positions)
      if (p.quantity % (world.securities[p.securityIndex]?.lotSize ?? 1n) !== 0n) oddLots += 1;
  }
  // eligibleBps 9,000 of 3,000 accounts: about 2,700.
  t.ok(eligible > 2_550 && eligible < 2_850, `eligible ${eligible}`);
  t.ok(oddLots > 0, 'some odd lots exist, so lot rounding is exercised');
  t.end();
});

t.test(
  'given an account, then its seed form carries its cash and positions by security id',
  (t) => {
    const world = buildWorld({ seed: 4, accounts: 10 });
    const account = accountAt(world, 3);
    const seed = toSeedAccount(world, account);
    t.equal(seed.id, 'ACC00000004');
    t.equal(seed.openingCashMinor, account.cashMinor);
    t.same(
      Object.entries(seed.positions),
      account.positions.map((p) => [world.securities[p.securityIndex]?.id, p.quantity]),
    );
    t.end();
  },
);

// ---------------------------------------------------------------- streaming

t.test('given a full pass, when account i is built alone, then it is the same account', (t) => {
  const world = buildWorld({ seed: 12, accounts: 2_000 });
  const all = [...streamAccounts(world)];
  t.equal(all.length, 2_000);
  for (const i of [0, 1, 999, 1_998, 1_999]) t.same(accountAt(world, i), all[i], `account ${i}`);
  t.same([...streamAccounts(world, 500, 505)], all.slice(500, 505), 'a slice of the stream');
  t.throws(() => accountAt(world, 2_000), /account 2000/);
  t.end();
});

t.test(
  "given a million accounts, when the last is built alone, then it equals the stream's last",
  (t) => {
    const world = buildWorld({ seed: 12, accounts: 1_000_000 });
    const tail = [...streamAccounts(world, 999_998)];
    t.equal(tail.length, 2);
    t.same(accountAt(world, 999_999), tail[1]);
    t.equal(tail[1]?.id, 'ACC01000000');
    t.end();
  },
);

t.test('given 200,000 streamed accounts, then the live heap stays bounded', (t) => {
  const world = buildWorld({ seed: 13, accounts: 200_000 });
  const BOUND_BYTES = 16 * 1024 * 1024;
  const streamed = heapGrowthOver(streamAccounts(world), 20_000, null);
  t.equal(streamed.count, 200_000, 'every account streamed');
  t.ok(streamed.peakBytes < BOUND_BYTES, `live heap grew ${streamed.peakBytes} bytes`);
  // The probe detects retention: keeping 50,000 of the same accounts exceeds the bound.
  const kept: unknown[] = [];
  const retained = heapGrowthOver(streamAccounts(world, 0, 50_000), 10_000, kept);
  t.ok(retained.peakBytes > BOUND_BYTES, `retaining grew ${retained.peakBytes} bytes`);
  t.equal(kept.length, 50_000);
  t.end();
});
