/**
 * The journal in memory: the same interface and guarantees as SqlJournal
 * (group commit, per-key order, conflicts, gap-free prefixes), so the actor
 * kernel's tests run in milliseconds without services. Faults can be
 * injected per batch.
 */
import { invariant } from '../actors/errors.ts';
import { GroupCommitJournal, type GroupCommitOptions } from './group-commit.ts';
import type { JournalRecord, SnapshotRecord, StoredRecord } from './journal.ts';

export interface MemoryJournalOptions extends GroupCommitOptions {
  /** Called before each batch is written; throw to fail the whole batch. */
  beforeWrite?: (rows: readonly JournalRecord[]) => void | Promise<void>;
}

export class MemoryJournal extends GroupCommitJournal {
  readonly #records = new Map<string, StoredRecord[]>();
  readonly #snapshots = new Map<string, SnapshotRecord>();
  readonly #beforeWrite: MemoryJournalOptions['beforeWrite'];
  nowMs: () => number = () => Date.now();

  constructor(options: MemoryJournalOptions) {
    super(options);
    this.#beforeWrite = options.beforeWrite;
  }

  /** Every stored record of `key` (a copy), for tests. */
  recordsOf(key: string): StoredRecord[] {
    return [...(this.#records.get(key) ?? [])];
  }

  keys(): string[] {
    return [...this.#records.keys()];
  }

  protected override async writeBatch(rows: readonly JournalRecord[]) {
    await this.#beforeWrite?.(rows);
    // Like the SQL careful path: a row that exists cuts its key at that row.
    const cut = new Map<string, number>();
    const next = new Map<string, number>();
    const notWritten = new Set<number>();
    rows.forEach((r, i) => {
      const stored = next.get(r.key) ?? (this.#records.get(r.key)?.length ?? 0) + 1;
      if (r.seq < stored || r.seq > (cut.get(r.key) ?? Infinity)) {
        cut.set(r.key, Math.min(cut.get(r.key) ?? Infinity, r.seq));
        notWritten.add(i);
        return;
      }
      // Checked before anything is stored: a batch lands whole or not at all.
      invariant(r.seq === stored, `${r.key}#${r.seq} would leave a gap after #${stored - 1}`);
      next.set(r.key, stored + 1);
    });
    rows.forEach((r, i) => {
      if (notWritten.has(i)) return;
      const stored = this.#records.get(r.key) ?? [];
      stored.push({ ...r, createdAtMs: this.nowMs() });
      this.#records.set(r.key, stored);
    });
    return { notWritten, fallback: notWritten.size > 0 };
  }

  override async load(key: string, afterSeq: number, limit: number): Promise<StoredRecord[]> {
    invariant(limit >= 1, `page of ${limit} records`);
    return (this.#records.get(key) ?? []).slice(afterSeq, afterSeq + limit);
  }

  override async snapshot(key: string): Promise<SnapshotRecord | undefined> {
    return this.#snapshots.get(key);
  }

  override async saveSnapshot(snapshot: Omit<SnapshotRecord, 'createdAtMs'>): Promise<void> {
    invariant(
      Number.isSafeInteger(snapshot.seq) && snapshot.seq >= 0,
      `snapshot of ${snapshot.key} at #${snapshot.seq}`,
    );
    const existing = this.#snapshots.get(snapshot.key);
    if (existing && existing.seq >= snapshot.seq) return;
    this.#snapshots.set(snapshot.key, { ...snapshot, createdAtMs: this.nowMs() });
  }
}
