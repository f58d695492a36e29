import t, { type Test } from 'tap';
import fc from 'fast-check';
import type { Fill } from '../actors/block-order/decider.ts';
import { INT64_MAX } from '../actors/domain/money.ts';
import {
  DecodeError,
  SchemaVersionError,
  decodeVersioned,
  encodeVersioned,
  packPlain,
} from '../persistence/codec.ts';
import {
  FILL_NOTIONAL_MAX,
  FILL_WIRE_VERSION,
  ID_PATTERN,
  decodeFill,
  encodeFill,
  fillSubject,
  partitionOf,
  type DecodeResult,
} from '../system/fill-wire.ts';
import { floatKeys, packWire, unpackWire } from '../system/wire-codec.ts';
import { thrown } from './helpers/asserts.ts';

const ROOT = 'executions';
const PARTITIONS = 16;

const baseFill: Fill = {
  fillId: 'F-0001',
  blockOrderId: 'BO-1',
  seq: 1,
  quantity: 100n,
  price: 101_250_000n,
  venue: 'XNYS',
  executedAtMs: 1_700_000_000_123,
};

const subjectOf = (blockOrderId: string): string => fillSubject(ROOT, blockOrderId, PARTITIONS);

const decode = (bytes: Uint8Array, subject = subjectOf(baseFill.blockOrderId)): DecodeResult =>
  decodeFill(bytes, subject, ROOT, PARTITIONS);

/** The wire map of baseFill with some fields replaced (undefined = removed). */
function wire(over: Record<string, unknown> = {}): Uint8Array {
  // An epoch in ms as a JS number would pack as a float64: as bigint it is an int64.
  const m: Record<string, unknown> = {
    v: FILL_WIRE_VERSION,
    ...baseFill,
    executedAtMs: BigInt(baseFill.executedAtMs),
    ...over,
  };
  for (const [k, v] of Object.entries(m)) if (v === undefined) delete m[k];
  return packWire(m);
}

function expectRejected(
  t: Test,
  result: DecodeResult,
  reason: 'DECODE_FAILED' | 'INVALID_FIELD',
  field: string,
  rule: RegExp,
  label: string,
): void {
  if (result.ok) {
    t.fail(`${label}: accepted`);
    return;
  }
  t.equal(result.reason, reason, `${label}: reason`);
  t.equal(result.field, field, `${label}: field`);
  t.match(result.rule, rule, `${label}: rule`);
}

// ---------------------------------------------------------------- round trip

t.test('encodeFill / decodeFill round trip, bigints exact', async (t) => {
  const fills: Fill[] = [
    baseFill,
    { ...baseFill, quantity: 1n, price: 1n, executedAtMs: 0 },
    { ...baseFill, quantity: FILL_NOTIONAL_MAX, price: 1n },
    { ...baseFill, quantity: 1n, price: FILL_NOTIONAL_MAX },
    { ...baseFill, quantity: 2n ** 53n + 1n, price: 100n },
    {
      ...baseFill,
      seq: Number.MAX_SAFE_INTEGER,
      executedAtMs: Number.MAX_SAFE_INTEGER,
      venue: 'V'.repeat(32),
    },
    {
      ...baseFill,
      fillId: `F${'x'.repeat(63)}`,
      blockOrderId: `B${'_'.repeat(63)}`,
      venue: ' ~',
    },
  ];
  for (const fill of fills) {
    const result = decodeFill(encodeFill(fill), subjectOf(fill.blockOrderId), ROOT, PARTITIONS);
    t.strictSame(result, { ok: true, fill }, `${fill.quantity} @ ${fill.price}`);
  }
});

t.test('the wire map carries the schema version', async (t) => {
  t.strictSame(unpackWire(encodeFill(baseFill)), {
    v: 1,
    ...baseFill,
    seq: BigInt(baseFill.seq),
    executedAtMs: BigInt(baseFill.executedAtMs),
  });
  t.equal(FILL_WIRE_VERSION, 1);
});

t.test('random valid fills round trip', async (t) => {
  const id = fc.stringMatching(ID_PATTERN);
  const details = fc.check(
    fc.property(
      id,
      id,
      fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
      fc.bigInt({ min: 1n, max: 10n ** 9n }),
      fc.bigInt({ min: 1n, max: 10n ** 9n }),
      fc.string({ minLength: 1, maxLength: 32, unit: 'grapheme-ascii' }),
      fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
      fc.integer({ min: 1, max: 256 }),
      (fillId, blockOrderId, seq, quantity, price, venue, executedAtMs, partitions) => {
        const fill: Fill = { fillId, blockOrderId, seq, quantity, price, venue, executedAtMs };
        const subject = fillSubject(ROOT, blockOrderId, partitions);
        const result = decodeFill(encodeFill(fill), subject, ROOT, partitions);
        if (!result.ok) throw new Error(`rejected: ${result.field} ${result.rule}`);
        if (
          JSON.stringify(result.fill, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v)) !==
          JSON.stringify(fill, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v))
        ) {
          throw new Error('not the same fill');
        }
        if (typeof result.fill.quantity !== 'bigint' || typeof result.fill.price !== 'bigint') {
          throw new Error('quantity/price must decode as bigint');
        }
      },
    ),
    { numRuns: 500 },
  );
  t.equal(details.failed ? fc.defaultReportMessage(details) : undefined, undefined);
});

/** The wire map of baseFill with `field` hand-encoded as a float (0xcb float64 or 0xca float32). */
function withFloat(field: string, value: number, width: 32 | 64): Uint8Array {
  const marker = Buffer.from(packWire({ [field]: 0x7fffffff }));
  const body = Buffer.from(wire({ [field]: 0x7fffffff }));
  // Replace the int32 value 0x7fffffff (0xce 7fffffff) after the key with the float.
  const int = Buffer.from([0xce, 0x7f, 0xff, 0xff, 0xff]);
  const at = body.indexOf(int);
  if (at < 0 || marker.indexOf(int) < 0) throw new Error('no int32 marker to replace');
  const float = Buffer.alloc(width === 64 ? 9 : 5);
  float[0] = width === 64 ? 0xcb : 0xca;
  if (width === 64) float.writeDoubleBE(value, 1);
  else float.writeFloatBE(value, 1);
  return Buffer.concat([body.subarray(0, at), float, body.subarray(at + int.length)]);
}

t.test('a float in an integer field is refused whatever its value (67.0 too)', async (t) => {
  for (const field of ['v', 'seq', 'quantity', 'price', 'executedAtMs']) {
    for (const width of [32, 64] as const) {
      const value = field === 'v' ? 1 : 67;
      const bytes = withFloat(field, value, width);
      t.equal(floatKeys(bytes).join(), field, `${field} float${width}: found in the bytes`);
      expectRejected(
        t,
        decode(bytes),
        'INVALID_FIELD',
        field,
        new RegExp(`never a float \\(got float ${value}\\)`),
        `${field} as float${width} ${value}.0`,
      );
    }
  }
  // A float elsewhere (an extra field, a nested value) is not an integer field.
  t.equal(decode(wire({ note: 1.5, nested: { quantity: 2.5 } })).ok, true);
  t.strictSame(floatKeys(packWire({ a: 1.5, b: { c: 2.5 }, d: [3.5], e: 'x' })), ['a']);
  t.strictSame(floatKeys(packWire([1.5])), [], 'not a map');
});

t.test('plain safe-integer numbers are accepted and become bigint', async (t) => {
  const result = decode(wire({ quantity: 100, price: 101_250_000 }));
  t.strictSame(result, { ok: true, fill: baseFill });
  // Up to 2^32 - 1 a JS number packs as a msgpack integer; beyond it msgpackr
  // writes a float64, which the wire refuses (producers send bigint there).
  const max = decode(wire({ quantity: 2 ** 32 - 1, price: 1 }));
  t.strictSame(max, { ok: true, fill: { ...baseFill, quantity: 2n ** 32n - 1n, price: 1n } });
  expectRejected(
    t,
    decode(wire({ quantity: 2 ** 32, price: 1 })),
    'INVALID_FIELD',
    'quantity',
    /never a float \(got float 4294967296\)/,
    'quantity 2^32 as a JS number',
  );
});

// ---------------------------------------------------------------- partitions and subjects

t.test('partitionOf is FNV-1a 32 bit: published test vectors', async (t) => {
  // With 2^32 partitions the partition is the hash itself.
  const all = 2 ** 32;
  t.equal(partitionOf('', all), 0x811c9dc5);
  t.equal(partitionOf('a', all), 0xe40c292c);
  t.equal(partitionOf('foobar', all), 0xbf9cf968);
});

t.test('partitionOf is stable: pinned values', async (t) => {
  // Computed once; a change here moves block orders between partitions.
  const pinned: Array<[id: string, partitions: number[], expected: number[]]> = [
    ['BO-1', [1, 2, 4, 8, 16, 256], [0, 0, 0, 0, 8, 200]],
    ['BO-2', [1, 2, 4, 8, 16, 256], [0, 1, 1, 1, 1, 129]],
    ['AAPL-20240101-BUY', [1, 2, 4, 8, 16, 256], [0, 1, 3, 7, 15, 127]],
  ];
  for (const [id, partitions, expected] of pinned) {
    t.strictSame(
      partitions.map((p) => partitionOf(id, p)),
      expected,
      id,
    );
  }
});

t.test('partitionOf is an integer within range', async (t) => {
  const bad: string[] = [];
  for (let i = 0; i < 2000; i++) {
    const id = `BO-${i.toString(36)}-${(i * 7919).toString(16)}`;
    for (const p of [1, 3, 4, 7, 64, 255, 256]) {
      const part = partitionOf(id, p);
      if (!Number.isInteger(part) || part < 0 || part >= p) bad.push(`${id}/${p} -> ${part}`);
      if (partitionOf(id, p) !== part) bad.push(`${id}/${p} unstable`);
    }
  }
  t.strictSame(bad, []);
});

t.test('fillSubject is root.partition.blockOrderId', async (t) => {
  t.equal(fillSubject('executions', 'BO-1', 16), 'executions.8.BO-1');
  t.equal(fillSubject('t1.executions', 'BO-2', 256), 't1.executions.129.BO-2');
  t.equal(fillSubject('executions', 'BO-1', 1), 'executions.0.BO-1');
});

t.test('every accepted blockOrderId yields a subject the fill stream matches', async (t) => {
  // ensureStreams binds `${root}.*.*` and partition consumers filter
  // `${root}.${p}.*`: the id must be exactly one subject token.
  const rootTokens = ROOT.split('.').length;
  const ids = ['BO-1', 'a_b-9', 'AAPL-2024-01-02-BUY'];
  for (const id of ids) {
    t.ok(ID_PATTERN.test(id), `${id} is a valid id`);
    const subject = subjectOf(id);
    t.equal(subject.split('.').length, rootTokens + 2, `${subject} has root + 2 tokens`);
  }
  for (const id of ['BO.1', 'AAPL.2024-01-02.BUY', 'a*', 'b>']) {
    t.notOk(ID_PATTERN.test(id), `${id} is rejected: not one subject token`);
  }
});

// ---------------------------------------------------------------- rejections

t.test('bytes that are not msgpack: DECODE_FAILED', async (t) => {
  const cases: Array<[label: string, bytes: number[]]> = [
    ['empty', []],
    ['truncated array', [0x92, 0x01]],
    ['truncated str', [0xd9, 0x05, 0x41]],
    ['trailing bytes', [0x01, 0x02]],
    ['two maps', [...wire(), ...wire()]],
  ];
  for (const [label, bytes] of cases) {
    expectRejected(
      t,
      decode(Uint8Array.from(bytes)),
      'DECODE_FAILED',
      '(message)',
      /must be msgpack/,
      label,
    );
  }
  // A valid message cut short anywhere is never accepted.
  const full = wire();
  for (let n = 0; n < full.length; n++) {
    const result = decode(full.subarray(0, n));
    if (result.ok) t.fail(`prefix of ${n} bytes accepted`);
    else t.equal(result.reason, 'DECODE_FAILED', `prefix of ${n} bytes`);
  }
});

t.test('random bytes are never accepted and never throw', async (t) => {
  const details = fc.check(
    fc.property(fc.uint8Array({ minLength: 0, maxLength: 200 }), (bytes) => {
      const result = decode(bytes);
      return !result.ok && result.field.length > 0 && result.rule.length > 0;
    }),
    { numRuns: 2000 },
  );
  t.equal(details.failed ? fc.defaultReportMessage(details) : undefined, undefined);
});

t.test('msgpack that is not a map: INVALID_FIELD (message)', async (t) => {
  for (const value of [42, -1, 'fill', null, true, 1.5, [1, 2], [{ ...baseFill, v: 1 }]]) {
    expectRejected(
      t,
      decode(packWire(value)),
      'INVALID_FIELD',
      '(message)',
      /must be a msgpack map/,
      JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? `${v}` : v)),
    );
  }
});

t.test('msgpack bin and the never-used byte 0xc1 are not read as a map', async (t) => {
  // msgpackr decodes bin to a Uint8Array and 0xc1 to a marker object: both are
  // objects, but neither is a map, so neither should be reported as a bad `v`.
  const bin = decode(packWire(Uint8Array.from([1, 2, 3])));
  t.match(bin, { ok: false, field: '(message)' }, 'bin');
  const c1 = decode(Uint8Array.from([0xc1]));
  t.match(c1, { ok: false, reason: 'DECODE_FAILED', field: '(message)' }, '0xc1');
});

t.test('every field rule: INVALID_FIELD names the field and the rule', async (t) => {
  const cases: Array<[label: string, over: Record<string, unknown>, field: string, rule: RegExp]> =
    [
      // schema version
      ['v 2', { v: 2 }, 'v', /schema version 1/],
      ['v 0', { v: 0 }, 'v', /schema version 1/],
      ['v "1"', { v: '1' }, 'v', /schema version 1/],
      ['v missing', { v: undefined }, 'v', /schema version 1/],
      // fillId
      ['fillId missing', { fillId: undefined }, 'fillId', /must be a string matching/],
      ['fillId number', { fillId: 1234 }, 'fillId', /must be a string matching/],
      ['fillId empty', { fillId: '' }, 'fillId', /must be a string matching/],
      ['fillId leading -', { fillId: '-F1' }, 'fillId', /must be a string matching/],
      ['fillId space', { fillId: 'F 1' }, 'fillId', /must be a string matching/],
      ['fillId 65 chars', { fillId: `F${'1'.repeat(64)}` }, 'fillId', /must be a string matching/],
      // blockOrderId
      [
        'blockOrderId missing',
        { blockOrderId: undefined },
        'blockOrderId',
        /must be a string matching/,
      ],
      ['blockOrderId number', { blockOrderId: 7 }, 'blockOrderId', /must be a string matching/],
      ['blockOrderId *', { blockOrderId: '*' }, 'blockOrderId', /must be a string matching/],
      ['blockOrderId >', { blockOrderId: 'BO>' }, 'blockOrderId', /must be a string matching/],
      ['blockOrderId 65 chars', { blockOrderId: `B${'1'.repeat(64)}` }, 'blockOrderId', /matching/],
      ['blockOrderId slash', { blockOrderId: 'BO/1' }, 'blockOrderId', /must be a string matching/],
      // blockOrderId valid but not the one the subject names
      [
        'blockOrderId of another subject',
        { blockOrderId: 'BO-2' },
        'blockOrderId',
        /must match the subject \(expected subject executions\.1\.BO-2\)/,
      ],
      // seq
      ['seq 0', { seq: 0 }, 'seq', /integer >= 1/],
      ['seq -1', { seq: -1 }, 'seq', /integer >= 1/],
      ['seq 1.5', { seq: 1.5 }, 'seq', /never a float/],
      ['seq 2^53', { seq: 2 ** 53 }, 'seq', /never a float/],
      ['seq 2^53 as int64', { seq: 2n ** 53n }, 'seq', /integer >= 1/],
      ['seq "1"', { seq: '1' }, 'seq', /integer >= 1/],
      ['seq missing', { seq: undefined }, 'seq', /integer >= 1/],
      // quantity
      ['quantity 1.5', { quantity: 1.5 }, 'quantity', /msgpack integer, never a float/],
      ['quantity 2^53 (float)', { quantity: 2 ** 53 }, 'quantity', /never a float/],
      ['quantity "100"', { quantity: '100' }, 'quantity', /never a float/],
      ['quantity missing', { quantity: undefined }, 'quantity', /never a float/],
      ['quantity 0', { quantity: 0 }, 'quantity', /must be > 0 and fit in 64 bits/],
      ['quantity 0n', { quantity: 0n }, 'quantity', /must be > 0/],
      ['quantity -1', { quantity: -1 }, 'quantity', /must be > 0/],
      ['quantity -5n', { quantity: -5n }, 'quantity', /must be > 0/],
      ['quantity 2^63', { quantity: 2n ** 63n }, 'quantity', /fit in 64 bits/],
      ['quantity 2^64-1', { quantity: 2n ** 64n - 1n }, 'quantity', /fit in 64 bits/],
      // price
      ['price 101.25', { price: 101.25 }, 'price', /never a float \(got float 101.25\)/],
      ['price "101.25"', { price: '101.25' }, 'price', /never a float/],
      ['price 0', { price: 0 }, 'price', /must be > 0 and fit in 64 bits/],
      ['price 0n', { price: 0n }, 'price', /must be > 0/],
      ['price -1n', { price: -1n }, 'price', /must be > 0/],
      ['price 2^63', { price: 2n ** 63n }, 'price', /fit in 64 bits/],
      // venue
      ['venue empty', { venue: '' }, 'venue', /1 to 32 printable ASCII characters/],
      ['venue 33 chars', { venue: 'V'.repeat(33) }, 'venue', /1 to 32 printable ASCII characters/],
      ['venue number', { venue: 42 }, 'venue', /1 to 32 printable ASCII characters/],
      ['venue missing', { venue: undefined }, 'venue', /1 to 32 printable ASCII characters/],
      ['venue with NUL', { venue: 'X\u0000' }, 'venue', /printable ASCII/],
      ['venue with a lone surrogate', { venue: 'X\ud800' }, 'venue', /printable ASCII/],
      ['venue with a newline', { venue: 'XN\nYS' }, 'venue', /printable ASCII/],
      ['venue not ASCII', { venue: 'é' }, 'venue', /printable ASCII/],
      // executedAtMs
      ['executedAtMs -1', { executedAtMs: -1 }, 'executedAtMs', /integer >= 0/],
      ['executedAtMs 1.5', { executedAtMs: 1.5 }, 'executedAtMs', /never a float/],
      ['executedAtMs "0"', { executedAtMs: '0' }, 'executedAtMs', /integer >= 0/],
      ['executedAtMs 2^53', { executedAtMs: 2 ** 53 }, 'executedAtMs', /never a float/],
      ['executedAtMs 2^53 int64', { executedAtMs: 2n ** 53n }, 'executedAtMs', /integer >= 0/],
      ['executedAtMs missing', { executedAtMs: undefined }, 'executedAtMs', /integer >= 0/],
    ];
  for (const [label, over, field, rule] of cases) {
    expectRejected(t, decode(wire(over)), 'INVALID_FIELD', field, rule, label);
  }
});

t.test('the subject must be the one the fill would be published on', async (t) => {
  const bytes = wire();
  const ok = subjectOf('BO-1'); // executions.8.BO-1
  t.equal(decode(bytes, ok).ok, true);
  const wrong = [
    'executions.7.BO-1', // wrong partition
    'executions.8.BO-2', // another block order
    'other.8.BO-1', // another root
    't1.executions.8.BO-1', // another namespace
    'executions.8.BO-1.x',
    'executions.8',
    '',
  ];
  for (const subject of wrong) {
    expectRejected(
      t,
      decode(bytes, subject),
      'INVALID_FIELD',
      'blockOrderId',
      /must match the subject/,
      subject,
    );
  }
  // Same bytes, other partition count: the expected partition moves.
  expectRejected(
    t,
    decodeFill(bytes, ok, ROOT, 4),
    'INVALID_FIELD',
    'blockOrderId',
    /expected subject executions\.0\.BO-1/,
    '4 partitions',
  );
});

t.test('extra fields are ignored', async (t) => {
  t.strictSame(decode(wire({ note: 'x', extra: 5n })), { ok: true, fill: baseFill });
});

// ---------------------------------------------------------------- codec envelope

t.test('decodeVersioned round trip keeps bigints', async (t) => {
  const data = { q: INT64_MAX, n: -(2n ** 63n), s: 'x', list: [1, 2n, null], nested: { ok: true } };
  t.strictSame(decodeVersioned(encodeVersioned(data), 'event'), data);
  t.strictSame(unpackWire(encodeVersioned(5)), { v: 1, d: 5 }, 'an envelope is plain msgpack');
});

t.test('decodeVersioned: an unknown version throws SchemaVersionError', async (t) => {
  for (const v of [0, 2, 99, '1', 1.5, null]) {
    const error = thrown(t, () => decodeVersioned(packPlain({ v, d: { x: 1 } }), 'journal event'));
    t.type(error, SchemaVersionError, `v=${String(v)}`);
    t.match(error, {
      code: 'SCHEMA_VERSION_UNKNOWN',
      name: 'SchemaVersionError',
      message: /^journal event has schema version .*; this build reads 1$/,
    });
  }
  t.match(
    thrown(t, () => decodeVersioned(packPlain({ v: 2, d: 0 }), 'snapshot')),
    {
      message: 'snapshot has schema version 2; this build reads 1',
    },
  );
  // Not an envelope at all.
  for (const value of [42, 'x', { d: 1 }, { v: 1 }, null]) {
    t.type(
      thrown(t, () => decodeVersioned(packPlain(value), 'event')),
      SchemaVersionError,
      JSON.stringify(value),
    );
  }
});

t.test('decodeVersioned: garbage bytes throw DecodeError', async (t) => {
  const valid = encodeVersioned({ a: 1n });
  const garbage: Array<[label: string, bytes: Uint8Array]> = [
    ['empty', new Uint8Array(0)],
    ['truncated', valid.subarray(0, valid.length - 1)],
    ['trailing', Uint8Array.from([...valid, 0x00])],
    ['bad str length', Uint8Array.from([0xdb, 0xff, 0xff, 0xff, 0xff, 0x41])],
  ];
  for (const [label, bytes] of garbage) {
    const error = thrown(t, () => decodeVersioned(bytes, 'snapshot'));
    t.type(error, DecodeError, label);
    t.match(error, {
      code: 'DECODE_FAILED',
      name: 'DecodeError',
      message: 'snapshot is not valid msgpack',
    });
    t.ok(error instanceof Error && error.cause !== undefined, `${label}: keeps the cause`);
  }
});

t.test(
  'decodeVersioned: the never-used byte 0xc1 is garbage, not an unknown version',
  async (t) => {
    t.type(
      thrown(t, () => decodeVersioned(Uint8Array.from([0xc1]), 'snapshot')),
      DecodeError,
    );
  },
);

t.test(
  'a fill whose quantity × price exceeds the notional bound is rejected on price',
  async (t) => {
    const over = { ...baseFill, quantity: FILL_NOTIONAL_MAX, price: 2n };
    const result = decodeFill(encodeFill(over), subjectOf(over.blockOrderId), ROOT, PARTITIONS);
    t.match(result, {
      ok: false,
      reason: 'INVALID_FIELD',
      field: 'price',
      rule: /must not exceed/,
    });
  },
);

t.test(
  'numbers sent as int64 (bigint here) are accepted for v, seq and executedAtMs',
  async (t) => {
    const bytes = packWire({ ...baseFill, v: 1n, seq: 7n, executedAtMs: 1_700_000_000_000n });
    const result = decodeFill(bytes, subjectOf(baseFill.blockOrderId), ROOT, PARTITIONS);
    t.strictSame(result, {
      ok: true,
      fill: { ...baseFill, seq: 7, executedAtMs: 1_700_000_000_000 },
    });
  },
);

t.test('a reserved byte 0xc1 anywhere is DECODE_FAILED, never a throw', async (t) => {
  const body = Buffer.from(wire({ venue: 'XNYS' }));
  const venue = Buffer.from(packWire('XNYS'));
  const at = body.indexOf(venue);
  t.ok(at > 0);
  const poisoned = Buffer.concat([
    body.subarray(0, at),
    Buffer.from([0xc1]),
    body.subarray(at + venue.length),
  ]);
  const result = decode(poisoned);
  t.match(result, { ok: false, reason: 'DECODE_FAILED', field: '(message)', rule: /0xc1|c1/ });
});

t.test('the README’s check values for other languages’ partition functions', async (t) => {
  // README, "Publishing from another language": keep the two in step.
  t.same([partitionOf('BUY1', 4), partitionOf('BUY1', 8)], [2, 6]);
  t.same([partitionOf('BO-20261124-AAPL-BUY', 4), partitionOf('BO-20261124-AAPL-BUY', 8)], [1, 5]);
  t.same(
    [partitionOf('TDBO-20261120-AAHA-BUY', 4), partitionOf('TDBO-20261120-AAHA-BUY', 8)],
    [2, 2],
  );
});
