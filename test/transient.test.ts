import t from 'tap';
import { isTransientFailure } from '../system/transient.ts';

t.test('infrastructure failures are transient; broken state and input are not', async (t) => {
  const transient = [
    Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }),
    Object.assign(new Error('terminating connection due to administrator command'), {
      code: '57P01',
    }),
    Object.assign(new Error('relation "journal" does not exist'), { code: '42P01' }),
    Object.assign(new Error('could not serialize'), { code: 'DB_RETRIES_EXHAUSTED' }),
    new Error('Connection terminated unexpectedly'),
    new Error('wrapped', { cause: Object.assign(new Error('x'), { sqlState: '08006' }) }),
  ];
  for (const e of transient) t.ok(isTransientFailure(e), e.message);
  const permanent = [
    new Error('injected: always crashes'),
    Object.assign(new Error('duplicate key'), { code: '23505' }),
    Object.assign(new Error('broken'), { code: 'INVARIANT' }),
    Object.assign(new Error('v9'), { code: 'SCHEMA_VERSION_UNKNOWN' }),
    Object.assign(new Error('gap'), { code: 'JOURNAL_GAP' }),
    'not an error',
    null,
  ];
  for (const e of permanent) t.notOk(isTransientFailure(e), String(e));
});
