/**
 * The ledger rows (actors/ledger.ts) in SQL: each kind is one table, written
 * by one `INSERT … SELECT FROM unnest(arrays)` in the same statement or
 * transaction as the journal rows they belong to. Every row names the
 * journal row (persistence_key, sequence_nr) that wrote it.
 */
import { isAmendment } from '../actors/block-order/decider.ts';
import { InvariantError } from '../actors/errors.ts';
import { linesKeyAt, type ExecutionRow } from '../actors/ledger.ts';
import type { JournalRecord } from './journal.ts';

/** One table's rows as column arrays, ready for unnest. */
export interface LedgerInsert {
  table: 'executions' | 'suspense' | 'suspense_resolutions';
  /** Column name and SQL array type, in order. */
  columns: ReadonlyArray<readonly [string, string]>;
  arrays: unknown[][];
}

const EXECUTION_COLUMNS = [
  ['fill_id', 'text[]'],
  ['block_order_id', 'text[]'],
  ['fill_seq', 'bigint[]'],
  ['quantity', 'bigint[]'],
  ['price', 'bigint[]'],
  ['venue', 'text[]'],
  ['executed_at_ms', 'bigint[]'],
  ['persistence_key', 'text[]'],
  ['sequence_nr', 'bigint[]'],
  ['kind', 'text[]'],
  ['amends_fill_id', 'text[]'],
  ['lines_key', 'text[]'],
] as const;

const SUSPENSE_COLUMNS = [
  ['block_order_id', 'text[]'],
  ['fill_seq', 'bigint[]'],
  ['account_id', 'text[]'],
  ['security_id', 'text[]'],
  ['side', 'text[]'],
  ['quantity', 'bigint[]'],
  ['price', 'bigint[]'],
  ['reason', 'text[]'],
  ['detail', 'text[]'],
  ['persistence_key', 'text[]'],
  ['sequence_nr', 'bigint[]'],
] as const;

const RESOLUTION_COLUMNS = [
  ['block_order_id', 'text[]'],
  ['fill_seq', 'bigint[]'],
  ['account_id', 'text[]'],
  ['resolution', 'text[]'],
  ['persistence_key', 'text[]'],
  ['sequence_nr', 'bigint[]'],
] as const;

type Kind = 'executions' | 'suspense' | 'resolutions';

function rowsOf(record: JournalRecord, kind: Kind): Array<Record<string, unknown>> {
  return (record.ledger?.[kind] ?? []) as unknown as Array<Record<string, unknown>>;
}

/** Column values of one ledger row; bigints travel as decimal strings (exact). */
function values(
  kind: Kind,
  row: Record<string, unknown>,
  record: JournalRecord,
  index: number,
): unknown[] {
  const s = (v: unknown) => String(v as string | bigint | number);
  switch (kind) {
    case 'executions':
      return executionValues(row as unknown as ExecutionRow, record, index);
    case 'suspense':
      return [
        row.blockOrderId,
        row.fillSeq,
        row.accountId,
        row.securityId,
        row.side,
        s(row.quantity),
        s(row.price),
        row.reason,
        row.detail,
        record.key,
        record.seq,
      ];
    case 'resolutions':
      return [row.blockOrderId, row.fillSeq, row.accountId, row.resolution, record.key, record.seq];
    default: {
      const never: never = kind;
      throw new Error(`unknown ledger kind ${String(never)}`);
    }
  }
}

/**
 * A fill's columns, or an amendment's (its new quantity and price for a
 * correction, else 0); `amends_fill_id` the fill an amendment names,
 * `lines_key` the key whose lines its event set (execution `index` of the record).
 */
function executionValues(row: ExecutionRow, record: JournalRecord, index: number): unknown[] {
  const at = [row.blockOrderId, row.seq];
  const journalRow = [record.key, record.seq];
  const linesKey = linesKeyAt(record.ledger ?? {}, index);
  if (!isAmendment(row)) {
    const { quantity, price, venue, executedAtMs } = row;
    const fill = [String(quantity), String(price), venue, executedAtMs];
    return [row.fillId, ...at, ...fill, ...journalRow, 'FILL', null, linesKey];
  }
  const corrected = row.kind === 'CORRECTION' ? row : { quantity: 0n, price: 0n };
  const amends = row.kind === 'CANCEL' ? null : row.fillId;
  const values = [String(corrected.quantity), String(corrected.price), '', row.executedAtMs];
  return [row.amendmentId, ...at, ...values, ...journalRow, row.kind, amends, linesKey];
}

const TABLES = {
  executions: { table: 'executions', columns: EXECUTION_COLUMNS },
  suspense: { table: 'suspense', columns: SUSPENSE_COLUMNS },
  resolutions: { table: 'suspense_resolutions', columns: RESOLUTION_COLUMNS },
} as const;

/** The inserts for the ledger rows of `records` (only the records `include` accepts). */
export function ledgerInserts(
  records: readonly JournalRecord[],
  include: (index: number) => boolean = () => true,
  kinds: readonly Kind[] = ['executions', 'suspense', 'resolutions'],
): LedgerInsert[] {
  const out: LedgerInsert[] = [];
  for (const kind of kinds) {
    const { table, columns } = TABLES[kind];
    const arrays: unknown[][] = columns.map(() => []);
    records.forEach((record, i) => {
      if (!include(i)) return;
      rowsOf(record, kind).forEach((row, r) =>
        values(kind, row, record, r).forEach((v, c) => arrays[c]?.push(v)),
      );
    });
    if ((arrays[0]?.length ?? 0) > 0) out.push({ table, columns, arrays });
  }
  return out;
}

/** `INSERT INTO table (…) SELECT * FROM unnest($n::type[], …)`, parameters from `firstParam`. */
export function insertSql(insert: LedgerInsert, firstParam: number): string {
  const names = insert.columns.map(([name]) => name).join(', ');
  const params = insert.columns.map(([, type], i) => `$${firstParam + i}::${type}`).join(', ');
  return `INSERT INTO ${insert.table} (${names}) SELECT * FROM unnest(${params})`;
}

export const EXECUTION_SELECT =
  'SELECT fill_id, block_order_id, fill_seq, quantity, price, venue, executed_at_ms, kind, amends_fill_id FROM executions';

export interface ExecutionSqlRow {
  fill_id: string;
  block_order_id: string;
  fill_seq: string;
  quantity: string;
  price: string;
  venue: string;
  executed_at_ms: string;
  kind: string;
  amends_fill_id: string | null;
}

export function executionOf(row: ExecutionSqlRow): ExecutionRow {
  const at = {
    blockOrderId: row.block_order_id,
    seq: Number(row.fill_seq),
    executedAtMs: Number(row.executed_at_ms),
  };
  const amends = row.amends_fill_id ?? '';
  switch (row.kind) {
    case 'FILL':
      return {
        fillId: row.fill_id,
        ...at,
        quantity: BigInt(row.quantity),
        price: BigInt(row.price),
        venue: row.venue,
      };
    case 'BUST':
      return { kind: 'BUST', amendmentId: row.fill_id, ...at, fillId: amends };
    case 'CORRECTION':
      return {
        kind: 'CORRECTION',
        amendmentId: row.fill_id,
        ...at,
        fillId: amends,
        quantity: BigInt(row.quantity),
        price: BigInt(row.price),
      };
    case 'CANCEL':
      return { kind: 'CANCEL', amendmentId: row.fill_id, ...at };
    default:
      throw new InvariantError(`execution index row ${row.fill_id} has unknown kind ${row.kind}`);
  }
}

/**
 * The journal row that set the current lines under key `$1`: a fill's own
 * allocation or its latest bust or correction; an average-price release or
 * its latest amendment (`lines_key`, migration 5).
 */
export const FILL_VERSION_SELECT = `SELECT j.persistence_key, j.sequence_nr, j.event_type, j.payload,
    floor(extract(epoch FROM j.created_at) * 1000)::bigint AS created_ms
  FROM executions e JOIN journal j
    ON j.persistence_key = e.persistence_key AND j.sequence_nr = e.sequence_nr
  WHERE e.lines_key = $1
  ORDER BY e.fill_seq DESC LIMIT 1`;
