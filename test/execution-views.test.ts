/** The block-order list's keyset over a status filter, on a fake database and fake views. No services. */
import t from 'tap';
import type { BlockOrderView } from '../actors/views.ts';
import type { Database } from '../persistence/db.ts';
import { listBlockOrders } from '../system/execution-views.ts';

const IDS = ['A', 'B', 'C', 'D', 'E', 'F', 'G'];
const STATUS: Record<string, string> = {
  A: 'NEW',
  B: 'NEW',
  C: 'FILLED',
  D: 'NEW',
  E: 'NEW',
  F: 'FILLED',
  G: 'NEW',
};

/** block_orders by id after $1, LIMIT last param: what blockOrderRefs asks. */
const db = {
  query: async (_sql: string, params: unknown[]) => {
    const after = String(params[0]);
    const limit = Number(params.at(-1));
    return IDS.filter((id) => id > after)
      .slice(0, limit)
      .map((id) => ({ id, security_id: 'S', side: 'BUY', trade_date: '2026-11-24' }));
  },
} as unknown as Database;

const view = async (id: string) =>
  ({
    blockOrderId: id,
    securityId: 'S',
    side: 'BUY',
    tradeDate: '2026-11-24',
    status: STATUS[id],
    targetQuantity: '10',
    filledQuantity: '0',
    vwapPrice: null,
  }) as unknown as BlockOrderView;

async function all(status: string | undefined, limit: number) {
  const pages: string[][] = [];
  let afterId = '';
  for (let i = 0; i < 20; i++) {
    const page = await listBlockOrders(
      { db, blockOrderView: view },
      { ...(status ? { status } : {}), afterId, limit },
    );
    pages.push(page.items.map((o) => o.blockOrderId));
    if (page.lastScannedId === null) return pages;
    afterId = page.lastScannedId;
  }
  throw new Error('the list never ended');
}

t.test(
  'following the cursor yields every matching order once, whatever the page size',
  async (t) => {
    for (const limit of [1, 2, 3, 4, 10]) {
      t.same((await all('NEW', limit)).flat(), ['A', 'B', 'D', 'E', 'G'], `NEW, limit ${limit}`);
      t.same((await all(undefined, limit)).flat(), IDS, `all, limit ${limit}`);
      t.ok(
        (await all('NEW', limit)).every((p) => p.length <= limit),
        'no page over its limit',
      );
    }
    t.same(await all('CANCELLED', 3), [[]], 'none: one empty page, then the end');
  },
);
