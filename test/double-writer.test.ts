/**
 * Two processes wrongly consuming the same partition (here: two services on
 * one database, each handed every fill) cannot corrupt the journal. The
 * second writer of a row fails on the key (JOURNAL_CONFLICT) or on the
 * fill id (EXECUTION_CONFLICT), its actor resets to what the journal holds,
 * and a retry (what a redelivery does) finds the fill applied: every fill
 * is journaled once, every line applied once, the books exact.
 */
import t from 'tap';
import { evolve, initialState, type AccountEvent } from '../actors/account/decider.ts';
import type { BlockOrderEvent } from '../actors/block-order/decider.ts';
import type { AllocateFillReply } from '../actors/protocol.ts';
import { decodeVersioned } from '../persistence/codec.ts';
import { startService, type Service } from '../system/service.ts';
import { createLogger } from '../system/log.ts';
import { testFill as fill } from './helpers/asserts.ts';
import {
  accountView,
  eventually,
  smallSeed,
  startTestService,
  uniqueSuffix,
} from './helpers/harness.ts';

/** Asks until the answer is not a failure (a redelivery, in effect); returns every answer. */
async function untilAnswered(service: Service, seq: number): Promise<AllocateFillReply[]> {
  const answers: AllocateFillReply[] = [];
  for (let attempt = 0; attempt < 50; attempt++) {
    const reply = await service.allocate(fill(seq, 10n));
    answers.push(reply);
    if (reply.type !== 'Failed') return answers;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`seq ${seq} never answered: ${answers.at(-1)?.type}`);
}

t.test('a second writer fails on the key, resets, and the journal stays exact', async (t) => {
  const first = await startTestService(t, { seed: smallSeed() });
  // The second process: same database, its own streams (it never consumes them).
  const second = await startService(
    { ...first.config, namespace: `T${uniqueSuffix()}` },
    { log: createLogger('silent', {}) },
  );
  t.teardown(() => second.stop());
  const fills = 40;
  const codes = new Map<string, number>();
  for (let seq = 1; seq <= fills; seq++) {
    const [a, b] = await Promise.all([
      untilAnswered(first.service, seq),
      untilAnswered(second, seq),
    ]);
    for (const reply of [...a, ...b]) {
      const code = reply.type === 'Failed' ? reply.code : reply.type;
      codes.set(code, (codes.get(code) ?? 0) + 1);
      t.not(reply.type, 'Rejected', `seq ${seq}: never rejected (${reply.type})`);
    }
  }
  t.ok((codes.get('JOURNAL_CONFLICT') ?? 0) > 0, `the second writer met the key: ${[...codes]}`);
  t.equal(
    (codes.get('Allocated') ?? 0) + (codes.get('Duplicate') ?? 0),
    2 * fills,
    'each process got an answer for every fill',
  );

  // The journal: every fill exactly once, in order; the index agrees.
  const rows = await first.db.query<{ payload: Buffer }>(
    `SELECT payload FROM journal WHERE persistence_key = 'block-order-BUY1'
     ORDER BY sequence_nr`,
  );
  const allocatedEvents = rows
    .map((r) => decodeVersioned(r.payload, 'row') as BlockOrderEvent)
    .flatMap((e) => (e.type === 'FillAllocated' ? [e] : []));
  const seqs = allocatedEvents.map((e) => e.fill.seq);
  t.strictSame(
    seqs,
    Array.from({ length: fills }, (_, i) => i + 1),
  );
  const [indexed] = await first.db.query<{ n: string }>(
    "SELECT count(*)::text AS n FROM executions WHERE block_order_id = 'BUY1'",
  );
  t.equal(indexed?.n, String(fills));

  // The accounts, from their journals (a stale writer's in-memory view may
  // lag until its next conflict): opening position + the journaled lines, once.
  const expected: Record<string, bigint> = { A1: 1_000n, A2: 500n, A3: 0n };
  for (const e of allocatedEvents)
    for (const line of e.lines)
      expected[line.accountId] = (expected[line.accountId] ?? 0n) + line.quantity;
  t.equal(
    Object.values(expected).reduce((a, b) => a + b, 0n),
    1_500n + 400n,
    '400 allocated',
  );
  const fold = async (id: string) => {
    const journal = await first.db.query<{ payload: Buffer }>(
      'SELECT payload FROM journal WHERE persistence_key = $1 ORDER BY sequence_nr',
      [`account-${id}`],
    );
    const state = journal
      .map((r) => decodeVersioned(r.payload, 'row') as AccountEvent)
      .reduce(evolve, initialState());
    // Never opened (no line reached it): its opening position, none here.
    return state.status === 'Open' ? (state.positions.SEC1 ?? 0n) : 0n;
  };
  // Wait (bounded) until the books are complete; the assertions below show any difference.
  await eventually('every line applied once, in the journals', async () => {
    for (const [id, position] of Object.entries(expected))
      if ((await fold(id)) !== position) return undefined;
    return true;
  }).catch(() => undefined);

  for (const [id, position] of Object.entries(expected)) t.equal(await fold(id), position, id);
  t.equal((await accountView(first.service, 'A1')).opened, true);
});
