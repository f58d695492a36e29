/**
 * The relational books shared by the lock-per-fill and batch-cycle arms:
 * schema, seeding from a Scenario, reading the final books back, and the
 * in-database checks (Σ lines = Σ fills per order; allocated = Σ lines).
 * Plain SQL that runs on PostgreSQL and CockroachDB (no sequences, no
 * triggers, no advisory locks).
 */
import type pg from 'pg';
import { invariant } from '../../actors/errors.ts';
import type { Scenario } from '../scenario.ts';
import { big } from './common.ts';
import type { AccountBook, Books } from './expected.ts';

export type Sql = pg.Pool | pg.ClientBase;

export const BOOKS_SCHEMA = [
  `CREATE TABLE accounts (id text PRIMARY KEY, cash_minor bigint NOT NULL)`,
  `CREATE TABLE positions (account_id text NOT NULL, security_id text NOT NULL,
     quantity bigint NOT NULL, PRIMARY KEY (account_id, security_id))`,
  `CREATE TABLE block_orders (id text PRIMARY KEY, security_id text NOT NULL, side text NOT NULL,
     lot_size bigint NOT NULL, last_seq int NOT NULL)`,
  `CREATE TABLE block_order_targets (block_order_id text NOT NULL, account_id text NOT NULL,
     target bigint NOT NULL, allocated bigint NOT NULL, PRIMARY KEY (block_order_id, account_id))`,
  `CREATE TABLE allocation_lines (block_order_id text NOT NULL, fill_seq int NOT NULL,
     account_id text NOT NULL, quantity bigint NOT NULL, price bigint NOT NULL,
     cash_delta_minor bigint NOT NULL, applied boolean NOT NULL,
     PRIMARY KEY (block_order_id, fill_seq, account_id))`,
];

export interface Column {
  name: string;
  /** SQL array element type for unnest: text, bigint, int, boolean. */
  type: string;
}

/** Rows per INSERT … SELECT FROM unnest: a bound on one statement's size. */
export const UNNEST_CHUNK_ROWS = 10_000;

/**
 * Inserts `rows` (one array per column, all the same length) with
 * INSERT … SELECT FROM unnest, in chunks. bigint values go as text, exactly.
 */
export async function insertUnnest(
  db: Sql,
  table: string,
  columns: readonly Column[],
  rows: readonly (readonly unknown[])[],
  suffix = '',
): Promise<number> {
  invariant(rows.length === columns.length, `insertUnnest ${table}: one array per column`);
  const count = rows[0]?.length ?? 0;
  invariant(
    rows.every((r) => r.length === count),
    `insertUnnest ${table}: columns differ in length`,
  );
  const names = columns.map((c) => c.name).join(', ');
  const args = columns.map((c, i) => `$${i + 1}::${c.type}[]`).join(', ');
  const text = `INSERT INTO ${table} (${names}) SELECT * FROM unnest(${args}) ${suffix}`;
  let inserted = 0;
  for (let from = 0; from < count; from += UNNEST_CHUNK_ROWS) {
    const to = Math.min(count, from + UNNEST_CHUNK_ROWS);
    const result = await db.query(
      text,
      rows.map((r) => r.slice(from, to).map((v) => (typeof v === 'bigint' ? v.toString() : v))),
    );
    inserted += result.rowCount ?? 0;
  }
  return inserted;
}

/** Creates the books schema (plus `extra` statements) and seeds the scenario's reference data. */
export async function createAndSeedBooks(
  db: Sql,
  scenario: Scenario,
  extra: readonly string[],
): Promise<void> {
  for (const statement of [...BOOKS_SCHEMA, ...extra]) await db.query(statement);
  const { accounts, securities, blockOrders } = scenario.seed;
  const lots = new Map(securities.map((s) => [s.id, s.lotSize]));
  const text = { type: 'text' };
  const bigint = { type: 'bigint' };
  await insertUnnest(
    db,
    'accounts',
    [
      { name: 'id', ...text },
      { name: 'cash_minor', ...bigint },
    ],
    [accounts.map((a) => a.id), accounts.map((a) => a.openingCashMinor)],
  );
  const positions = accounts.flatMap((a) =>
    Object.entries(a.positions).map(([sec, q]) => [a.id, sec, q] as const),
  );
  await insertUnnest(
    db,
    'positions',
    [
      { name: 'account_id', ...text },
      { name: 'security_id', ...text },
      { name: 'quantity', ...bigint },
    ],
    [0, 1, 2].map((i) => positions.map((p) => p[i])),
  );
  await insertUnnest(
    db,
    'block_orders',
    ['id', 'security_id', 'side', 'lot_size', 'last_seq'].map((name, i) => ({
      name,
      type: ['text', 'text', 'text', 'bigint', 'int'][i] ?? 'text',
    })),
    [
      blockOrders.map((o) => o.id),
      blockOrders.map((o) => o.securityId),
      blockOrders.map((o) => o.side),
      blockOrders.map((o) => lots.get(o.securityId) ?? 0n),
      blockOrders.map(() => 0),
    ],
  );
  const targets = blockOrders.flatMap((o) => o.targets.map((t) => [o.id, t.accountId, t.quantity]));
  await insertUnnest(
    db,
    'block_order_targets',
    ['block_order_id', 'account_id', 'target', 'allocated'].map((name, i) => ({
      name,
      type: i < 2 ? 'text' : 'bigint',
    })),
    [0, 1, 2].map((i) => targets.map((t) => t[i])).concat([targets.map(() => 0n)]),
  );
  invariant(
    blockOrders.every((o) => lots.has(o.securityId)),
    'every order has a known security',
  );
}

/** The final books as stored: accounts' cash, positions, and the line count. */
export async function readBooks(db: Sql): Promise<Books> {
  const accounts = new Map<string, AccountBook>();
  const cash = await db.query<{ id: string; cash_minor: string }>(
    'SELECT id, cash_minor FROM accounts',
  );
  for (const row of cash.rows) {
    accounts.set(row.id, { cashMinor: big(row.cash_minor), positions: new Map() });
  }
  const positions = await db.query<{ account_id: string; security_id: string; quantity: string }>(
    'SELECT account_id, security_id, quantity FROM positions',
  );
  for (const row of positions.rows) {
    const book = accounts.get(row.account_id);
    invariant(book, `position of unknown account ${row.account_id}`);
    book.positions.set(row.security_id, big(row.quantity));
  }
  const lines = await db.query<{ n: string }>('SELECT count(*) AS n FROM allocation_lines');
  return { accounts, lines: Number(big(lines.rows[0]?.n ?? '0')) };
}

/**
 * In-database checks, as violation texts: per order Σ line quantities equals
 * Σ fill quantities of `fillsTable` (rows selected by `fillsWhere`), and per
 * target allocated = Σ its lines ≤ target.
 */
export async function checkInDatabase(
  db: Sql,
  fillsTable: string,
  fillsWhere = 'true',
): Promise<{ checks: number; violations: string[] }> {
  const orders = await db.query<{ id: string; filled: string | null; allocated: string | null }>(
    `SELECT o.id, f.q AS filled, l.q AS allocated FROM block_orders o
       LEFT JOIN (SELECT block_order_id, sum(quantity) AS q FROM ${fillsTable}
                   WHERE ${fillsWhere} GROUP BY block_order_id) f ON f.block_order_id = o.id
       LEFT JOIN (SELECT block_order_id, sum(quantity) AS q FROM allocation_lines
                   GROUP BY block_order_id) l ON l.block_order_id = o.id`,
  );
  const violations: string[] = [];
  for (const row of orders.rows) {
    const [filled, allocated] = [big(row.filled ?? '0'), big(row.allocated ?? '0')];
    if (filled !== allocated)
      violations.push(`order ${row.id}: Σ lines ${allocated} != Σ fills ${filled}`);
  }
  const targets = await db.query<{ block_order_id: string; account_id: string }>(
    `SELECT t.block_order_id, t.account_id FROM block_order_targets t
       LEFT JOIN (SELECT block_order_id, account_id, sum(quantity) AS q FROM allocation_lines
                   GROUP BY block_order_id, account_id) l
         ON l.block_order_id = t.block_order_id AND l.account_id = t.account_id
      WHERE t.allocated <> coalesce(l.q, 0) OR t.allocated > t.target`,
  );
  for (const row of targets.rows) {
    violations.push(
      `target ${row.block_order_id}/${row.account_id}: allocated != Σ lines or > target`,
    );
  }
  return { checks: orders.rows.length + 1, violations: violations.slice(0, 50) };
}
