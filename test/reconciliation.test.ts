/**
 * Reconciliation against a running service: clean after fills, a bust, a
 * correction and a refused line; then breaks planted one at a time (a fill
 * on the street that no account got, an account journal row lost, a street
 * price changed) are each reported, naming the security, the order and the
 * accounts; and an average-price order's accumulation explains the street.
 */
import t, { type Test } from 'tap';
import type { Entry } from '../actors/block-order/decider.ts';
import type { Database } from '../persistence/db.ts';
import type { Service } from '../system/service.ts';
import { reconcile } from '../system/reconciliation.ts';
import type { ReconciliationReport } from '../api/ports.ts';
import { confirmedThrough, eventually, smallSeed, startTestService } from './helpers/harness.ts';

const at = Date.parse('2026-11-20T15:00:00Z');
const fill = (fillId: string, blockOrderId: string, seq: number, q: bigint, p: bigint): Entry => ({
  fillId,
  blockOrderId,
  seq,
  quantity: q,
  price: p,
  venue: 'XNYS',
  executedAtMs: at + seq,
});

async function publishAll(service: Service, entries: Entry[]): Promise<void> {
  for (const e of entries) await service.publisher.publishEntry(e);
}

/** Runs `plant`, expects the report it leaves, then `undo` and a clean report again. */
async function planted(
  t: Test,
  db: Database,
  step: { plant: () => Promise<unknown>; undo: () => Promise<unknown> },
  expect: (report: ReconciliationReport) => void,
): Promise<void> {
  await step.plant();
  expect(await reconcile({ db }, { tradeDate: '2026-11-20' }));
  await step.undo();
  t.equal((await reconcile({ db })).clean, true, 'clean again once undone');
}

t.test('street and books reconcile; planted breaks are named', async (t) => {
  const { service, db } = await startTestService(t, { seed: smallSeed() });
  await publishAll(service, [
    fill('F1', 'BUY1', 1, 500n, 101_250_000n),
    fill('F2', 'BUY1', 2, 500n, 101_750_001n),
    {
      kind: 'BUST',
      amendmentId: 'X1',
      blockOrderId: 'BUY1',
      seq: 3,
      fillId: 'F1',
      executedAtMs: at,
    },
    {
      ...{ kind: 'CORRECTION', amendmentId: 'C1', blockOrderId: 'BUY1', seq: 4, fillId: 'F2' },
      ...{ quantity: 400n, price: 101_700_003n, executedAtMs: at },
    },
    // A4 holds 20 and is given 40: refused, in suspense.
    fill('S1', 'SELL1', 1, 200n, 100_500_007n),
  ]);
  await confirmedThrough(service, 'BUY1', 4);
  await confirmedThrough(service, 'SELL1', 1);

  const report = await reconcile({ db, nowMs: () => at }, { tradeDate: '2026-11-20' });
  t.match(report, { tradeDate: '2026-11-20', clean: true, checkedAt: '2026-11-20T15:00:00.000Z' });
  t.strictSame(report.breaks, []);
  t.match(report.securities, [
    {
      securityId: 'SEC1',
      streetQuantity: '200', // bought 400 (F1 busted, F2 corrected), sold 200
      booksQuantity: '240', // 400 in, 160 out (A1)
      suspenseQuantity: '-40', // A4's refused sell
      accumulatedQuantity: '0',
      inFlightQuantity: '0',
      cashChecked: true,
      ok: true,
    },
  ]);
  const sec = report.securities[0];
  // 400 × 101.700003 paid, 160 × 100.500007 received, in price units / 10^4 = cents.
  t.equal(sec?.streetNotionalMinor, '-2460000.0080');
  t.equal(sec?.cashToleranceMinor, '2.0000', 'half a cent for each of 4 lines');
  t.equal((await reconcile({ db }, { tradeDate: '2026-11-21' })).securities.length, 0);

  // A fill on the street that no account got.
  await planted(
    t,
    db,
    {
      plant: () =>
        db.query(
          `INSERT INTO executions (fill_id, block_order_id, fill_seq, quantity, price, venue,
             executed_at_ms, persistence_key, sequence_nr, kind, lines_key)
           VALUES ('FAKE', 'BUY1', 99, 100, 101000000, 'XNYS', 0, 'block-order-BUY1', 9999, 'FILL', 'FAKE')`,
        ),
      undo: () => db.query(`DELETE FROM executions WHERE fill_id = 'FAKE'`),
    },
    (r) => {
      t.equal(r.clean, false);
      t.match(r.securities, [{ securityId: 'SEC1', streetQuantity: '300', ok: false }]);
      t.match(r.breaks, [
        { kind: 'SHARES', securityId: 'SEC1', orders: ['BUY1'], accounts: ['A1', 'A2', 'A3'] },
      ]);
      t.match(r.breaks[0]?.detail, /BUY1 \(BUY\): street 500 vs books 400 \+ suspense 0/);
    },
  );

  // An account journal row lost: A2's last line.
  const [lost] = await db.query<Record<string, unknown>>(
    `SELECT persistence_key, sequence_nr, event_type, payload, created_at FROM journal
     WHERE persistence_key = 'account-A2' ORDER BY sequence_nr DESC LIMIT 1`,
  );
  await planted(
    t,
    db,
    {
      plant: () =>
        db.query(`DELETE FROM journal WHERE persistence_key = 'account-A2' AND sequence_nr = $1`, [
          lost?.sequence_nr,
        ]),
      undo: () =>
        db.query(
          `INSERT INTO journal (persistence_key, sequence_nr, event_type, payload, created_at)
           VALUES ($1, $2, $3, $4, $5)`,
          [
            lost?.persistence_key,
            lost?.sequence_nr,
            lost?.event_type,
            lost?.payload,
            lost?.created_at,
          ],
        ),
    },
    (r) => {
      t.equal(r.clean, false);
      t.match(r.breaks, [
        { kind: 'SHARES', securityId: 'SEC1', orders: ['BUY1'], accounts: ['A2'] },
      ]);
      t.match(r.breaks[0]?.detail, /A2 holds 120 by the order, books \d+ \+ suspense 0/);
    },
  );

  // The street's price of the correction moved by a cent a share: shares agree, cash does not.
  await planted(
    t,
    db,
    {
      plant: () => db.query(`UPDATE executions SET price = price + 10000 WHERE fill_id = 'C1'`),
      undo: () => db.query(`UPDATE executions SET price = price - 10000 WHERE fill_id = 'C1'`),
    },
    (r) => {
      t.equal(r.clean, false);
      t.match(r.securities, [{ securityId: 'SEC1', cashChecked: true, ok: false }]);
      t.match(r.breaks, [
        { kind: 'CASH', securityId: 'SEC1', orders: ['BUY1'], accounts: ['A1', 'A2', 'A3'] },
      ]);
      t.match(r.breaks[0]?.detail, /off by 400\.\d{4}, tolerance 1\.5000/);
    },
  );
  await t.rejects(reconcile({ db }, { tradeDate: '20261120' }), { code: 'VALIDATION' });
});

t.test('an average-price order: what is accumulated explains the street', async (t) => {
  const seed = smallSeed();
  const buy = seed.blockOrders[0];
  if (!buy) throw new Error('no order');
  buy.policy = { kind: 'AVERAGE_PRICE', everyFills: 3, everyMarketMs: null };
  const { service, db } = await startTestService(t, { seed });
  await publishAll(service, [
    fill('F1', 'BUY1', 1, 300n, 101_250_001n),
    fill('F2', 'BUY1', 2, 200n, 101_750_003n),
  ]);
  await confirmedThrough(service, 'BUY1', 2);
  const held = await reconcile({ db });
  t.strictSame(held.breaks, []);
  t.match(held.securities, [
    { streetQuantity: '500', booksQuantity: '0', accumulatedQuantity: '500', ok: true },
  ]);

  // The third fill releases all 600 at one average price: cash within its bound.
  await publishAll(service, [fill('F3', 'BUY1', 3, 100n, 100_999_999n)]);
  await confirmedThrough(service, 'BUY1', 3);
  const released = await eventually('the release on the books', async () => {
    const r = await reconcile({ db });
    return r.securities[0]?.booksQuantity === '600' ? r : undefined;
  });
  t.strictSame(released.breaks, []);
  t.match(released.securities, [
    { streetQuantity: '600', accumulatedQuantity: '0', cashChecked: true, ok: true },
  ]);
  t.match(released.securities[0]?.residueMinor, /^-?\d+$/);
});

t.test('reports taken while fills flow never break: lines in flight are explained', async (t) => {
  const { service, db } = await startTestService(t, { seed: smallSeed() });
  const entries = [1, 2, 3, 4, 5].flatMap((seq) => [
    fill(`B${seq}`, 'BUY1', seq, 200n, 101_000_000n + BigInt(seq)),
    fill(`S${seq}`, 'SELL1', seq, 100n, 99_000_000n + BigInt(seq)),
  ]);
  const publishing = publishAll(service, entries);
  const reports: ReconciliationReport[] = [];
  const done = Promise.all([
    publishing.then(() => confirmedThrough(service, 'BUY1', 5)),
    publishing.then(() => confirmedThrough(service, 'SELL1', 5)),
  ]);
  let settled = false;
  void done.then(() => (settled = true));
  while (!settled) reports.push(await reconcile({ db }));
  await done;
  reports.push(await reconcile({ db }));
  t.ok(reports.length > 1, `${reports.length} reports`);
  t.strictSame(
    reports.flatMap((r) => r.breaks),
    [],
    'no break in any of them',
  );
  t.match(reports.at(-1)?.securities, [{ inFlightQuantity: '0', cashChecked: true, ok: true }]);
});
