/**
 * Account side of busts and corrections, in given-events / when-command /
 * then-events form: an amendment line says what the account had of a fill
 * (`amends`) and what it has now; the account applies the difference.
 */
import t, { type Test } from 'tap';
import {
  AllocationRejection,
  ApplyOutcome,
  decide,
  evolve,
  initialState,
  packForJournal,
  suspenseKey,
  type AccountCommand,
  type AccountDef,
  type AccountEvent,
  type AccountState,
  type Allocation,
  type Decision,
} from '../actors/account/decider.ts';
import { cashDelta, notionalMinor } from '../actors/domain/money.ts';
import { expectInvariant } from './helpers/asserts.ts';

// ---------------------------------------------------------------- helpers

const replay = (history: readonly AccountEvent[]): AccountState =>
  history.reduce(evolve, initialState());

type OpenAccount = Extract<AccountState, { status: 'Open' }>;

function openOf(t: Test, state: AccountState): OpenAccount {
  if (state.status !== 'Open') {
    t.fail(`expected an open account, got ${state.status}`);
    throw new Error('not open');
  }
  return state;
}

interface Then {
  decision: Decision;
  state: AccountState;
}

/** given(t, history).when(command).then(outcome, events) / .thenNothing(outcome) / .thenThrows(message) */
function given(t: Test, history: readonly AccountEvent[]) {
  const state = replay(history);
  return {
    when(command: AccountCommand) {
      const run = (): Decision => decide(command, state);
      return {
        then(outcome: ApplyOutcome, expected: readonly AccountEvent[]): Then {
          const decision = run();
          t.equal(decision.outcome, outcome, 'outcome');
          t.strictSame(decision.events, expected, 'events');
          return { decision, state: decision.events.reduce(evolve, state) };
        },
        /** A decision that persists nothing: the state is untouched. */
        thenNothing(outcome: ApplyOutcome): Then {
          const decision = run();
          t.equal(decision.outcome, outcome, 'outcome');
          t.strictSame(decision.events, [], 'no events');
          return { decision, state };
        },
        thenThrows(message: RegExp): void {
          expectInvariant(t, run, message);
        },
      };
    },
  };
}

/** The events of deciding `commands` one after another from `history` (each must persist something). */
function run(history: readonly AccountEvent[], ...commands: AccountCommand[]): AccountEvent[] {
  const events: AccountEvent[] = [];
  let state = replay(history);
  for (const command of commands) {
    const d = decide(command, state);
    if (d.events.length === 0) throw new Error(`${command.type}: ${d.outcome}, nothing persisted`);
    events.push(...d.events);
    state = d.events.reduce(evolve, state);
  }
  return events;
}

// ---------------------------------------------------------------- fixtures

const NOW = 1_700_000_000_000;
const AT = NOW + 3;

const def: AccountDef = {
  accountId: 'A1',
  cashMinor: 100_000_000n, // 1,000,000.00
  positions: { 'SEC-1': 500n },
};
const opened: AccountEvent = { type: 'AccountOpened', def, atMs: NOW };

const line = (over: Partial<Allocation> = {}): Allocation => ({
  blockOrderId: 'BO-1',
  fillSeq: 1,
  prevSeq: 0,
  securityId: 'SEC-1',
  side: 'BUY',
  quantity: 150n,
  price: 101_123_457n, // 101.123457: 150 of it is 15168.51855 -> 1516852 cents
  ...over,
});

/** The amendment at `fillSeq` of `of` (a line applied earlier): now `quantity` at `price`. */
const amendOf = (
  of: Allocation,
  fillSeq: number,
  prevSeq: number,
  quantity: bigint,
  price = of.price,
): Allocation => ({
  ...of,
  fillSeq,
  prevSeq,
  quantity,
  price,
  amends: { seq: of.fillSeq, quantity: of.quantity, price: of.price },
});

const apply = (allocation: Allocation): AccountCommand => ({
  type: 'Apply',
  allocation,
  nowMs: AT,
});

const applied = (allocation: Allocation, cashDeltaMinor: bigint): AccountEvent => ({
  type: 'AllocationApplied',
  allocation,
  cashDeltaMinor,
  atMs: AT,
});

const amended = (
  allocation: Allocation,
  cashDeltaMinor: bigint,
  over: { suspended?: boolean; negativePosition?: boolean } = {},
): AccountEvent => ({
  type: 'AllocationAmended',
  allocation,
  cashDeltaMinor,
  suspended: over.suspended ?? false,
  negativePosition: over.negativePosition ?? false,
  atMs: AT,
});

const retry = (blockOrderId: string, fillSeq: number): AccountCommand => ({
  type: 'RetrySuspense',
  blockOrderId,
  fillSeq,
  nowMs: AT,
});

// ---------------------------------------------------------------- bust

t.test('a bust of a BUY line gives back exactly the shares and the cash', async (t) => {
  const buy = line();
  const history = [opened, applied(buy, -1_516_852n)];
  t.equal(openOf(t, replay(history)).cashMinor, 100_000_000n - 1_516_852n, 'the fill took it');
  const b = amendOf(buy, 2, 1, 0n);
  const { state } = given(t, history)
    .when(apply(b))
    .then(ApplyOutcome.Applied, [amended(b, 1_516_852n)]);
  const s = openOf(t, state);
  t.equal(s.cashMinor, def.cashMinor, 'cash back to the cent');
  t.strictSame(s.positions, def.positions, 'shares back');
  t.strictSame(s.lastSeqByOrder, { 'BO-1': 2 });
  t.equal(s.negativePositionFlags, 0);
  t.equal(s.rejected, 0);
});

t.test('a bust restores the cash exactly whatever the rounding of the line', async (t) => {
  // Odd 6-decimal prices: ties to the even cent both ways, sub-cent lines, big lines.
  const cases: Array<[quantity: bigint, price: bigint]> = [
    [1n, 12_345_000n], // 1234.5 cents -> 1234
    [1n, 12_355_000n], // 1235.5 cents -> 1236
    [3n, 5_000n], // 1.5 cents -> 2
    [1n, 5_000n], // 0.5 cents -> 0: the fill took nothing, the bust gives nothing
    [3n, 1n], // 0.0003 cents -> 0
    [7n, 33_333_333n], // 233.333331 -> 23333.3331 cents -> 23333
    [999n, 123_456_789n], // 123333.332211 -> 12333333.2211 cents
    [12_345n, 999_999n], // 12344.987655 -> 1234498.7655 cents
    [1_000_001n, 1_000_005n], // 1000006.000005 -> 100000600.0005 cents
  ];
  for (const side of ['BUY', 'SELL'] as const) {
    for (const [quantity, price] of cases) {
      const label = `${side} ${quantity} @ ${price}`;
      const opening = { ...def, positions: { 'SEC-1': 2_000_000n } };
      const fillLine = line({ side, quantity, price });
      const took = cashDelta(side, quantity, price);
      const history: AccountEvent[] = [
        { type: 'AccountOpened', def: opening, atMs: NOW },
        applied(fillLine, took),
      ];
      const b = amendOf(fillLine, 2, 1, 0n);
      const decision = decide(apply(b), replay(history));
      t.strictSame(decision.events, [amended(b, -took)], `${label}: gives back what it took`);
      const s = openOf(t, decision.events.reduce(evolve, replay(history)));
      t.equal(s.cashMinor, opening.cashMinor, `${label}: cash`);
      t.strictSame(s.positions, opening.positions, `${label}: position`);
    }
  }
});

t.test('a bust after other fills gives back that line only', async (t) => {
  const buy1 = line();
  const buy2 = line({ fillSeq: 2, prevSeq: 1, quantity: 7n, price: 33_333_333n });
  const history = [opened, applied(buy1, -1_516_852n), applied(buy2, -23_333n)];
  const b = amendOf(buy1, 3, 2, 0n);
  const { state } = given(t, history)
    .when(apply(b))
    .then(ApplyOutcome.Applied, [amended(b, 1_516_852n)]);
  const s = openOf(t, state);
  t.equal(s.cashMinor, def.cashMinor - 23_333n);
  t.strictSame(s.positions, { 'SEC-1': 507n });
});

t.test('a bust of a SELL line takes back the cash and returns the shares', async (t) => {
  // 200 x 50.000050 = 10000.01 -> 1000001 cents received.
  const sell = line({ side: 'SELL', quantity: 200n, price: 50_000_050n });
  const history = [opened, applied(sell, 1_000_001n)];
  t.strictSame(openOf(t, replay(history)).positions, { 'SEC-1': 300n });
  const b = amendOf(sell, 2, 1, 0n);
  const { state } = given(t, history)
    .when(apply(b))
    .then(ApplyOutcome.Applied, [amended(b, -1_000_001n)]);
  const s = openOf(t, state);
  t.equal(s.cashMinor, def.cashMinor);
  t.strictSame(s.positions, { 'SEC-1': 500n });
});

// ---------------------------------------------------------------- correction

t.test('a price-only correction moves cash by the difference of the rounded lines', async (t) => {
  // 1 @ 12.345000 pays 1234 cents (tie to even); 1 @ 12.355000 pays 1236 (tie to even).
  // The difference of the rounded lines is 2 cents; 1 x 0.01 rounded alone would be 1.
  const buy = line({ quantity: 1n, price: 12_345_000n });
  const history = [opened, applied(buy, -1_234n)];
  const k = amendOf(buy, 2, 1, 1n, 12_355_000n);
  t.equal(notionalMinor(1n, 12_355_000n - 12_345_000n), 1n, 'what a rounded difference would give');
  const { state } = given(t, history)
    .when(apply(k))
    .then(ApplyOutcome.Applied, [amended(k, -2n)]);
  const s = openOf(t, state);
  t.equal(s.cashMinor, def.cashMinor - 1_236n, 'as if the fill had arrived at the new price');
  t.strictSame(s.positions, { 'SEC-1': 501n }, 'the position does not move');
  // The same on a SELL: the account receives 2 cents more.
  const sell = line({ side: 'SELL', quantity: 1n, price: 12_345_000n });
  const ks = amendOf(sell, 2, 1, 1n, 12_355_000n);
  const after = given(t, [opened, applied(sell, 1_234n)])
    .when(apply(ks))
    .then(ApplyOutcome.Applied, [amended(ks, 2n)]).state;
  t.equal(openOf(t, after).cashMinor, def.cashMinor + 1_236n);
  // A lower price gives cash back to a buyer.
  const kd = amendOf(line(), 2, 1, 150n, 101_000_000n); // 150 x 101 = 15150.00
  given(t, [opened, applied(line(), -1_516_852n)])
    .when(apply(kd))
    .then(ApplyOutcome.Applied, [amended(kd, 1_516_852n - 1_515_000n)]);
});

t.test('a quantity correction moves shares and cash by the difference', async (t) => {
  const buy = line();
  const k = amendOf(buy, 2, 1, 100n, 101_123_400n); // 100 x 101.1234 = 10112.34
  const { state } = given(t, [opened, applied(buy, -1_516_852n)])
    .when(apply(k))
    .then(ApplyOutcome.Applied, [amended(k, 1_516_852n - 1_011_234n)]);
  const s = openOf(t, state);
  t.equal(s.cashMinor, def.cashMinor - 1_011_234n);
  t.strictSame(s.positions, { 'SEC-1': 600n });
  // A line the account did not have before (a correction gave it a share): 0 -> 30.
  const fresh: Allocation = {
    ...line({ fillSeq: 3, prevSeq: 1, quantity: 30n, price: 2_000_000n }),
    amends: { seq: 2, quantity: 0n, price: 2_000_000n },
  };
  const s2 = given(t, [opened, applied(buy, -1_516_852n)])
    .when(apply(fresh))
    .then(ApplyOutcome.Applied, [amended(fresh, -6_000n)]).state;
  t.strictSame(openOf(t, s2).positions, { 'SEC-1': 680n });
});

// ---------------------------------------------------------------- idempotency

t.test('a redelivered amendment line is a DUPLICATE; nothing is persisted', async (t) => {
  const buy = line();
  const b = amendOf(buy, 2, 1, 0n);
  const history = [opened, applied(buy, -1_516_852n), amended(b, 1_516_852n)];
  const { state } = given(t, history).when(apply(b)).thenNothing(ApplyOutcome.Duplicate);
  t.equal(openOf(t, state).cashMinor, def.cashMinor, 'not given back twice');
  // The original fill line redelivered after its bust: a duplicate too.
  given(t, history).when(apply(buy)).thenNothing(ApplyOutcome.Duplicate);
  // A correction redelivered.
  const k = amendOf(buy, 2, 1, 100n);
  given(t, [opened, applied(buy, -1_516_852n), amended(k, 1_516_852n - 1_011_235n)])
    .when(apply(k))
    .thenNothing(ApplyOutcome.Duplicate);
});

t.test('an amendment line whose prevSeq is not the last applied is a GAP', async (t) => {
  const buy = line();
  const history = [opened, applied(buy, -1_516_852n)];
  // A line at seq 2 for this account was lost: the amendment at 3 says prevSeq 2.
  given(t, history)
    .when(apply(amendOf(buy, 3, 2, 0n)))
    .thenNothing(ApplyOutcome.Gap);
  given(t, [opened])
    .when(apply(amendOf(buy, 2, 1, 0n)))
    .thenNothing(ApplyOutcome.Gap);
  // A gap is checked before anything else: a bust that would go negative is not applied.
  given(t, [opened])
    .when(apply(amendOf(line({ quantity: 10_000n }), 2, 1, 0n)))
    .thenNothing(ApplyOutcome.Gap);
});

t.test('malformed amendment lines are invariant failures', async (t) => {
  const buy = line();
  const history = [opened, applied(buy, -1_516_852n)];
  given(t, history)
    .when(
      apply({ ...amendOf(buy, 2, 1, 0n), amends: { seq: 2, quantity: 150n, price: buy.price } }),
    )
    .thenThrows(/amends seq 2 is not before 2/);
  given(t, history)
    .when(apply(amendOf(buy, 2, 1, -1n)))
    .thenThrows(/amendment quantities are >= 0/);
  // evolve checks the cash and the flag against its own arithmetic.
  const b = amendOf(buy, 2, 1, 0n);
  expectInvariant(
    t,
    () => replay([...history, amended(b, 1_516_851n)]),
    /cash delta does not match/,
  );
  expectInvariant(
    t,
    () => replay([...history, amended(b, 1_516_852n, { negativePosition: true })]),
    /negative position flag does not match/,
  );
  expectInvariant(
    t,
    () => replay([...history, amended(b, 0n, { suspended: true })]),
    /suspense does not match the event/,
  );
  expectInvariant(
    t,
    () =>
      replay([
        ...history,
        {
          type: 'AllocationAmended',
          allocation: { ...b, amends: undefined },
          cashDeltaMinor: 0n,
          suspended: false,
          negativePosition: false,
          atMs: AT,
        },
      ]),
    /amends nothing/,
  );
});

// ---------------------------------------------------------------- suspense

// A SELL of 600 refused at seq 1 (the account holds 500): it sits in suspense.
const refusedSell = line({ side: 'SELL', quantity: 600n, price: 2_000_000n });
const refused: AccountEvent = {
  type: 'AllocationRejected',
  allocation: refusedSell,
  reason: AllocationRejection.InsufficientPosition,
  detail: 'sell of 600 exceeds position 500 in SEC-1',
  atMs: NOW + 1,
};

t.test('a correction of a suspended line moves it to the new seq; the books stay', async (t) => {
  const k = amendOf(refusedSell, 2, 1, 550n, 2_100_000n);
  const { state } = given(t, [opened, refused])
    .when(apply(k))
    .then(ApplyOutcome.Applied, [amended(k, 0n, { suspended: true })]);
  const s = openOf(t, state);
  t.equal(s.cashMinor, def.cashMinor, 'cash untouched');
  t.strictSame(s.positions, def.positions, 'position untouched');
  t.strictSame(s.lastSeqByOrder, { 'BO-1': 2 });
  t.equal(s.rejected, 1);
  t.equal(s.negativePositionFlags, 0);
  const { amends: _, ...moved } = k;
  t.strictSame(s.suspense, {
    [suspenseKey('BO-1', 2)]: {
      allocation: moved,
      reason: 'INSUFFICIENT_POSITION',
      // The refusal's words stay, and say the line was amended since.
      detail:
        'amended by the market at seq 2 to 550; refused: sell of 600 exceeds position 500 in SEC-1',
    },
  });
  const history = [opened, refused, amended(k, 0n, { suspended: true })];
  // The old seq is out of suspense; the account still cannot sell 550.
  given(t, history).when(retry('BO-1', 1)).thenNothing(ApplyOutcome.NotInSuspense);
  given(t, history).when(retry('BO-1', 2)).thenNothing(ApplyOutcome.StillRefused);
  // Once shares arrive (100 bought on another order), the amended line applies: 550 at 2.10.
  const buy = line({ blockOrderId: 'BO-2', quantity: 100n, price: 1_000_000n });
  const withShares = [...history, applied(buy, -10_000n)];
  const after = given(t, withShares)
    .when(retry('BO-1', 2))
    .then(ApplyOutcome.Applied, [
      { type: 'SuspenseApplied', allocation: moved, cashDeltaMinor: 115_500n, atMs: AT },
    ]).state;
  const a = openOf(t, after);
  t.strictSame(a.suspense, {});
  t.strictSame(a.positions, { 'SEC-1': 50n });
  t.equal(
    a.cashMinor,
    def.cashMinor - 10_000n + 115_500n,
    'the corrected line, not the refused one',
  );
});

t.test('a correction down to what the account can take still waits for a retry', async (t) => {
  // Suspense is resolved by RetrySuspense only: the amendment moves the entry, never applies it.
  const k = amendOf(refusedSell, 2, 1, 400n);
  const history = [opened, refused, ...run([opened, refused], apply(k))];
  t.strictSame(history.at(-1), amended(k, 0n, { suspended: true }));
  const { amends: _, ...moved } = k;
  given(t, history)
    .when(retry('BO-1', 2))
    .then(ApplyOutcome.Applied, [
      { type: 'SuspenseApplied', allocation: moved, cashDeltaMinor: 80_000n, atMs: AT },
    ]);
});

t.test('a bust of a suspended line takes it out of suspense; the books stay', async (t) => {
  const b = amendOf(refusedSell, 2, 1, 0n);
  const { state } = given(t, [opened, refused])
    .when(apply(b))
    .then(ApplyOutcome.Applied, [amended(b, 0n, { suspended: true })]);
  const s = openOf(t, state);
  t.strictSame(s.suspense, {});
  t.equal(s.cashMinor, def.cashMinor);
  t.strictSame(s.positions, def.positions);
  t.strictSame(s.lastSeqByOrder, { 'BO-1': 2 });
  const history = [opened, refused, amended(b, 0n, { suspended: true })];
  given(t, history).when(retry('BO-1', 1)).thenNothing(ApplyOutcome.NotInSuspense);
  given(t, history).when(retry('BO-1', 2)).thenNothing(ApplyOutcome.NotInSuspense);
});

t.test('a correction then a bust of a suspended line follow the entry', async (t) => {
  const k = amendOf(refusedSell, 2, 1, 550n);
  const b = amendOf(k, 3, 2, 0n); // amends seq 2, where the entry now sits
  const history = [opened, refused, ...run([opened, refused], apply(k))];
  const { state } = given(t, history)
    .when(apply(b))
    .then(ApplyOutcome.Applied, [amended(b, 0n, { suspended: true })]);
  t.strictSame(openOf(t, state).suspense, {});
  t.strictSame(openOf(t, state).positions, def.positions);
});

t.test('the suspended line is found by the seq amended, not by the chain', async (t) => {
  // Seq 1: a SELL of 600 refused (suspense BO-1#1); seq 2: a SELL of 100 applied.
  const sell2 = line({ side: 'SELL', fillSeq: 2, prevSeq: 1, quantity: 100n, price: 1_000_000n });
  const history = [opened, refused, applied(sell2, 10_000n)];
  // A bust of seq 1 at seq 3 chains on 2 but amends 1: the suspended line.
  const b1 = amendOf(refusedSell, 3, 2, 0n);
  const s1 = given(t, history)
    .when(apply(b1))
    .then(ApplyOutcome.Applied, [amended(b1, 0n, { suspended: true })]).state;
  t.strictSame(openOf(t, s1).suspense, {});
  t.strictSame(openOf(t, s1).positions, { 'SEC-1': 400n });
  // A bust of seq 2 at seq 3 amends the applied line: the books move, the suspense stays.
  const b2 = amendOf(sell2, 3, 2, 0n);
  const s2 = given(t, history)
    .when(apply(b2))
    .then(ApplyOutcome.Applied, [amended(b2, -10_000n)]).state;
  t.strictSame(openOf(t, s2).positions, { 'SEC-1': 500n });
  t.strictSame(Object.keys(openOf(t, s2).suspense), [suspenseKey('BO-1', 1)]);
});

t.test('an amendment of a line retried out of suspense moves the books', async (t) => {
  const buy = line({ blockOrderId: 'BO-2', quantity: 100n, price: 1_000_000n });
  const history = [
    opened,
    refused,
    applied(buy, -10_000n),
    ...run([opened, refused, applied(buy, -10_000n)], retry('BO-1', 1)),
  ];
  t.strictSame(openOf(t, replay(history)).positions, { 'SEC-1': 0n });
  const b = amendOf(refusedSell, 2, 1, 0n);
  const { state } = given(t, history)
    .when(apply(b))
    .then(ApplyOutcome.Applied, [amended(b, -120_000n)]);
  const s = openOf(t, state);
  t.strictSame(s.positions, { 'SEC-1': 600n });
  t.equal(s.cashMinor, def.cashMinor - 10_000n);
});

// ---------------------------------------------------------------- negative position

t.test('a bust that takes the position below zero is applied and flagged', async (t) => {
  const buy = line({ quantity: 100n, price: 3_000_000n }); // pays 300.00
  const sell = line({ blockOrderId: 'BO-2', side: 'SELL', quantity: 600n, price: 3_100_000n });
  const history = [opened, applied(buy, -30_000n), applied(sell, 186_000n)];
  t.strictSame(openOf(t, replay(history)).positions, { 'SEC-1': 0n }, 'the shares were sold');
  const b = amendOf(buy, 2, 1, 0n);
  const { state } = given(t, history)
    .when(apply(b))
    .then(ApplyOutcome.Applied, [amended(b, 30_000n, { negativePosition: true })]);
  const s = openOf(t, state);
  t.strictSame(s.positions, { 'SEC-1': -100n });
  t.equal(s.negativePositionFlags, 1);
  t.equal(s.cashMinor, def.cashMinor + 186_000n, 'the buy money comes back all the same');
  // A later amendment that stays negative is flagged again; one that is back at zero is not.
  const buy3 = line({ fillSeq: 3, prevSeq: 2, quantity: 40n, price: 1_000_000n });
  const after = [
    ...history,
    amended(b, 30_000n, { negativePosition: true }),
    applied(buy3, -4_000n),
  ];
  t.strictSame(openOf(t, replay(after)).positions, { 'SEC-1': -60n });
  const k = amendOf(buy3, 4, 3, 10n);
  const s2 = given(t, after)
    .when(apply(k))
    .then(ApplyOutcome.Applied, [amended(k, 3_000n, { negativePosition: true })]).state;
  t.equal(openOf(t, s2).negativePositionFlags, 2);
  const up = amendOf(buy3, 4, 3, 100n);
  const s3 = given(t, after)
    .when(apply(up))
    .then(ApplyOutcome.Applied, [amended(up, -6_000n)]).state;
  t.strictSame(openOf(t, s3).positions, { 'SEC-1': 0n });
  t.equal(openOf(t, s3).negativePositionFlags, 1);
});

t.test('a correction up of a SELL beyond the position is applied and flagged', async (t) => {
  const sell = line({ side: 'SELL', quantity: 500n, price: 1_000_000n });
  const k = amendOf(sell, 2, 1, 520n);
  given(t, [opened, applied(sell, 50_000n)])
    .when(apply(k))
    .then(ApplyOutcome.Applied, [amended(k, 2_000n, { negativePosition: true })]);
});

// ---------------------------------------------------------------- journal packing

t.test('packForJournal batches AllocationAmended with the other line events', async (t) => {
  const buy = line();
  const buy2 = line({ blockOrderId: 'BO-2', quantity: 10n, price: 1_000_000n });
  const bust = amendOf(buy, 2, 1, 0n);
  const k = amendOf(buy2, 2, 1, 20n, 1_000_001n);
  const sellRefused = line({ blockOrderId: 'BO-3', side: 'SELL', quantity: 10_000n });
  const base = [opened, applied(buy, -1_516_852n)];
  // One mailbox batch: a fill line, a bust, a refused line, a correction.
  const events = run(base, apply(buy2), apply(bust), apply(sellRefused), apply(k));
  t.strictSame(
    events.map((e) => e.type),
    ['AllocationApplied', 'AllocationAmended', 'AllocationRejected', 'AllocationAmended'],
  );
  const packed = packForJournal(events);
  t.equal(packed.length, 1, 'one row');
  t.strictSame(packed, [{ type: 'AllocationBatch', events }]);
  const folded = replay([...base, ...events]);
  t.strictSame(replay([...base, ...packed]), folded, 'folding the pack is folding the events');
  const s = openOf(t, folded);
  t.strictSame(s.lastSeqByOrder, { 'BO-1': 2, 'BO-2': 2, 'BO-3': 1 });
  t.strictSame(s.positions, { 'SEC-1': 520n });
  t.equal(s.cashMinor, def.cashMinor - 2_000n, 'the bust gave back fill 1; BO-2 is 20 @ 1.000001');
  // A lone amendment is journaled as itself; a retry in between splits the runs.
  t.strictSame(packForJournal([events[1]!]), [events[1]]);
  const retried: AccountEvent = {
    type: 'SuspenseApplied',
    allocation: refusedSell,
    cashDeltaMinor: 0n,
    atMs: AT,
  };
  t.strictSame(packForJournal([events[0]!, events[1]!, retried, events[3]!]), [
    { type: 'AllocationBatch', events: [events[0], events[1]] },
    retried,
    events[3],
  ]);
  // The batch of a suspended amendment folds the same too.
  const kSusp = amendOf(refusedSell, 2, 1, 550n);
  const more = run([opened, refused], apply(kSusp), apply(buy2));
  const packedMore = packForJournal(more);
  t.equal(packedMore.length, 1);
  t.strictSame(replay([opened, refused, ...packedMore]), replay([opened, refused, ...more]));
});
