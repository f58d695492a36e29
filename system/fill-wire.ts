/**
 * The wire format of a fill on JetStream: msgpack, with a schema version.
 * Decoding validates every field and names the field and the rule it broke,
 * so a bad message can go to the dead-letter stream with a precise reason.
 */
import type { Amendment } from '../actors/block-order/amendments.ts';
import { isAmendment, type Entry, type Fill } from '../actors/block-order/decider.ts';
import { INT64_MAX } from '../actors/domain/money.ts';
import { floatKeys, packWire, unpackWire } from './wire-codec.ts';

export const FILL_WIRE_VERSION = 1;
/** Busts, corrections and cancels: schema 2, on the same subjects as their order's fills. */
export const AMENDMENT_WIRE_VERSION = 2;
/** quantity × price of one fill, in price units (1e-6): a trillion in currency. Keeps cash within int64. */
export const FILL_NOTIONAL_MAX = 10n ** 18n;
/** Ids are one NATS subject token: no '.', '*', '>' or spaces. The API uses the same rule. */
export const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;

/** The fill as published: the domain fill plus the wire schema version. */
export type WireFill = Fill & { v: number };

export type DecodeResult =
  | { ok: true; fill: Fill }
  | { ok: false; reason: 'DECODE_FAILED' | 'INVALID_FIELD'; field: string; rule: string };

export type EntryDecodeResult = { ok: true; entry: Entry } | Extract<DecodeResult, { ok: false }>;

export function encodeFill(fill: Fill): Uint8Array {
  // Integers go as bigint, so as msgpack integers: msgpackr writes a JS
  // number beyond 32 bits (an epoch in ms) as a float64, which is refused.
  return packWire({
    v: FILL_WIRE_VERSION,
    ...fill,
    seq: BigInt(fill.seq),
    executedAtMs: BigInt(fill.executedAtMs),
  });
}

export function encodeAmendment(a: Amendment): Uint8Array {
  return packWire({
    v: AMENDMENT_WIRE_VERSION,
    ...a,
    seq: BigInt(a.seq),
    executedAtMs: BigInt(a.executedAtMs),
  });
}

export const encodeEntry = (entry: Entry): Uint8Array =>
  isAmendment(entry) ? encodeAmendment(entry) : encodeFill(entry);

/** FNV-1a, 32 bit: a stable hash, the same in every process and release. */
export function partitionOf(blockOrderId: string, partitions: number): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < blockOrderId.length; i++) {
    hash ^= blockOrderId.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash % partitions;
}

export function fillSubject(subjectRoot: string, blockOrderId: string, partitions: number): string {
  return `${subjectRoot}.${partitionOf(blockOrderId, partitions)}.${blockOrderId}`;
}

type DecodeFailure = Extract<DecodeResult, { ok: false }>;

const bad = (field: string, rule: string): DecodeFailure => ({
  ok: false,
  reason: 'INVALID_FIELD',
  field,
  rule,
});

/** msgpack decodes maps as plain objects; anything else (bin, extension markers) is not a message. */
export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/** A safe integer, whether the producer encoded it as a small int or as int64 (bigint here). */
function safeNumber(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isSafeInteger(value) ? value : undefined;
  if (
    typeof value === 'bigint' &&
    value >= BigInt(Number.MIN_SAFE_INTEGER) &&
    value <= BigInt(Number.MAX_SAFE_INTEGER)
  ) {
    return Number(value);
  }
  return undefined;
}

function exactInteger(value: unknown): bigint | undefined {
  if (typeof value === 'bigint') return value;
  if (typeof value === 'number' && Number.isSafeInteger(value)) return BigInt(value);
  return undefined;
}

/**
 * A venue (a MIC, e.g. XNYS) is stored as text in the execution index: NUL,
 * control characters or broken UTF-16 there would fail the commit it shares
 * with other actors, or not compare equal after a round trip.
 */
export const VENUE_PATTERN = /^[\x20-\x7e]{1,32}$/;

/** Fields that are integers on the wire: a float there is refused whatever its value (67.0 too). */
const INTEGER_FIELDS: ReadonlySet<string> = new Set([
  'v',
  'seq',
  'quantity',
  'price',
  'executedAtMs',
]);

/** The integer field sent as a float, if any; throws on bytes that are not msgpack throughout. */
function floatIntegerField(bytes: Uint8Array): string | undefined {
  return floatKeys(bytes).find((key) => INTEGER_FIELDS.has(key));
}

/** The message as a msgpack map with no float in an integer field, or why not. */
function decodeMap(bytes: Uint8Array): { ok: true; map: Record<string, unknown> } | DecodeFailure {
  let raw: unknown;
  try {
    raw = unpackWire(bytes);
  } catch (error) {
    return {
      ok: false,
      reason: 'DECODE_FAILED',
      field: '(message)',
      rule: `must be msgpack: ${(error as Error).message}`,
    };
  }
  if (!isPlainObject(raw)) return bad('(message)', 'must be a msgpack map');
  const m = raw;
  let float: string | undefined;
  try {
    float = floatIntegerField(bytes);
  } catch (error) {
    // e.g. the reserved byte 0xc1 inside a map: the decoder let it through as a value.
    const rule = `must be msgpack: ${(error as Error).message}`;
    return { ok: false, reason: 'DECODE_FAILED', field: '(message)', rule };
  }
  if (float !== undefined) {
    const value = String(m[float] as number);
    return bad(float, `must be a msgpack integer, never a float (got float ${value})`);
  }
  return { ok: true, map: m };
}

/** A fill (schema 1) only: what the fill-only tools read. */
export function decodeFill(
  bytes: Uint8Array,
  subject: string,
  subjectRoot: string,
  partitions: number,
): DecodeResult {
  const decoded = decodeMap(bytes);
  if (!decoded.ok) return decoded;
  if (safeNumber(decoded.map.v) !== FILL_WIRE_VERSION)
    return bad('v', `must be schema version ${FILL_WIRE_VERSION}`);
  return fillOf(decoded.map, subject, subjectRoot, partitions);
}

/** Whatever the order's subject carries: a fill (schema 1) or an amendment (schema 2). */
export function decodeEntry(
  bytes: Uint8Array,
  subject: string,
  subjectRoot: string,
  partitions: number,
): EntryDecodeResult {
  const decoded = decodeMap(bytes);
  if (!decoded.ok) return decoded;
  const v = safeNumber(decoded.map.v);
  if (v === FILL_WIRE_VERSION) {
    const fill = fillOf(decoded.map, subject, subjectRoot, partitions);
    return fill.ok ? { ok: true, entry: fill.fill } : fill;
  }
  if (v === AMENDMENT_WIRE_VERSION)
    return amendmentOf(decoded.map, subject, subjectRoot, partitions);
  return bad(
    'v',
    `must be schema version ${FILL_WIRE_VERSION} (fill) or ${AMENDMENT_WIRE_VERSION} (amendment)`,
  );
}

/** The fields every entry has: the order (matching the subject), the seq and the time. */
function entryHead(
  m: Record<string, unknown>,
  subject: string,
  subjectRoot: string,
  partitions: number,
): { blockOrderId: string; seq: number; executedAtMs: number } | DecodeFailure {
  if (typeof m.blockOrderId !== 'string' || !ID_PATTERN.test(m.blockOrderId)) {
    return bad('blockOrderId', `must be a string matching ${ID_PATTERN.source}`);
  }
  const expected = fillSubject(subjectRoot, m.blockOrderId, partitions);
  if (subject !== expected)
    return bad('blockOrderId', `must match the subject (expected subject ${expected})`);
  const seq = safeNumber(m.seq);
  if (seq === undefined || seq < 1) return bad('seq', 'must be an integer >= 1');
  const executedAtMs = safeNumber(m.executedAtMs);
  if (executedAtMs === undefined || executedAtMs < 0) {
    return bad('executedAtMs', 'must be epoch milliseconds, an integer >= 0');
  }
  return { blockOrderId: m.blockOrderId, seq, executedAtMs };
}

/** A quantity and price: positive integers whose product keeps cash within int64. */
function quantityAndPrice(
  m: Record<string, unknown>,
): { quantity: bigint; price: bigint } | DecodeFailure {
  const quantity = exactInteger(m.quantity);
  if (quantity === undefined) return bad('quantity', 'must be an integer (never a float)');
  if (quantity <= 0n || quantity > INT64_MAX)
    return bad('quantity', 'must be > 0 and fit in 64 bits');
  const price = exactInteger(m.price);
  if (price === undefined)
    return bad('price', 'must be an integer in fixed point, 6 decimals (never a float)');
  if (price <= 0n || price > INT64_MAX) return bad('price', 'must be > 0 and fit in 64 bits');
  if (quantity * price > FILL_NOTIONAL_MAX) {
    return bad('price', `quantity × price must not exceed ${FILL_NOTIONAL_MAX} (1e12 in currency)`);
  }
  return { quantity, price };
}

const idOf = (m: Record<string, unknown>, field: string): string | DecodeFailure => {
  const value = m[field];
  return typeof value === 'string' && ID_PATTERN.test(value)
    ? value
    : bad(field, `must be a string matching ${ID_PATTERN.source}`);
};

function fillOf(
  m: Record<string, unknown>,
  subject: string,
  subjectRoot: string,
  partitions: number,
): DecodeResult {
  const fillId = idOf(m, 'fillId');
  if (typeof fillId !== 'string') return fillId;
  const head = entryHead(m, subject, subjectRoot, partitions);
  if ('ok' in head) return head;
  const qp = quantityAndPrice(m);
  if ('ok' in qp) return qp;
  if (typeof m.venue !== 'string' || !VENUE_PATTERN.test(m.venue))
    return bad('venue', 'must be 1 to 32 printable ASCII characters');
  const { blockOrderId, seq, executedAtMs } = head;
  return {
    ok: true,
    fill: { fillId, blockOrderId, seq, ...qp, venue: m.venue, executedAtMs },
  };
}

const AMENDMENT_KINDS: ReadonlySet<unknown> = new Set(['BUST', 'CORRECTION', 'CANCEL']);

function amendmentOf(
  m: Record<string, unknown>,
  subject: string,
  subjectRoot: string,
  partitions: number,
): EntryDecodeResult {
  if (!AMENDMENT_KINDS.has(m.kind)) return bad('kind', 'must be BUST, CORRECTION or CANCEL');
  const amendmentId = idOf(m, 'amendmentId');
  if (typeof amendmentId !== 'string') return amendmentId;
  const head = entryHead(m, subject, subjectRoot, partitions);
  if ('ok' in head) return head;
  const base = { amendmentId, ...head };
  if (m.kind === 'CANCEL') return { ok: true, entry: { kind: 'CANCEL', ...base } };
  const fillId = idOf(m, 'fillId');
  if (typeof fillId !== 'string') return fillId;
  if (m.kind === 'BUST') return { ok: true, entry: { kind: 'BUST', ...base, fillId } };
  const qp = quantityAndPrice(m);
  if ('ok' in qp) return qp;
  return { ok: true, entry: { kind: 'CORRECTION', ...base, fillId, ...qp } };
}
