/**
 * The journal engine (SqlJournal) against the real PostgreSQL: group commit,
 * per-key order and paged replay, two writers, snapshots, recovery through the
 * actor layer, failed persists, and its bounds. Every test has its own
 * database (dropped at teardown).
 */
import t from 'tap';
import { ActorStoppedError } from '../actors/errors.ts';
import { decodeVersioned, encodeVersioned, packPlain } from '../persistence/codec.ts';
import { Database } from '../persistence/db.ts';
import {
  JournalClosedError,
  JournalConflictError,
  JournalGapError,
  JournalOverloadedError,
} from '../persistence/journal.ts';
import { SqlJournal, type SqlJournalOptions } from '../persistence/sql-journal.ts';
import { NactEngine } from '../system/nact-engine.ts';
import type {
  NactEngineOptions,
  PersistedEventLike,
  PersistedSnapshotLike,
  ReplayedEvent,
} from '../system/nact-engine.ts';

type JournalOptions = SqlJournalOptions & NactEngineOptions;
import { ActorSystem, EntityHost, tell } from '../system/actor-kit.ts';
import type { Failed, HostOptions, PersistentBehavior, Ref } from '../system/actor-kit.ts';
import { createLogger } from '../system/log.ts';
import { eventually, testConfig, testDatabase, uniqueSuffix } from './helpers/harness.ts';
import type { Teardown } from './helpers/harness.ts';
import { deferred } from './helpers/asserts.ts';

// ---------------------------------------------------------------- helpers ---

type Cleanup = () => Promise<void>;

/** Tracks whether a promise has settled, without ever leaving a rejection unhandled. */
function track<T>(promise: Promise<T>): {
  settled: () => boolean;
  outcome: Promise<PromiseSettledResult<T>>;
} {
  let settled = false;
  const outcome = promise.then(
    (value): PromiseSettledResult<T> => {
      settled = true;
      return { status: 'fulfilled', value };
    },
    (reason: unknown): PromiseSettledResult<T> => {
      settled = true;
      return { status: 'rejected', reason };
    },
  );
  return { settled: () => settled, outcome };
}

/** Fails (instead of hanging the file) if `promise` has not settled within 10 s. */
async function deadline<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle within 10 s`)), 10_000);
  });
  try {
    return await Promise.race([promise, expired]);
  } finally {
    clearTimeout(timer);
  }
}

function options(overrides: Partial<JournalOptions> = {}): JournalOptions {
  return {
    batchEventsMax: 1000,
    flushIntervalMs: 5,
    flushesInFlightMax: 3,
    pendingEventsMax: 100_000,
    replayPageEvents: 100,
    recoveryConcurrencyMax: 4,
    ...overrides,
  };
}

function added(key: string, sequenceNumber: number, n: number): PersistedEventLike {
  return {
    key,
    sequenceNumber,
    data: { eventType: 'Added', payload: encodeVersioned({ type: 'Added', n }) },
  };
}

const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex');

interface Fixture {
  url: string;
  /** The harness handle: a separate pool, used for direct SQL checks. */
  db: Database;
  /** Opens another handle on the test database (another "process"), closed at teardown. */
  openDb(overrides?: { poolMax?: number; retriesMax?: number }): Promise<Database>;
  /** A journal on its own database handle, closed at teardown. */
  openJournal(
    overrides?: Partial<JournalOptions>,
    dbOverrides?: { poolMax?: number; retriesMax?: number },
  ): Promise<{ journal: NactEngine; jdb: Database }>;
  /** Runs at teardown, before the handles close and the database is dropped (last added runs first). */
  onTeardown(fn: Cleanup): void;
}

async function fixture(tt: Teardown): Promise<Fixture> {
  const config = testConfig();
  const cleanups: Cleanup[] = [];
  const before: Cleanup[] = [
    async () => {
      for (const fn of cleanups.reverse()) await fn().catch(() => undefined);
    },
  ];
  const { url, db } = await testDatabase(tt, config, before);
  const openDb = async (o: { poolMax?: number; retriesMax?: number } = {}) => {
    const handle = await Database.open({
      url,
      poolMax: o.poolMax ?? 4,
      retriesMax: o.retriesMax ?? 8,
      retryBackoffMs: 2,
    });
    cleanups.push(() => handle.close());
    return handle;
  };
  return {
    url,
    db,
    openDb,
    openJournal: async (overrides = {}, dbOverrides = {}) => {
      const jdb = await openDb(dbOverrides);
      const o = options(overrides);
      const journal = new NactEngine(new SqlJournal(jdb, o), o);
      cleanups.push(() => journal.close());
      return { journal, jdb };
    },
    onTeardown: (fn) => cleanups.push(fn),
  };
}

async function journalRows(
  db: Database,
  key: string,
): Promise<Array<{ seq: number; eventType: string; n: unknown }>> {
  const rows = await db.query<{ sequence_nr: string; event_type: string; payload: Buffer }>(
    'SELECT sequence_nr, event_type, payload FROM journal WHERE persistence_key = $1 ORDER BY sequence_nr',
    [key],
  );
  return rows.map((r) => ({
    seq: Number(r.sequence_nr),
    eventType: r.event_type,
    n: (decodeVersioned(r.payload, 'test row') as { n: unknown }).n,
  }));
}

async function insertRow(db: Database, key: string, seq: number, n: number): Promise<void> {
  await db.query(
    'INSERT INTO journal (persistence_key, sequence_nr, event_type, payload) VALUES ($1, $2, $3, $4)',
    [key, seq, 'Added', encodeVersioned({ type: 'Added', n })],
  );
}

/** Replays `key` after `offset` and returns what the reducer saw. */
async function replay(
  journal: NactEngine,
  key: string,
  offset: number,
): Promise<{ seqs: number[]; ns: unknown[]; indexes: number[] }> {
  return journal.events(key, offset).reduce(
    (acc, event: ReplayedEvent, index) => {
      const a = acc as { seqs: number[]; ns: unknown[]; indexes: number[] };
      a.seqs.push(event.sequenceNumber);
      a.ns.push((decodeVersioned(event.data.payload, 'replayed') as { n: unknown }).n);
      a.indexes.push(index);
      return a;
    },
    { seqs: [] as number[], ns: [] as unknown[], indexes: [] as number[] },
  );
}

const range = (from: number, to: number): number[] =>
  Array.from({ length: to - from + 1 }, (_, i) => from + i);

// -------------------------------------------------------------- batching ---

t.test('group commit: concurrent persists share few INSERTs', async (t) => {
  const f = await fixture(t);
  const { journal } = await f.openJournal({ batchEventsMax: 1000, flushIntervalMs: 5 });
  const N = 500;
  // Each promise checks, from the harness's own pool, that its row is committed.
  const visible = await Promise.all(
    range(0, N - 1).map((i) =>
      journal.persist(added(`big-${i}`, 1, i)).then(async () => {
        const rows = await f.db.query(
          'SELECT 1 FROM journal WHERE persistence_key = $1 AND sequence_nr = 1',
          [`big-${i}`],
        );
        return rows.length;
      }),
    ),
  );
  t.equal(
    visible.filter((n) => n === 1).length,
    N,
    'every row is visible once its promise resolves',
  );
  t.ok(
    journal.stats.batches >= 1 && journal.stats.batches <= 2,
    `few batches (${journal.stats.batches})`,
  );
  t.equal(journal.stats.events, N);
  t.equal(journal.stats.conflicts, 0);
  const [count] = await f.db.query<{ n: number }>('SELECT count(*)::int AS n FROM journal');
  t.equal(count?.n, N, 'all rows are in the table');
  // xmin is the inserting transaction: one per committed batch.
  const txs = await f.db.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM journal GROUP BY xmin::text',
  );
  t.equal(txs.length, journal.stats.batches, 'one transaction per batch');
});

t.test('group commit: batchEventsMax bounds every INSERT', async (t) => {
  const f = await fixture(t);
  const { journal } = await f.openJournal({ batchEventsMax: 10, flushIntervalMs: 5 });
  const N = 500;
  const visible = await Promise.all(
    range(0, N - 1).map((i) =>
      journal.persist(added(`small-${i}`, 1, i)).then(async () => {
        const rows = await f.db.query(
          'SELECT 1 FROM journal WHERE persistence_key = $1 AND sequence_nr = 1',
          [`small-${i}`],
        );
        return rows.length;
      }),
    ),
  );
  t.equal(
    visible.filter((n) => n === 1).length,
    N,
    'every row is visible once its promise resolves',
  );
  t.ok(journal.stats.batches >= N / 10, `at least ${N / 10} batches (${journal.stats.batches})`);
  t.ok(journal.stats.batchEventsLargest <= 10, `largest batch ${journal.stats.batchEventsLargest}`);
  t.equal(journal.stats.events, N);
  const txs = await f.db.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM journal GROUP BY xmin::text',
  );
  t.equal(
    txs.reduce((sum, r) => sum + r.n, 0),
    N,
    'all rows are in the table',
  );
  t.ok(txs.length >= N / 10, `at least ${N / 10} transactions (${txs.length})`);
  t.ok(
    txs.every((r) => r.n <= 10),
    `no transaction holds more than 10 rows (largest ${Math.max(...txs.map((r) => r.n))})`,
  );
});

t.test('a persist resolves only after its transaction commits', async (t) => {
  const f = await fixture(t);
  const { journal } = await f.openJournal({ flushIntervalMs: 1 });
  // Another session holds a lock that makes the journal's INSERT wait.
  const locked = deferred();
  const release = deferred();
  const holder = f.db.serializable(async (q) => {
    await q('LOCK TABLE journal IN EXCLUSIVE MODE');
    locked.resolve();
    await release.promise;
  });
  f.onTeardown(async () => {
    release.resolve();
    await holder.catch(() => undefined);
  });
  await locked.promise;
  const p = track(journal.persist(added('locked', 1, 42)));
  await eventually('the journal INSERT to wait on the lock', async () => {
    const rows = await f.db.query(
      `SELECT 1 FROM pg_stat_activity
       WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE 'INSERT INTO journal%'`,
    );
    return rows.length > 0 ? true : undefined;
  });
  t.equal(p.settled(), false, 'not resolved while the INSERT cannot commit');
  t.same(await journalRows(f.db, 'locked'), [], 'and the row is not visible');
  release.resolve();
  await holder;
  const outcome = await p.outcome;
  t.equal(outcome.status, 'fulfilled');
  t.same(await journalRows(f.db, 'locked'), [{ seq: 1, eventType: 'Added', n: 42 }]);
});

// ------------------------------------------------------ order and replay ---

t.test('events of one key replay in order, page by page', async (t) => {
  const f = await fixture(t);
  const { journal } = await f.openJournal({ replayPageEvents: 3, flushIntervalMs: 1 });
  const K = 10;
  // One key persists 1..K sequentially while two others interleave.
  const writer = async (key: string, base: number) => {
    for (const seq of range(1, K)) await journal.persist(added(key, seq, base + seq));
  };
  await Promise.all([writer('A', 100), writer('B', 200), writer('C', 300)]);

  const a = await replay(journal, 'A', 0);
  t.same(a.seqs, range(1, K), 'all K events, in order');
  t.same(
    a.ns,
    range(1, K).map((s) => 100 + s),
    'payloads belong to A',
  );
  t.same(a.indexes, range(0, K - 1), 'reducer indexes count from 0');
  t.same((await replay(journal, 'B', 0)).ns, range(201, 200 + K));
  t.same((await replay(journal, 'A', 4)).seqs, range(5, K), 'starts after the offset');
  t.same(
    (await replay(journal, 'A', 7)).seqs,
    [8, 9, 10],
    'a last full page is followed by an empty one',
  );
  t.same((await replay(journal, 'A', K)).seqs, [], 'nothing after the end');
  t.same((await replay(journal, 'nobody', 0)).seqs, [], 'unknown key');

  // The reducer yielding undefined stops the replay (nact's early stop).
  let calls = 0;
  const stopped = await journal
    .events('A', 0)
    .reduce<number | undefined>((acc) => (++calls === 2 ? undefined : acc), 0);
  t.equal(stopped, undefined);
  t.equal(calls, 2, 'no event is reduced after the stop');

  // A missing row in the middle is a gap, not a silent skip.
  await f.db.query('DELETE FROM journal WHERE persistence_key = $1 AND sequence_nr = 5', ['A']);
  await t.rejects(replay(journal, 'A', 0), { name: 'JournalGapError', code: 'JOURNAL_GAP' });
  const gap = await replay(journal, 'A', 0).catch((e: unknown) => e);
  t.ok(gap instanceof JournalGapError, 'JournalGapError');
  t.match((gap as Error).message, /#4 to #6/);
  t.same((await replay(journal, 'A', 5)).seqs, range(6, K), 'replay after the hole still works');
  // A missing first row is a gap too.
  await f.db.query('DELETE FROM journal WHERE persistence_key = $1 AND sequence_nr = 1', ['B']);
  await t.rejects(replay(journal, 'B', 0), { code: 'JOURNAL_GAP' });
});

t.test('recoveries are bounded and permits are released', async (t) => {
  const f = await fixture(t);
  // One pooled connection: queries run in order, so a query issued after
  // another one has finished only when the first has.
  const { journal, jdb } = await f.openJournal(
    { recoveryConcurrencyMax: 1, replayPageEvents: 2 },
    { poolMax: 1 },
  );
  for (const seq of range(1, 3)) await journal.persist(added('r1', seq, seq));
  await journal.takeSnapshot({
    key: 'r2',
    sequenceNumber: 0,
    data: encodeVersioned({}),
    createdAt: 0,
  });

  // Lets every pending microtask run (so a recovery that is not blocked has
  // queued its SELECT on the one connection), then runs a query behind it.
  const afterQueued = async (handle: Database) => {
    await new Promise((resolve) => setImmediate(resolve));
    await handle.query('SELECT 1');
  };
  t.equal(await journal.latestSnapshot('r1'), undefined, 'no snapshot');
  const second = track(journal.latestSnapshot('r2'));
  await afterQueued(jdb);
  t.equal(second.settled(), false, 'a second recovery waits for the permit');
  t.same((await replay(journal, 'r1', 0)).seqs, [1, 2, 3]);
  const s2 = await deadline(second.outcome, 'the second recovery');
  t.equal(s2.status, 'fulfilled', 'the end of replay releases the permit');

  // A replay that fails releases its permit too.
  await f.db.query('DELETE FROM journal WHERE persistence_key = $1 AND sequence_nr = 2', ['r1']);
  await t.rejects(
    replay(journal, 'r2', 0).then(() => replay(journal, 'r1', 0)),
    {
      code: 'JOURNAL_GAP',
    },
  );
  const third = track(journal.latestSnapshot('r1'));
  t.equal(
    (await deadline(third.outcome, 'a recovery after a failed replay')).status,
    'fulfilled',
    'permit free after a failed replay',
  );

  // releaseRecovery for a key holding no permit does not add permits.
  journal.releaseRecovery('nobody');
  journal.releaseRecovery('nobody');
  const fourth = track(journal.latestSnapshot('r2'));
  await afterQueued(jdb);
  t.equal(fourth.settled(), false, 'still one recovery at a time');
  journal.releaseRecovery('r1');
  t.equal((await deadline(fourth.outcome, 'the fourth recovery')).status, 'fulfilled');
  journal.releaseRecovery('r2');
});

// ------------------------------------------------------------- conflicts ---

t.test(
  'two writers on one (key, seq): exactly one wins, the row is never overwritten',
  async (t) => {
    const f = await fixture(t);
    const one = (await f.openJournal({ flushIntervalMs: 1 })).journal;
    const two = (await f.openJournal({ flushIntervalMs: 1 })).journal;
    const keys = range(1, 20).map((i) => `w-${i}`);
    const outcomes = await Promise.all(
      keys.map(async (key, i) => {
        const [a, b] = await Promise.allSettled([
          one.persist(added(key, 1, 1000 + i)),
          two.persist(added(key, 1, 2000 + i)),
        ]);
        return { key, i, a, b };
      }),
    );
    for (const { key, i, a, b } of outcomes) {
      const winners = [a, b].filter((o) => o.status === 'fulfilled');
      t.equal(winners.length, 1, `${key}: exactly one writer wins`);
      const loser = a.status === 'rejected' ? a : b.status === 'rejected' ? b : undefined;
      t.ok(
        loser?.reason instanceof JournalConflictError,
        `${key}: the other gets JournalConflictError`,
      );
      t.equal((loser?.reason as { code?: string } | undefined)?.code, 'JOURNAL_CONFLICT');
      const expected = a.status === 'fulfilled' ? 1000 + i : 2000 + i;
      t.same(
        await journalRows(f.db, key),
        [{ seq: 1, eventType: 'Added', n: expected }],
        `${key}: the winner's payload`,
      );
    }
    t.equal(one.stats.conflicts + two.stats.conflicts, keys.length, 'one conflict per key');
    t.equal(one.stats.events + two.stats.events, keys.length, 'one write per key');

    // A later writer of an existing row never overwrites it.
    const before = await journalRows(f.db, 'w-1');
    await t.rejects(one.persist(added('w-1', 1, 9999)), { code: 'JOURNAL_CONFLICT' });
    t.same(await journalRows(f.db, 'w-1'), before);
  },
);

t.test(
  'one process appending one (key, seq) twice is a bug: refused loudly, the first wins',
  async (t) => {
    const f = await fixture(t);
    const { journal } = await f.openJournal({ flushIntervalMs: 5 });
    const [first, second, other] = await Promise.allSettled([
      journal.persist(added('dup', 1, 1)),
      journal.persist(added('dup', 1, 2)),
      journal.persist(added('other', 1, 3)),
    ]);
    t.equal(first?.status, 'fulfilled');
    t.equal(second?.status, 'rejected');
    t.match(second?.status === 'rejected' && second.reason, { code: 'INVARIANT' });
    t.equal(other?.status, 'fulfilled', 'other keys of the batch are unaffected');
    t.equal(journal.stats.batches, 1, 'one batch');
    t.equal(journal.stats.conflicts, 0, 'refused before it reached the database');
    t.same(await journalRows(f.db, 'dup'), [{ seq: 1, eventType: 'Added', n: 1 }]);
  },
);

t.test('a conflict fails the later events of that key in the same batch too', async (t) => {
  // Another writer owns k#1. Our k#2 was decided from a state without its
  // k#1: it must not become durable after k#1 failed (the actor resets and
  // recovers; its caller is told the command failed).
  const f = await fixture(t);
  const { journal } = await f.openJournal({ flushIntervalMs: 5 });
  await insertRow(f.db, 'k', 1, 100);
  const [e1, e2] = await Promise.allSettled([
    journal.persist(added('k', 1, 1)),
    journal.persist(added('k', 2, 2)),
  ]);
  t.equal(e1?.status, 'rejected', 'k#1 conflicts');
  t.equal(e2?.status, 'rejected', 'k#2 (same writer, after the conflict) is rejected as well');
  t.same(
    await journalRows(f.db, 'k'),
    [{ seq: 1, eventType: 'Added', n: 100 }],
    'only the other writer’s row is stored',
  );
});

for (const flushesInFlightMax of [1, 2]) {
  t.test(
    `a conflict fails the key's events in later batches too (flushesInFlightMax ${flushesInFlightMax})`,
    async (t) => {
      // One command staged k#1..k#3; they split into two INSERTs ([1, 2] and
      // [3]). k#1 belongs to another writer, so none of ours may land.
      const f = await fixture(t);
      const { journal } = await f.openJournal({ batchEventsMax: 2, flushesInFlightMax });
      await insertRow(f.db, 'k', 1, 100);
      const outcomes = await Promise.allSettled(
        range(1, 3).map((seq) => journal.persist(added('k', seq, seq))),
      );
      t.same(
        outcomes.map((o) => o.status),
        ['rejected', 'rejected', 'rejected'],
        'every event after the conflict is rejected',
      );
      t.same(await journalRows(f.db, 'k'), [{ seq: 1, eventType: 'Added', n: 100 }]);
    },
  );

  t.test(
    `a failed write never leaves a hole in a key's journal (flushesInFlightMax ${flushesInFlightMax})`,
    async (t) => {
      // k#1's INSERT fails (here: a NOT NULL violation; in production a lost
      // connection or exhausted retries). k#2, in the next INSERT, must not
      // land: a journal 2 without 1 can never be replayed (JournalGapError).
      const f = await fixture(t);
      const { journal } = await f.openJournal({ batchEventsMax: 1, flushesInFlightMax });
      const broken: PersistedEventLike = {
        key: 'k',
        sequenceNumber: 1,
        data: {
          eventType: null as unknown as string,
          payload: encodeVersioned({ type: 'Added', n: 1 }),
        },
      };
      const [first, second] = await Promise.allSettled([
        journal.persist(broken),
        journal.persist(added('k', 2, 2)),
      ]);
      t.equal(first?.status, 'rejected', 'k#1 fails');
      t.equal(second?.status, 'rejected', 'k#2 fails with it');
      t.same(await journalRows(f.db, 'k'), [], 'no hole');
      t.same((await replay(journal, 'k', 0)).seqs, [], 'the key still replays');
    },
  );
}

// ------------------------------------------------------------- snapshots ---

t.test('snapshots: latest wins, an older one never overwrites a newer', async (t) => {
  const f = await fixture(t);
  const { journal } = await f.openJournal({}, { retriesMax: 50 });
  const snap = (sequenceNumber: number, tag: string): PersistedSnapshotLike => ({
    key: 's',
    sequenceNumber,
    data: encodeVersioned({ tag }),
    createdAt: Date.now(),
  });
  const latest = async (key = 's') => {
    const s = await journal.latestSnapshot(key);
    journal.releaseRecovery(key);
    return (
      s && { seq: s.sequenceNumber, tag: (decodeVersioned(s.data, 'snap') as { tag: string }).tag }
    );
  };
  t.equal(await latest(), undefined, 'none yet');
  await journal.takeSnapshot(snap(5, 'five'));
  t.same(await latest(), { seq: 5, tag: 'five' });
  const read = await journal.latestSnapshot('s');
  journal.releaseRecovery('s');
  t.equal(
    hex(read?.data ?? new Uint8Array()),
    hex(encodeVersioned({ tag: 'five' })),
    'bytes round-trip',
  );
  t.equal(read?.key, 's');
  t.ok(typeof read?.createdAt === 'number' && read.createdAt > 0, 'createdAt is a timestamp');

  await journal.takeSnapshot(snap(3, 'three'));
  t.same(await latest(), { seq: 5, tag: 'five' }, 'older sequence ignored');
  await journal.takeSnapshot(snap(9, 'nine'));
  t.same(await latest(), { seq: 9, tag: 'nine' }, 'newer sequence replaces');

  // Concurrent writers, in scrambled order: the highest sequence stays.
  const order = [14, 11, 20, 12, 17, 13, 19, 15, 10, 18, 16];
  await Promise.all(order.map((seq) => journal.takeSnapshot(snap(seq, `s${seq}`))));
  t.same(await latest(), { seq: 20, tag: 's20' });
  const [row] = await f.db.query<{ n: number }>('SELECT count(*)::int AS n FROM snapshots');
  t.equal(row?.n, 1, 'one snapshot row per key');
});

// ------------------------------------------------------------- the actor ---

type CounterReply = { type: 'Total'; total: number; seq: number } | Failed;
type CounterCommand =
  | { type: 'Add'; n: number; replyTo: Ref<CounterReply> }
  | { type: 'AddEach'; ns: number[]; replyTo: Ref<CounterReply> }
  | { type: 'GetTotal'; replyTo: Ref<CounterReply> };
interface CounterEvent {
  type: 'Added';
  n: number;
}
interface CounterState {
  total: number;
}

function isNumberRecord<K extends string>(data: unknown, field: K): data is Record<K, number> {
  return (
    typeof data === 'object' &&
    data !== null &&
    typeof (data as Record<string, unknown>)[field] === 'number'
  );
}

const counter: PersistentBehavior<CounterState, CounterCommand, CounterEvent> = {
  kind: 'counter',
  initialState: () => ({ total: 0 }),
  evolve: (state, event) => ({ total: state.total + event.n }),
  receive(state, command, ctx) {
    const stage = (s: CounterState, n: number): CounterState => {
      const event: CounterEvent = { type: 'Added', n };
      ctx.persist(event);
      return counter.evolve(s, event);
    };
    let next = state;
    switch (command.type) {
      case 'Add':
        next = stage(state, command.n);
        break;
      case 'AddEach':
        for (const n of command.ns) next = stage(next, n);
        break;
      case 'GetTotal':
        break;
    }
    const reply: CounterReply = { type: 'Total', total: next.total, seq: ctx.journalSeq };
    ctx.effect(() => tell(command.replyTo, reply));
    return next;
  },
  eventType: (event) => event.type,
  decodeEvent(data) {
    if (!isNumberRecord(data, 'n') || (data as { type?: unknown }).type !== 'Added') {
      throw new Error(`unknown counter event ${JSON.stringify(data)}`);
    }
    return { type: 'Added', n: data.n };
  },
  encodeSnapshot: (state) => state,
  decodeSnapshot(data) {
    if (!isNumberRecord(data, 'total')) throw new Error('bad counter snapshot');
    return { total: data.total };
  },
};

const hostOptions: HostOptions = {
  idleMs: 60_000,
  batchCommandsMax: 16,
  mailboxMax: 1000,
  snapshotEveryEvents: 5,
  scheduledMax: 100,
  supervision: { crashesMax: 3, windowMs: 60_000, backoffMinMs: 1, backoffMaxMs: 10 },
};

/** An actor system with a counter host on `journal`; stopped at teardown (or earlier by `stop`). */
function startCounters(
  f: Fixture,
  engine: object,
  journal: NactEngine,
): { host: EntityHost<CounterState, CounterCommand, CounterEvent>; stop: () => Promise<void> } {
  const system = new ActorSystem(engine, `journal-test-${uniqueSuffix()}`);
  const host = new EntityHost(
    system,
    counter,
    {
      codec: { encode: encodeVersioned, decode: decodeVersioned },
      permits: journal,
      log: createLogger('silent'),
    },
    hostOptions,
  );
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    host.close();
    system.stop();
    await journal.drain();
  };
  f.onTeardown(stop);
  return { host, stop };
}

const add = (
  host: EntityHost<CounterState, CounterCommand, CounterEvent>,
  id: string,
  n: number,
): Promise<CounterReply> =>
  host.ask<CounterReply>(id, (replyTo) => ({ type: 'Add', n, replyTo }), 5000);
const total = (
  host: EntityHost<CounterState, CounterCommand, CounterEvent>,
  id: string,
): Promise<CounterReply> =>
  host.ask<CounterReply>(id, (replyTo) => ({ type: 'GetTotal', replyTo }), 5000);

const ACTOR_JOURNAL: Partial<JournalOptions> = {
  batchEventsMax: 100,
  flushIntervalMs: 1,
  flushesInFlightMax: 2,
  replayPageEvents: 3,
};

t.test('an actor recovers from its snapshot plus the journal tail after a restart', async (t) => {
  const f = await fixture(t);
  const first = await f.openJournal(ACTOR_JOURNAL);
  const a = startCounters(f, first.journal, first.journal);
  let expected = 0;
  for (const n of range(1, 12)) {
    expected += n;
    t.same(await add(a.host, 'c1', n), { type: 'Total', total: expected, seq: n }, `Add ${n}`);
  }
  t.equal(expected, 78);
  // Snapshots are written behind the actor's back (every 5 events): wait for the one at 10.
  const snapshot = await eventually('the snapshot at sequence 10', async () => {
    const [row] = await f.db.query<{ sequence_nr: string; payload: Buffer }>(
      'SELECT sequence_nr, payload FROM snapshots WHERE persistence_key = $1',
      ['counter-c1'],
    );
    return row && Number(row.sequence_nr) === 10 ? row : undefined;
  });
  t.ok(Number(snapshot.sequence_nr) >= 5, 'a snapshot row exists for counter-c1');
  t.same(decodeVersioned(snapshot.payload, 'snapshot'), { s: { total: 55 }, seq: 10 });
  t.same(
    (await journalRows(f.db, 'counter-c1')).map((r) => r.seq),
    range(1, 12),
  );
  await a.stop();

  // A new process: new database handle, journal, actor system and host.
  const second = await f.openJournal(ACTOR_JOURNAL);
  const seen = {
    snapshotSeq: undefined as number | undefined,
    offset: -1,
    replayed: [] as number[],
  };
  const j2 = second.journal;
  const recorder = {
    persist: (e: PersistedEventLike) => j2.persist(e),
    takeSnapshot: (s: PersistedSnapshotLike) => j2.takeSnapshot(s),
    latestSnapshot: async (key: string) => {
      const s = await j2.latestSnapshot(key);
      seen.snapshotSeq = s?.sequenceNumber;
      return s;
    },
    events: (key: string, offset: number) => {
      seen.offset = offset;
      const inner = j2.events(key, offset);
      return {
        reduce: <A>(
          reducer: (acc: A | Promise<A>, event: ReplayedEvent, index: number) => A | Promise<A>,
          initial: A | Promise<A>,
        ) =>
          inner.reduce<A>((acc, event, index) => {
            seen.replayed.push(event.sequenceNumber);
            return reducer(acc, event, index);
          }, initial),
      };
    },
  };
  const b = startCounters(f, recorder, j2);
  t.same(
    await total(b.host, 'c1'),
    { type: 'Total', total: 78, seq: 12 },
    'same total after restart',
  );
  t.equal(seen.snapshotSeq, 10, 'recovered from the snapshot');
  t.equal(seen.offset, 10, 'replay starts after the snapshot');
  t.same(seen.replayed, [11, 12], 'and reads only the journal tail');
  t.same(
    await add(b.host, 'c1', 13),
    { type: 'Total', total: 91, seq: 13 },
    'continues the sequence',
  );
  t.same(
    (await journalRows(f.db, 'counter-c1')).map((r) => r.seq),
    range(1, 13),
    'no gap',
  );
});

t.test(
  'a snapshot with an unknown schema version stops the actor instead of recovering it',
  async (t) => {
    const f = await fixture(t);
    const { journal } = await f.openJournal(ACTOR_JOURNAL);
    for (const seq of range(1, 3)) await insertRow(f.db, 'counter-c9', seq, seq);
    await f.db.query(
      'INSERT INTO snapshots (persistence_key, sequence_nr, payload) VALUES ($1, $2, $3)',
      ['counter-c9', 2, packPlain({ v: 99, d: { s: { total: 1000 }, seq: 2 } })],
    );
    // A healthy neighbour in the same host is unaffected.
    await insertRow(f.db, 'counter-ok', 1, 5);
    const { host } = startCounters(f, journal, journal);
    const pending = track(total(host, 'c9'));
    const stopped = await eventually('counter/c9 to be stopped', () => {
      const names = host.stoppedActors();
      return names.length > 0 ? names : undefined;
    });
    t.equal(stopped.length, 1);
    t.match(
      stopped[0],
      /^counter\/c9: SchemaVersionError: snapshot counter-c9 has schema version 99/,
    );
    t.equal(
      host.crashCount,
      hostOptions.supervision.crashesMax + 1,
      'reset crashesMax times, then stopped',
    );
    // The queued command is answered Failed when the actor stops: never with a (wrong) total.
    t.match(
      await pending.outcome,
      {
        status: 'fulfilled',
        value: { type: 'Failed', code: 'ACTOR_STOPPED', command: { type: 'GetTotal' } },
      },
      'the queued ask is told the actor stopped',
    );
    await t.rejects(async () => total(host, 'c9'), ActorStoppedError, 'later asks are refused');
    t.same(await total(host, 'ok'), { type: 'Total', total: 5, seq: 1 }, 'other actors recover');
  },
);

t.test(
  'a failed persist resets the actor, which recovers and continues without a gap',
  async (t) => {
    const f = await fixture(t);
    const { journal } = await f.openJournal(ACTOR_JOURNAL);
    const { host } = startCounters(f, journal, journal);
    t.same(await add(host, 'c2', 1), { type: 'Total', total: 1, seq: 1 });
    t.same(await add(host, 'c2', 2), { type: 'Total', total: 3, seq: 2 });
    // Another writer takes sequence 3 behind the actor's back.
    await insertRow(f.db, 'counter-c2', 3, 100);
    const failed = await add(host, 'c2', 5);
    t.equal(failed.type, 'Failed', 'the command fails');
    t.equal(failed.type === 'Failed' ? failed.code : undefined, 'JOURNAL_CONFLICT');
    t.same(
      await add(host, 'c2', 7),
      { type: 'Total', total: 110, seq: 4 },
      'recovered with the foreign event',
    );
    t.same(await journalRows(f.db, 'counter-c2'), [
      { seq: 1, eventType: 'Added', n: 1 },
      { seq: 2, eventType: 'Added', n: 2 },
      { seq: 3, eventType: 'Added', n: 100 },
      { seq: 4, eventType: 'Added', n: 7 },
    ]);
    t.equal(host.crashCount, 1, 'one crash, one reset');
    t.same(host.stoppedActors(), []);
  },
);

t.test('a failed persist of a multi-event command leaves none of its events durable', async (t) => {
  const f = await fixture(t);
  const { journal } = await f.openJournal(ACTOR_JOURNAL);
  const { host } = startCounters(f, journal, journal);
  t.same(await add(host, 'c4', 1), { type: 'Total', total: 1, seq: 1 });
  await insertRow(f.db, 'counter-c4', 2, 100);
  const failed = await host.ask<CounterReply>(
    'c4',
    (replyTo) => ({ type: 'AddEach', ns: [5, 6], replyTo }),
    5000,
  );
  t.equal(
    failed.type === 'Failed' ? failed.code : failed.type,
    'JOURNAL_CONFLICT',
    'the command fails',
  );
  // The sender was told Failed, so nothing of its command may count.
  t.same(
    await total(host, 'c4'),
    { type: 'Total', total: 101, seq: 2 },
    'only the foreign event counts',
  );
  t.same(await journalRows(f.db, 'counter-c4'), [
    { seq: 1, eventType: 'Added', n: 1 },
    { seq: 2, eventType: 'Added', n: 100 },
  ]);
});

// ---------------------------------------------------------------- bounds ---

t.test('bounded: overload and close', async (t) => {
  const f = await fixture(t);
  const { journal } = await f.openJournal({
    batchEventsMax: 2,
    flushesInFlightMax: 1,
    pendingEventsMax: 4,
    flushIntervalMs: 1000,
  });
  // Two go out at once (a full batch); four more wait behind that flush.
  const accepted = range(1, 6).map((seq) => journal.persist(added('b', seq, seq)));
  const overloaded = journal.persist(added('b', 7, 7));
  await t.rejects(overloaded, JournalOverloadedError);
  await t.rejects(journal.persist(added('b', 7, 7)), { code: 'JOURNAL_OVERLOADED' });
  await Promise.all(accepted);
  t.same(
    (await journalRows(f.db, 'b')).map((r) => r.seq),
    range(1, 6),
    'the accepted events are written; the refused one is not',
  );
  t.equal(journal.stats.batches, 3);
  const again = journal.persist(added('b', 7, 7));
  await journal.drain();
  await again;
  t.same(
    (await journalRows(f.db, 'b')).map((r) => r.seq),
    range(1, 7),
    'accepting again once drained',
  );

  await t.rejects(journal.persist(added('b', 0, 0)), RangeError, 'sequence numbers start at 1');
  await t.rejects(journal.persist(added('b', 1.5, 0)), RangeError);

  // close() writes what is queued, then refuses.
  const queued = journal.persist(added('b', 8, 8));
  await journal.close();
  await queued;
  await t.rejects(journal.persist(added('b', 9, 9)), JournalClosedError);
  await t.rejects(journal.persist(added('b', 9, 9)), { code: 'JOURNAL_CLOSED' });
  t.same(
    (await journalRows(f.db, 'b')).map((r) => r.seq),
    range(1, 8),
  );
  t.throws(() => new SqlJournal(f.db, options({ batchEventsMax: 0 })), RangeError);
});
