/**
 * Reference data served from memory (a scenario's seed): for the kernel's
 * services-free runs and tests, where the SQL reference port is not wanted.
 */
import type { AccountDef } from '../actors/account/decider.ts';
import type { BlockOrderDef } from '../actors/block-order/decider.ts';
import type { ReferencePort } from '../actors/protocol.ts';
import type { SeedData } from '../persistence/reference.ts';

export function memoryReference(seed: SeedData): ReferencePort {
  const lotSizes = new Map(seed.securities.map((s) => [s.id, s.lotSize]));
  const orders = new Map<string, BlockOrderDef>();
  for (const o of seed.blockOrders) {
    const lotSize = lotSizes.get(o.securityId);
    if (lotSize === undefined) throw new Error(`block order ${o.id}: unknown security`);
    orders.set(o.id, {
      blockOrderId: o.id,
      securityId: o.securityId,
      side: o.side,
      tradeDate: o.tradeDate,
      lotSize,
      targets: [...o.targets].sort((a, b) => (a.accountId < b.accountId ? -1 : 1)),
    });
  }
  const accounts = new Map<string, AccountDef>(
    seed.accounts.map((a) => [
      a.id,
      { accountId: a.id, cashMinor: a.openingCashMinor, positions: { ...a.positions } },
    ]),
  );
  return {
    blockOrder: async (id) => orders.get(id),
    account: async (id) => accounts.get(id),
  };
}
