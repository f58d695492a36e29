/**
 * Reference data through MikroORM entities: read by actors on their first
 * message, written by the simulations' seeding.
 */
import type { AccountDef } from '../actors/account/decider.ts';
import type { AllocationPolicy } from '../actors/block-order/average.ts';
import type { BlockOrderDef } from '../actors/block-order/decider.ts';
import type { ReferencePort } from '../actors/protocol.ts';
import type { Database } from './db.ts';
import { Account, AccountPosition, BlockOrder, BlockOrderTarget, Security } from './entities.ts';
import { LookupBatcher } from './lookup-batcher.ts';

export interface SeedData {
  securities: Array<{ id: string; ticker: string; lotSize: bigint }>;
  accounts: Array<{
    id: string;
    name: string;
    openingCashMinor: bigint;
    positions: Record<string, bigint>;
  }>;
  blockOrders: Array<{
    id: string;
    securityId: string;
    side: 'BUY' | 'SELL';
    tradeDate: string;
    targets: Array<{ accountId: string; quantity: bigint }>;
    /** Absent: pro-rata per fill. */
    policy?: AllocationPolicy;
  }>;
}

export class SqlReferenceData implements ReferencePort {
  readonly #db: Database;
  readonly #orders: LookupBatcher<BlockOrderDef>;
  readonly #accounts: LookupBatcher<AccountDef>;

  constructor(db: Database, keysMax = 500) {
    this.#db = db;
    this.#orders = new LookupBatcher((ids) => db.track(() => this.#loadOrders(ids)), keysMax);
    this.#accounts = new LookupBatcher((ids) => db.track(() => this.#loadAccounts(ids)), keysMax);
  }

  blockOrder(id: string): Promise<BlockOrderDef | undefined> {
    return this.#orders.get(id);
  }

  account(id: string): Promise<AccountDef | undefined> {
    return this.#accounts.get(id);
  }

  async #loadOrders(ids: string[]): Promise<Map<string, BlockOrderDef>> {
    const em = this.#db.orm.em.fork();
    const orders = await em.find(BlockOrder, { id: { $in: ids } });
    const securityIds = [...new Set(orders.map((o) => o.securityId))];
    const [securities, targets] = await Promise.all([
      em.find(Security, { id: { $in: securityIds } }),
      em.find(
        BlockOrderTarget,
        { blockOrderId: { $in: ids } },
        { orderBy: { blockOrderId: 'asc', accountId: 'asc' } },
      ),
    ]);
    const lotSizes = new Map(securities.map((s) => [s.id, s.lotSize]));
    const out = new Map<string, BlockOrderDef>();
    for (const order of orders) {
      if (order.side !== 'BUY' && order.side !== 'SELL')
        throw new Error(`block order ${order.id} has side ${order.side}`);
      const lotSize = lotSizes.get(order.securityId);
      if (lotSize === undefined)
        throw new Error(`block order ${order.id}: unknown security ${order.securityId}`);
      out.set(order.id, {
        blockOrderId: order.id,
        securityId: order.securityId,
        side: order.side,
        tradeDate: order.tradeDate,
        lotSize,
        targets: [],
        ...policyColumnsToDef(order),
      });
    }
    for (const t of targets)
      out.get(t.blockOrderId)?.targets.push({ accountId: t.accountId, quantity: t.quantity });
    return out;
  }

  async #loadAccounts(ids: string[]): Promise<Map<string, AccountDef>> {
    const em = this.#db.orm.em.fork();
    const [accounts, positions] = await Promise.all([
      em.find(Account, { id: { $in: ids } }),
      em.find(AccountPosition, { accountId: { $in: ids } }),
    ]);
    const out = new Map<string, AccountDef>();
    for (const a of accounts)
      out.set(a.id, { accountId: a.id, cashMinor: a.openingCashMinor, positions: {} });
    for (const p of positions) {
      const def = out.get(p.accountId);
      if (def) def.positions[p.securityId] = p.openingQuantity;
    }
    return out;
  }
}

/** Inserts reference data in one transaction, in chunks (bounded statement size). */
export async function seedReferenceData(
  db: Database,
  data: SeedData,
  chunkRowsMax = 1000,
): Promise<void> {
  const em = db.orm.em.fork();
  const chunks = <T>(rows: T[]): T[][] => {
    const out: T[][] = [];
    for (let i = 0; i < rows.length; i += chunkRowsMax) out.push(rows.slice(i, i + chunkRowsMax));
    return out;
  };
  await em.transactional(
    async (tx) => {
      for (const c of chunks(data.securities)) await tx.insertMany(Security, c);
      for (const c of chunks(
        data.accounts.map((a) => ({
          id: a.id,
          name: a.name,
          openingCashMinor: a.openingCashMinor,
        })),
      )) {
        await tx.insertMany(Account, c);
      }
      const positions = data.accounts.flatMap((a) =>
        Object.entries(a.positions).map(([securityId, openingQuantity]) => ({
          accountId: a.id,
          securityId,
          openingQuantity,
        })),
      );
      for (const c of chunks(positions)) await tx.insertMany(AccountPosition, c);
      for (const c of chunks(
        data.blockOrders.map(({ targets: _t, policy, ...o }) => ({
          ...o,
          ...policyColumns(policy),
        })),
      ))
        await tx.insertMany(BlockOrder, c);
      const targets = data.blockOrders.flatMap((o) =>
        o.targets.map((t) => ({
          blockOrderId: o.id,
          accountId: t.accountId,
          quantity: t.quantity,
        })),
      );
      for (const c of chunks(targets)) await tx.insertMany(BlockOrderTarget, c);
    },
    { isolationLevel: 'serializable' },
  );
  // Fresh statistics: until autovacuum gets to a bulk load, the planner takes
  // these tables for empty and reads every position to look up a few accounts
  // (measured: a 759,357-account seed settled at ~38 entries/s before, ~4x after).
  // ANALYZE runs on PostgreSQL and CockroachDB alike.
  for (const table of REFERENCE_TABLES) await db.statement(`ANALYZE ${table}`, []);
}

/** The tables a seed fills, in the order they are analysed. */
const REFERENCE_TABLES = [
  'securities',
  'accounts',
  'account_positions',
  'block_orders',
  'block_order_targets',
] as const;

/** An order's policy as its columns (a pro-rata order leaves the triggers NULL). */
function policyColumns(policy: AllocationPolicy | undefined) {
  if (!policy || policy.kind === 'PRO_RATA')
    return { allocationPolicy: 'PRO_RATA', releaseEveryFills: null, releaseEveryMarketMs: null };
  return {
    allocationPolicy: policy.kind,
    releaseEveryFills: policy.everyFills,
    releaseEveryMarketMs: policy.everyMarketMs,
  };
}

/**
 * The def's policy from the columns. An unknown policy name is kept as
 * written: the block order rejects it on open (INVALID_BLOCK_ORDER), so its
 * fills are dead-lettered with the reason instead of crashing a lookup.
 */
function policyColumnsToDef(order: {
  allocationPolicy: string;
  releaseEveryFills?: number | null;
  releaseEveryMarketMs?: number | null;
}): { policy?: AllocationPolicy } {
  if (order.allocationPolicy === 'PRO_RATA') return {};
  return {
    policy: {
      kind: order.allocationPolicy as 'AVERAGE_PRICE',
      // BIGINT columns come back as text from the driver; the order validates the value on open.
      everyFills: order.releaseEveryFills == null ? null : Number(order.releaseEveryFills),
      everyMarketMs: order.releaseEveryMarketMs == null ? null : Number(order.releaseEveryMarketMs),
    },
  };
}
