/**
 * Read-only queries behind the operations API: reference data a page at a
 * time (keyset, never OFFSET), a fill's versions in the execution index, and
 * single journal rows. Nothing here writes.
 */
import { invariant } from '../actors/errors.ts';
import type { Database } from './db.ts';

/** Rows one query returns, at most: every page and history is bounded. */
export const QUERY_ROWS_MAX = 1_000;

/** Commit time as epoch ms: the same on PostgreSQL and CockroachDB, whatever the driver parses. */
const CREATED_MS = 'floor(extract(epoch FROM created_at) * 1000)::bigint AS created_ms';

export interface BlockOrderRefRow {
  id: string;
  securityId: string;
  side: string;
  tradeDate: string;
}

export interface BlockOrderFilter {
  securityId?: string;
  tradeDate?: string;
  side?: string;
  /** Keyset: ids strictly after this one (ids sort as text). */
  afterId: string;
  limit: number;
}

/** Block orders of the reference data by id, after `afterId`, filtered in SQL. */
export async function blockOrderRefs(
  db: Database,
  filter: BlockOrderFilter,
): Promise<BlockOrderRefRow[]> {
  invariant(filter.limit >= 1 && filter.limit <= QUERY_ROWS_MAX, `a page of ${filter.limit}`);
  const where = ['id > $1'];
  const params: unknown[] = [filter.afterId];
  const add = (column: string, value: string | undefined) => {
    if (value === undefined) return;
    params.push(value);
    where.push(`${column} = $${params.length}`);
  };
  add('security_id', filter.securityId);
  add('trade_date', filter.tradeDate);
  add('side', filter.side);
  params.push(filter.limit);
  const rows = await db.query<{
    id: string;
    security_id: string;
    side: string;
    trade_date: string;
  }>(
    `SELECT id, security_id, side, trade_date FROM block_orders
      WHERE ${where.join(' AND ')} ORDER BY id LIMIT $${params.length}`,
    params,
  );
  return rows.map((r) => ({
    id: r.id,
    securityId: r.security_id,
    side: r.side,
    tradeDate: r.trade_date,
  }));
}

/** One block order of the reference data, or undefined. */
export async function blockOrderRef(
  db: Database,
  id: string,
): Promise<BlockOrderRefRow | undefined> {
  const [r] = await db.query<{ id: string; security_id: string; side: string; trade_date: string }>(
    `SELECT id, security_id, side, trade_date FROM block_orders WHERE id = $1`,
    [id],
  );
  return r && { id: r.id, securityId: r.security_id, side: r.side, tradeDate: r.trade_date };
}

export interface ExecutionVersionRow {
  fillId: string;
  blockOrderId: string;
  seq: number;
  kind: string;
  quantity: bigint;
  price: bigint;
  venue: string;
  executedAtMs: number;
  amendsFillId: string | null;
  linesKey: string | null;
  persistenceKey: string;
  sequenceNr: number;
  createdAtMs: number;
}

interface ExecutionSqlRow {
  fill_id: string;
  block_order_id: string;
  fill_seq: string;
  kind: string;
  quantity: string;
  price: string;
  venue: string;
  executed_at_ms: string;
  amends_fill_id: string | null;
  lines_key: string | null;
  persistence_key: string;
  sequence_nr: string;
  created_ms: string;
}

const COLUMNS = `fill_id, block_order_id, fill_seq, kind, quantity, price, venue, executed_at_ms,
  amends_fill_id, lines_key, persistence_key, sequence_nr, ${CREATED_MS}`;

const versionOf = (r: ExecutionSqlRow): ExecutionVersionRow => ({
  fillId: r.fill_id,
  blockOrderId: r.block_order_id,
  seq: Number(r.fill_seq),
  kind: r.kind,
  quantity: BigInt(r.quantity),
  price: BigInt(r.price),
  venue: r.venue,
  executedAtMs: Number(r.executed_at_ms),
  amendsFillId: r.amends_fill_id,
  linesKey: r.lines_key,
  persistenceKey: r.persistence_key,
  sequenceNr: Number(r.sequence_nr),
  createdAtMs: Number(r.created_ms),
});

/**
 * The entry that claimed `id` (a fill or an amendment), and, for a fill, every
 * bust and correction of it, in sequence order. Empty when nothing claimed it.
 */
export async function executionHistory(db: Database, id: string): Promise<ExecutionVersionRow[]> {
  const [claim] = await db.query<ExecutionSqlRow>(
    `SELECT ${COLUMNS} FROM executions WHERE fill_id = $1`,
    [id],
  );
  if (claim === undefined) return [];
  if (claim.kind !== 'FILL') return [versionOf(claim)];
  // The order's sequence index narrows to one order; amendments name the fill.
  const amendments = await db.query<ExecutionSqlRow>(
    `SELECT ${COLUMNS} FROM executions
      WHERE block_order_id = $1 AND amends_fill_id = $2 ORDER BY fill_seq LIMIT $3`,
    [claim.block_order_id, id, QUERY_ROWS_MAX],
  );
  return [versionOf(claim), ...amendments.map(versionOf)];
}

/** One journal row's payload and commit time, or undefined. */
export async function journalRow(
  db: Database,
  key: string,
  seq: number,
): Promise<{ payload: Uint8Array; createdAtMs: number } | undefined> {
  const [row] = await db.query<{ payload: Uint8Array; created_ms: string }>(
    `SELECT payload, ${CREATED_MS} FROM journal WHERE persistence_key = $1 AND sequence_nr = $2`,
    [key, seq],
  );
  return row && { payload: row.payload, createdAtMs: Number(row.created_ms) };
}

/** When `key` last journaled, and its last execution's market time; undefined: never. */
export async function lastActivity(
  db: Database,
  key: string,
  blockOrderId: string,
): Promise<{ journaledAtMs: number; executedAtMs: number | null } | undefined> {
  const [last] = await db.query<{ created_ms: string }>(
    `SELECT ${CREATED_MS} FROM journal WHERE persistence_key = $1
      ORDER BY sequence_nr DESC LIMIT 1`,
    [key],
  );
  if (last === undefined) return undefined;
  const [exec] = await db.query<{ executed_at_ms: string }>(
    `SELECT executed_at_ms FROM executions WHERE block_order_id = $1
      ORDER BY fill_seq DESC LIMIT 1`,
    [blockOrderId],
  );
  return {
    journaledAtMs: Number(last.created_ms),
    executedAtMs: exec ? Number(exec.executed_at_ms) : null,
  };
}
