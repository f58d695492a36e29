/**
 * Account decider, in given-events / when-command / then-events form:
 * state = history.reduce(evolve, initialState()); the decision is
 * decide(command, state). Pure: no database, no streams.
 */
import t, { type Test } from 'tap';
import {
  AllocationRejection,
  ApplyOutcome,
  decide,
  evolve,
  initialState,
  suspenseKey,
  type AccountCommand,
  type AccountDef,
  type AccountEvent,
  type AccountState,
  type Allocation,
  type Decision,
} from '../actors/account/decider.ts';
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
  /** The state after evolving the decision's events. */
  state: AccountState;
}

/** given(t, history).when(command).then(outcome, events) / .thenNothing(outcome) / .thenThrows(message) */
function given(t: Test, history: readonly AccountEvent[]) {
  const state = replay(history);
  return {
    state,
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

// ---------------------------------------------------------------- fixtures

const NOW = 1_700_000_000_000;

const def: AccountDef = {
  accountId: 'A1',
  cashMinor: 100_000_000n, // 1,000,000.00
  positions: { 'SEC-1': 500n },
};
const opened: AccountEvent = { type: 'AccountOpened', def, atMs: NOW };

const alloc = (over: Partial<Allocation> = {}): Allocation => ({
  blockOrderId: 'BO-1',
  fillSeq: 1,
  prevSeq: 0,
  securityId: 'SEC-1',
  side: 'BUY',
  quantity: 150n,
  price: 101_123_457n, // 101.123457
  ...over,
});

const apply = (allocation: Allocation, nowMs = NOW + 1): AccountCommand => ({
  type: 'Apply',
  allocation,
  nowMs,
});

const applied = (allocation: Allocation, cashDeltaMinor: bigint, atMs = NOW + 1): AccountEvent => ({
  type: 'AllocationApplied',
  allocation,
  cashDeltaMinor,
  atMs,
});

// ---------------------------------------------------------------- Open

t.test('Open on Empty emits AccountOpened', async (t) => {
  const { state } = given(t, [])
    .when({ type: 'Open', def, nowMs: NOW })
    .then(ApplyOutcome.Opened, [{ type: 'AccountOpened', def, atMs: NOW }]);
  t.strictSame(state, {
    status: 'Open',
    accountId: 'A1',
    cashMinor: 100_000_000n,
    positions: { 'SEC-1': 500n },
    lastSeqByOrder: {},
    rejected: 0,
    negativePositionFlags: 0,
    suspense: {},
  });
  t.not(openOf(t, state).positions, def.positions, 'positions are copied, not shared');
});

t.test('Open twice is ALREADY_OPEN with no events', async (t) => {
  given(t, [opened]).when({ type: 'Open', def, nowMs: NOW }).thenNothing(ApplyOutcome.AlreadyOpen);
});

t.test('Open with a negative position is an invariant failure', async (t) => {
  given(t, [])
    .when({ type: 'Open', def: { ...def, positions: { 'SEC-1': -1n } }, nowMs: NOW })
    .thenThrows(/negative/);
});

// ---------------------------------------------------------------- Apply

t.test('Apply on Empty is NOT_OPEN with no events', async (t) => {
  given(t, []).when(apply(alloc())).thenNothing(ApplyOutcome.NotOpen);
});

t.test('a BUY pays the notional rounded half-even to the cent', async (t) => {
  // 150 x 101.123457 = 15168.518550 -> 1516851.855 cents -> 1516852 cents.
  const a = alloc();
  const { state } = given(t, [opened])
    .when(apply(a))
    .then(ApplyOutcome.Applied, [applied(a, -1_516_852n)]);
  const s = openOf(t, state);
  t.equal(s.cashMinor, 100_000_000n - 1_516_852n);
  t.strictSame(s.positions, { 'SEC-1': 650n });
  t.strictSame(s.lastSeqByOrder, { 'BO-1': 1 });
  t.equal(s.rejected, 0);
});

t.test('cash rounding: ties go to the even cent', async (t) => {
  const cases: Array<[side: 'BUY' | 'SELL', quantity: bigint, price: bigint, delta: bigint]> = [
    ['BUY', 1n, 12_345_000n, -1234n], // 1234.5 cents -> 1234 (even)
    ['BUY', 1n, 12_355_000n, -1236n], // 1235.5 cents -> 1236 (even)
    ['BUY', 1n, 12_345_001n, -1235n], // 1234.5001 -> 1235
    ['BUY', 3n, 1n, 0n], // 0.0003 cents -> 0
    ['SELL', 3n, 5_000n, 2n], // 3 x 0.005 = 1.5 cents -> 2
    ['SELL', 1n, 5_000n, 0n], // 0.5 cents -> 0
    ['SELL', 200n, 50_000_050n, 1_000_001n], // 10000.01 exactly
  ];
  for (const [side, quantity, price, delta] of cases) {
    const a = alloc({ side, quantity, price });
    const { state } = given(t, [opened])
      .when(apply(a))
      .then(ApplyOutcome.Applied, [applied(a, delta)]);
    t.equal(openOf(t, state).cashMinor, 100_000_000n + delta, `${side} ${quantity} @ ${price}`);
  }
});

t.test('a SELL receives cash and reduces the position', async (t) => {
  // 200 x 50.000050 = 10000.010000 -> 1000001 cents.
  const a = alloc({ side: 'SELL', quantity: 200n, price: 50_000_050n });
  const { state } = given(t, [opened])
    .when(apply(a))
    .then(ApplyOutcome.Applied, [applied(a, 1_000_001n)]);
  const s = openOf(t, state);
  t.equal(s.cashMinor, 100_000_000n + 1_000_001n);
  t.strictSame(s.positions, { 'SEC-1': 300n });
  // Selling exactly the rest is fine and leaves a zero position.
  const rest = alloc({ side: 'SELL', fillSeq: 2, prevSeq: 1, quantity: 300n, price: 1_000_000n });
  const after = given(t, [opened, applied(a, 1_000_001n)])
    .when(apply(rest))
    .then(ApplyOutcome.Applied, [applied(rest, 30_000n)]).state;
  t.strictSame(openOf(t, after).positions, { 'SEC-1': 0n });
});

t.test('a SELL beyond the position is rejected durably', async (t) => {
  const a = alloc({ side: 'SELL', quantity: 501n });
  const { decision, state } = given(t, [opened])
    .when(apply(a))
    .then(ApplyOutcome.Rejected, [
      {
        type: 'AllocationRejected',
        allocation: a,
        reason: AllocationRejection.InsufficientPosition,
        detail: 'sell of 501 exceeds position 500 in SEC-1',
        atMs: NOW + 1,
      },
    ]);
  t.equal(decision.events[0]?.type, 'AllocationRejected');
  const s = openOf(t, state);
  t.equal(s.cashMinor, def.cashMinor, 'cash unchanged');
  t.strictSame(s.positions, def.positions, 'position unchanged');
  t.strictSame(s.lastSeqByOrder, { 'BO-1': 1 }, 'the seq is consumed');
  t.equal(s.rejected, 1);

  // A security the account does not hold at all.
  given(t, [opened])
    .when(apply(alloc({ side: 'SELL', securityId: 'SEC-2', quantity: 1n })))
    .then(ApplyOutcome.Rejected, [
      {
        type: 'AllocationRejected',
        allocation: alloc({ side: 'SELL', securityId: 'SEC-2', quantity: 1n }),
        reason: 'INSUFFICIENT_POSITION',
        detail: 'sell of 1 exceeds position 0 in SEC-2',
        atMs: NOW + 1,
      },
    ]);

  // The next allocation of that order chains on the rejected one: no GAP.
  const rejectedEvent = decide(apply(a), replay([opened])).events;
  const next = alloc({ fillSeq: 2, prevSeq: 1, quantity: 10n, price: 1_000_000n });
  given(t, [opened, ...rejectedEvent])
    .when(apply(next))
    .then(ApplyOutcome.Applied, [applied(next, -1_000n)]);
  // And a redelivery of the rejected one is a duplicate.
  given(t, [opened, ...rejectedEvent])
    .when(apply(a))
    .thenNothing(ApplyOutcome.Duplicate);
});

t.test('duplicates (fillSeq <= last applied for the order) change nothing', async (t) => {
  const a1 = alloc();
  const a3 = alloc({ fillSeq: 3, prevSeq: 1, quantity: 10n, price: 1_000_000n });
  const history = [opened, applied(a1, -1_516_852n), applied(a3, -1_000n)];
  given(t, history).when(apply(a3)).thenNothing(ApplyOutcome.Duplicate);
  given(t, history).when(apply(a1)).thenNothing(ApplyOutcome.Duplicate);
  // Seq 2 never allocated to this account: below the last, so a duplicate too.
  given(t, history)
    .when(apply(alloc({ fillSeq: 2, prevSeq: 1 })))
    .thenNothing(ApplyOutcome.Duplicate);
  // Duplicate wins over a SELL that would be rejected.
  given(t, history)
    .when(apply(alloc({ fillSeq: 3, prevSeq: 1, side: 'SELL', quantity: 1_000_000n })))
    .thenNothing(ApplyOutcome.Duplicate);
});

t.test('prevSeq that is not the last applied seq is a GAP', async (t) => {
  // Nothing applied yet, but the allocation says fill 2 came first.
  given(t, [opened])
    .when(apply(alloc({ fillSeq: 5, prevSeq: 2 })))
    .thenNothing(ApplyOutcome.Gap);
  const history = [opened, applied(alloc(), -1_516_852n)];
  // Last applied is 1; prevSeq 3 means fill 3 was lost in flight.
  given(t, history)
    .when(apply(alloc({ fillSeq: 4, prevSeq: 3 })))
    .thenNothing(ApplyOutcome.Gap);
  // prevSeq 0 after 1 was applied: inconsistent, refused.
  given(t, history)
    .when(apply(alloc({ fillSeq: 4, prevSeq: 0 })))
    .thenNothing(ApplyOutcome.Gap);
  // A GAP is checked before the position: nothing is rejected durably.
  given(t, history)
    .when(apply(alloc({ fillSeq: 4, prevSeq: 3, side: 'SELL', quantity: 1_000_000n })))
    .thenNothing(ApplyOutcome.Gap);
  // The right prevSeq is applied.
  const ok = alloc({ fillSeq: 4, prevSeq: 1, quantity: 1n, price: 1_000_000n });
  given(t, history)
    .when(apply(ok))
    .then(ApplyOutcome.Applied, [applied(ok, -100n)]);
});

t.test('allocations of different block orders are independent', async (t) => {
  const bo1 = alloc({ fillSeq: 7, prevSeq: 0, quantity: 10n, price: 2_000_000n });
  const history = [opened, applied(bo1, -2_000n)];
  // BO-2 starts from 0 whatever BO-1 did.
  const bo2 = alloc({
    blockOrderId: 'BO-2',
    fillSeq: 1,
    prevSeq: 0,
    quantity: 5n,
    price: 2_000_000n,
  });
  const { state } = given(t, history)
    .when(apply(bo2))
    .then(ApplyOutcome.Applied, [applied(bo2, -1_000n)]);
  const s = openOf(t, state);
  t.strictSame(s.lastSeqByOrder, { 'BO-1': 7, 'BO-2': 1 });
  t.strictSame(s.positions, { 'SEC-1': 515n });
  t.equal(s.cashMinor, 100_000_000n - 3_000n);
  // BO-2 chaining on BO-1's seq would be a gap.
  given(t, history)
    .when(apply(alloc({ blockOrderId: 'BO-2', fillSeq: 8, prevSeq: 7 })))
    .thenNothing(ApplyOutcome.Gap);
  // And BO-1's seq 1 is a duplicate while BO-2's is not.
  given(t, history)
    .when(apply(alloc({ fillSeq: 1 })))
    .thenNothing(ApplyOutcome.Duplicate);
});

t.test('malformed allocations are invariant failures', async (t) => {
  given(t, [opened])
    .when(apply(alloc({ quantity: 0n })))
    .thenThrows(/quantity must be positive/);
  given(t, [opened])
    .when(apply(alloc({ quantity: -5n })))
    .thenThrows(/quantity must be positive/);
  given(t, [opened])
    .when(apply(alloc({ fillSeq: 3, prevSeq: 3 })))
    .thenThrows(/prevSeq 3 must precede fillSeq 3/);
});

// ---------------------------------------------------------------- evolve

t.test('evolve rejects impossible histories', async (t) => {
  const a = alloc();
  expectInvariant(t, () => replay([opened, applied(a, -1_516_851n)]), /cash delta does not match/);
  expectInvariant(t, () => replay([opened, applied(a, 1_516_852n)]), /cash delta does not match/);
  expectInvariant(t, () => replay([applied(a, -1_516_852n)]), /before AccountOpened/);
  expectInvariant(
    t,
    () =>
      replay([
        {
          type: 'AllocationRejected',
          allocation: a,
          reason: 'INSUFFICIENT_POSITION',
          detail: '',
          atMs: NOW,
        },
      ]),
    /before AccountOpened/,
  );
  expectInvariant(t, () => replay([opened, opened]), /AccountOpened on an open account/);
  const oversell = alloc({ side: 'SELL', quantity: 501n, price: 1_000_000n });
  expectInvariant(t, () => replay([opened, applied(oversell, 50_100n)]), /would go negative/);
});

t.test('evolve does not mutate the previous state', async (t) => {
  const s1 = replay([opened]);
  const snapshot = structuredClone(s1);
  const s2 = evolve(s1, applied(alloc(), -1_516_852n));
  t.strictSame(s1, snapshot);
  t.not(s2, s1);
});

t.test('redelivering every allocation again changes nothing', async (t) => {
  // Interleaved orders and sides, each allocation chained on the previous one of its order.
  const allocations: Allocation[] = [];
  const last: Record<string, number> = {};
  for (let i = 0; i < 60; i++) {
    const blockOrderId = `BO-${i % 3}`;
    const prevSeq = last[blockOrderId] ?? 0;
    const fillSeq = prevSeq + 1 + (i % 2); // sometimes skip a seq that went to other accounts
    last[blockOrderId] = fillSeq;
    allocations.push(
      alloc({
        blockOrderId,
        fillSeq,
        prevSeq,
        side: i % 4 === 3 ? 'SELL' : 'BUY',
        quantity: BigInt(1 + ((i * 37) % 90)),
        price: BigInt(1_000_000 + i * 12_345),
      }),
    );
  }
  let state = replay([opened]);
  let cashFromEvents = def.cashMinor;
  for (const a of allocations) {
    const d = decide(apply(a), state);
    t.ok(d.outcome === 'APPLIED' || d.outcome === 'REJECTED', `${a.blockOrderId}/${a.fillSeq}`);
    for (const e of d.events)
      if (e.type === 'AllocationApplied') cashFromEvents += e.cashDeltaMinor;
    state = d.events.reduce(evolve, state);
  }
  const once = openOf(t, state);
  t.equal(once.cashMinor, cashFromEvents, 'cash is the opening plus the applied deltas');
  t.strictSame(once.lastSeqByOrder, last);
  for (const a of allocations) {
    const d = decide(apply(a), state);
    t.equal(d.outcome, 'DUPLICATE', `redelivery ${a.blockOrderId}/${a.fillSeq}`);
    state = d.events.reduce(evolve, state);
  }
  t.equal(state, once, 'the very same state');
});

t.test('ids named like Object.prototype members are ordinary ids', async (t) => {
  const a = alloc({ blockOrderId: 'toString', securityId: 'valueOf' });
  const { state } = given(t, [opened])
    .when(apply(a))
    .then('APPLIED', [applied(a, -1_516_852n)]);
  const s = openOf(t, state);
  t.equal(s.positions.valueOf, 150n);
  t.equal(s.lastSeqByOrder.toString, 1);
  given(t, [opened, applied(a, -1_516_852n)])
    .when(apply(alloc({ blockOrderId: 'toString', securityId: 'valueOf', fillSeq: 2, prevSeq: 1 })))
    .then('APPLIED', [
      applied(
        alloc({ blockOrderId: 'toString', securityId: 'valueOf', fillSeq: 2, prevSeq: 1 }),
        -1_516_852n,
      ),
    ]);
});

// ---------------------------------------------------------------- suspense

const refusedSell = alloc({ side: 'SELL', quantity: 600n, price: 2_000_000n });
const refused: AccountEvent = {
  type: 'AllocationRejected',
  allocation: refusedSell,
  reason: AllocationRejection.InsufficientPosition,
  detail: 'sell of 600 exceeds position 500 in SEC-1',
  atMs: NOW + 1,
};
const retry = (blockOrderId = 'BO-1', fillSeq = 1): AccountCommand => ({
  type: 'RetrySuspense',
  blockOrderId,
  fillSeq,
  nowMs: NOW + 9,
});

t.test('a refused line goes to suspense with its reason; nothing else moves', async (t) => {
  const s = openOf(t, replay([opened, refused]));
  t.strictSame(Object.keys(s.suspense), [suspenseKey('BO-1', 1)]);
  t.strictSame(s.suspense[suspenseKey('BO-1', 1)], {
    allocation: refusedSell,
    reason: 'INSUFFICIENT_POSITION',
    detail: 'sell of 600 exceeds position 500 in SEC-1',
  });
  t.equal(s.cashMinor, def.cashMinor);
  t.strictSame(s.positions, def.positions);
});

t.test(
  'retry while the account still cannot take it: STILL_REFUSED, nothing persisted',
  async (t) => {
    const { decision, state } = given(t, [opened, refused])
      .when(retry())
      .thenNothing(ApplyOutcome.StillRefused);
    t.match(decision.detail, /sell of 600 exceeds position 500/);
    t.equal(Object.keys(openOf(t, state).suspense).length, 1, 'still in suspense');
  },
);

t.test('retry once the shares arrived: applied exactly, out of suspense', async (t) => {
  const buy = alloc({ blockOrderId: 'BO-2', side: 'BUY', quantity: 100n, price: 1_000_000n });
  const history = [opened, refused, applied(buy, -10_000n)];
  const { state } = given(t, history)
    .when(retry())
    .then(ApplyOutcome.Applied, [
      {
        type: 'SuspenseApplied',
        allocation: refusedSell,
        cashDeltaMinor: 120_000n,
        atMs: NOW + 9,
      },
    ]);
  const s = openOf(t, state);
  t.strictSame(s.suspense, {});
  t.strictSame(s.positions, { 'SEC-1': 0n });
  // Exact money: opening cash - the buy + the sell of 600 at 2.00.
  t.equal(s.cashMinor, def.cashMinor - 10_000n + 120_000n);
  t.strictSame(s.lastSeqByOrder, { 'BO-1': 1, 'BO-2': 1 }, 'the order chains are untouched');
  // Idempotent: a second retry finds nothing in suspense.
  given(t, [...history, ...decide(retry(), replay(history)).events])
    .when(retry())
    .thenNothing(ApplyOutcome.NotInSuspense);
});

t.test('retry of a line never refused: NOT_IN_SUSPENSE; before opening: NOT_OPEN', async (t) => {
  given(t, [opened, ...decide(apply(alloc()), replay([opened])).events])
    .when(retry())
    .thenNothing(ApplyOutcome.NotInSuspense);
  given(t, [opened, refused]).when(retry('BO-1', 2)).thenNothing(ApplyOutcome.NotInSuspense);
  given(t, []).when(retry()).thenNothing(ApplyOutcome.NotOpen);
});

t.test('SuspenseApplied for a line not in suspense is a broken invariant', async (t) => {
  expectInvariant(
    t,
    () =>
      replay([
        opened,
        { type: 'SuspenseApplied', allocation: alloc(), cashDeltaMinor: -15_168_519n, atMs: NOW },
      ]),
    /not in suspense/,
  );
});

t.test('an account with nothing in suspense shares one frozen empty record', async (t) => {
  const a = openOf(t, replay([opened]));
  const b = openOf(t, replay([{ ...opened, def: { ...def, accountId: 'A2' } }]));
  t.equal(a.suspense, b.suspense);
  t.ok(Object.isFrozen(a.suspense));
});
