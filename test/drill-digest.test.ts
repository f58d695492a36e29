/**
 * The drills' pure parts, without services: the digest's canonical form and
 * the poison corpus (enough distinct classes, each with one expected outcome).
 */
import t from 'tap';
import { decodeEntry } from '../system/fill-wire.ts';
import { unpackWire } from '../system/wire-codec.ts';
import {
  blockOrderBooks,
  BLOCK_ORDER_EXCLUDED_FIELDS,
  canonicalJson,
  digestOf,
} from '../simulations/drills/digest.ts';
import {
  buildCorpus,
  FAR_SEQ,
  floatBytes,
  GOOD_FILL_CLASS,
  Outcome,
  Phase,
} from '../simulations/drills/corpus.ts';
import { poisonScenario } from '../simulations/drills/poison.ts';
import type { BlockOrderState } from '../actors/block-order/decider.ts';
import { List, Map as PMap } from 'immutable';

t.test('canonical JSON: key order never matters, at any depth', async (t) => {
  const a = { b: 1, a: { y: [1, { q: 1n, p: 'x' }], x: null } };
  const b = { a: { x: null, y: [1, { p: 'x', q: 1n }] }, b: 1 };
  t.equal(canonicalJson(a), canonicalJson(b));
  t.equal(canonicalJson(a), '{"a":{"x":null,"y":[1,{"p":"x","q":"1"}]},"b":1}');
  t.equal(digestOf(a), digestOf(b));
  t.match(digestOf(a), /^[0-9a-f]{64}$/);
});

t.test('canonical JSON: bigints exactly, as decimal strings, beyond 64 bits too', async (t) => {
  const huge = 2n ** 100n + 1n;
  t.equal(canonicalJson({ v: huge }), `{"v":"${huge.toString()}"}`);
  t.equal(canonicalJson(-5n), '"-5"');
  t.not(digestOf({ v: huge }), digestOf({ v: huge - 1n }), 'one unit apart, different digests');
  t.not(digestOf({ v: 2n ** 53n + 1n }), digestOf({ v: 2n ** 53n }), 'no float rounding');
});

t.test('canonical JSON: what it cannot hold exactly is refused, not skipped', async (t) => {
  t.throws(() => canonicalJson({ a: new Set([1]) }), /Set/);
  t.throws(() => canonicalJson({ a: Number.NaN }), /NaN/);
  t.throws(() => canonicalJson({ a: () => 1 }), /function/);
  t.equal(canonicalJson({ a: undefined, b: 1 }), '{"b":1}', 'undefined members dropped');
  t.equal(
    canonicalJson(
      new Map([
        ['z', 1],
        ['a', 2],
      ]),
    ),
    '{"a":2,"z":1}',
    'maps as sorted objects',
  );
  t.not(digestOf([1, 2]), digestOf([2, 1]), 'array order counts');
  // The average-price state's persistent map and list digest as the plain ones.
  const entries: Array<[string, bigint]> = Array.from({ length: 40 }, (_, i) => [`F-${i}`, 1n]);
  t.equal(canonicalJson(PMap(entries)), canonicalJson(new Map(entries)), 'immutable map');
  t.equal(canonicalJson(List(['b', 'a'])), canonicalJson(['b', 'a']), 'immutable list');
  t.not(canonicalJson(PMap(entries.slice(1))), canonicalJson(new Map(entries)), 'and differs');
});

t.test('the block order digest leaves out delivery bookkeeping only', async (t) => {
  const state = {
    status: 'Open',
    def: { blockOrderId: 'B1' },
    filledQuantity: 10n,
    lastFillSeq: 2,
    pending: [{ seq: 2 }],
    confirmedThroughSeq: 1,
    someFieldAddedLater: 'kept',
  } as unknown as BlockOrderState;
  const books = blockOrderBooks(state);
  for (const field of BLOCK_ORDER_EXCLUDED_FIELDS) t.notOk(field in books, `${field} left out`);
  t.same(Object.keys(books).sort(), [
    'def',
    'filledQuantity',
    'lastFillSeq',
    'someFieldAddedLater',
    'status',
  ]);
  const settled = { ...state, pending: [], confirmedThroughSeq: 2 } as unknown as BlockOrderState;
  t.equal(
    digestOf(blockOrderBooks(settled)),
    digestOf(books),
    'confirmation progress is not books',
  );
  const other = { ...state, filledQuantity: 11n } as unknown as BlockOrderState;
  t.not(digestOf(blockOrderBooks(other)), digestOf(books), 'the books are');
});

t.test("the market's amendments are books: each counts in the digest", async (t) => {
  const state = {
    status: 'Open',
    def: { blockOrderId: 'B1' },
    filledQuantity: 10n,
    busts: 0,
    corrections: 0,
    cancelledQuantity: null,
    pending: [],
  } as unknown as BlockOrderState;
  const digest = (change: Record<string, unknown>) =>
    digestOf(blockOrderBooks({ ...state, ...change } as unknown as BlockOrderState));
  const plain = digest({});
  t.not(digest({ busts: 1 }), plain, 'a bust');
  t.not(digest({ corrections: 1 }), plain, 'a correction');
  t.not(digest({ cancelledQuantity: 0n }), plain, 'a cancel, even of nothing');
  t.not(digest({ cancelledQuantity: 0n }), digest({ cancelledQuantity: 5n }));
});

const wire = { subjectRoot: 'ns.TEST.executions', partitions: 4 };
const scenario = poisonScenario({ fills: 120, accounts: 30, orders: 6, securities: 3, seed: 7 });

t.test('the poison corpus: 40+ distinct bad classes, each with one expected outcome', async (t) => {
  const corpus = buildCorpus(scenario, wire);
  const bad = corpus.classes.filter((c) => c.name !== GOOD_FILL_CLASS);
  t.ok(bad.length >= 40, `${bad.length} bad classes`);
  t.equal(new Set(bad.map((c) => c.name)).size, bad.length, 'class names are distinct');
  const outcomes = new Set<string>(Object.values(Outcome));
  for (const c of bad) t.ok(outcomes.has(c.expect.outcome), `${c.name}: ${c.expect.outcome}`);
  for (const m of corpus.messages) {
    const mine = corpus.classes.find((c) => c.name === m.cls);
    t.same(m.expect, mine?.expect, `${m.cls}: every message of a class expects the same`);
  }
  const seen = new Set(bad.map((c) => c.expect.outcome));
  for (const o of Object.values(Outcome))
    t.ok(seen.has(o) || o === Outcome.Allocated, `covers ${o}`);
  for (const field of [
    'v',
    'fillId',
    'blockOrderId',
    'seq',
    'quantity',
    'price',
    'venue',
    'executedAtMs',
  ]) {
    t.ok(
      bad.some((c) => c.name === `missing: ${field}`),
      `missing ${field}`,
    );
    t.ok(
      bad.some((c) => c.name === `wrong type: ${field}`),
      `wrong type ${field}`,
    );
  }
  t.equal(corpus.duplicates, 5, 'two fills and the three applied amendments re-sent');
  t.equal(
    new Set(corpus.messages.map((m) => m.msgId)).size,
    corpus.messages.length,
    'Nats-Msg-Ids unique',
  );
  const good = corpus.messages.filter((m) => m.cls === GOOD_FILL_CLASS);
  t.equal(good.length, scenario.publishOrder.length - 1, 'every good fill but the displaced one');
});

t.test('decode and validation classes are rejected by the wire decoder as expected', async (t) => {
  const corpus = buildCorpus(scenario, wire);
  for (const m of corpus.messages) {
    const { outcome, field } = m.expect;
    if (outcome !== Outcome.InvalidField && outcome !== Outcome.DecodeFailed) continue;
    let result: ReturnType<typeof decodeEntry> | string;
    try {
      result = decodeEntry(m.bytes, m.subject, wire.subjectRoot, wire.partitions);
    } catch (error) {
      result = `threw ${(error as Error).message}`;
    }
    t.match(result, { ok: false, reason: outcome, field }, m.cls);
  }
});

t.test(
  'good and phase-B messages decode; interleaved bad fills sit at far-future seqs',
  async (t) => {
    const corpus = buildCorpus(scenario, wire);
    for (const m of corpus.messages) {
      if (m.expect.outcome === Outcome.InvalidField || m.expect.outcome === Outcome.DecodeFailed) {
        if (m.fill) t.ok(m.fill.seq >= FAR_SEQ, `${m.cls}: never a real seq`);
        continue;
      }
      if (m.expect.outcome === Outcome.UnknownBlockOrder) continue;
      const decoded = decodeEntry(m.bytes, m.subject, wire.subjectRoot, wire.partitions);
      t.ok(decoded.ok, `${m.cls} decodes`);
    }
    t.ok(
      corpus.messages.some((m) => m.phase === Phase.Victim),
      'the displaced genuine fill comes last',
    );
    t.equal(corpus.messages.at(-1)?.phase, Phase.Victim);
    t.equal(unpackWire(floatBytes(67, 64)), 67, 'a float64 67.0 is 0xcb + 8 bytes, read as 67');
    t.equal(floatBytes(67, 64)[0], 0xcb);
    t.equal(floatBytes(67, 32)[0], 0xca);
  },
);
