/**
 * A deterministic, realistic trade stream: securities with lot sizes,
 * accounts with cash and positions, block orders from a rebalance (one per
 * security and side, each serving many accounts), and the market's partial
 * fills of every order. Same seed, same scenario.
 */
import { isAmendment, type Entry, type Fill } from '../actors/block-order/decider.ts';
import { invariant } from '../actors/errors.ts';
import { PRICE_SCALE } from '../actors/domain/money.ts';
import type { SeedData } from '../persistence/reference.ts';

export interface ScenarioOptions {
  seed: number;
  securities: number;
  accounts: number;
  blockOrders: number;
  fills: number;
  accountsPerOrderMin: number;
  accountsPerOrderMax: number;
  /** Share of orders the market fills completely; the rest stop at 60..95 %. */
  completeShare: number;
  /** Prefix for every id, so runs can share a database. */
  idPrefix: string;
  startMs: number;
}

export const defaultScenario: ScenarioOptions = {
  seed: 42,
  securities: 50,
  accounts: 2_000,
  blockOrders: 200,
  fills: 50_000,
  accountsPerOrderMin: 5,
  accountsPerOrderMax: 30,
  completeShare: 0.9,
  idPrefix: '',
  startMs: Date.UTC(2026, 10, 20, 14, 30),
};

export interface Scenario {
  options: ScenarioOptions;
  seed: SeedData;
  /** Fills per block order, in sequence order. */
  fillsByOrder: Map<string, Fill[]>;
  /** All fills in publish order: interleaved across orders, each order's fills in sequence. */
  publishOrder: Fill[];
  /**
   * With the market's amendments (busts, corrections, cancels): what is
   * published instead of `publishOrder`, fills and amendments in one
   * sequence per order. The fills in it are `publishOrder`'s.
   */
  /** The prices the rebalancing sized buys at (the day's open): the checker's cash limit. */
  rebalancePrices?: Map<string, bigint>;
  amended?: {
    publishOrder: Entry[];
    entriesByOrder: Map<string, Entry[]>;
    counts: { busts: number; corrections: number; cancels: number };
  };
}

/** What a scenario publishes: its fills, or its fills and amendments when it has the market's. */
export const entriesOf = (scenario: Scenario): readonly Entry[] =>
  scenario.amended?.publishOrder ?? scenario.publishOrder;

/** Per block order, what it publishes in seq order (fills, and amendments when there are). */
export const entriesByOrderOf = (scenario: Scenario): Map<string, Entry[]> =>
  scenario.amended?.entriesByOrder ?? scenario.fillsByOrder;

/** mulberry32: small, fast, good enough for simulations; deterministic per seed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const pad = (n: number, width: number) => String(n).padStart(width, '0');

export function generateScenario(overrides: Partial<ScenarioOptions> = {}): Scenario {
  const o: ScenarioOptions = { ...defaultScenario, ...overrides };
  const rnd = prng(o.seed);
  const int = (min: number, max: number) => min + Math.floor(rnd() * (max - min + 1));
  const p = o.idPrefix;

  const securities = Array.from({ length: o.securities }, (_, i) => {
    const lotSize = [1n, 10n, 100n][int(0, 2)] ?? 1n;
    return { id: `${p}SEC${pad(i + 1, 4)}`, ticker: `T${pad(i + 1, 4)}`, lotSize };
  });
  // Base price per security: 1.00 .. 500.00, in 1e-6 units.
  const basePrice = securities.map(() => BigInt(int(100, 50_000)) * (PRICE_SCALE / 100n));

  const accounts = Array.from({ length: o.accounts }, (_, i) => ({
    id: `${p}ACC${pad(i + 1, 6)}`,
    name: `Client portfolio ${i + 1}`,
    openingCashMinor: BigInt(int(1_000_000, 100_000_000)),
    positions: {} as Record<string, bigint>,
  }));

  const blockOrders: SeedData['blockOrders'] = [];
  const fillsByOrder = new Map<string, Fill[]>();
  // Spread the fill budget over the orders: each gets a weight, the sum is exact.
  const weights = Array.from({ length: o.blockOrders }, () => 0.5 + rnd());
  const weightSum = weights.reduce((a, b) => a + b, 0);
  const fillBudget = weights.map((w) => Math.max(1, Math.floor((o.fills * w) / weightSum)));
  let assigned = fillBudget.reduce((a, b) => a + b, 0);
  for (let i = 0; assigned < o.fills; i = (i + 1) % o.blockOrders, assigned++)
    fillBudget[i] = (fillBudget[i] ?? 0) + 1;

  for (let b = 0; b < o.blockOrders; b++) {
    const secIndex = int(0, o.securities - 1);
    const security = securities[secIndex];
    if (!security) throw new Error('no security');
    const side = rnd() < 0.6 ? 'BUY' : 'SELL';
    const id = `${p}BO${pad(b + 1, 5)}`;
    const n = Math.min(o.accounts, int(o.accountsPerOrderMin, o.accountsPerOrderMax));
    const chosen = new Set<number>();
    while (chosen.size < n) chosen.add(int(0, o.accounts - 1));
    const fillCount = fillBudget[b] ?? 1;
    const targets = [...chosen]
      .map((ai) => {
        const account = accounts[ai];
        if (!account) throw new Error('no account');
        // A realistic rebalance: each account's target is hundreds of lots,
        // so a typical partial fill gives most accounts a lot or two.
        const lots = BigInt(
          int(Math.max(5, Math.ceil(fillCount / 2)), Math.max(10, fillCount * 3)),
        );
        const quantity = lots * security.lotSize;
        if (side === 'SELL') {
          account.positions[security.id] =
            (account.positions[security.id] ?? 0n) +
            quantity +
            BigInt(int(0, 50)) * security.lotSize;
        }
        return { accountId: account.id, quantity };
      })
      .sort((x, y) => (x.accountId < y.accountId ? -1 : 1));
    blockOrders.push({ id, securityId: security.id, side, tradeDate: '2026-11-20', targets });

    const total = targets.reduce((s, t) => s + t.quantity, 0n);
    const filledTotal = rnd() < o.completeShare ? total : (total * BigInt(int(60, 95))) / 100n;
    const k = Number(filledTotal < BigInt(fillCount) ? filledTotal : BigInt(fillCount));
    // Cut filledTotal into k positive parts of random sizes (odd lots included).
    const cuts = Array.from({ length: k }, () => 0.2 + rnd());
    const cutSum = cuts.reduce((a, c) => a + c, 0);
    const parts = cuts.map((c) => BigInt(Math.floor((Number(filledTotal) * c) / cutSum)));
    for (let i = 0; i < k; i++) if ((parts[i] ?? 0n) < 1n) parts[i] = 1n;
    let diff = filledTotal - parts.reduce((s, q) => s + q, 0n);
    for (let i = 0; diff !== 0n; i = (i + 1) % k) {
      const q = parts[i] ?? 0n;
      if (diff > 0n) {
        parts[i] = q + diff;
        diff = 0n;
      } else if (q > 1n) {
        const take = q - 1n < -diff ? q - 1n : -diff;
        parts[i] = q - take;
        diff += take;
      }
    }
    const base = basePrice[secIndex] ?? PRICE_SCALE;
    const fills: Fill[] = parts.map((quantity, i) => ({
      fillId: `${id}-F${pad(i + 1, 5)}`,
      blockOrderId: id,
      seq: i + 1,
      quantity,
      // Within ±1 % of the base price, to the micro-unit.
      price: base + (base * BigInt(int(-10_000, 10_000))) / 1_000_000n,
      venue: ['XNYS', 'XNAS', 'BATS', 'IEXG', 'DARK'][int(0, 4)] ?? 'XNYS',
      executedAtMs: o.startMs + i * 50 + int(0, 49),
    }));
    fillsByOrder.set(id, fills);
  }

  // Interleave: at each step pick a random order that still has fills (its next in sequence).
  const cursors = [...fillsByOrder.values()].map((fills) => ({ fills, next: 0 }));
  const publishOrder: Fill[] = [];
  const live = cursors.filter((c) => c.fills.length > 0);
  while (live.length > 0) {
    const i = int(0, live.length - 1);
    const c = live[i];
    if (!c) break;
    const fill = c.fills[c.next++];
    if (fill) publishOrder.push(fill);
    if (c.next >= c.fills.length) live.splice(i, 1);
  }
  return { options: o, seed: { securities, accounts, blockOrders }, fillsByOrder, publishOrder };
}

/**
 * An order's fills as its published entries leave them: busted fills gone,
 * corrected ones at their corrected quantity and price, in seq order. What
 * the checker expects the books to hold and what the reports measure.
 */
export function liveFillsOf(entries: readonly Entry[]): Fill[] {
  const live = new Map<string, Fill>();
  for (const e of entries) {
    if (!isAmendment(e)) live.set(e.fillId, e);
    else if (e.kind === 'BUST') live.delete(e.fillId);
    else if (e.kind === 'CORRECTION') {
      const fill = live.get(e.fillId);
      invariant(fill !== undefined, `${e.amendmentId}: corrects a fill that is not live`);
      live.set(e.fillId, { ...fill, quantity: e.quantity, price: e.price });
    }
  }
  return [...live.values()].sort((a, b) => a.seq - b.seq);
}
