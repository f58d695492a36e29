/**
 * Average-price policy, in given-fills / when-clock-or-release / then form:
 * the accumulation is fills.reduce(accumulate, emptyAccumulation). Pure.
 */
import t, { type Test } from 'tap';
import fc from 'fast-check';
import assert from 'node:assert/strict';
import { allocateFill, type AccountRemaining } from '../actors/domain/allocation.ts';
import {
  COMPLETION_ONLY,
  accumulate,
  emptyAccumulation,
  releaseAtAverage,
  releaseDue,
  residueBoundMinor,
  unaccumulate,
  validateAveragePricePolicy,
  type AccumulatedFill,
  type Accumulation,
  type AveragePricePolicy,
  type Release,
  type ReleaseClock,
} from '../actors/domain/average-price.ts';
import { notionalMinor, vwap, type Side } from '../actors/domain/money.ts';
import { ValidationError } from '../actors/errors.ts';
import { expectInvariant, thrown, TEST_PRICE as PRICE } from './helpers/asserts.ts';

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
const fill = (quantity: bigint, price = PRICE, executedAtMs = T0): AccumulatedFill => ({
  quantity,
  price,
  executedAtMs,
});
const accountsOf = (remainings: Record<string, bigint>): AccountRemaining[] =>
  Object.entries(remainings).map(([accountId, remaining]) => ({ accountId, remaining }));
const sum = (xs: readonly bigint[]): bigint => xs.reduce((a, b) => a + b, 0n);
const abs = (x: bigint): bigint => (x < 0n ? -x : x);

interface ReleaseOptions {
  lotSize?: bigint;
  side?: Side;
  releaseSeq?: number;
}

/** What every release must hold (node:assert, so fast-check sees a failure and shrinks it). */
function checkRelease(acc: Accumulation, accounts: AccountRemaining[], r: Release): Release {
  const quantities = r.lines.map((l) => l.quantity);
  assert.equal(sum(quantities), acc.quantity, 'quantity conserved: lines sum to the accumulation');
  assert.equal(r.averagePrice, vwap(acc.notional, acc.quantity), 'one price: the rounded VWAP');
  const accountsCash = sum(quantities.map((q) => notionalMinor(q, r.averagePrice)));
  assert.equal(r.accountsCashMinor, accountsCash, 'accounts cash: per line at the average price');
  assert.equal(r.accountsCashMinor + r.residueMinor, acc.cashMinor, 'cash conserved with residue');
  const bound = residueBoundMinor(acc.fills, r.lines.length, acc.quantity);
  assert.ok(abs(r.residueMinor) <= bound, `residue ${r.residueMinor} beyond ${bound}`);
  for (const line of r.lines) {
    const remaining = accounts.find((a) => a.accountId === line.accountId)?.remaining ?? -1n;
    assert.ok(line.quantity > 0n && line.quantity <= remaining, `${line.accountId} overfilled`);
  }
  return r;
}

function given(t: Test, fills: readonly AccumulatedFill[]) {
  const acc = fills.reduce(accumulate, emptyAccumulation);
  return {
    acc,
    when(clock: ReleaseClock, policy: AveragePricePolicy) {
      return {
        thenDue(expected: boolean, why: string) {
          t.equal(releaseDue(acc, policy, clock), expected, why);
        },
      };
    },
    whenReleased(accounts: AccountRemaining[], options: ReleaseOptions = {}) {
      const { lotSize = 1n, side = 'BUY', releaseSeq = 1 } = options;
      const run = () =>
        releaseAtAverage({ lotSize, releaseSeq, accounts, accumulation: acc, side });
      return {
        then(expected: Release): Release {
          const r = checkRelease(acc, accounts, run());
          t.strictSame(r, expected, 'release');
          return r;
        },
        thenThrows(message: RegExp): void {
          expectInvariant(t, run, message);
        },
      };
    },
  };
}

const clockAt = (executedAtMs: number, orderComplete = false): ReleaseClock => ({
  executedAtMs,
  orderComplete,
});

// ---------------------------------------------------------------- policy

t.test('a policy has positive integer triggers or null', async (t) => {
  t.strictSame(validateAveragePricePolicy(COMPLETION_ONLY), COMPLETION_ONLY);
  const ok = { everyFills: 5, everyMarketMs: 60_000 };
  t.equal(validateAveragePricePolicy(ok), ok);
  const bad: [AveragePricePolicy, string][] = [
    [{ everyFills: 0, everyMarketMs: null }, 'everyFills'],
    [{ everyFills: -1, everyMarketMs: null }, 'everyFills'],
    [{ everyFills: 1.5, everyMarketMs: null }, 'everyFills'],
    [{ everyFills: null, everyMarketMs: Number.NaN }, 'everyMarketMs'],
    [{ everyFills: null, everyMarketMs: 2 ** 53 }, 'everyMarketMs'],
  ];
  for (const [policy, field] of bad) {
    const error = thrown(t, () => validateAveragePricePolicy(policy));
    t.type(error, ValidationError);
    t.match(error, { field }, JSON.stringify(policy));
  }
});

// ---------------------------------------------------------------- triggers

t.test('every N fills: due once the Nth fill is accumulated', async (t) => {
  const policy = { everyFills: 3, everyMarketMs: null };
  given(t, [fill(100n), fill(100n)])
    .when(clockAt(T0), policy)
    .thenDue(false, '2 of 3 fills');
  given(t, [fill(100n), fill(100n), fill(100n)])
    .when(clockAt(T0), policy)
    .thenDue(true, '3 of 3 fills');
});

t.test('every T ms of market time: due T ms after the first accumulated fill', async (t) => {
  const policy = { everyFills: null, everyMarketMs: 60_000 };
  const fills = [fill(100n, PRICE, T0), fill(100n, PRICE, T0 + 30_000)];
  given(t, fills)
    .when(clockAt(T0 + 59_999), policy)
    .thenDue(false, '1 ms short');
  given(t, fills)
    .when(clockAt(T0 + 60_000), policy)
    .thenDue(true, 'T ms after the first fill');
  given(t, fills)
    .when(clockAt(T0 - 1), policy)
    .thenDue(false, 'market time behind the first fill');
});

t.test('completion always releases; without a trigger nothing is due', async (t) => {
  given(t, [fill(100n)])
    .when(clockAt(T0, true), COMPLETION_ONLY)
    .thenDue(true, 'order complete');
  given(t, [fill(100n)])
    .when(clockAt(T0 + 86_400_000), COMPLETION_ONLY)
    .thenDue(false, 'no trigger: wait for completion');
  given(t, [fill(100n)])
    .when(clockAt(T0), { everyFills: 2, everyMarketMs: 1_000 })
    .thenDue(false, 'no trigger reached');
  given(t, [])
    .when(clockAt(T0, true), { everyFills: 1, everyMarketMs: 1 })
    .thenDue(false, 'an empty accumulation is never released');
});

// ---------------------------------------------------------------- release

t.test('a release gives every account one average price and reports the residue', async (t) => {
  // Worked by hand (lot 10, remaining 600 / 300 / 100):
  // fills 500 @ 101.25 and 130 @ 101.26: N = 63 788 800 000, Q = 630,
  // VWAP = 101.252063492... -> 101.252063. Street: 50 625.00 + 13 163.80 = 63 788.80.
  // Split 630 as one fill: quotas 378 / 189 / 63, bases 370 / 180 / 60, the
  // leftover 20 by largest fraction: A2 (9), A1 (8) -> 380 / 190 / 60.
  // Accounts: 38 475.78394 -> 38 475.78; 19 237.89197 -> 19 237.89;
  // 6 075.12378 -> 6 075.12: 63 788.79. Residue: 1 cent.
  const accounts = accountsOf({ A1: 600n, A2: 300n, A3: 100n });
  const fills = [fill(500n), fill(130n, 101_260_000n)];
  const lines = [
    { accountId: 'A1', quantity: 380n },
    { accountId: 'A2', quantity: 190n },
    { accountId: 'A3', quantity: 60n },
  ];
  const expected = {
    lines,
    averagePrice: 101_252_063n,
    accountsCashMinor: 6_378_879n,
    residueMinor: 1n,
    roundingCashMinor: -1n, // a BUY: the rounding account pays the cent
  };
  given(t, fills).whenReleased(accounts, { lotSize: 10n }).then(expected);
  given(t, fills)
    .whenReleased(accounts, { lotSize: 10n, side: 'SELL' })
    .then({ ...expected, roundingCashMinor: 1n });
});

t.test('a release that is not whole is a bug, not a business rejection', async (t) => {
  given(t, [])
    .whenReleased(accountsOf({ A1: 100n }))
    .thenThrows(/nothing accumulated/);
  given(t, [fill(101n)])
    .whenReleased(accountsOf({ A1: 100n }))
    .thenThrows(/exceeds the order's remaining/);
});

// ---------------------------------------------------------------- accumulate

t.test('unaccumulate takes a bust fill back out', async (t) => {
  const first = fill(100n, PRICE, T0);
  const second = fill(50n, 99_990_000n, T0 + 10);
  const both = [first, second].reduce(accumulate, emptyAccumulation);
  t.strictSame(unaccumulate(both, second), accumulate(emptyAccumulation, first));
  t.strictSame(unaccumulate(unaccumulate(both, second), first), emptyAccumulation);
  t.equal(
    unaccumulate(both, first).firstExecutedAtMs,
    T0,
    'busting the first of several keeps its window open',
  );
  expectInvariant(t, () => unaccumulate(emptyAccumulation, first), /not in an accumulation/);
  expectInvariant(
    t,
    () => unaccumulate(accumulate(emptyAccumulation, first), fill(100n, PRICE + 1n)),
    /was not accumulated/,
  );
  expectInvariant(t, () => accumulate(emptyAccumulation, fill(0n)), /quantity and price > 0/);
});

// ---------------------------------------------------------------- properties

const fillArb = fc.record({
  quantity: fc.bigInt({ min: 1n, max: 5_000n }),
  // From a tenth of a cent to 10 000.00, any price unit: roundings everywhere.
  price: fc.bigInt({ min: 1_000n, max: 10_000_000_000n }),
  executedAtMs: fc.integer({ min: T0, max: T0 + 23_400_000 }),
});

t.test('unaccumulate . accumulate = identity', async (t) => {
  const prop = fc.property(fc.array(fillArb, { maxLength: 6 }), fillArb, (prefix, f) => {
    const acc = prefix.reduce(accumulate, emptyAccumulation);
    assert.deepEqual(unaccumulate(accumulate(acc, f), f), acc);
  });
  t.equal(counterexample(prop, 300), undefined);
});

/** Targets, accumulated fills that fit them, a lot and a release seq. */
const releaseCaseArb = fc
  .record({
    targets: fc.array(fc.bigInt({ min: 1n, max: 20_000n }), { minLength: 1, maxLength: 8 }),
    fills: fc.array(fillArb, { minLength: 1, maxLength: 10 }),
    lotSize: fc.constantFrom(1n, 10n, 100n),
    releaseSeq: fc.integer({ min: 1, max: 1_000 }),
    side: fc.constantFrom<Side>('BUY', 'SELL'),
  })
  .filter(({ targets, fills }) => sum(fills.map((f) => f.quantity)) <= sum(targets));

t.test('any release conserves quantity and cash, and its residue is within bound', async (t) => {
  let nonZeroResidues = 0;
  const prop = fc.property(releaseCaseArb, ({ targets, fills, lotSize, releaseSeq, side }) => {
    const accounts = targets.map((remaining, i) => ({ accountId: `AC${i}`, remaining }));
    const acc = fills.reduce(accumulate, emptyAccumulation);
    const r = releaseAtAverage({ lotSize, releaseSeq, accounts, accumulation: acc, side });
    // The same split as allocating the accumulated quantity as one fill.
    const same = allocateFill({
      lotSize,
      fillQuantity: acc.quantity,
      fillSeq: releaseSeq,
      accounts,
    });
    assert.deepEqual(same.ok ? same.lines : same, r.lines, "the lines are allocateFill's");
    checkRelease(acc, accounts, r);
    if (r.residueMinor !== 0n) nonZeroResidues++;
  });
  t.equal(counterexample(prop, 200), undefined);
  t.ok(nonZeroResidues > 0, 'some releases leave a residue: the bound is exercised');
});

t.test('the residue bound is floor((D(k + m) + Q) / 2D) cents', async (t) => {
  // D = 10^4 price units per cent.
  t.equal(residueBoundMinor(1, 1, 0n), 1n, '1/2 + 1/2');
  t.equal(residueBoundMinor(1, 2, 0n), 1n, '3/2 rounds down: a residue is whole cents');
  t.equal(residueBoundMinor(1, 2, 10_000n), 2n, '3/2 + 1/2');
  t.equal(residueBoundMinor(0, 0, 19_999n), 0n, 'Q/2D < 1');
});
