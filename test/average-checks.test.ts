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
  type BlockOrderCommand,
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
  books.define('BO-1', { everyFills: 2, everyMarketMs: null, target: 1_000n });
  for (const e of events)
    if (
      e.type === 'FillAccumulated' ||
      e.type === 'AveragedFillAmended' ||
      e.type === 'OrderCancelled'
    )
      books.event('BO-1', e);
  return { books, violations };
}

/** `events` and then `commands` decided and folded on (amendments and cancels). */
function moreEvents(fills: Fill[], commands: BlockOrderCommand[]): BlockOrderEvent[] {
  const events = eventsOf(fills);
  let state = events.reduce<BlockOrderState>(
    (s, e) => evolve(s, e),
    evolve(initialState(), { type: 'BlockOrderOpened', def, atMs: NOW }),
  );
  for (const c of commands) {
    const d = decide(c, state);
    if (d.outcome !== 'Accepted')
      throw new Error(`${c.type}: ${d.outcome} ${JSON.stringify(d.reason)}`);
    for (const e of d.events) {
      state = evolve(state, e);
      events.push(e);
    }
  }
  return events;
}

const head = (seq: number) => ({
  amendmentId: `X-${seq}`,
  blockOrderId: 'BO-1',
  seq,
  executedAtMs: NOW + seq * 1_000,
});

const three = [fill(1, 100n), fill(2, 200n, PRICE + 10_000n), fill(3, 50n)];

t.test('an open order may hold an accumulation; it is on no account yet', async (t) => {
  const { books, violations } = booksOf(eventsOf(three));
  t.equal(books.releases, 1, 'fills 1 and 2 released');
  t.same(books.accumulatedOf('BO-1'), { quantity: 50n, notional: 50n * PRICE });
  books.checkCash('BO-1');
  t.same(violations, [], 'street cash = accounts + residue over the release');
});

t.test('a release missing, or one the terms did not call for, is named', async (t) => {
  const events = eventsOf(three);
  const withoutRelease = events.map((e) =>
    e.type === 'FillAccumulated' && e.fill.seq === 2 ? { ...e, release: null } : e,
  );
  t.match(booksOf(withoutRelease).violations, [/BO-1 seq 2: kept 2 fills; the terms say release/]);
  const early = eventsOf(three.slice(0, 2));
  const released = early.find((e) => e.type === 'FillAccumulated' && e.release);
  const tooSoon = events.map((e) =>
    e.type === 'FillAccumulated' && e.fill.seq === 1 && released?.type === 'FillAccumulated'
      ? { ...e, release: { ...released.release!, fillIds: ['F-1'] } }
      : e,
  );
  t.match(booksOf(tooSoon).violations, [/BO-1 seq 1: released 1 fills; the terms say keep/]);
});

t.test(
  'a cancel releases the accumulation; a cancelled order that kept one is named',
  async (t) => {
    const cancel = { kind: 'CANCEL' as const, ...head(4) };
    const events = moreEvents(three, [{ type: 'Amend', amendment: cancel, nowMs: NOW }]);
    const { books, violations } = booksOf(events);
    t.equal(books.releases, 2, 'the cancel released fill 3');
    books.checkCash('BO-1');
    t.same(violations, []);
    const kept = events.map((e) =>
      e.type === 'OrderCancelled' ? { ...e, release: undefined } : e,
    );
    const tampered = booksOf(kept);
    tampered.books.checkCash('BO-1');
    t.match(tampered.violations, [
      /BO-1: the cancel kept 1 accumulated fills/,
      /BO-1: cancelled, yet 1 fills are still accumulated/,
    ]);
  },
);

t.test('a correction of an accumulated fill that completes the order releases', async (t) => {
  // 100 + 200 released; 50 accumulated; a correction to 700 fills the order's 1,000.
  const fix = {
    kind: 'CORRECTION' as const,
    ...head(4),
    fillId: 'F-3',
    quantity: 700n,
    price: PRICE,
  };
  const events = moreEvents(three, [{ type: 'Amend', amendment: fix, nowMs: NOW }]);
  t.match(events.at(-1), { type: 'AveragedFillAmended', change: null, release: { key: 'X-4' } });
  const { books, violations } = booksOf(events);
  t.equal(books.releases, 2);
  t.same(books.accumulatedOf('BO-1'), { quantity: 0n, notional: 0n });
  t.same(violations, []);
  const kept = events.map((e) =>
    e.type === 'AveragedFillAmended' ? { ...e, release: undefined } : e,
  );
  t.match(booksOf(kept).violations, [/BO-1 seq 4: kept the accumulation; the order is complete/]);
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

t.test(
  'an average-price event on an order the reference data calls pro-rata is named',
  async (t) => {
    const violations: string[] = [];
    const books = new AverageBooks((ok, message) => void (ok || violations.push(message())));
    const [first] = eventsOf(three).filter((e) => e.type === 'FillAccumulated');
    if (first?.type === 'FillAccumulated') books.event('BO-9', first);
    t.match(violations, [/BO-9: FillAccumulated on an order that is not average-price/]);
    t.same(books.accumulatedOf('BO-9'), { quantity: 0n, notional: 0n });
  },
);
