/**
 * Property: recovering from a snapshot (encoded and decoded as the journal
 * stores it) plus the events after it gives the same state as recovering from
 * the events alone, at every cut, for block orders and accounts. The block
 * order's outbox rebuilt from either state has the same open lines.
 */
import fc from 'fast-check';
import t from 'tap';
import {
  decide as decideAccount,
  evolve as evolveAccount,
  initialState as initialAccount,
  packForJournal,
  type AccountEvent,
  type AccountState,
} from '../actors/account/decider.ts';
import {
  decide,
  evolve,
  initialState,
  type BlockOrderEvent,
  type BlockOrderState,
} from '../actors/block-order/decider.ts';
import { Outbox } from '../actors/block-order/outbox.ts';
import { decodeVersioned, encodeVersioned } from '../persistence/codec.ts';
import { TEST_PRICE, testFill } from './helpers/asserts.ts';

const NOW = 1_763_650_000_000;

/** Comparable form: bigints tagged, so 1 and 1n differ. */
const big = (v: unknown): unknown =>
  JSON.parse(JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? `${x}n` : x)));

/** Snapshot as the host stores it: msgpack round trip. */
const throughSnapshot = <S>(state: S): S =>
  decodeVersioned(encodeVersioned(state), 'snapshot') as S;

/** A block order's events: opened, then fills (random sizes), with watermarks in between. */
function blockOrderEvents(
  targets: number[],
  fills: Array<{ lots: number; confirmShare: number }>,
): BlockOrderEvent[] {
  const def = {
    blockOrderId: 'BUY1',
    securityId: 'SEC1',
    side: 'BUY' as const,
    tradeDate: '2026-11-20',
    lotSize: 10n,
    targets: targets.map((lots, i) => ({ accountId: `A${i + 1}`, quantity: BigInt(lots) * 10n })),
  };
  let state: BlockOrderState = initialState();
  const events: BlockOrderEvent[] = [];
  const take = (e: readonly BlockOrderEvent[]) => {
    for (const event of e) {
      events.push(event);
      state = evolve(state, event);
    }
  };
  take(decide({ type: 'Open', def, nowMs: NOW }, state).events);
  fills.forEach(({ lots, confirmShare }, i) => {
    const fill = testFill(i + 1, BigInt(lots) * 10n + BigInt(i % 3));
    const decision = decide({ type: 'AllocateFill', fill, nowMs: NOW + i }, state);
    if (decision.outcome === 'Accepted') take(decision.events);
    if (state.status !== 'Open') return;
    const through = Math.floor(state.lastFillSeq * confirmShare);
    take(decide({ type: 'ConfirmProgress', settledThroughSeq: through, nowMs: NOW }, state).events);
  });
  return events;
}

t.test('block order: snapshot + tail = all events, at every cut', async (t) => {
  const arb = fc.record({
    targets: fc.array(fc.integer({ min: 1, max: 500 }), { minLength: 1, maxLength: 12 }),
    fills: fc.array(
      fc.record({
        lots: fc.integer({ min: 1, max: 60 }),
        confirmShare: fc.double({ min: 0, max: 1, noNaN: true }),
      }),
      { minLength: 0, maxLength: 25 },
    ),
  });
  fc.assert(
    fc.property(arb, ({ targets, fills }) => {
      const events = blockOrderEvents(targets, fills);
      const all = events.reduce(evolve, initialState());
      for (let cut = 0; cut <= events.length; cut++) {
        const snapshot = throughSnapshot(events.slice(0, cut).reduce(evolve, initialState()));
        const recovered = events.slice(cut).reduce(evolve, snapshot);
        if (JSON.stringify(big(recovered)) !== JSON.stringify(big(all))) return false;
        if (all.status === 'Open' && recovered.status === 'Open') {
          const a = Outbox.fromPending(100, all.confirmedThroughSeq, all.pending).openLines();
          const b = Outbox.fromPending(
            100,
            recovered.confirmedThroughSeq,
            recovered.pending,
          ).openLines();
          if (JSON.stringify(a) !== JSON.stringify(b)) return false;
        }
      }
      return true;
    }),
    { numRuns: 150, seed: 20261123 },
  );
  t.pass('holds for 150 random histories');
});

/** An account's journal rows: opened, then allocations of one order, packed in random batches. */
function accountRows(quantities: number[], batchSizes: number[]): AccountEvent[] {
  let state: AccountState = initialAccount();
  const def = { accountId: 'A1', cashMinor: 10_000_000_00n, positions: { SEC1: 5_000n } };
  const staged: AccountEvent[][] = [
    [...decideAccount({ type: 'Open', def, nowMs: NOW }, state).events],
  ];
  state = staged[0]?.reduce(evolveAccount, state) ?? state;
  let batch: AccountEvent[] = [];
  quantities.forEach((q, i) => {
    const allocation = {
      blockOrderId: 'SELL1',
      fillSeq: i + 1,
      prevSeq: i,
      securityId: 'SEC1',
      side: i % 2 === 0 ? ('SELL' as const) : ('BUY' as const),
      quantity: BigInt(q),
      price: TEST_PRICE,
    };
    const events = decideAccount({ type: 'Apply', allocation, nowMs: NOW + i }, state).events;
    for (const e of events) state = evolveAccount(state, e);
    batch.push(...events);
    if (batch.length >= (batchSizes[i % Math.max(1, batchSizes.length)] ?? 1)) {
      staged.push(batch);
      batch = [];
    }
  });
  staged.push(batch);
  return staged.flatMap((b) => packForJournal(b));
}

t.test('account: snapshot + tail = all rows (batches included), at every cut', async (t) => {
  const arb = fc.record({
    quantities: fc.array(fc.integer({ min: 1, max: 3_000 }), { maxLength: 40 }),
    batchSizes: fc.array(fc.integer({ min: 1, max: 8 }), { minLength: 1, maxLength: 5 }),
  });
  fc.assert(
    fc.property(arb, ({ quantities, batchSizes }) => {
      const rows = accountRows(quantities, batchSizes);
      const all = rows.reduce(evolveAccount, initialAccount());
      for (let cut = 0; cut <= rows.length; cut++) {
        const snapshot = throughSnapshot(
          rows.slice(0, cut).reduce(evolveAccount, initialAccount()),
        );
        const recovered = rows.slice(cut).reduce(evolveAccount, snapshot);
        if (JSON.stringify(big(recovered)) !== JSON.stringify(big(all))) return false;
      }
      return true;
    }),
    { numRuns: 150, seed: 20261123 },
  );
  t.pass('holds for 150 random histories');
});
