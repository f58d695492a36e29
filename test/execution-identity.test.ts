/**
 * Execution identity on the kernel, without services: a fill id is claimed
 * once, forever (the journal's execution index, written in the allocating
 * commit), so a re-used id on another order or at a later seq fails its
 * commit as EXECUTION_CONFLICT; a message at an applied seq is a duplicate
 * only if it is the very same execution, otherwise a CONFLICTING_EXECUTION
 * rejection carrying the applied version. Refused lines land in the
 * suspense ledger in the same commit, and a retry resolves them.
 */
import t, { type Test } from 'tap';
import type { Fill } from '../actors/block-order/decider.ts';
import type { RetrySuspenseReply } from '../actors/protocol.ts';
import { encodeVersioned } from '../persistence/codec.ts';
import { MemoryJournal } from '../persistence/memory-journal.ts';
import type { SeedData } from '../persistence/reference.ts';
import { startKernel, type Kernel } from './helpers/kernel.ts';

const journalOptions = {
  batchEventsMax: 50,
  flushIntervalMs: 1,
  flushesInFlightMax: 3,
  pendingEventsMax: 100_000,
};

const seed: SeedData = {
  securities: [{ id: 'SEC-1', ticker: 'S1', lotSize: 1n }],
  accounts: [
    { id: 'A1', name: 'A1', openingCashMinor: 1_000_000_00n, positions: { 'SEC-1': 50n } },
    { id: 'A2', name: 'A2', openingCashMinor: 1_000_000_00n, positions: { 'SEC-1': 500n } },
  ],
  blockOrders: ['BO-1', 'BO-2'].map((id) => ({
    id,
    securityId: 'SEC-1',
    side: 'BUY' as const,
    tradeDate: '2026-11-23',
    targets: [
      { accountId: 'A1', quantity: 10_000n },
      { accountId: 'A2', quantity: 10_000n },
    ],
  })),
};

const fill = (blockOrderId: string, seq: number, over: Partial<Fill> = {}): Fill => ({
  fillId: `${blockOrderId}-F${seq}`,
  blockOrderId,
  seq,
  quantity: 100n,
  price: 10_000_000n,
  venue: 'XNYS',
  executedAtMs: 1_763_650_000_000 + seq,
  ...over,
});

function start(t: Test, s: SeedData = seed): { kernel: Kernel; journal: MemoryJournal } {
  const journal = new MemoryJournal(journalOptions);
  const kernel = startKernel(journal, s);
  t.teardown(() => kernel.stop());
  return { kernel, journal };
}

async function settled(kernel: Kernel, ids: string[]): Promise<void> {
  for (let i = 0; i < 500; i++) {
    const views = await Promise.all(ids.map((id) => kernel.blockOrder(id)));
    if (views.every((v) => v.unconfirmedLines === 0)) return;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  throw new Error('allocations never settled');
}

t.test('a fill id re-used on another order fails its commit; nothing is booked', async (t) => {
  const { kernel, journal } = start(t);
  t.match(await kernel.allocate(fill('BO-1', 1, { fillId: 'X' })), { type: 'Allocated' });
  const reused = await kernel.allocate(fill('BO-2', 1, { fillId: 'X' }));
  t.match(reused, { type: 'Failed', code: 'EXECUTION_CONFLICT', message: /fill id X/ });
  t.equal(journal.stats.executionConflicts, 1);
  t.match(await journal.execution('X'), { blockOrderId: 'BO-1', seq: 1 });
  const bo2 = await kernel.blockOrder('BO-2');
  t.equal(bo2.fills, 0, 'the order reset to its journal: no fill');
  // The order is not stopped for it and takes its genuine first fill.
  t.match(await kernel.allocate(fill('BO-2', 1)), { type: 'Allocated' });
  t.strictSame(kernel.blockOrders.stoppedActors(), []);
});

t.test(
  'an old fill re-sent at a new seq, long after, is a conflict, never applied twice',
  async (t) => {
    const { kernel, journal } = start(t);
    for (let seq = 1; seq <= 300; seq++)
      t.equal((await kernel.allocate(fill('BO-1', seq, { quantity: 1n }))).type, 'Allocated');
    await settled(kernel, ['BO-1']);
    const old = fill('BO-1', 301, { fillId: 'BO-1-F1', quantity: 1n });
    t.match(await kernel.allocate(old), { type: 'Failed', code: 'EXECUTION_CONFLICT' });
    // The genuine fill with that seq still goes in.
    t.match(await kernel.allocate(fill('BO-1', 301, { quantity: 1n })), { type: 'Allocated' });
    t.equal((await kernel.blockOrder('BO-1')).filledQuantity, '301');
    t.equal(journal.stats.executionConflicts, 1);
  },
);

t.test(
  'at an applied seq: the same execution is a duplicate; anything else a conflict',
  async (t) => {
    const { kernel } = start(t);
    const genuine = fill('BO-1', 1);
    t.match(await kernel.allocate(genuine), { type: 'Allocated' });
    // Recent (still pending, in memory) and old (confirmed, from the index).
    for (const phase of ['pending', 'confirmed']) {
      if (phase === 'confirmed') await settled(kernel, ['BO-1']);
      t.match(await kernel.allocate(genuine), { type: 'Duplicate' }, `${phase}: exact`);
      const otherId = await kernel.allocate({ ...genuine, fillId: 'BOGUS' });
      t.match(
        otherId,
        { type: 'Rejected', reason: 'CONFLICTING_EXECUTION', detail: /differs in fillId$/ },
        `${phase}: another id at the seq`,
      );
      t.strictSame(otherId.type === 'Rejected' ? otherId.existing : undefined, genuine);
      t.match(
        await kernel.allocate({ ...genuine, quantity: 101n }),
        { type: 'Rejected', reason: 'CONFLICTING_EXECUTION', detail: /differs in quantity$/ },
        `${phase}: same id, other content`,
      );
    }
    t.equal((await kernel.blockOrder('BO-1')).filledQuantity, '100', 'nothing changed the books');
  },
);

t.test('a bogus fill that took the seq first: the genuine one is raised, not acked', async (t) => {
  const { kernel } = start(t);
  t.match(await kernel.allocate(fill('BO-1', 1, { fillId: 'BOGUS', quantity: 7n })), {
    type: 'Allocated',
  });
  t.match(await kernel.allocate(fill('BO-1', 1)), {
    type: 'Rejected',
    reason: 'CONFLICTING_EXECUTION',
    existing: { fillId: 'BOGUS' },
  });
});

t.test('a refused SELL line is in the suspense ledger; a retry resolves it exactly', async (t) => {
  const sell: SeedData = {
    ...seed,
    blockOrders: [
      {
        id: 'BO-S',
        securityId: 'SEC-1',
        side: 'SELL',
        tradeDate: '2026-11-23',
        targets: [
          { accountId: 'A1', quantity: 100n },
          { accountId: 'A2', quantity: 100n },
        ],
      },
      ...seed.blockOrders,
    ],
  };
  const { kernel, journal } = start(t, sell);
  // 200 sold: 100 each; A1 holds only 50, so its line is refused.
  t.match(await kernel.allocate(fill('BO-S', 1, { quantity: 200n })), { type: 'Allocated' });
  await settled(kernel, ['BO-S']);
  t.match(journal.suspense, [
    {
      blockOrderId: 'BO-S',
      fillSeq: 1,
      accountId: 'A1',
      quantity: 100n,
      reason: 'INSUFFICIENT_POSITION',
    },
  ]);
  t.equal(journal.suspense.length, 1);
  const a1 = await kernel.account('A1');
  t.equal(a1.suspenseOpen, 1);
  t.match(a1.suspense, [{ blockOrderId: 'BO-S', fillSeq: 1, quantity: '100', resolution: null }]);
  const retry = (): Promise<RetrySuspenseReply> =>
    kernel.accounts.ask(
      'A1',
      (replyTo) => ({ type: 'RetrySuspense', blockOrderId: 'BO-S', fillSeq: 1, replyTo }),
      5_000,
    );
  t.match(await retry(), { type: 'NotApplied', outcome: 'STILL_REFUSED', detail: /exceeds/ });
  // A1 buys 100 on BO-1 (half of 200), then the suspended sell fits.
  t.match(await kernel.allocate(fill('BO-1', 1, { quantity: 200n })), { type: 'Allocated' });
  await settled(kernel, ['BO-1']);
  t.match(await retry(), { type: 'SuspenseApplied', cashDeltaMinor: 100n * 1000n });
  t.match(await retry(), { type: 'NotApplied', outcome: 'NOT_IN_SUSPENSE' });
  t.match(journal.resolutions, [
    { blockOrderId: 'BO-S', fillSeq: 1, accountId: 'A1', resolution: 'APPLIED' },
  ]);
  const after = await kernel.account('A1');
  t.equal(after.positions['SEC-1'], '50', '50 + 100 bought - 100 sold');
  t.equal(after.suspenseOpen, 0);
  t.equal(
    BigInt(after.cashMinor),
    1_000_000_00n - 100n * 1000n + 100n * 1000n,
    'cash: the buy out, the sell in',
  );
});

t.test(
  'a snapshot of an older state shape is skipped: the journal rebuilds the state',
  async (t) => {
    const journal = new MemoryJournal(journalOptions);
    const first = startKernel(journal, seed);
    t.match(await first.allocate(fill('BO-1', 1)), { type: 'Allocated' });
    const before = await first.blockOrder('BO-1');
    first.stop();
    const key = 'block-order-BO-1';
    const seq = journal.recordsOf(key).length;
    // What an earlier release wrote: another shape, and no format mark.
    const old = { s: { status: 'Open', pending: [{ seq: 1, price: 1n, lines: [] }] }, seq };
    await journal.saveSnapshot({ key, seq, payload: encodeVersioned(old) });
    const second = startKernel(journal, seed);
    t.teardown(() => second.stop());
    t.strictSame(await second.blockOrder('BO-1'), before);
    t.match(
      await second.allocate(fill('BO-1', 1)),
      { type: 'Duplicate' },
      'the pending fill is whole',
    );
  },
);
