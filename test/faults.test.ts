/**
 * Fault injection (system/faults.ts), off unless FAULT_INJECTION=on, and
 * what it proves: no message is acked before its events commit; a failed
 * journal batch or a throwing actor loses nothing and doubles nothing.
 */
import t from 'tap';
import { streamNames } from '../system/config.ts';
import { testFill as fill } from './helpers/asserts.ts';
import {
  blockOrderView,
  confirmedThrough,
  smallSeed,
  startTestService,
} from './helpers/harness.ts';
import type { Database } from '../persistence/db.ts';

async function fillRows(db: Database): Promise<number> {
  const [row] = await db.query<{ n: string }>(
    "SELECT count(*)::text AS n FROM journal WHERE event_type = 'FillAllocated'",
  );
  return Number(row?.n ?? 0);
}

t.test('off by default: every fault request is refused with 403', async (t) => {
  const { service } = await startTestService(t, { seed: smallSeed() });
  t.equal(service.faults.enabled, false);
  for (const method of ['GET', 'POST', 'DELETE'] as const) {
    const res = await service.app.inject({
      method,
      url: '/faults',
      ...(method === 'POST' ? { payload: { journalFailures: 1 } } : {}),
    });
    t.equal(res.statusCode, 403, method);
    t.match(res.json(), { error: 'FAULT_INJECTION_DISABLED', message: /FAULT_INJECTION=on/ });
  }
  t.throws(() => service.faults.inject({ journalFailures: 1 }), {
    code: 'FAULT_INJECTION_DISABLED',
  });
});

t.test('a slow journal: the fill is not acked until its event commits', async (t) => {
  const { service, db } = await startTestService(t, {
    seed: smallSeed(),
    config: { FAULT_INJECTION: 'on' },
  });
  const res = await service.app.inject({
    method: 'POST',
    url: '/faults',
    payload: { journalDelayMs: 1_500 },
  });
  t.equal(res.statusCode, 200);
  t.match(res.json(), { journalDelayMs: 1_500, journalFailures: 0 });
  await service.publisher.publishFill(fill(1, 500n));
  // Well inside the 1.5 s delay: delivered (pending below), not yet committed.
  await new Promise((resolve) => setTimeout(resolve, 700));
  t.equal(await fillRows(db), 0, 'not committed yet');
  t.equal(service.consumer.stats.acked, 0, 'so not acked either');
  const names = streamNames(service.config);
  const pending = await Promise.all(
    Array.from({ length: service.config.partitions }, (_, p) =>
      service.nats.jsm.consumers.info(names.executions, `${names.durablePrefix}_P${p}`),
    ),
  );
  t.equal(
    pending.reduce((s, c) => s + c.num_ack_pending, 0),
    1,
    'the server still holds it as unacknowledged',
  );
  await confirmedThrough(service, 'BUY1', 1);
  t.equal(await fillRows(db), 1);
  t.equal(service.consumer.stats.acked, 1, 'acked once committed');
});

t.test('failed journal batches and a throwing actor lose nothing, double nothing', async (t) => {
  const { service, db } = await startTestService(t, {
    seed: smallSeed(),
    config: { FAULT_INJECTION: 'on', CONSUMER_NAK_DELAY_MS: '10', SUPERVISOR_CRASHES_MAX: '5' },
  });
  service.faults.inject({ journalFailures: 2 });
  service.faults.inject({
    actorThrows: { kind: 'block-order', id: 'BUY1', count: 3, transient: false },
  });
  for (let seq = 1; seq <= 5; seq++) await service.publisher.publishFill(fill(seq, 100n));
  await confirmedThrough(service, 'BUY1', 5);
  t.equal(service.faults.fired, 5, 'two batch failures and three throws fired');
  t.strictSame(service.faults.plan, { actorThrows: [], journalFailures: 0, journalDelayMs: 0 });
  t.equal(await fillRows(db), 5, 'each fill journaled once');
  const order = await blockOrderView(service, 'BUY1');
  t.equal(order.filledQuantity, '500');
  t.equal(service.consumer.stats.acked, 5);
  t.equal(service.consumer.stats.deadLettered, 0, 'a fault is never a verdict on the fill');
  t.ok(service.consumer.stats.nakked >= 1, 'the failed ones came back');
  t.strictSame(service.blockOrders.stoppedActors(), [], 'three crashes < the supervisor bound');
  const bad = await service.app.inject({
    method: 'POST',
    url: '/faults',
    payload: { journalFailures: 10_001 },
  });
  t.equal(bad.statusCode, 400);
  t.match(bad.json(), { field: 'journalFailures' });
  const cleared = await service.app.inject({ method: 'DELETE', url: '/faults' });
  t.equal(cleared.statusCode, 200);
});
