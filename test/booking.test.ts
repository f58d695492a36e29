/**
 * Booking: the file's rules (pure), then closes against a running service:
 * the CSV holds exactly the accounts' movements, each line once, in the
 * right order and at the right New York date; concurrent closes, nothing
 * to book, cleanup and regeneration, membership and the line bound.
 */
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import type { AccountEvent } from '../actors/account/decider.ts';
import { movementsOf } from '../actors/account/movements.ts';
import type { Entry } from '../actors/block-order/decider.ts';
import { formatPrice } from '../actors/domain/money.ts';
import { decodeVersioned } from '../persistence/codec.ts';
import type { Database } from '../persistence/db.ts';
import {
  BOOKING_CSV_HEADER,
  BookingConflictError,
  bookingBatch,
  bookingFile,
  bookingMembership,
  closeBookingBatch,
  csvRow,
  sha256Of,
  sourceIdOf,
  tradeDateNewYork,
  transactionTypeOf,
  type BookingDeps,
} from '../system/booking.ts';
import type { BookingBatchView } from '../api/ports.ts';
import type { Service } from '../system/service.ts';
import { deferred } from './helpers/asserts.ts';
import {
  confirmedThrough,
  eventually,
  smallSeed,
  startTestService,
  type Teardown,
} from './helpers/harness.ts';

const utc = (iso: string) => Date.parse(iso);

t.test('transaction dates are New York dates, across both DST changes', async (t) => {
  const cases: Array<[string, string]> = [
    ['2026-03-08T04:59:59.999Z', '2026-03-07'], // 23:59 EST
    ['2026-03-08T05:00:00.000Z', '2026-03-08'], // 00:00 EST
    ['2026-03-08T06:30:00.000Z', '2026-03-08'], // 01:30 EST, before the jump
    ['2026-03-08T07:30:00.000Z', '2026-03-08'], // 03:30 EDT, after it
    ['2026-03-09T03:59:00.000Z', '2026-03-08'], // 23:59 EDT
    ['2026-03-09T04:00:00.000Z', '2026-03-09'], // midnight is 04:00Z now
    ['2026-07-01T03:59:59.999Z', '2026-06-30'],
    ['2026-07-01T04:00:00.000Z', '2026-07-01'],
    ['2026-11-01T03:59:00.000Z', '2026-10-31'], // still EDT
    ['2026-11-01T06:30:00.000Z', '2026-11-01'], // 01:30 EST, the second one
    ['2026-11-02T04:59:00.000Z', '2026-11-01'], // 23:59 EST
    ['2026-11-02T05:00:00.000Z', '2026-11-02'],
    ['1970-01-01T00:00:00.000Z', '1969-12-31'],
  ];
  for (const [iso, date] of cases) t.equal(tradeDateNewYork(utc(iso)), date, iso);
});

t.test('a row: types, source ids, a positive quantity and six price digits', async (t) => {
  const m = { blockOrderId: 'BO-1_x', fillSeq: 7, side: 'SELL' as const };
  t.equal(transactionTypeOf({ ...m, kind: 'ALLOCATION' }), 'SELL');
  t.equal(transactionTypeOf({ ...m, kind: 'SUSPENSE_APPLIED' }), 'SELL');
  t.equal(transactionTypeOf({ ...m, kind: 'REVERSAL' }), 'SELL_REVERSAL');
  t.equal(sourceIdOf('A-9', { ...m, kind: 'ALLOCATION' }), 'AC.BO-1_x.7.A-9');
  t.equal(sourceIdOf('A-9', { ...m, kind: 'REVERSAL' }), 'AC.BO-1_x.7.A-9.R');
  const row = {
    accountId: 'A-9',
    securityId: 'SEC,1',
    sourceId: 'AC.BO-1_x.7.A-9.R',
    transactionType: 'SELL_REVERSAL',
    quantity: 40n,
    price: 1_000_001n,
    transactionDate: '2026-11-20',
  };
  t.equal(csvRow(row), 'A-9,"SEC,1",AC.BO-1_x.7.A-9.R,SELL_REVERSAL,40,1.000001,2026-11-20\n');
  t.throws(() => csvRow({ ...row, quantity: 0n }), { code: 'INVARIANT' });
});

// ------------------------------------------------------------ against a service

const fill = (
  fillId: string,
  blockOrderId: string,
  seq: number,
  q: bigint,
  p: bigint,
  at: string,
) =>
  ({
    fillId,
    blockOrderId,
    seq,
    quantity: q,
    price: p,
    venue: 'XNYS',
    executedAtMs: utc(at),
  }) as Entry;

/** The file's rows, computed apart from booking.ts: every movement of every account journal row. */
async function expectedRows(db: Database, executedAt: Map<string, number>): Promise<string[]> {
  const rows = await db.query<{ persistence_key: string; sequence_nr: string; payload: Buffer }>(
    `SELECT persistence_key, sequence_nr, payload FROM journal
     WHERE persistence_key LIKE 'account-%' ORDER BY persistence_key, sequence_nr`,
  );
  const out: Array<{ sort: [string, number, number]; row: string }> = [];
  for (const r of rows) {
    const accountId = r.persistence_key.slice('account-'.length);
    const movements = movementsOf(decodeVersioned(r.payload, 'test') as AccountEvent);
    movements.forEach((m, i) => {
      const at = executedAt.get(`${m.blockOrderId}#${m.fillSeq}`);
      if (at === undefined) throw new Error(`no time for ${m.blockOrderId}#${m.fillSeq}`);
      const fields = [accountId, m.securityId, sourceIdOf(accountId, m), transactionTypeOf(m)];
      const q = m.quantity < 0n ? -m.quantity : m.quantity;
      const row = [...fields, q.toString(), formatPrice(m.price), tradeDateNewYork(at)].join(',');
      out.push({ sort: [accountId, Number(r.sequence_nr), i], row });
    });
  }
  out.sort((a, b) =>
    a.sort[0] < b.sort[0]
      ? -1
      : a.sort[0] > b.sort[0]
        ? 1
        : a.sort[1] - b.sort[1] || a.sort[2] - b.sort[2],
  );
  return out.map((o) => o.row);
}

const bodyOf = (csv: string): string[] => {
  const [header, ...rows] = csv.split('\n');
  if (header !== BOOKING_CSV_HEADER) throw new Error(`header ${header}`);
  if (rows.pop() !== '') throw new Error('the file must end with a newline');
  return rows;
};

/** Two closes whose transactions have both read before either writes (PostgreSQL: a table lock). */
async function racedCloses(t: Teardown, deps: BookingDeps) {
  const locked = deferred();
  const release = deferred();
  const holder = deps.db.serializable(async (q) => {
    await q('LOCK TABLE booking_batches IN EXCLUSIVE MODE');
    locked.resolve();
    await release.promise;
  });
  t.teardown(async () => {
    release.resolve();
    await holder.catch(() => undefined);
  });
  await locked.promise;
  const closes = [1, 2].map(() => closeBookingBatch(deps, { cleanup: false }));
  closes.forEach((p) => p.catch(() => undefined));
  await eventually('both closes to wait to insert their batch', async () => {
    const rows = await deps.db.query(
      `SELECT 1 FROM pg_stat_activity WHERE datname = current_database()
         AND wait_event_type = 'Lock' AND query LIKE 'INSERT INTO booking_batches%'`,
    );
    return rows.length === 2 ? true : undefined;
  });
  release.resolve();
  await holder;
  return Promise.allSettled(closes);
}

interface Ctx {
  t: Test;
  service: Service;
  db: Database;
  dir: string;
  deps: BookingDeps;
  /** Publishes entries, remembering when each executed (for the expected dates). */
  publish(...entries: Entry[]): Promise<void>;
  executedAt: Map<string, number>;
}

async function context(t: Test): Promise<Ctx> {
  const { service, db } = await startTestService(t, { seed: smallSeed() });
  const dir = await mkdtemp(join(tmpdir(), 'bf-booking-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  let now = utc('2026-11-20T22:00:00Z');
  const executedAt = new Map<string, number>();
  return {
    ...{ t, service, db, dir, executedAt },
    deps: { db, bookingDir: dir, nowMs: () => (now += 60_000) },
    async publish(...entries) {
      for (const e of entries) {
        executedAt.set(`${e.blockOrderId}#${e.seq}`, e.executedAtMs);
        await service.publisher.publishEntry(e);
      }
    },
  };
}

/** Fills, a refused line and a correction; the first close holds exactly their movements. */
async function firstClose({ t, service, db, dir, deps, publish, executedAt }: Ctx) {
  // 23:30 in New York on the 20th is the 21st in UTC: the file says the 20th.
  await publish(
    fill('F1', 'BUY1', 1, 500n, 101_250_000n, '2026-11-21T04:30:00Z'),
    fill('F2', 'BUY1', 2, 500n, 101_750_000n, '2026-11-20T15:00:00Z'),
    // A4 holds 20 and is given 40 of it: refused, in suspense, not on the books.
    fill('S1', 'SELL1', 1, 200n, 100_500_000n, '2026-11-20T15:10:00Z'),
  );
  await confirmedThrough(service, 'BUY1', 2);
  await confirmedThrough(service, 'SELL1', 1);
  await publish({
    ...{ kind: 'CORRECTION', amendmentId: 'C1', blockOrderId: 'BUY1', seq: 3, fillId: 'F2' },
    ...{ quantity: 400n, price: 101_700_000n, executedAtMs: utc('2026-11-23T14:00:00Z') },
  });
  await confirmedThrough(service, 'BUY1', 3);

  const first = await closeBookingBatch(deps, { cleanup: false });
  t.match(first, {
    ...{ id: 'BKG-0000000001', batchNo: 1, windowStart: null, fileName: 'BKG-0000000001.csv' },
    ...{ fileKept: true, capped: false },
  });
  t.notOk('fileError' in first);
  const csv = await readFile(join(dir, first.fileName), 'utf8');
  t.equal(sha256Of(csv), first.checksumSha256, 'the checksum is the file’s');
  const rows = bodyOf(csv);
  t.strictSame(rows, await expectedRows(db, executedAt), 'the rows are the movements, in order');
  t.equal(first.lineCount, rows.length);
  t.equal(first.accountCount, 3, 'A1, A2, A3 (A4’s line is in suspense)');
  t.equal(first.allocationCount, 3 * 3 + 1, '3 accounts × (F1, F2, C1) + A1’s sell');
  t.ok(rows.includes('A1,SEC1,AC.BUY1.1.A1,BUY,300,101.250000,2026-11-20'), 'F1, New York date');
  t.ok(rows.includes('A1,SEC1,AC.BUY1.2.A1.R,BUY_REVERSAL,300,101.750000,2026-11-20'), 'F2 back');
  t.ok(rows.includes('A1,SEC1,AC.BUY1.3.A1,BUY,240,101.700000,2026-11-23'), 'C1 booked');
  t.ok(rows.includes('A1,SEC1,AC.SELL1.1.A1,SELL,160,100.500000,2026-11-20'), 'the sell');
  t.notOk(
    rows.some((r) => r.startsWith('A4,')),
    'nothing of A4: its line sits in suspense',
  );
  t.strictSame(await bookingBatch(db, first.id), first, 'the recorded batch');
  t.equal(await bookingBatch(db, 'BKG-0000000999'), undefined);
  return { first, csv };
}

/** Nothing new: a conflict. A new fill and two closes at once: one wins, one conflicts. */
async function conflicts({ t, service, deps, publish }: Ctx, first: BookingBatchView) {
  const nothing = await closeBookingBatch(deps, { cleanup: false }).catch((e: unknown) => e);
  t.type(nothing, BookingConflictError);
  t.match(nothing, {
    code: 'BOOKING_EMPTY',
    message: /nothing to book since batch BKG-0000000001/,
  });
  await publish(fill('F3', 'BUY1', 4, 100n, 101_000_000n, '2026-11-20T16:00:00Z'));
  await confirmedThrough(service, 'BUY1', 4);
  const raced = await racedCloses(t, deps);
  const won = raced.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const lost = raced.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
  t.equal(won.length, 1, 'one close wins');
  t.equal(lost.length, 1, 'the other loses');
  t.type(lost[0], BookingConflictError);
  // PostgreSQL says 23505; a 40001 instead is retried and finds nothing left to book.
  t.match(lost[0], {
    code: 'BOOKING_CONFLICT',
    message: /another close recorded (this batch first|BKG-0000000002 meanwhile)/,
  });
  t.match(won[0], { id: 'BKG-0000000002', lineCount: 3, windowStart: first.closedAt });
}

/** A bust closed with cleanup: the file goes, and comes back byte for byte; so does a lost one. */
async function cleanupAndRegenerate(ctx: Ctx, first: BookingBatchView, csv: string) {
  const { t, service, dir, deps, publish } = ctx;
  await publish({
    ...{ kind: 'BUST', amendmentId: 'X1', blockOrderId: 'BUY1', seq: 5, fillId: 'F1' },
    executedAtMs: utc('2026-11-24T14:00:00Z'),
  });
  await confirmedThrough(service, 'BUY1', 5);
  const third = await closeBookingBatch(deps, { cleanup: true });
  t.match(third, { id: 'BKG-0000000003', lineCount: 3, fileKept: false });
  await t.rejects(stat(join(dir, third.fileName)), { code: 'ENOENT' }, 'cleaned up');
  const regenerated = await bookingFile(deps, third.id);
  t.equal(regenerated?.fileName, third.fileName);
  t.equal(sha256Of(regenerated?.csv ?? ''), third.checksumSha256, 'regenerated: same bytes');
  t.strictSame(bodyOf(regenerated?.csv ?? ''), [
    'A1,SEC1,AC.BUY1.1.A1.R,BUY_REVERSAL,300,101.250000,2026-11-20',
    'A2,SEC1,AC.BUY1.1.A2.R,BUY_REVERSAL,150,101.250000,2026-11-20',
    'A3,SEC1,AC.BUY1.1.A3.R,BUY_REVERSAL,50,101.250000,2026-11-20',
  ]);
  // A kept file lost from disk (a crash after the commit, say) is regenerated too.
  t.equal((await bookingFile(deps, first.id))?.csv, csv, 'from disk');
  await rm(join(dir, first.fileName));
  t.equal((await bookingFile(deps, first.id))?.csv, csv, 'regenerated, the same bytes');
  t.equal(await bookingFile(deps, 'BKG-0000000999'), undefined);
}

/** F1's lines, booked in batch 1 and taken back in batch 3; by a bust's id too. */
async function membership({ t, db }: Ctx, first: BookingBatchView) {
  const f1 = await bookingMembership(db, 'F1');
  t.strictSame(
    f1.batches.map((b) => b.id),
    ['BKG-0000000001', 'BKG-0000000003'],
  );
  t.equal(f1.batches[0]?.closedAt, first.closedAt);
  t.strictSame(
    f1.lines.map((l) => [l.batchId, l.sourceId, l.executionId, l.quantity, l.transactionDate]),
    [
      ['BKG-0000000001', 'AC.BUY1.1.A1', 'F1', '300', '2026-11-20'],
      ['BKG-0000000001', 'AC.BUY1.1.A2', 'F1', '150', '2026-11-20'],
      ['BKG-0000000001', 'AC.BUY1.1.A3', 'F1', '50', '2026-11-20'],
      ['BKG-0000000003', 'AC.BUY1.1.A1.R', 'X1', '300', '2026-11-20'],
      ['BKG-0000000003', 'AC.BUY1.1.A2.R', 'X1', '150', '2026-11-20'],
      ['BKG-0000000003', 'AC.BUY1.1.A3.R', 'X1', '50', '2026-11-20'],
    ],
  );
  t.match(f1.lines[0], {
    ...{ fillId: 'F1', blockOrderId: 'BUY1', fillSeq: 1, entrySeq: 1 },
    ...{ persistenceKey: 'account-A1', movementKind: 'ALLOCATION', price: '101.250000' },
    cashDeltaMinor: '-3037500',
  });
  const f2 = (await bookingMembership(db, 'F2')).lines.map((l) => l.sourceId);
  const f2Expected = ['A1', 'A2', 'A3'].flatMap((a) => [
    `AC.BUY1.2.${a}`,
    `AC.BUY1.2.${a}.R`,
    `AC.BUY1.3.${a}`,
  ]);
  t.strictSame(f2, f2Expected, 'the fill, its correction’s reversal and new lines');
  t.strictSame(
    (await bookingMembership(db, 'X1')).lines.map((l) => l.sourceId),
    ['AC.BUY1.1.A1.R', 'AC.BUY1.1.A2.R', 'AC.BUY1.1.A3.R'],
    'by the bust’s id',
  );
  t.strictSame(await bookingMembership(db, 'NOPE'), {
    ...{ fillId: 'NOPE', batches: [], lines: [], truncated: false },
  });
}

/** The bound: one line per close, the rest left for the next; every movement once overall. */
async function bounded({ t, service, db, deps, publish, executedAt }: Ctx) {
  await publish(fill('F4', 'BUY1', 6, 500n, 102_000_000n, '2026-11-20T17:00:00Z'));
  await confirmedThrough(service, 'BUY1', 6);
  const capped = [];
  for (let i = 0; i < 3; i++)
    capped.push(await closeBookingBatch(deps, { cleanup: false, linesMax: 1 }));
  t.strictSame(
    capped.map((b) => [b.lineCount, b.capped]),
    [
      [1, true],
      [1, true],
      [1, false],
    ],
  );
  await t.rejects(closeBookingBatch(deps, { cleanup: false }), BookingConflictError);
  const all: string[] = [];
  for (let n = 1; n <= 6; n++) {
    const file = await bookingFile(deps, `BKG-${String(n).padStart(10, '0')}`);
    all.push(...bodyOf(file?.csv ?? ''));
  }
  t.strictSame(all.sort(), (await expectedRows(db, executedAt)).sort(), 'each movement once');
}

t.test('closes book every movement exactly once, traced to its fill', async (t) => {
  const ctx = await context(t);
  const { first, csv } = await firstClose(ctx);
  await conflicts(ctx, first);
  await cleanupAndRegenerate(ctx, first, csv);
  await membership(ctx, first);
  await bounded(ctx);
});
