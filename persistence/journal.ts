/**
 * The journal: a nact persistence engine on the `journal` and `snapshots`
 * tables, with group commit.
 *
 * Group commit: `persist()` calls from many actors queue up and are written
 * as one multi-row INSERT. A batch is flushed when it reaches
 * `batchEventsMax` events or `flushIntervalMs` after its first event,
 * whichever comes first; while a flush is in flight the next batch gathers,
 * and up to `flushesInFlightMax` flushes run at once. A caller's promise
 * resolves only after the transaction holding its event has committed.
 *
 * Two writers for one actor: the INSERT uses ON CONFLICT DO NOTHING and
 * RETURNING, so a row that already exists is reported back to its caller as a
 * JournalConflictError (the actor resets and recovers) and never overwritten.
 *
 * Per key, events commit in order and a failure is a clean cut: a key with a
 * batch in flight waits for it; when key#n fails, its events above n in the
 * same INSERT are deleted in the same transaction and its queued later events
 * are failed too. The journal of a key is therefore always a gap-free prefix
 * of what its actor persisted.
 */
import type { Database } from './db.ts';
import { LookupBatcher } from './lookup-batcher.ts';

export interface StoredEvent {
  eventType: string;
  payload: Uint8Array;
}

/** The shape nact hands to `persist` (its PersistedEvent). */
export interface PersistedEventLike {
  data: StoredEvent;
  sequenceNumber: number;
  key: string;
}

/** The shape nact hands to `takeSnapshot` and reads back from `latestSnapshot`. */
export interface PersistedSnapshotLike {
  data: Uint8Array;
  sequenceNumber: number;
  key: string;
  createdAt: number;
}

export interface ReplayedEvent {
  data: StoredEvent;
  sequenceNumber: number;
  key: string;
  createdAt: number;
  tags: string[];
  isDeleted: false;
}

interface EventRow {
  sequence_nr: string;
  event_type: string;
  payload: Buffer;
  created_ms: string;
}

export interface JournalOptions {
  batchEventsMax: number;
  flushIntervalMs: number;
  flushesInFlightMax: number;
  pendingEventsMax: number;
  replayPageEvents: number;
  recoveryConcurrencyMax: number;
}

export class JournalConflictError extends Error {
  readonly code = 'JOURNAL_CONFLICT';
  constructor(key: string, sequenceNr: number) {
    super(`journal already holds ${key}#${sequenceNr}: another writer owns this actor`);
    this.name = 'JournalConflictError';
  }
}

export class JournalOverloadedError extends Error {
  readonly code = 'JOURNAL_OVERLOADED';
  constructor(pendingEventsMax: number) {
    super(`journal has ${pendingEventsMax} events waiting to be written (its bound)`);
    this.name = 'JournalOverloadedError';
  }
}

export class JournalGapError extends Error {
  readonly code = 'JOURNAL_GAP';
  constructor(key: string, expected: number, found: number) {
    super(`journal of ${key} jumps from #${expected - 1} to #${found}`);
    this.name = 'JournalGapError';
  }
}

export class JournalClosedError extends Error {
  readonly code = 'JOURNAL_CLOSED';
  constructor() {
    super('journal is closed');
    this.name = 'JournalClosedError';
  }
}

interface Pending {
  key: string;
  sequenceNr: number;
  eventType: string;
  payload: Uint8Array;
  resolve: () => void;
  reject: (error: Error) => void;
}

export interface JournalStats {
  events: number;
  batches: number;
  batchEventsLargest: number;
  conflicts: number;
  /** Sum over batches of the time from sending the INSERT to its commit. */
  flushMsTotal: number;
}

/** A counting semaphore: bounds concurrent recoveries. */
class Semaphore {
  #available: number;
  #waiters: Array<() => void> = [];
  constructor(permits: number) {
    this.#available = permits;
  }
  async acquire(): Promise<void> {
    if (this.#available > 0) {
      this.#available--;
      return;
    }
    await new Promise<void>((resolve) => this.#waiters.push(resolve));
  }
  release(): void {
    const next = this.#waiters.shift();
    if (next) next();
    else this.#available++;
  }
}

export class SqlJournal {
  readonly #db: Database;
  readonly #options: JournalOptions;
  #queue: Pending[] = [];
  #timer: NodeJS.Timeout | undefined;
  #flushesInFlight = 0;
  #idleWaiters: Array<() => void> = [];
  #closed = false;
  readonly #recoveries: Semaphore;
  /** Recovery permits held per key, between latestSnapshot() and the end of replay. */
  readonly #recoveryPermits = new Map<string, number>();
  readonly #keysInFlight = new Set<string>();
  // Thousands of actors recover at once when a burst starts them: their
  // snapshot reads and first replay pages share queries.
  readonly #snapshotLookups = new LookupBatcher<PersistedSnapshotLike>(
    (keys) => this.#loadSnapshots(keys),
    500,
  );
  readonly #firstPages = new LookupBatcher<EventRow[]>((ids) => this.#loadFirstPages(ids), 200);
  readonly stats: JournalStats = {
    events: 0,
    batches: 0,
    batchEventsLargest: 0,
    conflicts: 0,
    flushMsTotal: 0,
  };

  constructor(db: Database, options: JournalOptions) {
    if (options.batchEventsMax < 1 || options.batchEventsMax > 10_000) {
      throw new RangeError('batchEventsMax must be within 1..10000 (4 bind parameters per event)');
    }
    this.#db = db;
    this.#options = options;
    this.#recoveries = new Semaphore(options.recoveryConcurrencyMax);
  }

  persist(event: PersistedEventLike): Promise<void> {
    if (this.#closed) return Promise.reject(new JournalClosedError());
    if (this.#queue.length >= this.#options.pendingEventsMax) {
      return Promise.reject(new JournalOverloadedError(this.#options.pendingEventsMax));
    }
    if (!Number.isSafeInteger(event.sequenceNumber) || event.sequenceNumber < 1) {
      return Promise.reject(
        new RangeError(`invalid sequence number ${event.sequenceNumber} for ${event.key}`),
      );
    }
    return new Promise<void>((resolve, reject) => {
      this.#queue.push({
        key: event.key,
        sequenceNr: event.sequenceNumber,
        eventType: event.data.eventType,
        payload: event.data.payload,
        resolve,
        reject,
      });
      if (this.#queue.length >= this.#options.batchEventsMax) this.#pump();
      else if (this.#timer === undefined && this.#flushesInFlight === 0) {
        this.#timer = setTimeout(() => {
          this.#timer = undefined;
          this.#pump();
        }, this.#options.flushIntervalMs);
      }
    });
  }

  #pump(): void {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    while (this.#flushesInFlight < this.#options.flushesInFlightMax && this.#queue.length > 0) {
      // A key with a batch in flight waits: one key's events commit in order,
      // and a failure can still fail the key's later events.
      const batch: Pending[] = [];
      const rest: Pending[] = [];
      for (const p of this.#queue) {
        if (batch.length < this.#options.batchEventsMax && !this.#keysInFlight.has(p.key))
          batch.push(p);
        else rest.push(p);
      }
      if (batch.length === 0) break;
      this.#queue = rest;
      const keys = new Set(batch.map((p) => p.key));
      for (const k of keys) this.#keysInFlight.add(k);
      this.#flushesInFlight++;
      void this.#write(batch).finally(() => {
        for (const k of keys) this.#keysInFlight.delete(k);
        this.#flushesInFlight--;
        // Group commit: whatever queued up during this flush goes out now.
        if (this.#queue.length > 0) this.#pump();
        else if (this.#flushesInFlight === 0) this.#notifyIdle();
      });
    }
  }

  async #write(batch: Pending[]): Promise<void> {
    // An actor numbers its events itself, so two entries for one row in a
    // batch mean two writers. The first wins the batch, the rest fail.
    const rows: Pending[] = [];
    const seen = new Set<string>();
    for (const p of batch) {
      const id = `${p.key}\u0000${p.sequenceNr}`;
      if (seen.has(id)) {
        this.stats.conflicts++;
        p.reject(new JournalConflictError(p.key, p.sequenceNr));
      } else {
        seen.add(id);
        rows.push(p);
      }
    }
    const params: unknown[] = [];
    const values: string[] = [];
    for (const r of rows) {
      const i = params.length;
      values.push(`($${i + 1}, $${i + 2}, $${i + 3}, $${i + 4})`);
      params.push(r.key, r.sequenceNr, r.eventType, r.payload);
    }
    const sql =
      `INSERT INTO journal (persistence_key, sequence_nr, event_type, payload) VALUES ${values.join(', ')} ` +
      `ON CONFLICT (persistence_key, sequence_nr) DO NOTHING RETURNING persistence_key, sequence_nr`;
    let inserted: Set<string>;
    const startedMs = performance.now();
    try {
      inserted = await this.#db.serializable(async (q) => {
        const result = await q<{ persistence_key: string; sequence_nr: string | number }>(
          sql,
          params,
        );
        const done = new Set(
          result.map((row) => `${row.persistence_key}\u0000${Number(row.sequence_nr)}`),
        );
        // A conflict at key#n means another writer owns the key: this writer's
        // later events of that key were decided without it and must not land.
        const firstConflict = new Map<string, number>();
        for (const r of rows) {
          if (!done.has(`${r.key}\u0000${r.sequenceNr}`)) {
            firstConflict.set(r.key, Math.min(firstConflict.get(r.key) ?? Infinity, r.sequenceNr));
          }
        }
        const stale = rows.filter(
          (r) =>
            done.has(`${r.key}\u0000${r.sequenceNr}`) &&
            r.sequenceNr > (firstConflict.get(r.key) ?? Infinity),
        );
        if (stale.length > 0) {
          const p: unknown[] = [];
          const tuples = stale.map((r) => {
            p.push(r.key, r.sequenceNr);
            return `($${p.length - 1}, $${p.length})`;
          });
          await q(
            `DELETE FROM journal WHERE (persistence_key, sequence_nr) IN (${tuples.join(', ')})`,
            p,
          );
          for (const r of stale) done.delete(`${r.key}\u0000${r.sequenceNr}`);
        }
        return done;
      });
    } catch (error) {
      const failure = error instanceof Error ? error : new Error(String(error));
      for (const r of rows) {
        r.reject(failure);
        this.#failLater(r.key, r.sequenceNr, failure);
      }
      return;
    }
    this.stats.batches++;
    this.stats.flushMsTotal += performance.now() - startedMs;
    this.stats.batchEventsLargest = Math.max(this.stats.batchEventsLargest, rows.length);
    for (const r of rows) {
      if (inserted.has(`${r.key}\u0000${r.sequenceNr}`)) {
        this.stats.events++;
        r.resolve();
      } else {
        this.stats.conflicts++;
        r.reject(new JournalConflictError(r.key, r.sequenceNr));
        this.#failLater(r.key, r.sequenceNr, new JournalConflictError(r.key, r.sequenceNr));
      }
    }
  }

  /** key#seq failed: the key's later queued events would leave a hole or were decided on a stale state. */
  #failLater(key: string, sequenceNr: number, error: Error): void {
    const keep: Pending[] = [];
    for (const p of this.#queue) {
      if (p.key === key && p.sequenceNr > sequenceNr) p.reject(error);
      else keep.push(p);
    }
    this.#queue = keep;
  }

  #notifyIdle(): void {
    const waiters = this.#idleWaiters;
    this.#idleWaiters = [];
    for (const w of waiters) w();
  }

  /** Resolves when every queued event has been written (or failed). */
  async drain(): Promise<void> {
    if (this.#queue.length === 0 && this.#flushesInFlight === 0) return;
    const idle = new Promise<void>((resolve) => this.#idleWaiters.push(resolve));
    this.#pump();
    await idle;
  }

  async close(): Promise<void> {
    await this.drain();
    this.#closed = true;
  }

  async latestSnapshot(key: string): Promise<PersistedSnapshotLike | undefined> {
    await this.#recoveries.acquire();
    this.#recoveryPermits.set(key, (this.#recoveryPermits.get(key) ?? 0) + 1);
    try {
      return await this.#snapshotLookups.get(key);
    } catch (error) {
      this.releaseRecovery(key);
      throw error;
    }
  }

  async #loadSnapshots(keys: string[]): Promise<Map<string, PersistedSnapshotLike>> {
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
          data: row.payload,
          sequenceNumber: Number(row.sequence_nr),
          key: row.persistence_key,
          createdAt: Number(row.created_ms),
        },
      ]),
    );
  }

  /** First replay page of many (key, offset) pairs in one query: a window per pair. */
  async #loadFirstPages(ids: string[]): Promise<Map<string, EventRow[]>> {
    const params: unknown[] = [];
    const values = ids.map((id) => {
      const [key, after] = id.split('\u0000');
      params.push(key, Number(after));
      return `($${params.length - 1}::text, $${params.length}::bigint)`;
    });
    params.push(this.#options.replayPageEvents);
    const rows = await this.#db.query<EventRow & { persistence_key: string; after: string }>(
      `SELECT persistence_key, after, sequence_nr, event_type, payload, created_ms FROM (
         SELECT j.persistence_key, k.after, j.sequence_nr, j.event_type, j.payload,
                floor(extract(epoch FROM j.created_at) * 1000)::bigint AS created_ms,
                row_number() OVER (PARTITION BY j.persistence_key, k.after ORDER BY j.sequence_nr) AS rn
         FROM journal j
         JOIN (VALUES ${values.join(', ')}) AS k (key, after)
           ON j.persistence_key = k.key AND j.sequence_nr > k.after
       ) page
       WHERE rn <= $${params.length}
       ORDER BY persistence_key, after, sequence_nr`,
      params,
    );
    const out = new Map<string, EventRow[]>();
    for (const row of rows) {
      const id = `${row.persistence_key}\u0000${Number(row.after)}`;
      const page = out.get(id) ?? [];
      page.push(row);
      out.set(id, page);
    }
    return out;
  }

  /** Releases the recovery permit of `key` if it holds one (also called when a recovery crashes). */
  releaseRecovery(key: string): void {
    const held = this.#recoveryPermits.get(key);
    if (held === undefined) return;
    if (held > 1) this.#recoveryPermits.set(key, held - 1);
    else this.#recoveryPermits.delete(key);
    this.#recoveries.release();
  }

  async takeSnapshot(snapshot: PersistedSnapshotLike): Promise<void> {
    await this.#db.serializable((q) =>
      q(
        `INSERT INTO snapshots (persistence_key, sequence_nr, payload) VALUES ($1, $2, $3)
         ON CONFLICT (persistence_key) DO UPDATE
           SET sequence_nr = excluded.sequence_nr, payload = excluded.payload, created_at = now()
           WHERE snapshots.sequence_nr < excluded.sequence_nr`,
        [snapshot.key, snapshot.sequenceNumber, snapshot.data],
      ),
    );
  }

  /**
   * Events of `key` after `offset`, read in pages. nact consumes them through
   * `reduce`; replay stops early when the reducer yields undefined (nact's
   * signal that the actor's supervisor stopped the recovery).
   */
  events(key: string, offset: number) {
    const pageSize = this.#options.replayPageEvents;
    const readPage = async (after: number): Promise<EventRow[]> =>
      after === offset
        ? ((await this.#firstPages.get(`${key}\u0000${offset}`)) ?? [])
        : this.#db.query<EventRow>(
            `SELECT sequence_nr, event_type, payload, floor(extract(epoch FROM created_at) * 1000)::bigint AS created_ms FROM journal
         WHERE persistence_key = $1 AND sequence_nr > $2 ORDER BY sequence_nr LIMIT $3`,
            [key, after, pageSize],
          );
    return {
      reduce: async <A>(
        reducer: (acc: A | Promise<A>, event: ReplayedEvent, index: number) => A | Promise<A>,
        initial: A | Promise<A>,
      ): Promise<A> => {
        try {
          let acc = await initial;
          let after = offset;
          let index = 0;
          for (;;) {
            const page = await readPage(after);
            for (const row of page) {
              const sequenceNumber = Number(row.sequence_nr);
              if (sequenceNumber !== after + 1)
                throw new JournalGapError(key, after + 1, sequenceNumber);
              after = sequenceNumber;
              acc = await reducer(
                acc,
                {
                  data: { eventType: row.event_type, payload: row.payload },
                  sequenceNumber,
                  key,
                  createdAt: Number(row.created_ms),
                  tags: [],
                  isDeleted: false,
                },
                index++,
              );
              if (acc === undefined) return acc;
            }
            if (page.length < pageSize) return acc;
          }
        } finally {
          this.releaseRecovery(key);
        }
      },
    };
  }
}

/**
 * Persistence keys starting with `keyPrefix` whose last journaled event has
 * one of `eventTypes`: e.g. block orders whose allocations are not all
 * confirmed. Scans the prefix's journal; meant for start-up and simulations.
 */
export async function keysWhoseLastEventIs(
  db: Database,
  keyPrefix: string,
  eventTypes: readonly string[],
): Promise<string[]> {
  const rows = await db.query<{ persistence_key: string }>(
    `SELECT j.persistence_key FROM journal j
     JOIN (SELECT persistence_key, max(sequence_nr) AS s FROM journal
           WHERE persistence_key LIKE $1 GROUP BY persistence_key) m
       ON j.persistence_key = m.persistence_key AND j.sequence_nr = m.s
     WHERE j.event_type = ANY($2::text[])`,
    [`${keyPrefix.replace(/[\\%_]/g, '\\$&')}%`, [...eventTypes]],
  );
  return rows.map((r) => r.persistence_key);
}
