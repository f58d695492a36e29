/**
 * The average-price policy in the block-order decider, given events / when
 * command / then events: accumulation, the release triggers (every N fills,
 * every T ms of market time, completion, the close's cancel), and busts and
 * corrections of accumulated and of released fills. A property test runs
 * random days through decide/evolve and the accounts' books and checks
 * conservation of shares and of cash (accounts + residue = street) at every
 * step. Pure: no services.
 */
import t, { type Test } from 'tap';
import fc from 'fast-check';
import { List, Map as PMap } from 'immutable';
import {
  FillRejection,
  decide,
  evolve,
  initialState,
  allocatedOf,
  totalTarget,
  type BlockOrderCommand,
  type BlockOrderDef,
  type BlockOrderEvent,
  type BlockOrderState,
  type Decision,
  type Fill,
  type OpenState,
} from '../actors/block-order/decider.ts';
import {
  releaseLinesAfter,
  releaseLinesOfPending,
  type Amendment,
} from '../actors/block-order/amendments.ts';
import {
  decodeOrder,
  encodeOrder,
  type AllocationPolicy,
  type ReleaseLines,
} from '../actors/block-order/average.ts';
import { notionalMinor, vwap } from '../actors/domain/money.ts';
import { decodeVersioned, encodeVersioned } from '../persistence/codec.ts';
import { TEST_PRICE as PRICE } from './helpers/asserts.ts';

const NOW = 1_700_000_000_000;
const P2 = 101_260_000n;

const policy = (everyFills: number | null, everyMarketMs: number | null): AllocationPolicy => ({
  kind: 'AVERAGE_PRICE',
  everyFills,
  everyMarketMs,
});

const defWith = (p: AllocationPolicy): BlockOrderDef => ({
  blockOrderId: 'BO-1',
  securityId: 'SEC-1',
  side: 'BUY',
  tradeDate: '2024-01-02',
  lotSize: 10n,
  targets: [
    { accountId: 'A1', quantity: 600n },
    { accountId: 'A2', quantity: 300n },
    { accountId: 'A3', quantity: 100n },
  ],
  policy: p,
});

const fill = (seq: number, quantity: bigint, over: Partial<Fill> = {}): Fill => ({
  fillId: `F-${seq}`,
  blockOrderId: 'BO-1',
  seq,
  quantity,
  price: PRICE,
  venue: 'XNYS',
  executedAtMs: NOW + seq * 1_000,
  ...over,
});
const head = (seq: number) => ({
  amendmentId: `X-${seq}`,
  blockOrderId: 'BO-1',
  seq,
  executedAtMs: NOW + seq * 1_000,
});

const fillCmd = (f: Fill): BlockOrderCommand => ({ type: 'AllocateFill', fill: f, nowMs: NOW });
const amendCmd = (a: Amendment, release?: ReleaseLines | null): BlockOrderCommand => ({
  type: 'Amend',
  amendment: a,
  ...(release !== undefined ? { release } : {}),
  nowMs: NOW,
});

function openOf(t: Test, state: BlockOrderState): OpenState {
  if (state.status !== 'Open') throw new Error(`expected an open order, got ${state.status}`);
  t.ok(state.average, 'an average-price order');
  return state;
}

/** Runs commands from an opened order; every decision must be accepted. */
function run(t: Test, p: AllocationPolicy, commands: BlockOrderCommand[]) {
  const def = defWith(p);
  let state = evolve(initialState(), { type: 'BlockOrderOpened', def, atMs: NOW });
  const events: BlockOrderEvent[] = [];
  for (const c of commands) {
    const d = decide(c, state);
    t.equal(d.outcome, 'Accepted', `${c.type} accepted`);
    for (const e of d.events) {
      state = evolve(state, e);
      events.push(e);
    }
  }
  return { def, state: openOf(t, state), events };
}

function release(e: BlockOrderEvent | undefined) {
  if (e?.type === 'FillAccumulated' || e?.type === 'OrderCancelled') return e.release ?? null;
  throw new Error(`${e?.type} releases nothing`);
}

t.test('fills accumulate with no lines until every-N fires, then one price for all', async (t) => {
  const f1 = fill(1, 200n);
  const f2 = fill(2, 300n, { price: P2 });
  const { state, events } = run(t, policy(2, null), [fillCmd(f1), fillCmd(f2)]);
  t.strictSame(events[0], { type: 'FillAccumulated', fill: f1, release: null, atMs: NOW });
  t.strictSame(state.pending[0]?.lines, [], 'an accumulated fill sends no line');
  const r = release(events[1]);
  t.ok(r, 'the second fill releases');
  if (!r) return;
  t.equal(r.key, 'F-2', 'keyed by the fill that fired it');
  t.strictSame(r.fillIds, ['F-1', 'F-2']);
  const average = vwap(200n * PRICE + 300n * P2, 500n)!;
  t.equal(r.figures.averagePrice, average, 'the VWAP of the accumulation');
  t.strictSame(
    r.lines.map((l) => [l.accountId, l.quantity]),
    [
      ['A1', 300n],
      ['A2', 150n],
      ['A3', 50n],
    ],
    '500 pro-rata on 600/300/100',
  );
  const street = notionalMinor(200n, PRICE) + notionalMinor(300n, P2);
  const accounts = r.lines.reduce((s, l) => s + notionalMinor(l.quantity, average), 0n);
  t.equal(r.figures.residueMinor, street - accounts, 'residue = street - accounts');
  const p = state.pending.at(-1)!;
  t.equal(p.price, average, 'every line at the average price');
  t.equal(p.linesKey, 'F-2');
  t.strictSame(allocatedOf(state), { A1: 300n, A2: 150n, A3: 50n });
  t.equal(state.average?.releasedQuantity, 500n);
  t.equal(state.average?.accumulation.fills, 0, 'nothing left accumulated');
});

t.test('every-T fires on market time; completion fires whatever the triggers', async (t) => {
  const timed = run(t, policy(null, 1_500), [
    fillCmd(fill(1, 100n)),
    fillCmd(fill(2, 100n)), // 1 s after the first: not yet
    fillCmd(fill(3, 100n)), // 2 s: due
  ]);
  t.strictSame(
    timed.events.map((e) => release(e)?.key ?? null),
    [null, null, 'F-3'],
  );
  const complete = run(t, policy(null, null), [fillCmd(fill(1, 400n)), fillCmd(fill(2, 600n))]);
  t.strictSame(
    complete.events.map((e) => release(e)?.key ?? null),
    [null, 'F-2'],
  );
  t.strictSame(allocatedOf(complete.state), { A1: 600n, A2: 300n, A3: 100n }, 'all targets met');
});

t.test('a cancel releases what is accumulated, at its own seq', async (t) => {
  const c: Amendment = { kind: 'CANCEL', ...head(2) };
  const { state, events } = run(t, policy(null, null), [fillCmd(fill(1, 500n)), amendCmd(c)]);
  const r = release(events[1]);
  t.equal(r?.key, 'X-2');
  t.equal(state.cancelledQuantity, 500n);
  t.equal(state.pending.at(-1)?.seq, 2);
  t.strictSame(allocatedOf(state), { A1: 300n, A2: 150n, A3: 50n });
});

t.test('an accumulated fill: bust and correction change the accumulation only', async (t) => {
  const b: Amendment = { kind: 'BUST', ...head(3), fillId: 'F-1' };
  const c: Amendment = { kind: 'CORRECTION', ...head(4), fillId: 'F-2', quantity: 250n, price: P2 };
  const { state, events } = run(t, policy(null, null), [
    fillCmd(fill(1, 200n)),
    fillCmd(fill(2, 300n)),
    amendCmd(b),
    amendCmd(c),
  ]);
  t.match(events[2], { type: 'AveragedFillAmended', change: null });
  t.strictSame(state.pending.at(-1)?.lines, [], 'no account sees it');
  t.equal(state.average?.accumulation.quantity, 250n);
  t.equal(state.average?.accumulation.notional, 250n * P2);
  t.strictSame(
    state.average?.accumulated.toArray(),
    ['F-2'],
    'the busted fill left the accumulation',
  );
  t.equal(state.filledQuantity, 250n);
  t.equal(state.busts, 1);
  t.equal(state.corrections, 1);
});

t.test('a correction that completes the order releases the accumulation, at its seq', async (t) => {
  // Given 200 + 300 accumulated (no trigger but completion), when F-2 is corrected
  // to 800 the order's 1,000 are filled: the completion trigger fires.
  const c: Amendment = { kind: 'CORRECTION', ...head(3), fillId: 'F-2', quantity: 800n, price: P2 };
  const { state, events } = run(t, policy(null, null), [
    fillCmd(fill(1, 200n)),
    fillCmd(fill(2, 300n)),
    amendCmd(c),
  ]);
  const e = events[2];
  t.match(e, { type: 'AveragedFillAmended', change: null, release: { key: 'X-3' } });
  if (e?.type !== 'AveragedFillAmended' || !e.release) return;
  t.strictSame(e.release.fillIds, ['F-1', 'F-2'], 'both fills, the corrected one as corrected');
  t.equal(e.release.figures.accumulation.quantity, 1_000n);
  t.equal(
    e.release.lines.reduce((s, l) => s + l.quantity, 0n),
    1_000n,
    'lines sum to the release',
  );
  t.equal(state.average?.accumulation.quantity, 0n, 'nothing left accumulated');
  t.equal(state.average?.releasedQuantity, 1_000n);
  t.equal(state.pending.at(-1)?.linesKey, 'X-3', 'the correction’s seq carries the lines');
  t.equal(state.filledQuantity, 1_000n);
  const bust: Amendment = { kind: 'BUST', ...head(4), fillId: 'F-1' };
  const d = decide(amendCmd(bust, { key: 'X-3', seq: 3, lines: e.release.lines }), state);
  t.match(d, { outcome: 'Accepted', events: [{ change: { key: 'X-3', amendsSeq: 3 } }] });
  t.notOk((d.events[0] as { release?: unknown }).release, 'a bust never releases');
});

t.test('a released fill: a price correction re-prices every line of its release', async (t) => {
  const first = run(t, policy(2, null), [
    fillCmd(fill(1, 200n)),
    fillCmd(fill(2, 300n, { price: P2 })),
  ]);
  const lines = releaseLinesOfPending(first.state.pending.at(-1)!)!;
  const c: Amendment = { kind: 'CORRECTION', ...head(3), fillId: 'F-1', quantity: 200n, price: P2 };
  const d = decide(amendCmd(c, lines), first.state);
  t.equal(d.outcome, 'Accepted');
  const e = d.events[0];
  if (e?.type !== 'AveragedFillAmended' || !e.change) throw new Error('expected a release change');
  t.equal(e.change.key, 'F-2');
  t.equal(e.change.amendsSeq, 2);
  t.equal(e.change.after.averagePrice, P2, 'both fills now at P2');
  t.strictSame(
    e.change.lines.map((l) => [l.accountId, l.previousQuantity, l.quantity]),
    [
      ['A1', 300n, 300n],
      ['A2', 150n, 150n],
      ['A3', 50n, 50n],
    ],
    'quantities kept',
  );
  const s = openOf(t, evolve(first.state, e));
  const p = s.pending.at(-1)!;
  t.equal(p.price, P2);
  t.match(p.amended, {
    amendsSeq: 2,
    previousQuantity: 500n,
    previousPrice: e.change.before.averagePrice,
  });
  t.equal(s.average?.releases.get('F-2')?.versionSeq, 3, 'the release now stands at seq 3');
  t.strictSame(releaseLinesAfter(e), { key: 'F-2', seq: 3, lines: lines.lines });
});

t.test('a released fill busted: the release is re-run for what is left', async (t) => {
  const first = run(t, policy(2, null), [fillCmd(fill(1, 200n)), fillCmd(fill(2, 300n))]);
  const lines = releaseLinesOfPending(first.state.pending.at(-1)!)!;
  const b: Amendment = { kind: 'BUST', ...head(3), fillId: 'F-2' };
  const d = decide(amendCmd(b, lines), first.state);
  const e = d.events[0];
  if (e?.type !== 'AveragedFillAmended' || !e.change) throw new Error('expected a release change');
  t.equal(e.change.after.accumulation.quantity, 200n);
  t.equal(e.change.after.averagePrice, PRICE, 'only fill 1 is left');
  t.strictSame(
    e.change.lines.map((l) => [l.accountId, l.quantity]),
    [
      ['A1', 120n],
      ['A2', 60n],
      ['A3', 20n],
    ],
  );
  const s = openOf(t, evolve(first.state, e));
  t.strictSame(allocatedOf(s), { A1: 120n, A2: 60n, A3: 20n });
  t.equal(s.filledQuantity, 200n);
  const again = decide(amendCmd({ kind: 'BUST', ...head(4), fillId: 'F-2' }), s);
  t.match(again, { outcome: 'Rejected', reason: FillRejection.AlreadyBusted });
});

t.test('rejections persist nothing', async (t) => {
  const { state } = run(t, policy(null, null), [fillCmd(fill(1, 900n))]);
  const cases: [BlockOrderCommand, string][] = [
    [fillCmd(fill(2, 200n)), FillRejection.Overfill],
    [amendCmd({ kind: 'BUST', ...head(2), fillId: 'F-9' }), FillRejection.UnknownFill],
    [
      amendCmd({ kind: 'CORRECTION', ...head(2), fillId: 'F-1', quantity: 1_100n, price: PRICE }),
      FillRejection.CorrectionOverfill,
    ],
    [
      amendCmd({ kind: 'CORRECTION', ...head(2), fillId: 'F-1', quantity: 900n, price: PRICE }),
      FillRejection.CorrectionChangesNothing,
    ],
  ];
  for (const [command, reason] of cases) {
    const d: Decision = decide(command, state);
    t.match(d, { outcome: 'Rejected', reason }, reason);
    t.strictSame(d.events, [], `${reason}: no events`);
  }
  const bad = decide({ type: 'Open', def: defWith(policy(0, null)), nowMs: NOW }, initialState());
  t.match(bad, {
    outcome: 'Rejected',
    reason: FillRejection.InvalidBlockOrder,
    detail: /everyFills/,
  });
});

t.test('a snapshot of an average-price order decodes to the same state', async (t) => {
  // 59 fills, released every 7 (8 releases, 3 still accumulated): maps past their small form.
  const fills = Array.from({ length: 59 }, (_, i) => fillCmd(fill(i + 1, 10n)));
  const { state } = run(t, policy(7, null), fills);
  t.equal(state.average?.releases.size, 8);
  t.equal(state.average?.accumulated.size, 3);
  const bytes = encodeVersioned(encodeOrder(state));
  const decoded = openOf(t, decodeOrder(decodeVersioned(bytes, 'snapshot')));
  const plain = (s: OpenState) => {
    const avg = s.average!;
    const maps = { fills: new Map(avg.fills), releases: new Map(avg.releases) };
    return { ...s, average: { ...avg, ...maps, accumulated: avg.accumulated.toArray() } };
  };
  t.strictSame(plain(decoded), plain(state), 'the same fills, releases and accumulation');
  const avg = decoded.average!;
  t.ok(PMap.isMap(avg.fills) && PMap.isMap(avg.releases), 'persistent maps again');
  t.ok(List.isList(avg.accumulated), 'a persistent list again');
  // The decoded state folds on: the 7th fill after the last release releases all 7.
  let folded: BlockOrderState = decoded;
  for (const seq of [60, 61, 62]) {
    for (const e of decide(fillCmd(fill(seq, 10n)), folded).events) folded = evolve(folded, e);
  }
  const next = decide(fillCmd(fill(63, 10n)), folded);
  const ids = [57, 58, 59, 60, 61, 62, 63].map((seq) => `F-${seq}`);
  t.match(next, { outcome: 'Accepted', events: [{ release: { fillIds: ids } }] });
});

// ---------------------------------------------------------------- property

type Step =
  | { kind: 'fill'; quantity: number; tick: number }
  | { kind: 'bust'; pick: number }
  | { kind: 'correct'; pick: number; quantity: number; tick: number };

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant('fill' as const),
      quantity: fc.integer({ min: 1, max: 250 }),
      tick: fc.integer({ min: -3, max: 3 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('bust' as const), pick: fc.nat() }) },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('correct' as const),
      pick: fc.nat(),
      quantity: fc.integer({ min: 1, max: 250 }),
      tick: fc.integer({ min: -3, max: 3 }),
    }),
  },
);

/** The journal's lookup, modelled: the newest event that set each release's lines. */
class Lines {
  readonly #byKey = new Map<string, ReleaseLines>();
  record(e: BlockOrderEvent): void {
    const l = releaseLinesAfter(e);
    if (l) this.#byKey.set(l.key, l);
  }
  get(key: string): ReleaseLines | undefined {
    return this.#byKey.get(key);
  }
}

/** The accounts' books: each line replaces the one it amends; cash at each line's price. */
class AccountBooks {
  readonly lines = new Map<string, { quantity: bigint; price: bigint }>();
  apply(state: OpenState): void {
    const p = state.pending.at(-1)!;
    for (const l of p.lines) {
      if (p.amended) this.lines.delete(`${l.accountId}|${p.amended.amendsSeq}`);
      if (l.quantity > 0n)
        this.lines.set(`${l.accountId}|${p.seq}`, { quantity: l.quantity, price: p.price });
    }
  }
  cashMinor(): bigint {
    let sum = 0n;
    for (const l of this.lines.values()) sum += notionalMinor(l.quantity, l.price);
    return sum;
  }
}

let releaseAmendments = 0;

t.test(
  'random days: shares and cash conserved at every step, nothing left after the close',
  async (t) => {
    fc.assert(
      fc.property(
        fc.option(fc.integer({ min: 1, max: 5 }), { nil: null }),
        fc.option(fc.integer({ min: 1, max: 8_000 }), { nil: null }),
        fc.array(stepArb, { maxLength: 40 }),
        (everyFills, everyMarketMs, steps) => {
          const def = defWith(policy(everyFills, everyMarketMs));
          let state = evolve(initialState(), {
            type: 'BlockOrderOpened',
            def,
            atMs: NOW,
          }) as OpenState;
          const lookup = new Lines();
          const books = new AccountBooks();
          const live = new Map<string, { quantity: bigint; price: bigint }>();
          let seq = 0;
          const apply = (c: BlockOrderCommand): void => {
            const d = decide(c, state);
            for (const e of d.events) {
              state = evolve(state, e) as OpenState;
              lookup.record(e);
              if (e.type === 'AveragedFillAmended' && e.change) releaseAmendments++;
              books.apply(state);
            }
            if (d.outcome !== 'Accepted') return;
            if (c.type === 'AllocateFill') live.set(c.fill.fillId, c.fill);
            if (c.type === 'Amend' && c.amendment.kind === 'BUST') live.delete(c.amendment.fillId);
            if (c.type === 'Amend' && c.amendment.kind === 'CORRECTION')
              live.set(c.amendment.fillId, c.amendment);
          };
          const target = (fillId: string) => {
            const key = state.average!.fills.get(fillId)?.releaseKey;
            return key ? lookup.get(key) : undefined;
          };
          for (const step of steps) {
            seq = state.lastFillSeq + 1;
            const price = PRICE + BigInt(('tick' in step ? step.tick : 0) * 10_000);
            const ids = [...state.average!.fills.keys()];
            const fillId =
              ids.length > 0 && step.kind !== 'fill' ? ids[step.pick % ids.length]! : 'F-none';
            if (step.kind === 'fill') apply(fillCmd(fill(seq, BigInt(step.quantity), { price })));
            else if (step.kind === 'bust')
              apply(amendCmd({ kind: 'BUST', ...head(seq), fillId }, target(fillId)));
            else
              apply(
                amendCmd(
                  {
                    kind: 'CORRECTION',
                    ...head(seq),
                    fillId,
                    quantity: BigInt(step.quantity),
                    price,
                  },
                  target(fillId),
                ),
              );
            checkBooks(state, books, live, false);
          }
          apply(amendCmd({ kind: 'CANCEL', ...head(state.lastFillSeq + 1) }));
          checkBooks(state, books, live, true);
        },
      ),
      { numRuns: 300 },
    );
    t.ok(releaseAmendments > 50, `${releaseAmendments} amendments of released fills exercised`);
  },
);

function checkBooks(
  state: OpenState,
  books: AccountBooks,
  live: Map<string, { quantity: bigint; price: bigint }>,
  closed: boolean,
): void {
  const avg = state.average!;
  const held = Object.values(allocatedOf(state)).reduce((s, q) => s + q, 0n);
  const liveQuantity = [...live.values()].reduce((s, f) => s + f.quantity, 0n);
  if (held !== avg.releasedQuantity)
    throw new Error(`accounts hold ${held}, released ${avg.releasedQuantity}`);
  if (held + avg.accumulation.quantity !== liveQuantity || liveQuantity !== state.filledQuantity)
    throw new Error(
      `held ${held} + accumulated ${avg.accumulation.quantity} ≠ live ${liveQuantity}`,
    );
  if (state.filledQuantity > totalTarget(state.def)) throw new Error('overfilled');
  let releasedStreet = 0n;
  for (const [id, f] of live)
    if (avg.fills.get(id)?.releaseKey) releasedStreet += notionalMinor(f.quantity, f.price);
  const books_ = books.cashMinor() + avg.residueMinor;
  if (releasedStreet !== books_)
    throw new Error(`street ${releasedStreet} ≠ accounts + residue ${books_}`);
  if (closed && avg.accumulation.fills !== 0) throw new Error('the close left fills accumulated');
}
