/**
 * Booking: a close takes every account movement (actors/account/movements.ts)
 * journaled since the previous batch into one CSV file for portfolio
 * accounting, and records which lines, from which fills, are in it.
 *
 * The file. Header `portfolio_id,security_id,source_id,transaction_type,
 * quantity,price,transaction_date`, one row per movement, `\n` after every
 * row (the header too), fields quoted only if they hold `,` `"` or a line
 * break (ids never do):
 * - portfolio_id: the account id; security_id: the line's security;
 * - source_id: `AC.<blockOrderId>.<fillSeq>.<accountId>`, and for a reversal
 *   the id of the line it takes back plus `.R`. A line (order, seq, account)
 *   is booked once and reversed at most once (an amendment moves the
 *   account's line to the amendment's seq), so the id is unique (the
 *   database holds it UNIQUE too) and names the line's fill. `.` separates
 *   because ids (ID_PATTERN) may hold `-` and `_` but never `.`;
 * - transaction_type: BUY or SELL for a line booked (a new allocation, or a
 *   refused line applied out of suspense); BUY_REVERSAL or SELL_REVERSAL for
 *   a line taken back by a bust or correction, with a positive quantity and
 *   the price it was booked at. Not the opposite side: a SELL would relieve
 *   lots by the system's lot rule and realize gains that never happened,
 *   where a reversal cancels the very transaction its source_id names;
 * - quantity: positive whole shares; price: 6 fraction digits;
 * - transaction_date: the date in America/New_York at which the line's
 *   execution (the index's row at (block_order_id, fill_seq)) executed. A
 *   reversal's fill_seq is the line it takes back, so it carries that
 *   line's date: it undoes that transaction.
 * Rows are in account id, journal seq, line order.
 *
 * Exactness. Commit times are not monotonic across transactions, so no
 * time window decides membership: a mark per account journal key (the last
 * seq booked) does. A close reads, in one SERIALIZABLE transaction, the rows
 * above each key's mark, records the batch and its lines and advances the
 * marks. Per key, rows commit in seq order (one writer, each row after the
 * one before is durable), so a row not seen now has a seq above the mark.
 * batch_no is the previous one + 1 and UNIQUE: of two concurrent closes one
 * commits and the other fails (or is retried and finds nothing new):
 * BookingConflictError either way. The file is written after the commit
 * (tmp + rename), under the batch's own name: a later close cannot touch
 * it, and a crash before it is written leaves a recorded batch whose file
 * is regenerated, byte for byte, from its lines (bookingFile).
 *
 * Bounds. A close books at most `linesMax` lines (BOOKING_LINES_MAX by
 * default; it bounds memory and the transaction): if more are waiting, it
 * books whole journal rows up to the bound, says `capped`, and the next
 * close books the rest. Nothing is refused, nothing is lost.
 */
import {
  ConflictError,
  type BookingBatchView,
  type BookingPort,
  type MembershipView,
} from '../api/ports.ts';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { AccountEvent } from '../actors/account/decider.ts';
import {
  lineShares,
  MovementKind,
  movementsOf,
  type Movement,
} from '../actors/account/movements.ts';
import { ACCOUNT_KIND } from '../actors/account/shell.ts';
import { formatPrice } from '../actors/domain/money.ts';
import { assertNever, invariant } from '../actors/errors.ts';
import {
  advanceMarks,
  batchById,
  batchLinesPage,
  executionRefKey,
  bookedSourceIds,
  executionsAt,
  insertBatch,
  insertLines,
  lastBatch,
  membershipLines,
  setFileKept,
  unbookedPage,
  type BatchRecord,
  type BookedLine,
  type ExecutionRef,
} from '../persistence/booking-sql.ts';
import { decodeVersioned } from '../persistence/codec.ts';
import type { Database, Query } from '../persistence/db.ts';
import type { Logger } from './log.ts';

export const BOOKING_CSV_HEADER =
  'portfolio_id,security_id,source_id,transaction_type,quantity,price,transaction_date';
/** Lines per batch by default: ~0.5 KB each in memory, plus the file. */
export const BOOKING_LINES_MAX = 250_000;
/** Journal rows a close reads at most (rows that move nothing count too). */
export const BOOKING_JOURNAL_ROWS_MAX = 1_000_000;
export const MEMBERSHIP_LINES_MAX = 10_000;
const JOURNAL_PAGE_ROWS = 2_000;
const FILE_PAGE_LINES = 10_000;
const UNIQUE_VIOLATION = '23505';
const ACCOUNT_PREFIX = `${ACCOUNT_KIND}-`;

/** A close that cannot be: nothing new to book, or another close got there first (HTTP 409). */
export class BookingConflictError extends Error {
  override name = 'BookingConflictError';
  /** BOOKING_CONFLICT: another close got there first; BOOKING_EMPTY: nothing new to book. */
  readonly code: 'BOOKING_CONFLICT' | 'BOOKING_EMPTY';
  constructor(message: string, options?: { cause?: unknown; code?: 'BOOKING_EMPTY' }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = options?.code ?? 'BOOKING_CONFLICT';
  }
}

export interface BookingDeps {
  db: Database;
  bookingDir: string;
  nowMs: () => number;
  log?: Logger;
}

export interface CloseOptions {
  /** Delete the file once written and verified (it is regenerated on request). */
  cleanup: boolean;
  linesMax?: number;
}

export const batchIdOf = (batchNo: number): string => `BKG-${String(batchNo).padStart(10, '0')}`;

const NEW_YORK = new Intl.DateTimeFormat('en-US', {
  timeZone: 'America/New_York',
  year: 'numeric',
  month: '2-digit',
  day: '2-digit',
});

/** The date (YYYY-MM-DD) in America/New_York at epoch ms `atMs`. */
export function tradeDateNewYork(atMs: number): string {
  invariant(Number.isSafeInteger(atMs) && atMs >= 0, `a time of ${atMs} ms`);
  const part = (type: Intl.DateTimeFormatPartTypes) =>
    NEW_YORK.formatToParts(atMs).find((p) => p.type === type)?.value ?? '';
  const date = `${part('year').padStart(4, '0')}-${part('month')}-${part('day')}`;
  invariant(/^\d{4}-\d\d-\d\d$/.test(date), `no date for ${atMs} ms: ${date}`);
  return date;
}

export function transactionTypeOf(m: Pick<Movement, 'kind' | 'side'>): string {
  switch (m.kind) {
    case MovementKind.Allocation:
    case MovementKind.SuspenseApplied:
      return m.side;
    case MovementKind.Reversal:
      return `${m.side}_REVERSAL`;
    default:
      return assertNever(m.kind, 'movement kind');
  }
}

export function sourceIdOf(
  accountId: string,
  m: Pick<Movement, 'kind' | 'blockOrderId' | 'fillSeq'>,
) {
  const id = `AC.${m.blockOrderId}.${m.fillSeq}.${accountId}`;
  return m.kind === MovementKind.Reversal ? `${id}.R` : id;
}

const csvField = (v: string): string => (/[",\r\n]/.test(v) ? `"${v.replaceAll('"', '""')}"` : v);

type CsvLine = Pick<
  BookedLine,
  | 'accountId'
  | 'securityId'
  | 'sourceId'
  | 'transactionType'
  | 'quantity'
  | 'price'
  | 'transactionDate'
>;

export function csvRow(l: CsvLine): string {
  invariant(l.quantity > 0n, `${l.sourceId}: a quantity of ${l.quantity}`);
  const fields = [l.accountId, l.securityId, l.sourceId, l.transactionType];
  const rest = [l.quantity.toString(), formatPrice(l.price), l.transactionDate];
  return `${[...fields, ...rest].map(csvField).join(',')}\n`;
}

export const bookingCsv = (lines: readonly CsvLine[]): string =>
  `${BOOKING_CSV_HEADER}\n${lines.map(csvRow).join('')}`;

export const sha256Of = (bytes: string | Uint8Array): string =>
  createHash('sha256').update(bytes).digest('hex');

// ------------------------------------------------------------------ close

interface UnbookedLine {
  accountId: string;
  key: string;
  seq: number;
  /** The movement's place in its journal row. */
  index: number;
  movement: Movement;
}

interface Unbooked {
  lines: UnbookedLine[];
  /** Per key read: the last seq read (every row up to it is in this batch). */
  marks: Map<string, number>;
  rows: number;
  capped: boolean;
}

/** Account journal rows above their marks, whole rows only, up to the bounds. */
async function readUnbooked(q: Query, linesMax: number): Promise<Unbooked> {
  const out: Unbooked = { lines: [], marks: new Map(), rows: 0, capped: false };
  let after = { key: ACCOUNT_PREFIX, seq: 0 };
  for (;;) {
    const page = await unbookedPage(q, ACCOUNT_PREFIX, after, JOURNAL_PAGE_ROWS);
    for (const row of page) {
      const movements = movementsOf(decodeVersioned(row.payload, row.key) as AccountEvent);
      const full = out.lines.length > 0 && out.lines.length + movements.length > linesMax;
      if (full || out.rows >= BOOKING_JOURNAL_ROWS_MAX) {
        out.capped = true;
        return out;
      }
      const accountId = row.key.slice(ACCOUNT_PREFIX.length);
      movements.forEach((movement, index) =>
        out.lines.push({ accountId, key: row.key, seq: row.seq, index, movement }),
      );
      out.marks.set(row.key, row.seq);
      out.rows++;
    }
    const last = page.at(-1);
    if (!last || page.length < JOURNAL_PAGE_ROWS) return out;
    after = { key: last.key, seq: last.seq };
  }
}

// Code-unit order, not the database's collation: the file's order is the same everywhere.
const compareText = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

const compareLines = (a: UnbookedLine, b: UnbookedLine): number =>
  compareText(a.accountId, b.accountId) || a.seq - b.seq || a.index - b.index;

function refAt(refs: Map<string, ExecutionRef>, blockOrderId: string, seq: number): ExecutionRef {
  const ref = refs.get(executionRefKey(blockOrderId, seq));
  // A line the execution index cannot trace is not booked: the batch is refused whole.
  invariant(ref !== undefined, `${blockOrderId} seq ${seq}: no execution in the index`);
  return ref;
}

/** The lines in file order, numbered from 1, each traced to its execution. */
function bookLines(lines: readonly UnbookedLine[], refs: Map<string, ExecutionRef>): BookedLine[] {
  return [...lines].sort(compareLines).map((l, i): BookedLine => {
    const m = l.movement;
    const booked = refAt(refs, m.blockOrderId, m.fillSeq);
    return {
      lineNo: i + 1,
      sourceId: sourceIdOf(l.accountId, m),
      accountId: l.accountId,
      securityId: m.securityId,
      side: m.side,
      movementKind: m.kind,
      transactionType: transactionTypeOf(m),
      quantity: lineShares(m),
      price: m.price,
      cashDeltaMinor: m.cashDeltaMinor,
      transactionDate: tradeDateNewYork(booked.executedAtMs),
      blockOrderId: m.blockOrderId,
      fillSeq: m.fillSeq,
      entrySeq: m.entrySeq,
      fillId: booked.fillId,
      executionId: refAt(refs, m.blockOrderId, m.entrySeq).executionId,
      persistenceKey: l.key,
      sequenceNr: l.seq,
    };
  });
}

function executionPairs(lines: readonly UnbookedLine[]) {
  const pairs = new Map<string, { blockOrderId: string; seq: number }>();
  for (const { movement: m } of lines)
    for (const seq of [m.fillSeq, m.entrySeq])
      pairs.set(executionRefKey(m.blockOrderId, seq), { blockOrderId: m.blockOrderId, seq });
  return [...pairs.values()];
}

interface RecordArgs {
  closedAtMs: number;
  linesMax: number;
  cleanup: boolean;
}

type Prepared =
  | {
      kind: 'closed';
      last: BatchRecord | undefined;
      batch: BatchRecord;
      lines: BookedLine[];
      csv: string;
      marks: Map<string, number>;
    }
  | { kind: 'nothing'; last: BatchRecord | undefined; marks: Map<string, number> };

/**
 * Outside any transaction: read above the marks and build the batch. A long
 * read inside a write transaction would be re-validated at commit (and on
 * CockroachDB retried while accounts keep trading); the commit step instead
 * checks that no batch was recorded meanwhile, the only way marks move.
 */
async function prepareBatch(db: Database, args: RecordArgs): Promise<Prepared> {
  const q: Query = (sql, params) => db.query(sql, params);
  const last = await lastBatch(q);
  const unbooked = await readUnbooked(q, args.linesMax);
  // A line booked before is never booked again, whatever journal row carries it now (after a
  // rebuild from JetStream, rows are numbered anew and the marks start over).
  const booked = await bookedSourceIds(
    q,
    unbooked.lines.map((l) => sourceIdOf(l.accountId, l.movement)),
  );
  const fresh = unbooked.lines.filter((l) => !booked.has(sourceIdOf(l.accountId, l.movement)));
  if (fresh.length === 0) return { kind: 'nothing', last, marks: unbooked.marks };
  const refs = await executionsAt(q, executionPairs(fresh));
  const lines = bookLines(fresh, refs);
  const csv = bookingCsv(lines);
  const batchNo = (last?.batchNo ?? 0) + 1;
  const id = batchIdOf(batchNo);
  const batch: BatchRecord = {
    id,
    batchNo,
    windowStartMs: last?.closedAtMs ?? null,
    // Never before the previous close, whatever this host's clock says: windows do not overlap.
    closedAtMs: Math.max(args.closedAtMs, last?.closedAtMs ?? 0),
    lineCount: lines.length,
    allocationCount: new Set(lines.map((l) => `${l.accountId}|${l.blockOrderId}|${l.entrySeq}`))
      .size,
    accountCount: new Set(lines.map((l) => l.accountId)).size,
    journalRowCount: unbooked.rows,
    capped: unbooked.capped,
    fileName: `${id}.csv`,
    checksumSha256: sha256Of(csv),
    fileKept: !args.cleanup,
  };
  return { kind: 'closed', last, batch, lines, csv, marks: unbooked.marks };
}

/** The short transaction: still after the same batch, then record it and advance the marks. Re-runnable. */
async function commitBatch(q: Query, prepared: Prepared): Promise<void> {
  const last = await lastBatch(q);
  if (last?.id !== prepared.last?.id)
    throw new BookingConflictError(`another close recorded ${last?.id ?? 'a batch'} meanwhile`);
  if (prepared.kind === 'nothing') {
    // Rows that moved nothing (an opening, a refusal) are booked as nothing: later closes skip them.
    await advanceMarks(q, prepared.marks, null);
    return;
  }
  await insertBatch(q, prepared.batch);
  await insertLines(q, prepared.batch.id, prepared.lines);
  await advanceMarks(q, prepared.marks, prepared.batch.id);
}

/** Only the batch number's uniqueness means "another close got there first"; any other is a fault. */
const isBatchNoTaken = (error: unknown): boolean => {
  for (let e = error as { code?: unknown; constraint?: unknown; cause?: unknown } | undefined; e;) {
    if (e.code === UNIQUE_VIOLATION)
      return typeof e.constraint !== 'string' || /booking_batches/.test(e.constraint);
    e = e.cause as typeof e;
  }
  return false;
};

/**
 * Closes the booking window: records a batch of every movement journaled
 * since the previous one, then writes its file. BookingConflictError when
 * there is nothing new, or when a concurrent close took it.
 */
export async function closeBookingBatch(
  deps: BookingDeps,
  options: CloseOptions,
): Promise<BookingBatchView> {
  const linesMax = options.linesMax ?? BOOKING_LINES_MAX;
  invariant(Number.isSafeInteger(linesMax) && linesMax > 0, `a bound of ${linesMax} lines`);
  const args = { closedAtMs: deps.nowMs(), linesMax, cleanup: options.cleanup };
  const prepared = await prepareBatch(deps.db, args);
  try {
    await deps.db.serializable((q) => commitBatch(q, prepared));
  } catch (error) {
    if (!isBatchNoTaken(error)) throw error;
    throw new BookingConflictError('another close recorded this batch first', { cause: error });
  }
  if (prepared.kind === 'nothing') {
    const since = prepared.last ? `batch ${prepared.last.id}` : 'the start (no batch yet)';
    throw new BookingConflictError(`nothing to book since ${since}`, { code: 'BOOKING_EMPTY' });
  }
  const { batch, csv } = prepared;
  const fileError = await writeBatchFile(deps, batch, csv, options.cleanup);
  deps.log?.info('booking batch closed', {
    batchId: batch.id,
    lines: batch.lineCount,
    capped: batch.capped,
    fileKept: batch.fileKept && fileError === undefined,
  });
  return viewOf({ ...batch, fileKept: batch.fileKept && fileError === undefined }, fileError);
}

/** Writes `csv` to dir/name through a temporary file and a rename: a reader sees all or nothing. */
async function writeAtomically(dir: string, name: string, csv: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  const tmp = join(dir, `.${name}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    const handle = await open(tmp, 'wx');
    try {
      await handle.writeFile(csv, 'utf8');
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, join(dir, name));
  } catch (error) {
    await unlink(tmp).catch(() => undefined);
    throw error;
  }
}

/** After the commit: write, verify, and delete if asked. The error's message if it failed. */
async function writeBatchFile(
  deps: BookingDeps,
  batch: BatchRecord,
  csv: string,
  cleanup: boolean,
): Promise<string | undefined> {
  const path = join(deps.bookingDir, batch.fileName);
  try {
    await writeAtomically(deps.bookingDir, batch.fileName, csv);
    const written = sha256Of(await readFile(path));
    invariant(written === batch.checksumSha256, `${path}: its bytes differ from the recorded ones`);
    if (cleanup) await unlink(path);
    return undefined;
  } catch (error) {
    deps.log?.error('booking file not written; it is regenerated from its lines on request', {
      batchId: batch.id,
      error,
    });
    if (batch.fileKept)
      await setFileKept(deps.db, batch.id, false).catch((e: unknown) =>
        deps.log?.error('booking file: could not record it as not kept', { error: e }),
      );
    return (error as Error).message;
  }
}

// ------------------------------------------------------------------ reads

function viewOf(b: BatchRecord, fileError?: string): BookingBatchView {
  return {
    id: b.id,
    batchNo: b.batchNo,
    windowStart: b.windowStartMs === null ? null : new Date(b.windowStartMs).toISOString(),
    closedAt: new Date(b.closedAtMs).toISOString(),
    lineCount: b.lineCount,
    allocationCount: b.allocationCount,
    accountCount: b.accountCount,
    journalRowCount: b.journalRowCount,
    capped: b.capped,
    fileName: b.fileName,
    checksumSha256: b.checksumSha256,
    fileKept: b.fileKept,
    ...(fileError === undefined ? {} : { fileError }),
  };
}

export async function bookingBatch(
  db: Database,
  id: string,
): Promise<BookingBatchView | undefined> {
  const batch = await batchById(db, id);
  return batch && viewOf(batch);
}

/** The batch's file: from disk when kept and intact, else regenerated from its lines (same bytes). */
export async function bookingFile(
  deps: Pick<BookingDeps, 'db' | 'bookingDir' | 'log'>,
  id: string,
): Promise<{ fileName: string; csv: string } | undefined> {
  const batch = await batchById(deps.db, id);
  if (!batch) return undefined;
  if (batch.fileKept) {
    const kept = await readKept(deps, batch);
    if (kept !== undefined) return { fileName: batch.fileName, csv: kept };
  }
  const csv = await regenerate(deps.db, batch);
  invariant(
    sha256Of(csv) === batch.checksumSha256,
    `${batch.id}: its lines no longer make the file recorded (sha256 ${batch.checksumSha256})`,
  );
  return { fileName: batch.fileName, csv };
}

async function readKept(
  deps: Pick<BookingDeps, 'bookingDir' | 'log'>,
  batch: BatchRecord,
): Promise<string | undefined> {
  const path = join(deps.bookingDir, batch.fileName);
  try {
    const bytes = await readFile(path);
    if (sha256Of(bytes) === batch.checksumSha256) return bytes.toString('utf8');
    deps.log?.warn('booking file differs from its checksum: regenerated', { path });
  } catch (error) {
    deps.log?.warn('booking file unreadable: regenerated', { path, error });
  }
  return undefined;
}

async function regenerate(db: Database, batch: BatchRecord): Promise<string> {
  const parts = [`${BOOKING_CSV_HEADER}\n`];
  let after = 0;
  for (;;) {
    const page = await batchLinesPage(db, batch.id, after, FILE_PAGE_LINES);
    for (const line of page) parts.push(csvRow(line));
    const last = page.at(-1);
    if (!last || page.length < FILE_PAGE_LINES) break;
    after = last.lineNo;
  }
  invariant(parts.length - 1 === batch.lineCount, `${batch.id}: lines missing from its membership`);
  return parts.join('');
}

/** The batches and lines of a fill (or of a bust or correction, by its id), oldest first. */
export async function bookingMembership(db: Database, fillId: string): Promise<MembershipView> {
  const found = await membershipLines(db, fillId, MEMBERSHIP_LINES_MAX + 1);
  const lines = found.slice(0, MEMBERSHIP_LINES_MAX);
  const batches = new Map<string, { id: string; batchNo: number; closedAt: string }>();
  for (const l of lines)
    batches.set(l.batchId, {
      id: l.batchId,
      batchNo: l.batchNo,
      closedAt: new Date(l.closedAtMs).toISOString(),
    });
  return {
    fillId,
    batches: [...batches.values()],
    lines: lines.map((l) => ({
      batchId: l.batchId,
      lineNo: l.lineNo,
      sourceId: l.sourceId,
      accountId: l.accountId,
      securityId: l.securityId,
      side: l.side,
      movementKind: l.movementKind,
      transactionType: l.transactionType,
      quantity: l.quantity.toString(),
      price: formatPrice(l.price),
      cashDeltaMinor: l.cashDeltaMinor.toString(),
      transactionDate: l.transactionDate,
      blockOrderId: l.blockOrderId,
      fillSeq: l.fillSeq,
      entrySeq: l.entrySeq,
      fillId: l.fillId,
      executionId: l.executionId,
      persistenceKey: l.persistenceKey,
      sequenceNr: l.sequenceNr,
    })),
    truncated: found.length > MEMBERSHIP_LINES_MAX,
  };
}

/** The API's booking port: a conflicting close is the API's ConflictError (409). */
export function bookingAdapter(deps: BookingDeps): BookingPort {
  return {
    close: async (options) => {
      try {
        return await closeBookingBatch(deps, options);
      } catch (error) {
        if (error instanceof BookingConflictError)
          throw new ConflictError(error.code, error.message);
        throw error;
      }
    },
    batch: (id) => bookingBatch(deps.db, id),
    file: (id) => bookingFile(deps, id),
    membership: (fillId) => bookingMembership(deps.db, fillId),
  };
}
