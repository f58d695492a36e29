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
  {
    // Ledger rows (actors/ledger.ts), written in the same commit as their
    // journal row. Each names that row (persistence_key, sequence_nr).
    version: 2,
    name: 'execution_index_and_suspense',
    statements: [
      // A fill id is claimed once, forever: a re-use on any order, at any
      // age, fails the claiming commit (EXECUTION_CONFLICT).
      `CREATE TABLE IF NOT EXISTS executions (
        fill_id TEXT NOT NULL PRIMARY KEY,
        block_order_id TEXT NOT NULL,
        fill_seq BIGINT NOT NULL,
        quantity BIGINT NOT NULL,
        price BIGINT NOT NULL,
        venue TEXT NOT NULL,
        executed_at_ms BIGINT NOT NULL,
        persistence_key TEXT NOT NULL,
        sequence_nr BIGINT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now()
      )`,
      `CREATE UNIQUE INDEX IF NOT EXISTS executions_order_seq
        ON executions (block_order_id, fill_seq)`,
      `CREATE INDEX IF NOT EXISTS executions_journal_row
        ON executions (persistence_key, sequence_nr)`,
      // Lines an account refused: per block order, until resolved.
      `CREATE TABLE IF NOT EXISTS suspense (
        block_order_id TEXT NOT NULL,
        fill_seq BIGINT NOT NULL,
        account_id TEXT NOT NULL,
        security_id TEXT NOT NULL,
        side TEXT NOT NULL,
        quantity BIGINT NOT NULL,
        price BIGINT NOT NULL,
        reason TEXT NOT NULL,
        detail TEXT NOT NULL,
        persistence_key TEXT NOT NULL,
        sequence_nr BIGINT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        PRIMARY KEY (block_order_id, fill_seq, account_id)
      )`,
      `CREATE TABLE IF NOT EXISTS suspense_resolutions (
        block_order_id TEXT NOT NULL,
        fill_seq BIGINT NOT NULL,
        account_id TEXT NOT NULL,
        resolution TEXT NOT NULL,
        persistence_key TEXT NOT NULL,
        sequence_nr BIGINT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        PRIMARY KEY (block_order_id, fill_seq, account_id)
      )`,
    ],
  },
  {
    // Amendments (a bust, correction or cancel) are entries of their order's
    // sequence like fills: claimed in the same index, so one id space and one
    // (order, seq) uniqueness cover both. `amends_fill_id` finds a fill's
    // latest version. ADD COLUMN IF NOT EXISTS: re-runnable where DDL autocommits.
    version: 3,
    name: 'amendments_in_execution_index',
    statements: [
      `ALTER TABLE executions ADD COLUMN IF NOT EXISTS kind TEXT NOT NULL DEFAULT 'FILL'`,
      `ALTER TABLE executions ADD COLUMN IF NOT EXISTS amends_fill_id TEXT`,
      `CREATE INDEX IF NOT EXISTS executions_amends ON executions (amends_fill_id)`,
    ],
  },
  {
    // The allocation policy is reference data: rebalancing decides it per
    // order. NULL triggers are off; the block order validates them on open.
    version: 4,
    name: 'block_order_allocation_policy',
    statements: [
      `ALTER TABLE block_orders ADD COLUMN IF NOT EXISTS allocation_policy TEXT NOT NULL DEFAULT 'PRO_RATA'`,
      `ALTER TABLE block_orders ADD COLUMN IF NOT EXISTS release_every_fills BIGINT`,
      `ALTER TABLE block_orders ADD COLUMN IF NOT EXISTS release_every_market_ms BIGINT`,
    ],
  },
  {
    // `lines_key`: the key whose current lines the row's event set (a fill's
    // id, or an average-price order's release key; NULL: none), so the lines
    // lookup never reads it out of `amends_fill_id`, which stays the fill an
    // amendment names (what a re-sent message is compared with). Rows from
    // before are pro-rata: their key is the fill's own id or the amended
    // fill's. Re-runnable: the UPDATE only fills what is still NULL.
    version: 5,
    name: 'execution_lines_key',
    statements: [
      `ALTER TABLE executions ADD COLUMN IF NOT EXISTS lines_key TEXT`,
      `UPDATE executions SET lines_key = CASE WHEN kind = 'FILL' THEN fill_id ELSE amends_fill_id END
        WHERE lines_key IS NULL`,
      `CREATE INDEX IF NOT EXISTS executions_lines_key ON executions (lines_key)`,
      // The lookup reads lines_key now: an index nobody reads only costs every insert.
      `DROP INDEX IF EXISTS executions_amends`,
    ],
  },
  {
    // Booking (system/booking.ts): what was sent to portfolio accounting.
    // A batch takes, per account journal key, the rows above its mark, and
    // advances the mark in the transaction that records it: per-key sequence numbers,
    // not commit times, decide what is in a batch. The unique batch_no makes
    // a concurrent close collide; the unique source_id books a line once.
    version: 6,
    name: 'booking_batches',
    statements: [
      `CREATE TABLE IF NOT EXISTS booking_marks (
        persistence_key TEXT NOT NULL PRIMARY KEY,
        booked_through_seq BIGINT NOT NULL,
        batch_id TEXT
      )`,
      `CREATE TABLE IF NOT EXISTS booking_batches (
        id TEXT NOT NULL PRIMARY KEY,
        batch_no BIGINT NOT NULL UNIQUE,
        window_start TIMESTAMPTZ,
        closed_at TIMESTAMPTZ NOT NULL,
        line_count BIGINT NOT NULL,
        allocation_count BIGINT NOT NULL,
        account_count BIGINT NOT NULL,
        journal_row_count BIGINT NOT NULL,
        capped BOOLEAN NOT NULL,
        file_name TEXT NOT NULL,
        checksum_sha256 TEXT NOT NULL,
        file_kept BOOLEAN NOT NULL
      )`,
      `CREATE TABLE IF NOT EXISTS booking_lines (
        batch_id TEXT NOT NULL,
        line_no BIGINT NOT NULL,
        source_id TEXT NOT NULL UNIQUE,
        account_id TEXT NOT NULL,
        security_id TEXT NOT NULL,
        side TEXT NOT NULL,
        movement_kind TEXT NOT NULL,
        transaction_type TEXT NOT NULL,
        quantity BIGINT NOT NULL,
        price BIGINT NOT NULL,
        cash_delta_minor BIGINT NOT NULL,
        transaction_date TEXT NOT NULL,
        block_order_id TEXT NOT NULL,
        fill_seq BIGINT NOT NULL,
        entry_seq BIGINT NOT NULL,
        fill_id TEXT NOT NULL,
        execution_id TEXT NOT NULL,
        persistence_key TEXT NOT NULL,
        sequence_nr BIGINT NOT NULL,
        PRIMARY KEY (batch_id, line_no)
      )`,
      `CREATE INDEX IF NOT EXISTS booking_lines_fill ON booking_lines (fill_id)`,
      `CREATE INDEX IF NOT EXISTS booking_lines_execution ON booking_lines (execution_id)`,
      `CREATE INDEX IF NOT EXISTS booking_lines_order_seq ON booking_lines (block_order_id, fill_seq)`,
    ],
  },
];

/**
 * Tables that hold reference data (what rebalancing decided), what was sent
 * to booking (a fact outside blockfill: replaying the stream cannot undo it)
 * and the migration record: everything else is derived from the EXECUTIONS
 * stream and can be rebuilt by replaying it (the replay drill truncates it).
 * The booking marks are derived: they number journal rows, which a rebuild
 * numbers anew; a line already in booking_lines is never booked again.
 */
export const NOT_DERIVED_TABLES: readonly string[] = [
  'schema_migrations',
  'securities',
  'accounts',
  'account_positions',
  'block_orders',
  'block_order_targets',
  'booking_batches',
  'booking_lines',
];
