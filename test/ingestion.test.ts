/**
 * Ingestion end to end, against the real PostgreSQL and NATS JetStream:
 * deduplication, idempotent redelivery, poison messages and the dead-letter
 * stream, out-of-order fills, sells beyond a position, API errors.
 */
import { randomBytes } from 'node:crypto';
import t from 'tap';
import { packWire as packPlain, unpackWire as unpackPlain } from '../system/wire-codec.ts';
import { streamNames } from '../system/config.ts';
import { decodeFill, encodeFill, fillSubject, partitionOf } from '../system/fill-wire.ts';
import { DeadLetterHeader } from '../system/jetstream.ts';
import type { Service } from '../system/service.ts';
import type { Database } from '../persistence/db.ts';
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

/** Journal rows per persistence key. */
async function journalCounts(db: Database): Promise<Record<string, number>> {
  const rows = await db.query<{ persistence_key: string; n: number }>(
    'SELECT persistence_key, count(*)::int AS n FROM journal GROUP BY persistence_key ORDER BY persistence_key',
  );
  return Object.fromEntries(rows.map((r) => [r.persistence_key, Number(r.n)]));
}

async function views(service: Service, accounts: string[], orders: string[]) {
  return {
    accounts: await Promise.all(accounts.map((id) => account(service, id))),
    orders: await Promise.all(orders.map((id) => blockOrder(service, id))),
  };
}

/** Waits until the durable consumer of `blockOrderId`'s partition has nothing pending or unacked. */
async function consumerDrained(service: Service, blockOrderId: string): Promise<void> {
  const names = streamNames(service.config);
  const durable = `${names.durablePrefix}_P${partitionOf(blockOrderId, service.config.partitions)}`;
  await eventually(`consumer ${durable} drained`, async () => {
    const info = await service.nats.jsm.consumers.info(names.executions, durable);
    return info.num_pending === 0 && info.num_ack_pending === 0 ? true : undefined;
  });
}

interface DeadLetter {
  subject: string;
  data: Uint8Array;
  header(name: string): string | undefined;
}

/** Every message of the dead-letter stream, in stream order. */
async function deadLetters(service: Service): Promise<DeadLetter[]> {
  const names = streamNames(service.config);
  const info = await service.nats.jsm.streams.info(names.deadLetter);
  const out: DeadLetter[] = [];
  for (
    let seq = info.state.first_seq;
    seq <= info.state.last_seq && info.state.messages > 0;
    seq++
  ) {
    const m = await service.nats.jsm.streams.getMessage(names.deadLetter, { seq });
    if (!m) continue;
    out.push({
      subject: m.subject,
      data: m.data,
      header: (name) => (m.header?.has(name) ? m.header.get(name) : undefined),
    });
  }
  return out;
}

const sameBytes = (a: Uint8Array, b: Uint8Array) =>
  Buffer.compare(Buffer.from(a), Buffer.from(b)) === 0;

// ---------------------------------------------------------------- tests

t.test(
  'exact duplicates change nothing; a conflicting re-send is dead-lettered with both versions',
  async (t) => {
    const { service, db } = await startTestService(t, { seed: smallSeed() });
    const names = streamNames(service.config);
    const subject = fillSubject(names.subjectRoot, 'BUY1', service.config.partitions);
    const f1 = fill(1, 500n);

    await service.publisher.publishFill(f1);
    await confirmedThrough(service, 'BUY1', 1);
    await consumerDrained(service, 'BUY1');
    const before = await views(service, ['A1', 'A2', 'A3'], ['BUY1']);
    const journalBefore = await journalCounts(db);
    t.same(
      before.accounts.map((a) => [a.accountId, a.positions.SEC1, a.lastAppliedSeqByOrder.BUY1]),
      [
        ['A1', '1300', 1],
        ['A2', '650', 1],
        ['A3', '50', 1],
      ],
      'the first fill is applied pro-rata',
    );

    // 1. The same fill again (same fillId = Nats-Msg-Id): the server drops it.
    await service.publisher.publishFill(f1);
    const again = await service.nats.js.publish(subject, encodeFill(f1), { msgID: f1.fillId });
    t.equal(again.duplicate, true, 'JetStream reports the re-publish as a duplicate');
    // 2. A different fillId for an already applied seq: a conflict, never a duplicate.
    await service.publisher.publishFill({ ...f1, fillId: 'F1-replayed' });
    // 3. The same fillId under a different Nats-Msg-Id: the server keeps it, the block order drops it.
    const raw = await service.nats.js.publish(subject, encodeFill(f1), { msgID: 'another-msg-id' });
    t.equal(raw.duplicate, false, 'a different Nats-Msg-Id is stored');

    const stream = await service.nats.jsm.streams.info(names.executions);
    t.equal(
      stream.state.messages,
      3,
      'the stream holds F1, F1-replayed and the raw re-publish only',
    );

    await eventually('the duplicate and the conflict answered', () =>
      service.consumer.stats.duplicates + service.consumer.stats.conflicts === 2 ? true : undefined,
    );
    await consumerDrained(service, 'BUY1');
    t.same(
      service.consumer.stats,
      { acked: 1, duplicates: 1, deadLettered: 1, conflicts: 1, nakked: 0 },
      'the exact duplicate is acked; the conflict is dead-lettered, counted, never retried',
    );
    const stats = await service.app.inject({ method: 'GET', url: '/api/v1/consumer/stats' });
    t.same(
      stats.json(),
      { acked: 1, duplicates: 1, deadLettered: 1, conflicts: 1, nakked: 0, heldFills: 0 },
      'an operator sees the conflict on GET /consumer/stats',
    );
    const dead = await service.nats.jsm.streams.getMessage(names.deadLetter, { seq: 1 });
    t.equal(dead?.header.get(DeadLetterHeader.Reason), 'CONFLICTING_EXECUTION');
    t.match(
      dead?.header.get(DeadLetterHeader.Detail),
      /already applied as fill F1; this message differs in fillId/,
    );
    t.match(JSON.parse(dead?.header.get(DeadLetterHeader.Existing) ?? '{}'), {
      fillId: 'F1',
      seq: 1,
      quantity: '500',
    });
    t.match(
      decodeFill(
        dead?.data ?? new Uint8Array(),
        subject,
        names.subjectRoot,
        service.config.partitions,
      ),
      {
        ok: true,
        fill: { fillId: 'F1-replayed' },
      },
      'the message itself is the other version',
    );
    t.same(await views(service, ['A1', 'A2', 'A3'], ['BUY1']), before, 'API views unchanged');
    t.same(await journalCounts(db), journalBefore, 'journal rows per key unchanged');
  },
);

t.test(
  'only the same execution is a Duplicate; a colliding one is refused and journals nothing',
  async (t) => {
    const { service, db } = await startTestService(t, { seed: smallSeed() });
    const f1 = fill(1, 500n);
    await service.publisher.publishFill(f1);
    await confirmedThrough(service, 'BUY1', 1);
    const before = await views(service, ['A1', 'A2', 'A3'], ['BUY1']);
    const journalBefore = await journalCounts(db);

    const same = await service.allocate(f1);
    t.equal(same.type, 'Duplicate', 'the same fill is a duplicate');
    const sameSeq = await service.allocate({ ...f1, fillId: 'F1-other' });
    t.match(
      sameSeq,
      { type: 'Rejected', reason: 'CONFLICTING_EXECUTION', existing: { fillId: f1.fillId } },
      'another fillId at an applied seq is a conflict',
    );
    const sameId = await service.allocate({ ...f1, seq: 2, quantity: 100n });
    t.match(
      sameId,
      { type: 'Failed', code: 'EXECUTION_CONFLICT' },
      'the applied fillId at a new seq fails its commit on the index',
    );

    t.same(await views(service, ['A1', 'A2', 'A3'], ['BUY1']), before, 'API views unchanged');
    t.same(await journalCounts(db), journalBefore, 'journal rows per key unchanged');
  },
);

t.test(
  'poison messages go to the dead-letter stream with their reason and original bytes',
  async (t) => {
    const { service } = await startTestService(t, { seed: smallSeed() });
    const names = streamNames(service.config);
    const partitions = service.config.partitions;
    const buySubject = fillSubject(names.subjectRoot, 'BUY1', partitions);
    const wire = (overrides: Record<string, unknown>, omit?: string) => {
      const m: Record<string, unknown> = { v: 1, ...fill(1, 500n), ...overrides };
      if (omit) delete m[omit];
      return packPlain(m);
    };
    let garbage = randomBytes(64);
    while (
      ((bytes) => {
        try {
          unpackPlain(bytes);
          return true;
        } catch {
          return false;
        }
      })(garbage)
    ) {
      garbage = randomBytes(64);
    }

    interface Poison {
      label: string;
      subject: string;
      bytes: Uint8Array;
      reason: string;
      field?: string;
      rule?: RegExp;
      detail?: RegExp;
    }
    const positive = /^must be > 0 and fit in 64 bits$/;
    const poison: Poison[] = [
      {
        label: 'random bytes',
        subject: buySubject,
        bytes: garbage,
        reason: 'DECODE_FAILED',
        field: '(message)',
        rule: /^must be msgpack/,
      },
      {
        label: 'missing venue',
        subject: buySubject,
        bytes: wire({}, 'venue'),
        reason: 'INVALID_FIELD',
        field: 'venue',
        rule: /^must be 1 to 32 printable ASCII characters$/,
      },
      {
        label: 'missing seq',
        subject: buySubject,
        bytes: wire({}, 'seq'),
        reason: 'INVALID_FIELD',
        field: 'seq',
        rule: /^must be an integer >= 1$/,
      },
      {
        label: 'float quantity',
        subject: buySubject,
        bytes: wire({ quantity: 10.5 }),
        reason: 'INVALID_FIELD',
        field: 'quantity',
        rule: /never a float/,
      },
      {
        label: 'zero quantity',
        subject: buySubject,
        bytes: wire({ quantity: 0n }),
        reason: 'INVALID_FIELD',
        field: 'quantity',
        rule: positive,
      },
      {
        label: 'negative quantity',
        subject: buySubject,
        bytes: wire({ quantity: -10n }),
        reason: 'INVALID_FIELD',
        field: 'quantity',
        rule: positive,
      },
      {
        label: 'zero price',
        subject: buySubject,
        bytes: wire({ price: 0n }),
        reason: 'INVALID_FIELD',
        field: 'price',
        rule: positive,
      },
      {
        label: 'negative price',
        subject: buySubject,
        bytes: wire({ price: -1n }),
        reason: 'INVALID_FIELD',
        field: 'price',
        rule: positive,
      },
      {
        label: 'unknown block order',
        subject: fillSubject(names.subjectRoot, 'NOPE', partitions),
        bytes: encodeFill(fill(1, 500n, { blockOrderId: 'NOPE', fillId: 'FNOPE' })),
        reason: 'UNKNOWN_BLOCK_ORDER',
        detail: /no block order NOPE/,
      },
      {
        label: 'overfill',
        subject: buySubject,
        bytes: encodeFill(fill(1, 2_000n, { fillId: 'FBIG' })),
        reason: 'OVERFILL',
        detail: /2000 exceeds the order's remaining 1000/,
      },
      {
        label: 'payload for another block order than its subject',
        subject: buySubject,
        bytes: encodeFill(fill(1, 100n, { blockOrderId: 'SELL1', fillId: 'FWRONG' })),
        reason: 'INVALID_FIELD',
        field: 'blockOrderId',
        rule: /^must match the subject/,
      },
    ];

    const streamSeqs = new Map<number, Poison>();
    for (const p of poison) {
      const ack = await service.nats.js.publish(p.subject, p.bytes);
      streamSeqs.set(ack.seq, p);
    }
    // A valid fill behind the poison, on the same subject as most of it.
    await service.publisher.publishFill(fill(1, 500n));

    const order = await confirmedThrough(service, 'BUY1', 1);
    t.equal(order.filledQuantity, '500', 'the valid fill behind the poison is allocated');
    t.equal((await account(service, 'A1')).positions.SEC1, '1300');
    await eventually('every poison message dead-lettered', () =>
      service.consumer.stats.deadLettered === poison.length ? true : undefined,
    );

    const letters = await deadLetters(service);
    t.equal(letters.length, poison.length, 'one dead letter per poison message');
    for (const letter of letters) {
      const original = Number(letter.header(DeadLetterHeader.OriginalSequence));
      const p = streamSeqs.get(original);
      if (!p) {
        t.fail(`dead letter for unexpected stream seq ${original}`);
        continue;
      }
      t.test(p.label, async (t) => {
        t.equal(letter.header(DeadLetterHeader.Reason), p.reason, 'reason');
        t.equal(
          letter.subject,
          `${names.dlqSubjectRoot}.${p.reason.toLowerCase()}`,
          'dead-letter subject',
        );
        t.equal(letter.header(DeadLetterHeader.OriginalSubject), p.subject, 'original subject');
        t.equal(letter.header(DeadLetterHeader.Field), p.field, 'field');
        if (p.rule) t.match(letter.header(DeadLetterHeader.Rule) ?? '', p.rule, 'rule');
        else t.equal(letter.header(DeadLetterHeader.Rule), undefined, 'no rule');
        if (p.detail) t.match(letter.header(DeadLetterHeader.Detail) ?? '', p.detail, 'detail');
        t.ok(sameBytes(letter.data, p.bytes), 'data is the original bytes, exactly');
      });
    }
    t.same(
      [...streamSeqs.values()]
        .filter(
          (p) =>
            !letters.some(
              (l) => streamSeqs.get(Number(l.header(DeadLetterHeader.OriginalSequence))) === p,
            ),
        )
        .map((p) => p.label),
      [],
      'no poison message is missing from the dead-letter stream',
    );

    t.equal(service.consumer.stats.acked, 1, 'only the valid fill was allocated');
    t.equal(service.blockOrders.crashCount, 0, 'no block order crashed');
    t.equal(service.accounts.crashCount, 0, 'no account crashed');
    const ready = await service.app.inject({ method: 'GET', url: '/readyz' });
    t.equal(ready.statusCode, 200, `ready: ${ready.body}`);
    t.equal(ready.json<{ ready: boolean }>().ready, true);

    // And it keeps working after the poison.
    await service.publisher.publishFill(fill(2, 500n));
    const done = await confirmedThrough(service, 'BUY1', 2);
    t.equal(done.status, 'FILLED');
  },
);

t.test(
  'a fill on a partition subject no consumer reads is refused or dead-lettered, never stranded',
  async (t) => {
    const { service } = await startTestService(t, { seed: smallSeed() });
    const names = streamNames(service.config);
    // Partitions are 0..PARTITIONS-1; the stream's subject filter is `<root>.*.*`.
    const subject = `${names.subjectRoot}.${service.config.partitions}.BUY1`;
    const bytes = encodeFill(fill(1, 500n));
    const refused = await service.nats.js.publish(subject, bytes).then(
      () => false,
      () => true,
    );
    const deadLettered =
      refused ||
      (await eventually(
        'the fill dead-lettered',
        () => (service.consumer.stats.deadLettered === 1 ? true : undefined),
        5_000,
      ).catch(() => false));
    const info = await service.nats.jsm.streams.info(names.executions);
    t.ok(
      refused || deadLettered,
      `JetStream stored the fill on ${subject} (stream holds ${info.state.messages}) but no consumer filters that partition: it is neither refused nor dead-lettered`,
    );
    if (deadLettered && !refused) {
      const [letter] = await deadLetters(service);
      t.ok(letter && sameBytes(letter.data, bytes), 'original bytes in the dead letter');
    }
  },
);

t.test(
  "a fill that arrives before its predecessor is held until it fits, not nak'ed",
  async (t) => {
    const { service } = await startTestService(t, { seed: smallSeed() });
    await service.publisher.publishFill(fill(2, 500n, { price: 101_750_000n }));
    await service.publisher.publishFill(fill(1, 500n));
    const order = await confirmedThrough(service, 'BUY1', 2);
    t.equal(order.fills, 2);
    t.equal(order.filledQuantity, '1000');
    t.equal(order.vwapPrice, '101.500000');
    t.equal(service.consumer.stats.nakked, 0, 'seq 2 waited in the hold: no nak, no redelivery');
    t.equal(service.consumer.heldFills, 0, 'nothing left held');
    t.equal(service.consumer.stats.acked, 2, 'both fills allocated');
    t.equal(service.consumer.stats.deadLettered, 0, 'nothing dead-lettered');
    const a1 = await account(service, 'A1');
    t.equal(a1.positions.SEC1, '1600');
    t.same(a1.lastAppliedSeqByOrder, { BUY1: 2 });
    t.equal(a1.cashMinor, String(1_000_000_00n - 6_090_000n));
  },
);

t.test(
  'a fill that never becomes contiguous is dead-lettered after the delivery bound',
  async (t) => {
    const { service } = await startTestService(t, {
      seed: smallSeed(),
      // A hold lasts at most 2 × the ack wait per delivery.
      config: { CONSUMER_DELIVERIES_MAX: '2', CONSUMER_ACK_WAIT_MS: '1000' },
    });
    const names = streamNames(service.config);
    await service.publisher.publishFill(fill(1, 100n));
    await confirmedThrough(service, 'BUY1', 1);
    const f5 = fill(5, 100n);
    await service.publisher.publishFill(f5);

    await eventually('seq 5 dead-lettered', () =>
      service.consumer.stats.deadLettered === 1 ? true : undefined,
    );
    const [letter, ...rest] = await deadLetters(service);
    t.equal(rest.length, 0, 'exactly one dead letter');
    t.equal(letter?.header(DeadLetterHeader.Reason), 'DELIVERIES_EXHAUSTED');
    t.equal(letter?.subject, `${names.dlqSubjectRoot}.deliveries_exhausted`);
    t.match(letter?.header(DeadLetterHeader.Detail) ?? '', /^OUT_OF_ORDER: expected seq 2, got 5/);
    t.ok(letter && sameBytes(letter.data, encodeFill(f5)), 'original bytes');
    t.equal(service.consumer.stats.nakked, 1, "nak'ed once, dead-lettered on the second delivery");
    t.equal((await blockOrder(service, 'BUY1')).lastFillSeq, 1, 'seq 5 was not applied');

    // The partition is not blocked behind it.
    await service.publisher.publishFill(fill(2, 100n));
    await confirmedThrough(service, 'BUY1', 2);
  },
);

t.test(
  'a sell beyond the position is rejected by the account, and the order still confirms',
  async (t) => {
    const { service, db } = await startTestService(t, { seed: smallSeed() });
    const price = 50_000_000n; // 50.00
    // Pro-rata on remaining 400/100: 160 to A1, 40 to A4 (which holds only 20).
    await service.publisher.publishFill(
      fill(1, 200n, { blockOrderId: 'SELL1', fillId: 'S1', price }),
    );
    const order = await confirmedThrough(service, 'SELL1', 1);
    t.same(
      order.accounts.map((a) => [a.accountId, a.allocatedQuantity]),
      [
        ['A1', '160'],
        ['A4', '40'],
      ],
    );
    const a4 = await account(service, 'A4');
    t.equal(a4.rejectedAllocations, 1, 'A4 rejected its line');
    t.equal(a4.positions.SEC1, '20', 'A4 position unchanged');
    t.equal(a4.cashMinor, '0', 'A4 cash unchanged');
    t.same(a4.lastAppliedSeqByOrder, { SELL1: 1 }, 'the rejection settles seq 1');
    const a1 = await account(service, 'A1');
    t.equal(a1.positions.SEC1, '840');
    t.equal(a1.cashMinor, String(1_000_000_00n + 160n * 5_000n));
    t.equal(a1.rejectedAllocations, 0);
    const rejected = await db.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM journal WHERE persistence_key = 'account-A4' AND event_type = 'AllocationRejected'",
    );
    t.equal(Number(rejected[0]?.n), 1, 'the rejection is journaled once');

    // A later line that fits is applied on top (remaining 240/60, fill 50: 40 and 10).
    await service.publisher.publishFill(
      fill(2, 50n, { blockOrderId: 'SELL1', fillId: 'S2', price }),
    );
    await confirmedThrough(service, 'SELL1', 2);
    const a4After = await account(service, 'A4');
    t.equal(a4After.positions.SEC1, '10');
    t.equal(a4After.cashMinor, String(10n * 5_000n));
    t.equal(a4After.rejectedAllocations, 1);
  },
);

t.test(
  'API errors are JSON: 404 for an unknown id, 400 naming the field for a bad one',
  async (t) => {
    const { service } = await startTestService(t, { seed: smallSeed() });
    const missing = await service.app.inject({ method: 'GET', url: '/api/v1/accounts/NOPE' });
    t.equal(missing.statusCode, 404);
    t.match(missing.headers['content-type'], /^application\/json/);
    t.match(missing.json(), { statusCode: 404, error: 'NOT_FOUND', message: /NOPE/ });

    const missingOrder = await service.app.inject({
      method: 'GET',
      url: '/api/v1/block-orders/NOPE',
    });
    t.equal(missingOrder.statusCode, 404);
    t.match(missingOrder.json(), { statusCode: 404, error: 'NOT_FOUND' });

    const bad = await service.app.inject({ method: 'GET', url: '/api/v1/accounts/bad%20id' });
    t.equal(bad.statusCode, 400);
    t.match(bad.headers['content-type'], /^application\/json/);
    t.match(bad.json(), { statusCode: 400, error: 'BAD_REQUEST', field: 'id', message: /id/ });

    t.equal(service.accounts.crashCount, 0);
  },
);
