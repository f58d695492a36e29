/**
 * Group commit and the in-memory journal, without services: batching bounds,
 * per-key order (a key is never in two batches at once), clean cuts on
 * conflicts and failures, overload and close. The SQL journal gives the same
 * guarantees against PostgreSQL (journal.test.ts).
 */
import t from 'tap';
import { GroupCommit, type GroupCommitOptions } from '../persistence/group-commit.ts';
import {
  JournalClosedError,
  JournalConflictError,
  JournalOverloadedError,
  type JournalRecord,
} from '../persistence/journal.ts';
import { MemoryJournal } from '../persistence/memory-journal.ts';
import { deferred, type Deferred } from './helpers/asserts.ts';

const record = (key: string, seq: number): JournalRecord => ({
  key,
  seq,
  eventType: 'E',
  payload: new Uint8Array([seq % 256]),
});

const options = (overrides: Partial<GroupCommitOptions> = {}): GroupCommitOptions => ({
  batchEventsMax: 100,
  flushIntervalMs: 1,
  flushesInFlightMax: 2,
  pendingEventsMax: 10_000,
  ...overrides,
});

/** A writer whose batches wait until the test releases them. */
function gatedWriter() {
  const batches: Array<{ rows: JournalRecord[]; gate: Deferred<void> }> = [];
  const write = async (rows: readonly JournalRecord[]) => {
    const gate = deferred();
    batches.push({ rows: [...rows], gate });
    await gate.promise;
    return { notWritten: new Set<number>(), fallback: false };
  };
  return { batches, write };
}

const tick = () => new Promise((resolve) => setTimeout(resolve, 5));

t.test('a full batch goes out at once; the rest waits for a free flush', async (t) => {
  const w = gatedWriter();
  const gc = new GroupCommit(w.write, options({ batchEventsMax: 3, flushesInFlightMax: 1 }));
  const appended = [1, 2, 3, 4, 5].map((seq) => gc.append([record(`k${seq}`, 1)]));
  await tick();
  t.equal(w.batches.length, 1, 'one flush in flight (its bound)');
  t.same(
    w.batches[0]?.rows.map((r) => r.key),
    ['k1', 'k2', 'k3'],
    'oldest first, at most batchEventsMax',
  );
  t.equal(gc.pending, 2);
  w.batches[0]?.gate.resolve();
  await tick();
  t.equal(w.batches.length, 2, 'what queued during the flush goes out when it ends');
  w.batches[1]?.gate.resolve();
  await Promise.all(appended);
  t.equal(gc.stats.events, 5);
  t.equal(gc.stats.batches, 2);
  t.equal(gc.stats.batchEventsLargest, 3);
});

t.test('an append never straddles two commits; one larger than the bound goes alone', async (t) => {
  const w = gatedWriter();
  const gc = new GroupCommit(w.write, options({ batchEventsMax: 3, flushesInFlightMax: 4 }));
  const a = gc.append([record('a', 1), record('a', 2)]);
  const b = gc.append([record('b', 1), record('b', 2)]);
  const big = gc.append([1, 2, 3, 4, 5].map((seq) => record('c', seq)));
  await tick();
  t.same(
    w.batches.map((x) => x.rows.map((r) => `${r.key}#${r.seq}`)),
    [
      ['a#1', 'a#2'],
      ['b#1', 'b#2'],
      ['c#1', 'c#2', 'c#3', 'c#4', 'c#5'],
    ],
    'b waits for a batch with room; c goes alone',
  );
  for (const x of w.batches) x.gate.resolve();
  await Promise.all([a, b, big]);
  t.equal(gc.stats.batches, 3);
});

t.test('a key is never in two batches at once; its records commit in order', async (t) => {
  const w = gatedWriter();
  const gc = new GroupCommit(w.write, options({ flushesInFlightMax: 4 }));
  const first = gc.append([record('a', 1), record('a', 2)]);
  await tick();
  const second = gc.append([record('a', 3)]);
  const other = gc.append([record('b', 1)]);
  await tick();
  t.equal(w.batches.length, 2, 'b goes out while a waits for its batch in flight');
  t.same(
    w.batches[1]?.rows.map((r) => `${r.key}#${r.seq}`),
    ['b#1'],
  );
  w.batches[0]?.gate.resolve();
  await first;
  await tick();
  t.same(
    w.batches[2]?.rows.map((r) => `${r.key}#${r.seq}`),
    ['a#3'],
    'a#3 follows once a#1..2 landed',
  );
  for (const b of w.batches) b.gate.resolve();
  await Promise.all([second, other]);
});

t.test('sequence numbers per key only grow: a repeat is a bug, refused loudly', async (t) => {
  const gc = new GroupCommit(async () => ({ notWritten: new Set(), fallback: false }), options());
  const ok = gc.append([record('a', 1)]);
  await t.rejects(gc.append([record('a', 1)]), { code: 'INVARIANT' });
  await t.rejects(gc.append([record('a', 3)]), { code: 'INVARIANT' }, 'a gap too');
  await ok;
  await t.rejects(gc.append([record('a', 0)]), RangeError);
});

t.test('a failed batch fails its records and the key’s queued later records', async (t) => {
  const failure = new Error('connection reset');
  let calls = 0;
  const gc = new GroupCommit(
    async () => {
      calls++;
      await tick();
      throw failure;
    },
    options({ flushesInFlightMax: 1 }),
  );
  const first = gc.append([record('a', 1)]);
  await new Promise((resolve) => setTimeout(resolve, 2));
  const later = gc.append([record('a', 2)]);
  await t.rejects(first, failure);
  await t.rejects(later, failure, 'a#2 would leave a hole: failed with a#1');
  t.equal(calls, 1, 'a#2 was never written');
  t.equal(gc.pending, 0);
});

t.test(
  'two writers on one memory journal: the later rows conflict, nothing is overwritten',
  async (t) => {
    const journal = new MemoryJournal(options());
    await journal.append([record('a', 1), record('a', 2)]);
    await journal.drain();
    // A restarted actor that missed #2 appends #2 and #3 again (a new GroupCommit cycle).
    const stale = { ...record('a', 2), payload: new Uint8Array([99]) };
    const result = journal.append([stale, record('a', 3)]);
    await t.rejects(result, JournalConflictError);
    t.same(
      journal.recordsOf('a').map((r) => [r.seq, r.payload[0]]),
      [
        [1, 1],
        [2, 2],
      ],
      '#2 kept its first payload; #3 (after the conflict) was not written',
    );
    t.equal(journal.stats.conflicts, 2);
    t.equal(journal.stats.fallbacks, 1);
  },
);

t.test(
  'bounds: overload is refused whole; close writes what is queued, then refuses',
  async (t) => {
    const journal = new MemoryJournal(options({ pendingEventsMax: 3, flushIntervalMs: 50 }));
    const accepted = journal.append([record('a', 1), record('a', 2)]);
    await t.rejects(journal.append([record('b', 1), record('b', 2)]), JournalOverloadedError);
    t.same(journal.recordsOf('b'), [], 'nothing of a refused append is queued');
    const closing = journal.close();
    await accepted;
    await closing;
    t.same(
      journal.recordsOf('a').map((r) => r.seq),
      [1, 2],
    );
    await t.rejects(journal.append([record('c', 1)]), JournalClosedError);
  },
);

t.test('snapshots: newest wins; load pages by seq', async (t) => {
  const journal = new MemoryJournal(options());
  await journal.append([1, 2, 3, 4, 5].map((seq) => record('k', seq)));
  t.same(
    (await journal.load('k', 1, 2)).map((r) => r.seq),
    [2, 3],
  );
  t.same(
    (await journal.load('k', 4, 10)).map((r) => r.seq),
    [5],
  );
  await journal.saveSnapshot({ key: 'k', seq: 4, payload: new Uint8Array([4]) });
  await journal.saveSnapshot({ key: 'k', seq: 2, payload: new Uint8Array([2]) });
  t.equal((await journal.snapshot('k'))?.seq, 4, 'an older snapshot never replaces a newer one');
  t.equal(await journal.snapshot('none'), undefined);
});

t.test('option bounds are checked', async (t) => {
  const write = async () => ({ notWritten: new Set<number>(), fallback: false });
  t.throws(() => new GroupCommit(write, options({ batchEventsMax: 0 })), RangeError);
  t.throws(() => new GroupCommit(write, options({ flushesInFlightMax: 0 })), RangeError);
});
