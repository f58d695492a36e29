/**
 * Recovery end to end, against the real PostgreSQL and NATS JetStream:
 * crashed actors, the supervision limit, process restarts, re-delivery of
 * unconfirmed allocations, passivation and graceful stop.
 */
import t from 'tap';
import { lineEvents, type AccountEvent } from '../actors/account/decider.ts';
import type { BlockOrderEvent } from '../actors/block-order/decider.ts';
import type { ReferencePort } from '../actors/protocol.ts';
import type { BlockOrderView } from '../actors/views.ts';
import type { Readiness } from '../api/ports.ts';
import { decodeVersioned } from '../persistence/codec.ts';
import type { Database } from '../persistence/db.ts';
import type { Service } from '../system/service.ts';
import {
  accountView as account,
  blockOrderView as blockOrder,
  confirmedThrough,
  eventually,
  smallSeed,
  startTestService,
} from './helpers/harness.ts';
import { testFill as fill } from './helpers/asserts.ts';

// ---------------------------------------------------------------- helpers

async function views(service: Service) {
  return {
    accounts: await Promise.all(['A1', 'A2', 'A3', 'A4'].map((id) => account(service, id))),
    orders: await Promise.all(['BUY1', 'SELL1'].map((id) => blockOrder(service, id))),
  };
}

async function journalCounts(db: Database): Promise<Record<string, number>> {
  const rows = await db.query<{ persistence_key: string; n: number }>(
    'SELECT persistence_key, count(*)::int AS n FROM journal GROUP BY persistence_key ORDER BY persistence_key',
  );
  return Object.fromEntries(rows.map((r) => [r.persistence_key, Number(r.n)]));
}

/** The decoded journal of one actor, in sequence order. */
async function journal<E>(db: Database, key: string): Promise<E[]> {
  const rows = await db.query<{ payload: Buffer }>(
    'SELECT payload FROM journal WHERE persistence_key = $1 ORDER BY sequence_nr',
    [key],
  );
  return rows.map((r) => decodeVersioned(r.payload, key) as E);
}

/** Fill seqs applied (or rejected) by an account, in journal order, with quantities. */
async function accountLines(db: Database, id: string) {
  const events = await journal<AccountEvent>(db, `account-${id}`);
  return events.flatMap((e) =>
    lineEvents(e).map((l) => ({
      type: l.type,
      seq: l.allocation.fillSeq,
      quantity: l.allocation.quantity,
    })),
  );
}

async function allocatedSeqs(db: Database, blockOrderId: string): Promise<number[]> {
  const events = await journal<BlockOrderEvent>(db, `block-order-${blockOrderId}`);
  return events.flatMap((e) => (e.type === 'FillAllocated' ? [e.fill.seq] : []));
}

async function readiness(service: Service): Promise<{ status: number; body: Readiness }> {
  const res = await service.app.inject({ method: 'GET', url: '/readyz' });
  return { status: res.statusCode, body: res.json<Readiness>() };
}

/**
 * Holds reference lookups of chosen ids until released; lookups of other ids
 * (and of released ones) go straight through.
 */
class LookupGate {
  readonly #held = new Set<string>();
  readonly #waiting = new Map<string, Array<{ resolve: () => void; reject: (e: Error) => void }>>();
  readonly calls = new Map<string, number>();

  constructor(ids: string[]) {
    for (const id of ids) this.#held.add(id);
  }

  wrap(base: ReferencePort): ReferencePort {
    return {
      blockOrder: async (id) => {
        await this.#pass(id);
        return base.blockOrder(id);
      },
      account: async (id) => {
        await this.#pass(id);
        return base.account(id);
      },
    };
  }

  async #pass(id: string): Promise<void> {
    this.calls.set(id, (this.calls.get(id) ?? 0) + 1);
    if (!this.#held.has(id)) return;
    await new Promise<void>((resolve, reject) => {
      const list = this.#waiting.get(id) ?? [];
      list.push({ resolve, reject });
      this.#waiting.set(id, list);
    });
  }

  waiting(id: string): number {
    return this.#waiting.get(id)?.length ?? 0;
  }

  release(...ids: string[]): void {
    for (const id of ids) {
      this.#held.delete(id);
      for (const waiter of this.#waiting.get(id) ?? []) waiter.resolve();
      this.#waiting.delete(id);
    }
  }

  /**
   * For lookups held by a service that has since stopped: fails them (so they
   * never touch its closed database) and lets later lookups of `ids` through.
   */
  abandon(...ids: string[]): void {
    for (const id of ids) {
      this.#held.delete(id);
      for (const waiter of this.#waiting.get(id) ?? []) {
        waiter.reject(new Error(`lookup of ${id} abandoned: its service stopped`));
      }
      this.#waiting.delete(id);
    }
  }
}

// ---------------------------------------------------------------- tests

t.test('an account that crashes while opening restarts and loses nothing', async (t) => {
  let a2Lookups = 0;
  const reference = (base: ReferencePort): ReferencePort => ({
    blockOrder: (id) => base.blockOrder(id),
    account: async (id) => {
      if (id === 'A2' && ++a2Lookups === 1) throw new Error('injected: A2 crashed while opening');
      return base.account(id);
    },
  });
  const { service, db } = await startTestService(t, { seed: smallSeed(), reference });
  await service.publisher.publishFill(fill(1, 500n));
  await service.publisher.publishFill(fill(2, 500n, { price: 101_750_000n }));

  const order = await confirmedThrough(service, 'BUY1', 2);
  t.same(
    order.accounts.map((a) => [a.accountId, a.allocatedQuantity]),
    [
      ['A1', '600'],
      ['A2', '300'],
      ['A3', '100'],
    ],
  );
  t.ok(
    service.accounts.crashCount >= 1,
    `the account actor crashed (${service.accounts.crashCount})`,
  );
  t.ok(a2Lookups >= 2, `A2 was opened again after the crash (${a2Lookups} lookups)`);
  t.equal(service.blockOrders.crashCount, 0, 'the block order did not crash');

  const a2 = await account(service, 'A2');
  t.equal(a2.positions.SEC1, '800', 'A2 got exactly its 300 on top of 500');
  // 150 @ 101.25 + 150 @ 101.75 = 15187.50 + 15262.50
  t.equal(a2.cashMinor, String(500_000_00n - 1_518_750n - 1_526_250n));
  t.same(a2.lastAppliedSeqByOrder, { BUY1: 2 });
  for (const [id, quantities] of [
    ['A1', [300n, 300n]],
    ['A2', [150n, 150n]],
    ['A3', [50n, 50n]],
  ] as const) {
    t.same(
      await accountLines(db, id),
      quantities.map((quantity, i) => ({ type: 'AllocationApplied', seq: i + 1, quantity })),
      `${id} journaled each line exactly once`,
    );
  }
  t.equal((await readiness(service)).status, 200, 'ready again');
});

t.test(
  'an account that keeps crashing is stopped; readiness names it; others are unaffected',
  async (t) => {
    let a3Lookups = 0;
    const reference = (base: ReferencePort): ReferencePort => ({
      blockOrder: (id) => base.blockOrder(id),
      account: async (id) => {
        if (id === 'A3') {
          a3Lookups++;
          throw new Error('injected: A3 always crashes');
        }
        return base.account(id);
      },
    });
    const { service } = await startTestService(t, {
      seed: smallSeed(),
      reference,
      config: { SUPERVISOR_CRASHES_MAX: '2' },
    });
    await service.publisher.publishFill(fill(1, 1_000n));

    const ready = await eventually('readiness reports the stopped account', async () => {
      const r = await readiness(service);
      return r.status === 503 && r.body.stoppedActors.some((a) => a.startsWith('account/A3'))
        ? r
        : undefined;
    });
    t.equal(ready.body.ready, false);
    t.match(
      ready.body.stoppedActors.find((a) => a.startsWith('account/A3')),
      /injected: A3 always crashes/,
    );
    t.match(ready.body.checks, {
      database: { ok: true },
      nats: { ok: true },
      consumer: { ok: true },
    });
    t.equal(service.accounts.crashCount, 3, 'stopped on the crash after SUPERVISOR_CRASHES_MAX');
    t.equal(a3Lookups, 3, 'not restarted after being stopped');

    const a1 = await eventually('A1 applied', async () => {
      const v = await account(service, 'A1');
      return v.lastAppliedSeqByOrder.BUY1 === 1 ? v : undefined;
    });
    t.equal(a1.positions.SEC1, '1600');
    const a2 = await eventually('A2 applied', async () => {
      const v = await account(service, 'A2');
      return v.lastAppliedSeqByOrder.BUY1 === 1 ? v : undefined;
    });
    t.equal(a2.positions.SEC1, '800');

    const stopped = await service.app.inject({ method: 'GET', url: '/api/v1/accounts/A3' });
    t.equal(stopped.statusCode, 503, 'the stopped account answers 503');
    t.match(stopped.json(), { error: 'ACTOR_STOPPED' });
  },
);

t.test('a process restart recovers every view exactly, and new fills apply on top', async (t) => {
  const handle = await startTestService(t, {
    seed: smallSeed(),
    config: { SNAPSHOT_EVERY_EVENTS: '2' },
  });
  const { db } = handle;
  let service = handle.service;
  await service.publisher.publishFill(fill(1, 300n));
  await service.publisher.publishFill(fill(2, 300n, { price: 102_000_000n }));
  // Remaining 400/100: 80 to A1, 20 to A4 (exactly its position).
  await service.publisher.publishFill(
    fill(1, 100n, { blockOrderId: 'SELL1', fillId: 'S1', price: 99_000_000n }),
  );
  await confirmedThrough(service, 'BUY1', 2);
  await confirmedThrough(service, 'SELL1', 1);

  const before = await views(service);
  const journalBefore = await journalCounts(db);
  const snapshots = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM snapshots');
  t.ok(Number(snapshots[0]?.n) > 0, 'recovery will start from snapshots');
  t.equal(before.accounts[3]?.positions.SEC1, '0', 'A4 sold its 20');

  service = await handle.restart();
  const after = await views(service);
  t.same(after, before, 'every view (journalSeq included) is the same after the restart');
  t.same(await journalCounts(db), journalBefore, 'recovery journaled nothing');
  t.same(
    service.consumer.stats,
    { acked: 0, duplicates: 0, deadLettered: 0, conflicts: 0, nakked: 0 },
    'no fill consumed twice',
  );

  // Remaining 420/210/70 after 180/90/30 twice: the fill of 400 completes BUY1.
  await service.publisher.publishFill(fill(3, 400n));
  // Remaining 320/80: 80 to A1, 20 to A4, which now holds 0 (rejected).
  await service.publisher.publishFill(
    fill(2, 100n, { blockOrderId: 'SELL1', fillId: 'S2', price: 99_000_000n }),
  );
  const buy = await confirmedThrough(service, 'BUY1', 3);
  await confirmedThrough(service, 'SELL1', 2);
  t.equal(buy.status, 'FILLED');
  t.same(
    buy.accounts.map((a) => a.allocatedQuantity),
    ['600', '300', '100'],
  );
  const [a1, a2, a3, a4] = (await views(service)).accounts;
  t.equal(a1?.positions.SEC1, String(1_000 + 600 - 160));
  t.equal(a2?.positions.SEC1, '800');
  t.equal(a3?.positions.SEC1, '100');
  t.equal(a4?.positions.SEC1, '0');
  t.equal(a4?.rejectedAllocations, 1);
  // Lines of BUY1 (180, 180, 240) and SELL1 (80, 80); their interleaving depends on timing.
  const a1Lines = await journal<AccountEvent>(db, 'account-A1');
  t.same(
    a1Lines
      .flatMap(lineEvents)
      .map((e) => `${e.allocation.blockOrderId}:${e.allocation.fillSeq}:${e.allocation.quantity}`)
      .sort(),
    ['BUY1:1:180', 'BUY1:2:180', 'BUY1:3:240', 'SELL1:1:80', 'SELL1:2:80'],
    'A1 journaled each line exactly once',
  );
});

t.test(
  'allocations journaled but not applied before a stop are re-delivered after the restart',
  async (t) => {
    const gate = new LookupGate(['A1', 'A2', 'A3']);
    const handle = await startTestService(t, {
      seed: smallSeed(),
      reference: (base) => gate.wrap(base),
    });
    const { db } = handle;
    await handle.service.publisher.publishFill(fill(1, 500n));
    await eventually('FillAllocated durable and the fill acked', async () =>
      handle.service.consumer.stats.acked === 1 && (await allocatedSeqs(db, 'BUY1')).length === 1
        ? true
        : undefined,
    );
    await eventually('accounts are opening', () => (gate.waiting('A1') > 0 ? true : undefined));
    t.same(await accountLines(db, 'A1'), [], 'no account applied anything yet');

    await handle.service.stop();
    gate.abandon('A1', 'A2', 'A3'); // the restarted service reads reference data normally
    const service = await handle.restart();
    const order = await confirmedThrough(service, 'BUY1', 1);
    t.equal(order.unconfirmedLines, 0);
    t.same(
      service.consumer.stats,
      { acked: 0, duplicates: 0, deadLettered: 0, conflicts: 0, nakked: 0 },
      'the fill was not consumed again',
    );
    for (const [id, quantity, position] of [
      ['A1', 300n, '1300'],
      ['A2', 150n, '650'],
      ['A3', 50n, '50'],
    ] as const) {
      t.same(
        await accountLines(db, id),
        [{ type: 'AllocationApplied', seq: 1, quantity }],
        `${id} applied its line once`,
      );
      t.equal((await account(service, id)).positions.SEC1, position);
    }
  },
);

t.test('re-delivery after a restart also covers fills behind a lagging watermark', async (t) => {
  // Fill 1 (one lot) goes to A1 only; fill 2 completes the order for all three.
  const gate = new LookupGate(['A1', 'A2', 'A3']);
  const handle = await startTestService(t, {
    seed: smallSeed(),
    reference: (base) => gate.wrap(base),
  });
  const { db } = handle;
  await handle.service.publisher.publishFill(fill(1, 10n));
  await handle.service.publisher.publishFill(fill(2, 990n));
  await eventually('both fills journaled', async () =>
    (await allocatedSeqs(db, 'BUY1')).length === 2 ? true : undefined,
  );
  gate.release('A1', 'A3'); // A2 stays stuck opening
  await eventually('A1 and A3 applied, watermark at 1', async () => {
    const events = await journal<BlockOrderEvent>(db, 'block-order-BUY1');
    const last = events.at(-1);
    const a1 = await accountLines(db, 'A1');
    const a3 = await accountLines(db, 'A3');
    return a1.length === 2 &&
      a3.length === 1 &&
      last?.type === 'AllocationsConfirmed' &&
      last.throughSeq === 1
      ? true
      : undefined;
  });
  t.same(await accountLines(db, 'A2'), [], 'A2 has not applied fill 2');

  await handle.service.stop();
  gate.abandon('A2');
  const service = await handle.restart();
  // Nothing else reaches BUY1 (the order is filled): only the start-up wake can deliver A2's line.
  const a2 = await eventually(
    "A2's line of fill 2 re-delivered",
    async () => {
      const lines = await accountLines(db, 'A2');
      return lines.length > 0 ? lines : undefined;
    },
    5_000,
  ).catch((error: Error) => {
    t.fail(
      `${error.message} (wakeUnconfirmed skips an order whose journal ends with a lagging AllocationsConfirmed)`,
    );
    return [];
  });
  t.same(
    a2,
    [{ type: 'AllocationApplied', seq: 2, quantity: 300n }],
    'A2 applied its line exactly once',
  );
  t.equal((await blockOrder(service, 'BUY1')).unconfirmedLines, 0, 'BUY1 fully confirmed');
});

t.test('an idle actor passivates and recovers the same state on its next message', async (t) => {
  const { service, db } = await startTestService(t, {
    seed: smallSeed(),
    config: { ACTOR_IDLE_MS: '100' },
  });
  await service.publisher.publishFill(fill(1, 500n));
  await confirmedThrough(service, 'BUY1', 1);
  const before = await views(service);
  t.ok(service.accounts.liveActors() > 0, 'accounts are live after the views');

  await eventually('accounts passivated', () =>
    service.accounts.liveActors() === 0 ? true : undefined,
  );
  await eventually('block orders passivated', () =>
    service.blockOrders.liveActors() === 0 ? true : undefined,
  );
  t.same(await views(service), before, 'recovered views equal the views before passivation');

  await eventually('passivated again', () =>
    service.accounts.liveActors() === 0 && service.blockOrders.liveActors() === 0
      ? true
      : undefined,
  );
  await service.publisher.publishFill(fill(2, 500n, { price: 101_750_000n }));
  const order = await confirmedThrough(service, 'BUY1', 2);
  t.equal(order.filledQuantity, '1000');
  t.equal((await account(service, 'A1')).positions.SEC1, '1600');
  t.same(
    (await accountLines(db, 'A1')).map((l) => l.seq),
    [1, 2],
    'the recovered account continued its journal without a gap or a repeat',
  );
  t.equal(
    service.accounts.crashCount + service.blockOrders.crashCount,
    0,
    'no journal conflict or crash',
  );
});

t.test(
  'a block order that passivates while its deliveries are outstanding still confirms them',
  async (t) => {
    const gate = new LookupGate(['A1', 'A2', 'A3']);
    const { service, db } = await startTestService(t, {
      seed: smallSeed(),
      reference: (base) => gate.wrap(base),
      config: { ACTOR_IDLE_MS: '100' },
    });
    await service.publisher.publishFill(fill(1, 500n));
    await eventually('the fill is allocated and acked', () =>
      service.consumer.stats.acked === 1 ? true : undefined,
    );
    await eventually('the block order passivated', () =>
      service.blockOrders.liveActors() === 0 ? true : undefined,
    );
    gate.release('A1', 'A2', 'A3');
    await eventually('every account applied its line', async () => {
      const lines = await Promise.all(['A1', 'A2', 'A3'].map((id) => accountLines(db, id)));
      return lines.every((l) => l.length === 1) ? true : undefined;
    });
    const order = await confirmedThrough(service, 'BUY1', 1, 5_000).catch(async (error: Error) => {
      const view = await blockOrder(service, 'BUY1');
      t.fail(
        `${error.message}: unconfirmedLines ${view.unconfirmedLines} although every account applied (settlement replies to a passivated block order are dropped)`,
      );
      return view;
    });
    t.equal(order.unconfirmedLines, 0);
  },
);

t.test(
  'a graceful stop answers every fill in flight; a restart allocates every fill exactly once',
  async (t) => {
    // BUY2 targets the same accounts as BUY1. BUY1's fill opens the accounts first, so that
    // during the stop no actor spawns or reads reference data: only BUY2's opening is held,
    // and its fills pile up in flight at the block order.
    const seed = smallSeed();
    seed.blockOrders.push({ ...seed.blockOrders[0]!, id: 'BUY2' });
    const gate = new LookupGate(['BUY2']);
    const handle = await startTestService(t, {
      seed,
      reference: (base) => gate.wrap(base),
      config: { CONSUMER_IN_FLIGHT_MAX: '4' },
    });
    const { db } = handle;
    await handle.service.publisher.publishFill(fill(1, 100n));
    await confirmedThrough(handle.service, 'BUY1', 1);

    const total = 20;
    const buy2 = (seq: number) => fill(seq, 50n, { blockOrderId: 'BUY2', fillId: `B2-${seq}` });
    for (let seq = 1; seq <= total; seq++) await handle.service.publisher.publishFill(buy2(seq));
    await eventually('fills in flight at the block order', () =>
      gate.waiting('BUY2') > 0 ? true : undefined,
    );

    const stopped = handle.service.stop();
    gate.release('BUY2');
    await stopped;
    const { acked, duplicates, deadLettered } = handle.service.consumer.stats;
    t.ok(acked - 1 >= 1, `fills in flight were answered and acked (${acked - 1} of BUY2)`);
    t.ok(
      acked - 1 < total,
      `some fills were left for after the restart (${acked - 1} of ${total})`,
    );
    t.equal(duplicates + deadLettered, 0);
    t.same(
      await allocatedSeqs(db, 'BUY2'),
      Array.from({ length: acked - 1 }, (_, i) => i + 1),
      'every acked fill has its FillAllocated, and no other fill does',
    );

    const service = await handle.restart();
    const order = await confirmedThrough(service, 'BUY2', total);
    t.equal(order.status, 'FILLED');
    t.same(
      await allocatedSeqs(db, 'BUY2'),
      Array.from({ length: total }, (_, i) => i + 1),
      'each fill allocated exactly once',
    );
    for (const [id, target] of [
      ['A1', 600n],
      ['A2', 300n],
      ['A3', 100n],
    ] as const) {
      const events = await journal<AccountEvent>(db, `account-${id}`);
      const lines = events.flatMap(lineEvents).filter((e) => e.allocation.blockOrderId === 'BUY2');
      const seqs = lines.map((e) => e.allocation.fillSeq);
      t.equal(new Set(seqs).size, seqs.length, `${id} applied no line of BUY2 twice`);
      t.equal(
        lines.reduce((sum, e) => sum + e.allocation.quantity, 0n),
        target,
        `${id} got exactly its BUY2 target`,
      );
    }
  },
);

t.test(
  'fills for a block order stopped by its supervisor are kept, never dead-lettered, and allocated after a restart',
  async (t) => {
    let lookups = 0;
    let broken = true;
    const reference = (base: ReferencePort): ReferencePort => ({
      blockOrder: async (id) => {
        if (id === 'BUY1' && broken) {
          lookups++;
          throw new Error('injected: BUY1 always crashes while opening');
        }
        return base.blockOrder(id);
      },
      account: (id) => base.account(id),
    });
    const handle = await startTestService(t, {
      seed: smallSeed(),
      reference,
      config: {
        SUPERVISOR_CRASHES_MAX: '1',
        CONSUMER_DELIVERIES_MAX: '2',
        CONSUMER_NAK_DELAY_MS: '5',
      },
    });
    await handle.service.publisher.publishFill(fill(1, 500n));
    await eventually('BUY1 stopped by its supervisor', () =>
      handle.service.blockOrders.stoppedActors().some((a) => a.startsWith('block-order/BUY1'))
        ? true
        : undefined,
    );
    t.equal(lookups, 2, 'crashed once, reset, crashed again and was stopped');
    // Redelivered well past CONSUMER_DELIVERIES_MAX: a failure is not a verdict on the fill.
    await eventually('several redeliveries', () =>
      handle.service.consumer.stats.nakked >= 4 ? true : undefined,
    );
    t.equal(handle.service.consumer.stats.deadLettered, 0, 'nothing dead-lettered');

    broken = false;
    const service = await handle.restart();
    const view = await eventually('BUY1 allocated after the restart', async () => {
      const res = await service.app.inject({ method: 'GET', url: '/api/v1/block-orders/BUY1' });
      const v = res.json<BlockOrderView>();
      return res.statusCode === 200 && v.fills === 1 && v.unconfirmedLines === 0 ? v : undefined;
    });
    t.equal(view.filledQuantity, '500');
    t.equal(service.consumer.stats.deadLettered, 0);
  },
);

t.test(
  'infrastructure failures reset an actor without stopping it: the fill is allocated once they pass',
  async (t) => {
    let failures = 0;
    const reference = (base: ReferencePort): ReferencePort => ({
      blockOrder: async (id) => {
        if (id === 'BUY1' && failures < 6) {
          failures++;
          throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), {
            code: 'ECONNREFUSED',
          });
        }
        return base.blockOrder(id);
      },
      account: (id) => base.account(id),
    });
    const { service } = await startTestService(t, {
      seed: smallSeed(),
      reference,
      config: { SUPERVISOR_CRASHES_MAX: '1', CONSUMER_NAK_DELAY_MS: '5' },
    });
    await service.publisher.publishFill(fill(1, 500n));
    const view = await eventually('BUY1 allocated after the outage', async () => {
      const res = await service.app.inject({ method: 'GET', url: '/api/v1/block-orders/BUY1' });
      const v = res.json<BlockOrderView>();
      return res.statusCode === 200 && v.fills === 1 && v.unconfirmedLines === 0 ? v : undefined;
    });
    t.equal(failures, 6, 'failed six times, far past SUPERVISOR_CRASHES_MAX');
    t.equal(view.filledQuantity, '500');
    t.strictSame(service.blockOrders.stoppedActors(), []);
    t.equal(service.consumer.stats.deadLettered, 0);
  },
);
