/**
 * Block order amendments (busts, corrections, cancels), in given-events /
 * when-command / then-events form: state = history.reduce(evolve,
 * initialState()); the decision is decide(command, state). Pure.
 *
 * The shell supplies `target` (the amended fill's current version): here it
 * is computed with versionAfter(<the event that last set the fill's lines>),
 * as the shell's journal lookup does, or with versionOfPending.
 */
import t, { type Test } from 'tap';
import fc from 'fast-check';
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
  type Entry,
  type Fill,
  type OpenState,
} from '../actors/block-order/decider.ts';
import {
  versionAfter,
  versionOfPending,
  type Amendment,
  type FillVersion,
} from '../actors/block-order/amendments.ts';
import { allocateFill } from '../actors/domain/allocation.ts';
import { notionalMinor } from '../actors/domain/money.ts';
import {
  decide as decideAccount,
  evolve as evolveAccount,
  initialState as initialAccount,
  type AccountState,
  type Allocation,
} from '../actors/account/decider.ts';
import { expectInvariant, TEST_PRICE as PRICE } from './helpers/asserts.ts';

// ---------------------------------------------------------------- helpers

const replay = (history: readonly BlockOrderEvent[]): BlockOrderState =>
  history.reduce(evolve, initialState());

function openOf(t: Test, state: BlockOrderState): OpenState {
  if (state.status !== 'Open') {
    t.fail(`expected an open block order, got ${state.status}`);
    throw new Error('not open');
  }
  return state;
}

interface Then {
  decision: Decision;
  /** The state after evolving the decision's events. */
  state: BlockOrderState;
}

/** given(t, history).when(command).then(events) / .thenOutcome(...) / .thenThrows(...) */
function given(t: Test, history: readonly BlockOrderEvent[]) {
  const before = replay(history);
  return {
    when(command: BlockOrderCommand) {
      const run = (): Decision => decide(command, before);
      return {
        then(expected: readonly BlockOrderEvent[]): Then {
          const decision = run();
          t.equal(decision.outcome, 'Accepted', 'outcome');
          t.strictSame(decision.events, expected, 'events');
          return { decision, state: decision.events.reduce(evolve, before) };
        },
        /** A decision that persists nothing: no events, the state is untouched. */
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
}

/** The single event of an accepted decision (the test fails otherwise). */
function onlyEvent(t: Test, decision: Decision): BlockOrderEvent {
  t.equal(decision.outcome, 'Accepted', 'accepted');
  t.equal(decision.events.length, 1, 'one event');
  const event = decision.events[0];
  if (!event) throw new Error('no event');
  return event;
}

/** versionAfter of an event that sets a fill's lines (the test fails otherwise). */
function version(event: BlockOrderEvent): FillVersion {
  const v = versionAfter(event);
  if (!v) throw new Error(`${event.type} sets no fill's lines`);
  return v;
}

const lineMap = (lines: readonly { accountId: string; quantity: bigint }[]) =>
  Object.fromEntries(lines.map((l) => [l.accountId, l.quantity]));

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
const opened: BlockOrderEvent = { type: 'BlockOrderOpened', def, atMs: NOW };

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

const allocated = (f: Fill, lines: Record<string, bigint>, atMs = NOW): BlockOrderEvent => ({
  type: 'FillAllocated',
  fill: f,
  lines: Object.entries(lines).map(([accountId, quantity]) => ({ accountId, quantity })),
  atMs,
});

const allocateCmd = (f: Fill, prior?: Entry | null): BlockOrderCommand => ({
  type: 'AllocateFill',
  fill: f,
  ...(prior !== undefined ? { prior } : {}),
  nowMs: NOW,
});

type Bust = Extract<Amendment, { kind: 'BUST' }>;
type Correction = Extract<Amendment, { kind: 'CORRECTION' }>;
type Cancel = Extract<Amendment, { kind: 'CANCEL' }>;

const head = (seq: number) => ({
  amendmentId: `X-${seq}`,
  blockOrderId: 'BO-1',
  seq,
  executedAtMs: NOW - 5_000 + seq,
});
const bust = (seq: number, fillId: string, over: Partial<Bust> = {}): Bust => ({
  kind: 'BUST',
  ...head(seq),
  fillId,
  ...over,
});
const correction = (
  seq: number,
  fillId: string,
  quantity: bigint,
  price: bigint,
  over: Partial<Correction> = {},
): Correction => ({ kind: 'CORRECTION', ...head(seq), fillId, quantity, price, ...over });
const cancel = (seq: number, over: Partial<Cancel> = {}): Cancel => ({
  kind: 'CANCEL',
  ...head(seq),
  ...over,
});

const AT = NOW + 7;
const amendCmd = (
  amendment: Amendment,
  target?: FillVersion | null,
  prior?: Entry | null,
): BlockOrderCommand => ({
  type: 'Amend',
  amendment,
  ...(target !== undefined ? { target } : {}),
  ...(prior !== undefined ? { prior } : {}),
  nowMs: AT,
});

// Worked by hand (lot 10, remaining A1 600 / A2 300 / A3 100):
// fill 1 = 500: quotas 300, 150, 50, whole lots.
const fill1 = fill(1, 500n);
const fill1Event = allocated(fill1, { A1: 300n, A2: 150n, A3: 50n });
// fill 2 = 130 on 300 / 150 / 50: quotas 78, 39, 13; bases 70, 30, 10, leftover 20 to A2 then A1.
const P2 = 101_260_000n;
const fill2 = fill(2, 130n, { price: P2 });
const fill2Event = allocated(fill2, { A1: 80n, A2: 40n, A3: 10n });
// fill 2' = 20 on 300 / 150 / 50: quotas 12, 6, 2; base 10 for A1, the leftover lot to A2 (6 > 2).
// A3 gets no line: its chain (prevSeq) stays at fill 1.
const small2 = fill(2, 20n, { price: P2 });
const small2Event = allocated(small2, { A1: 10n, A2: 10n });

t.test('the fixtures are what decide gives', async (t) => {
  given(t, [opened]).when(allocateCmd(fill1)).then([fill1Event]);
  given(t, [opened, fill1Event]).when(allocateCmd(fill2)).then([fill2Event]);
  given(t, [opened, fill1Event]).when(allocateCmd(small2)).then([small2Event]);
});

// ---------------------------------------------------------------- bust

t.test('a bust reverses exactly each account share of the fill', async (t) => {
  const history = [opened, fill1Event, small2Event];
  const a = bust(3, 'F-1');
  const { state } = given(t, history)
    .when(amendCmd(a, version(fill1Event)))
    .then([
      {
        type: 'FillBusted',
        amendment: a,
        amended: { fill: fill1, amendsSeq: 1, previousQuantity: 500n, previousPrice: PRICE },
        lines: [
          { accountId: 'A1', previousQuantity: 300n, quantity: 0n },
          { accountId: 'A2', previousQuantity: 150n, quantity: 0n },
          { accountId: 'A3', previousQuantity: 50n, quantity: 0n },
        ],
        atMs: AT,
      },
    ]);
  const s = openOf(t, state);
  // What the order holds without fill 1: fill 2's lines alone.
  t.strictSame(allocatedOf(s), { A1: 10n, A2: 10n }, 'A3 holds nothing of the order');
  t.equal(s.filledQuantity, 20n);
  t.equal(s.filledNotional, 20n * P2);
  t.equal(s.busts, 1);
  t.equal(s.corrections, 0);
  t.equal(s.fills, 2, 'a busted fill still counts: it happened');
  t.equal(s.lastFillSeq, 3);
  // The pending entry: the bust, what it amends, lines at the fill's price with what each had.
  const p = s.pending.at(-1);
  t.equal(p?.seq, 3);
  t.strictSame(p?.execution, a);
  t.equal(p?.price, PRICE);
  t.strictSame(p?.amended, {
    fill: fill1,
    amendsSeq: 1,
    previousQuantity: 500n,
    previousPrice: PRICE,
  });
  // prevSeq continues each account's chain: A1 and A2 were last sent seq 2, A3 seq 1.
  t.strictSame(p?.lines, [
    { accountId: 'A1', previousQuantity: 300n, quantity: 0n, prevSeq: 2 },
    { accountId: 'A2', previousQuantity: 150n, quantity: 0n, prevSeq: 2 },
    { accountId: 'A3', previousQuantity: 50n, quantity: 0n, prevSeq: 1 },
  ]);
  t.strictSame(s.lastSeq, [3, 3, 3]);
  // The version the journal and the pending entry report: busted, no lines.
  const expected = { fill: fill1, seq: 3, quantity: 0n, price: PRICE, busted: true, lines: [] };
  t.strictSame(
    versionAfter(onlyEvent(t, decide(amendCmd(a, version(fill1Event)), replay(history)))),
    expected,
  );
  t.strictSame(p && versionOfPending(p), expected);
});

t.test('a bust of the latest fill returns the order to where it was before it', async (t) => {
  const before = openOf(t, replay([opened, fill1Event]));
  const { state } = given(t, [opened, fill1Event, fill2Event])
    .when(amendCmd(bust(3, 'F-2'), version(fill2Event)))
    .then([
      {
        type: 'FillBusted',
        amendment: bust(3, 'F-2'),
        amended: { fill: fill2, amendsSeq: 2, previousQuantity: 130n, previousPrice: P2 },
        lines: [
          { accountId: 'A1', previousQuantity: 80n, quantity: 0n },
          { accountId: 'A2', previousQuantity: 40n, quantity: 0n },
          { accountId: 'A3', previousQuantity: 10n, quantity: 0n },
        ],
        atMs: AT,
      },
    ]);
  const s = openOf(t, state);
  t.strictSame(allocatedOf(s), allocatedOf(before));
  t.equal(s.filledQuantity, before.filledQuantity);
  t.equal(s.filledNotional, before.filledNotional);
  t.equal(s.busts, 1);
  // The order takes fills again: what fill 2 took is remaining again.
  given(t, [
    opened,
    fill1Event,
    fill2Event,
    ...decide(
      amendCmd(bust(3, 'F-2'), version(fill2Event)),
      replay([opened, fill1Event, fill2Event]),
    ).events,
  ])
    .when(allocateCmd(fill(4, 500n)))
    .then([allocated(fill(4, 500n), { A1: 300n, A2: 150n, A3: 50n })]);
});

t.test('a bust or correction of a fill the order never took is UNKNOWN_FILL', async (t) => {
  const history = [opened, fill1Event];
  given(t, history)
    .when(amendCmd(bust(2, 'F-9'), null))
    .thenOutcome({ outcome: 'Rejected', reason: FillRejection.UnknownFill, detail: /F-9 on BO-1/ });
  given(t, history)
    .when(amendCmd(correction(2, 'F-9', 10n, PRICE), null))
    .thenOutcome({ outcome: 'Rejected', reason: FillRejection.UnknownFill });
  // A fill of another order under the same id (the journal found it elsewhere).
  const elsewhere = version(allocated(fill(1, 500n, { blockOrderId: 'BO-2' }), { B1: 500n }));
  given(t, history)
    .when(amendCmd(bust(2, 'F-1'), elsewhere))
    .thenOutcome({ outcome: 'Rejected', reason: FillRejection.UnknownFill });
  given(t, history)
    .when(amendCmd(correction(2, 'F-1', 10n, PRICE), elsewhere))
    .thenOutcome({ outcome: 'Rejected', reason: FillRejection.UnknownFill });
});

t.test('a busted fill can be neither busted nor corrected again: ALREADY_BUSTED', async (t) => {
  const busted = onlyEvent(
    t,
    decide(amendCmd(bust(2, 'F-1'), version(fill1Event)), replay([opened, fill1Event])),
  );
  const history = [opened, fill1Event, busted];
  given(t, history)
    .when(amendCmd(bust(3, 'F-1'), version(busted)))
    .thenOutcome({
      outcome: 'Rejected',
      reason: FillRejection.AlreadyBusted,
      detail: /F-1 was busted at seq 2/,
    });
  given(t, history)
    .when(amendCmd(correction(3, 'F-1', 100n, PRICE), version(busted)))
    .thenOutcome({ outcome: 'Rejected', reason: FillRejection.AlreadyBusted });
  // The same, with the version the pending entry reports.
  const pending = openOf(t, replay(history)).pending.at(-1);
  given(t, history)
    .when(amendCmd(correction(3, 'F-1', 100n, PRICE), pending && versionOfPending(pending)))
    .thenOutcome({ outcome: 'Rejected', reason: FillRejection.AlreadyBusted });
});

// ---------------------------------------------------------------- correction

t.test('a price-only correction keeps every quantity and re-prices it', async (t) => {
  const P3 = 101_300_001n;
  const a = correction(3, 'F-2', 130n, P3);
  const before = openOf(t, replay([opened, fill1Event, fill2Event]));
  const { state } = given(t, [opened, fill1Event, fill2Event])
    .when(amendCmd(a, version(fill2Event)))
    .then([
      {
        type: 'FillCorrected',
        amendment: a,
        amended: { fill: fill2, amendsSeq: 2, previousQuantity: 130n, previousPrice: P2 },
        lines: [
          { accountId: 'A1', previousQuantity: 80n, quantity: 80n },
          { accountId: 'A2', previousQuantity: 40n, quantity: 40n },
          { accountId: 'A3', previousQuantity: 10n, quantity: 10n },
        ],
        atMs: AT,
      },
    ]);
  const s = openOf(t, state);
  t.strictSame(allocatedOf(s), allocatedOf(before));
  t.equal(s.filledQuantity, before.filledQuantity);
  t.equal(s.filledNotional - before.filledNotional, 130n * (P3 - P2));
  t.equal(s.filledNotional, 500n * PRICE + 130n * P3);
  t.equal(s.corrections, 1);
  t.equal(s.busts, 0);
  t.equal(s.pending.at(-1)?.price, P3, 'the lines go out at the new price');
  const v = { fill: fill2, seq: 3, quantity: 130n, price: P3, busted: false };
  const lines = [
    { accountId: 'A1', quantity: 80n },
    { accountId: 'A2', quantity: 40n },
    { accountId: 'A3', quantity: 10n },
  ];
  const p = s.pending.at(-1);
  t.strictSame(p && versionOfPending(p), { ...v, lines });
  // A price-down correction moves the notional down.
  const down = correction(3, 'F-2', 130n, P2 - 5n);
  const { state: d } = given(t, [opened, fill1Event, fill2Event])
    .when(amendCmd(down, version(fill2Event)))
    .then([
      {
        type: 'FillCorrected',
        amendment: down,
        amended: { fill: fill2, amendsSeq: 2, previousQuantity: 130n, previousPrice: P2 },
        lines: [
          { accountId: 'A1', previousQuantity: 80n, quantity: 80n },
          { accountId: 'A2', previousQuantity: 40n, quantity: 40n },
          { accountId: 'A3', previousQuantity: 10n, quantity: 10n },
        ],
        atMs: AT,
      },
    ]);
  t.equal(openOf(t, d).filledNotional, before.filledNotional - 130n * 5n);
});

t.test(
  'a quantity correction of the latest fill allocates as if it had arrived corrected',
  async (t) => {
    // fill 2 = 170 (not 130) on 300 / 150 / 50: quotas 102, 51, 17; bases 100, 50, 10,
    // the leftover lot to A3 (fraction 7 > 2 > 1).
    const P3 = 101_255_000n;
    const a = correction(3, 'F-2', 170n, P3);
    const { state } = given(t, [opened, fill1Event, fill2Event])
      .when(amendCmd(a, version(fill2Event)))
      .then([
        {
          type: 'FillCorrected',
          amendment: a,
          amended: { fill: fill2, amendsSeq: 2, previousQuantity: 130n, previousPrice: P2 },
          lines: [
            { accountId: 'A1', previousQuantity: 80n, quantity: 100n },
            { accountId: 'A2', previousQuantity: 40n, quantity: 50n },
            { accountId: 'A3', previousQuantity: 10n, quantity: 20n },
          ],
          atMs: AT,
        },
      ]);
    // The same as allocateFill for a fresh fill of 170 at seq 2 after fill 1.
    const before = openOf(t, replay([opened, fill1Event]));
    const fresh = allocateFill({
      lotSize: def.lotSize,
      fillQuantity: 170n,
      fillSeq: 2,
      accounts: def.targets.map((x) => ({
        accountId: x.accountId,
        remaining: x.quantity - (allocatedOf(before)[x.accountId] ?? 0n),
      })),
    });
    t.strictSame(fresh, {
      ok: true,
      lines: [
        { accountId: 'A1', quantity: 100n },
        { accountId: 'A2', quantity: 50n },
        { accountId: 'A3', quantity: 20n },
      ],
    });
    // And the same as the history where fill 2 arrived corrected.
    const corrected2 = fill(2, 170n, { price: P3 });
    const arrived = given(t, [opened, fill1Event])
      .when(allocateCmd(corrected2))
      .then([allocated(corrected2, { A1: 100n, A2: 50n, A3: 20n })]).state;
    const s = openOf(t, state);
    const r = openOf(t, arrived);
    t.strictSame(allocatedOf(s), allocatedOf(r));
    t.equal(s.filledQuantity, r.filledQuantity);
    t.equal(s.filledNotional, r.filledNotional);
    t.equal(s.filledNotional, 500n * PRICE + 170n * P3);
    const p = s.pending.at(-1);
    t.strictSame(p && versionOfPending(p)?.lines, [
      { accountId: 'A1', quantity: 100n },
      { accountId: 'A2', quantity: 50n },
      { accountId: 'A3', quantity: 20n },
    ]);
  },
);

t.test('a quantity correction keeps the fill seq for the tie rotation', async (t) => {
  // Two equal accounts, lot 10. Fill 1 = 10: quotas 5 / 5, a tie; rotation 1 puts B2 first.
  // Corrected to 30 at seq 2: quotas 15 / 15, bases 10 / 10, the tie again: with the fill's
  // seq (1) B2 gets the lot; with the correction's seq (2) B1 would.
  const tieDef: BlockOrderDef = {
    ...def,
    targets: [
      { accountId: 'B1', quantity: 100n },
      { accountId: 'B2', quantity: 100n },
    ],
  };
  const tieOpened: BlockOrderEvent = { type: 'BlockOrderOpened', def: tieDef, atMs: NOW };
  const f1 = fill(1, 10n);
  const f1Event = allocated(f1, { B2: 10n });
  given(t, [tieOpened]).when(allocateCmd(f1)).then([f1Event]);
  const a = correction(2, 'F-1', 30n, PRICE);
  const { state } = given(t, [tieOpened, f1Event])
    .when(amendCmd(a, version(f1Event)))
    .then([
      {
        type: 'FillCorrected',
        amendment: a,
        amended: { fill: f1, amendsSeq: 1, previousQuantity: 10n, previousPrice: PRICE },
        lines: [
          { accountId: 'B1', previousQuantity: 0n, quantity: 10n },
          { accountId: 'B2', previousQuantity: 10n, quantity: 20n },
        ],
        atMs: AT,
      },
    ]);
  const arrived = replay([
    tieOpened,
    ...decide(allocateCmd(fill(1, 30n)), replay([tieOpened])).events,
  ]);
  t.strictSame(allocatedOf(openOf(t, state)), allocatedOf(openOf(t, arrived)));
  t.strictSame(allocatedOf(openOf(t, arrived)), { B1: 10n, B2: 20n });
  // B1 never had a line: its chain starts at 0, and the line says it had 0 of the fill.
  t.strictSame(openOf(t, state).pending.at(-1)?.lines, [
    { accountId: 'B1', previousQuantity: 0n, quantity: 10n, prevSeq: 0 },
    { accountId: 'B2', previousQuantity: 10n, quantity: 20n, prevSeq: 1 },
  ]);
});

t.test('a correction may not fill beyond the order: CORRECTION_OVERFILL', async (t) => {
  const history = [opened, fill1Event, fill2Event]; // 630 filled, 370 remaining
  given(t, history)
    .when(amendCmd(correction(3, 'F-2', 130n + 371n, P2), version(fill2Event)))
    .thenOutcome({
      outcome: 'Rejected',
      reason: FillRejection.CorrectionOverfill,
      detail: /correction of F-2/,
    });
  // Exactly the remaining is fine: every target completes.
  const { state } = given(t, history)
    .when(amendCmd(correction(3, 'F-2', 500n, P2), version(fill2Event)))
    .then([
      {
        type: 'FillCorrected',
        amendment: correction(3, 'F-2', 500n, P2),
        amended: { fill: fill2, amendsSeq: 2, previousQuantity: 130n, previousPrice: P2 },
        lines: [
          { accountId: 'A1', previousQuantity: 80n, quantity: 300n },
          { accountId: 'A2', previousQuantity: 40n, quantity: 150n },
          { accountId: 'A3', previousQuantity: 10n, quantity: 50n },
        ],
        atMs: AT,
      },
    ]);
  t.strictSame(allocatedOf(openOf(t, state)), { A1: 600n, A2: 300n, A3: 100n });
  t.equal(openOf(t, state).filledQuantity, totalTarget(def));
});

t.test('a correction to what the fill already is: CORRECTION_CHANGES_NOTHING', async (t) => {
  given(t, [opened, fill1Event, fill2Event])
    .when(amendCmd(correction(3, 'F-2', 130n, P2), version(fill2Event)))
    .thenOutcome({
      outcome: 'Rejected',
      reason: FillRejection.CorrectionChangesNothing,
      detail: /F-2 is already 130 at 101260000/,
    });
  // Against the corrected version: the original quantity and price are a change again.
  const corrected = onlyEvent(
    t,
    decide(
      amendCmd(correction(3, 'F-2', 120n, P2 + 1n), version(fill2Event)),
      replay([opened, fill1Event, fill2Event]),
    ),
  );
  const history = [opened, fill1Event, fill2Event, corrected];
  given(t, history)
    .when(amendCmd(correction(4, 'F-2', 120n, P2 + 1n), version(corrected)))
    .thenOutcome({ outcome: 'Rejected', reason: FillRejection.CorrectionChangesNothing });
  const back = given(t, history)
    .when(amendCmd(correction(4, 'F-2', 130n, P2), version(corrected)))
    .then([
      {
        type: 'FillCorrected',
        amendment: correction(4, 'F-2', 130n, P2),
        amended: { fill: fill2, amendsSeq: 3, previousQuantity: 120n, previousPrice: P2 + 1n },
        lines: [
          { accountId: 'A1', previousQuantity: 70n, quantity: 80n },
          { accountId: 'A2', previousQuantity: 40n, quantity: 40n },
          { accountId: 'A3', previousQuantity: 10n, quantity: 10n },
        ],
        atMs: AT,
      },
    ]).state;
  const original = openOf(t, replay([opened, fill1Event, fill2Event]));
  t.strictSame(allocatedOf(openOf(t, back)), allocatedOf(original));
  t.equal(openOf(t, back).filledNotional, original.filledNotional);
  t.equal(openOf(t, back).corrections, 2);
});

t.test('a correction keeps a positive quantity and price', async (t) => {
  const history = [opened, fill1Event];
  for (const quantity of [0n, -10n]) {
    given(t, history)
      .when(amendCmd(correction(2, 'F-1', quantity, PRICE + 1n), version(fill1Event)))
      .thenOutcome({
        outcome: 'Rejected',
        reason: FillRejection.NonPositiveQuantity,
        detail: /a bust removes a fill/,
      });
  }
  for (const price of [0n, -1n]) {
    given(t, history)
      .when(amendCmd(correction(2, 'F-1', 100n, price), version(fill1Event)))
      .thenOutcome({ outcome: 'Rejected', reason: FillRejection.NonPositivePrice });
  }
});

t.test('a correction followed by a bust reverses the corrected lines', async (t) => {
  const P3 = 101_255_000n;
  const corrected = onlyEvent(
    t,
    decide(
      amendCmd(correction(3, 'F-2', 170n, P3), version(fill2Event)),
      replay([opened, fill1Event, fill2Event]),
    ),
  );
  t.strictSame(version(corrected), {
    fill: fill2,
    seq: 3,
    quantity: 170n,
    price: P3,
    busted: false,
    lines: [
      { accountId: 'A1', quantity: 100n },
      { accountId: 'A2', quantity: 50n },
      { accountId: 'A3', quantity: 20n },
    ],
  });
  const history = [opened, fill1Event, fill2Event, corrected];
  const a = bust(4, 'F-2');
  const { state } = given(t, history)
    .when(amendCmd(a, version(corrected)))
    .then([
      {
        type: 'FillBusted',
        amendment: a,
        amended: { fill: fill2, amendsSeq: 3, previousQuantity: 170n, previousPrice: P3 },
        lines: [
          { accountId: 'A1', previousQuantity: 100n, quantity: 0n },
          { accountId: 'A2', previousQuantity: 50n, quantity: 0n },
          { accountId: 'A3', previousQuantity: 20n, quantity: 0n },
        ],
        atMs: AT,
      },
    ]);
  const s = openOf(t, state);
  const only1 = openOf(t, replay([opened, fill1Event]));
  t.strictSame(allocatedOf(s), allocatedOf(only1));
  t.equal(s.filledQuantity, 500n);
  t.equal(s.filledNotional, 500n * PRICE);
  t.equal(s.busts, 1);
  t.equal(s.corrections, 1);
  // The bust's lines go out at the corrected price, amending the correction's seq.
  t.equal(s.pending.at(-1)?.price, P3);
  t.equal(s.pending.at(-1)?.amended?.amendsSeq, 3);
  t.strictSame(
    s.pending.at(-1)?.lines.map((l) => l.prevSeq),
    [3, 3, 3],
  );
});

// ---------------------------------------------------------------- cancel

t.test('a cancel takes the unfilled remainder off the order', async (t) => {
  const history = [opened, fill1Event, fill2Event];
  const a = cancel(3);
  const { state } = given(t, history)
    .when(amendCmd(a))
    .then([{ type: 'OrderCancelled', amendment: a, cancelledQuantity: 370n, atMs: AT }]);
  const s = openOf(t, state);
  const before = openOf(t, replay(history));
  t.equal(s.cancelledQuantity, 370n);
  t.equal(s.lastFillSeq, 3);
  t.strictSame(allocatedOf(s), allocatedOf(before));
  t.equal(s.filledQuantity, 630n);
  t.equal(s.filledNotional, before.filledNotional);
  t.strictSame(s.lastSeq, before.lastSeq, 'no account is sent a line');
  t.strictSame(s.pending.at(-1), { seq: 3, execution: a, price: 0n, lines: [] });
  const p = s.pending.at(-1);
  t.equal(p && versionOfPending(p), undefined);
  t.equal(versionAfter(onlyEvent(t, decide(amendCmd(a), replay(history)))), undefined);
  // A cancel of a filled order cancels nothing, but is recorded.
  const full = [...history, allocated(fill(3, 370n), { A1: 220n, A2: 110n, A3: 40n })];
  given(t, full)
    .when(amendCmd(cancel(4)))
    .then([{ type: 'OrderCancelled', amendment: cancel(4), cancelledQuantity: 0n, atMs: AT }]);
});

t.test('after a cancel: no fill, no second cancel, corrections only downward', async (t) => {
  const cancelled: BlockOrderEvent = {
    type: 'OrderCancelled',
    amendment: cancel(3),
    cancelledQuantity: 370n,
    atMs: NOW,
  };
  const history = [opened, fill1Event, fill2Event, cancelled];
  given(t, history)
    .when(allocateCmd(fill(4, 10n)))
    .thenOutcome({ outcome: 'Rejected', reason: FillRejection.OrderCancelled });
  given(t, history)
    .when(amendCmd(cancel(4)))
    .thenOutcome({ outcome: 'Rejected', reason: FillRejection.AlreadyCancelled });
  given(t, history)
    .when(amendCmd(correction(4, 'F-2', 140n, P2), version(fill2Event)))
    .thenOutcome({
      outcome: 'Rejected',
      reason: FillRejection.CorrectionOverfill,
      detail: /remainder is cancelled: fill F-2 can only be lowered/,
    });
  // Lowered: 100 on 300 / 150 / 50 (with fill 2's own lines given back) is 60 / 30 / 10.
  const down = correction(4, 'F-2', 100n, P2);
  const { state } = given(t, history)
    .when(amendCmd(down, version(fill2Event)))
    .then([
      {
        type: 'FillCorrected',
        amendment: down,
        amended: { fill: fill2, amendsSeq: 2, previousQuantity: 130n, previousPrice: P2 },
        lines: [
          { accountId: 'A1', previousQuantity: 80n, quantity: 60n },
          { accountId: 'A2', previousQuantity: 40n, quantity: 30n },
          { accountId: 'A3', previousQuantity: 10n, quantity: 10n },
        ],
        atMs: AT,
      },
    ]);
  const s = openOf(t, state);
  t.equal(s.filledQuantity, 600n);
  t.equal(s.cancelledQuantity, 370n, 'the cancel is not re-measured');
  // Lines chain on the fills, not on the cancel (which sent no line).
  t.strictSame(
    s.pending.at(-1)?.lines.map((l) => l.prevSeq),
    [2, 2, 2],
  );
  // Price only and busts stay possible.
  given(t, history)
    .when(amendCmd(correction(4, 'F-2', 130n, P2 + 1n), version(fill2Event)))
    .then([
      {
        type: 'FillCorrected',
        amendment: correction(4, 'F-2', 130n, P2 + 1n),
        amended: { fill: fill2, amendsSeq: 2, previousQuantity: 130n, previousPrice: P2 },
        lines: [
          { accountId: 'A1', previousQuantity: 80n, quantity: 80n },
          { accountId: 'A2', previousQuantity: 40n, quantity: 40n },
          { accountId: 'A3', previousQuantity: 10n, quantity: 10n },
        ],
        atMs: AT,
      },
    ]);
  t.match(decide(amendCmd(bust(4, 'F-1'), version(fill1Event)), replay(history)), {
    outcome: 'Accepted',
  });
  // Still no fill after the lowered correction: the remainder stays cancelled.
  given(t, [...history, ...decide(amendCmd(down, version(fill2Event)), replay(history)).events])
    .when(allocateCmd(fill(5, 10n)))
    .thenOutcome({ outcome: 'Rejected', reason: FillRejection.OrderCancelled });
});

// ---------------------------------------------------------------- sequence

t.test('an amendment at an applied seq: the same one is a Duplicate', async (t) => {
  const a = bust(2, 'F-1');
  const busted = onlyEvent(
    t,
    decide(amendCmd(a, version(fill1Event)), replay([opened, fill1Event])),
  );
  const history = [opened, fill1Event, busted];
  given(t, history)
    .when(amendCmd(a, undefined, a))
    .thenOutcome({ outcome: 'Duplicate', reason: /bust X-2 already applied as seq 2/ });
  const c = cancel(3);
  given(t, [
    ...history,
    { type: 'OrderCancelled', amendment: c, cancelledQuantity: 1000n, atMs: NOW },
  ])
    .when(amendCmd(c, undefined, c))
    .thenOutcome({ outcome: 'Duplicate' });
  const k = correction(2, 'F-1', 400n, PRICE);
  const corrected = onlyEvent(
    t,
    decide(amendCmd(k, version(fill1Event)), replay([opened, fill1Event])),
  );
  given(t, [opened, fill1Event, corrected])
    .when(amendCmd({ ...k }, undefined, k))
    .thenOutcome({ outcome: 'Duplicate' });
});

t.test('anything else at an applied seq is CONFLICTING_EXECUTION', async (t) => {
  const a = bust(2, 'F-1');
  const busted = onlyEvent(
    t,
    decide(amendCmd(a, version(fill1Event)), replay([opened, fill1Event])),
  );
  const history = [opened, fill1Event, busted];
  const conflict = (detail: RegExp) => ({
    outcome: 'Rejected',
    reason: FillRejection.ConflictingExecution,
    detail,
    existing: a,
  });
  given(t, history)
    .when(amendCmd(bust(2, 'F-1', { amendmentId: 'X-other' }), undefined, a))
    .thenOutcome(
      conflict(/seq 2 is already applied as bust X-2; this message differs in amendmentId$/),
    );
  given(t, history)
    .when(amendCmd(bust(2, 'F-1', { executedAtMs: 1 }), undefined, a))
    .thenOutcome(conflict(/differs in executedAtMs$/));
  given(t, history)
    .when(amendCmd(correction(2, 'F-1', 100n, PRICE), undefined, a))
    .thenOutcome(conflict(/differs in kind, price, quantity$/));
  given(t, history)
    .when(amendCmd(cancel(2), undefined, a))
    .thenOutcome(conflict(/differs in fillId, kind$/));
  // A fill at the amendment's seq, and an amendment at a fill's seq.
  given(t, history)
    .when(allocateCmd(fill(2, 10n), a))
    .thenOutcome(conflict(/as bust X-2; this message differs in kind$/));
  given(t, history)
    .when(amendCmd(bust(1, 'F-1'), undefined, fill1))
    .thenOutcome({
      outcome: 'Rejected',
      reason: FillRejection.ConflictingExecution,
      detail: /seq 1 is already applied as fill F-1; this message differs in kind$/,
      existing: fill1,
    });
  // Nothing on record to compare with: raised, never acked away.
  given(t, history)
    .when(amendCmd(a, undefined, null))
    .thenOutcome({
      outcome: 'Rejected',
      reason: FillRejection.ConflictingExecution,
      detail: /no record/,
    });
  // The shell must look the prior up.
  given(t, history)
    .when(amendCmd(a))
    .thenThrows(/must look up its execution/);
});

t.test('a seq gap is OUT_OF_ORDER with the seq the order takes next', async (t) => {
  given(t, [opened, fill1Event])
    .when(amendCmd(bust(4, 'F-1'), version(fill1Event)))
    .thenOutcome({
      outcome: 'Rejected',
      reason: FillRejection.OutOfOrder,
      detail: /expected seq 2, got 4/,
      expectedSeq: 2,
    });
  given(t, [opened, fill1Event, fill2Event])
    .when(amendCmd(cancel(5)))
    .thenOutcome({ outcome: 'Rejected', reason: FillRejection.OutOfOrder, expectedSeq: 3 });
  // A rejected amendment does not take its seq: the next message at that seq is judged afresh.
  const history = [opened, fill1Event];
  given(t, history)
    .when(amendCmd(correction(2, 'F-1', 1001n, PRICE), version(fill1Event)))
    .thenOutcome({ outcome: 'Rejected', reason: FillRejection.CorrectionOverfill });
  given(t, history).when(allocateCmd(fill2)).then([fill2Event]);
});

t.test('amendments of another order or of no order are refused', async (t) => {
  given(t, [])
    .when(amendCmd(cancel(1)))
    .thenOutcome({ outcome: 'Rejected', reason: FillRejection.UnknownBlockOrder });
  given(t, [opened, fill1Event])
    .when(amendCmd(bust(2, 'F-1', { blockOrderId: 'BO-2' }), version(fill1Event)))
    .thenOutcome({ outcome: 'Rejected', reason: FillRejection.WrongBlockOrder, detail: /BO-2/ });
});

t.test('broken preconditions and impossible histories crash', async (t) => {
  const history = [opened, fill1Event];
  // A bust or correction at a new seq needs the looked-up version.
  given(t, history)
    .when(amendCmd(bust(2, 'F-1')))
    .thenThrows(/must look up its fill/);
  // The version of another fill.
  given(t, history)
    .when(amendCmd(bust(2, 'F-1'), version(fill2Event)))
    .thenThrows(/looked up F-2 for F-1/);
  const busted = onlyEvent(
    t,
    decide(amendCmd(bust(2, 'F-1'), version(fill1Event)), replay(history)),
  );
  if (busted.type !== 'FillBusted') throw new Error('not a bust');
  // Lines that are not the whole fill.
  expectInvariant(
    t,
    () =>
      replay([...history, { ...busted, lines: busted.lines.filter((l) => l.accountId !== 'A3') }]),
    /lines had 450, fill had 500/,
  );
  // More given back than an account holds.
  expectInvariant(
    t,
    () => replay([opened, allocated(fill1, { A1: 290n, A2: 160n, A3: 50n }), busted]),
    /A1 would /,
  );
  expectInvariant(t, () => replay([opened, busted]), /amendment seq 2 after 0/);
  expectInvariant(t, () => replay([busted]), /FillBusted before BlockOrderOpened/);
  const c: BlockOrderEvent = {
    type: 'OrderCancelled',
    amendment: cancel(2),
    cancelledQuantity: 500n,
    atMs: NOW,
  };
  expectInvariant(
    t,
    () => replay([...history, c, { ...c, amendment: cancel(3) }]),
    /OrderCancelled on a cancelled order/,
  );
});

// ---------------------------------------------------------------- property

// Replay a failure with FC_SEED=<seed printed in the report>.
const seedParams = process.env.FC_SEED === undefined ? {} : { seed: Number(process.env.FC_SEED) };

type OpKind = 'fill' | 'bust' | 'correct' | 'reprice' | 'cancel' | 'unknown' | 'confirm';
interface Op {
  kind: OpKind;
  a: number;
  b: number;
  c: number;
}

const opArb: fc.Arbitrary<Op> = fc.record({
  kind: fc.constantFrom<OpKind>(
    'fill',
    'fill',
    'fill',
    'bust',
    'correct',
    'correct',
    'reprice',
    'cancel',
    'unknown',
    'confirm',
  ),
  a: fc.nat(),
  b: fc.nat(),
  c: fc.nat(),
});

const scenarioArb = fc.record({
  lotSize: fc.constantFrom(1n, 10n, 100n),
  targets: fc.array(
    fc.record({ lots: fc.integer({ min: 1, max: 20 }), odd: fc.integer({ min: 0, max: 99 }) }),
    { minLength: 1, maxLength: 5 },
  ),
  ops: fc.array(opArb, { minLength: 1, maxLength: 40 }),
});

/** What the model expects of a command: accepted, or rejected for this reason. */
type Expect = { accepted: true } | { accepted: false; reason: FillRejection };

t.test(
  'random histories of fills, busts, corrections and a cancel keep the books whole',
  async (t) => {
    let accepted = 0;
    let rejected = 0;
    const kinds = new Map<string, number>();
    const details = fc.check(
      fc.property(scenarioArb, ({ lotSize, targets: raw, ops }) => {
        const targets = raw.map((x, i) => ({
          accountId: `AC${i}`,
          quantity: BigInt(x.lots) * lotSize + (x.odd % 4 === 0 ? BigInt(x.odd) % lotSize : 0n),
        }));
        const d: BlockOrderDef = { ...def, blockOrderId: 'BO-P', lotSize, targets };
        const total = totalTarget(d);
        let state = replay([{ type: 'BlockOrderOpened', def: d, atMs: NOW }]);
        // The model: every fill's current version (what the journal lookup answers).
        const versions = new Map<string, FillVersion>();
        const fillIds: string[] = [];
        let cancelled = false;
        let busts = 0;
        let corrections = 0;
        const lastSeq = new Map<string, number>();
        let accounts = new Map<string, AccountState>(
          targets.map((x) => {
            const open = decideAccount(
              {
                type: 'Open',
                def: { accountId: x.accountId, cashMinor: 0n, positions: {} },
                nowMs: NOW,
              },
              initialAccount(),
            );
            return [x.accountId, open.events.reduce(evolveAccount, initialAccount())];
          }),
        );
        const live = () => [...versions.values()].filter((v) => !v.busted);
        const filled = () => live().reduce((s, v) => s + v.quantity, 0n);

        for (const [i, op] of ops.entries()) {
          const s0 = state;
          if (s0.status !== 'Open') throw new Error('not open');
          const seq = s0.lastFillSeq + 1;
          const at = `op ${i} (${op.kind}) at seq ${seq}`;
          if (op.kind === 'confirm') {
            const decision = decide(
              { type: 'ConfirmProgress', settledThroughSeq: s0.lastFillSeq, nowMs: NOW },
              s0,
            );
            state = decision.events.reduce(evolve, s0);
            continue;
          }
          const remaining = total - filled();
          let command: BlockOrderCommand;
          let expect: Expect;
          const pick = (): FillVersion | null => {
            const id = fillIds[op.a % Math.max(1, fillIds.length)];
            return id === undefined ? null : (versions.get(id) ?? null);
          };
          switch (op.kind) {
            case 'fill': {
              const quantity = 1n + (BigInt(op.a) % (remaining + lotSize));
              const f = fill(seq, quantity, {
                fillId: `F-${seq}`,
                blockOrderId: d.blockOrderId,
                price: 1n + BigInt(op.b % 200_000_000),
              });
              command = allocateCmd(f);
              expect = cancelled
                ? { accepted: false, reason: FillRejection.OrderCancelled }
                : quantity > remaining
                  ? { accepted: false, reason: FillRejection.Overfill }
                  : { accepted: true };
              break;
            }
            case 'bust':
            case 'unknown': {
              const target = op.kind === 'unknown' ? null : pick();
              const a = bust(seq, target?.fill.fillId ?? 'F-none', {
                blockOrderId: d.blockOrderId,
              });
              command = amendCmd(a, target);
              expect =
                target === null
                  ? { accepted: false, reason: FillRejection.UnknownFill }
                  : target.busted
                    ? { accepted: false, reason: FillRejection.AlreadyBusted }
                    : { accepted: true };
              break;
            }
            case 'correct':
            case 'reprice': {
              const target = pick();
              if (target === null) continue;
              const quantity =
                op.kind === 'reprice'
                  ? target.quantity
                  : 1n + (BigInt(op.b) % (target.quantity + remaining + lotSize));
              const price =
                op.c % 3 === 0 && op.kind === 'correct'
                  ? target.price
                  : 1n + BigInt(op.c % 200_000_000);
              const a = correction(seq, target.fill.fillId, quantity, price, {
                blockOrderId: d.blockOrderId,
              });
              command = amendCmd(a, target);
              expect = target.busted
                ? { accepted: false, reason: FillRejection.AlreadyBusted }
                : quantity === target.quantity && price === target.price
                  ? { accepted: false, reason: FillRejection.CorrectionChangesNothing }
                  : quantity === target.quantity
                    ? { accepted: true }
                    : cancelled && quantity > target.quantity
                      ? { accepted: false, reason: FillRejection.CorrectionOverfill }
                      : quantity - target.quantity > remaining
                        ? { accepted: false, reason: FillRejection.CorrectionOverfill }
                        : { accepted: true };
              break;
            }
            case 'cancel': {
              command = amendCmd(cancel(seq, { blockOrderId: d.blockOrderId }));
              expect = cancelled
                ? { accepted: false, reason: FillRejection.AlreadyCancelled }
                : { accepted: true };
              break;
            }
            default:
              throw new Error(`op ${String(op.kind)}`);
          }
          const decision = decide(command, s0);
          if (!expect.accepted) {
            if (decision.outcome !== 'Rejected' || decision.reason !== expect.reason)
              throw new Error(
                `${at}: expected ${expect.reason}, got ${decision.outcome} ${'reason' in decision ? decision.reason : ''}`,
              );
            if (decision.events.length !== 0)
              throw new Error(`${at}: a rejection persisted events`);
            rejected++;
            continue;
          }
          if (decision.outcome !== 'Accepted' || decision.events.length !== 1)
            throw new Error(
              `${at}: expected acceptance, got ${decision.outcome} ${'detail' in decision ? decision.detail : ''}`,
            );
          const event = decision.events[0]!;
          kinds.set(event.type, (kinds.get(event.type) ?? 0) + 1);
          accepted++;
          state = evolve(s0, event);
          if (state.status !== 'Open') throw new Error('not open');
          // The model follows the event.
          if (event.type === 'OrderCancelled') {
            cancelled = true;
            if (event.cancelledQuantity !== remaining)
              throw new Error(
                `${at}: cancelled ${event.cancelledQuantity}, remaining ${remaining}`,
              );
          }
          if (event.type === 'FillBusted') busts++;
          if (event.type === 'FillCorrected') corrections++;
          const v = versionAfter(event);
          if (v) {
            if (event.type === 'FillAllocated') fillIds.push(v.fill.fillId);
            versions.set(v.fill.fillId, v);
          }
          // The pending entry reports the same version as the event.
          const p = state.pending.at(-1);
          if (p?.seq !== seq) throw new Error(`${at}: no pending entry`);
          if (JSON.stringify(versionOfPending(p), big) !== JSON.stringify(v, big))
            throw new Error(`${at}: versionOfPending differs from versionAfter`);
          // Deliver the entry's lines to the accounts, as the shell does; check the chains.
          for (const line of p.lines) {
            if (line.prevSeq !== (lastSeq.get(line.accountId) ?? 0))
              throw new Error(
                `${at}: ${line.accountId} prevSeq ${line.prevSeq}, expected ${lastSeq.get(line.accountId) ?? 0}`,
              );
            lastSeq.set(line.accountId, seq);
            const allocation: Allocation = {
              blockOrderId: d.blockOrderId,
              fillSeq: seq,
              prevSeq: line.prevSeq,
              securityId: d.securityId,
              side: d.side,
              quantity: line.quantity,
              price: p.price,
              ...(p.amended
                ? {
                    amends: {
                      seq: p.amended.amendsSeq,
                      quantity: line.previousQuantity ?? 0n,
                      price: p.amended.previousPrice,
                    },
                  }
                : {}),
            };
            const acct = accounts.get(line.accountId) ?? initialAccount();
            const applied = decideAccount({ type: 'Apply', allocation, nowMs: NOW }, acct);
            if (applied.outcome !== 'APPLIED')
              throw new Error(`${at}: ${line.accountId} answered ${applied.outcome}`);
            accounts = new Map(accounts).set(
              line.accountId,
              applied.events.reduce(evolveAccount, acct),
            );
          }

          // The books against the model.
          let sumAllocated = 0n;
          const held = allocatedOf(state);
          for (const [ix, x] of targets.entries()) {
            const got = held[x.accountId] ?? 0n;
            if (state.lastSeq[ix] !== (lastSeq.get(x.accountId) ?? 0))
              throw new Error(`${at}: ${x.accountId} lastSeq ${state.lastSeq[ix]}`);
            const expected = live().reduce(
              (s, v) => s + (v.lines.find((l) => l.accountId === x.accountId)?.quantity ?? 0n),
              0n,
            );
            if (got !== expected)
              throw new Error(`${at}: ${x.accountId} allocated ${got}, lines say ${expected}`);
            if (got < 0n || got > x.quantity)
              throw new Error(`${at}: ${x.accountId} allocated ${got} of ${x.quantity}`);
            sumAllocated += got;
          }
          if (sumAllocated !== state.filledQuantity || state.filledQuantity !== filled())
            throw new Error(
              `${at}: allocated ${sumAllocated}, filled ${state.filledQuantity}, model ${filled()}`,
            );
          const notional = live().reduce((s, v) => s + v.quantity * v.price, 0n);
          if (state.filledNotional !== notional)
            throw new Error(`${at}: notional ${state.filledNotional}, model ${notional}`);
          for (const v of live()) {
            const sum = v.lines.reduce((s, l) => s + l.quantity, 0n);
            if (sum !== v.quantity)
              throw new Error(`${at}: ${v.fill.fillId} lines sum to ${sum}, not ${v.quantity}`);
          }
          if (
            state.busts !== busts ||
            state.corrections !== corrections ||
            state.fills !== fillIds.length
          )
            throw new Error(`${at}: counters ${state.fills}/${state.busts}/${state.corrections}`);
          if ((state.cancelledQuantity !== null) !== cancelled)
            throw new Error(`${at}: cancel flag`);
        }

        // Every account's books: the position is what the order allocated; the cash is
        // exactly minus the sum of its current lines' notionals (each rounded as a line).
        const final = state;
        if (final.status !== 'Open') throw new Error('not open');
        for (const x of targets) {
          const acct = accounts.get(x.accountId);
          if (acct?.status !== 'Open') throw new Error('account not open');
          const position = acct.positions[d.securityId] ?? 0n;
          if (position !== (allocatedOf(final)[x.accountId] ?? 0n))
            throw new Error(
              `${x.accountId}: position ${position}, allocated ${allocatedOf(final)[x.accountId]}`,
            );
          const cash = -live().reduce((s, v) => {
            const q = v.lines.find((l) => l.accountId === x.accountId)?.quantity ?? 0n;
            return s + notionalMinor(q, v.price);
          }, 0n);
          if (acct.cashMinor !== cash)
            throw new Error(`${x.accountId}: cash ${acct.cashMinor}, lines say ${cash}`);
          if (acct.negativePositionFlags !== 0) throw new Error(`${x.accountId}: flagged negative`);
        }
      }),
      { numRuns: 300, ...seedParams },
    );
    const report = details.failed
      ? `${fc.defaultReportMessage(details)}\n${String(details.errorInstance)}`
      : undefined;
    t.equal(report, undefined, 'the property holds');
    t.ok(accepted > 500, `${accepted} accepted`);
    t.ok(rejected > 100, `${rejected} rejected`);
    for (const type of ['FillAllocated', 'FillBusted', 'FillCorrected', 'OrderCancelled'])
      t.ok((kinds.get(type) ?? 0) > 50, `${kinds.get(type) ?? 0} ${type}`);
  },
);

function big(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? `${value}n` : value;
}

t.test(
  'a quantity correction of the latest fill equals its arrival corrected (property)',
  async (t) => {
    const details = fc.check(
      fc.property(
        fc.constantFrom(1n, 10n, 100n),
        fc.array(fc.integer({ min: 1, max: 30 }), { minLength: 1, maxLength: 6 }),
        fc.array(fc.nat(), { maxLength: 5 }),
        fc.nat(),
        fc.nat(),
        (lotSize, lots, earlier, q0, q1) => {
          const d: BlockOrderDef = {
            ...def,
            lotSize,
            targets: lots.map((n, i) => ({ accountId: `AC${i}`, quantity: BigInt(n) * lotSize })),
          };
          const total = totalTarget(d);
          const history: BlockOrderEvent[] = [{ type: 'BlockOrderOpened', def: d, atMs: NOW }];
          let filledQ = 0n;
          let seq = 1;
          const take = (f: Fill) => {
            const events = decide(allocateCmd(f), replay(history)).events;
            if (events.length !== 1) throw new Error(`fill ${f.seq} not accepted`);
            history.push(...events);
            filledQ += f.quantity;
            seq++;
          };
          for (const n of earlier) {
            if (total - filledQ < 2n) break;
            take(fill(seq, 1n + (BigInt(n) % (total - filledQ - 1n))));
          }
          const room = total - filledQ;
          const original = fill(seq, 1n + (BigInt(q0) % room));
          const before = [...history];
          take(original);
          const quantity = 1n + (BigInt(q1) % room);
          if (quantity === original.quantity) return;
          const last = history.at(-1)!;
          const decision = decide(
            amendCmd(correction(seq, original.fillId, quantity, original.price), version(last)),
            replay(history),
          );
          const event = decision.events[0];
          if (event?.type !== 'FillCorrected')
            throw new Error(`not corrected: ${decision.outcome}`);
          const arrivedCorrected = { ...original, quantity };
          const fresh = decide(allocateCmd(arrivedCorrected), replay(before)).events[0];
          if (fresh?.type !== 'FillAllocated') throw new Error('fresh fill not accepted');
          const nowLines = event.lines.filter((l) => l.quantity > 0n);
          if (JSON.stringify(lineMap(nowLines), big) !== JSON.stringify(lineMap(fresh.lines), big))
            throw new Error(
              'the corrected lines differ from a fresh fill of the corrected quantity',
            );
          const corrected = openOf(t, evolve(replay(history), event));
          const arrived = openOf(t, evolve(replay(before), fresh));
          for (const x of d.targets) {
            if (
              (allocatedOf(corrected)[x.accountId] ?? 0n) !==
              (allocatedOf(arrived)[x.accountId] ?? 0n)
            )
              throw new Error(
                `${x.accountId}: ${allocatedOf(corrected)[x.accountId]} vs ${allocatedOf(arrived)[x.accountId]}`,
              );
          }
          if (corrected.filledNotional !== arrived.filledNotional)
            throw new Error('notional differs');
        },
      ),
      { numRuns: 300, ...seedParams },
    );
    t.equal(details.failed ? fc.defaultReportMessage(details) : undefined, undefined);
  },
);
