/**
 * The SQL journal against the real PostgreSQL: group commit, per-key order
 * and paged replay, two writers, snapshots, recovery through the actor host,
 * failed persists, and its bounds. Every test has its own database (dropped
 * at teardown). The same host on the in-memory journal: kernel.test.ts.
 */
import t from 'tap';
import { ActorStoppedError } from '../actors/errors.ts';
import { decodeVersioned, encodeVersioned, packPlain } from '../persistence/codec.ts';
import { Database } from '../persistence/db.ts';
import {
  ExecutionConflictError,
  JournalClosedError,
  JournalConflictError,
  JournalGapError,
  JournalOverloadedError,
} from '../persistence/journal.ts';
import type { Journal, JournalRecord, SnapshotRecord } from '../persistence/journal.ts';
import { SqlJournal, type SqlJournalOptions } from '../persistence/sql-journal.ts';
import { replay as replayRecords } from '../system/recovery.ts';

type JournalOptions = SqlJournalOptions & { replayPageEvents: number };

/** The SQL journal with one-record helpers, so the tests read as the rows they write. */
class TestJournal {
  readonly journal: SqlJournal;
  readonly pageEvents: number;
  constructor(journal: SqlJournal, pageEvents: number) {
    this.journal = journal;
    this.pageEvents = pageEvents;
  }
  get stats() {
    return this.journal.stats;
  }
  persist(record: JournalRecord): Promise<void> {
    return this.journal.append([record]);
  }
  takeSnapshot(s: Omit<SnapshotRecord, 'createdAtMs'>): Promise<void> {
    return this.journal.saveSnapshot(s);
  }
  latestSnapshot(key: string): Promise<SnapshotRecord | undefined> {
    return this.journal.snapshot(key);
  }
  drain(): Promise<void> {
    return this.journal.drain();
  }
  close(): Promise<void> {
    return this.journal.close();
  }
}
import type { Failed, PersistentBehavior, Ref } from '../actors/kernel.ts';
import { ActorSystem, EntityHost, type HostOptions } from '../system/entity-host.ts';
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

function options(overrides: Partial<JournalOptions> = {}): JournalOptions {
  return {
    batchEventsMax: 1000,
    flushIntervalMs: 5,
    flushesInFlightMax: 3,
    pendingEventsMax: 100_000,
    replayPageEvents: 100,
    ...overrides,
  };
}

function added(key: string, seq: number, n: number): JournalRecord {
  return { key, seq, eventType: 'Added', payload: encodeVersioned({ type: 'Added', n }) };
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
  ): Promise<{ journal: TestJournal; jdb: Database }>;
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
      const journal = new TestJournal(new SqlJournal(jdb, o), o.replayPageEvents);
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
  journal: TestJournal,
  key: string,
  offset: number,
): Promise<{ seqs: number[]; ns: unknown[]; indexes: number[] }> {
  const seen = { seqs: [] as number[], ns: [] as unknown[], indexes: [] as number[] };
  await replayRecords(journal.journal, key, offset, journal.pageEvents, (record) => {
    seen.indexes.push(seen.seqs.length);
    seen.seqs.push(record.seq);
    seen.ns.push((decodeVersioned(record.payload, 'replayed') as { n: unknown }).n);
  });
  return seen;
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

  // A key's pages requested in the same turn share one query and stay apart.
  const [pageA, pageB] = await Promise.all([
    journal.journal.load('A', 2, 3),
    journal.journal.load('B', 0, 2),
  ]);
  t.same(
    pageA.map((r) => [r.key, r.seq]),
    [
      ['A', 3],
      ['A', 4],
      ['A', 5],
    ],
  );
  t.same(
    pageB.map((r) => [r.key, r.seq]),
    [
      ['B', 1],
      ['B', 2],
    ],
  );

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
      const broken: JournalRecord = {
        key: 'k',
        seq: 1,
        eventType: null as unknown as string,
        payload: encodeVersioned({ type: 'Added', n: 1 }),
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
  const snap = (seq: number, tag: string) => ({ key: 's', seq, payload: encodeVersioned({ tag }) });
  const latest = async (key = 's') => {
    const s = await journal.latestSnapshot(key);
    return s && { seq: s.seq, tag: (decodeVersioned(s.payload, 'snap') as { tag: string }).tag };
  };
  t.equal(await latest(), undefined, 'none yet');
  await journal.takeSnapshot(snap(5, 'five'));
  t.same(await latest(), { seq: 5, tag: 'five' });
  const read = await journal.latestSnapshot('s');
  t.equal(
    hex(read?.payload ?? new Uint8Array()),
    hex(encodeVersioned({ tag: 'five' })),
    'bytes round-trip',
  );
  t.equal(read?.key, 's');
  t.ok(typeof read?.createdAtMs === 'number' && read.createdAtMs > 0, 'createdAtMs is a timestamp');

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
    ctx.reply(command.replyTo, reply);
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
  snapshotsInFlightMax: 4,
  replayPageEvents: 3,
  scheduledMax: 100,
  supervision: { crashesMax: 3, windowMs: 60_000, backoffMinMs: 1, backoffMaxMs: 10 },
};

/** An actor system with a counter host on `journal`; stopped at teardown (or earlier by `stop`). */
function startCounters(
  f: Fixture,
  journal: Journal,
): { host: EntityHost<CounterState, CounterCommand, CounterEvent>; stop: () => Promise<void> } {
  const system = new ActorSystem(`journal-test-${uniqueSuffix()}`, { recoveryConcurrencyMax: 4 });
  const host = new EntityHost(
    system,
    counter,
    {
      codec: { encode: encodeVersioned, decode: decodeVersioned },
      journal,
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
  const a = startCounters(f, first.journal.journal);
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
  t.same(decodeVersioned(snapshot.payload, 'snapshot'), { s: { total: 55 }, seq: 10, f: 1 });
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
  const j2 = second.journal.journal;
  const recorder: Journal = {
    get stats() {
      return j2.stats;
    },
    append: (records) => j2.append(records),
    saveSnapshot: (snapshot) => j2.saveSnapshot(snapshot),
    execution: (fillId) => j2.execution(fillId),
    executionAt: (order, seq) => j2.executionAt(order, seq),
    fillVersionRecord: (fillId) => j2.fillVersionRecord(fillId),
    drain: () => j2.drain(),
    close: () => j2.close(),
    snapshot: async (key) => {
      const s = await j2.snapshot(key);
      seen.snapshotSeq = s?.seq;
      return s;
    },
    load: async (key, afterSeq, limit) => {
      if (seen.offset < 0) seen.offset = afterSeq;
      const page = await j2.load(key, afterSeq, limit);
      seen.replayed.push(...page.map((r) => r.seq));
      return page;
    },
  };
  const b = startCounters(f, recorder);
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
    const { host } = startCounters(f, journal.journal);
    // Each command is answered Failed with the reason (never with a wrong
    // total) and counts as a crash; past crashesMax the actor is stopped.
    for (let i = 0; i <= hostOptions.supervision.crashesMax; i++) {
      t.match(
        await total(host, 'c9'),
        { type: 'Failed', code: 'SCHEMA_VERSION_UNKNOWN', command: { type: 'GetTotal' } },
        `ask ${i + 1} is told why`,
      );
    }
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
    await t.rejects(async () => total(host, 'c9'), ActorStoppedError, 'later asks are refused');
    t.same(await total(host, 'ok'), { type: 'Total', total: 5, seq: 1 }, 'other actors recover');
  },
);

t.test(
  'a failed persist resets the actor, which recovers and continues without a gap',
  async (t) => {
    const f = await fixture(t);
    const { journal } = await f.openJournal(ACTOR_JOURNAL);
    const { host } = startCounters(f, journal.journal);
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
  const { host } = startCounters(f, journal.journal);
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

// ------------------------------------------------------------ ledger rows ---

const execution = (fillId: string, blockOrderId: string, seq: number) => ({
  fillId,
  blockOrderId,
  seq,
  // Beyond 2^53: any float on the way would change the digits.
  quantity: 9_007_199_254_740_993n,
  price: 1n,
  venue: 'XNYS',
  executedAtMs: 1_763_650_000_000 + seq,
});

const claiming = (key: string, seq: number, ...executions: ReturnType<typeof execution>[]) => ({
  ...added(key, seq, seq),
  ledger: { executions },
});

t.test('ledger rows land in the commit of their record, exact', async (t) => {
  const f = await fixture(t);
  const { journal } = await f.openJournal({ flushIntervalMs: 5 });
  const x = execution('X', 'BO-1', 1);
  const refused = {
    blockOrderId: 'BO-1',
    fillSeq: 1,
    accountId: 'A1',
    securityId: 'S',
    side: 'SELL' as const,
    quantity: 9_007_199_254_740_993n,
    price: 2n,
    reason: 'INSUFFICIENT_POSITION',
    detail: 'sell of … exceeds position 0',
  };
  await Promise.all([
    journal.persist(claiming('block-order-BO-1', 1, x)),
    journal.persist({ ...added('account-A1', 1, 1), ledger: { suspense: [refused] } }),
  ]);
  t.equal(journal.stats.fallbacks, 0, 'one statement, the fast path');
  t.strictSame(await journal.journal.execution('X'), x);
  t.strictSame(await journal.journal.executionAt('BO-1', 1), x);
  t.equal(await journal.journal.execution('nope'), undefined);
  const rows = await f.db.query<Record<string, string>>(
    'SELECT account_id, quantity::text, detail, persistence_key, sequence_nr::text FROM suspense',
  );
  t.strictSame(rows, [
    {
      account_id: 'A1',
      quantity: '9007199254740993',
      detail: 'sell of … exceeds position 0',
      persistence_key: 'account-A1',
      sequence_nr: '1',
    },
  ]);
  await journal.persist({
    ...added('account-A1', 2, 2),
    ledger: {
      resolutions: [{ blockOrderId: 'BO-1', fillSeq: 1, accountId: 'A1', resolution: 'APPLIED' }],
    },
  });
  const [resolution] = await f.db.query<{ resolution: string }>(
    'SELECT resolution FROM suspense_resolutions',
  );
  t.equal(resolution?.resolution, 'APPLIED');
});

t.test(
  'an average-price entry: the index keeps the fill it names, the lines go by release key',
  async (t) => {
    const f = await fixture(t);
    const { journal } = await f.openJournal({ flushIntervalMs: 5 });
    const fill = execution('F-1', 'BO-9', 1);
    const bust = {
      kind: 'BUST' as const,
      amendmentId: 'X-2',
      blockOrderId: 'BO-9',
      seq: 2,
      fillId: 'F-1',
      executedAtMs: 1_763_650_000_002,
    };
    // F-1 was released as release R-1; its bust sets R-1's lines.
    await journal.persist({
      ...added('block-order-BO-9', 1, 1),
      ledger: { executions: [fill], linesKeys: ['R-1'] },
    });
    await journal.persist({
      ...added('block-order-BO-9', 2, 2),
      ledger: { executions: [bust], linesKeys: ['R-1'] },
    });
    // A re-sent bust is compared with what the index gives back: the very same entry.
    t.strictSame(await journal.journal.executionAt('BO-9', 2), bust);
    t.strictSame(await journal.journal.execution('X-2'), bust);
    t.equal((await journal.journal.fillVersionRecord('R-1'))?.seq, 2, "the release's latest lines");
    t.equal(
      await journal.journal.fillVersionRecord('F-1'),
      undefined,
      'F-1 sets no lines of its own',
    );
  },
);

t.test('a claimed fill id fails only its record and its key from there on', async (t) => {
  const f = await fixture(t);
  const { journal } = await f.openJournal({ flushIntervalMs: 20 });
  await journal.persist(claiming('block-order-OLD', 1, execution('X', 'OLD', 1)));
  // One batch: a fresh claim, a re-use of X (and that key's next record), another fresh claim.
  const outcomes = await Promise.allSettled([
    journal.persist(claiming('block-order-A', 1, execution('Y', 'A', 1))),
    journal.persist(claiming('block-order-B', 1, execution('X', 'B', 1))),
    journal.persist(added('block-order-B', 2, 2)),
    journal.persist(claiming('block-order-C', 1, execution('Z', 'C', 1))),
  ]);
  t.strictSame(
    outcomes.map((o) => o.status),
    ['fulfilled', 'rejected', 'rejected', 'fulfilled'],
  );
  const reason = outcomes[1]?.status === 'rejected' ? outcomes[1].reason : undefined;
  t.ok(reason instanceof ExecutionConflictError);
  t.match(reason, { code: 'EXECUTION_CONFLICT', fillIds: ['X'] });
  t.equal(journal.stats.executionConflicts, 1);
  t.ok(journal.stats.fallbacks >= 1, 'redone on the careful path');
  t.same(await journalRows(f.db, 'block-order-B'), [], 'nothing of B landed');
  t.same(await journalRows(f.db, 'block-order-A'), [{ seq: 1, eventType: 'Added', n: 1 }]);
  t.match(await journal.journal.execution('X'), { blockOrderId: 'OLD' }, 'X still the old one');
  t.match(await journal.journal.execution('Z'), { blockOrderId: 'C' });
  // The same (order, seq) under another id is refused too.
  await t.rejects(journal.persist(claiming('block-order-A2', 1, execution('W', 'A', 1))), {
    code: 'EXECUTION_CONFLICT',
  });
  // Two claims of one new id in one batch: exactly one wins.
  const race = await Promise.allSettled([
    journal.persist(claiming('block-order-D', 1, execution('V', 'D', 1))),
    journal.persist(claiming('block-order-E', 1, execution('V', 'E', 1))),
  ]);
  t.equal(race.filter((o) => o.status === 'fulfilled').length, 1, 'one winner');
  const [{ n } = { n: '0' }] = await f.db.query<{ n: string }>(
    "SELECT count(*)::text AS n FROM executions WHERE fill_id = 'V'",
  );
  t.equal(n, '1');
});
