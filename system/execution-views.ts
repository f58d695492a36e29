/**
 * The executions read model (api/ports.ts ExecutionsPort): order lists and
 * status from the live actors over the reference data, a fill's versions and
 * lines from the execution index and the journal rows it names, and the
 * intake that publishes JSON executions to JetStream.
 */
import { BLOCK_ORDER_KIND } from '../actors/block-order/shell.ts';
import type { BlockOrderEvent } from '../actors/block-order/decider.ts';
import { formatPrice } from '../actors/domain/money.ts';
import { assertNever, invariant } from '../actors/errors.ts';
import type { BlockOrderView } from '../actors/views.ts';
import type {
  BlockOrderListPage,
  BlockOrderListQuery,
  BlockOrderSummary,
  ExecutionsPort,
  FillDetailsView,
  FillLineView,
  FillVersionView,
  OrderExecutionStatus,
} from '../api/ports.ts';
import { decodeVersioned } from '../persistence/codec.ts';
import type { Database } from '../persistence/db.ts';
import {
  blockOrderRef,
  blockOrderRefs,
  executionHistory,
  journalRow,
  lastActivity,
  type ExecutionVersionRow,
} from '../persistence/queries.ts';
import { intake, type IntakeDeps } from './intake.ts';

export interface ExecutionViewsDeps {
  db: Database;
  /** The live view (undefined: no such order). */
  blockOrderView: (id: string) => Promise<BlockOrderView | undefined>;
}

/** Reference rows one list request reads, at most, while a status filter skips orders. */
const LIST_SCAN_MAX = 500;
/** Live views asked at once by a list. */
const LIST_ASKS_MAX = 16;

const iso = (ms: number) => new Date(ms).toISOString();

function summaryOf(view: BlockOrderView): BlockOrderSummary {
  const remaining = BigInt(view.targetQuantity) - BigInt(view.filledQuantity);
  return {
    blockOrderId: view.blockOrderId,
    securityId: view.securityId,
    side: view.side,
    tradeDate: view.tradeDate,
    status: view.status,
    targetQuantity: view.targetQuantity,
    filledQuantity: view.filledQuantity,
    remainingQuantity: (remaining > 0n ? remaining : 0n).toString(),
    vwapPrice: view.vwapPrice,
  };
}

/** Asks `ids`' live views, LIST_ASKS_MAX at a time, in order. */
async function viewsOf(deps: ExecutionViewsDeps, ids: readonly string[]) {
  const out: Array<BlockOrderView | undefined> = [];
  for (let i = 0; i < ids.length; i += LIST_ASKS_MAX) {
    const chunk = ids.slice(i, i + LIST_ASKS_MAX);
    out.push(...(await Promise.all(chunk.map((id) => deps.blockOrderView(id)))));
  }
  return out;
}

/**
 * Keyset over the reference data in SQL (security, trade date, side); the
 * status is the live actor's, so a status filter scans at most LIST_SCAN_MAX
 * orders per request and the page may hold fewer than `limit`.
 */
export async function listBlockOrders(
  deps: ExecutionViewsDeps,
  query: BlockOrderListQuery,
): Promise<BlockOrderListPage> {
  invariant(query.limit >= 1 && query.limit <= LIST_SCAN_MAX, `a page of ${query.limit}`);
  const items: BlockOrderSummary[] = [];
  let afterId = query.afterId;
  let scanned = 0;
  while (items.length < query.limit && scanned < LIST_SCAN_MAX) {
    const want = query.status === undefined ? query.limit - items.length : query.limit;
    const refs = await blockOrderRefs(deps.db, { ...query, afterId, limit: want });
    const views = await viewsOf(
      deps,
      refs.map((r) => r.id),
    );
    for (const [i, ref] of refs.entries()) {
      if (items.length === query.limit) break;
      afterId = ref.id;
      scanned++;
      const view = views[i];
      if (view === undefined || (query.status !== undefined && view.status !== query.status))
        continue;
      items.push(summaryOf(view));
    }
    // The end only when this read came up short and every row of it was taken.
    if (refs.length < want && afterId === (refs.at(-1)?.id ?? afterId))
      return { items, lastScannedId: null };
  }
  return { items, lastScannedId: afterId };
}

export async function orderStatus(
  deps: ExecutionViewsDeps,
  orderId: string,
): Promise<OrderExecutionStatus | undefined> {
  const view = await deps.blockOrderView(orderId);
  if (view === undefined) return undefined;
  const activity = await lastActivity(deps.db, `${BLOCK_ORDER_KIND}-${orderId}`, orderId);
  const { blockOrderId: _id, ...summary } = summaryOf(view);
  return {
    orderId,
    ...summary,
    fills: view.fills,
    busts: view.busts,
    corrections: view.corrections,
    cancelledQuantity: view.cancelledQuantity,
    lastUpdate: activity ? iso(activity.journaledAtMs) : null,
    lastExecutionAt: activity?.executedAtMs == null ? null : iso(activity.executedAtMs),
  };
}

const plainLines = (
  lines: ReadonlyArray<{ accountId: string; quantity: bigint }>,
): FillLineView[] =>
  lines.map((l) => ({ accountId: l.accountId, quantity: l.quantity.toString() }));

const amendLines = (
  lines: ReadonlyArray<{ accountId: string; quantity: bigint; previousQuantity: bigint }>,
): FillLineView[] =>
  lines.map((l) => ({
    accountId: l.accountId,
    quantity: l.quantity.toString(),
    previousQuantity: l.previousQuantity.toString(),
  }));

/** The lines an order's event set for a fill, and the release it fired or changed. */
function linesOfEvent(event: BlockOrderEvent): {
  lines: FillLineView[];
  releaseKey: string | null;
} {
  switch (event.type) {
    case 'FillAllocated':
      return { lines: plainLines(event.lines), releaseKey: null };
    case 'FillBusted':
    case 'FillCorrected':
      return { lines: amendLines(event.lines), releaseKey: null };
    case 'FillAccumulated':
      return event.release
        ? { lines: plainLines(event.release.lines), releaseKey: event.release.key }
        : { lines: [], releaseKey: null };
    case 'AveragedFillAmended':
      if (event.change)
        return { lines: amendLines(event.change.lines), releaseKey: event.change.key };
      return event.release
        ? { lines: plainLines(event.release.lines), releaseKey: event.release.key }
        : { lines: [], releaseKey: null };
    case 'OrderCancelled':
    case 'BlockOrderOpened':
    case 'AllocationsConfirmed':
      return { lines: [], releaseKey: null };
    default:
      return assertNever(event, 'block order event');
  }
}

async function versionView(deps: ExecutionViewsDeps, row: ExecutionVersionRow) {
  const stored = await journalRow(deps.db, row.persistenceKey, row.sequenceNr);
  invariant(
    stored !== undefined,
    `${row.fillId}: journal row ${row.persistenceKey}#${row.sequenceNr} is missing`,
  );
  const event = decodeVersioned(stored.payload, `${row.persistenceKey}#${row.sequenceNr}`);
  const { lines, releaseKey } = linesOfEvent(event as BlockOrderEvent);
  const priced = row.kind === 'FILL' || row.kind === 'CORRECTION';
  const version: FillVersionView = {
    seq: row.seq,
    kind: row.kind,
    entryId: row.fillId,
    quantity: priced ? row.quantity.toString() : null,
    price: priced ? formatPrice(row.price) : null,
    executedAt: iso(row.executedAtMs),
    journaledAt: iso(row.createdAtMs),
    lines,
    releaseKey,
  };
  return version;
}

/** A fill (or an amendment's id: its own entry), its versions and its current lines. */
export async function fillDetails(
  deps: ExecutionViewsDeps,
  fillId: string,
): Promise<FillDetailsView | undefined> {
  const rows = await executionHistory(deps.db, fillId);
  const first = rows[0];
  if (first === undefined) return undefined;
  const history: FillVersionView[] = [];
  for (const row of rows) history.push(await versionView(deps, row));
  const latest = rows.at(-1) ?? first;
  const busted = latest.kind === 'BUST';
  const priced =
    [...rows].reverse().find((r) => r.kind === 'FILL' || r.kind === 'CORRECTION') ?? first;
  // From the reference data: reading a fill does not wake its order's actor.
  const ref = await blockOrderRef(deps.db, first.blockOrderId);
  const withLines = [...history].reverse().find((v) => v.lines.length > 0);
  return {
    fillId,
    blockOrderId: first.blockOrderId,
    securityId: ref?.securityId ?? null,
    side: ref?.side ?? null,
    venue: first.venue,
    executedAt: iso(first.executedAtMs),
    current: {
      quantity: busted ? '0' : priced.quantity.toString(),
      price: formatPrice(priced.price),
      busted,
    },
    lines: (withLines?.lines ?? []).map((l) => ({ accountId: l.accountId, quantity: l.quantity })),
    history,
  };
}

export interface ExecutionsDeps extends ExecutionViewsDeps {
  intake: IntakeDeps;
  report: ExecutionsPort['report'];
}

export function executionsAdapter(deps: ExecutionsDeps): ExecutionsPort {
  return {
    listBlockOrders: (query) => listBlockOrders(deps, query),
    orderStatus: (orderId) => orderStatus(deps, orderId),
    fill: (fillId) => fillDetails(deps, fillId),
    report: deps.report,
    intake: (items) => intake(deps.intake, items),
  };
}
