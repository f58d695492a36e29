/**
 * The comparison arms against the real PostgreSQL, on a small scenario: each
 * arm processes the workload and its books are exact; a corrupted account row
 * or a lost line is detected; the ceiling writes and counts every row; each
 * arm's database is its own and is gone afterwards. No timed assertions.
 */
import t, { type Test } from 'tap';
import { Database } from '../persistence/db.ts';
import { loadConfig } from '../system/config.ts';
import { generateScenario } from '../simulations/scenario.ts';
import { withDatabaseName } from '../simulations/support.ts';
import { runBatchCycle } from '../simulations/arms/batch-cycle.ts';
import { runCeiling } from '../simulations/arms/ceiling.ts';
import { withArmDatabase, type ArmResult } from '../simulations/arms/common.ts';
import { expectedBooks } from '../simulations/arms/expected.ts';
import { runLockPerFill, tuneLockPerFill } from '../simulations/arms/lock-per-fill.ts';

const baseDatabaseUrl = loadConfig(process.env).databaseUrl;
const scenario = generateScenario({ seed: 3, accounts: 50, blockOrders: 8, fills: 300 });
const expected = expectedBooks(scenario);
const log = (line: string) => {
  if (process.env.TEST_LOG_LEVEL) console.error(line);
};

function exact(t: Test, r: ArmResult): void {
  t.ok(r.booksOk, `${r.arm}: books exact (${r.violations.join('; ')})`);
  t.same(r.violations, []);
  t.equal(r.lines, expected.lines, 'every line written once');
  t.equal(r.fills, scenario.publishOrder.length);
  t.ok(r.checks > expected.accounts.size, 'every account checked');
  t.ok(r.latencyMs && r.latencyMs.max >= r.latencyMs.p50, 'latency measured per fill');
}

async function databaseExists(name: string): Promise<boolean> {
  const db = await Database.open({
    url: withDatabaseName(baseDatabaseUrl, 'postgres'),
    poolMax: 1,
    retriesMax: 0,
    retryBackoffMs: 1,
  });
  try {
    return (await db.query('SELECT 1 FROM pg_database WHERE datname = $1', [name])).length > 0;
  } finally {
    await db.close();
  }
}

t.test('an arm database is unique, its own, and dropped even on failure', async (t) => {
  let seen = '';
  const failed = withArmDatabase(baseDatabaseUrl, 'test', async (url) => {
    seen = new URL(url).pathname.slice(1);
    t.match(seen, /^bf_arm_test_[0-9a-f]{8}$/);
    t.ok(await databaseExists(seen), 'created');
    throw new Error('boom');
  });
  await t.rejects(failed, /boom/);
  t.notOk(await databaseExists(seen), 'dropped after a failure');
});

t.test('lock-per-fill, read committed: exact books', async (t) => {
  const r = await runLockPerFill({
    baseDatabaseUrl,
    scenario,
    workers: 4,
    mode: 'read-committed',
    log,
  });
  exact(t, r);
  t.equal(r.details.mode, 'read-committed');
});

t.test('lock-per-fill, serializable at a steady rate: exact books, retries counted', async (t) => {
  const r = await runLockPerFill({
    baseDatabaseUrl,
    scenario,
    workers: 8,
    mode: 'serializable',
    arrivalRatePerSec: 3_000,
    log,
  });
  exact(t, r);
  t.ok(Number(r.details.retries) >= 0);
  t.equal(r.details.arrivalRatePerSec, 3_000);
});

t.test('lock-per-fill detects a corrupted account row and a lost line', async (t) => {
  const r = await runLockPerFill({
    baseDatabaseUrl,
    scenario,
    workers: 4,
    mode: 'read-committed',
    log,
    beforeCheck: async (pool) => {
      await pool.query("UPDATE accounts SET cash_minor = cash_minor + 1 WHERE id = 'ACC000007'");
      await pool.query(
        `DELETE FROM allocation_lines WHERE (block_order_id, fill_seq) =
           (SELECT block_order_id, fill_seq FROM allocation_lines ORDER BY 1, 2 LIMIT 1)
           AND account_id = (SELECT min(account_id) FROM allocation_lines)`,
      );
    },
  });
  t.notOk(r.booksOk);
  t.ok(
    r.violations.some((v) => /ACC000007 cash/.test(v)),
    'the cash differs',
  );
  t.ok(
    r.violations.some((v) => v.startsWith('lines:')),
    'the line count differs',
  );
});

t.test('batch-cycle: exact books (flood, then a steady rate)', async (t) => {
  const flood = await runBatchCycle({ baseDatabaseUrl, scenario, cycleMs: 200, log });
  exact(t, flood);
  t.ok(Number(flood.details.cycles) >= 1);
  const steady = await runBatchCycle({
    baseDatabaseUrl,
    scenario,
    cycleMs: 100,
    arrivalRatePerSec: 1_500,
    stageBatchFills: 50,
    log,
  });
  exact(t, steady);
});

t.test('batch-cycle detects a corrupted account row and a lost line', async (t) => {
  const r = await runBatchCycle({
    baseDatabaseUrl,
    scenario,
    cycleMs: 100,
    log,
    beforeCheck: async (pool) => {
      await pool.query(
        "UPDATE positions SET quantity = quantity - 1 WHERE account_id = 'ACC000012'",
      );
      await pool.query(
        `DELETE FROM allocation_lines WHERE account_id = (SELECT min(account_id) FROM allocation_lines)
           AND fill_seq = 1`,
      );
    },
  });
  t.notOk(r.booksOk);
  t.ok(
    r.violations.some((v) => /ACC000012 position/.test(v)),
    'the position differs',
  );
  t.ok(
    r.violations.some((v) => /Σ lines .* != Σ fills/.test(v)),
    'Σ lines != Σ fills in the database',
  );
});

t.test('lock-per-fill tuning reports every setting and a winner', async (t) => {
  const r = await tuneLockPerFill({
    baseDatabaseUrl,
    scenario,
    log,
    prefixFills: 60,
    workersList: [2, 4],
  });
  t.equal(r.prefixFills, 60);
  t.equal(r.table.length, 4, 'two modes × two worker counts');
  t.ok(r.table.every((row) => row.booksOk));
  t.ok(r.table.some((row) => row.mode === r.mode && row.workers === r.workers));
});

t.test('ceiling: every method writes and counts every row', async (t) => {
  const r = await runCeiling({
    baseDatabaseUrl,
    rows: 3_000,
    accounts: 50,
    log,
    grid: [
      { method: 'insert', batchRows: 500, connections: 2 },
      { method: 'unnest', batchRows: 1_000, connections: 1 },
      { method: 'copy-binary', batchRows: 1_000, connections: 2 },
      { method: 'copy-text', batchRows: 3_000, connections: 1 },
    ],
  });
  t.equal(r.tried.length, 4);
  t.ok(r.tried.every((x) => x.rowsPerSec > 0));
  t.ok(r.payloadBytes > 100, `payload of an AllocationApplied event: ${r.payloadBytes} bytes`);
  t.ok(['copy', 'insert', 'unnest'].includes(r.method));
  t.equal(r.rowsPerSec, Math.max(...r.tried.map((x) => x.rowsPerSec)));
});
