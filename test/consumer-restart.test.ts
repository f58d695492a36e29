/**
 * A partition's subscription that fails (here: its durable deleted under it)
 * is made again with backoff: readiness says which partition is down until
 * then, and fills on that partition are allocated once it is back.
 */
import t from 'tap';
import { streamNames } from '../system/config.ts';
import { partitionOf } from '../system/fill-wire.ts';
import { ensureConsumers } from '../system/jetstream.ts';
import { confirmedThrough, eventually, smallSeed, startTestService } from './helpers/harness.ts';

t.test('a partition whose durable vanished is down, then consumes again', async (t) => {
  const { service, config } = await startTestService(t, { seed: smallSeed() });
  const names = streamNames(config);
  const durable = `${names.durablePrefix}_P${partitionOf('BUY1', config.partitions)}`;
  await service.nats.jsm.consumers.delete(names.executions, durable);
  const down = await eventually('the partition to be down', async () => {
    const ready = await service.inspection.readiness();
    return ready.checks.consumer.ok ? undefined : ready;
  });
  t.equal(down.ready, false);
  t.match(down.checks.consumer.detail, new RegExp(`restarting ${durable}`));
  t.same(service.consumer.downPartitions, [durable]);

  // The operator puts the durable back (what start-up does): the loop picks it up.
  await ensureConsumers(service.nats.jsm, names, config);
  await eventually('ready again', async () =>
    (await service.inspection.readiness()).ready ? true : undefined,
  );
  await service.publisher.publishFill({
    fillId: 'F1',
    blockOrderId: 'BUY1',
    seq: 1,
    quantity: 500n,
    price: 100_000_000n,
    venue: 'XNYS',
    executedAtMs: 1,
  });
  const order = await confirmedThrough(service, 'BUY1', 1);
  t.equal(order.filledQuantity, '500', 'allocated through the restarted loop');
});
