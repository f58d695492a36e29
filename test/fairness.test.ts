/**
 * Fairness figures, in given-tape / when-replayed-under-a-policy / then-figures
 * form: counterfactualFairness over hand-made orders. Pure.
 */
import t, { type Test } from 'tap';
import fc from 'fast-check';
import assert from 'node:assert/strict';
import { COMPLETION_ONLY, type AveragePricePolicy } from '../actors/domain/average-price.ts';
import {
  HISTOGRAM_UPPER_BPS,
  counterfactualFairness,
  orderFairness,
  summarizeFairness,
  type AllocationPolicyName,
  type FairnessFigures,
  type OrderFairness,
  type TapeFill,
  type TapeOrder,
} from '../simulations/fairness.ts';
import { expectInvariant } from './helpers/asserts.ts';

// Replay a failure with FC_SEED=<seed printed in the report>.
const seedParams = process.env.FC_SEED === undefined ? {} : { seed: Number(process.env.FC_SEED) };

/** Runs a property; returns fast-check's failure report, or undefined when it holds. */
function counterexample<Ts>(prop: fc.IProperty<Ts>, numRuns: number): string | undefined {
  const details = fc.check(prop, { numRuns, ...seedParams });
  if (!details.failed) return undefined;
  const error = details.errorInstance;
  const cause = error instanceof Error ? (error.stack ?? error.message) : String(error);
  return `${fc.defaultReportMessage(details)}\nError: ${cause}`;
}

// ---------------------------------------------------------------- helpers

const T0 = 1_700_000_000_000;
const USD = 1_000_000n; // one currency unit, as a price

const order = (
  targets: Record<string, bigint>,
  fills: Array<[quantity: bigint, price: bigint]>,
  lotSize = 1n,
): TapeOrder => ({
  def: {
    lotSize,
    side: 'BUY',
    targets: Object.entries(targets).map(([accountId, quantity]) => ({ accountId, quantity })),
  },
  fills: fills.map(([quantity, price], i) => ({
    seq: i + 1,
    quantity,
    price,
    executedAtMs: T0 + 1_000 * i,
  })),
});

function given(t: Test, orders: readonly TapeOrder[]) {
  return {
    when(policy: AllocationPolicyName, avgPrice?: AveragePricePolicy) {
      const figures = counterfactualFairness({
        orders,
        policy,
        ...(avgPrice === undefined ? {} : { avgPrice }),
      });
      return {
        figures,
        then(expected: Partial<FairnessFigures>): FairnessFigures {
          t.match(figures, expected, `${policy} figures`);
          return figures;
        },
      };
    },
  };
}

const bucketOf = (bps: number): number => HISTOGRAM_UPPER_BPS.findIndex((edge) => bps <= edge);
const oneBucket = (index: number, count: number): number[] =>
  HISTOGRAM_UPPER_BPS.map((_, i) => (i === index ? count : 0));

// ---------------------------------------------------------------- pro-rata

t.test('pro-rata, one fill: every account at the fill price, no deviation', async (t) => {
  const figures = given(t, [order({ A1: 600n, A2: 300n, A3: 100n }, [[500n, 101n * USD]], 10n)])
    .when('pro-rata')
    .then({
      orders: 1,
      accounts: 3,
      maxPriceDeviationBps: 0,
      p99PriceDeviationBps: 0,
      maxFillRateDeviation: 0, // 300 / 150 / 50: exactly half of each target
      residueMinor: '0',
    });
  t.strictSame(figures.histogram, { upperBps: HISTOGRAM_UPPER_BPS, counts: oneBucket(0, 3) });
});

// Worked by hand (lot 100, targets A 300 / B 100):
// fill 1 = 200 @ 10: quotas 150 / 50, bases 100 / 0, the leftover lot ties
//   (50 = 50); the rotation (fillSeq 1 mod 2 = 1) puts B first: A 100, B 100.
// fill 2 = 200 @ 11: only A remains: A 200.
// VWAP = (2000 + 2200) / 400 = 10.5. A: 3200 / 300 = 10.666..., B: 10.
// A deviates (1/6) / 10.5 = 1/63 -> 10000/63 bps; B 0.5 / 10.5 = 1/21 -> 10000/21 bps.
const twoFills = order(
  { A: 300n, B: 100n },
  [
    [200n, 10n * USD],
    [200n, 11n * USD],
  ],
  100n,
);

t.test('pro-rata, two fills at two prices: the exact deviations', async (t) => {
  const figures = given(t, [twoFills])
    .when('pro-rata')
    .then({ orders: 1, accounts: 2, maxFillRateDeviation: 0, residueMinor: '0' });
  t.equal(figures.maxPriceDeviationBps, 476.190476190476, '10000/21 at 10^-12');
  t.equal(figures.p99PriceDeviationBps, 476.190476190476, 'nearest rank of 2: the 2nd');
  t.strictSame(figures.histogram.counts, oneBucket(HISTOGRAM_UPPER_BPS.length - 1, 2), '> 100');

  const perOrder = orderFairness({
    blockQuantity: 400n,
    blockNotional: 4_200n * USD,
    targetTotal: 400n,
    accounts: [
      { accountId: 'A', target: 300n, quantity: 300n, notional: 3_200n * USD },
      { accountId: 'B', target: 100n, quantity: 100n, notional: 1_000n * USD },
    ],
  });
  t.strictSame(perOrder, {
    accounts: 2,
    priceDeviationsBps: [158.730158730159, 476.190476190476], // 10000/63, 10000/21
    maxFillRateDeviation: 0,
  });
});

t.test('pro-rata, partly filled: the fill rates drift by a lot', async (t) => {
  // Only fill 1: A 100 of 300 (1/3), B 100 of 100 (1), the block 200 of 400 (1/2).
  given(t, [{ ...twoFills, fills: twoFills.fills.slice(0, 1) }])
    .when('pro-rata')
    .then({ maxPriceDeviationBps: 0, maxFillRateDeviation: 0.5 });
});

t.test('a fill the block order would reject is skipped under both policies', async (t) => {
  const overfilled: TapeOrder = {
    ...twoFills,
    fills: [...twoFills.fills, { seq: 3, quantity: 1n, price: 12n * USD, executedAtMs: T0 }],
  };
  for (const policy of ['pro-rata', 'avg-price'] as const) {
    const clean = given(t, [twoFills]).when(policy).figures;
    given(t, [overfilled]).when(policy).then(clean);
  }
});

// ---------------------------------------------------------------- avg-price

t.test('avg-price on completion: one price, so no deviation but its rounding', async (t) => {
  // VWAP 10.5 exactly: no rounding, no residue (whole-cent fills).
  given(t, [twoFills])
    .when('avg-price')
    .then({
      maxPriceDeviationBps: 0,
      maxFillRateDeviation: 0,
      residueMinor: '0',
      histogram: { upperBps: [...HISTOGRAM_UPPER_BPS], counts: oneBucket(0, 2) },
    });
  // VWAP 10 / 3 = 3.333333(3) -> 3.333333: every account 1/3 price unit under,
  // (1/3) / (10^7 / 3) = 10^-7 = 0.001 bps.
  const thirds = order({ A: 2n, B: 1n }, [
    [1n, 3n * USD],
    [1n, 3n * USD],
    [1n, 4n * USD],
  ]);
  const figures = given(t, [thirds]).when('avg-price').figures;
  t.equal(figures.maxPriceDeviationBps, 0.001);
  // Street 10.00, accounts 2 x 3.333333 -> 6.67 and 3.333333 -> 3.33: 10.00.
  t.equal(figures.residueMinor, '0');
  t.strictSame(figures.histogram.counts, oneBucket(bucketOf(0.001), 2));
});

t.test('avg-price every N fills: each release at its own VWAP', async (t) => {
  // One fill per release: the lines of fill k are priced at fill k's price,
  // so the figures are the pro-rata ones.
  const proRata = given(t, [twoFills]).when('pro-rata').figures;
  given(t, [twoFills]).when('avg-price', { everyFills: 1, everyMarketMs: null }).then(proRata);
});

t.test('the residue is summed over releases and orders', async (t) => {
  // Fills 1 @ 0.004 (0.4 cent -> 0) and 1 @ 0.006 (0.6 cent -> 1): street 1 cent.
  // VWAP 0.005; the order completes, so A and B get 1 each, at 0.5 cent -> 0
  // (half to even): the accounts pay 0. Residue: 1 cent per order.
  const residual = order({ A: 1n, B: 1n }, [
    [1n, 4_000n],
    [1n, 6_000n],
  ]);
  given(t, [residual, residual, residual])
    .when('avg-price', COMPLETION_ONLY)
    .then({ orders: 3, accounts: 6, residueMinor: '3' });
  given(t, [residual]).when('pro-rata').then({ residueMinor: '0' });
});

/** Orders: 1-6 accounts, 1-8 fills that may stop short of the targets. */
const orderArb = fc
  .record({
    lotSize: fc.constantFrom(1n, 10n, 100n),
    targets: fc.array(fc.bigInt({ min: 1n, max: 5_000n }), { minLength: 1, maxLength: 6 }),
    fills: fc.array(
      fc.record({
        quantity: fc.bigInt({ min: 1n, max: 3_000n }),
        price: fc.bigInt({ min: 10_000n, max: 1_000_000_000n }), // 0.01 .. 1000.00
      }),
      { minLength: 1, maxLength: 8 },
    ),
  })
  .map(({ lotSize, targets, fills }) => {
    const tapeFills: TapeFill[] = fills.map((f, i) => ({ ...f, seq: i + 1, executedAtMs: T0 }));
    const def = {
      lotSize,
      side: 'SELL' as const,
      targets: targets.map((quantity, i) => ({ accountId: `AC${i}`, quantity })),
    };
    return { def, fills: tapeFills };
  });

t.test(
  'avg-price on completion: deviation within VWAP rounding, fill rate within a lot',
  async (t) => {
    const prop = fc.property(orderArb, (o) => {
      const figures = counterfactualFairness({ orders: [o], policy: 'avg-price' });
      const minPrice = o.fills.reduce((m, f) => (f.price < m ? f.price : m), o.fills[0]!.price);
      // |P - VWAP| <= 1/2 price unit and VWAP >= the lowest price.
      assert.ok(figures.maxPriceDeviationBps <= 5_000 / Number(minPrice), 'beyond VWAP rounding');
      // One release of Q against the targets: |q_i - Q t_i / T| < lot.
      const minTarget = o.def.targets.reduce(
        (m, x) => (x.quantity < m ? x.quantity : m),
        10n ** 9n,
      );
      const lotRate = Number(o.def.lotSize) / Number(minTarget);
      assert.ok(figures.maxFillRateDeviation <= Math.min(lotRate, 1), 'beyond one lot');
      assert.equal(figures.accounts, o.def.targets.length);
    });
    t.equal(counterexample(prop, 300), undefined);
  },
);

t.test('both policies: the histogram counts every priced account once', async (t) => {
  const prop = fc.property(fc.array(orderArb, { minLength: 1, maxLength: 4 }), (orders) => {
    for (const policy of ['pro-rata', 'avg-price'] as const) {
      const avgPrice = { everyFills: 2, everyMarketMs: null };
      const figures = counterfactualFairness({ orders, policy, avgPrice });
      const counted = figures.histogram.counts.reduce((s, c) => s + c, 0);
      assert.ok(counted <= figures.accounts, `${policy}: ${counted} > ${figures.accounts}`);
      assert.equal(figures.orders, orders.length);
      assert.ok(figures.p99PriceDeviationBps <= figures.maxPriceDeviationBps);
      assert.ok(figures.maxFillRateDeviation >= 0 && figures.maxFillRateDeviation <= 1);
    }
  });
  t.equal(counterexample(prop, 150), undefined);
});

// ---------------------------------------------------------------- summary

const measured = (...priceDeviationsBps: number[]): OrderFairness => ({
  accounts: priceDeviationsBps.length + 1, // and one account without a fill
  priceDeviationsBps,
  maxFillRateDeviation: 0.25,
});

t.test('p99 is the nearest rank: sorted[ceil(0.99 n) - 1]', async (t) => {
  const ranks = (n: number) => Array.from({ length: n }, (_, i) => n - i); // n .. 1, unsorted
  t.equal(summarizeFairness([measured(...ranks(100))], 0n).p99PriceDeviationBps, 99);
  t.equal(summarizeFairness([measured(...ranks(200))], 0n).p99PriceDeviationBps, 198);
  t.equal(summarizeFairness([measured(...ranks(101))], 0n).p99PriceDeviationBps, 100);
  t.equal(summarizeFairness([measured(7)], 0n).p99PriceDeviationBps, 7);
  t.strictSame(summarizeFairness([], 0n), {
    orders: 0,
    accounts: 0,
    maxPriceDeviationBps: 0,
    p99PriceDeviationBps: 0,
    maxFillRateDeviation: 0,
    residueMinor: '0',
    histogram: { upperBps: HISTOGRAM_UPPER_BPS, counts: oneBucket(0, 0) },
  });
});

t.test('summary: counts sum to the priced accounts, max and p99 as a sort says', async (t) => {
  const bps = fc.double({ min: 0, max: 1e6, noNaN: true });
  const orderArb = fc.record({
    accounts: fc.nat({ max: 5 }),
    priceDeviationsBps: fc.array(bps, { maxLength: 5 }),
    maxFillRateDeviation: fc.double({ min: 0, max: 1, noNaN: true }),
  });
  const prop = fc.property(fc.array(orderArb, { maxLength: 60 }), (perOrder) => {
    const figures = summarizeFairness(perOrder, 0n);
    const all = perOrder.flatMap((o) => o.priceDeviationsBps).sort((a, b) => a - b);
    assert.equal(
      figures.histogram.counts.reduce((s, c) => s + c, 0),
      all.length,
    );
    assert.equal(figures.maxPriceDeviationBps, all.at(-1) ?? 0);
    // Nearest rank: the smallest d with at least 99 % of the deviations <= d.
    const p99 = all.find((d) => all.filter((x) => x <= d).length * 100 >= 99 * all.length);
    assert.equal(figures.p99PriceDeviationBps, p99 ?? 0);
  });
  t.equal(counterexample(prop, 200), undefined);
});

t.test('the histogram buckets by upper edge, the last one open', async (t) => {
  const figures = summarizeFairness([measured(0, 0.5, 0.50001, 100, 100.5), measured(1e9)], -12n);
  t.strictSame(figures.histogram.counts, [1, 1, 1, 0, 0, 0, 0, 0, 1, 2]);
  t.match(figures, {
    orders: 2,
    accounts: 8,
    maxPriceDeviationBps: 1e9,
    maxFillRateDeviation: 0.25,
    residueMinor: '-12',
  });
});

t.test('orderFairness refuses an order whose accounts do not add up', async (t) => {
  const account = { accountId: 'A', target: 100n, quantity: 50n, notional: 50n * USD };
  expectInvariant(
    t,
    () =>
      orderFairness({
        blockQuantity: 60n,
        blockNotional: 60n * USD,
        targetTotal: 100n,
        accounts: [account],
      }),
    /accounts hold 50 of 100, the block 60 of 100/,
  );
  expectInvariant(
    t,
    () =>
      orderFairness({
        blockQuantity: 50n,
        blockNotional: 50n * USD,
        targetTotal: 100n,
        accounts: [{ ...account, quantity: 101n }],
      }),
    /has 101 of 100/,
  );
});
