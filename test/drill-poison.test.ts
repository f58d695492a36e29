/**
 * The poison drill, small, against the real PostgreSQL and NATS: through the
 * same function the CLI runs. Every message must be accounted for exactly once.
 */
import t from 'tap';
import { GOOD_FILL_CLASS, Outcome } from '../simulations/drills/corpus.ts';
import { runPoisonDrill } from '../simulations/drills/poison.ts';

interface ClassTally {
  count: number;
  expected: string;
  observed: Record<string, number>;
  ok: boolean;
}

const SMALL = ['--fills', '120', '--orders', '6', '--accounts', '30', '--securities', '3'];

/**
 * The amendment classes by name, each with its outcome: the generic loop
 * below checks each class got what it expects; this checks the corpus still
 * holds these classes and expects what the wire format and the block order's
 * rules say (a class dropped or re-labelled fails here, not silently).
 */
const AMENDMENT_CLASSES: Record<string, string> = {
  'amendment: unknown kind': 'INVALID_FIELD kind',
  'amendment: kind in lower case': 'INVALID_FIELD kind',
  'fill labelled schema 2': 'INVALID_FIELD kind',
  'amendment: missing amendmentId': 'INVALID_FIELD amendmentId',
  'amendment: huge amendmentId (200000 chars)': 'INVALID_FIELD amendmentId',
  'amendmentId with a dot': 'INVALID_FIELD amendmentId',
  'bust without fillId': 'INVALID_FIELD fillId',
  'correction: float64 67.5 in price': 'INVALID_FIELD price',
  'correction: zero quantity': 'INVALID_FIELD quantity',
  'bust labelled schema 1': 'INVALID_FIELD quantity',
  'amendment for another order than its subject': 'INVALID_FIELD blockOrderId',
  'amendment at a seq far in the future': Outcome.DeliveriesExhausted,
  bust: Outcome.Applied,
  correction: Outcome.Applied,
  cancel: Outcome.Applied,
  'bust of an unknown fill': Outcome.UnknownFill,
  'bust of a fill of another order': Outcome.UnknownFill,
  "correction above the order's remaining": Outcome.CorrectionOverfill,
  'correction to the same quantity and price': Outcome.CorrectionChangesNothing,
  'exact re-send of an applied bust': Outcome.Duplicate,
  'exact re-send of an applied correction': Outcome.Duplicate,
  'exact re-send of an applied cancel': Outcome.Duplicate,
  "another bust at an applied bust's seq": Outcome.ConflictingExecution,
  "another price at an applied correction's seq": Outcome.ConflictingExecution,
  "fill at an applied cancel's seq": Outcome.ConflictingExecution,
  'amendmentId that is an applied fill id': Outcome.ConflictingExecution,
  'second bust of a busted fill': Outcome.AlreadyBusted,
  'correction of a busted fill': Outcome.AlreadyBusted,
  'second cancel': Outcome.AlreadyCancelled,
  'fill after a cancel': Outcome.OrderCancelled,
  'correction raising a fill after a cancel': Outcome.CorrectionOverfill,
};

t.test(
  'poison: every bad message dead-lettered as its class expects, the books exact',
  async (t) => {
    const lines: string[] = [];
    const result = await runPoisonDrill([...SMALL, '--timeout-ms', '30000'], {
      progress: (line) => lines.push(line),
    });
    const json = result.json as {
      classes: number;
      messages: number;
      goodFills: number;
      goodApplied: number;
      duplicatesAcked: number;
      deadLettered: number;
      unexpected: string[];
      byClass: Record<string, ClassTally>;
      stoppedActors: string[];
      invariants: {
        ok: boolean;
        fills: number;
        busts: number;
        corrections: number;
        cancels: number;
      };
      ok: boolean;
    };
    t.equal(json.classes, 108, '108 bad classes, as docs/DRILLS.md says');
    const byClass = Object.entries(json.byClass);
    t.equal(byClass.length, json.classes + 1, 'every class tallied (and the good fills)');
    const total = byClass.reduce((s, [, c]) => s + c.count, 0);
    t.equal(total, json.messages, 'every message in exactly one class');
    t.equal(json.goodFills, 119, 'all 120 good fills but the one a bogus fill displaced');
    t.equal(json.goodApplied, json.goodFills, 'every good fill allocated exactly once');
    t.equal(
      json.duplicatesAcked,
      5,
      'the exact duplicates (two fills, a bust, a correction, a cancel) acked as duplicates',
    );
    const noLetter = new Set<string>([Outcome.Allocated, Outcome.Applied, Outcome.Duplicate]);
    const expectedDead = byClass
      .filter(([, c]) => !noLetter.has(c.expected))
      .reduce((s, [, c]) => s + c.count, 0);
    t.equal(json.deadLettered, expectedDead, 'one dead letter per bad message, no more');
    t.same(json.unexpected, [], 'no dead letter for a message not published');
    for (const [name, c] of byClass)
      t.same(c.observed, { [c.expected]: c.count }, `${name}: ${c.expected}`);
    for (const [name, expected] of Object.entries(AMENDMENT_CLASSES))
      t.same(
        json.byClass[name],
        { count: 1, expected, observed: { [expected]: 1 }, ok: true },
        name,
      );
    t.equal(json.byClass[GOOD_FILL_CLASS]?.ok, true, 'good fills allocated');
    t.same(json.stoppedActors, [], 'no actor was stopped');
    t.equal(json.invariants.ok, true, 'the books are exact');
    t.equal(json.invariants.fills, 120, 'the journal holds 119 good fills and the bogus one');
    t.same(
      [json.invariants.busts, json.invariants.corrections, json.invariants.cancels],
      [1, 1, 1],
      'the bust, the correction and the cancel applied, and only they',
    );
    t.same(result.failures, [], 'no check failed');
    t.equal(result.ok, true);
    t.equal(json.ok, true);
    t.ok(
      result.summary.some((l) => /^class\s+count\s+expected\s+observed\s+ok/.test(l)),
      'the summary is the table',
    );
  },
);

t.test('poison: a bad option is a usage error, not a run', async (t) => {
  const result = await runPoisonDrill(['--fills', 'many'], { progress: () => {} });
  t.equal(result.ok, false);
  t.equal(result.exitCode, 2);
  t.match(result.failures, [/--fills must be a whole number, got many/]);
});
