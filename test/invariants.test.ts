/**
 * The checker the drills trust (simulations/invariants.ts) against a real
 * database: exact books pass, and each kind of hole an independent ledger
 * checker would look for is caught: a fill missing from the execution
 * index, an index row that differs from the journal, a suspense resolution
 * of a line that was never in suspense.
 */
import t from 'tap';
import { checkInvariants, type InvariantReport } from '../simulations/invariants.ts';
import { generateScenario } from '../simulations/scenario.ts';
import { eventually, startTestService } from './helpers/harness.ts';

const scenario = generateScenario({
  seed: 11,
  securities: 3,
  accounts: 12,
  blockOrders: 4,
  fills: 60,
  accountsPerOrderMin: 2,
  accountsPerOrderMax: 5,
  idPrefix: 'INV',
});

t.test('the checker passes exact books and catches a hole in each ledger', async (t) => {
  const { service, db } = await startTestService(t, { seed: scenario.seed });
  for (const fill of scenario.publishOrder)
    t.match(await service.allocate(fill), { type: 'Allocated' }, `${fill.fillId} allocated`);
  const check = (): Promise<InvariantReport> =>
    checkInvariants({
      db,
      app: service.app,
      seed: scenario.seed,
      fillsByOrder: scenario.fillsByOrder,
      idPrefix: scenario.options.idPrefix,
    });
  // Account lines are applied behind the orders' replies: wait for the books to settle.
  const exact = await eventually('exact books', async () => {
    const report = await check();
    return report.ok ? report : undefined;
  });
  t.equal(exact.fills, scenario.publishOrder.length);
  t.same(exact.violations, []);

  const victim = scenario.publishOrder[0];
  if (!victim) throw new Error('the scenario has no fills');
  const [row] = await db.query<{ fill_id: string }>(
    'SELECT fill_id FROM executions WHERE fill_id = $1',
    [victim.fillId],
  );
  t.equal(row?.fill_id, victim.fillId, 'the index holds the allocated fill');

  await db.statement('UPDATE executions SET quantity = quantity + 1 WHERE fill_id = $1', [
    victim.fillId,
  ]);
  t.match((await check()).violations, [
    `execution index row ${victim.fillId} differs from the journal`,
  ]);
  await db.statement('DELETE FROM executions WHERE fill_id = $1', [victim.fillId]);
  t.match((await check()).violations, [/^execution index has \d+ rows, the journals \d+ entries$/]);

  await db.statement(
    `INSERT INTO suspense_resolutions
       (block_order_id, fill_seq, account_id, resolution, persistence_key, sequence_nr)
     VALUES ($1, 1, $2, 'APPLIED', 'account-x', 1)`,
    [victim.blockOrderId, scenario.seed.accounts[0]?.id],
  );
  t.ok(
    (await check()).violations.includes('1 suspense resolutions without a suspense line'),
    'an orphan resolution is a violation',
  );
});
