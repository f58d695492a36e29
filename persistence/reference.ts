/**
 * Reference data through MikroORM entities: read by actors on their first
 * message, written by the simulations' seeding.
 */
import type { AccountDef } from '../actors/account/decider.ts';
import type { BlockOrderDef } from '../actors/block-order/decider.ts';
import type { ReferencePort } from '../actors/protocol.ts';
import type { Database } from './db.ts';
import { Account, AccountPosition, BlockOrder, BlockOrderTarget, Security } from './entities.ts';

export interface SeedData {
  securities: Array<{ id: string; ticker: string; lotSize: bigint }>;
  accounts: Array<{ id: string; name: string; openingCashMinor: bigint; positions: Record<string, bigint> }>;
  blockOrders: Array<{ id: string; securityId: string; side: 'BUY' | 'SELL'; tradeDate: string; targets: Array<{ accountId: string; quantity: bigint }> }>;
}

export class SqlReferenceData implements ReferencePort {
  readonly #db: Database;
  constructor(db: Database) {
    this.#db = db;
  }

  async blockOrder(id: string): Promise<BlockOrderDef | undefined> {
    const em = this.#db.orm.em.fork();
    const order = await em.findOne(BlockOrder, { id });
    if (!order) return undefined;
    const [security, targets] = await Promise.all([
      em.findOneOrFail(Security, { id: order.securityId }),
      em.find(BlockOrderTarget, { blockOrderId: id }, { orderBy: { accountId: 'asc' } }),
    ]);
    if (order.side !== 'BUY' && order.side !== 'SELL') throw new Error(`block order ${id} has side ${order.side}`);
    return {
      blockOrderId: order.id,
      securityId: order.securityId,
      side: order.side,
      tradeDate: order.tradeDate,
      lotSize: security.lotSize,
      targets: targets.map((t) => ({ accountId: t.accountId, quantity: t.quantity })),
    };
  }

  async account(id: string): Promise<AccountDef | undefined> {
    const em = this.#db.orm.em.fork();
    const account = await em.findOne(Account, { id });
    if (!account) return undefined;
    const positions = await em.find(AccountPosition, { accountId: id });
    return {
      accountId: account.id,
      cashMinor: account.openingCashMinor,
      positions: Object.fromEntries(positions.map((p) => [p.securityId, p.openingQuantity])),
    };
  }
}

/** Inserts reference data in one transaction, in chunks (bounded statement size). */
export async function seedReferenceData(db: Database, data: SeedData, chunkRowsMax = 1000): Promise<void> {
  const em = db.orm.em.fork();
  const chunks = <T>(rows: T[]): T[][] => {
    const out: T[][] = [];
    for (let i = 0; i < rows.length; i += chunkRowsMax) out.push(rows.slice(i, i + chunkRowsMax));
    return out;
  };
  await em.transactional(async (tx) => {
    for (const c of chunks(data.securities)) await tx.insertMany(Security, c);
    for (const c of chunks(data.accounts.map((a) => ({ id: a.id, name: a.name, openingCashMinor: a.openingCashMinor })))) {
      await tx.insertMany(Account, c);
    }
    const positions = data.accounts.flatMap((a) =>
      Object.entries(a.positions).map(([securityId, openingQuantity]) => ({ accountId: a.id, securityId, openingQuantity })),
    );
    for (const c of chunks(positions)) await tx.insertMany(AccountPosition, c);
    for (const c of chunks(data.blockOrders.map(({ targets: _t, ...o }) => o))) await tx.insertMany(BlockOrder, c);
    const targets = data.blockOrders.flatMap((o) => o.targets.map((t) => ({ blockOrderId: o.id, accountId: t.accountId, quantity: t.quantity })));
    for (const c of chunks(targets)) await tx.insertMany(BlockOrderTarget, c);
  }, { isolationLevel: 'serializable' });
}
