/**
 * The journal's public face: the interface every engine implements (SQL for
 * PostgreSQL and CockroachDB, in-memory for the kernel's fast tests), its
 * records and its errors. The actor runtime sees only this.
 *
 * Guarantees every implementation gives:
 * - `append` resolves only once its records are durable;
 * - per key, records commit in sequence order and the stored journal of a
 *   key is always a gap-free prefix of what its writer appended;
 * - a record whose (key, seq) already exists is never overwritten: its append
 *   rejects with JournalConflictError (two writers for one actor), and so do
 *   that key's later records of the same writer.
 */
import { BlockfillError, ErrorCode } from '../actors/errors.ts';
import type { ExecutionRow, LedgerRows } from '../actors/ledger.ts';
import type { Database } from './db.ts';

export interface JournalRecord {
  key: string;
  /** 1, 2, 3 ... per key. */
  seq: number;
  eventType: string;
  payload: Uint8Array;
  /** Written in the same commit (the execution index, the suspense ledger). */
  ledger?: LedgerRows;
}

export interface StoredRecord extends Omit<JournalRecord, 'ledger'> {
  createdAtMs: number;
}

export interface SnapshotRecord {
  key: string;
  /** The snapshot holds the state after this record. */
  seq: number;
  payload: Uint8Array;
  createdAtMs: number;
}

export interface JournalStats {
  /** Records made durable. */
  events: number;
  /** Commits (one per flushed batch). */
  batches: number;
  batchEventsLargest: number;
  conflicts: number;
  /** Sum over batches of the time from sending the write to its commit. */
  flushMsTotal: number;
  /** Batches that met a key conflict on the fast path and were redone on the careful one. */
  fallbacks: number;
  /** Records not written because a ledger row (a fill id) was already claimed. */
  executionConflicts: number;
}

export const emptyJournalStats = (): JournalStats => ({
  events: 0,
  batches: 0,
  batchEventsLargest: 0,
  conflicts: 0,
  flushMsTotal: 0,
  fallbacks: 0,
  executionConflicts: 0,
});

export interface Journal {
  /**
   * Appends records of one or more keys; each key's records must be
   * consecutive. Resolves once all are durable; rejects (for all of them) if
   * any of them failed.
   */
  append(records: readonly JournalRecord[]): Promise<void>;
  /** Up to `limit` records of `key` with seq > `afterSeq`, in order. */
  load(key: string, afterSeq: number, limit: number): Promise<StoredRecord[]>;
  snapshot(key: string): Promise<SnapshotRecord | undefined>;
  /** Stores a snapshot unless a newer one exists. */
  saveSnapshot(snapshot: Omit<SnapshotRecord, 'createdAtMs'>): Promise<void>;
  /** The execution index (ledger.ts): the execution that claimed `fillId`, if any. */
  execution(fillId: string): Promise<ExecutionRow | undefined>;
  /** The execution applied as `seq` of `blockOrderId`, if any. */
  executionAt(blockOrderId: string, seq: number): Promise<ExecutionRow | undefined>;
  /** The journal record that set fill `fillId`'s current lines (its allocation, or its latest bust or correction). */
  fillVersionRecord(fillId: string): Promise<StoredRecord | undefined>;
  /** Resolves when every appended record has been written (or failed). */
  drain(): Promise<void>;
  close(): Promise<void>;
  readonly stats: JournalStats;
}

export class JournalConflictError extends BlockfillError {
  constructor(key: string, sequenceNr: number) {
    super(
      ErrorCode.JournalConflict,
      `journal already holds ${key}#${sequenceNr}: another writer owns this actor`,
    );
    this.name = 'JournalConflictError';
  }
}

/**
 * A record's ledger row collides with one already stored (a fill id claimed
 * by another execution): the record and its key's later records are not
 * written, like a journal conflict. The input's fault, not the actor's.
 */
export class ExecutionConflictError extends BlockfillError {
  readonly fillIds: readonly string[];
  constructor(key: string, sequenceNr: number, fillIds: readonly string[]) {
    super(
      ErrorCode.ExecutionConflict,
      `${key}#${sequenceNr} not written: fill id ${fillIds.join(', ')} is already claimed by another execution`,
    );
    this.name = 'ExecutionConflictError';
    this.fillIds = fillIds;
  }
}

export class JournalOverloadedError extends BlockfillError {
  constructor(pendingEventsMax: number) {
    super(
      ErrorCode.JournalOverloaded,
      `journal has ${pendingEventsMax} events waiting to be written (its bound)`,
    );
    this.name = 'JournalOverloadedError';
  }
}

export class JournalGapError extends BlockfillError {
  constructor(key: string, expected: number, found: number) {
    super(ErrorCode.JournalGap, `journal of ${key} jumps from #${expected - 1} to #${found}`);
    this.name = 'JournalGapError';
  }
}

export class JournalClosedError extends BlockfillError {
  constructor() {
    super(ErrorCode.JournalClosed, 'journal is closed');
    this.name = 'JournalClosedError';
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
    [likePrefix(keyPrefix), [...eventTypes]],
  );
  return rows.map((r) => r.persistence_key);
}

/** A LIKE pattern for text that starts with `prefix` (its wildcards escaped). */
export const likePrefix = (prefix: string): string => `${prefix.replace(/[\\%_]/g, '\\$&')}%`;
