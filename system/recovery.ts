/**
 * Recovery: an actor's state is its latest snapshot plus the journal after
 * it, read in pages. A burst can start thousands of actors at once, so
 * recoveries are bounded by permits.
 */
import { invariant } from '../actors/errors.ts';
import { JournalGapError, type Journal, type StoredRecord } from '../persistence/journal.ts';

/** A counting semaphore: at most `permitsMax` holders at once, the rest queue in order. */
export class Permits {
  #available: number;
  readonly #permitsMax: number;
  readonly #waiters: Array<() => void> = [];

  constructor(permitsMax: number) {
    invariant(Number.isSafeInteger(permitsMax) && permitsMax >= 1, 'at least one permit');
    this.#available = permitsMax;
    this.#permitsMax = permitsMax;
  }

  get available(): number {
    return this.#available;
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
    if (next) return next();
    this.#available++;
    invariant(this.#available <= this.#permitsMax, 'a permit was released twice');
  }

  /** Runs `work` holding a permit; the permit is released however it ends. */
  async with<T>(work: () => Promise<T>): Promise<T> {
    await this.acquire();
    try {
      return await work();
    } finally {
      this.release();
    }
  }
}

/**
 * Feeds every record of `key` after `afterSeq` to `onRecord`, in order, page
 * by page; a missing sequence number is a JournalGapError. Returns the last
 * sequence number seen.
 */
export async function replay(
  journal: Journal,
  key: string,
  afterSeq: number,
  pageEvents: number,
  onRecord: (record: StoredRecord) => void,
): Promise<number> {
  invariant(pageEvents >= 1, 'replay pages hold at least one event');
  let after = afterSeq;
  for (;;) {
    const page = await journal.load(key, after, pageEvents);
    for (const record of page) {
      if (record.seq !== after + 1) throw new JournalGapError(key, after + 1, record.seq);
      onRecord(record);
      after = record.seq;
    }
    if (page.length < pageEvents) return after;
  }
}
