/**
 * The journal in memory: the same interface and guarantees as SqlJournal
 * (group commit, per-key order, conflicts, gap-free prefixes), so the actor
 * kernel's tests run in milliseconds without services. Faults can be
 * injected per batch.
 */
import { entryIdOf } from '../actors/block-order/decider.ts';
import { invariant } from '../actors/errors.ts';
import {
  linesKeyAt,
  type ExecutionRow,
  type ResolutionRow,
  type SuspenseRow,
} from '../actors/ledger.ts';
import { GroupCommitJournal, type BatchOutcome, type GroupCommitOptions } from './group-commit.ts';
import type { JournalRecord, SnapshotRecord, StoredRecord } from './journal.ts';

/** The group-commit options: `beforeBatch` fails a whole batch when it throws. */
export type MemoryJournalOptions = GroupCommitOptions;

const atKey = (e: ExecutionRow) => `${e.blockOrderId}#${e.seq}`;

export class MemoryJournal extends GroupCommitJournal {
  readonly #records = new Map<string, StoredRecord[]>();
  readonly #snapshots = new Map<string, SnapshotRecord>();
  /** The execution index: by fill id, and by `${blockOrderId}#${seq}` (both unique). */
  readonly #executions = new Map<string, ExecutionRow>();
  readonly #executionAt = new Map<string, ExecutionRow>();
  /** Per fill id, the record that set its current lines (its allocation, or its latest amendment). */
  readonly #versions = new Map<string, { key: string; seq: number }>();
  readonly suspense: SuspenseRow[] = [];
  readonly resolutions: ResolutionRow[] = [];
  nowMs: () => number = () => Date.now();

  constructor(options: MemoryJournalOptions) {
    super(options);
  }

  /** Every stored record of `key` (a copy), for tests. */
  recordsOf(key: string): StoredRecord[] {
    return [...(this.#records.get(key) ?? [])];
  }

  keys(): string[] {
    return [...this.#records.keys()];
  }

  protected override async writeBatch(rows: readonly JournalRecord[]): Promise<BatchOutcome> {
    // Like the SQL careful path: a row that exists cuts its key at that row.
    const cut = new Map<string, number>();
    const next = new Map<string, number>();
    const notWritten = new Set<number>();
    const executionConflicts = new Map<number, string[]>();
    const claimed = new Set<string>();
    rows.forEach((r, i) => {
      const stored = next.get(r.key) ?? (this.#records.get(r.key)?.length ?? 0) + 1;
      if (r.seq < stored || r.seq > (cut.get(r.key) ?? Infinity)) {
        cut.set(r.key, Math.min(cut.get(r.key) ?? Infinity, r.seq));
        notWritten.add(i);
        return;
      }
      // Checked before anything is stored: a batch lands whole or not at all.
      invariant(r.seq === stored, `${r.key}#${r.seq} would leave a gap after #${stored - 1}`);
      const lost = this.#unclaimable(r, claimed);
      if (lost.length > 0) {
        cut.set(r.key, r.seq);
        notWritten.add(i);
        executionConflicts.set(i, lost);
        return;
      }
      for (const e of r.ledger?.executions ?? []) claimed.add(entryIdOf(e)).add(atKey(e));
      next.set(r.key, stored + 1);
    });
    rows.forEach((r, i) => {
      if (!notWritten.has(i)) this.#store(r);
    });
    return { notWritten, fallback: notWritten.size > 0, executionConflicts };
  }

  /** The fill ids of `r` that another execution (stored, or earlier in this batch) claimed. */
  #unclaimable(r: JournalRecord, claimed: ReadonlySet<string>): string[] {
    return (r.ledger?.executions ?? [])
      .filter(
        (e) =>
          this.#executions.has(entryIdOf(e)) ||
          this.#executionAt.has(atKey(e)) ||
          claimed.has(entryIdOf(e)) ||
          claimed.has(atKey(e)),
      )
      .map((e) => entryIdOf(e));
  }

  #store(r: JournalRecord): void {
    const { ledger, ...record } = r;
    const stored = this.#records.get(r.key) ?? [];
    stored.push({ ...record, createdAtMs: this.nowMs() });
    this.#records.set(r.key, stored);
    (ledger?.executions ?? []).forEach((e, i) => {
      this.#executions.set(entryIdOf(e), e);
      this.#executionAt.set(atKey(e), e);
      const key = linesKeyAt(ledger!, i);
      if (key !== null) this.#versions.set(key, { key: r.key, seq: r.seq });
    });
    this.suspense.push(...(ledger?.suspense ?? []));
    this.resolutions.push(...(ledger?.resolutions ?? []));
  }

  override async execution(fillId: string): Promise<ExecutionRow | undefined> {
    return this.#executions.get(fillId);
  }

  override async executionAt(blockOrderId: string, seq: number): Promise<ExecutionRow | undefined> {
    return this.#executionAt.get(`${blockOrderId}#${seq}`);
  }

  override async fillVersionRecord(fillId: string): Promise<StoredRecord | undefined> {
    const at = this.#versions.get(fillId);
    return at ? this.#records.get(at.key)?.[at.seq - 1] : undefined;
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
