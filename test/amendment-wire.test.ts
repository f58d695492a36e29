/**
 * The wire format of amendments (schema 2) beside fills (schema 1): one
 * subject per order carries both; decodeEntry reads both, decodeFill only
 * fills. Bad messages are refused naming the field.
 */
import t, { type Test } from 'tap';
import type { Amendment } from '../actors/block-order/amendments.ts';
import type { Fill } from '../actors/block-order/decider.ts';
import {
  AMENDMENT_WIRE_VERSION,
  FILL_WIRE_VERSION,
  decodeEntry,
  decodeFill,
  encodeAmendment,
  encodeEntry,
  encodeFill,
  fillSubject,
  type DecodeResult,
  type EntryDecodeResult,
} from '../system/fill-wire.ts';
import { floatKeys, packWire, unpackWire } from '../system/wire-codec.ts';

const ROOT = 'executions';
const PARTITIONS = 16;
const subjectOf = (blockOrderId: string): string => fillSubject(ROOT, blockOrderId, PARTITIONS);
const decode = (bytes: Uint8Array, subject = subjectOf('BO-1')): EntryDecodeResult =>
  decodeEntry(bytes, subject, ROOT, PARTITIONS);

const EPOCH = 1_700_000_000_123; // beyond 32 bits: a JS number would pack as a float64

const bust: Amendment = {
  kind: 'BUST',
  amendmentId: 'X-0002',
  blockOrderId: 'BO-1',
  seq: 2,
  executedAtMs: EPOCH,
  fillId: 'F-0001',
};
const correction: Amendment = {
  kind: 'CORRECTION',
  amendmentId: 'X-0003',
  blockOrderId: 'BO-1',
  seq: 3,
  executedAtMs: EPOCH + 1,
  fillId: 'F-0001',
  quantity: 2n ** 53n + 1n, // not representable as a double
  price: 111n, // the notional stays within FILL_NOTIONAL_MAX
};
const cancel: Amendment = {
  kind: 'CANCEL',
  amendmentId: 'X-0004',
  blockOrderId: 'BO-1',
  seq: 4,
  executedAtMs: EPOCH + 2,
};
const fill: Fill = {
  fillId: 'F-0001',
  blockOrderId: 'BO-1',
  seq: 1,
  quantity: 100n,
  price: 101_250_000n,
  venue: 'XNYS',
  executedAtMs: EPOCH,
};

/** The wire map of `base` with some fields replaced (undefined = removed), packed as is. */
function wire(base: Amendment, over: Record<string, unknown> = {}): Uint8Array {
  const m: Record<string, unknown> = {
    v: AMENDMENT_WIRE_VERSION,
    ...base,
    seq: BigInt(base.seq),
    executedAtMs: BigInt(base.executedAtMs),
    ...over,
  };
  for (const [k, v] of Object.entries(m)) if (v === undefined) delete m[k];
  return packWire(m);
}

function expectRejected(
  t: Test,
  result: EntryDecodeResult | DecodeResult,
  field: string,
  rule: RegExp,
  label: string,
): void {
  if (result.ok) {
    t.fail(`${label}: accepted`);
    return;
  }
  t.equal(result.reason, 'INVALID_FIELD', `${label}: reason`);
  t.equal(result.field, field, `${label}: field`);
  t.match(result.rule, rule, `${label}: rule`);
}

// ---------------------------------------------------------------- round trip

t.test('encodeAmendment / decodeEntry round trip: BUST, CORRECTION, CANCEL', async (t) => {
  for (const a of [bust, correction, cancel]) {
    const bytes = encodeAmendment(a);
    t.strictSame(decode(bytes), { ok: true, entry: a }, a.kind);
    t.strictSame(encodeEntry(a), bytes, `${a.kind}: encodeEntry picks the amendment schema`);
    // On the wire: schema 2, seq and time as msgpack integers (never a float).
    t.strictSame(floatKeys(bytes), [], `${a.kind}: no float`);
    const raw = unpackWire(bytes) as Record<string, unknown>;
    t.equal(raw.v, AMENDMENT_WIRE_VERSION, `${a.kind}: v`);
    t.equal(raw.seq, BigInt(a.seq), `${a.kind}: seq is an int64`);
    t.equal(raw.executedAtMs, BigInt(a.executedAtMs), `${a.kind}: executedAtMs is an int64`);
  }
  const decoded = decode(encodeAmendment(correction));
  const entry = decoded.ok ? decoded.entry : undefined;
  if (entry && 'kind' in entry && entry.kind === 'CORRECTION') {
    t.equal(typeof entry.quantity, 'bigint');
    t.equal(entry.quantity, 2n ** 53n + 1n, 'exact beyond 2^53');
    t.equal(entry.price, 111n);
    t.equal(typeof entry.seq, 'number');
    t.equal(entry.executedAtMs, EPOCH + 1);
  } else t.fail('not a correction');
  // Large seq and time still exact.
  const far = { ...cancel, seq: Number.MAX_SAFE_INTEGER, executedAtMs: Number.MAX_SAFE_INTEGER };
  t.strictSame(decode(encodeAmendment(far)), { ok: true, entry: far });
});

t.test('decodeEntry still reads v1 fills; decodeFill reads only them', async (t) => {
  const bytes = encodeFill(fill);
  t.strictSame(encodeEntry(fill), bytes, 'encodeEntry picks the fill schema');
  t.equal((unpackWire(bytes) as Record<string, unknown>).v, FILL_WIRE_VERSION);
  t.strictSame(decode(bytes), { ok: true, entry: fill });
  t.strictSame(decodeFill(bytes, subjectOf('BO-1'), ROOT, PARTITIONS), { ok: true, fill });
  for (const a of [bust, correction, cancel]) {
    expectRejected(
      t,
      decodeFill(encodeAmendment(a), subjectOf('BO-1'), ROOT, PARTITIONS),
      'v',
      /must be schema version 1/,
      `decodeFill of a ${a.kind}`,
    );
  }
  // A v1 message is read as a fill even when it carries `kind`: the version decides.
  t.strictSame(decode(packWire({ v: 1, ...fill, executedAtMs: BigInt(EPOCH), kind: 'BUST' })), {
    ok: true,
    entry: fill,
  });
});

// ---------------------------------------------------------------- refusals

t.test('bad amendments are refused naming the field', async (t) => {
  const cases: Array<[label: string, bytes: Uint8Array, field: string, rule: RegExp]> = [
    ['kind unknown', wire(bust, { kind: 'REVERSAL' }), 'kind', /BUST, CORRECTION or CANCEL/],
    ['kind lower case', wire(bust, { kind: 'bust' }), 'kind', /BUST, CORRECTION or CANCEL/],
    ['kind missing', wire(bust, { kind: undefined }), 'kind', /BUST, CORRECTION or CANCEL/],
    [
      'amendmentId missing',
      wire(bust, { amendmentId: undefined }),
      'amendmentId',
      /must be a string matching/,
    ],
    [
      'amendmentId with a dot',
      wire(cancel, { amendmentId: 'X.1' }),
      'amendmentId',
      /must be a string matching/,
    ],
    ['BUST without fillId', wire(bust, { fillId: undefined }), 'fillId', /string matching/],
    [
      'CORRECTION without fillId',
      wire(correction, { fillId: undefined }),
      'fillId',
      /string matching/,
    ],
    ['CORRECTION quantity 0', wire(correction, { quantity: 0n }), 'quantity', /must be > 0/],
    ['CORRECTION quantity -1', wire(correction, { quantity: -1n }), 'quantity', /must be > 0/],
    [
      'CORRECTION quantity missing',
      wire(correction, { quantity: undefined }),
      'quantity',
      /must be an integer/,
    ],
    [
      'CORRECTION price 67.5 (a float)',
      wire(correction, { price: 67.5 }),
      'price',
      /never a float \(got float 67.5\)/,
    ],
    ['CORRECTION price 0', wire(correction, { price: 0n }), 'price', /must be > 0/],
    [
      'CORRECTION price missing',
      wire(correction, { price: undefined }),
      'price',
      /fixed point, 6 decimals/,
    ],
    [
      'CORRECTION notional beyond the bound',
      wire(correction, { quantity: 10n ** 9n, price: 10n ** 9n + 1n }),
      'price',
      /must not exceed/,
    ],
    [
      'subject of another order',
      wire(bust, { blockOrderId: 'BO-2' }),
      'blockOrderId',
      /must match the subject/,
    ],
    ['seq 0', wire(bust, { seq: 0n }), 'seq', /integer >= 1/],
    ['seq as a float', wire(cancel, { seq: 2.5 }), 'seq', /never a float/],
    [
      'executedAtMs as a JS number beyond 32 bits',
      wire(cancel, { executedAtMs: EPOCH }),
      'executedAtMs',
      /never a float/,
    ],
    ['v 3', wire(bust, { v: 3 }), 'v', /schema version 1 \(fill\) or 2 \(amendment\)/],
    ['v missing', wire(bust, { v: undefined }), 'v', /schema version/],
    ['v "2"', wire(bust, { v: '2' }), 'v', /schema version/],
  ];
  for (const [label, bytes, field, rule] of cases)
    expectRejected(t, decode(bytes), field, rule, label);
  // The same amendment on its own subject is fine; another subject names the order.
  const other = subjectOf('BO-2');
  expectRejected(
    t,
    decode(encodeAmendment(bust), other),
    'blockOrderId',
    /executions\.\d+\.BO-1/,
    'wrong subject',
  );
  // A CANCEL needs no fill, quantity or price; extra fields are ignored.
  t.strictSame(decode(wire(cancel, { fillId: 'F-9', quantity: 5n, note: 'x' })), {
    ok: true,
    entry: cancel,
  });
  // A BUST ignores a quantity it does not need, but a float in an integer field is
  // refused whatever the kind.
  expectRejected(
    t,
    decode(wire(bust, { price: 67.5 })),
    'price',
    /never a float \(got float 67.5\)/,
    'BUST with a float price',
  );
  t.strictSame(decode(wire(bust, { quantity: 0n })), { ok: true, entry: bust });
});

t.test('garbage is DECODE_FAILED or a refusal, never a throw', async (t) => {
  for (const bytes of [
    new Uint8Array([]),
    new Uint8Array([0xc1]),
    packWire([1, 2]),
    packWire('x'),
  ]) {
    const result = decode(bytes);
    t.equal(result.ok, false);
  }
});
