/**
 * Booking in SQL (migration 6; the rules are system/booking.ts's): the
 * per-key marks, the batch history and its membership (one row per booked
 * line). Every statement runs on PostgreSQL and CockroachDB; the writes run
 * inside the caller's SERIALIZABLE transaction.
 */
import type { MovementKind } from '../actors/account/movements.ts';
import type { Side } from '../actors/domain/money.ts';
import { invariant } from '../actors/errors.ts';
import type { Database, Query } from './db.ts';
import { likePrefix } from './journal.ts';

/** Rows per multi-row INSERT: 1,000 × 19 parameters stays far below PostgreSQL's 65,535. */
export const INSERT_ROWS_MAX = 1_000;
/** (order, seq) pairs per execution lookup. */
const LOOKUP_PAIRS_MAX = 5_000;

export interface BatchRecord {
  id: string;
  batchNo: number;
  /** The previous batch's close (null for the first): informative, the marks decide membership. */
  windowStartMs: number | null;
  closedAtMs: number;
  lineCount: number;
  allocationCount: number;
  accountCount: number;
  journalRowCount: number;
  /** The batch reached its bound of lines: what is left waits for the next close. */
  capped: boolean;
  fileName: string;
  checksumSha256: string;
  fileKept: boolean;
}

/** One booked line: a CSV row and where it came from. */
export interface BookedLine {
  lineNo: number;
  sourceId: string;
  accountId: string;
  securityId: string;
  side: Side;
  movementKind: MovementKind;
  transactionType: string;
  /** Positive shares. */
  quantity: bigint;
  price: bigint;
  cashDeltaMinor: bigint;
  transactionDate: string;
  blockOrderId: string;
  fillSeq: number;
  entrySeq: number;
  /** The fill whose lines these are (the index's lines key: a fill id, or an average-price release key). */
  fillId: string;
  /** The entry (fill or amendment) at entrySeq. */
  executionId: string;
  persistenceKey: string;
  sequenceNr: number;
}

export interface JournalRowRead {
  key: string;
  seq: number;
  payload: Buffer;
}

/** The execution index at one (order, seq). */
export interface ExecutionRef {
  executionId: string;
  fillId: string;
  executedAtMs: number;
}

export const executionRefKey = (blockOrderId: string, seq: number): string =>
  `${blockOrderId}\u0000${seq}`;

const msOf = (value: Date | string): number => new Date(value).getTime();
const isoOf = (ms: number): string => new Date(ms).toISOString();

interface BatchRow {
  id: string;
  batch_no: string;
  window_start: Date | string | null;
  closed_at: Date | string;
  line_count: string;
  allocation_count: string;
  account_count: string;
  journal_row_count: string;
  capped: boolean;
  file_name: string;
  checksum_sha256: string;
  file_kept: boolean;
}

const BATCH_COLUMNS = `id, batch_no, window_start, closed_at, line_count, allocation_count,
  account_count, journal_row_count, capped, file_name, checksum_sha256, file_kept`;

function batchOf(r: BatchRow): BatchRecord {
  return {
    id: r.id,
    batchNo: Number(r.batch_no),
    windowStartMs: r.window_start === null ? null : msOf(r.window_start),
    closedAtMs: msOf(r.closed_at),
    lineCount: Number(r.line_count),
    allocationCount: Number(r.allocation_count),
    accountCount: Number(r.account_count),
    journalRowCount: Number(r.journal_row_count),
    capped: r.capped,
    fileName: r.file_name,
    checksumSha256: r.checksum_sha256,
    fileKept: r.file_kept,
  };
}

export async function lastBatch(q: Query): Promise<BatchRecord | undefined> {
  const rows = await q<BatchRow>(
    `SELECT ${BATCH_COLUMNS} FROM booking_batches ORDER BY batch_no DESC LIMIT 1`,
  );
  return rows[0] && batchOf(rows[0]);
}

export async function batchById(db: Database, id: string): Promise<BatchRecord | undefined> {
  const rows = await db.query<BatchRow>(
    `SELECT ${BATCH_COLUMNS} FROM booking_batches WHERE id = $1`,
    [id],
  );
  return rows[0] && batchOf(rows[0]);
}

export async function setFileKept(db: Database, id: string, kept: boolean): Promise<void> {
  await db.statement(`UPDATE booking_batches SET file_kept = $2 WHERE id = $1`, [id, kept]);
}

/**
 * Up to `limitRows` journal rows of keys under `prefix` above their mark,
 * after (key, seq) `after`, in key and seq order.
 */
export async function unbookedPage(
  q: Query,
  prefix: string,
  after: { key: string; seq: number },
  limitRows: number,
): Promise<JournalRowRead[]> {
  const rows = await q<{ persistence_key: string; sequence_nr: string; payload: Buffer }>(
    `SELECT j.persistence_key, j.sequence_nr, j.payload
     FROM journal j LEFT JOIN booking_marks m ON m.persistence_key = j.persistence_key
     WHERE j.persistence_key LIKE $1 AND (j.persistence_key, j.sequence_nr) > ($2, $3)
       AND j.sequence_nr > coalesce(m.booked_through_seq, 0)
     ORDER BY j.persistence_key, j.sequence_nr LIMIT $4`,
    [likePrefix(prefix), after.key, after.seq, limitRows],
  );
  return rows.map((r) => ({
    key: r.persistence_key,
    seq: Number(r.sequence_nr),
    payload: r.payload,
  }));
}

interface ExecutionRefRow {
  block_order_id: string;
  fill_seq: string;
  fill_id: string;
  kind: string;
  amends_fill_id: string | null;
  lines_key: string | null;
  executed_at_ms: string;
}

/** The execution index at each (order, seq) asked, by executionRefKey. */
export async function executionsAt(
  q: Query,
  pairs: ReadonlyArray<{ blockOrderId: string; seq: number }>,
): Promise<Map<string, ExecutionRef>> {
  const out = new Map<string, ExecutionRef>();
  for (let i = 0; i < pairs.length; i += LOOKUP_PAIRS_MAX) {
    const chunk = pairs.slice(i, i + LOOKUP_PAIRS_MAX);
    const rows = await q<ExecutionRefRow>(
      `SELECT e.block_order_id, e.fill_seq, e.fill_id, e.kind, e.amends_fill_id, e.lines_key,
              e.executed_at_ms
       FROM unnest($1::text[], $2::bigint[]) AS k (o, s)
       JOIN executions e ON e.block_order_id = k.o AND e.fill_seq = k.s`,
      [chunk.map((p) => p.blockOrderId), chunk.map((p) => p.seq)],
    );
    for (const r of rows) {
      // Rows from before lines_key existed: a fill's own id, or the fill an amendment names.
      const fillId = r.lines_key ?? (r.kind === 'FILL' ? r.fill_id : r.amends_fill_id) ?? r.fill_id;
      out.set(executionRefKey(r.block_order_id, Number(r.fill_seq)), {
        executionId: r.fill_id,
        fillId,
        executedAtMs: Number(r.executed_at_ms),
      });
    }
  }
  return out;
}

/** Of `sourceIds`, those already in some batch. */
export async function bookedSourceIds(
  q: Query,
  sourceIds: readonly string[],
): Promise<Set<string>> {
  const out = new Set<string>();
  for (let i = 0; i < sourceIds.length; i += INSERT_ROWS_MAX) {
    const rows = await q<{ source_id: string }>(
      `SELECT source_id FROM booking_lines WHERE source_id = ANY($1::text[])`,
      [sourceIds.slice(i, i + INSERT_ROWS_MAX)],
    );
    for (const r of rows) out.add(r.source_id);
  }
  return out;
}

export async function insertBatch(q: Query, b: BatchRecord): Promise<void> {
  await q(
    `INSERT INTO booking_batches (${BATCH_COLUMNS})
     VALUES ($1, $2, $3::timestamptz, $4::timestamptz, $5, $6, $7, $8, $9, $10, $11, $12)`,
    [
      b.id,
      b.batchNo,
      b.windowStartMs === null ? null : isoOf(b.windowStartMs),
      isoOf(b.closedAtMs),
      b.lineCount,
      b.allocationCount,
      b.accountCount,
      b.journalRowCount,
      b.capped,
      b.fileName,
      b.checksumSha256,
      b.fileKept,
    ],
  );
}

const LINE_COLUMNS = [
  'batch_id',
  'line_no',
  'source_id',
  'account_id',
  'security_id',
  'side',
  'movement_kind',
  'transaction_type',
  'quantity',
  'price',
  'cash_delta_minor',
  'transaction_date',
  'block_order_id',
  'fill_seq',
  'entry_seq',
  'fill_id',
  'execution_id',
  'persistence_key',
  'sequence_nr',
] as const;

/** `( $1, … ), ( … )` for `rows` rows of `columns` parameters each. */
function placeholders(rows: number, columns: number): string {
  const out: string[] = [];
  for (let r = 0; r < rows; r++) {
    const row = Array.from({ length: columns }, (_, c) => `$${r * columns + c + 1}`);
    out.push(`(${row.join(', ')})`);
  }
  return out.join(', ');
}

/** The membership rows of `batchId`, INSERT_ROWS_MAX per statement; bigints as decimal text. */
export async function insertLines(
  q: Query,
  batchId: string,
  lines: readonly BookedLine[],
): Promise<void> {
  for (let i = 0; i < lines.length; i += INSERT_ROWS_MAX) {
    const chunk = lines.slice(i, i + INSERT_ROWS_MAX);
    const params = chunk.flatMap((l) => [
      batchId,
      l.lineNo,
      l.sourceId,
      l.accountId,
      l.securityId,
      l.side,
      l.movementKind,
      l.transactionType,
      l.quantity.toString(),
      l.price.toString(),
      l.cashDeltaMinor.toString(),
      l.transactionDate,
      l.blockOrderId,
      l.fillSeq,
      l.entrySeq,
      l.fillId,
      l.executionId,
      l.persistenceKey,
      l.sequenceNr,
    ]);
    await q(
      `INSERT INTO booking_lines (${LINE_COLUMNS.join(', ')})
       VALUES ${placeholders(chunk.length, LINE_COLUMNS.length)}`,
      params,
    );
  }
}

/** Each key's mark moves up to its seq (never down: a mark only records what is booked). */
export async function advanceMarks(
  q: Query,
  marks: ReadonlyMap<string, number>,
  batchId: string | null,
): Promise<void> {
  const all = [...marks];
  for (let i = 0; i < all.length; i += INSERT_ROWS_MAX) {
    const chunk = all.slice(i, i + INSERT_ROWS_MAX);
    await q(
      `INSERT INTO booking_marks (persistence_key, booked_through_seq, batch_id)
       SELECT k, s, $3::text FROM unnest($1::text[], $2::bigint[]) AS u (k, s)
       ON CONFLICT (persistence_key) DO UPDATE
         SET booked_through_seq = excluded.booked_through_seq, batch_id = excluded.batch_id
         WHERE booking_marks.booked_through_seq < excluded.booked_through_seq`,
      [chunk.map(([k]) => k), chunk.map(([, s]) => s), batchId],
    );
  }
}

interface LineRow {
  batch_id: string;
  line_no: string;
  source_id: string;
  account_id: string;
  security_id: string;
  side: Side;
  movement_kind: MovementKind;
  transaction_type: string;
  quantity: string;
  price: string;
  cash_delta_minor: string;
  transaction_date: string;
  block_order_id: string;
  fill_seq: string;
  entry_seq: string;
  fill_id: string;
  execution_id: string;
  persistence_key: string;
  sequence_nr: string;
}

function lineOf(r: LineRow): BookedLine {
  return {
    lineNo: Number(r.line_no),
    sourceId: r.source_id,
    accountId: r.account_id,
    securityId: r.security_id,
    side: r.side,
    movementKind: r.movement_kind,
    transactionType: r.transaction_type,
    quantity: BigInt(r.quantity),
    price: BigInt(r.price),
    cashDeltaMinor: BigInt(r.cash_delta_minor),
    transactionDate: r.transaction_date,
    blockOrderId: r.block_order_id,
    fillSeq: Number(r.fill_seq),
    entrySeq: Number(r.entry_seq),
    fillId: r.fill_id,
    executionId: r.execution_id,
    persistenceKey: r.persistence_key,
    sequenceNr: Number(r.sequence_nr),
  };
}

/** Up to `limit` lines of a batch after line `afterLineNo`, in line order. */
export async function batchLinesPage(
  db: Database,
  batchId: string,
  afterLineNo: number,
  limit: number,
): Promise<BookedLine[]> {
  invariant(Number.isSafeInteger(limit) && limit > 0, `a page of ${limit} lines`);
  const rows = await db.query<LineRow>(
    `SELECT ${LINE_COLUMNS.join(', ')} FROM booking_lines
     WHERE batch_id = $1 AND line_no > $2 ORDER BY line_no LIMIT $3`,
    [batchId, afterLineNo, limit],
  );
  return rows.map(lineOf);
}

export interface MembershipLine extends BookedLine {
  batchId: string;
  batchNo: number;
  closedAtMs: number;
}

/** Lines of the fill (or of the entry) `id`, oldest batch first, at most `limit`. */
export async function membershipLines(
  db: Database,
  id: string,
  limit: number,
): Promise<MembershipLine[]> {
  const columns = LINE_COLUMNS.map((c) => `l.${c}`).join(', ');
  // A UNION of two indexed lookups: an OR of two columns may scan the table.
  const rows = await db.query<LineRow & { batch_no: string; closed_at: Date | string }>(
    `SELECT ${columns}, b.batch_no, b.closed_at
     FROM (SELECT batch_id, line_no FROM booking_lines WHERE fill_id = $1
           UNION SELECT batch_id, line_no FROM booking_lines WHERE execution_id = $1) AS m
     JOIN booking_lines l ON l.batch_id = m.batch_id AND l.line_no = m.line_no
     JOIN booking_batches b ON b.id = l.batch_id
     ORDER BY b.batch_no, l.line_no LIMIT $2`,
    [id, limit],
  );
  return rows.map((r) => ({
    ...lineOf(r),
    batchId: r.batch_id,
    batchNo: Number(r.batch_no),
    closedAtMs: msOf(r.closed_at),
  }));
}
