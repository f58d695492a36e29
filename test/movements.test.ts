/**
 * Account movements, in given-event / when-movementsOf / then-movements
 * form, and a fold over a whole account history that must agree with the
 * account's own state and with the ledger checker's rule
 * (simulations/invariants.ts: a line adds its cash and signed shares; an
 * amendment adds the difference of its two lines' cash).
 */
import t from 'tap';
import {
  decide,
  evolve,
  initialState,
  packForJournal,
  type AccountCommand,
  type AccountEvent,
  type AccountState,
  type Allocation,
} from '../actors/account/decider.ts';
import { foldMovements, movementsOf, type Movement } from '../actors/account/movements.ts';
import { cashDelta } from '../actors/domain/money.ts';
import { expectInvariant } from './helpers/asserts.ts';

const AT = 1_700_000_000_000;

const line = (over: Partial<Allocation> = {}): Allocation => ({
  blockOrderId: 'BO-1',
  fillSeq: 1,
  prevSeq: 0,
  securityId: 'SEC-1',
  side: 'BUY',
  quantity: 150n,
  price: 101_123_457n, // 150 of it: 15168.51855 -> 1516852 cents
  ...over,
});

const amendOf = (of: Allocation, fillSeq: number, quantity: bigint, price = of.price) => ({
  ...of,
  fillSeq,
  prevSeq: of.fillSeq,
  quantity,
  price,
  amends: { seq: of.fillSeq, quantity: of.quantity, price: of.price },
});

const opened: AccountEvent = {
  type: 'AccountOpened',
  def: { accountId: 'A1', cashMinor: 100_000_000n, positions: { 'SEC-1': 500n } },
  atMs: AT,
};

const applied = (a: Allocation): AccountEvent => ({
  type: 'AllocationApplied',
  allocation: a,
  cashDeltaMinor: cashDelta(a.side, a.quantity, a.price),
  atMs: AT,
});

const amended = (a: Allocation, suspended = false): AccountEvent => ({
  type: 'AllocationAmended',
  allocation: a,
  cashDeltaMinor: suspended
    ? 0n
    : cashDelta(a.side, a.quantity, a.price) -
      cashDelta(a.side, a.amends?.quantity ?? 0n, a.amends?.price ?? 0n),
  suspended,
  negativePosition: false,
  atMs: AT,
});

const move = (over: Partial<Movement>): Movement => ({
  kind: 'ALLOCATION',
  blockOrderId: 'BO-1',
  fillSeq: 1,
  entrySeq: 1,
  securityId: 'SEC-1',
  side: 'BUY',
  quantity: 150n,
  price: 101_123_457n,
  cashDeltaMinor: -1_516_852n,
  ...over,
});

t.test('given an applied buy line, then one ALLOCATION: +shares, cash paid', async (t) => {
  t.strictSame(movementsOf(applied(line())), [move({})]);
});

t.test('given an applied sell line, then shares go out and cash comes in', async (t) => {
  const sell = line({ side: 'SELL', quantity: 10n, price: 2_000_000n });
  t.strictSame(movementsOf(applied(sell)), [
    move({ side: 'SELL', quantity: -10n, price: 2_000_000n, cashDeltaMinor: 2_000n }),
  ]);
});

t.test(
  'given a correction, then the old line is reversed whole and the new one booked',
  async (t) => {
    const corrected = amendOf(line(), 4, 100n, 101_500_000n);
    t.strictSame(movementsOf(amended(corrected)), [
      move({ kind: 'REVERSAL', entrySeq: 4, quantity: -150n, cashDeltaMinor: 1_516_852n }),
      move({
        fillSeq: 4,
        entrySeq: 4,
        quantity: 100n,
        price: 101_500_000n,
        cashDeltaMinor: -1_015_000n,
      }),
    ]);
  },
);

t.test(
  'given a bust of a sell line, then only its reversal: shares back, cash given back',
  async (t) => {
    const sold = line({ side: 'SELL', quantity: 10n, price: 2_000_000n });
    t.strictSame(movementsOf(amended(amendOf(sold, 2, 0n))), [
      move({
        kind: 'REVERSAL',
        side: 'SELL',
        entrySeq: 2,
        quantity: 10n,
        price: 2_000_000n,
        cashDeltaMinor: -2_000n,
      }),
    ]);
  },
);

t.test(
  'given a correction that gives a share to an account that had none, then no reversal',
  async (t) => {
    const none = {
      ...amendOf(line(), 3, 40n),
      amends: { seq: 1, quantity: 0n, price: 101_123_457n },
    };
    t.strictSame(movementsOf(amended(none)), [
      move({ fillSeq: 3, entrySeq: 3, quantity: 40n, cashDeltaMinor: -404_494n }),
    ]);
  },
);

t.test('given events that did not move the books, then no movement', async (t) => {
  const rejected: AccountEvent = {
    type: 'AllocationRejected',
    allocation: line({ side: 'SELL', quantity: 900n }),
    reason: 'INSUFFICIENT_POSITION',
    detail: 'sell of 900 exceeds position 500 in SEC-1',
    atMs: AT,
  };
  t.strictSame(movementsOf(opened), [], 'AccountOpened');
  t.strictSame(movementsOf(rejected), [], 'a rejection goes to suspense');
  t.strictSame(movementsOf(amended(amendOf(line(), 2, 50n), true)), [], 'a suspended amendment');
});

t.test('given a suspended line applied later, then one SUSPENSE_APPLIED', async (t) => {
  const event: AccountEvent = {
    type: 'SuspenseApplied',
    allocation: line({ fillSeq: 2 }),
    cashDeltaMinor: -1_516_852n,
    atMs: AT,
  };
  t.strictSame(movementsOf(event), [move({ kind: 'SUSPENSE_APPLIED', fillSeq: 2, entrySeq: 2 })]);
});

t.test('given a batch, then the concatenation of its line events’ movements', async (t) => {
  const first = applied(line());
  const second = amended(amendOf(line(), 2, 0n));
  const batch: AccountEvent = { type: 'AllocationBatch', events: [first, second] as never };
  t.strictSame(movementsOf(batch), [...movementsOf(first), ...movementsOf(second)]);
});

t.test(
  'given an event whose cash is not its lines’ cash, then it refuses (invariant)',
  async (t) => {
    const wrong = { ...applied(line()), cashDeltaMinor: -1_516_851n } as AccountEvent;
    expectInvariant(
      t,
      () => movementsOf(wrong),
      /movements move -1516852 cents, the event -1516851/,
    );
    const suspended = {
      ...amended(amendOf(line(), 2, 0n), true),
      cashDeltaMinor: 5n,
    } as AccountEvent;
    expectInvariant(t, () => movementsOf(suspended), /a suspended amendment moves no cash/);
  },
);

// ------------------------------------------------------------ a whole history

/** Decides `commands` in turn from `opened`, returning every persisted event (journal-packed). */
function history(commands: AccountCommand[]): { events: AccountEvent[]; state: AccountState } {
  const lineEvents: AccountEvent[] = [];
  let state = evolve(initialState(), opened);
  for (const command of commands) {
    const decision = decide(command, state);
    if (decision.events.length === 0) throw new Error(`${command.type}: ${decision.outcome}`);
    lineEvents.push(...decision.events);
    state = decision.events.reduce(evolve, state);
  }
  return { events: [opened, ...packForJournal(lineEvents)], state };
}

/** The ledger checker's rule for the same journal (simulations/invariants.ts, Books#readAccounts). */
function checkerTotals(events: readonly AccountEvent[]) {
  let cash = 0n;
  const positions = new Map<string, bigint>();
  const add = (a: Allocation, c: bigint, shares: bigint) => {
    cash += c;
    positions.set(a.securityId, (positions.get(a.securityId) ?? 0n) + shares);
  };
  const signed = (a: Allocation, q: bigint) => (a.side === 'BUY' ? q : -q);
  const lines = events.flatMap((e) => (e.type === 'AllocationBatch' ? e.events : [e]));
  for (const e of lines) {
    const a = 'allocation' in e ? e.allocation : undefined;
    if (!a) continue;
    if (e.type === 'AllocationApplied' || e.type === 'SuspenseApplied')
      add(a, cashDelta(a.side, a.quantity, a.price), signed(a, a.quantity));
    if (e.type === 'AllocationAmended' && !e.suspended && a.amends) {
      const was = a.amends;
      const c = cashDelta(a.side, a.quantity, a.price) - cashDelta(a.side, was.quantity, was.price);
      add(a, c, signed(a, a.quantity - was.quantity));
    }
  }
  return { cash, positions };
}

t.test('a fold of the movements of a history matches the account and the checker', async (t) => {
  const apply = (allocation: Allocation): AccountCommand => ({
    type: 'Apply',
    allocation,
    nowMs: AT,
  });
  const buy = line();
  const corrected = amendOf(buy, 2, 120n, 100_999_999n);
  const refused = line({ blockOrderId: 'BO-2', side: 'SELL', quantity: 700n, price: 99_000_001n });
  const refusedLower = amendOf(refused, 2, 300n);
  const other = line({
    blockOrderId: 'BO-3',
    securityId: 'SEC-2',
    quantity: 33n,
    price: 7_333_333n,
  });
  const { events, state } = history([
    apply(buy),
    apply(refused), // refused: in suspense, not on the books
    apply(corrected),
    apply(refusedLower), // amended in suspense: still not on the books
    { type: 'RetrySuspense', blockOrderId: 'BO-2', fillSeq: 2, nowMs: AT },
    apply(other),
    apply(amendOf(other, 2, 0n)), // busted
    apply(amendOf(corrected, 3, 0n)),
    apply(line({ fillSeq: 4, prevSeq: 3, quantity: 10n, price: 100_000_005n })),
  ]);
  t.ok(
    events.some((e) => e.type === 'AllocationBatch'),
    'the history holds a batch row',
  );
  const books = foldMovements(events.flatMap(movementsOf));
  if (state.status !== 'Open') throw new Error('not open');
  t.equal(books.cashMinor, state.cashMinor - 100_000_000n, 'cash: the account’s own');
  t.equal(books.positions.get('SEC-1'), (state.positions['SEC-1'] ?? 0n) - 500n, 'SEC-1');
  t.equal(books.positions.get('SEC-2'), state.positions['SEC-2'] ?? 0n, 'SEC-2 (busted)');
  const checker = checkerTotals(events);
  t.equal(books.cashMinor, checker.cash, 'cash: the checker’s');
  t.strictSame(books.positions, checker.positions, 'positions: the checker’s');
  const kinds = events.flatMap(movementsOf).map((m) => m.kind);
  t.strictSame(kinds, [
    'ALLOCATION',
    'REVERSAL',
    'ALLOCATION',
    'SUSPENSE_APPLIED',
    'ALLOCATION',
    'REVERSAL',
    'REVERSAL',
    'ALLOCATION',
  ]);
});
