/**
 * Recovery: an actor's state is its latest snapshot plus the journal after
 * it, read in pages. (A burst can start thousands of actors at once: the host
 * bounds recoveries with Permits, system/permits.ts.)
 */
import { invariant } from '../actors/errors.ts';
import { JournalGapError, type Journal, type StoredRecord } from '../persistence/journal.ts';

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
