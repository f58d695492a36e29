/**
 * The journal on PostgreSQL or CockroachDB: tables `journal` and `snapshots`.
 *
 * Writes go through group commit (group-commit.ts). Each batch is first
 * tried on the fast path: ONE statement, `INSERT … SELECT FROM unnest(four
 * arrays)`, which the server parses once whatever the batch size and which
 * is atomic on its own. If any row already exists (SQLSTATE 23505: a second
 * writer for some actor), nothing of it was written and the batch is redone
 * on the careful path: `INSERT … ON CONFLICT DO NOTHING RETURNING` in a
 * SERIALIZABLE transaction that also deletes, for each conflicting key, its
 * rows above the conflict, so the two-writer fence still holds.
 *
 * Reads: replay pages and snapshots requested in the same event-loop turn
 * share one query each (thousands of actors recover at once after a burst).
 */
import { invariant } from '../actors/errors.ts';
import type { Database, Query } from './db.ts';
import type { ExecutionRow } from '../actors/ledger.ts';
import { GroupCommitJournal, type BatchOutcome, type GroupCommitOptions } from './group-commit.ts';
import type { JournalRecord, SnapshotRecord, StoredRecord } from './journal.ts';
import { entryIdOf } from '../actors/block-order/decider.ts';
import {
  EXECUTION_SELECT,
  FILL_VERSION_SELECT,
  executionOf,
  insertSql,
  ledgerInserts,
  type ExecutionSqlRow,
  type LedgerInsert,
} from './ledger-sql.ts';
import { LookupBatcher } from './lookup-batcher.ts';

export type SqlJournalOptions = GroupCommitOptions;

const UNIQUE_VIOLATION = '23505';

// The payloads travel as ONE binary parameter, cut by offset and length on
// the server: a bytea[] parameter would be hex text, twice the bytes and CPU
// on both sides. substring(bytes, start, length) runs on PostgreSQL and CockroachDB.
const INSERT_UNNEST =
  'INSERT INTO journal (persistence_key, sequence_nr, event_type, payload) ' +
  'SELECT k, s, t, substring($4::bytea, o, l) ' +
  'FROM unnest($1::text[], $2::bigint[], $3::text[], $5::int[], $6::int[]) AS u (k, s, t, o, l)';

interface EventRow {
  persistence_key: string;
  after: string;
  sequence_nr: string;
  event_type: string;
  payload: Buffer;
  created_ms: string;
}

const rowId = (key: string, seq: number) => `${key}\u0000${seq}`;

function isUniqueViolation(error: unknown): boolean {
  const e = error as { code?: unknown; cause?: { code?: unknown } } | undefined;
  return e?.code === UNIQUE_VIOLATION || e?.cause?.code === UNIQUE_VIOLATION;
}

function columns(rows: readonly JournalRecord[]): unknown[] {
  const offsets: number[] = [];
  const lengths: number[] = [];
  let offset = 1; // substring counts from 1
  for (const r of rows) {
    offsets.push(offset);
    lengths.push(r.payload.length);
    offset += r.payload.length;
  }
  const blob = Buffer.concat(rows.map((r) => r.payload));
  invariant(blob.length === offset - 1, 'payload blob and offsets disagree');
  return [
    rows.map((r) => r.key),
    rows.map((r) => r.seq),
    rows.map((r) => r.eventType),
    blob,
    offsets,
    lengths,
  ];
}

/**
 * The fast path's one statement: the journal rows and, when the batch has
 * any, their ledger rows as data-modifying CTEs (atomic together; a claimed
 * fill id fails it with 23505 like an existing journal row).
 */
function fastStatement(rows: readonly JournalRecord[]): [string, unknown[]] {
  const inserts = ledgerInserts(rows);
  if (inserts.length === 0) return [INSERT_UNNEST, columns(rows)];
  const params = columns(rows);
  const ctes = [`j AS (${INSERT_UNNEST} RETURNING 1)`];
  inserts.forEach((insert, n) => {
    ctes.push(`l${n} AS (${insertSql(insert, params.length + 1)} RETURNING 1)`);
    params.push(...insert.arrays);
  });
  return [`WITH ${ctes.join(', ')} SELECT 1`, params];
}

/**
 * Claims the fill ids of the live records' executions; returns the records
 * whose claim failed (the id, or the order's seq, is already claimed), with
 * the ids. Within a batch the first claimant of an id wins.
 */
async function claimExecutions(
  q: Query,
  rows: readonly JournalRecord[],
  live: (index: number) => boolean,
): Promise<Map<number, string[]>> {
  const conflicts = new Map<number, string[]>();
  const [insert] = ledgerInserts(rows, live, ['executions']) as [LedgerInsert?];
  if (!insert) return conflicts;
  const claimed = await q<{ fill_id: string; persistence_key: string; sequence_nr: string }>(
    `${insertSql(insert, 1)} ON CONFLICT DO NOTHING
     RETURNING fill_id, persistence_key, sequence_nr`,
    insert.arrays,
  );
  const won = new Set(
    claimed.map((c) => `${rowId(c.persistence_key, Number(c.sequence_nr))}\u0000${c.fill_id}`),
  );
  rows.forEach((r, i) => {
    if (!live(i)) return;
    const lost = (r.ledger?.executions ?? [])
      .map((e) => entryIdOf(e))
      .filter((id) => !won.has(`${rowId(r.key, r.seq)}\u0000${id}`));
    if (lost.length > 0) conflicts.set(i, lost);
  });
  return conflicts;
}

export class SqlJournal extends GroupCommitJournal {
  readonly #db: Database;
  readonly #snapshots: LookupBatcher<SnapshotRecord>;
  /** One batcher per page size, so each query has a constant LIMIT (CockroachDB decorrelates it). */
  readonly #pages = new Map<number, LookupBatcher<StoredRecord[]>>();

  constructor(db: Database, options: SqlJournalOptions) {
    super(options);
    this.#db = db;
    this.#snapshots = new LookupBatcher((keys) => this.#loadSnapshots(keys), 500);
  }

  protected override async writeBatch(rows: readonly JournalRecord[]): Promise<BatchOutcome> {
    invariant(rows.length > 0, 'an empty batch is never written');
    try {
      await this.#db.statement(...fastStatement(rows));
      return { notWritten: new Set(), fallback: false };
    } catch (error) {
      if (!isUniqueViolation(error)) throw error;
    }
    return this.#db.serializable((q) => this.#writeCarefully(q, rows));
  }

  /**
   * The conflict path: keeps what is new, reports what existed, cuts each
   * conflicting key clean. A key conflict at key#n (another writer owns the
   * key) or a claimed fill id in key#n's ledger rows: this writer's rows of
   * that key from n on were decided without knowing it and must not land.
   */
  async #writeCarefully(q: Query, rows: readonly JournalRecord[]): Promise<BatchOutcome> {
    const inserted = await q<{ persistence_key: string; sequence_nr: string }>(
      `${INSERT_UNNEST} ON CONFLICT (persistence_key, sequence_nr) DO NOTHING
       RETURNING persistence_key, sequence_nr`,
      columns(rows),
    );
    const done = new Set(inserted.map((r) => rowId(r.persistence_key, Number(r.sequence_nr))));
    const cut = new Map<string, number>();
    const cutAt = (key: string, seq: number) => cut.set(key, Math.min(cut.get(key) ?? seq, seq));
    for (const r of rows) if (!done.has(rowId(r.key, r.seq))) cutAt(r.key, r.seq - 1);
    const live = (i: number) => {
      const r = rows[i];
      return r !== undefined && done.has(rowId(r.key, r.seq)) && r.seq <= (cut.get(r.key) ?? r.seq);
    };
    const executionConflicts = await claimExecutions(q, rows, live);
    for (const i of executionConflicts.keys()) {
      const r = rows[i];
      if (r) cutAt(r.key, r.seq - 1);
    }
    const stale = rows.filter(
      (r) => done.has(rowId(r.key, r.seq)) && r.seq > (cut.get(r.key) ?? Infinity),
    );
    if (stale.length > 0) {
      const keysSeqs = [stale.map((r) => r.key), stale.map((r) => r.seq)];
      for (const table of ['journal', 'executions']) {
        const deleted = await q(
          `DELETE FROM ${table} WHERE (persistence_key, sequence_nr) IN
             (SELECT * FROM unnest($1::text[], $2::bigint[])) RETURNING 1`,
          keysSeqs,
        );
        // Each stale row was inserted by this transaction: every journal row is there to take back.
        if (table === 'journal')
          invariant(
            deleted.length === stale.length,
            `took back ${deleted.length} of ${stale.length} rows`,
          );
      }
      for (const r of stale) done.delete(rowId(r.key, r.seq));
    }
    for (const insert of ledgerInserts(rows, live, ['suspense', 'resolutions']))
      await q(`${insertSql(insert, 1)} ON CONFLICT DO NOTHING`, insert.arrays);
    const notWritten = new Set<number>();
    rows.forEach((r, i) => {
      if (!done.has(rowId(r.key, r.seq))) notWritten.add(i);
    });
    invariant(notWritten.size > 0, 'the careful path runs only after a conflict');
    return { notWritten, fallback: true, executionConflicts };
  }

  override async execution(fillId: string): Promise<ExecutionRow | undefined> {
    const rows = await this.#db.query<ExecutionSqlRow>(`${EXECUTION_SELECT} WHERE fill_id = $1`, [
      fillId,
    ]);
    return rows[0] ? executionOf(rows[0]) : undefined;
  }

  override async executionAt(blockOrderId: string, seq: number): Promise<ExecutionRow | undefined> {
    const rows = await this.#db.query<ExecutionSqlRow>(
      `${EXECUTION_SELECT} WHERE block_order_id = $1 AND fill_seq = $2`,
      [blockOrderId, seq],
    );
    return rows[0] ? executionOf(rows[0]) : undefined;
  }

  override async fillVersionRecord(fillId: string): Promise<StoredRecord | undefined> {
    const rows = await this.#db.query<{
      persistence_key: string;
      sequence_nr: string;
      event_type: string;
      payload: Buffer;
      created_ms: string;
    }>(FILL_VERSION_SELECT, [fillId]);
    const row = rows[0];
    if (!row) return undefined;
    return {
      key: row.persistence_key,
      seq: Number(row.sequence_nr),
      eventType: row.event_type,
      payload: row.payload,
      createdAtMs: Number(row.created_ms),
    };
  }

  override snapshot(key: string): Promise<SnapshotRecord | undefined> {
    return this.#snapshots.get(key);
  }

  override async saveSnapshot(snapshot: Omit<SnapshotRecord, 'createdAtMs'>): Promise<void> {
    invariant(
      Number.isSafeInteger(snapshot.seq) && snapshot.seq >= 0,
      `snapshot of ${snapshot.key} at #${snapshot.seq}`,
    );
    await this.#db.serializable((q) =>
      q(
        `INSERT INTO snapshots (persistence_key, sequence_nr, payload) VALUES ($1, $2, $3)
         ON CONFLICT (persistence_key) DO UPDATE
           SET sequence_nr = excluded.sequence_nr, payload = excluded.payload, created_at = now()
           WHERE snapshots.sequence_nr < excluded.sequence_nr`,
        [snapshot.key, snapshot.seq, snapshot.payload],
      ),
    );
  }

  async #loadSnapshots(keys: string[]): Promise<Map<string, SnapshotRecord>> {
    const rows = await this.#db.query<{
      persistence_key: string;
      sequence_nr: string;
      payload: Buffer;
      created_ms: string;
    }>(
      `SELECT persistence_key, sequence_nr, payload,
              floor(extract(epoch FROM created_at) * 1000)::bigint AS created_ms
       FROM snapshots WHERE persistence_key = ANY($1::text[])`,
      [keys],
    );
    return new Map(
      rows.map((row) => [
        row.persistence_key,
        {
          key: row.persistence_key,
          seq: Number(row.sequence_nr),
          payload: row.payload,
          createdAtMs: Number(row.created_ms),
        },
      ]),
    );
  }

  override load(key: string, afterSeq: number, limit: number): Promise<StoredRecord[]> {
    invariant(limit >= 1 && limit <= 100_000, `page of ${limit} records`);
    let pages = this.#pages.get(limit);
    if (!pages) {
      // Checked before adding: a caller passing many sizes fails without growing the map.
      invariant(this.#pages.size < 16, 'a handful of page sizes at most');
      pages = new LookupBatcher((ids) => this.#loadPages(ids, limit), 200);
      this.#pages.set(limit, pages);
    }
    return pages.get(`${key}\u0000${afterSeq}`).then((page) => page ?? []);
  }

  /** Many (key, after) pages of `limit` records in one query. */
  async #loadPages(ids: string[], limit: number): Promise<Map<string, StoredRecord[]>> {
    const keys: string[] = [];
    const afters: number[] = [];
    for (const id of ids) {
      const [key, after] = id.split('\u0000');
      keys.push(key ?? '');
      afters.push(Number(after));
    }
    // LATERAL … LIMIT: each page is an index range scan that stops at its limit.
    const rows = await this.#db.query<EventRow>(
      `SELECT k.key AS persistence_key, k.after, j.sequence_nr, j.event_type, j.payload,
              floor(extract(epoch FROM j.created_at) * 1000)::bigint AS created_ms
       FROM unnest($1::text[], $2::bigint[]) AS k (key, after)
       CROSS JOIN LATERAL (
         SELECT sequence_nr, event_type, payload, created_at FROM journal
         WHERE persistence_key = k.key AND sequence_nr > k.after
         ORDER BY sequence_nr LIMIT $3
       ) j
       ORDER BY k.key, k.after, j.sequence_nr`,
      [keys, afters, limit],
    );
    const out = new Map<string, StoredRecord[]>();
    for (const row of rows) {
      const id = `${row.persistence_key}\u0000${Number(row.after)}`;
      const page = out.get(id) ?? [];
      page.push({
        key: row.persistence_key,
        seq: Number(row.sequence_nr),
        eventType: row.event_type,
        payload: row.payload,
        createdAtMs: Number(row.created_ms),
      });
      out.set(id, page);
    }
    return out;
  }
}
