import t from 'tap';
import { BlockfillError, ErrorCode } from '../actors/errors.ts';
import { JournalConflictError, JournalOverloadedError } from '../persistence/journal.ts';
import { driverFailure } from '../persistence/db.ts';
import { isTransientFailure } from '../system/transient.ts';

t.test('infrastructure failures are transient; broken state and input are not', async (t) => {
  const transient = [
    Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }),
    Object.assign(new Error('terminating connection due to administrator command'), {
      code: '57P01',
    }),
    Object.assign(new Error('relation "journal" does not exist'), { code: '42P01' }),
    Object.assign(new Error('could not serialize'), { code: 'DB_RETRIES_EXHAUSTED' }),
    driverFailure(new Error('Connection terminated unexpectedly')),
    new JournalOverloadedError(10),
    // Recovering always resolves a conflict (another writer, or our own commit whose ack was lost).
    new JournalConflictError('k', 1),
    new BlockfillError(ErrorCode.Invariant, 'the thrower knows better', { transient: true }),
    new Error('wrapped', { cause: Object.assign(new Error('x'), { sqlState: '08006' }) }),
  ];
  for (const e of transient) t.ok(isTransientFailure(e), (e as Error).message);
  const permanent = [
    new Error('injected: always crashes'),
    Object.assign(new Error('duplicate key'), { code: '23505' }),
    Object.assign(new Error('broken'), { code: 'INVARIANT' }),
    Object.assign(new Error('v9'), { code: 'SCHEMA_VERSION_UNKNOWN' }),
    Object.assign(new Error('gap'), { code: 'JOURNAL_GAP' }),
    // Messages never decide: the same text without a code is not transient.
    new Error('Connection terminated unexpectedly'),
    driverFailure(new TypeError('x is not a function')),
    'not an error',
    null,
  ];
  for (const e of permanent) t.notOk(isTransientFailure(e), String(e));
});

t.test('every error code is in one table; our errors carry code and flag', async (t) => {
  const codes = Object.values(ErrorCode);
  t.equal(new Set(codes).size, codes.length, 'codes are unique');
  const wrapped = driverFailure(new Error('timeout exceeded when trying to connect'));
  t.match(wrapped, { code: 'DB_UNAVAILABLE', transient: true });
  const sqlError = Object.assign(new Error('duplicate key'), { code: '23505' });
  t.equal(driverFailure(sqlError), sqlError, 'a SQLSTATE error keeps its identity');
});
