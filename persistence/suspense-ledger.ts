/**
 * Reads of the suspense ledger (actors/ledger.ts): the lines accounts
 * refused, per block order, with how each was resolved. Written only by the
 * journal, in the commit of the account event that refused or resolved it.
 */
import { formatPrice } from '../actors/domain/money.ts';
import {
  SUSPENSE_VIEW_MAX,
  type BlockOrderSuspenseView,
  type SuspenseLineView,
} from '../actors/views.ts';
import type { Database } from './db.ts';

interface LineRow {
  block_order_id: string;
  fill_seq: string;
  account_id: string;
  security_id: string;
  side: 'BUY' | 'SELL';
  quantity: string;
  price: string;
  reason: string;
  detail: string;
  resolution: string | null;
}

interface TotalsRow {
  open_lines: string;
  open_quantity: string;
  resolved_lines: string;
  resolved_quantity: string;
}

export async function blockOrderSuspense(
  db: Database,
  blockOrderId: string,
): Promise<BlockOrderSuspenseView> {
  const from = `FROM suspense s LEFT JOIN suspense_resolutions r
    ON r.block_order_id = s.block_order_id AND r.fill_seq = s.fill_seq
   AND r.account_id = s.account_id
    WHERE s.block_order_id = $1`;
  const [totals] = await db.query<TotalsRow>(
    `SELECT count(*) FILTER (WHERE r.resolution IS NULL) AS open_lines,
            coalesce(sum(s.quantity) FILTER (WHERE r.resolution IS NULL), 0) AS open_quantity,
            count(*) FILTER (WHERE r.resolution IS NOT NULL) AS resolved_lines,
            coalesce(sum(s.quantity) FILTER (WHERE r.resolution IS NOT NULL), 0) AS resolved_quantity
     ${from}`,
    [blockOrderId],
  );
  const rows = await db.query<LineRow>(
    `SELECT s.block_order_id, s.fill_seq, s.account_id, s.security_id, s.side, s.quantity,
            s.price, s.reason, s.detail, r.resolution
     ${from}
     ORDER BY (r.resolution IS NOT NULL), s.fill_seq, s.account_id LIMIT $2`,
    [blockOrderId, SUSPENSE_VIEW_MAX],
  );
  return {
    openLines: Number(totals?.open_lines ?? 0),
    openQuantity: String(totals?.open_quantity ?? '0'),
    resolvedLines: Number(totals?.resolved_lines ?? 0),
    resolvedQuantity: String(totals?.resolved_quantity ?? '0'),
    lines: rows.map(lineView),
  };
}

function lineView(row: LineRow): SuspenseLineView {
  return {
    blockOrderId: row.block_order_id,
    fillSeq: Number(row.fill_seq),
    accountId: row.account_id,
    securityId: row.security_id,
    side: row.side,
    quantity: row.quantity,
    price: formatPrice(BigInt(row.price)),
    reason: row.reason,
    detail: row.detail,
    resolution: row.resolution,
  };
}
