/**
 * nact's persistence-engine interface over our Journal: a thin adapter. nact
 * calls `persist` once per event, `latestSnapshot` then `events(...).reduce`
 * to recover an actor, and `takeSnapshot`. This adapter also bounds how many
 * recoveries run at once (a burst can start thousands of actors).
 */
import { invariant } from '../actors/errors.ts';
import type { Journal, JournalStats, StoredRecord } from '../persistence/journal.ts';
import { JournalGapError } from '../persistence/journal.ts';

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

export interface NactEngineOptions {
  replayPageEvents: number;
  recoveryConcurrencyMax: number;
}

/** A counting semaphore: bounds concurrent recoveries. */
class Semaphore {
  #available: number;
  #waiters: Array<() => void> = [];
  constructor(permits: number) {
    invariant(permits >= 1, 'a semaphore needs at least one permit');
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

export class NactEngine {
  readonly journal: Journal;
  readonly #options: NactEngineOptions;
  readonly #recoveries: Semaphore;
  /** Recovery permits held per key, between latestSnapshot() and the end of replay. */
  readonly #permits = new Map<string, number>();

  constructor(journal: Journal, options: NactEngineOptions) {
    this.journal = journal;
    this.#options = options;
    this.#recoveries = new Semaphore(options.recoveryConcurrencyMax);
  }

  get stats(): JournalStats {
    return this.journal.stats;
  }

  persist(event: PersistedEventLike): Promise<void> {
    return this.journal.append([
      {
        key: event.key,
        seq: event.sequenceNumber,
        eventType: event.data.eventType,
        payload: event.data.payload,
      },
    ]);
  }

  drain(): Promise<void> {
    return this.journal.drain();
  }

  close(): Promise<void> {
    return this.journal.close();
  }

  async latestSnapshot(key: string): Promise<PersistedSnapshotLike | undefined> {
    await this.#recoveries.acquire();
    this.#permits.set(key, (this.#permits.get(key) ?? 0) + 1);
    try {
      const s = await this.journal.snapshot(key);
      return s && { data: s.payload, sequenceNumber: s.seq, key: s.key, createdAt: s.createdAtMs };
    } catch (error) {
      this.releaseRecovery(key);
      throw error;
    }
  }

  /** Releases the recovery permit of `key` if it holds one (also called when a recovery crashes). */
  releaseRecovery(key: string): void {
    const held = this.#permits.get(key);
    if (held === undefined) return;
    if (held > 1) this.#permits.set(key, held - 1);
    else this.#permits.delete(key);
    this.#recoveries.release();
  }

  async takeSnapshot(snapshot: PersistedSnapshotLike): Promise<void> {
    await this.journal.saveSnapshot({
      key: snapshot.key,
      seq: snapshot.sequenceNumber,
      payload: snapshot.data,
    });
  }

  /**
   * Events of `key` after `offset`, read in pages. nact consumes them through
   * `reduce`; replay stops early when the reducer yields undefined (nact's
   * signal that the actor's supervisor stopped the recovery).
   */
  events(key: string, offset: number) {
    const pageSize = this.#options.replayPageEvents;
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
            const page = await this.journal.load(key, after, pageSize);
            for (const record of page) {
              if (record.seq !== after + 1) throw new JournalGapError(key, after + 1, record.seq);
              after = record.seq;
              acc = await reducer(acc, replayed(record), index++);
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

function replayed(record: StoredRecord): ReplayedEvent {
  return {
    data: { eventType: record.eventType, payload: record.payload },
    sequenceNumber: record.seq,
    key: record.key,
    createdAt: record.createdAtMs,
    tags: [],
    isDeleted: false,
  };
}
