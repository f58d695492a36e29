/**
 * Block order decider, in given-events / when-command / then-events form:
 * state = history.reduce(evolve, initialState()); the decision is
 * decide(command, state). Pure: no database, no streams.
 */
import t, { type Test } from 'tap';
import {
  FillRejection,
  decide,
  evolve,
  initialState,
  totalTarget,
  allocatedOf,
  type BlockOrderCommand,
  type BlockOrderDef,
  type BlockOrderEvent,
  type BlockOrderState,
  type Decision,
  type Fill,
  type OpenState,
} from '../actors/block-order/decider.ts';
import {
  decide as decideAccount,
  evolve as evolveAccount,
  initialState as initialAccount,
  type AccountState,
} from '../actors/account/decider.ts';
import { Outbox } from '../actors/block-order/outbox.ts';
import { expectInvariant, TEST_PRICE as PRICE } from './helpers/asserts.ts';

// ---------------------------------------------------------------- helpers

type Asserts = Test;

const replay = (history: readonly BlockOrderEvent[]): BlockOrderState =>
  history.reduce(evolve, initialState());

function openOf(t: Asserts, state: BlockOrderState): OpenState {
  if (state.status !== 'Open') {
    t.fail(`expected an open block order, got ${state.status}`);
    throw new Error('not open');
  }
  return state;
}

type Settlement = readonly [seq: number, accountId: string];

interface Then {
  decision: Decision;
  /** The state after evolving the decision's events. */
  state: BlockOrderState;
}

/**
 * given(t, history).settled(...).when(command).then(events) / .thenOutcome(...) / .thenThrows(...)
 * `settled` records settlements in an outbox rebuilt from the replay (as the
 * shell does); a ConfirmProgress then carries what that outbox says.
 */
function given(t: Asserts, history: readonly BlockOrderEvent[]) {
  const state = replay(history);
  const outbox =
    state.status === 'Open'
      ? Outbox.fromPending(100, state.confirmedThroughSeq, state.pending)
      : new Outbox(100);
  const chain = {
    settled(...settlements: Settlement[]) {
      for (const [seq, accountId] of settlements) outbox.settle(seq, accountId);
      return chain;
    },
    when(given: BlockOrderCommand) {
      const before = state;
      const command =
        given.type === 'ConfirmProgress'
          ? { ...given, settledThroughSeq: outbox.settledThrough() }
          : given;
      const run = (): Decision => decide(command, before);
      return {
        then(expected: readonly BlockOrderEvent[]): Then {
          const decision = run();
          t.equal(decision.outcome, 'Accepted', 'outcome');
          t.strictSame(decision.events, expected, 'events');
          return { decision, state: decision.events.reduce(evolve, before) };
        },
        thenOutcome(expected: Record<string, unknown>): Then {
          const decision = run();
          t.match(decision, expected, 'outcome');
          t.strictSame(decision.events, [], 'no events');
          return { decision, state: before };
        },
        thenThrows(message: RegExp): void {
          expectInvariant(t, run, message);
        },
      };
    },
  };
  return chain;
}

// ---------------------------------------------------------------- fixtures

const NOW = 1_700_000_000_000;

const def: BlockOrderDef = {
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
};

const fill = (seq: number, quantity: bigint, over: Partial<Fill> = {}): Fill => ({
  fillId: `F-${seq}`,
  blockOrderId: 'BO-1',
  seq,
  quantity,
  price: PRICE,
  venue: 'XNYS',
  executedAtMs: NOW - 10_000 + seq,
  ...over,
});

const opened: BlockOrderEvent = { type: 'BlockOrderOpened', def, atMs: NOW };

const allocated = (f: Fill, lines: Record<string, bigint>, atMs = NOW): BlockOrderEvent => ({
  type: 'FillAllocated',
  fill: f,
  lines: Object.entries(lines).map(([accountId, quantity]) => ({ accountId, quantity })),
  atMs,
});

const allocateCmd = (f: Fill, nowMs = NOW, prior?: Fill | null): BlockOrderCommand => ({
  type: 'AllocateFill',
  fill: f,
  ...(prior !== undefined ? { prior } : {}),
  nowMs,
});
/** A message at an applied seq, with the execution on record there (what the shell looks up). */
const repeatCmd = (f: Fill, prior: Fill | null) => allocateCmd(f, NOW, prior);
/** The outbox's answer is filled in by `given(...).when(confirm)`. */
const confirm: BlockOrderCommand = {
  type: 'ConfirmProgress',
  settledThroughSeq: 0,
  nowMs: NOW + 5,
};

// Worked by hand (lot 10, remaining A1 600 / A2 300 / A3 100, R = 1000):
// fill 1 = 500: quotas 500*600/1000 = 300, 150, 50: whole lots, no leftover.
const fill1 = fill(1, 500n);
const fill1Event = allocated(fill1, { A1: 300n, A2: 150n, A3: 50n });
// fill 2 = 130 on remaining 300 / 150 / 50 (R = 500): quotas 78, 39, 13;
// bases 70, 30, 10 (sum 110), leftover 20 by largest fraction: A2 (9) then A1 (8).
const fill2 = fill(2, 130n, { price: 101_260_000n });
const fill2Event = allocated(fill2, { A1: 80n, A2: 40n, A3: 10n });
// fill 3 = 370 = everything remaining (220 / 110 / 40): completes every target.
const fill3 = fill(3, 370n, { price: 101_240_000n });
const fill3Event = allocated(fill3, { A1: 220n, A2: 110n, A3: 40n });

// ---------------------------------------------------------------- Open

t.test('Open on Empty emits BlockOrderOpened', async (t) => {
  const { decision, state } = given(t, [])
    .when({ type: 'Open', def, nowMs: NOW })
    .then([{ type: 'BlockOrderOpened', def, atMs: NOW }]);
  t.equal(decision.outcome, 'Accepted');
  t.strictSame(state, {
    status: 'Open',
    def,
    remaining: [
      { accountId: 'A1', remaining: 600n },
      { accountId: 'A2', remaining: 300n },
      { accountId: 'A3', remaining: 100n },
    ],
    filledQuantity: 0n,
    filledNotional: 0n,
    fills: 0,
    busts: 0,
    corrections: 0,
    cancelledQuantity: null,
    lastFillSeq: 0,
    lastSeq: [0, 0, 0],
    pending: [],
    confirmedThroughSeq: 0,
    average: null,
  });
  t.equal(totalTarget(def), 1000n);
});

t.test('Open twice is rejected ALREADY_OPEN with no events', async (t) => {
  given(t, [opened])
    .when({ type: 'Open', def, nowMs: NOW + 1 })
    .thenOutcome({ outcome: 'Rejected', reason: FillRejection.AlreadyOpen });
  given(t, [opened, fill1Event])
    .when({ type: 'Open', def, nowMs: NOW + 1 })
    .thenOutcome({ outcome: 'Rejected', reason: 'ALREADY_OPEN', detail: /already open/ });
});

t.test('Open with an impossible definition is rejected, with nothing journaled', async (t) => {
  const invalid = (detail: RegExp) => ({
    outcome: 'Rejected' as const,
    reason: FillRejection.InvalidBlockOrder,
    detail,
  });
  given(t, [])
    .when({ type: 'Open', def: { ...def, lotSize: 0n }, nowMs: NOW })
    .thenOutcome(invalid(/lot size/));
  given(t, [])
    .when({ type: 'Open', def: { ...def, targets: [] }, nowMs: NOW })
    .thenOutcome(invalid(/no targets/));
  given(t, [])
    .when({
      type: 'Open',
      def: { ...def, targets: [{ accountId: 'A1', quantity: 0n }] },
      nowMs: NOW,
    })
    .thenOutcome(invalid(/target of A1/));
  given(t, [])
    .when({
      type: 'Open',
      def: {
        ...def,
        targets: [
          { accountId: 'A1', quantity: 10n },
          { accountId: 'A1', quantity: 20n },
        ],
      },
      nowMs: NOW,
    })
    .thenOutcome(invalid(/targeted twice/));
});

// ---------------------------------------------------------------- AllocateFill

t.test('AllocateFill on Empty is UNKNOWN_BLOCK_ORDER', async (t) => {
  given(t, [])
    .when(allocateCmd(fill1))
    .thenOutcome({ outcome: 'Rejected', reason: FillRejection.UnknownBlockOrder, detail: /BO-1/ });
});

t.test('first fill is allocated pro rata in whole lots (worked example)', async (t) => {
  const { state } = given(t, [opened])
    .when(allocateCmd(fill1, NOW + 1))
    .then([
      {
        type: 'FillAllocated',
        fill: fill1,
        lines: [
          { accountId: 'A1', quantity: 300n },
          { accountId: 'A2', quantity: 150n },
          { accountId: 'A3', quantity: 50n },
        ],
        atMs: NOW + 1,
      },
    ]);
  const s = openOf(t, state);
  t.strictSame(allocatedOf(s), { A1: 300n, A2: 150n, A3: 50n });
  t.equal(s.filledQuantity, 500n);
  t.equal(s.filledNotional, 500n * PRICE);
  t.equal(s.fills, 1);
  t.equal(s.lastFillSeq, 1);
  t.strictSame(s.pending[0]?.execution, fill1);
});

t.test('second fill: leftover goes by largest fractional part', async (t) => {
  given(t, [opened, fill1Event]).when(allocateCmd(fill2)).then([fill2Event]);
});

t.test('the last fill completes every target exactly', async (t) => {
  const { state } = given(t, [opened, fill1Event, fill2Event])
    .when(allocateCmd(fill3))
    .then([fill3Event]);
  const s = openOf(t, state);
  t.strictSame(allocatedOf(s), { A1: 600n, A2: 300n, A3: 100n });
  t.equal(s.filledQuantity, totalTarget(def));
  t.equal(s.filledNotional, 500n * PRICE + 130n * 101_260_000n + 370n * 101_240_000n);
  t.equal(s.fills, 3);
  // Nothing remains: any further fill is an overfill.
  given(t, [opened, fill1Event, fill2Event, fill3Event])
    .when(allocateCmd(fill(4, 1n)))
    .thenOutcome({ outcome: 'Rejected', reason: FillRejection.Overfill });
});

t.test('only the very same execution is a duplicate; it changes nothing', async (t) => {
  const history = [opened, fill1Event, fill2Event];
  given(t, history)
    .when(repeatCmd(fill2, fill2))
    .thenOutcome({ outcome: 'Duplicate', reason: /F-2 already applied as seq 2/ });
  given(t, history).when(repeatCmd(fill1, fill1)).thenOutcome({ outcome: 'Duplicate', events: [] });
});

t.test(
  'a message colliding with an applied execution is a conflict, with both versions',
  async (t) => {
    const history = [opened, fill1Event, fill2Event];
    // Another fill id at an applied seq (e.g. a bogus fill took the seq first).
    const other = { ...fill2, fillId: 'F-other' };
    const { decision } = given(t, history)
      .when(repeatCmd(other, fill2))
      .thenOutcome({
        outcome: 'Rejected',
        reason: FillRejection.ConflictingExecution,
        detail: /seq 2 is already applied as fill F-2; this message differs in fillId$/,
      });
    t.strictSame(decision.outcome === 'Rejected' ? decision.existing : undefined, fill2);
    // The same id with other content: quantity, price, venue, time each count.
    for (const over of [
      { quantity: 7n },
      { price: PRICE + 1n },
      { venue: 'XLON' },
      { executedAtMs: 1 },
    ]) {
      given(t, history)
        .when(repeatCmd({ ...fill1, ...over }, fill1))
        .thenOutcome({
          outcome: 'Rejected',
          reason: FillRejection.ConflictingExecution,
          detail: new RegExp(`differs in ${Object.keys(over)[0]}$`),
        });
    }
    // Applied, but nothing on record to compare with: raised, never acked away.
    given(t, history)
      .when(repeatCmd(fill1, null))
      .thenOutcome({
        outcome: 'Rejected',
        reason: FillRejection.ConflictingExecution,
        detail: /no record/,
      });
  },
);

t.test('a repeat without the looked-up execution is a broken precondition', async (t) => {
  const state = replay([opened, fill1Event]);
  expectInvariant(t, () => decide(allocateCmd(fill1), state), /must look up its execution/);
});

t.test('a known fill id at a new seq is not judged here: the index claim catches it', async (t) => {
  // The state keeps no fill ids (it stays small); the journal's unique claim
  // on the id fails the commit (tested in kernel and journal tests).
  t.match(decide(allocateCmd(fill(2, 10n, { fillId: 'F-1' })), replay([opened, fill1Event])), {
    outcome: 'Accepted',
  });
});

t.test('a seq gap is OUT_OF_ORDER', async (t) => {
  given(t, [opened])
    .when(allocateCmd(fill(2, 10n)))
    .thenOutcome({
      outcome: 'Rejected',
      reason: FillRejection.OutOfOrder,
      detail: /expected seq 1, got 2/,
    });
  given(t, [opened, fill1Event])
    .when(allocateCmd(fill(5, 10n)))
    .thenOutcome({ outcome: 'Rejected', reason: 'OUT_OF_ORDER', detail: /expected seq 2, got 5/ });
});

t.test('an overfill is rejected whole', async (t) => {
  given(t, [opened])
    .when(allocateCmd(fill(1, 1001n)))
    .thenOutcome({ outcome: 'Rejected', reason: FillRejection.Overfill, detail: /1001/ });
  // 500 remain after fill 1.
  given(t, [opened, fill1Event])
    .when(allocateCmd(fill(2, 501n)))
    .thenOutcome({ outcome: 'Rejected', reason: 'OVERFILL' });
  // Exactly the remaining is fine.
  given(t, [opened, fill1Event])
    .when(allocateCmd(fill(2, 500n)))
    .then([allocated(fill(2, 500n), { A1: 300n, A2: 150n, A3: 50n })]);
});

t.test('non-positive quantity or price is rejected', async (t) => {
  for (const quantity of [0n, -10n]) {
    given(t, [opened])
      .when(allocateCmd(fill(1, quantity)))
      .thenOutcome({ outcome: 'Rejected', reason: FillRejection.NonPositiveQuantity });
  }
  for (const price of [0n, -1n]) {
    given(t, [opened])
      .when(allocateCmd(fill(1, 10n, { price })))
      .thenOutcome({ outcome: 'Rejected', reason: FillRejection.NonPositivePrice });
  }
});

t.test('a fill for another block order is WRONG_BLOCK_ORDER', async (t) => {
  given(t, [opened])
    .when(allocateCmd(fill(1, 10n, { blockOrderId: 'BO-2' })))
    .thenOutcome({ outcome: 'Rejected', reason: FillRejection.WrongBlockOrder, detail: /BO-2/ });
});

t.test('a rejected fill does not consume its seq', async (t) => {
  // Rejections emit nothing, so the same seq with a valid quantity is still accepted.
  const history = [opened, fill1Event];
  given(t, history)
    .when(allocateCmd(fill(2, 9999n)))
    .thenOutcome({ outcome: 'Rejected' });
  given(t, history).when(allocateCmd(fill2)).then([fill2Event]);
});

// ---------------------------------------------------------------- evolve

t.test('evolve tracks prevSeq per line and allocated totals', async (t) => {
  // Lot 100 makes some fills skip accounts:
  // fill 1 = 100 on 600/300/100: quotas 60/30/10, no base, the lot goes to A1.
  // fill 2 = 100 on 500/300/100: quotas 55.5/33.3/11.1, the lot goes to A1 again.
  // fill 3 = 200 on 400/300/100: A1 base 100 (quota exactly 100), the leftover lot to A2 (75 > 25).
  const lotDef: BlockOrderDef = { ...def, lotSize: 100n };
  let state = replay([{ type: 'BlockOrderOpened', def: lotDef, atMs: NOW }]);
  const expectLines: Record<string, bigint>[] = [
    { A1: 100n },
    { A1: 100n },
    { A1: 100n, A2: 100n },
  ];
  for (const [i, lines] of expectLines.entries()) {
    const seq = i + 1;
    const f = fill(seq, seq === 3 ? 200n : 100n);
    const decision = decide(allocateCmd(f), state);
    t.strictSame(decision.events, [allocated(f, lines)], `fill ${seq}`);
    state = decision.events.reduce(evolve, state);
  }
  const s = openOf(t, state);
  t.strictSame(allocatedOf(s), { A1: 300n, A2: 100n });
  t.strictSame(s.lastSeq, [3, 3, 0], 'A1 and A2 last got a line at seq 3; A3 never');
  t.strictSame(
    s.pending.map((p) => ({ seq: p.seq, lines: p.lines.map((l) => [l.accountId, l.prevSeq]) })),
    [
      { seq: 1, lines: [['A1', 0]] },
      { seq: 2, lines: [['A1', 1]] },
      {
        seq: 3,
        lines: [
          ['A1', 2],
          ['A2', 0],
        ],
      },
    ],
  );
  t.strictSame(
    s.pending.map((p) => p.price),
    [PRICE, PRICE, PRICE],
  );
});

t.test('evolve does not mutate the previous state', async (t) => {
  const s1 = replay([opened, fill1Event]);
  const snapshot = structuredClone(s1);
  const s2 = evolve(s1, fill2Event);
  t.strictSame(s1, snapshot, 'previous state unchanged');
  t.not(s2, s1);
});

t.test('evolve rejects impossible histories', async (t) => {
  expectInvariant(t, () => replay([fill1Event]), /FillAllocated before BlockOrderOpened/);
  expectInvariant(t, () => replay([opened, opened]), /BlockOrderOpened on an open block order/);
  expectInvariant(
    t,
    () => replay([opened, allocated(fill1, { A1: 300n, A2: 150n, A3: 49n })]),
    /sums to 499, not 500/,
  );
  expectInvariant(
    t,
    () => replay([opened, allocated(fill1, { A1: 300n, A2: 150n, A3: 51n })]),
    /sums to 501/,
  );
  expectInvariant(t, () => replay([opened, fill2Event]), /fill seq 2 after 0/);
  expectInvariant(t, () => replay([opened, fill1Event, fill1Event]), /fill seq 1 after 1/);
  expectInvariant(
    t,
    () => replay([{ type: 'AllocationsConfirmed', throughSeq: 0, caughtUp: true, atMs: NOW }]),
    /AllocationsConfirmed before BlockOrderOpened/,
  );
  expectInvariant(
    t,
    () =>
      replay([
        opened,
        fill1Event,
        { type: 'AllocationsConfirmed', throughSeq: 2, caughtUp: true, atMs: NOW },
      ]),
    /beyond the last fill/,
  );
});

// ---------------------------------------------------------------- delivery tracking

const threeFills = [opened, fill1Event, fill2Event, fill3Event];

t.test('ConfirmProgress confirms only the contiguous settled prefix', async (t) => {
  const all = (seq: number): Settlement[] => ['A1', 'A2', 'A3'].map((a) => [seq, a] as const);

  // Nothing settled, or fills 2 and 3 settled but not 1: nothing to confirm.
  given(t, threeFills).when(confirm).then([]);
  given(t, threeFills)
    .settled(...all(2), ...all(3), [1, 'A1'], [1, 'A2'])
    .when(confirm)
    .then([]);

  // Fills 1 and 2 settled, fill 3 partly: confirm through 2.
  const { state } = given(t, threeFills)
    .settled(...all(1), ...all(2), [3, 'A1'])
    .when(confirm)
    .then([{ type: 'AllocationsConfirmed', throughSeq: 2, caughtUp: false, atMs: NOW + 5 }]);
  const s = openOf(t, state);
  t.equal(s.confirmedThroughSeq, 2);
  t.strictSame(
    s.pending.map((p) => p.seq),
    [3],
    'confirmed fills leave pending',
  );
  t.strictSame(
    decide({ ...confirm, settledThroughSeq: 2 }, s),
    { outcome: 'Accepted', events: [] },
    'a second ConfirmProgress at the same point emits nothing',
  );
  expectInvariant(
    t,
    () => decide({ ...confirm, settledThroughSeq: 4 }, s),
    /settled through 4, beyond the last fill/,
  );

  // Everything settled: through 3.
  given(t, threeFills)
    .settled(...all(1), ...all(2), ...all(3))
    .when(confirm)
    .then([{ type: 'AllocationsConfirmed', throughSeq: 3, caughtUp: true, atMs: NOW + 5 }]);

  // After recovery (the outbox is volatile) the watermark alone is the truth.
  const recovered = replay([
    ...threeFills,
    { type: 'AllocationsConfirmed', throughSeq: 2, caughtUp: false, atMs: NOW + 5 },
  ]);
  const r = openOf(t, recovered);
  t.strictSame(
    Outbox.fromPending(100, r.confirmedThroughSeq, r.pending)
      .openLines()
      .map((l) => [l.seq, l.accountId]),
    [
      [3, 'A1'],
      [3, 'A2'],
      [3, 'A3'],
    ],
  );
  // A stale confirmation is a no-op.
  const stale = evolve(recovered, {
    type: 'AllocationsConfirmed',
    throughSeq: 1,
    caughtUp: false,
    atMs: NOW + 6,
  });
  t.equal(stale, recovered);
});

t.test('ConfirmProgress on Empty emits nothing', async (t) => {
  given(t, []).when(confirm).then([]);
});

// ---------------------------------------------------------------- property

/** mulberry32: a small seeded PRNG, so a failing run names its seed. */
function prng(seed: number): (n: number) => number {
  let a = seed >>> 0;
  return (n: number) => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = Math.imul(a ^ (a >>> 15), 1 | a);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) % n;
  };
}

t.test('random fills through decide + evolve conserve quantity and respect targets', async (t) => {
  const scenarios = 300;
  let acceptedFills = 0;
  let completed = 0;
  for (let seed = 1; seed <= scenarios; seed++) {
    const rnd = prng(seed);
    const lotSize = [1n, 10n, 100n][rnd(3)] ?? 1n;
    const n = 1 + rnd(6);
    const targets = Array.from({ length: n }, (_, i) => ({
      accountId: `AC${String(i).padStart(2, '0')}`,
      // Mostly whole lots, sometimes an odd lot.
      quantity: BigInt(1 + rnd(20)) * lotSize + (rnd(4) === 0 ? BigInt(rnd(Number(lotSize))) : 0n),
    }));
    const d: BlockOrderDef = { ...def, blockOrderId: `BO-${seed}`, lotSize, targets };
    const total = totalTarget(d);
    let state = replay([{ type: 'BlockOrderOpened', def: d, atMs: NOW }]);
    // An independent model of what each account should have been sent.
    const model = new Map(targets.map((x) => [x.accountId, { got: 0n, lastSeq: 0 }]));
    let accounts = new Map<string, AccountState>(
      targets.map((x) => {
        const opening = decideAccount(
          {
            type: 'Open',
            def: { accountId: x.accountId, cashMinor: 0n, positions: {} },
            nowMs: NOW,
          },
          initialAccount(),
        );
        return [x.accountId, opening.events.reduce(evolveAccount, initialAccount())];
      }),
    );
    let sumFills = 0n;
    let seq = 1;
    for (let step = 0; step < 40 && sumFills < total; step++) {
      const remaining = total - sumFills;
      const last = rnd(5) === 0; // sometimes complete the order in one go
      const quantity = last
        ? remaining
        : BigInt(1 + rnd(Number(remaining > 300n ? 300n : remaining)));
      const f = fill(seq, quantity, {
        blockOrderId: d.blockOrderId,
        price: BigInt(1 + rnd(1_000_000_000)),
      });
      const at = `seed ${seed} seq ${seq}`;

      // An overfill attempt at the same seq is rejected and emits nothing.
      const over = decide(allocateCmd({ ...f, quantity: remaining + 1n }), state);
      if (over.outcome !== 'Rejected' || over.reason !== 'OVERFILL' || over.events.length !== 0) {
        t.fail(`${at}: overfill not rejected: ${over.outcome}`);
        return;
      }

      const decision = decide(allocateCmd(f), state);
      const event = decision.events[0];
      if (
        decision.outcome !== 'Accepted' ||
        event?.type !== 'FillAllocated' ||
        decision.events.length !== 1
      ) {
        t.fail(
          `${at}: not accepted: ${JSON.stringify(decision, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}` : v))}`,
        );
        return;
      }
      const lineSum = event.lines.reduce((s, l) => s + l.quantity, 0n);
      if (lineSum !== quantity) {
        t.fail(`${at}: lines sum to ${lineSum}, fill is ${quantity}`);
        return;
      }
      state = evolve(state, event);
      sumFills += quantity;
      const s = openOf(t, state);
      const pending = s.pending.at(-1);
      for (const line of event.lines) {
        const m = model.get(line.accountId);
        const target = targets.find((x) => x.accountId === line.accountId)?.quantity;
        if (m === undefined || target === undefined || line.quantity <= 0n) {
          t.fail(`${at}: bad line ${line.accountId} ${line.quantity}`);
          return;
        }
        const pl = pending?.lines.find((l) => l.accountId === line.accountId);
        if (pl?.prevSeq !== m.lastSeq) {
          t.fail(`${at}: ${line.accountId} prevSeq ${pl?.prevSeq}, expected ${m.lastSeq}`);
          return;
        }
        // Deliver to the account: it must apply it (no GAP, no DUPLICATE).
        const acct = accounts.get(line.accountId) ?? initialAccount();
        const applied = decideAccount(
          {
            type: 'Apply',
            allocation: {
              blockOrderId: d.blockOrderId,
              fillSeq: seq,
              prevSeq: pl.prevSeq,
              securityId: d.securityId,
              side: d.side,
              quantity: line.quantity,
              price: f.price,
            },
            nowMs: NOW,
          },
          acct,
        );
        if (applied.outcome !== 'APPLIED') {
          t.fail(`${at}: account ${line.accountId} answered ${applied.outcome}`);
          return;
        }
        accounts = new Map(accounts).set(
          line.accountId,
          applied.events.reduce(evolveAccount, acct),
        );
        m.got += line.quantity;
        m.lastSeq = seq;
        if (m.got > target) {
          t.fail(`${at}: ${line.accountId} got ${m.got} > target ${target}`);
          return;
        }
      }
      const allocatedSum = Object.values(allocatedOf(s)).reduce((a, b) => a + b, 0n);
      if (allocatedSum !== sumFills || s.filledQuantity !== sumFills) {
        t.fail(`${at}: allocated ${allocatedSum}, filled ${s.filledQuantity}, fills ${sumFills}`);
        return;
      }
      acceptedFills++;
      seq++;
    }
    if (sumFills === total) {
      completed++;
      const s = openOf(t, state);
      for (const x of targets) {
        if (allocatedOf(s)[x.accountId] !== x.quantity) {
          t.fail(
            `seed ${seed}: ${x.accountId} ended at ${allocatedOf(s)[x.accountId]}, target ${x.quantity}`,
          );
          return;
        }
        const acct = accounts.get(x.accountId);
        const position = acct?.status === 'Open' ? acct.positions[d.securityId] : undefined;
        if (position !== x.quantity) {
          t.fail(`seed ${seed}: account ${x.accountId} position ${position}, target ${x.quantity}`);
          return;
        }
      }
    }
  }
  t.ok(acceptedFills > scenarios, `${acceptedFills} fills checked`);
  t.ok(completed > scenarios / 2, `${completed} orders completed`);
});

t.test('ids named like Object.prototype members are ordinary ids', async (t) => {
  const odd = fill(1, 500n, { fillId: 'constructor' });
  const { state } = given(t, [opened])
    .when(allocateCmd(odd))
    .then([allocated(odd, { A1: 300n, A2: 150n, A3: 50n })]);
  t.equal((openOf(t, state).pending[0]?.execution as Fill | undefined)?.fillId, 'constructor');
  given(t, [opened, allocated(odd, { A1: 300n, A2: 150n, A3: 50n })])
    .when(repeatCmd(odd, odd))
    .thenOutcome({ outcome: 'Duplicate' });
  const protoDef: BlockOrderDef = {
    ...def,
    targets: [
      { accountId: 'toString', quantity: 100n },
      { accountId: 'valueOf', quantity: 100n },
    ],
  };
  const f = fill(1, 200n);
  given(t, [{ type: 'BlockOrderOpened', def: protoDef, atMs: NOW }])
    .when(allocateCmd(f))
    .then([allocated(f, { toString: 100n, valueOf: 100n })]);
});

t.test('the state keeps no fill ids: it does not grow with the fills once confirmed', async (t) => {
  let state = replay([
    { ...opened, def: { ...def, targets: [{ accountId: 'A1', quantity: 100_000n }] } },
  ]);
  for (let seq = 1; seq <= 300; seq++) {
    state = evolve(state, allocated(fill(seq, 10n), { A1: 10n }));
  }
  state = evolve(state, {
    type: 'AllocationsConfirmed',
    throughSeq: 300,
    caughtUp: true,
    atMs: NOW,
  });
  const s = openOf(t, state);
  t.equal(s.pending.length, 0);
  t.notMatch(
    JSON.stringify(s, (_, v: unknown) => (typeof v === 'bigint' ? String(v) : v)),
    /F-1/,
  );
  // An old fill re-sent under its old sequence: judged against the index's record.
  t.match(decide(repeatCmd(fill(1, 10n), fill(1, 10n)), state), {
    outcome: 'Duplicate',
    events: [],
  });
});
