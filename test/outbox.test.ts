/**
 * The block order's outbox: delivery bookkeeping owned by the shell. Pure and
 * services-free: settlements, the contiguous settled prefix, forgetting what
 * the watermark confirmed, open lines, retry state and its bound.
 */
import t from 'tap';
import type { PendingFill } from '../actors/block-order/decider.ts';
import { Outbox } from '../actors/block-order/outbox.ts';
import { expectInvariant, TEST_PRICE } from './helpers/asserts.ts';

const fill = (seq: number, accounts: string[]): PendingFill => ({
  seq,
  execution: {
    fillId: `F-${seq}`,
    blockOrderId: 'BO-1',
    seq,
    quantity: 10n * BigInt(accounts.length),
    price: TEST_PRICE,
    venue: 'XNYS',
    executedAtMs: 0,
  },
  price: TEST_PRICE,
  lines: accounts.map((accountId) => ({ accountId, quantity: 10n, prevSeq: 0 })),
});

const three = () => {
  const outbox = new Outbox(10);
  outbox.add(fill(1, ['A1', 'A2', 'A3']));
  outbox.add(fill(2, ['A1', 'A2', 'A3']));
  outbox.add(fill(3, ['A1', 'A2']));
  return outbox;
};

t.test('settle reports the last line of a fill; unknown lines are ignored', async (t) => {
  const outbox = three();
  t.equal(outbox.settle(2, 'A1'), false);
  t.equal(outbox.settle(2, 'A2'), false);
  t.equal(outbox.settle(2, 'A3'), true, 'the last line settles the fill');
  t.equal(outbox.settle(2, 'A3'), false, 'twice: nothing new');
  t.equal(outbox.settle(9, 'A1'), false, 'unknown fill');
  t.equal(outbox.settle(1, 'A9'), false, 'unknown account');
  t.equal(outbox.isOpen(1, 'A1'), true);
  t.equal(outbox.isOpen(2, 'A1'), false);
});

t.test('settledThrough is the contiguous settled prefix; confirmed forgets it', async (t) => {
  const outbox = three();
  t.equal(outbox.settledThrough(), 0, 'nothing settled');
  for (const a of ['A1', 'A2', 'A3']) outbox.settle(2, a);
  t.equal(outbox.settledThrough(), 0, 'fill 2 settled, fill 1 not: still 0');
  for (const a of ['A1', 'A2', 'A3']) outbox.settle(1, a);
  t.equal(outbox.settledThrough(), 2);
  outbox.confirmed(2);
  t.equal(outbox.fills, 1, 'fills 1 and 2 forgotten');
  t.equal(outbox.settledThrough(), 2, 'the watermark is the floor');
  expectInvariant(t, () => outbox.confirmed(1), /only moves forward/);
  expectInvariant(t, () => outbox.confirmed(3), /fill 3 confirmed with 2 open lines/);
});

t.test('open lines, oldest first, per fill or per account', async (t) => {
  const outbox = three();
  outbox.settle(1, 'A1');
  outbox.settle(3, 'A2');
  t.strictSame(outbox.openLines({ accountId: 'A1' }), [
    { seq: 2, accountId: 'A1' },
    { seq: 3, accountId: 'A1' },
  ]);
  t.strictSame(
    outbox.openLines({ seq: 1 }).map((l) => l.accountId),
    ['A2', 'A3'],
  );
  t.equal(outbox.openLines().length, 6);
  t.strictSame(outbox.openLines({ accountId: 'A9' }), []);
});

t.test('rebuilt after recovery: every line after the watermark is open', async (t) => {
  const outbox = Outbox.fromPending(10, 4, [fill(5, ['A1']), fill(6, ['A1', 'A2'])]);
  t.equal(outbox.openLines().length, 3);
  t.equal(outbox.settledThrough(), 4);
  t.equal(outbox.redelivered, false, 'a rebuilt outbox re-delivers on the first message');
  expectInvariant(t, () => outbox.add(fill(6, ['A1'])), /fill 6 after 6/);
});

t.test('bounded: full at fillsMax; adding beyond it is a broken invariant', async (t) => {
  const outbox = new Outbox(2);
  outbox.add(fill(1, ['A1']));
  t.equal(outbox.full, false);
  outbox.add(fill(2, ['A1']));
  t.equal(outbox.full, true);
  expectInvariant(t, () => outbox.add(fill(3, ['A1'])), /holds 2 fills/);
  outbox.settle(1, 'A1');
  outbox.confirmed(1);
  t.equal(outbox.full, false, 'room again once the watermark moves');
  // A recovery with more pending fills than the bound still fits them all.
  t.equal(Outbox.fromPending(1, 0, [fill(1, ['A1']), fill(2, ['A1'])]).fills, 2);
});

t.test('retry state per account', async (t) => {
  const outbox = three();
  t.equal(outbox.retryOf('A1'), undefined);
  outbox.setRetry('A1', { attempts: 2, scheduled: true, parked: false });
  t.strictSame(outbox.retryOf('A1'), { attempts: 2, scheduled: true, parked: false });
  outbox.setRetry('A1', undefined);
  t.equal(outbox.retryOf('A1'), undefined);
});
