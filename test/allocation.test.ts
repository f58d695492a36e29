import t from 'tap';
import fc from 'fast-check';
import assert from 'node:assert/strict';
import {
  allocateFill,
  type AccountRemaining,
  type AllocateResult,
} from '../actors/domain/allocation.ts';
import {
  CASH_DECIMALS,
  INT64_MAX,
  INT64_MIN,
  PRICE_DECIMALS,
  PRICE_SCALE,
  assertInt64,
  cashDelta,
  formatDecimal,
  formatPrice,
  notionalMinor,
  parseDecimal,
  roundHalfEven,
  vwap,
} from '../actors/domain/money.ts';

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

const accountsOf = (remainings: readonly bigint[]): AccountRemaining[] =>
  remainings.map((remaining, i) => ({ accountId: `acct-${i}`, remaining }));

const sum = (xs: readonly bigint[]): bigint => xs.reduce((a, b) => a + b, 0n);
const abs = (x: bigint): bigint => (x < 0n ? -x : x);
const min = (...xs: bigint[]): bigint => xs.reduce((a, b) => (b < a ? b : a));

/** Per-account parts in input order (0 where no line) from an accepted result. */
function partsOf(accounts: readonly AccountRemaining[], result: AllocateResult): bigint[] {
  if (!result.ok) assert.fail(`expected an accepted fill, got ${result.reason}: ${result.detail}`);
  const index = new Map(accounts.map((a, i) => [a.accountId, i]));
  const parts = accounts.map(() => 0n);
  let previous = -1;
  for (const line of result.lines) {
    const i = index.get(line.accountId);
    assert.ok(i !== undefined, `line for unknown account ${line.accountId}`);
    assert.ok(i > previous, 'lines must be in input order, one per account');
    assert.ok(line.quantity > 0n, `zero/negative line for ${line.accountId}`);
    parts[i] = line.quantity;
    previous = i;
  }
  return parts;
}

/** Checks an accepted fill: exact sum, no account beyond its remaining. */
function checkAccepted(remainings: readonly bigint[], fill: bigint, parts: readonly bigint[]) {
  assert.equal(sum(parts), fill, 'parts must sum exactly to the fill');
  parts.forEach((p, i) => {
    assert.ok(
      p >= 0n && p <= remainings[i]!,
      `account ${i} got ${p} of remaining ${remainings[i]}`,
    );
  });
}

/**
 * The fairness bound (holds for ANY remainings and fill, lot-aligned or not):
 * floorLot(q_i) <= part_i <= ceilLot(q_i), q_i = F * r_i / R, hence
 * |part_i * R - F * r_i| < lot * R. Returns the per-account deviation numerators.
 */
function checkQuotaBracket(
  lot: bigint,
  remainings: readonly bigint[],
  fill: bigint,
  parts: readonly bigint[],
): bigint[] {
  const total = sum(remainings);
  return parts.map((part, i) => {
    const quotaNumerator = fill * remainings[i]!; // q_i * R
    const floorLot = (quotaNumerator / (lot * total)) * lot;
    const ceilLot = quotaNumerator % (lot * total) === 0n ? floorLot : floorLot + lot;
    assert.ok(
      floorLot <= part && part <= ceilLot,
      `account ${i}: part ${part} outside [${floorLot}, ${ceilLot}]`,
    );
    const deviation = part * total - quotaNumerator;
    assert.ok(abs(deviation) < lot * total, `account ${i}: |part - quota| >= lot`);
    return deviation;
  });
}

/**
 * Reference model written straight from the spec text, independently of the
 * implementation: rotate first, then stable-sort by remainder; cycle chunks
 * with no pass limit.
 */
function referenceParts(
  lot: bigint,
  fill: bigint,
  fillSeq: number,
  remainings: readonly bigint[],
): bigint[] {
  const n = remainings.length;
  const total = sum(remainings);
  if (fill === total) return [...remainings];
  const parts = remainings.map((r) => ((fill * r) / total / lot) * lot);
  const remainderNumerator = remainings.map((r, i) => fill * r - parts[i]! * total);
  const rotated = Array.from({ length: n }, (_, k) => (k + (fillSeq % n)) % n);
  const order = rotated.sort((a, b) => {
    const d = remainderNumerator[b]! - remainderNumerator[a]!;
    return d > 0n ? 1 : d < 0n ? -1 : 0;
  });
  let leftover = fill - sum(parts);
  while (leftover > 0n) {
    let progressed = false;
    for (const i of order) {
      const chunk = min(lot, leftover, remainings[i]! - parts[i]!);
      if (chunk > 0n) {
        parts[i] = parts[i]! + chunk;
        leftover -= chunk;
        progressed = true;
      }
    }
    assert.ok(progressed, 'reference model stuck');
  }
  return parts;
}

// ---------------------------------------------------------------- arbitraries

const specLot = fc.constantFrom(1n, 10n, 100n);
const anyLot = fc.constantFrom(1n, 2n, 7n, 10n, 100n, 1000n);

/** Arbitrary (not lot-aligned) remainings, mixing scales, at least one > 0. */
const anyRemainings = fc
  .array(
    fc.oneof(
      fc.bigInt({ min: 0n, max: 100n }),
      fc.bigInt({ min: 0n, max: 100_000n }),
      fc.bigInt({ min: 0n, max: 10n ** 15n }),
    ),
    { minLength: 1, maxLength: 60 },
  )
  .filter((rs) => sum(rs) > 0n);

/** A general single-fill case: any remainings, any lot, 0 < F <= R. */
const generalCase = fc
  .record({ lot: anyLot, remainings: anyRemainings, fillSeq: fc.integer({ min: 1, max: 2 ** 40 }) })
  .chain((c) =>
    fc
      .oneof(
        fc.bigInt({ min: 1n, max: sum(c.remainings) }),
        fc.constant(sum(c.remainings)),
        // A whole number of lots, when at least one lot remains.
        fc.bigInt({ min: 0n, max: sum(c.remainings) / c.lot }).map((k) => k * c.lot),
      )
      .filter((fill) => fill > 0n)
      .map((fill) => ({ ...c, fill })),
  );

type FillStep =
  | { kind: 'lots'; lots: bigint }
  | { kind: 'odd'; quantity: bigint }
  | { kind: 'fraction'; permille: bigint }
  | { kind: 'rest' }
  | { kind: 'overfill'; extra: bigint }
  | { kind: 'nonPositive'; quantity: bigint };

const fillStep: fc.Arbitrary<FillStep> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('lots'), lots: fc.bigInt(1n, 20n) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('odd'), quantity: fc.bigInt(1n, 250n) }) },
  {
    weight: 4,
    arbitrary: fc.record({ kind: fc.constant('fraction'), permille: fc.bigInt(1n, 1000n) }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('rest') }) },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant('overfill'), extra: fc.bigInt(1n, 500n) }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant('nonPositive'), quantity: fc.bigInt(-5n, 0n) }),
  },
);

function fillQuantity(step: FillStep, lot: bigint, remainingTotal: bigint): bigint {
  switch (step.kind) {
    case 'lots':
      return step.lots * lot;
    case 'odd':
      return step.quantity;
    case 'fraction': {
      const q = (remainingTotal * step.permille) / 1000n;
      return q > 0n ? q : 1n;
    }
    case 'rest':
      return remainingTotal;
    case 'overfill':
      return remainingTotal + step.extra;
    case 'nonPositive':
      return step.quantity;
  }
}

// ---------------------------------------------------------------- allocation properties

t.test('sequential fills: exact sums, never beyond target, complete = exactly target', (t) => {
  const order = fc.record({
    lot: specLot,
    targetLots: fc.array(fc.bigInt(0n, 50n), { minLength: 1, maxLength: 60 }),
    fills: fc.array(fillStep, { maxLength: 30 }),
    firstSeq: fc.integer({ min: 1, max: 1_000_000 }),
  });
  let accepted = 0;
  let overfills = 0;
  const prop = fc.property(order, ({ lot, targetLots, fills, firstSeq }) => {
    const targets = targetLots.map((k) => k * lot);
    const allocated = targets.map(() => 0n);
    const remainingsNow = () => targets.map((target, i) => target - allocated[i]!);
    let fillSeq = firstSeq;

    const apply = (fill: bigint): AllocateResult => {
      const remainings = remainingsNow();
      const total = sum(remainings);
      const accounts = accountsOf(remainings);
      const snapshot = structuredClone(accounts);
      const result = allocateFill({
        lotSize: lot,
        fillQuantity: fill,
        fillSeq: fillSeq++,
        accounts,
      });
      assert.deepEqual(accounts, snapshot, 'input must not be mutated');
      if (fill <= 0n) {
        assert.equal(result.ok ? 'ok' : result.reason, 'NON_POSITIVE_QUANTITY');
      } else if (total === 0n) {
        assert.equal(result.ok ? 'ok' : result.reason, 'NOTHING_REMAINING');
      } else if (fill > total) {
        assert.equal(result.ok ? 'ok' : result.reason, 'OVERFILL');
        overfills++;
      } else {
        const parts = partsOf(accounts, result);
        checkAccepted(remainings, fill, parts);
        checkQuotaBracket(lot, remainings, fill, parts);
        assert.deepEqual(parts, referenceParts(lot, fill, fillSeq - 1, remainings));
        parts.forEach((p, i) => (allocated[i] = allocated[i]! + p));
        accepted++;
      }
      // Rejections change nothing: state only moves in the accepted branch.
      allocated.forEach((a, i) => assert.ok(a <= targets[i]!, `account ${i} beyond target`));
      return result;
    };

    for (const step of fills) {
      if (sum(remainingsNow()) === 0n) break;
      apply(fillQuantity(step, lot, sum(remainingsNow())));
    }
    const rest = sum(remainingsNow());
    if (rest > 0n) {
      const before = remainingsNow();
      const parts = partsOf(accountsOf(before), apply(rest));
      assert.deepEqual(parts, before, 'the completing fill gives each account its remaining');
    } else {
      assert.equal(apply(1n).ok ? 'ok' : 'rejected', 'rejected', 'complete order takes no fill');
    }
    assert.deepEqual(allocated, targets, 'complete order: every account has exactly its target');
  });
  t.equal(counterexample(prop, 3000), undefined, 'holds for 3000 random orders');
  t.ok(accepted > 3000 && overfills > 100, `exercised ${accepted} fills, ${overfills} overfills`);
  t.end();
});

t.test('fairness, lot-aligned: part within one lot of the exact quota', (t) => {
  const aligned = fc
    .record({
      lot: specLot,
      targetLots: fc.array(fc.bigInt(0n, 500n), { minLength: 1, maxLength: 60 }),
      fillSeq: fc.integer({ min: 1, max: 2 ** 40 }),
    })
    .filter((c) => sum(c.targetLots) > 0n)
    .chain((c) =>
      fc.bigInt(1n, sum(c.targetLots)).map((fillLots) => ({
        lot: c.lot,
        fillSeq: c.fillSeq,
        remainings: c.targetLots.map((k) => k * c.lot),
        fill: fillLots * c.lot,
      })),
    );
  const prop = fc.property(aligned, ({ lot, remainings, fill, fillSeq }) => {
    const accounts = accountsOf(remainings);
    const parts = partsOf(
      accounts,
      allocateFill({ lotSize: lot, fillQuantity: fill, fillSeq, accounts }),
    );
    checkAccepted(remainings, fill, parts);
    const total = sum(remainings);
    const deviations = checkQuotaBracket(lot, remainings, fill, parts);
    deviations.forEach((d) => assert.ok(abs(d) < lot * total)); // |part*R - F*r_i| < lot*R
    // Aligned: every part is a whole number of lots, base or base + 1 lot.
    parts.forEach((p, i) => {
      const base = ((fill * remainings[i]!) / (lot * total)) * lot;
      assert.ok(p === base || p === base + lot, `account ${i}: ${p} not base ${base} (+lot)`);
    });
  });
  t.equal(counterexample(prop, 5000), undefined, 'holds for 5000 random fills');
  t.end();
});

t.test(
  'fairness, general (odd lots, unaligned remainings): floorLot(q) <= part <= ceilLot(q)',
  (t) => {
    const prop = fc.property(generalCase, ({ lot, remainings, fill, fillSeq }) => {
      const accounts = accountsOf(remainings);
      const parts = partsOf(
        accounts,
        allocateFill({ lotSize: lot, fillQuantity: fill, fillSeq, accounts }),
      );
      checkAccepted(remainings, fill, parts);
      checkQuotaBracket(lot, remainings, fill, parts);
    });
    t.equal(counterexample(prop, 5000), undefined, 'holds for 5000 random fills');
    t.end();
  },
);

t.test('fairness bound is tight: deviations reach (n-1)/n of a lot on both sides', (t) => {
  for (const [n, lot] of [
    [2, 10n],
    [7, 100n],
    [60, 100n],
  ] as const) {
    const remainings = Array.from({ length: n }, () => lot);
    const total = sum(remainings);
    const accounts = accountsOf(remainings);
    // One lot over n one-lot accounts: the winner is (n-1)/n lot above its quota.
    const up = checkQuotaBracket(
      lot,
      remainings,
      lot,
      partsOf(accounts, allocateFill({ lotSize: lot, fillQuantity: lot, fillSeq: 1, accounts })),
    );
    t.equal(
      up.reduce((a, b) => (b > a ? b : a)),
      lot * lot * BigInt(n - 1),
      `n=${n}: max over-quota is (n-1)/n lot (lot*R = ${lot * total})`,
    );
    // n-1 lots: the account left out is (n-1)/n lot below its quota.
    const fill = lot * BigInt(n - 1);
    const down = checkQuotaBracket(
      lot,
      remainings,
      fill,
      partsOf(accounts, allocateFill({ lotSize: lot, fillQuantity: fill, fillSeq: 1, accounts })),
    );
    t.equal(
      down.reduce((a, b) => (b < a ? b : a)),
      -lot * lot * BigInt(n - 1),
      `n=${n}: max under-quota is (n-1)/n lot`,
    );
  }
  t.end();
});

t.test('a fill that is not a whole number of lots yields exactly one odd-lot piece', (t) => {
  const cases = fc
    .record({
      lot: fc.constantFrom(10n, 100n),
      targetLots: fc.array(fc.bigInt(0n, 50n), { minLength: 1, maxLength: 60 }),
      fillSeq: fc.integer({ min: 1, max: 1_000_000 }),
    })
    .filter((c) => sum(c.targetLots) > 1n)
    .chain((c) => fc.bigInt(1n, sum(c.targetLots) * c.lot - 1n).map((fill) => ({ ...c, fill })))
    .filter((c) => c.fill % c.lot !== 0n);
  const prop = fc.property(cases, ({ lot, targetLots, fillSeq, fill }) => {
    const remainings = targetLots.map((k) => k * lot);
    const result = allocateFill({
      lotSize: lot,
      fillQuantity: fill,
      fillSeq,
      accounts: accountsOf(remainings),
    });
    assert.ok(result.ok);
    const odd = result.lines.filter((l) => l.quantity % lot !== 0n);
    assert.equal(odd.length, 1);
    assert.equal(odd[0]!.quantity % lot, fill % lot);
  });
  t.equal(counterexample(prop, 3000), undefined, 'holds for 3000 random fills');
  t.end();
});

t.test('matches the reference model of the spec', (t) => {
  const prop = fc.property(generalCase, ({ lot, remainings, fill, fillSeq }) => {
    const accounts = accountsOf(remainings);
    const parts = partsOf(
      accounts,
      allocateFill({ lotSize: lot, fillQuantity: fill, fillSeq, accounts }),
    );
    assert.deepEqual(parts, referenceParts(lot, fill, fillSeq, remainings));
  });
  t.equal(counterexample(prop, 5000), undefined, 'holds for 5000 random fills');
  t.end();
});

t.test('determinism: same input, same output; input untouched', (t) => {
  const prop = fc.property(generalCase, ({ lot, remainings, fill, fillSeq }) => {
    const accounts = accountsOf(remainings);
    const snapshot = structuredClone(accounts);
    const input = { lotSize: lot, fillQuantity: fill, fillSeq, accounts };
    const first = allocateFill(input);
    const second = allocateFill({ ...input, accounts: structuredClone(snapshot) });
    assert.deepEqual(second, first);
    assert.deepEqual(allocateFill(input), first);
    assert.deepEqual(accounts, snapshot);
  });
  t.equal(counterexample(prop, 3000), undefined, 'holds for 3000 random inputs');
  t.end();
});

t.test('rotation: n equal accounts, one lot, n consecutive fillSeq -> each wins once', (t) => {
  const cases = fc.record({
    n: fc.integer({ min: 1, max: 60 }),
    lot: specLot,
    lotsEach: fc.bigInt(1n, 5n),
    firstSeq: fc.integer({ min: 1, max: 2 ** 40 }),
  });
  const independent = fc.property(cases, ({ n, lot, lotsEach, firstSeq }) => {
    const accounts = accountsOf(Array.from({ length: n }, () => lotsEach * lot));
    const wins = new Map<string, number>();
    for (let seq = firstSeq; seq < firstSeq + n; seq++) {
      const result = allocateFill({ lotSize: lot, fillQuantity: lot, fillSeq: seq, accounts });
      assert.ok(result.ok);
      assert.deepEqual(result.lines, [{ accountId: `acct-${seq % n}`, quantity: lot }]);
      for (const l of result.lines) wins.set(l.accountId, (wins.get(l.accountId) ?? 0) + 1);
    }
    assert.equal(wins.size, n);
    for (const count of wins.values()) assert.equal(count, 1);
  });
  t.equal(counterexample(independent, 2000), undefined, 'same remainings each time');

  const sequential = fc.property(cases, ({ n, lot, lotsEach, firstSeq }) => {
    const remainings = Array.from({ length: n }, () => lotsEach * lot);
    for (let seq = firstSeq; seq < firstSeq + n; seq++) {
      const accounts = accountsOf(remainings);
      const parts = partsOf(
        accounts,
        allocateFill({ lotSize: lot, fillQuantity: lot, fillSeq: seq, accounts }),
      );
      parts.forEach((p, i) => (remainings[i] = remainings[i]! - p));
    }
    assert.deepEqual(
      remainings,
      Array.from({ length: n }, () => (lotsEach - 1n) * lot),
    );
  });
  t.equal(counterexample(sequential, 2000), undefined, 'fills applied one after another');
  t.end();
});

t.test('rejections and programmer errors', (t) => {
  const accounts = accountsOf([100n, 200n]);
  const call = (over: Partial<Parameters<typeof allocateFill>[0]>) =>
    allocateFill({ lotSize: 100n, fillQuantity: 100n, fillSeq: 1, accounts, ...over });

  t.match(call({ fillQuantity: 0n }), { ok: false, reason: 'NON_POSITIVE_QUANTITY' });
  t.match(call({ fillQuantity: -100n }), { ok: false, reason: 'NON_POSITIVE_QUANTITY' });
  t.match(call({ fillQuantity: 301n }), { ok: false, reason: 'OVERFILL' });
  t.match(call({ accounts: accountsOf([0n, 0n]) }), { ok: false, reason: 'NOTHING_REMAINING' });
  t.same(call({ fillQuantity: 300n }), {
    ok: true,
    lines: [
      { accountId: 'acct-0', quantity: 100n },
      { accountId: 'acct-1', quantity: 200n },
    ],
  });
  // Zero-quantity lines are omitted; accounts with nothing remaining get nothing.
  t.same(call({ accounts: accountsOf([0n, 300n, 0n]), fillQuantity: 150n }), {
    ok: true,
    lines: [{ accountId: 'acct-1', quantity: 150n }],
  });
  // Worked example: F=250 over 100/200 in lots of 100: quotas 83.3/166.7, bases 0/100,
  // leftover 150 -> acct-0 (remainder 83.3) gets a lot, then acct-1 (66.7) the odd 50.
  t.same(call({ fillQuantity: 250n }), {
    ok: true,
    lines: [
      { accountId: 'acct-0', quantity: 100n },
      { accountId: 'acct-1', quantity: 150n },
    ],
  });

  const invariantError = { name: 'InvariantError', code: 'INVARIANT' };
  t.throws(() => call({ accounts: [] }), invariantError, 'no accounts');
  t.throws(() => call({ lotSize: 0n }), invariantError, 'lot size 0');
  t.throws(() => call({ fillSeq: 0 }), invariantError, 'fillSeq 0');
  t.throws(() => call({ fillSeq: 1.5 }), invariantError, 'fillSeq not an integer');
  t.throws(() => call({ accounts: accountsOf([100n, -1n]) }), invariantError, 'negative remaining');
  t.throws(
    () =>
      call({
        accounts: [
          { accountId: 'x', remaining: 1n },
          { accountId: 'x', remaining: 2n },
        ],
      }),
    invariantError,
    'duplicate account',
  );
  t.end();
});

// ---------------------------------------------------------------- money

t.test('roundHalfEven', (t) => {
  const cases: [bigint, bigint, bigint][] = [
    [1n, 2n, 0n], // 0.5
    [3n, 2n, 2n], // 1.5
    [5n, 2n, 2n], // 2.5
    [7n, 2n, 4n], // 3.5
    [-1n, 2n, 0n], // -0.5
    [-3n, 2n, -2n], // -1.5
    [-5n, 2n, -2n], // -2.5
    [-7n, 2n, -4n], // -3.5
    [1n, 3n, 0n],
    [2n, 3n, 1n],
    [-1n, 3n, 0n],
    [-2n, 3n, -1n],
    [26n, 10n, 3n],
    [-26n, 10n, -3n],
    [24n, 10n, 2n],
    [-24n, 10n, -2n],
    [0n, 7n, 0n],
    [10n, 5n, 2n],
    [-10n, 5n, -2n],
  ];
  for (const [num, den, want] of cases) t.equal(roundHalfEven(num, den), want, `${num}/${den}`);
  t.throws(() => roundHalfEven(1n, 0n), { name: 'InvariantError' });
  t.throws(() => roundHalfEven(1n, -2n), { name: 'InvariantError' });

  const prop = fc.property(
    fc.bigInt({ min: -(10n ** 30n), max: 10n ** 30n }),
    fc.bigInt({ min: 1n, max: 10n ** 12n }),
    (num, den) => {
      const r = roundHalfEven(num, den);
      const error2 = abs(2n * (num - r * den)); // twice the rounding error, times den
      assert.ok(error2 <= den, 'nearest integer');
      if (error2 === den) assert.equal(r % 2n, 0n, 'ties go to even');
      assert.equal(roundHalfEven(-num, den), -r, 'symmetric around zero');
    },
  );
  t.equal(counterexample(prop, 5000), undefined, 'nearest, ties to even, symmetric');
  t.end();
});

t.test('notionalMinor', (t) => {
  t.equal(PRICE_DECIMALS, 6);
  t.equal(CASH_DECIMALS, 2);
  t.equal(PRICE_SCALE, 1_000_000n);
  t.equal(notionalMinor(1n, 123_456_789n), 12346n, '123.456789 -> 123.46');
  t.equal(notionalMinor(100n, 10_000_000n), 100_000n, '100 @ 10.00 = 1000.00');
  t.equal(notionalMinor(1n, 5000n), 0n, '0.5 cent -> 0');
  t.equal(notionalMinor(3n, 5000n), 2n, '1.5 cents -> 2');
  t.equal(notionalMinor(5n, 5000n), 2n, '2.5 cents -> 2');
  t.equal(notionalMinor(7n, 5000n), 4n, '3.5 cents -> 4');
  t.equal(notionalMinor(100n, 1_000_050n), 10_000n, '10000.5 cents -> 10000');
  t.equal(notionalMinor(300n, 1_000_050n), 30_002n, '30001.5 cents -> 30002');
  t.equal(notionalMinor(0n, 123_456_789n), 0n);

  // The documented rule: line notionals sum to the fill notional within half a
  // cent per line.
  const prop = fc.property(
    fc.array(fc.bigInt(1n, 1_000_000n), { minLength: 1, maxLength: 60 }),
    fc.bigInt(1n, 10_000n * PRICE_SCALE),
    (lines, price) => {
      const diff =
        sum(lines.map((q) => notionalMinor(q, price))) - notionalMinor(sum(lines), price);
      assert.ok(2n * abs(diff) <= BigInt(lines.length), `diff ${diff} over ${lines.length} lines`);
    },
  );
  t.equal(counterexample(prop, 3000), undefined, 'within half a cent per line');
  t.end();
});

t.test('cashDelta', (t) => {
  t.equal(cashDelta('BUY', 100n, 10_000_000n), -100_000n, 'buy pays');
  t.equal(cashDelta('SELL', 100n, 10_000_000n), 100_000n, 'sell receives');
  t.equal(cashDelta('BUY', 3n, 5000n), -2n, 'buy rounds half-even too');
  t.equal(cashDelta('SELL', 5n, 5000n), 2n);
  t.equal(cashDelta('BUY', 0n, 10_000_000n), 0n);
  t.throws(() => cashDelta('BUY', -1n, 1n), { name: 'InvariantError' });
  t.throws(() => cashDelta('HOLD' as 'BUY', 1n, 1n), { name: 'InvariantError' });
  t.end();
});

t.test('vwap', (t) => {
  t.equal(vwap(0n, 0n), null, 'nothing traded');
  // 100 @ 10.000000 + 300 @ 10.500000 -> 10.375000
  t.equal(vwap(100n * 10_000_000n + 300n * 10_500_000n, 400n), 10_375_000n);
  t.equal(vwap(5n, 2n), 2n, '2.5 -> 2');
  t.equal(vwap(7n, 2n), 4n, '3.5 -> 4');
  t.equal(vwap(2n, 3n), 1n, '0.67 -> 1');
  t.throws(() => vwap(1n, -1n), { name: 'InvariantError' });
  t.end();
});

t.test('formatPrice / formatDecimal', (t) => {
  t.equal(formatPrice(123_456_789n), '123.456789');
  t.equal(formatPrice(100_000_000n), '100.000000');
  t.equal(formatPrice(0n), '0.000000');
  t.equal(formatPrice(1n), '0.000001');
  t.equal(formatPrice(-1n), '-0.000001');
  t.equal(formatPrice(-123_456_789n), '-123.456789');
  t.equal(formatDecimal(1234n, 2), '12.34');
  t.equal(formatDecimal(-5n, 2), '-0.05');
  t.equal(formatDecimal(42n, 0), '42');
  const prop = fc.property(fc.bigInt({ min: INT64_MIN, max: INT64_MAX }), (price) => {
    assert.equal(parseDecimal('price', formatPrice(price), PRICE_DECIMALS), price);
  });
  t.equal(counterexample(prop, 3000), undefined, 'parseDecimal(formatPrice(x)) === x');
  t.end();
});

t.test('parseDecimal', (t) => {
  t.equal(parseDecimal('price', '123.456789', 6), 123_456_789n);
  t.equal(parseDecimal('price', '1.5', 6), 1_500_000n);
  t.equal(parseDecimal('price', '0', 6), 0n);
  t.equal(parseDecimal('price', '0.000001', 6), 1n);
  t.equal(parseDecimal('cash', '-2.25', 2), -225n);
  t.equal(parseDecimal('cash', '007.10', 2), 710n);
  t.equal(parseDecimal('qty', '5', 0), 5n);

  const rejected: [string, number][] = [
    ['', 6],
    [' 1', 6],
    ['1 ', 6],
    ['+1', 6],
    ['-', 6],
    ['--1', 6],
    ['1e3', 6],
    ['.5', 6],
    ['5.', 6],
    ['1.2.3', 6],
    ['1,5', 6],
    ['1_000', 6],
    ['0x10', 6],
    ['NaN', 6],
    ['Infinity', 6],
    ['\u0661', 6], // ARABIC-INDIC DIGIT ONE
    ['1.2345678', 6], // 7 fraction digits
    ['1.230', 2], // no silent truncation, even of zeros
    ['1.5', 0],
    ['1.0', 0],
  ];
  for (const [text, decimals] of rejected) {
    t.throws(
      () => parseDecimal('limitPrice', text, decimals),
      { name: 'ValidationError', code: 'VALIDATION', field: 'limitPrice' },
      `rejects ${JSON.stringify(text)} with ${decimals} decimals`,
    );
  }
  t.throws(() => parseDecimal('limitPrice', 1.5 as unknown as string, 6), {
    name: 'ValidationError',
    field: 'limitPrice',
  });
  t.end();
});

t.test('assertInt64', (t) => {
  t.equal(INT64_MAX, 9_223_372_036_854_775_807n);
  t.equal(INT64_MIN, -9_223_372_036_854_775_808n);
  t.doesNotThrow(() => assertInt64('quantity', INT64_MAX));
  t.doesNotThrow(() => assertInt64('quantity', INT64_MIN));
  t.doesNotThrow(() => assertInt64('quantity', 0n));
  t.throws(() => assertInt64('quantity', INT64_MAX + 1n), {
    name: 'ValidationError',
    field: 'quantity',
  });
  t.throws(() => assertInt64('cash', INT64_MIN - 1n), { name: 'ValidationError', field: 'cash' });
  t.end();
});

// ------------------------------------------------ the fast path is the rule itself

/**
 * The rule as first written: every account's quota, one full sort by
 * (fractional part desc, rotation), chunks handed out in that order. The
 * allocator now selects the first few candidates instead of sorting them all
 * and keeps parts sparse; on any input it must give exactly these parts.
 */
function fullSortParts(lot: bigint, fill: bigint, fillSeq: number, remainings: bigint[]): bigint[] {
  const n = remainings.length;
  const total = remainings.reduce((s, r) => s + r, 0n);
  if (fill === total) return [...remainings];
  const lotTimesTotal = lot * total;
  const parts = remainings.map((r) => ((fill * r) / lotTimesTotal) * lot);
  const frac = remainings.map((r) => (fill * r) % lotTimesTotal);
  let leftover = fill - parts.reduce((s, p) => s + p, 0n);
  const rotation = fillSeq % n;
  const tieKey = (i: number) => (i - rotation + n) % n;
  const order = [...Array(n).keys()].filter((i) => remainings[i]! > parts[i]!);
  order.sort((a, b) =>
    frac[a] !== frac[b] ? (frac[a]! > frac[b]! ? -1 : 1) : tieKey(a) - tieKey(b),
  );
  for (let pass = 0; leftover > 0n && pass < 2; pass++)
    for (const i of order) {
      if (leftover === 0n) break;
      let chunk = lot < leftover ? lot : leftover;
      const capacity = remainings[i]! - parts[i]!;
      if (capacity < chunk) chunk = capacity;
      parts[i] = parts[i]! + chunk;
      leftover -= chunk;
    }
  return parts;
}

t.test('the allocator gives exactly the reference rule, small orders and large ones', async (t) => {
  const input = fc
    .record({
      lot: anyLot,
      n: fc.oneof(fc.integer({ min: 1, max: 12 }), fc.integer({ min: 60, max: 400 })),
      seed: fc.integer({ min: 0, max: 2 ** 31 - 1 }),
      fillSeq: fc.integer({ min: 1, max: 10_000 }),
      // Odd-lot remainings and big fills too: they exercise the fallback to the full sort.
      oddLots: fc.boolean(),
      fillShareBps: fc.integer({ min: 1, max: 10_000 }),
    })
    .map(({ lot, n, seed, fillSeq, oddLots, fillShareBps }) => {
      let x = seed;
      const next = () => (x = (Math.imul(x, 1103515245) + 12345) >>> 0);
      const remainings: bigint[] = Array.from({ length: n }, () =>
        oddLots ? BigInt(next() % 1_000) : BigInt(next() % 20) * lot,
      );
      if (remainings.every((r) => r <= 0n)) remainings[0] = lot;
      const total = remainings.reduce((s, r) => s + r, 0n);
      const fill = (total * BigInt(fillShareBps)) / 10_000n || 1n;
      return { lot, fillSeq, remainings, fill };
    });
  const failure = counterexample(
    fc.property(input, ({ lot, fillSeq, remainings, fill }) => {
      const accounts = accountsOf(remainings);
      const result = allocateFill({ lotSize: lot, fillQuantity: fill, fillSeq, accounts });
      assert.ok(result.ok);
      assert.deepEqual(partsOf(accounts, result), fullSortParts(lot, fill, fillSeq, remainings));
    }),
    120,
  );
  t.equal(failure, undefined, failure ?? 'holds');
});
