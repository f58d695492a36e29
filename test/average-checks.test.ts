/**
 * The checker's average-price books (simulations/average-checks.ts), fed the
 * events the pure decider makes: what it accepts, and that it catches a
 * release priced wrong and a closed order that kept an accumulation. Pure:
 * no services.
 */
import t from 'tap';
import {
  decide,
  evolve,
  initialState,
  type BlockOrderEvent,
  type BlockOrderState,
  type Fill,
} from '../actors/block-order/decider.ts';
import { AverageBooks } from '../simulations/average-checks.ts';
import type { Check } from '../simulations/invariants.ts';
import { TEST_PRICE as PRICE } from './helpers/asserts.ts';

const NOW = 1_700_000_000_000;

const def = {
  blockOrderId: 'BO-1',
  securityId: 'SEC-1',
  side: 'BUY' as const,
  tradeDate: '2024-01-02',
  lotSize: 10n,
  targets: [
    { accountId: 'A1', quantity: 600n },
    { accountId: 'A2', quantity: 400n },
  ],
  policy: { kind: 'AVERAGE_PRICE' as const, everyFills: 2, everyMarketMs: null },
};

const fill = (seq: number, quantity: bigint, price = PRICE): Fill => ({
  fillId: `F-${seq}`,
  blockOrderId: 'BO-1',
  seq,
  quantity,
  price,
  venue: 'XNYS',
  executedAtMs: NOW + seq * 1_000,
});

/** The events of `fills` through the decider: released every 2 fills. */
function eventsOf(fills: Fill[]): BlockOrderEvent[] {
  let state: BlockOrderState = evolve(initialState(), {
    type: 'BlockOrderOpened',
    def,
    atMs: NOW,
  });
  const events: BlockOrderEvent[] = [];
  for (const f of fills) {
    const d = decide({ type: 'AllocateFill', fill: f, nowMs: NOW }, state);
    if (d.outcome !== 'Accepted') throw new Error(`${f.fillId}: ${d.outcome}`);
    for (const e of d.events) {
      state = evolve(state, e);
      events.push(e);
    }
  }
  return events;
}

function booksOf(events: BlockOrderEvent[]) {
  const violations: string[] = [];
  const check: Check = (ok, message) => {
    if (!ok) violations.push(message());
  };
  const books = new AverageBooks(check);
  for (const e of events)
    if (e.type === 'FillAccumulated' || e.type === 'AveragedFillAmended') books.event('BO-1', e);
  return { books, violations };
}

const three = [fill(1, 100n), fill(2, 200n, PRICE + 10_000n), fill(3, 50n)];

t.test('an open order may hold an accumulation; it is on no account yet', async (t) => {
  const { books, violations } = booksOf(eventsOf(three));
  t.equal(books.releases, 1, 'fills 1 and 2 released');
  t.same(books.accumulatedOf('BO-1'), { quantity: 50n, notional: 50n * PRICE });
  books.checkCash('BO-1', false);
  t.same(violations, [], 'street cash = accounts + residue over the release');
});

t.test('a closed order that still accumulates is named', async (t) => {
  const { books, violations } = booksOf(eventsOf(three));
  books.checkCash('BO-1', true);
  t.match(violations, [/BO-1: closed, yet 1 fills are still accumulated/]);
});

t.test('a release priced other than its fills’ VWAP is named', async (t) => {
  const events = eventsOf(three.slice(0, 2));
  const tampered = events.map((e) =>
    e.type === 'FillAccumulated' && e.release
      ? {
          ...e,
          release: {
            ...e.release,
            figures: { ...e.release.figures, averagePrice: e.release.figures.averagePrice + 1n },
          },
        }
      : e,
  );
  t.same(booksOf(events).violations, [], 'as the decider made it: nothing to say');
  t.match(booksOf(tampered).violations, [/BO-1 release F-2 at seq 2: priced \d+ residue/]);
});

t.test('a pro-rata order has nothing accumulated', async (t) => {
  const { books } = booksOf([]);
  t.same(books.accumulatedOf('BO-9'), { quantity: 0n, notional: 0n });
});
