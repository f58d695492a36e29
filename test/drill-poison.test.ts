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
      invariants: { ok: boolean; fills: number };
      ok: boolean;
    };
    t.ok(json.classes >= 40, `${json.classes} classes`);
    const byClass = Object.entries(json.byClass);
    t.equal(byClass.length, json.classes + 1, 'every class tallied (and the good fills)');
    const total = byClass.reduce((s, [, c]) => s + c.count, 0);
    t.equal(total, json.messages, 'every message in exactly one class');
    t.equal(json.goodFills, 119, 'all 120 good fills but the one a bogus fill displaced');
    t.equal(json.goodApplied, json.goodFills, 'every good fill allocated exactly once');
    t.equal(json.duplicatesAcked, 2, 'the two exact duplicates acked as duplicates');
    const expectedDead = byClass
      .filter(([, c]) => c.expected !== Outcome.Allocated && c.expected !== Outcome.Duplicate)
      .reduce((s, [, c]) => s + c.count, 0);
    t.equal(json.deadLettered, expectedDead, 'one dead letter per bad message, no more');
    t.same(json.unexpected, [], 'no dead letter for a message not published');
    for (const [name, c] of byClass)
      t.same(c.observed, { [c.expected]: c.count }, `${name}: ${c.expected}`);
    t.equal(json.byClass[GOOD_FILL_CLASS]?.ok, true, 'good fills allocated');
    t.same(json.stoppedActors, [], 'no actor was stopped');
    t.equal(json.invariants.ok, true, 'the books are exact');
    t.equal(json.invariants.fills, 120, 'the journal holds 119 good fills and the bogus one');
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
