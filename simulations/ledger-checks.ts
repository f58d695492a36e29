/**
 * The checker's reads of the SQL ledgers beside the journal: the execution
 * index and the suspense ledger. Each must say exactly what the journals say.
 */
import { isAmendment, type Entry } from '../actors/block-order/decider.ts';
import type { Allocation } from '../actors/account/decider.ts';
import type { Database } from '../persistence/db.ts';
import { likePrefix } from '../persistence/journal.ts';

/** An entry (fill or amendment) as its journal row holds it, with that row's address. */
export interface JournaledEntry {
  entry: Entry;
  key: string;
  sequenceNr: number;
  /** An average-price entry's release key: its lines_key (null: it sets no lines). */
  releaseKey?: string | null;
}

type Check = (condition: boolean, message: () => string) => void;

interface IndexRow {
  fill_id: string;
  block_order_id: string;
  fill_seq: string;
  quantity: string;
  price: string;
  kind: string;
  amends_fill_id: string | null;
  lines_key: string | null;
  persistence_key: string;
  sequence_nr: string;
}

/** The index row's columns as the entry says they must be (an amendment: its new quantity and price, or 0). */
function expectedColumns(
  e: Entry,
  releaseKey: string | null | undefined,
): Pick<IndexRow, 'quantity' | 'price' | 'kind' | 'amends_fill_id' | 'lines_key'> {
  const linesKey = (own: string | null) => (releaseKey !== undefined ? releaseKey : own);
  if (!isAmendment(e))
    return {
      quantity: String(e.quantity),
      price: String(e.price),
      kind: 'FILL',
      amends_fill_id: null,
      lines_key: linesKey(e.fillId),
    };
  const corrected = e.kind === 'CORRECTION' ? e : { quantity: 0n, price: 0n };
  const amends = e.kind === 'CANCEL' ? null : e.fillId;
  return {
    quantity: String(corrected.quantity),
    price: String(corrected.price),
    kind: e.kind,
    amends_fill_id: amends,
    lines_key: linesKey(amends),
  };
}

/**
 * The execution index (SQL) holds exactly one row per journaled fill or
 * amendment, equal to it and naming its journal row: it is what turns a
 * re-used id into a conflict, so a missing or different row is a hole.
 */
export async function checkExecutionIndex(
  db: Database,
  idPrefix: string,
  journaled: ReadonlyMap<string, JournaledEntry>,
  check: Check,
): Promise<void> {
  const rows = await db.query<IndexRow>(
    `SELECT fill_id, block_order_id, fill_seq::text, quantity::text, price::text, kind,
            amends_fill_id, lines_key, persistence_key, sequence_nr::text
     FROM executions WHERE block_order_id LIKE $1`,
    [likePrefix(idPrefix)],
  );
  check(
    rows.length === journaled.size,
    () => `execution index has ${rows.length} rows, the journals ${journaled.size} entries`,
  );
  for (const row of rows) {
    const j = journaled.get(row.fill_id);
    const want = j ? expectedColumns(j.entry, j.releaseKey) : undefined;
    check(
      j !== undefined &&
        want !== undefined &&
        j.entry.blockOrderId === row.block_order_id &&
        BigInt(j.entry.seq) === BigInt(row.fill_seq) &&
        want.quantity === row.quantity &&
        want.price === row.price &&
        want.kind === row.kind &&
        want.amends_fill_id === row.amends_fill_id &&
        want.lines_key === row.lines_key &&
        j.key === row.persistence_key &&
        j.sequenceNr === Number(row.sequence_nr),
      () => `execution index row ${row.fill_id} differs from the journal`,
    );
  }
}

/** The suspense ledger (SQL) holds exactly the refused lines the journals say are open. */
export async function checkSuspenseLedger(
  db: Database,
  idPrefix: string,
  openSuspense: ReadonlyMap<string, Allocation>,
  check: Check,
): Promise<void> {
  const prefixPattern = likePrefix(idPrefix);
  const rows = await db.query<{ k: string; quantity: string }>(
    `SELECT s.block_order_id || '|' || s.fill_seq || '|' || s.account_id AS k, s.quantity::text
     FROM suspense s LEFT JOIN suspense_resolutions r USING (block_order_id, fill_seq, account_id)
     WHERE r.resolution IS NULL AND s.account_id LIKE $1`,
    [prefixPattern],
  );
  check(
    rows.length === openSuspense.size,
    () => `suspense ledger has ${rows.length} open lines, the journals ${openSuspense.size}`,
  );
  for (const row of rows) {
    const a = openSuspense.get(row.k);
    check(a?.quantity === BigInt(row.quantity), () => `${row.k}: suspense ledger differs`);
  }
  // A resolution of a line that was never in suspense would hide a booking.
  const [orphans] = await db.query<{ n: number }>(
    `SELECT count(*)::int AS n
     FROM suspense_resolutions r LEFT JOIN suspense s USING (block_order_id, fill_seq, account_id)
     WHERE s.account_id IS NULL AND r.account_id LIKE $1`,
    [prefixPattern],
  );
  check(orphans?.n === 0, () => `${orphans?.n} suspense resolutions without a suspense line`);
}
