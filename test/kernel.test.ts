/**
 * The actor kernel without services: block-order and account actors on the
 * in-memory journal. A whole small scenario is allocated and the books are
 * exact; journal rows are folded back to the same state; a restarted kernel
 * recovers every actor from snapshots and events to the same views.
 */
import t, { type Test } from 'tap';
import {
  evolve as evolveAccount,
  initialState as initialAccount,
  lineEvents,
  packForJournal,
  type AccountEvent,
} from '../actors/account/decider.ts';
import { decodeVersioned } from '../persistence/codec.ts';
import { MemoryJournal } from '../persistence/memory-journal.ts';
import { expectedBooks } from '../simulations/arms/expected.ts';
import { generateScenario, type Scenario } from '../simulations/scenario.ts';
import { startKernel, type Kernel } from './helpers/kernel.ts';

const journalOptions = {
  batchEventsMax: 50,
  flushIntervalMs: 1,
  flushesInFlightMax: 3,
  pendingEventsMax: 100_000,
};

/** Every order's fills in sequence, orders concurrently (as the consumer does). */
async function allocateAll(kernel: Kernel, scenario: Scenario): Promise<void> {
  await Promise.all(
    [...scenario.fillsByOrder.values()].map(async (fills) => {
      for (const fill of fills) {
        const reply = await kernel.allocate(fill);
        if (reply.type !== 'Allocated') throw new Error(`${fill.fillId}: ${JSON.stringify(reply)}`);
      }
    }),
  );
}

async function settled(kernel: Kernel, scenario: Scenario): Promise<void> {
  for (let i = 0; i < 500; i++) {
    const views = await Promise.all(scenario.seed.blockOrders.map((o) => kernel.blockOrder(o.id)));
    if (views.every((v) => v.unconfirmedLines === 0)) return;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  throw new Error('allocations never all settled');
}

async function checkBooks(t: Test, kernel: Kernel, scenario: Scenario): Promise<void> {
  const expected = expectedBooks(scenario);
  for (const a of scenario.seed.accounts) {
    const view = await kernel.account(a.id);
    const book = expected.accounts.get(a.id);
    t.equal(BigInt(view.cashMinor), book?.cashMinor, `${a.id} cash`);
    for (const [security, qty] of book?.positions ?? []) {
      t.equal(BigInt(view.positions[security] ?? '0'), qty, `${a.id} ${security}`);
    }
  }
}

const scenario = generateScenario({
  seed: 11,
  securities: 5,
  accounts: 30,
  blockOrders: 6,
  fills: 240,
  accountsPerOrderMin: 3,
  accountsPerOrderMax: 12,
});

t.test(
  'a scenario allocates exactly; lines land once; batches fold to the same state',
  async (t) => {
    const journal = new MemoryJournal(journalOptions);
    let lines = 0;
    const kernel = startKernel(journal, scenario.seed, {
      observer: { fillSettled: () => {}, accountLineDurable: () => lines++ },
    });
    t.teardown(() => kernel.stop());
    await allocateAll(kernel, scenario);
    await settled(kernel, scenario);
    await checkBooks(t, kernel, scenario);
    t.equal(lines, expectedBooks(scenario).lines, 'every line durable exactly once');

    const accountKeys = journal.keys().filter((k) => k.startsWith('account-'));
    let rows = 0;
    let journaledLines = 0;
    for (const key of accountKeys) {
      const events = journal
        .recordsOf(key)
        .map((r) => decodeVersioned(r.payload, key) as AccountEvent);
      rows += events.length;
      journaledLines += events.flatMap(lineEvents).length;
      // The journal's rows (batches included) fold to the same state as their lines one by one.
      const byRows = events.reduce(evolveAccount, initialAccount());
      const byLines = events
        .flatMap((e) => (e.type === 'AllocationBatch' ? e.events : [e]))
        .reduce(evolveAccount, initialAccount());
      t.same(byRows, byLines, `${key}: rows and lines fold alike`);
    }
    t.equal(journaledLines, lines, 'the journal holds each line once');
    t.ok(
      rows <= journaledLines + accountKeys.length,
      `${rows} account rows for ${journaledLines} lines`,
    );
  },
);

t.test('a restarted kernel recovers every actor to the same views', async (t) => {
  const journal = new MemoryJournal(journalOptions);
  const first = startKernel(journal, scenario.seed);
  await allocateAll(first, scenario);
  await settled(first, scenario);
  const before = await Promise.all(scenario.seed.accounts.map((a) => first.account(a.id)));
  const ordersBefore = await Promise.all(
    scenario.seed.blockOrders.map((o) => first.blockOrder(o.id)),
  );
  first.stop();
  await journal.drain();

  const second = startKernel(journal, scenario.seed);
  t.teardown(() => second.stop());
  t.same(
    await Promise.all(scenario.seed.accounts.map((a) => second.account(a.id))),
    before,
    'accounts recovered from snapshots and events',
  );
  t.same(
    await Promise.all(scenario.seed.blockOrders.map((o) => second.blockOrder(o.id))),
    ordersBefore,
    'block orders recovered',
  );
  await checkBooks(t, second, scenario);
});

t.test('packForJournal: runs of lines become one batch; other events stay', async (t) => {
  const allocation = {
    blockOrderId: 'B',
    fillSeq: 1,
    prevSeq: 0,
    securityId: 'S',
    side: 'BUY' as const,
    quantity: 1n,
    price: 1_000_000n,
  };
  const line = (fillSeq: number): AccountEvent => ({
    type: 'AllocationApplied',
    allocation: { ...allocation, fillSeq, prevSeq: fillSeq - 1 },
    cashDeltaMinor: -100n,
    atMs: 0,
  });
  const opened: AccountEvent = {
    type: 'AccountOpened',
    def: { accountId: 'A', cashMinor: 0n, positions: {} },
    atMs: 0,
  };
  t.same(
    packForJournal([opened, line(1)]).map((e) => e.type),
    ['AccountOpened', 'AllocationApplied'],
    'a single line stays as it is',
  );
  const packed = packForJournal([opened, line(1), line(2), line(3)]);
  t.same(
    packed.map((e) => e.type),
    ['AccountOpened', 'AllocationBatch'],
  );
  t.equal(packed.flatMap(lineEvents).length, 3);
  t.same(packForJournal([]), []);
});

t.test('supervision: a failed journal write fails the batch; the retry lands once', async (t) => {
  let failNext = 0;
  const journal = new MemoryJournal({
    ...journalOptions,
    beforeBatch: () => {
      if (failNext > 0) {
        failNext--;
        throw Object.assign(new Error('connection reset'), { code: 'ECONNRESET' });
      }
    },
  });
  const kernel = startKernel(journal, scenario.seed);
  t.teardown(() => kernel.stop());
  const [first] = scenario.fillsByOrder.values();
  const fill = first?.[0];
  if (!fill) throw new Error('no fill');
  failNext = 1;
  const failed = await kernel.allocate(fill);
  t.match(failed, { type: 'Failed', code: 'ECONNRESET' }, 'the sender learns it failed');
  t.same(journal.recordsOf(`block-order-${fill.blockOrderId}`), [], 'nothing of it is durable');
  const retried = await kernel.allocate(fill);
  t.match(retried, { type: 'Allocated', seq: 1 }, 'the actor reset and recovered; the retry lands');
  t.match(await kernel.allocate(fill), { type: 'Duplicate' }, 'and only once');
  t.equal(kernel.blockOrders.crashCount, 1, 'one crash, one reset');
  t.same(kernel.blockOrders.stoppedActors(), [], 'a transient failure never stops an actor');
});

t.test('outbox: a line an account cannot take yet is re-delivered until it lands', async (t) => {
  const journal = new MemoryJournal(journalOptions);
  const [order] = scenario.seed.blockOrders;
  const refused = order?.targets[0]?.accountId;
  if (!order || !refused) throw new Error('no order');
  let known = false;
  const kernel = startKernel(journal, scenario.seed, {
    reference: (base) => ({
      blockOrder: (id) => base.blockOrder(id),
      // The account is unknown until the test says so (reference data arriving late).
      account: (id) => (id === refused && !known ? Promise.resolve(undefined) : base.account(id)),
    }),
  });
  t.teardown(() => kernel.stop());
  const fill = scenario.fillsByOrder.get(order.id)?.[0];
  if (!fill) throw new Error('no fill');
  t.match(await kernel.allocate(fill), { type: 'Allocated' });
  await new Promise((resolve) => setTimeout(resolve, 20));
  const before = await kernel.blockOrder(order.id);
  t.ok(before.unconfirmedLines >= 1, `the refused line stays open (${before.unconfirmedLines})`);
  known = true;
  await settled(kernel, { ...scenario, seed: { ...scenario.seed, blockOrders: [order] } });
  const after = await kernel.blockOrder(order.id);
  t.equal(after.unconfirmedLines, 0, 'the re-delivered line landed');
  t.equal((await kernel.account(refused)).lastAppliedSeqByOrder[order.id], 1);
});
