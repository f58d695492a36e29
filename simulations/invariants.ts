/**
 * Exact checks of the books after a run, from the journal (decoded
 * independently of the actors) and from the live actors through the API.
 */
import type { FastifyInstance } from 'fastify';
import { lineEvents, type AccountEvent, type Allocation } from '../actors/account/decider.ts';
import type { BlockOrderEvent, Fill } from '../actors/block-order/decider.ts';
import { cashDelta } from '../actors/domain/money.ts';
import type { AccountView, BlockOrderView } from '../actors/views.ts';
import { decodeVersioned } from '../persistence/codec.ts';
import type { Database } from '../persistence/db.ts';
import type { SeedData } from '../persistence/reference.ts';

export interface InvariantReport {
  ok: boolean;
  checks: number;
  violations: string[];
  fills: number;
  allocationLines: number;
  /** Account journal rows that carry lines (a batch row carries several). */
  accountEvents: number;
  /** Lines applied or rejected on accounts, counted from the journal. */
  allocationLinesApplied: number;
  rejectedAllocations: number;
  /** Refused lines still in suspense at the end (shares that sit on no account). */
  suspenseOpenLines: number;
  suspenseOpenQuantity: bigint;
}

interface JournalRow {
  persistence_key: string;
  sequence_nr: string;
  payload: Buffer;
}

export async function* readJournal(
  db: Database,
  prefix: string,
  pageRows = 20_000,
): AsyncGenerator<{ key: string; seq: number; event: unknown }> {
  let key = prefix;
  let seq = 0;
  for (;;) {
    const rows = await db.query<JournalRow>(
      `SELECT persistence_key, sequence_nr, payload FROM journal
       WHERE (persistence_key, sequence_nr) > ($1, $2) AND persistence_key LIKE $3
       ORDER BY persistence_key, sequence_nr LIMIT $4`,
      [key, seq, `${prefix}%`, pageRows],
    );
    for (const r of rows)
      yield {
        key: r.persistence_key,
        seq: Number(r.sequence_nr),
        event: decodeVersioned(r.payload, r.persistence_key),
      };
    const last = rows.at(-1);
    if (!last || rows.length < pageRows) return;
    key = last.persistence_key;
    seq = Number(last.sequence_nr);
  }
}

export async function checkInvariants(args: {
  db: Database;
  app: FastifyInstance;
  seed: SeedData;
  fillsByOrder: Map<string, Fill[]>;
  /** Ids in this run (a shared database may hold other runs). */
  idPrefix: string;
}): Promise<InvariantReport> {
  const { db, app, seed, fillsByOrder } = args;
  const violations: string[] = [];
  let checks = 0;
  const check = (condition: boolean, message: () => string) => {
    checks++;
    if (!condition && violations.length < 50) violations.push(message());
  };

  const orders = new Map(seed.blockOrders.map((o) => [o.id, o]));
  const lotOf = new Map(seed.securities.map((s) => [s.id, s.lotSize]));
  // Expected per-account deltas, derived from the block orders' journals.
  const expectedLines = new Map<
    string,
    {
      blockOrderId: string;
      seq: number;
      accountId: string;
      quantity: bigint;
      price: bigint;
      side: 'BUY' | 'SELL';
      securityId: string;
    }
  >();
  let fills = 0;
  let allocationLines = 0;

  const allocatedByOrder = new Map<string, Map<string, bigint>>();
  const journaledFills = new Map<string, JournaledFill>();
  for await (const { key, seq, event } of readJournal(db, `block-order-${args.idPrefix}`)) {
    const e = event as BlockOrderEvent;
    const id = key.slice('block-order-'.length);
    const order = orders.get(id);
    if (!order) continue;
    if (e.type !== 'FillAllocated') continue;
    fills++;
    check(!journaledFills.has(e.fill.fillId), () => `fill id ${e.fill.fillId}: allocated twice`);
    journaledFills.set(e.fill.fillId, { fill: e.fill, key, sequenceNr: seq });
    const published = fillsByOrder.get(id)?.[e.fill.seq - 1];
    check(
      published !== undefined &&
        published.fillId === e.fill.fillId &&
        published.quantity === e.fill.quantity &&
        published.price === e.fill.price,
      () => `${id} seq ${e.fill.seq}: journaled fill differs from the published one`,
    );
    const sum = e.lines.reduce((s, l) => s + l.quantity, 0n);
    check(
      sum === e.fill.quantity,
      () => `${id} seq ${e.fill.seq}: lines sum to ${sum}, fill is ${e.fill.quantity}`,
    );
    const allocated = allocatedByOrder.get(id) ?? new Map<string, bigint>();
    allocatedByOrder.set(id, allocated);
    for (const l of e.lines) {
      allocationLines++;
      check(l.quantity > 0n, () => `${id} seq ${e.fill.seq}: non-positive line for ${l.accountId}`);
      allocated.set(l.accountId, (allocated.get(l.accountId) ?? 0n) + l.quantity);
      const lineKey = `${id}|${e.fill.seq}|${l.accountId}`;
      check(!expectedLines.has(lineKey), () => `${lineKey}: allocated twice`);
      expectedLines.set(lineKey, {
        blockOrderId: id,
        seq: e.fill.seq,
        accountId: l.accountId,
        quantity: l.quantity,
        price: e.fill.price,
        side: order.side,
        securityId: order.securityId,
      });
    }
  }

  for (const order of seed.blockOrders) {
    const published = fillsByOrder.get(order.id) ?? [];
    const publishedQty = published.reduce((s, f) => s + f.quantity, 0n);
    const allocated = allocatedByOrder.get(order.id) ?? new Map<string, bigint>();
    const allocatedQty = [...allocated.values()].reduce((s, q) => s + q, 0n);
    check(
      allocatedQty === publishedQty,
      () => `${order.id}: allocated ${allocatedQty}, fills total ${publishedQty}`,
    );
    for (const t of order.targets) {
      check(
        (allocated.get(t.accountId) ?? 0n) <= t.quantity,
        () => `${order.id}: ${t.accountId} allocated beyond its target`,
      );
    }
    const lot = lotOf.get(order.securityId) ?? 1n;
    check(lot > 0n, () => `${order.id}: no lot size`);
  }

  // Accounts: every expected line applied exactly once (or durably rejected), nothing else.
  const applied = new Set<string>();
  const deltas = new Map<string, { cash: bigint; positions: Map<string, bigint> }>();
  let accountEvents = 0;
  let allocationLinesApplied = 0;
  let rejectedAllocations = 0;
  // Per order: quantity applied on accounts, and quantity refused (suspense).
  const appliedByOrder = new Map<string, bigint>();
  const suspendedByOrder = new Map<string, bigint>();
  const addTo = (m: Map<string, bigint>, k: string, q: bigint) => m.set(k, (m.get(k) ?? 0n) + q);
  const applyDelta = (accountId: string, a: Allocation) => {
    const d = deltas.get(accountId) ?? { cash: 0n, positions: new Map<string, bigint>() };
    deltas.set(accountId, d);
    d.cash += cashDelta(a.side, a.quantity, a.price);
    const signed = a.side === 'BUY' ? a.quantity : -a.quantity;
    d.positions.set(a.securityId, (d.positions.get(a.securityId) ?? 0n) + signed);
  };
  const openSuspense = new Map<string, Allocation>();
  for await (const { key, event } of readJournal(db, `account-${args.idPrefix}`)) {
    const accountId = key.slice('account-'.length);
    const accountEvent = event as AccountEvent;
    if (accountEvent.type === 'SuspenseApplied') {
      const a = accountEvent.allocation;
      const lineKey = `${a.blockOrderId}|${a.fillSeq}|${accountId}`;
      check(openSuspense.delete(lineKey), () => `${lineKey}: resolved but not in suspense`);
      addTo(suspendedByOrder, a.blockOrderId, -a.quantity);
      addTo(appliedByOrder, a.blockOrderId, a.quantity);
      applyDelta(accountId, a);
      continue;
    }
    const lines = lineEvents(accountEvent);
    if (lines.length > 0) accountEvents++;
    for (const e of lines) {
      allocationLinesApplied++;
      const a = e.allocation;
      const lineKey = `${a.blockOrderId}|${a.fillSeq}|${accountId}`;
      check(!applied.has(lineKey), () => `${lineKey}: applied twice`);
      applied.add(lineKey);
      const expected = expectedLines.get(lineKey);
      check(
        expected !== undefined && expected.quantity === a.quantity && expected.price === a.price,
        () => `${lineKey}: applied allocation matches no allocated line`,
      );
      if (e.type === 'AllocationRejected') {
        rejectedAllocations++;
        openSuspense.set(lineKey, a);
        addTo(suspendedByOrder, a.blockOrderId, a.quantity);
        continue;
      }
      addTo(appliedByOrder, a.blockOrderId, a.quantity);
      applyDelta(accountId, a);
    }
  }
  for (const lineKey of expectedLines.keys())
    check(applied.has(lineKey), () => `${lineKey}: allocated but never applied`);
  // Nothing booked nowhere: per order, fills = lines applied on accounts + suspense.
  for (const order of seed.blockOrders) {
    const filled = (fillsByOrder.get(order.id) ?? []).reduce((s, f) => s + f.quantity, 0n);
    const onAccounts = appliedByOrder.get(order.id) ?? 0n;
    const suspended = suspendedByOrder.get(order.id) ?? 0n;
    check(
      filled === onAccounts + suspended,
      () => `${order.id}: filled ${filled} ≠ applied ${onAccounts} + suspense ${suspended}`,
    );
  }
  await checkSuspenseLedger(db, args.idPrefix, openSuspense, check);
  await checkExecutionIndex(db, args.idPrefix, journaledFills, check);

  // The live actors, through the API, agree with the journal-derived books.
  const concurrency = 64;
  const accountsToCheck = seed.accounts;
  for (let i = 0; i < accountsToCheck.length; i += concurrency) {
    await Promise.all(
      accountsToCheck.slice(i, i + concurrency).map(async (account) => {
        const res = await app.inject({ method: 'GET', url: `/accounts/${account.id}` });
        check(res.statusCode === 200, () => `GET /accounts/${account.id}: ${res.statusCode}`);
        if (res.statusCode !== 200) return;
        const view = res.json<AccountView>();
        const d = deltas.get(account.id);
        const expectedCash = account.openingCashMinor + (d?.cash ?? 0n);
        check(
          BigInt(view.cashMinor) === expectedCash,
          () => `${account.id}: cash ${view.cashMinor}, expected ${expectedCash}`,
        );
        const securities = new Set([
          ...Object.keys(account.positions),
          ...(d ? d.positions.keys() : []),
        ]);
        for (const s of securities) {
          const expected = (account.positions[s] ?? 0n) + (d?.positions.get(s) ?? 0n);
          check(
            BigInt(view.positions[s] ?? '0') === expected,
            () => `${account.id}: position in ${s} is ${view.positions[s]}, expected ${expected}`,
          );
          check(expected >= 0n, () => `${account.id}: negative position in ${s}`);
        }
      }),
    );
  }
  for (let i = 0; i < seed.blockOrders.length; i += concurrency) {
    await Promise.all(
      seed.blockOrders.slice(i, i + concurrency).map(async (order) => {
        const res = await app.inject({ method: 'GET', url: `/block-orders/${order.id}` });
        check(res.statusCode === 200, () => `GET /block-orders/${order.id}: ${res.statusCode}`);
        if (res.statusCode !== 200) return;
        const view = res.json<BlockOrderView>();
        const published = fillsByOrder.get(order.id) ?? [];
        const publishedQty = published.reduce((s, f) => s + f.quantity, 0n);
        check(
          BigInt(view.filledQuantity) === publishedQty,
          () => `${order.id}: API filled ${view.filledQuantity}, published ${publishedQty}`,
        );
        check(
          view.fills === published.length,
          () => `${order.id}: API shows ${view.fills} fills, published ${published.length}`,
        );
        check(
          view.unconfirmedLines === 0 && view.confirmedThroughSeq === view.lastFillSeq,
          () => `${order.id}: ${view.unconfirmedLines} lines unconfirmed`,
        );
        const suspended = suspendedByOrder.get(order.id) ?? 0n;
        check(
          BigInt(view.suspense.openQuantity) === suspended,
          () => `${order.id}: API suspense ${view.suspense.openQuantity}, journals ${suspended}`,
        );
        const allocated = allocatedByOrder.get(order.id) ?? new Map<string, bigint>();
        for (const a of view.accounts) {
          check(
            BigInt(a.allocatedQuantity) === (allocated.get(a.accountId) ?? 0n),
            () => `${order.id}: API allocation of ${a.accountId} differs from the journal`,
          );
        }
      }),
    );
  }
  return {
    ok: violations.length === 0,
    checks,
    violations,
    fills,
    allocationLines,
    accountEvents,
    allocationLinesApplied,
    rejectedAllocations,
    suspenseOpenLines: openSuspense.size,
    suspenseOpenQuantity: [...openSuspense.values()].reduce((s, a) => s + a.quantity, 0n),
  };
}

/** A fill as its FillAllocated journal row holds it, with that row's address. */
interface JournaledFill {
  fill: Fill;
  key: string;
  sequenceNr: number;
}

/**
 * The execution index (SQL) holds exactly one row per allocated fill, equal
 * to the journaled fill and naming its journal row: it is what turns a
 * re-used fill id into a conflict, so a missing or different row is a hole.
 */
async function checkExecutionIndex(
  db: Database,
  idPrefix: string,
  journaled: ReadonlyMap<string, JournaledFill>,
  check: (condition: boolean, message: () => string) => void,
): Promise<void> {
  const rows = await db.query<{
    fill_id: string;
    block_order_id: string;
    fill_seq: string;
    quantity: string;
    price: string;
    persistence_key: string;
    sequence_nr: string;
  }>(
    `SELECT fill_id, block_order_id, fill_seq::text, quantity::text, price::text,
            persistence_key, sequence_nr::text
     FROM executions WHERE block_order_id LIKE $1`,
    [likePrefix(idPrefix)],
  );
  check(
    rows.length === journaled.size,
    () => `execution index has ${rows.length} rows, the journals ${journaled.size} fills`,
  );
  for (const row of rows) {
    const j = journaled.get(row.fill_id);
    check(
      j !== undefined &&
        j.fill.blockOrderId === row.block_order_id &&
        BigInt(j.fill.seq) === BigInt(row.fill_seq) &&
        j.fill.quantity === BigInt(row.quantity) &&
        j.fill.price === BigInt(row.price) &&
        j.key === row.persistence_key &&
        j.sequenceNr === Number(row.sequence_nr),
      () => `execution index row ${row.fill_id} differs from the journal`,
    );
  }
}

/** A LIKE pattern for ids that start with `idPrefix` (its wildcards escaped). */
const likePrefix = (idPrefix: string): string => `${idPrefix.replace(/[\\%_]/g, '\\$&')}%`;

/** The suspense ledger (SQL) holds exactly the refused lines the journals say are open. */
async function checkSuspenseLedger(
  db: Database,
  idPrefix: string,
  openSuspense: ReadonlyMap<string, Allocation>,
  check: (condition: boolean, message: () => string) => void,
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
