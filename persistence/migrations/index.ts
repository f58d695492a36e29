/**
 * Ordered migrations. SQL here must run on PostgreSQL and CockroachDB alike:
 * no SERIAL or sequences, no advisory locks, no LISTEN/NOTIFY, no triggers.
 * Never edit an applied migration; add a new one.
 */
export interface Migration {
  version: number;
  name: string;
  statements: string[];
}

export const migrations: Migration[] = [
  {
    version: 1,
    name: 'journal_snapshots_reference',
    statements: [
      `CREATE TABLE IF NOT EXISTS journal (
        persistence_key TEXT NOT NULL,
        sequence_nr BIGINT NOT NULL,
        event_type TEXT NOT NULL,
        payload BYTEA NOT NULL,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        PRIMARY KEY (persistence_key, sequence_nr)
      )`,
      `CREATE TABLE IF NOT EXISTS snapshots (
        persistence_key TEXT NOT NULL PRIMARY KEY,
        sequence_nr BIGINT NOT NULL,
        payload BYTEA NOT NULL,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now()
      )`,
      `CREATE TABLE IF NOT EXISTS securities (
        id TEXT NOT NULL PRIMARY KEY,
        ticker TEXT NOT NULL,
        lot_size BIGINT NOT NULL CHECK (lot_size > 0)
      )`,
      `CREATE TABLE IF NOT EXISTS accounts (
        id TEXT NOT NULL PRIMARY KEY,
        name TEXT NOT NULL,
        opening_cash_minor BIGINT NOT NULL
      )`,
      `CREATE TABLE IF NOT EXISTS account_positions (
        account_id TEXT NOT NULL REFERENCES accounts (id),
        security_id TEXT NOT NULL REFERENCES securities (id),
        opening_quantity BIGINT NOT NULL CHECK (opening_quantity >= 0),
        PRIMARY KEY (account_id, security_id)
      )`,
      `CREATE TABLE IF NOT EXISTS block_orders (
        id TEXT NOT NULL PRIMARY KEY,
        security_id TEXT NOT NULL REFERENCES securities (id),
        side TEXT NOT NULL CHECK (side IN ('BUY', 'SELL')),
        trade_date TEXT NOT NULL
      )`,
      `CREATE TABLE IF NOT EXISTS block_order_targets (
        block_order_id TEXT NOT NULL REFERENCES block_orders (id),
        account_id TEXT NOT NULL REFERENCES accounts (id),
        quantity BIGINT NOT NULL CHECK (quantity > 0),
        PRIMARY KEY (block_order_id, account_id)
      )`,
    ],
  },
];
