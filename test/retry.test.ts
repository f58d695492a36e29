/**
 * SQLSTATE 40001 on the real PostgreSQL: a genuine write-skew serialization
 * failure between two SERIALIZABLE transactions, retried by
 * `Database.serializable`, surfacing as RetriesExhaustedError when retries are
 * off; other errors are never retried.
 */
import t from 'tap';
import { Database } from '../persistence/db.ts';
import {
  RetriesExhaustedError,
  SERIALIZATION_FAILURE,
  isSerializationFailure,
  retrySerializable,
} from '../persistence/retry.ts';
import { testConfig, testDatabase } from './helpers/harness.ts';
import type { Teardown } from './helpers/harness.ts';
import { deferred } from './helpers/asserts.ts';

/** The test database with a `duty` table, plus a second handle on it (a second "process"). */
async function setup(
  tt: Teardown,
  retriesMax: number,
): Promise<{ db: Database; other: Database; values: () => Promise<number[]> }> {
  const config = testConfig();
  const handles: Database[] = [];
  const { url } = await testDatabase(tt, config, [
    async () => {
      for (const h of handles) await h.close();
    },
  ]);
  const open = async (r: number) => {
    const h = await Database.open({ url, poolMax: 2, retriesMax: r, retryBackoffMs: 1 });
    handles.push(h);
    return h;
  };
  const db = await open(retriesMax);
  const other = await open(0);
  await db.query('CREATE TABLE duty (v INT NOT NULL)');
  return {
    db,
    other,
    values: async () =>
      (await db.query<{ v: number }>('SELECT v FROM duty ORDER BY v')).map((r) => r.v),
  };
}

/**
 * Classic write skew. Each transaction reads sum(v) and inserts sum + 1.
 * `db.serializable` (A) reads first and then waits; the other handle's
 * transaction (B) reads the same sum, inserts and commits; then A inserts.
 * No serial order lets both insert 1: PostgreSQL aborts A with 40001.
 * Only A's first attempt waits for B; a retry runs straight through.
 */
async function writeSkew(
  db: Database,
  other: Database,
): Promise<{ a: Promise<number>; attempts: () => number; b: Promise<number> }> {
  const aRead = deferred();
  const bCommitted = deferred();
  let attempts = 0;
  const a = db.serializable(async (q) => {
    attempts++;
    const [row] = await q<{ s: number }>('SELECT coalesce(sum(v), 0)::int AS s FROM duty');
    const s = row?.s ?? -1;
    if (attempts === 1) {
      aRead.resolve();
      await bCommitted.promise;
    }
    await q('INSERT INTO duty (v) VALUES ($1)', [s + 1]);
    return s + 1;
  });
  // Keep a rejection of `a` handled until the caller awaits it.
  a.catch(() => undefined);
  await aRead.promise;
  const b = other.serializable(async (q) => {
    const [row] = await q<{ s: number }>('SELECT coalesce(sum(v), 0)::int AS s FROM duty');
    const s = row?.s ?? -1;
    await q('INSERT INTO duty (v) VALUES ($1)', [s + 1]);
    return s + 1;
  });
  await b.finally(() => bCommitted.resolve());
  return { a, attempts: () => attempts, b };
}

t.test('a genuine 40001 is retried and the retry sees the committed write', async (t) => {
  const { db, other, values } = await setup(t, 5);
  const retriesBefore = db.serializationRetries;
  const { a, attempts, b } = await writeSkew(db, other);
  t.equal(await b, 1, 'B committed first, inserting 1');
  t.equal(await a, 2, 'A succeeded on retry, reading B’s row (sum 1) and inserting 2');
  t.equal(attempts(), 2, 'A ran twice');
  t.equal(db.serializationRetries - retriesBefore, 1, 'one serialization retry was counted');
  t.equal(other.serializationRetries, 0);
  t.same(await values(), [1, 2], 'the result is what a serial order gives');
});

t.test('with retriesMax 0 the 40001 surfaces as RetriesExhaustedError', async (t) => {
  const { db, other, values } = await setup(t, 0);
  const { a, attempts, b } = await writeSkew(db, other);
  t.equal(await b, 1);
  const error = await a.then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(error instanceof RetriesExhaustedError, 'RetriesExhaustedError');
  const exhausted = error as RetriesExhaustedError;
  t.equal(exhausted.code, 'DB_RETRIES_EXHAUSTED');
  t.equal(exhausted.attempts, 1);
  t.ok(isSerializationFailure(exhausted), 'it is a serialization failure');
  t.ok(isSerializationFailure(exhausted.cause), 'wrapping one');
  t.equal((exhausted.cause as { code?: unknown }).code, SERIALIZATION_FAILURE, 'SQLSTATE 40001');
  t.equal(attempts(), 1, 'not retried');
  t.equal(db.serializationRetries, 0);
  t.same(await values(), [1], 'A’s insert was rolled back');
});

t.test('errors other than 40001 are not retried', async (t) => {
  const { db, values } = await setup(t, 5);
  let attempts = 0;
  const syntax = await db
    .serializable(async (q) => {
      attempts++;
      await q('SELEC 1');
    })
    .then(
      () => undefined,
      (e: unknown) => e,
    );
  t.equal(attempts, 1, 'a syntax error runs once');
  t.equal((syntax as { code?: unknown }).code, '42601', 'and surfaces as itself');
  t.notOk(syntax instanceof RetriesExhaustedError);
  t.notOk(isSerializationFailure(syntax));

  attempts = 0;
  await db.query('ALTER TABLE duty ADD PRIMARY KEY (v)');
  await db.query('INSERT INTO duty (v) VALUES (7)');
  await t.rejects(
    db.serializable(async (q) => {
      attempts++;
      await q('INSERT INTO duty (v) VALUES (8)');
      await q('INSERT INTO duty (v) VALUES (7)');
    }),
    { code: '23505' },
    'a unique violation surfaces as itself',
  );
  t.equal(attempts, 1, 'and runs once');
  t.same(await values(), [7], 'the failed transaction left nothing');

  let thrown = 0;
  await t.rejects(
    db.serializable(async () => {
      thrown++;
      throw new Error('application error');
    }),
    { message: 'application error' },
  );
  t.equal(thrown, 1);
  t.equal(db.serializationRetries, 0, 'no retry was counted');
});

t.test('retrySerializable: bounded retries with the policy callback', async (t) => {
  const failure = Object.assign(new Error('could not serialize access'), {
    code: SERIALIZATION_FAILURE,
  });
  const retried: number[] = [];
  let calls = 0;
  const error = await retrySerializable(
    { retriesMax: 2, backoffBaseMs: 1, onRetry: (n) => retried.push(n) },
    async () => {
      calls++;
      throw failure;
    },
  ).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(error instanceof RetriesExhaustedError);
  t.equal((error as RetriesExhaustedError).attempts, 3, '1 attempt + 2 retries');
  t.equal((error as RetriesExhaustedError).cause, failure);
  t.equal(calls, 3);
  t.same(retried, [1, 2], 'onRetry before each retry');

  calls = 0;
  const value = await retrySerializable({ retriesMax: 3, backoffBaseMs: 1 }, async () => {
    if (++calls < 3) throw new Error('wrapped', { cause: { sqlState: SERIALIZATION_FAILURE } });
    return 'done';
  });
  t.equal(value, 'done', 'a nested 40001 (cause, sqlState) is recognized and retried');
  t.equal(calls, 3);
  t.notOk(isSerializationFailure(null));
  t.notOk(isSerializationFailure({ code: '40P01' }));
});
