/**
 * Group commit, independent of where the rows go: appends from many actors
 * queue up per key and are written in batches by a `BatchWriter` (SQL or
 * memory). A batch is flushed when `batchEventsMax` records wait or
 * `flushIntervalMs` after the first one, whichever comes first; up to
 * `flushesInFlightMax` batches are written at once; whatever queued during a
 * flush goes out as soon as it ends.
 *
 * Per key: records commit in order. A key with a batch in flight waits for
 * it (so a key is never in two batches at once), and when key#n fails, its
 * queued later records fail too: the stored journal of a key is always a
 * gap-free prefix of what its writer appended.
 *
 * The queue is a map of per-key FIFOs plus an ordered set of keys ready to
 * go, so a flush takes whole keys without scanning everything that waits.
 */
import { invariant } from '../actors/errors.ts';
import type { ExecutionRow } from '../actors/ledger.ts';
import {
  emptyJournalStats,
  ExecutionConflictError,
  JournalClosedError,
  JournalConflictError,
  JournalOverloadedError,
  type Journal,
  type JournalRecord,
  type JournalStats,
  type SnapshotRecord,
  type StoredRecord,
} from './journal.ts';

export interface GroupCommitOptions {
  batchEventsMax: number;
  flushIntervalMs: number;
  flushesInFlightMax: number;
  pendingEventsMax: number;
  /** Runs before each batch is written; throwing fails the whole batch (fault injection). */
  beforeBatch?: (rows: readonly JournalRecord[]) => void | Promise<void>;
  /** Told of each batch written: its events and its write-and-commit time (metrics). */
  observeBatch?: (events: number, seconds: number) => void;
}

/**
 * Writes one batch atomically, except rows that already exist: for each key
 * whose row at seq n existed, none of its rows from n on may be written.
 * Returns the indices of the rows not written and whether the writer had to
 * take a slower path (for the stats).
 */
export type BatchWriter = (rows: readonly JournalRecord[]) => Promise<BatchOutcome>;

export interface BatchOutcome {
  notWritten: ReadonlySet<number>;
  fallback: boolean;
  /**
   * Of `notWritten`, the rows refused because a ledger row (a fill id) was
   * already claimed, with those ids; the other rows met an existing journal row.
   */
  executionConflicts?: ReadonlyMap<number, readonly string[]>;
}

interface Waiter {
  remaining: number;
  failed: boolean;
  resolve: () => void;
  reject: (error: Error) => void;
}

interface Entry {
  record: JournalRecord;
  waiter: Waiter;
}

export class GroupCommit {
  readonly #write: BatchWriter;
  readonly #options: GroupCommitOptions;
  readonly #queues = new Map<string, Entry[]>();
  /** Keys with queued records and no batch in flight, oldest first. */
  readonly #ready = new Set<string>();
  readonly #inFlight = new Set<string>();
  /** Last appended seq per active key (queued or in flight): seqs only grow. */
  readonly #lastSeq = new Map<string, number>();
  #pending = 0;
  #flushes = 0;
  #timer: NodeJS.Timeout | undefined;
  #idleWaiters: Array<() => void> = [];
  #closed = false;
  readonly stats: JournalStats = emptyJournalStats();

  constructor(write: BatchWriter, options: GroupCommitOptions) {
    // Options are a caller's input: a bad one is a RangeError, not a broken invariant.
    if (!(options.batchEventsMax >= 1 && options.batchEventsMax <= 10_000))
      throw new RangeError('batchEventsMax must be within 1..10000');
    if (!(options.flushesInFlightMax >= 1 && options.pendingEventsMax >= 1))
      throw new RangeError('flushesInFlightMax and pendingEventsMax must be at least 1');
    this.#write = write;
    this.#options = options;
  }

  get pending(): number {
    return this.#pending;
  }

  append(records: readonly JournalRecord[]): Promise<void> {
    if (this.#closed) return Promise.reject(new JournalClosedError());
    if (records.length === 0) return Promise.resolve();
    if (this.#pending + records.length > this.#options.pendingEventsMax) {
      return Promise.reject(new JournalOverloadedError(this.#options.pendingEventsMax));
    }
    const invalid = records.find((r) => !Number.isSafeInteger(r.seq) || r.seq < 1);
    if (invalid) {
      return Promise.reject(
        new RangeError(`invalid sequence number ${invalid.seq} for ${invalid.key}`),
      );
    }
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = { remaining: records.length, failed: false, resolve, reject };
      for (const record of records) this.#enqueue({ record, waiter });
      this.#schedule();
    });
  }

  #enqueue(entry: Entry): void {
    const { key, seq } = entry.record;
    const last = this.#lastSeq.get(key);
    // One writer numbers its records 1, 2, 3 ...: a repeat or a step back is a bug in the caller.
    invariant(last === undefined || seq === last + 1, `${key}#${seq} appended after #${last}`);
    this.#lastSeq.set(key, seq);
    const queue = this.#queues.get(key);
    if (queue) queue.push(entry);
    else this.#queues.set(key, [entry]);
    if (!this.#inFlight.has(key)) this.#ready.add(key);
    this.#pending++;
  }

  #schedule(): void {
    if (this.#pending >= this.#options.batchEventsMax) return this.#pump();
    if (this.#timer === undefined && this.#flushes < this.#options.flushesInFlightMax) {
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        this.#pump();
      }, this.#options.flushIntervalMs);
    }
  }

  #pump(): void {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    while (this.#flushes < this.#options.flushesInFlightMax && this.#ready.size > 0) {
      const batch = this.#takeBatch();
      invariant(batch.length > 0, 'a ready key must have queued records');
      this.#flushes++;
      void this.#flush(batch);
    }
  }

  /**
   * Keys oldest ready first, each key's appends whole, up to batchEventsMax
   * records: an append never straddles two commits (its caller would be told
   * Failed for records that are durable). A key whose next append does not
   * fit waits for the next batch; an append larger than the bound goes alone.
   */
  #takeBatch(): Entry[] {
    const batch: Entry[] = [];
    const max = this.#options.batchEventsMax;
    for (const key of this.#ready) {
      if (batch.length >= max) break;
      const queue = this.#queues.get(key) ?? [];
      const n = this.#wholeAppends(queue, max - batch.length, batch.length === 0);
      if (n === 0) continue;
      for (const e of queue.splice(0, n)) batch.push(e);
      if (queue.length === 0) this.#queues.delete(key);
      this.#ready.delete(key);
      invariant(!this.#inFlight.has(key), `${key} would be in two batches at once`);
      this.#inFlight.add(key);
    }
    this.#pending -= batch.length;
    return batch;
  }

  /** How many leading entries of `queue` form whole appends within `room` (or one append, if `alone`). */
  #wholeAppends(queue: readonly Entry[], room: number, alone: boolean): number {
    let n = 0;
    while (n < queue.length) {
      let end = n;
      const waiter = queue[n]?.waiter;
      while (end < queue.length && queue[end]?.waiter === waiter) end++;
      if (end > room && !(alone && n === 0)) break;
      n = end;
    }
    return n;
  }

  async #flush(batch: Entry[]): Promise<void> {
    const startedMs = performance.now();
    try {
      const rows = batch.map((e) => e.record);
      await this.#options.beforeBatch?.(rows);
      const outcome = await this.#write(rows);
      const { notWritten, fallback } = outcome;
      for (const i of outcome.executionConflicts?.keys() ?? [])
        invariant(
          notWritten.has(i),
          `row ${i} failed on the execution index but is reported written`,
        );
      this.stats.batches++;
      if (fallback) this.stats.fallbacks++;
      const flushMs = performance.now() - startedMs;
      this.stats.flushMsTotal += flushMs;
      this.#observe(batch.length, flushMs);
      this.stats.batchEventsLargest = Math.max(this.stats.batchEventsLargest, batch.length);
      batch.forEach((e, i) => {
        if (!notWritten.has(i)) return this.#succeed(e);
        const fillIds = outcome.executionConflicts?.get(i);
        if (fillIds) {
          this.stats.executionConflicts++;
          return this.#fail(e, new ExecutionConflictError(e.record.key, e.record.seq, fillIds));
        }
        this.stats.conflicts++;
        this.#fail(e, new JournalConflictError(e.record.key, e.record.seq));
      });
    } catch (error) {
      const failure = error instanceof Error ? error : new Error(String(error));
      for (const e of batch) this.#fail(e, failure);
    } finally {
      this.#landed(batch);
    }
  }

  /** Metrics only: whatever the observer does, a committed batch stays committed. */
  #observe(events: number, flushMs: number): void {
    try {
      this.#options.observeBatch?.(events, flushMs / 1000);
    } catch {
      // a failing metric is not a failed commit
    }
  }

  #succeed(entry: Entry): void {
    this.stats.events++;
    const w = entry.waiter;
    if (--w.remaining === 0 && !w.failed) w.resolve();
  }

  /** A failed record fails its append and every record of its key still queued (a clean cut). */
  #fail(entry: Entry, error: Error): void {
    const w = entry.waiter;
    w.remaining--;
    if (!w.failed) {
      w.failed = true;
      w.reject(error);
    }
    const key = entry.record.key;
    const later = this.#queues.get(key);
    if (!later) return;
    this.#queues.delete(key);
    this.#ready.delete(key);
    this.#pending -= later.length;
    for (const e of later) this.#fail(e, error);
  }

  #landed(batch: Entry[]): void {
    this.#flushes--;
    invariant(this.#flushes >= 0, 'flushes in flight went negative');
    for (const e of batch) {
      const key = e.record.key;
      if (!this.#inFlight.delete(key)) continue;
      if (this.#queues.has(key)) this.#ready.add(key);
      else this.#lastSeq.delete(key);
    }
    invariant(this.#pending >= 0, 'pending records went negative');
    if (this.#pending > 0) this.#pump();
    else if (this.#flushes === 0) for (const w of this.#idleWaiters.splice(0)) w();
  }

  /** Resolves when every queued record has been written (or failed). */
  async drain(): Promise<void> {
    if (this.#pending === 0 && this.#flushes === 0) return;
    const idle = new Promise<void>((resolve) => this.#idleWaiters.push(resolve));
    this.#pump();
    await idle;
  }

  async close(): Promise<void> {
    await this.drain();
    this.#closed = true;
  }
}

/**
 * A journal whose writes go through group commit: an engine says how one
 * batch is written (`writeBatch`) and how records are read back.
 */
export abstract class GroupCommitJournal implements Journal {
  readonly #commits: GroupCommit;

  constructor(options: GroupCommitOptions) {
    this.#commits = new GroupCommit((rows) => this.writeBatch(rows), options);
  }

  protected abstract writeBatch(rows: readonly JournalRecord[]): Promise<BatchOutcome>;
  abstract load(key: string, afterSeq: number, limit: number): Promise<StoredRecord[]>;
  abstract snapshot(key: string): Promise<SnapshotRecord | undefined>;
  abstract saveSnapshot(snapshot: Omit<SnapshotRecord, 'createdAtMs'>): Promise<void>;
  abstract execution(fillId: string): Promise<ExecutionRow | undefined>;
  abstract executionAt(blockOrderId: string, seq: number): Promise<ExecutionRow | undefined>;
  abstract fillVersionRecord(fillId: string): Promise<StoredRecord | undefined>;

  get stats(): JournalStats {
    return this.#commits.stats;
  }

  append(records: readonly JournalRecord[]): Promise<void> {
    return this.#commits.append(records);
  }

  drain(): Promise<void> {
    return this.#commits.drain();
  }

  close(): Promise<void> {
    return this.#commits.close();
  }
}
