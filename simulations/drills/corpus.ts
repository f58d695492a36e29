/**
 * The poison drill's corpus: good fills from a scenario, and bad messages of
 * many classes around them, each class with the one outcome the service must
 * give it. Pure (bytes and subjects only), so it is tested without services.
 *
 * How each expectation is kept unambiguous:
 * - a message meant to fail decoding is otherwise a valid fill at a
 *   far-future seq of a real order: if the decoder let it through, it would
 *   be dead-lettered as DELIVERIES_EXHAUSTED (visibly the wrong reason), never
 *   allocated, and the good fills around it stay valid;
 * - a message that collides with an applied execution is published only
 *   once its order's good fills are all applied (phase `afterApplied`);
 * - each message that tries an order's next seq has an order of its own, so
 *   no two of them race for the same seq;
 * - the one bogus fill that does take a seq (class `bogus fill takes a seq`)
 *   is part of the books the drill expects; the genuine fill it displaced
 *   comes last (phase `victim`) and must be CONFLICTING_EXECUTION;
 * - the market's amendments (busts, corrections, cancels) come in two
 *   phases after the fills: `amend` applies one valid amendment on each of
 *   three orders and probes a fourth with invalid ones at its next seq;
 *   `afterAmend` re-sends and contradicts what `amend` applied. In a phase,
 *   an order gets either one message that is accepted at its next seq or only
 *   rejected ones there, which take no seq: no outcome depends on which of
 *   them the order sees first. The applied amendments are in the books.
 */
import type { Amendment } from '../../actors/block-order/amendments.ts';
import { FillRejection, type Entry, type Fill } from '../../actors/block-order/decider.ts';
import {
  encodeAmendment,
  encodeEntry,
  encodeFill,
  fillSubject,
  partitionOf,
} from '../../system/fill-wire.ts';
import { packWire } from '../../system/wire-codec.ts';
import type { Scenario } from '../scenario.ts';

/** What the service must do with a message. */
export const Outcome = {
  /** Allocated: a FillAllocated in its order's journal. */
  Allocated: 'ALLOCATED',
  /** A bust, correction or cancel applied: its FillBusted, FillCorrected or OrderCancelled in the journal. */
  Applied: 'APPLIED',
  /** Acked as an exact duplicate: counted in stats.duplicates, nothing changes, no dead letter. */
  Duplicate: 'DUPLICATE',
  DecodeFailed: 'DECODE_FAILED',
  InvalidField: 'INVALID_FIELD',
  DeliveriesExhausted: 'DELIVERIES_EXHAUSTED',
  // Dead-lettered with the block order's own rejection reason (the ones the corpus provokes).
  UnknownBlockOrder: FillRejection.UnknownBlockOrder,
  Overfill: FillRejection.Overfill,
  ConflictingExecution: FillRejection.ConflictingExecution,
  UnknownFill: FillRejection.UnknownFill,
  AlreadyBusted: FillRejection.AlreadyBusted,
  CorrectionOverfill: FillRejection.CorrectionOverfill,
  CorrectionChangesNothing: FillRejection.CorrectionChangesNothing,
  OrderCancelled: FillRejection.OrderCancelled,
  AlreadyCancelled: FillRejection.AlreadyCancelled,
} as const;
export type Outcome = (typeof Outcome)[keyof typeof Outcome];

/** When a message is published. */
export const Phase = {
  /** Interleaved with the good fills. */
  Interleaved: 'interleaved',
  /** Once every good fill is allocated and confirmed. */
  AfterApplied: 'afterApplied',
  /** Valid amendments, and invalid ones at the next seq of an order that takes none in this phase. */
  Amend: 'amend',
  /** Once the amendments are applied: their re-sends, and what their effect makes invalid. */
  AfterAmend: 'afterAmend',
  /** Once the bogus fill that took its seq is allocated. */
  Victim: 'victim',
} as const;
export type Phase = (typeof Phase)[keyof typeof Phase];

export interface Expectation {
  outcome: Outcome;
  /** For INVALID_FIELD and DECODE_FAILED: the Blockfill-Field header. */
  field?: string;
}

export interface CorpusMessage {
  /** The class this message belongs to (a good fill is class `good fill`). */
  cls: string;
  subject: string;
  bytes: Uint8Array;
  /** Nats-Msg-Id: the fill id for good fills (as the publisher sets it), unique otherwise. */
  msgId: string;
  phase: Phase;
  expect: Expectation;
  /**
   * What this message would be if it were accepted (to tell if it was
   * applied): a fill, or an amendment. A bad message is its base fill.
   */
  fill?: Entry;
}

export interface PoisonClass {
  name: string;
  expect: Expectation;
  count: number;
}

export interface Corpus {
  messages: CorpusMessage[];
  classes: PoisonClass[];
  /** The good fills: every one must be allocated (the victim is not among them). */
  goodFills: Fill[];
  /**
   * What the books must hold afterwards, per order in seq order: the bogus
   * fill in place of its victim, and the applied amendments after the fills.
   */
  expectedFills: Map<string, Entry[]>;
  /** Exact duplicates published (each must be counted in stats.duplicates). */
  duplicates: number;
}

export interface WireTarget {
  subjectRoot: string;
  partitions: number;
}

export const GOOD_FILL_CLASS = 'good fill';
/** Seqs of bad messages that must never be applied: far beyond any order's fills. */
export const FAR_SEQ = 900_000_000;
/** Bounds: the corpus stays small whatever the scenario (a 1 MB NATS payload is the server's default cap). */
const HUGE_STRING_CHARS = 200_000;
const MANY_KEYS = 20_000;
const DEEP_NESTING = 200_000;
const FIELD_NESTING = 50;

// ---------------------------------------------------------------- bytes

/** msgpack map16 of the given encoded entries (keys are strings). */
export function mapBytes(entries: ReadonlyArray<readonly [string, Uint8Array]>): Buffer {
  const header = Buffer.from([0xde, entries.length >> 8, entries.length & 0xff]);
  const parts = entries.flatMap(([k, v]) => [packWire(k), Buffer.from(v)]);
  return Buffer.concat([header, ...parts]);
}

/** A float64 (0xcb) or float32 (0xca) as msgpack bytes, whatever its value (67.0 stays a float). */
export function floatBytes(value: number, width: 32 | 64): Buffer {
  const b = Buffer.alloc(width === 64 ? 9 : 5);
  b[0] = width === 64 ? 0xcb : 0xca;
  if (width === 64) b.writeDoubleBE(value, 1);
  else b.writeFloatBE(value, 1);
  return b;
}

const UINT64_MAX_BYTES = Buffer.from([0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);

/** The wire entries of a fill, integers as msgpack integers (bigint → int64, as encodeFill does). */
function fillEntries(fill: Fill): Array<[string, Uint8Array]> {
  return [
    ['v', packWire(1)],
    ['fillId', packWire(fill.fillId)],
    ['blockOrderId', packWire(fill.blockOrderId)],
    ['seq', packWire(BigInt(fill.seq))],
    ['quantity', packWire(fill.quantity)],
    ['price', packWire(fill.price)],
    ['venue', packWire(fill.venue)],
    ['executedAtMs', packWire(BigInt(fill.executedAtMs))],
  ];
}

/** The wire entries of an amendment, as encodeAmendment writes them. */
function amendmentEntries(a: Amendment): Array<[string, Uint8Array]> {
  const entries: Array<[string, Uint8Array]> = [
    ['v', packWire(2)],
    ['kind', packWire(a.kind)],
    ['amendmentId', packWire(a.amendmentId)],
    ['blockOrderId', packWire(a.blockOrderId)],
    ['seq', packWire(BigInt(a.seq))],
    ['executedAtMs', packWire(BigInt(a.executedAtMs))],
  ];
  if (a.kind !== 'CANCEL') entries.push(['fillId', packWire(a.fillId)]);
  if (a.kind === 'CORRECTION')
    entries.push(['quantity', packWire(a.quantity)], ['price', packWire(a.price)]);
  return entries;
}

/** The map of `entries` with `field` replaced by `value` bytes (or removed when `value` is null). */
function replaced(
  entries: Array<[string, Uint8Array]>,
  field: string,
  value: Uint8Array | null,
): Buffer {
  const kept = entries
    .map(([k, v]): [string, Uint8Array] | undefined =>
      k !== field ? [k, v] : value === null ? undefined : [k, value],
    )
    .filter((e): e is [string, Uint8Array] => e !== undefined);
  return mapBytes(kept);
}

/** The fill's map with `field` replaced by `value` bytes (or removed when `value` is null). */
const withField = (fill: Fill, field: string, value: Uint8Array | null): Buffer =>
  replaced(fillEntries(fill), field, value);

const nested = (depth: number, leaf: Uint8Array): Buffer =>
  Buffer.concat([Buffer.alloc(depth, 0x91), leaf]);

// ---------------------------------------------------------------- classes

/** What a class builds on besides its base fill. */
interface DecodeContext {
  otherOrder: string;
  /** An applied fill of the base's order: what a bad bust or correction names. */
  appliedFillId: string;
}

/** A class of bad message built on a base fill (valid, far-future seq, of a real order). */
interface DecodeClass {
  name: string;
  expect: Expectation;
  bytes: (base: Fill, ctx: DecodeContext) => Uint8Array;
  /** Published on another subject than the base order's. */
  subject?: (base: Fill, wire: WireTarget) => string;
}

const invalid = (field: string): Expectation => ({ outcome: Outcome.InvalidField, field });
const decodeFailed: Expectation = { outcome: Outcome.DecodeFailed, field: '(message)' };
const notAMap = invalid('(message)');
const FIELDS = ['v', 'fillId', 'blockOrderId', 'seq', 'quantity', 'price', 'venue', 'executedAtMs'];
/** A value of the wrong msgpack type for each field. */
const WRONG_TYPE: Record<string, unknown> = {
  v: '1',
  fillId: 1234,
  blockOrderId: 42,
  seq: '1',
  quantity: '100',
  price: '101.25',
  venue: 7,
  executedAtMs: '2026-11-20T14:30:00Z',
};

/** A class whose message is the base fill with one field replaced (or, with null, removed). */
const f = (
  name: string,
  field: string,
  value: Uint8Array | null,
  expect = invalid(field),
): DecodeClass => ({ name, expect, bytes: (base: Fill) => withField(base, field, value) });
const raw = (
  name: string,
  expect: Expectation,
  bytes: (base: Fill) => Uint8Array,
): DecodeClass => ({ name, expect, bytes });

function decodeClasses(): DecodeClass[] {
  return [
    ...notMsgpackClasses(),
    ...fieldClasses(),
    ...valueClasses(),
    ...routingClasses(),
    ...amendmentWireClasses(),
  ];
}

/** Bytes that are not msgpack, and msgpack that is not a map. */
function notMsgpackClasses(): DecodeClass[] {
  return [
    raw('not msgpack (truncated map header)', decodeFailed, () => Buffer.from([0xde, 0x00])),
    raw('reserved byte 0xc1', decodeFailed, () => Buffer.from([0xc1])),
    raw('reserved byte 0xc1 inside a map', decodeFailed, (b) =>
      mapBytes([...fillEntries(b).filter(([k]) => k !== 'venue'), ['venue', Buffer.from([0xc1])]]),
    ),
    raw('empty payload', decodeFailed, () => Buffer.alloc(0)),
    raw('truncated fill', decodeFailed, (b) => {
      const full = encodeFill(b);
      return full.subarray(0, Math.floor(full.length / 2));
    }),
    raw('trailing bytes after a fill', decodeFailed, (b) =>
      Buffer.concat([encodeFill(b), Buffer.from([0x01])]),
    ),
    raw('JSON text instead of msgpack', decodeFailed, (b) =>
      Buffer.from(JSON.stringify({ ...b, quantity: '1', price: '1' })),
    ),
    raw(`nesting ${DEEP_NESTING} deep`, decodeFailed, () => nested(DEEP_NESTING, packWire(1))),
    raw('top level: array', notAMap, (b) => packWire(fillEntries(b).map(([k]) => k))),
    raw('top level: string', notAMap, () => packWire('fill')),
    raw('top level: nil', notAMap, () => packWire(null)),
    raw('top level: number', notAMap, () => packWire(42)),
    raw('top level: boolean', notAMap, () => packWire(true)),
    raw('top level: bin', notAMap, (b) => packWire(encodeFill(b))),
  ];
}

/** Each field: of the wrong type, missing, or a float where an integer belongs. */
function fieldClasses(): DecodeClass[] {
  return [
    ...FIELDS.map((field) => f(`wrong type: ${field}`, field, packWire(WRONG_TYPE[field]))),
    ...FIELDS.map((field) => f(`missing: ${field}`, field, null)),
    f('float64 67.0 in quantity', 'quantity', floatBytes(67, 64)),
    f('float32 67.0 in quantity', 'quantity', floatBytes(67, 32)),
    f('float64 67.5 in quantity', 'quantity', floatBytes(67.5, 64)),
    f('float64 integral price', 'price', floatBytes(101_250_000, 64)),
    f('float32 integral price', 'price', floatBytes(1024, 32)),
    f('float64 integral seq', 'seq', floatBytes(FAR_SEQ + 67, 64)),
    // float32 holds integers exactly only up to 2^24: still far beyond any order's fills.
    f('float32 integral seq', 'seq', floatBytes(2 ** 24, 32)),
    f('float64 integral executedAtMs', 'executedAtMs', floatBytes(1_763_649_000_000, 64)),
    f('float64 1.0 in v', 'v', floatBytes(1, 64)),
    f('float32 1.0 in v', 'v', floatBytes(1, 32)),
  ];
}

/** Values out of range: overflows, signs, sizes, nesting. */
function valueClasses(): DecodeClass[] {
  return [
    f('quantity beyond int64 (uint64 max)', 'quantity', UINT64_MAX_BYTES),
    f('quantity beyond 64 bits (bigint extension)', 'quantity', packWire(2n ** 70n)),
    f('price beyond int64 (uint64 max)', 'price', UINT64_MAX_BYTES),
    f('seq beyond int64 (uint64 max)', 'seq', UINT64_MAX_BYTES),
    raw('notional beyond the maximum', invalid('price'), (b) =>
      withField(withFieldFill(b, { quantity: 10n ** 9n }), 'price', packWire(10n ** 10n)),
    ),
    f('zero quantity', 'quantity', packWire(0n)),
    f('negative quantity', 'quantity', packWire(-5n)),
    f('zero price', 'price', packWire(0n)),
    f('negative executedAtMs', 'executedAtMs', packWire(-1n)),
    f('seq 0', 'seq', packWire(0n)),
    f('negative seq', 'seq', packWire(-1n)),
    f('schema version 3 (unknown)', 'v', packWire(3)),
    f(`huge venue (${HUGE_STRING_CHARS} chars)`, 'venue', packWire('V'.repeat(HUGE_STRING_CHARS))),
    f(
      `huge fillId (${HUGE_STRING_CHARS} chars)`,
      'fillId',
      packWire('F'.repeat(HUGE_STRING_CHARS)),
    ),
    f('empty venue', 'venue', packWire('')),
    f('fillId with a dot', 'fillId', packWire('F.1')),
    f('blockOrderId with a wildcard', 'blockOrderId', packWire('BO*')),
    f(`venue nested ${FIELD_NESTING} deep`, 'venue', nested(FIELD_NESTING, packWire('XNYS'))),
    raw(`huge key (${HUGE_STRING_CHARS} chars), no fields`, invalid('v'), () =>
      mapBytes([['K'.repeat(HUGE_STRING_CHARS), packWire(1)]]),
    ),
    raw(`${MANY_KEYS} keys, no fields`, invalid('v'), () =>
      mapBytes(Array.from({ length: MANY_KEYS }, (_, i) => [`k${i}`, packWire(i)] as const)),
    ),
  ];
}

/** Well-formed fills on the wrong subject or at an impossible seq. */
function routingClasses(): DecodeClass[] {
  return [
    {
      name: 'payload for another order than its subject',
      expect: invalid('blockOrderId'),
      bytes: (b, ctx) => encodeFill({ ...b, blockOrderId: ctx.otherOrder }),
    },
    {
      name: 'subject in the wrong partition',
      expect: invalid('blockOrderId'),
      bytes: (b) => encodeFill(b),
      subject: (b, w) =>
        `${w.subjectRoot}.${(partitionOf(b.blockOrderId, w.partitions) + 1) % w.partitions}.${b.blockOrderId}`,
    },
    {
      name: 'seq far in the future',
      expect: { outcome: Outcome.DeliveriesExhausted },
      bytes: (b) => encodeFill(b),
    },
  ];
}

const withFieldFill = (fill: Fill, over: Partial<Fill>): Fill => ({ ...fill, ...over });

/**
 * The base fill as an amendment of `kind` at the same far-future seq, naming
 * an applied fill of its order: valid but for that seq, so a malformed one
 * let through would be DELIVERIES_EXHAUSTED, never applied.
 */
function amendmentOn(base: Fill, kind: Amendment['kind'], ctx: DecodeContext): Amendment {
  const head = {
    amendmentId: base.fillId,
    blockOrderId: base.blockOrderId,
    seq: base.seq,
    executedAtMs: base.executedAtMs,
  };
  if (kind === 'CANCEL') return { kind, ...head };
  if (kind === 'BUST') return { kind, ...head, fillId: ctx.appliedFillId };
  return { kind, ...head, fillId: ctx.appliedFillId, quantity: base.quantity, price: base.price };
}

/** Schema 2 (busts, corrections, cancels) malformed: each refused by the decoder with its field. */
function amendmentWireClasses(): DecodeClass[] {
  const a = (
    name: string,
    kind: Amendment['kind'],
    field: string,
    value: Uint8Array | null,
    expect = invalid(field),
  ): DecodeClass => ({
    ...{ name, expect },
    bytes: (b, ctx) => replaced(amendmentEntries(amendmentOn(b, kind, ctx)), field, value),
  });
  return [
    a('amendment: unknown kind', 'BUST', 'kind', packWire('REVERSAL')),
    a('amendment: kind in lower case', 'BUST', 'kind', packWire('bust')),
    // A fill under schema 2 is read as an amendment, so what it lacks is a kind.
    raw('fill labelled schema 2', invalid('kind'), (b) => withField(b, 'v', packWire(2))),
    a('amendment: missing amendmentId', 'CANCEL', 'amendmentId', null),
    a(
      `amendment: huge amendmentId (${HUGE_STRING_CHARS} chars)`,
      'CANCEL',
      'amendmentId',
      packWire('A'.repeat(HUGE_STRING_CHARS)),
    ),
    a('amendmentId with a dot', 'BUST', 'amendmentId', packWire('A.1')),
    a('bust without fillId', 'BUST', 'fillId', null),
    a('correction: float64 67.5 in price', 'CORRECTION', 'price', floatBytes(67.5, 64)),
    a('correction: zero quantity', 'CORRECTION', 'quantity', packWire(0n)),
    // Under schema 1 a bust is a fill without its quantity.
    a('bust labelled schema 1', 'BUST', 'v', packWire(1), invalid('quantity')),
    {
      name: 'amendment for another order than its subject',
      expect: invalid('blockOrderId'),
      bytes: (b, ctx) =>
        encodeAmendment({ ...amendmentOn(b, 'CANCEL', ctx), blockOrderId: ctx.otherOrder }),
    },
    {
      name: 'amendment at a seq far in the future',
      expect: { outcome: Outcome.DeliveriesExhausted },
      bytes: (b, ctx) => encodeAmendment(amendmentOn(b, 'BUST', ctx)),
    },
  ];
}

// ---------------------------------------------------------------- build

interface Roles {
  /** The order with the most fills: its first fill id comes back at its next seq; then its last fill is corrected. */
  reuseOverTime: string;
  /** Its last genuine fill is displaced by a bogus one. */
  victim: string;
  /** Refuses an overfill; then its remainder is cancelled. */
  overfill: string;
  /** Gets another order's fill id at its next seq; then the invalid busts and corrections there. */
  reuseAcrossOrders: string;
  /** Conflicting and duplicate re-sends of applied seqs; then its first fill is busted. */
  repeats: string;
}

function assignRoles(scenario: Scenario): Roles {
  const targetOf = new Map(
    scenario.seed.blockOrders.map((o) => [o.id, o.targets.reduce((s, t) => s + t.quantity, 0n)]),
  );
  // A probe of 1 share at an order's next seq must fit (else it is an OVERFILL, not what its class tests).
  const room = (id: string, fills: Fill[]) =>
    (targetOf.get(id) ?? 0n) > fills.reduce((s, f) => s + f.quantity, 0n);
  const orders = [...scenario.fillsByOrder.entries()]
    .filter(([id, fills]) => fills.length >= 3 && room(id, fills))
    .sort((a, b) => b[1].length - a[1].length || (a[0] < b[0] ? -1 : 1))
    .map(([id]) => id);
  const [reuseOverTime, victim, overfill, reuseAcrossOrders, repeats] = orders;
  if (!reuseOverTime || !victim || !overfill || !reuseAcrossOrders || !repeats)
    throw new Error(
      'the poison corpus needs at least 5 block orders with 3 fills or more each, not filled completely',
    );
  return { reuseOverTime, victim, overfill, reuseAcrossOrders, repeats };
}

/** The corpus for `scenario` (whose orders must not be filled completely: see poison.ts). */
export function buildCorpus(scenario: Scenario, wire: WireTarget): Corpus {
  if (wire.partitions < 2) throw new Error('the poison corpus needs at least 2 partitions');
  const roles = assignRoles(scenario);
  const subjectOf = (id: string) => fillSubject(wire.subjectRoot, id, wire.partitions);
  const fillsOf = (id: string) => scenario.fillsByOrder.get(id) ?? [];
  let n = 0;
  const msgId = () => `poison-${++n}`;

  const bad = decodeMessages(scenario, wire, roles, msgId);
  const unknown: Fill = {
    ...(fillsOf(roles.repeats)[0] as Fill),
    blockOrderId: 'NOSUCH-ORDER',
    fillId: 'NOSUCH-ORDER-F1',
  };
  bad.push({
    ...message('unknown block order', subjectOf(unknown.blockOrderId), unknown, msgId()),
    expect: { outcome: Outcome.UnknownBlockOrder },
  });

  const victimFills = fillsOf(roles.victim);
  const genuine = victimFills.at(-1) as Fill;
  const good = scenario.publishOrder.filter((f) => f !== genuine);
  const goodMessages = good.map((fill) => ({
    ...message(GOOD_FILL_CLASS, subjectOf(fill.blockOrderId), fill, fill.fillId),
    expect: { outcome: Outcome.Allocated },
  }));
  const later = afterApplied(scenario, roles, subjectOf, msgId);
  const amended = amendmentPhases(scenario, roles, subjectOf, msgId);
  const messages = [
    ...interleave(goodMessages, bad),
    ...later.messages,
    ...amended.messages,
    {
      ...message(
        'genuine fill after a bogus one took its seq',
        subjectOf(genuine.blockOrderId),
        genuine,
        genuine.fillId,
      ),
      phase: Phase.Victim,
      expect: { outcome: Outcome.ConflictingExecution },
    },
  ];
  const expectedFills = new Map<string, Entry[]>(scenario.fillsByOrder);
  expectedFills.set(roles.victim, [...victimFills.slice(0, -1), later.bogus]);
  // Each applied amendment takes the seq after its order's last fill.
  for (const a of amended.applied)
    expectedFills.set(a.blockOrderId, [...(expectedFills.get(a.blockOrderId) ?? []), a]);
  return {
    messages,
    classes: classesOf(messages),
    goodFills: good,
    expectedFills,
    duplicates: messages.filter((m) => m.expect.outcome === Outcome.Duplicate).length,
  };
}

/** The decode and validation classes, one message each, on the orders in turn. */
function decodeMessages(
  scenario: Scenario,
  wire: WireTarget,
  roles: Roles,
  msgId: () => string,
): CorpusMessage[] {
  const orderIds = [...scenario.fillsByOrder.keys()].sort();
  return decodeClasses().map((c, i) => {
    const orderId = orderIds[i % orderIds.length] ?? roles.repeats;
    const template = scenario.fillsByOrder.get(orderId)?.[0];
    if (!template) throw new Error(`order ${orderId} has no fills`);
    const base: Fill = {
      ...template,
      fillId: `${orderId}-POISON${i + 1}`,
      seq: FAR_SEQ + i + 1,
      quantity: 1n,
    };
    const ctx = {
      otherOrder: orderIds[(i + 1) % orderIds.length] ?? orderId,
      appliedFillId: template.fillId,
    };
    const subject = c.subject
      ? c.subject(base, wire)
      : fillSubject(wire.subjectRoot, orderId, wire.partitions);
    return {
      ...{ cls: c.name, subject, bytes: c.bytes(base, ctx), msgId: msgId() },
      ...{ phase: Phase.Interleaved, expect: c.expect, fill: base },
    };
  });
}

function message(cls: string, subject: string, entry: Entry, id: string): CorpusMessage {
  return {
    ...{ cls, subject, bytes: encodeEntry(entry), msgId: id, phase: Phase.Interleaved },
    ...{ expect: { outcome: Outcome.Allocated }, fill: entry },
  };
}

/** Messages that need their order's good fills applied first. */
function afterApplied(
  scenario: Scenario,
  roles: Roles,
  subjectOf: (id: string) => string,
  msgId: () => string,
): { messages: CorpusMessage[]; bogus: Fill } {
  const fillsOf = (id: string) => scenario.fillsByOrder.get(id) ?? [];
  const [r1, r2, r3] = fillsOf(roles.repeats) as [Fill, Fill, Fill];
  const oldest = fillsOf(roles.reuseOverTime)[0] as Fill;
  const next = (id: string, over: Partial<Fill>): Fill => {
    const last = fillsOf(id).at(-1) as Fill;
    return { ...last, fillId: `${id}-NEXT`, seq: last.seq + 1, quantity: 1n, ...over };
  };
  const target = scenario.seed.blockOrders.find((o) => o.id === roles.overfill);
  const overfillQuantity = (target?.targets ?? []).reduce((s, t) => s + t.quantity, 1n);
  const victimFills = fillsOf(roles.victim);
  const genuine = victimFills.at(-1) as Fill;
  const bogus: Fill = { ...genuine, fillId: `${roles.victim}-BOGUS`, quantity: 1n };
  const conflict: Expectation = { outcome: Outcome.ConflictingExecution };
  const cases: Array<[string, Fill, Expectation]> = [
    [
      'overfill',
      next(roles.overfill, { quantity: overfillQuantity }),
      { outcome: Outcome.Overfill },
    ],
    ['same seq, another fillId', { ...r1, fillId: `${r1.fillId}-OTHER` }, conflict],
    ['same fillId, other quantity', { ...r2, quantity: r2.quantity + 1n }, conflict],
    ['same fillId, other price', { ...r2, price: r2.price + 1n }, conflict],
    ['same fillId, other venue', { ...r2, venue: r2.venue === 'XNYS' ? 'XNAS' : 'XNYS' }, conflict],
    ['same fillId, other executedAtMs', { ...r2, executedAtMs: r2.executedAtMs + 1 }, conflict],
    ['fillId re-sent at another applied seq', { ...r3, fillId: r1.fillId }, conflict],
    [
      'fillId re-used on another order',
      next(roles.reuseAcrossOrders, { fillId: r1.fillId }),
      conflict,
    ],
    [
      'old fillId re-sent at the next seq',
      next(roles.reuseOverTime, { fillId: oldest.fillId }),
      conflict,
    ],
    [
      'exact duplicate of a recent fill',
      fillsOf(roles.repeats).at(-1) as Fill,
      { outcome: Outcome.Duplicate },
    ],
    ['exact duplicate of an old fill', oldest, { outcome: Outcome.Duplicate }],
    ['bogus fill takes a seq', bogus, { outcome: Outcome.Allocated }],
  ];
  const messages = cases.map(([cls, fill, expect]) => ({
    ...message(cls, subjectOf(fill.blockOrderId), fill, msgId()),
    phase: Phase.AfterApplied,
    expect,
  }));
  return { messages, bogus };
}

type Case = [cls: string, entry: Entry, expect: Expectation];

/** A cent in fixed point (6 decimals): enough to make a price another one. */
const CENT = 10_000n;

/** The amendment phases: one valid amendment on each of three orders, and the invalid ones around them. */
function amendmentPhases(
  scenario: Scenario,
  roles: Roles,
  subjectOf: (id: string) => string,
  msgId: () => string,
): { messages: CorpusMessage[]; applied: Amendment[] } {
  const applied = appliedAmendments(scenario, roles);
  const toMessages = (phase: Phase, cases: Case[]) =>
    cases.map(([cls, entry, expect]) => ({
      ...message(cls, subjectOf(entry.blockOrderId), entry, msgId()),
      ...{ phase, expect },
    }));
  return {
    messages: [
      ...toMessages(Phase.Amend, amendCases(scenario, roles, applied)),
      ...toMessages(Phase.AfterAmend, afterAmendCases(scenario, roles, applied)),
    ],
    applied: [applied.bust, applied.correction, applied.cancel],
  };
}

interface AppliedAmendments {
  bust: Extract<Amendment, { kind: 'BUST' }>;
  correction: Extract<Amendment, { kind: 'CORRECTION' }>;
  cancel: Extract<Amendment, { kind: 'CANCEL' }>;
}

const lastFillOf = (scenario: Scenario, id: string): Fill =>
  scenario.fillsByOrder.get(id)?.at(-1) as Fill;

/** An amendment's head `k` seqs after the last fill of order `id`, under an id of its own. */
function slot(scenario: Scenario, id: string, k: number, tag: string) {
  const last = lastFillOf(scenario, id);
  return {
    ...{ amendmentId: `${id}-${tag}`, blockOrderId: id },
    ...{ seq: last.seq + k, executedAtMs: last.executedAtMs + k },
  };
}

/** The three amendments that must be applied, each at its order's next seq after the fills. */
function appliedAmendments(scenario: Scenario, roles: Roles): AppliedAmendments {
  const first = scenario.fillsByOrder.get(roles.repeats)?.[0] as Fill;
  const latest = lastFillOf(scenario, roles.reuseOverTime);
  return {
    // An old fill, out of the order's pending entries: its version comes from the index.
    bust: { kind: 'BUST', ...slot(scenario, roles.repeats, 1, 'BUST'), fillId: first.fillId },
    // Quantity and price both: the fill is re-allocated and re-priced.
    correction: {
      kind: 'CORRECTION',
      ...slot(scenario, roles.reuseOverTime, 1, 'CORRECTION'),
      fillId: latest.fillId,
      quantity: latest.quantity > 1n ? latest.quantity / 2n : latest.quantity,
      price: latest.price + CENT,
    },
    cancel: { kind: 'CANCEL', ...slot(scenario, roles.overfill, 1, 'CANCEL') },
  };
}

/** Phase amend: the valid amendments, and invalid ones at the next seq of an order that takes none. */
function amendCases(scenario: Scenario, roles: Roles, applied: AppliedAmendments): Case[] {
  const probed = roles.reuseAcrossOrders;
  const fills = scenario.fillsByOrder.get(probed) ?? [];
  const latest = fills.at(-1) as Fill;
  const target = scenario.seed.blockOrders.find((o) => o.id === probed)?.targets ?? [];
  const remaining =
    target.reduce((s, t) => s + t.quantity, 0n) - fills.reduce((s, f) => s + f.quantity, 0n);
  const otherOrdersFill = scenario.fillsByOrder.get(roles.repeats)?.[1] as Fill;
  const at = (tag: string) => slot(scenario, probed, 1, tag);
  const corrected = { fillId: latest.fillId, quantity: latest.quantity, price: latest.price };
  const ok: Expectation = { outcome: Outcome.Applied };
  return [
    ['bust', applied.bust, ok],
    ['correction', applied.correction, ok],
    ['cancel', applied.cancel, ok],
    [
      'bust of an unknown fill',
      { kind: 'BUST', ...at('BUST-UNKNOWN'), fillId: `${probed}-NOSUCH-FILL` },
      { outcome: Outcome.UnknownFill },
    ],
    [
      'bust of a fill of another order',
      { kind: 'BUST', ...at('BUST-OTHER'), fillId: otherOrdersFill.fillId },
      { outcome: Outcome.UnknownFill },
    ],
    [
      "correction above the order's remaining",
      {
        kind: 'CORRECTION',
        ...at('CORRECTION-OVER'),
        ...{ ...corrected, quantity: latest.quantity + remaining + 1n },
      },
      { outcome: Outcome.CorrectionOverfill },
    ],
    [
      'correction to the same quantity and price',
      { kind: 'CORRECTION', ...at('CORRECTION-SAME'), ...corrected },
      { outcome: Outcome.CorrectionChangesNothing },
    ],
  ];
}

/** Phase afterAmend: once the amendments are applied, re-sends and what they made invalid. */
const afterAmendCases = (scenario: Scenario, roles: Roles, applied: AppliedAmendments): Case[] => [
  ...resendCases(scenario, roles, applied),
  ...invalidatedCases(scenario, roles, applied),
];

/** Exact and differing re-sends at the applied amendments' seqs (and an amendment id a fill claimed). */
function resendCases(scenario: Scenario, roles: Roles, applied: AppliedAmendments): Case[] {
  const { bust, correction, cancel } = applied;
  const [, r2, r3] = scenario.fillsByOrder.get(roles.repeats) as [Fill, Fill, Fill];
  const cancelled = lastFillOf(scenario, roles.overfill);
  const conflict: Expectation = { outcome: Outcome.ConflictingExecution };
  const duplicate: Expectation = { outcome: Outcome.Duplicate };
  return [
    ['exact re-send of an applied bust', bust, duplicate],
    ['exact re-send of an applied correction', correction, duplicate],
    ['exact re-send of an applied cancel', cancel, duplicate],
    [
      "another bust at an applied bust's seq",
      { ...bust, amendmentId: `${bust.amendmentId}-OTHER`, fillId: r2.fillId },
      conflict,
    ],
    [
      "another price at an applied correction's seq",
      { ...correction, price: correction.price + CENT },
      conflict,
    ],
    [
      "fill at an applied cancel's seq",
      { ...cancelled, fillId: `${roles.overfill}-AT-CANCEL`, seq: cancel.seq, quantity: 1n },
      conflict,
    ],
    // One id space: a cancel accepted at its next seq whose id an applied fill claimed.
    [
      'amendmentId that is an applied fill id',
      {
        kind: 'CANCEL',
        ...slot(scenario, roles.reuseAcrossOrders, 1, 'x'),
        amendmentId: r3.fillId,
      },
      conflict,
    ],
  ];
}

/** At the seq after each applied amendment: what it made invalid. */
function invalidatedCases(scenario: Scenario, roles: Roles, applied: AppliedAmendments): Case[] {
  const r1 = scenario.fillsByOrder.get(roles.repeats)?.[0] as Fill;
  const cancelled = lastFillOf(scenario, roles.overfill);
  const busted: Expectation = { outcome: Outcome.AlreadyBusted };
  const afterBust = (tag: string) => slot(scenario, roles.repeats, 2, tag);
  const afterCancel = (tag: string) => slot(scenario, roles.overfill, 2, tag);
  return [
    [
      'second bust of a busted fill',
      { kind: 'BUST', ...afterBust('BUST-AGAIN'), fillId: r1.fillId },
      busted,
    ],
    [
      'correction of a busted fill',
      {
        kind: 'CORRECTION',
        ...afterBust('CORRECTION-BUSTED'),
        fillId: r1.fillId,
        quantity: r1.quantity,
        price: r1.price + CENT,
      },
      busted,
    ],
    [
      'second cancel',
      { kind: 'CANCEL', ...afterCancel('CANCEL-AGAIN') },
      { outcome: Outcome.AlreadyCancelled },
    ],
    [
      'fill after a cancel',
      {
        ...cancelled,
        fillId: `${roles.overfill}-AFTER-CANCEL`,
        seq: applied.cancel.seq + 1,
        quantity: 1n,
      },
      { outcome: Outcome.OrderCancelled },
    ],
    // A cancelled order's fills may only be lowered, whatever its targets still need.
    [
      'correction raising a fill after a cancel',
      {
        kind: 'CORRECTION',
        ...afterCancel('CORRECTION-UP'),
        fillId: cancelled.fillId,
        quantity: cancelled.quantity + 1n,
        price: cancelled.price,
      },
      { outcome: Outcome.CorrectionOverfill },
    ],
  ];
}

/** Spreads `bad` evenly through `good`, keeping the order of each (so each order's fills stay in sequence). */
function interleave(good: CorpusMessage[], bad: CorpusMessage[]): CorpusMessage[] {
  const out: CorpusMessage[] = [];
  let b = 0;
  good.forEach((g, i) => {
    while (b < bad.length && b * good.length <= i * bad.length) out.push(bad[b++] as CorpusMessage);
    out.push(g);
  });
  while (b < bad.length) out.push(bad[b++] as CorpusMessage);
  return out;
}

function classesOf(messages: CorpusMessage[]): PoisonClass[] {
  const byName = new Map<string, PoisonClass>();
  for (const m of messages) {
    const c = byName.get(m.cls) ?? { name: m.cls, expect: m.expect, count: 0 };
    c.count++;
    byName.set(m.cls, c);
  }
  return [...byName.values()];
}

/** An expectation as the table shows it: `INVALID_FIELD seq`, `DUPLICATE`. */
export function describeExpectation(e: Expectation): string {
  return e.field ? `${e.outcome} ${e.field}` : e.outcome;
}
