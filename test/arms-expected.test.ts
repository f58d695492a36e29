/**
 * The comparison arms' reference books, services-free: a tiny scenario whose
 * final books are worked out by hand, compareBooks' exactness (one cent, one
 * share, one line), its cap, and the pure helpers (prefix, percentiles).
 */
import t from 'tap';
import type { Fill } from '../actors/block-order/decider.ts';
import { defaultScenario, generateScenario, type Scenario } from '../simulations/scenario.ts';
import { percentiles } from '../simulations/arms/common.ts';
import {
  compareBooks,
  expectedBooks,
  VIOLATIONS_MAX,
  type AccountBook,
  type Books,
} from '../simulations/arms/expected.ts';
import { scenarioPrefix } from '../simulations/arms/lock-per-fill.ts';

const fill = (blockOrderId: string, seq: number, quantity: bigint, price: bigint): Fill => ({
  fillId: `${blockOrderId}-F${seq}`,
  blockOrderId,
  seq,
  quantity,
  price,
  venue: 'XNYS',
  executedAtMs: 0,
});

/**
 * BO1 BUY S1 (lot 1) for A1 30 / A2 10, filled 20 @ 10.00 then 20 @ 10.50.
 * BO2 SELL S2 for A2 10 (A2 holds 10), filled 4 @ 2.000001 then 1 @ 1.005.
 * BO3 SELL S2 for A1 5 (A1 holds none), filled 5 @ 3.00: rejected line.
 */
function tinyScenario(): Scenario {
  const publishOrder = [
    fill('BO1', 1, 20n, 10_000_000n),
    fill('BO2', 1, 4n, 2_000_001n),
    fill('BO3', 1, 5n, 3_000_000n),
    fill('BO1', 2, 20n, 10_500_000n),
    fill('BO2', 2, 1n, 1_005_000n),
  ];
  const fillsByOrder = new Map<string, Fill[]>();
  for (const f of publishOrder)
    fillsByOrder.set(f.blockOrderId, [...(fillsByOrder.get(f.blockOrderId) ?? []), f]);
  const side = (s: 'BUY' | 'SELL') => s;
  return {
    options: { ...defaultScenario, fills: publishOrder.length },
    seed: {
      securities: [
        { id: 'S1', ticker: 'S1', lotSize: 1n },
        { id: 'S2', ticker: 'S2', lotSize: 1n },
      ],
      accounts: [
        { id: 'A1', name: 'a1', openingCashMinor: 100_000n, positions: {} },
        { id: 'A2', name: 'a2', openingCashMinor: 50_000n, positions: { S2: 10n } },
      ],
      blockOrders: [
        {
          id: 'BO1',
          securityId: 'S1',
          side: side('BUY'),
          tradeDate: '2026-11-20',
          targets: [
            { accountId: 'A2', quantity: 10n },
            { accountId: 'A1', quantity: 30n },
          ],
        },
        {
          id: 'BO2',
          securityId: 'S2',
          side: side('SELL'),
          tradeDate: '2026-11-20',
          targets: [{ accountId: 'A2', quantity: 10n }],
        },
        {
          id: 'BO3',
          securityId: 'S2',
          side: side('SELL'),
          tradeDate: '2026-11-20',
          targets: [{ accountId: 'A1', quantity: 5n }],
        },
      ],
    },
    fillsByOrder,
    publishOrder,
  };
}

function cloneBooks(books: Books): Books {
  const accounts = new Map<string, AccountBook>();
  for (const [id, b] of books.accounts)
    accounts.set(id, { cashMinor: b.cashMinor, positions: new Map(b.positions) });
  return { accounts, lines: books.lines };
}

t.test('expected books of a hand-checkable scenario', async (t) => {
  const e = expectedBooks(tinyScenario());
  t.equal(e.fills, 5);
  t.equal(e.lines, 7, 'BO1: 2 + 2 lines, BO2: 1 + 1, BO3: 1');
  t.equal(e.rejectedLines, 1, 'the SELL of S2 by A1, who holds none');
  // A1: 15 @ 10.00 and 15 @ 10.50 bought; the rejected SELL changes nothing.
  t.equal(e.accounts.get('A1')?.cashMinor, 100_000n - 15_000n - 15_750n);
  t.same([...(e.accounts.get('A1')?.positions ?? [])], [['S1', 30n]]);
  // A2: 5 @ 10.00 and 5 @ 10.50 bought; 4 @ 2.000001 = 800.0004 ¢ → 800 ¢ sold,
  // 1 @ 1.005 = 100.5 ¢ → 100 ¢ (half to even).
  t.equal(e.accounts.get('A2')?.cashMinor, 50_000n - 5_000n - 5_250n + 800n + 100n);
  t.equal(e.accounts.get('A2')?.positions.get('S1'), 10n);
  t.equal(e.accounts.get('A2')?.positions.get('S2'), 5n);
});

t.test('compareBooks is exact: one cent, one share, one line, one account', async (t) => {
  const e = expectedBooks(tinyScenario());
  const same = compareBooks(e, cloneBooks(e));
  t.ok(same.ok);
  t.same(same.violations, []);
  t.ok(same.checks >= 6, `counts its checks (${same.checks})`);

  const cent = cloneBooks(e);
  const a2 = cent.accounts.get('A2');
  if (a2) a2.cashMinor += 1n;
  const r1 = compareBooks(e, cent);
  t.notOk(r1.ok);
  t.equal(r1.violations.length, 1);
  t.match(r1.violations[0], /A2 cash/);

  const share = cloneBooks(e);
  share.accounts.get('A1')?.positions.set('S1', 29n);
  t.match(compareBooks(e, share).violations, [/A1 position S1 29 != 30/]);

  const line = cloneBooks(e);
  line.lines -= 1;
  t.match(compareBooks(e, line).violations, [/lines: 6 != 7/]);

  const missing = cloneBooks(e);
  missing.accounts.delete('A1');
  missing.accounts.set('A9', { cashMinor: 0n, positions: new Map() });
  t.match(compareBooks(e, missing).violations, [/A1: missing/, /A9: not expected/]);

  // An absent position equals a zero one.
  const zero = cloneBooks(e);
  zero.accounts.get('A1')?.positions.set('S9', 0n);
  t.ok(compareBooks(e, zero).ok);
});

t.test('compareBooks caps its violations', async (t) => {
  const e = expectedBooks(
    generateScenario({ seed: 5, accounts: 200, blockOrders: 10, fills: 200 }),
  );
  const wrong = cloneBooks(e);
  for (const b of wrong.accounts.values()) b.cashMinor += 1n;
  const r = compareBooks(e, wrong);
  t.notOk(r.ok);
  t.equal(r.violations.length, VIOLATIONS_MAX);
  t.match(r.violations.at(-1), /and 151 more/);
});

t.test('expected books conserve shares per security', async (t) => {
  const scenario = generateScenario({ seed: 3, accounts: 50, blockOrders: 8, fills: 300 });
  const e = expectedBooks(scenario);
  t.equal(e.rejectedLines, 0, 'seeded positions cover every SELL');
  const sides = new Map(scenario.seed.blockOrders.map((o) => [o.id, o]));
  const traded = new Map<string, bigint>();
  for (const f of scenario.publishOrder) {
    const o = sides.get(f.blockOrderId);
    const signed = o?.side === 'BUY' ? f.quantity : -f.quantity;
    traded.set(o?.securityId ?? '', (traded.get(o?.securityId ?? '') ?? 0n) + signed);
  }
  const change = new Map<string, bigint>();
  for (const a of scenario.seed.accounts) {
    const book = e.accounts.get(a.id);
    for (const sec of new Set([...Object.keys(a.positions), ...(book?.positions.keys() ?? [])])) {
      const delta = (book?.positions.get(sec) ?? 0n) - (a.positions[sec] ?? 0n);
      change.set(sec, (change.get(sec) ?? 0n) + delta);
    }
  }
  for (const [sec, q] of traded) t.equal(change.get(sec) ?? 0n, q, `${sec}: Σ positions = Σ fills`);
});

t.test('a prefix of the workload is a workload; percentiles by nearest rank', async (t) => {
  const scenario = generateScenario({ seed: 3, accounts: 50, blockOrders: 8, fills: 300 });
  const prefix = scenarioPrefix(scenario, 100);
  t.equal(prefix.publishOrder.length, 100);
  for (const fills of prefix.fillsByOrder.values())
    t.same(
      fills.map((f) => f.seq),
      fills.map((_, i) => i + 1),
    );
  t.ok(expectedBooks(prefix).lines > 0);

  const samples = Array.from({ length: 1000 }, (_, i) => 1000 - i);
  t.same(percentiles(samples), { p50: 500, p90: 900, p99: 990, p999: 999, max: 1000 });
  t.equal(percentiles([]), undefined);
});
