/**
 * Executions as JSON: what `POST /api/v1/executions`, `npm run cli -- publish`
 * and the dead-letter replay take, and what the API shows. A JSON execution
 * is turned into the wire map and checked by the wire decoder itself
 * (fill-wire.ts), so JSON and msgpack producers meet exactly one set of rules.
 *
 * Fill:       { fillId, blockOrderId, seq, quantity, price, venue, executedAtMs }
 * Amendment:  { kind: BUST | CORRECTION | CANCEL, amendmentId, blockOrderId, seq,
 *               executedAtMs, fillId (BUST, CORRECTION), quantity, price (CORRECTION) }
 *
 * `quantity`: shares, a decimal integer string or a safe JSON integer.
 * `price`: a decimal string with at most 6 fraction digits ("101.25"); never a
 * JSON number, which would pass through a binary float.
 */
import { isAmendment, type Entry } from '../actors/block-order/decider.ts';
import { formatPrice, PRICE_DECIMALS, PRICE_SCALE } from '../actors/domain/money.ts';
import {
  AMENDMENT_WIRE_VERSION,
  decodeEntry,
  FILL_WIRE_VERSION,
  fillSubject,
  isPlainObject,
} from './fill-wire.ts';
import { packWire } from './wire-codec.ts';

/** An execution as JSON carries it: exact numbers as decimal strings. */
export type ExecutionJson = Record<string, string | number>;

export type ExecutionJsonResult =
  { ok: true; entry: Entry } | { ok: false; field: string; rule: string };

/** Fields a JSON execution may carry besides `v`; any other is refused (a typo must not pass silently). */
export const EXECUTION_JSON_FIELDS = [
  'kind',
  'amendmentId',
  'fillId',
  'blockOrderId',
  'seq',
  'quantity',
  'price',
  'venue',
  'executedAtMs',
] as const;
const KNOWN_FIELDS: ReadonlySet<string> = new Set(['v', ...EXECUTION_JSON_FIELDS]);

const INTEGER_TEXT = /^(0|[1-9][0-9]{0,19})$/;
const PRICE_TEXT = new RegExp(`^(0|[1-9][0-9]{0,18})(\\.[0-9]{1,${PRICE_DECIMALS}})?$`);

const fail = (field: string, rule: string): ExecutionJsonResult => ({ ok: false, field, rule });

/** A quantity: a decimal integer string or a safe integer; undefined when neither. */
function quantityOf(value: unknown): bigint | undefined {
  if (typeof value === 'number') return Number.isSafeInteger(value) ? BigInt(value) : undefined;
  if (typeof value === 'string' && INTEGER_TEXT.test(value)) return BigInt(value);
  return undefined;
}

/** A price in fixed point (6 decimals) from its decimal text; undefined when not one. */
function priceOf(value: unknown): bigint | undefined {
  if (typeof value !== 'string') return undefined;
  const match = PRICE_TEXT.exec(value);
  if (match === null) return undefined;
  const fraction = (match[2] ?? '').slice(1).padEnd(PRICE_DECIMALS, '0');
  return BigInt(match[1] ?? '0') * PRICE_SCALE + BigInt(fraction === '' ? '0' : fraction);
}

/** The wire map of a JSON execution, or the first field that cannot go on the wire. */
function wireMapOf(json: Record<string, unknown>): Record<string, unknown> | ExecutionJsonResult {
  const unknownField = Object.keys(json).find((k) => !KNOWN_FIELDS.has(k));
  if (unknownField !== undefined) return fail(unknownField.slice(0, 64), 'is not a known field');
  const map: Record<string, unknown> = { ...json };
  const v = 'kind' in json ? AMENDMENT_WIRE_VERSION : FILL_WIRE_VERSION;
  if (json.v !== undefined && json.v !== v)
    return fail('v', `must be ${v} (or absent) for ${'kind' in json ? 'an amendment' : 'a fill'}`);
  map.v = v;
  // As int64: msgpack would carry a JS number past 2^32 as a float, which the decoder refuses.
  for (const field of ['seq', 'executedAtMs'] as const) {
    const value = json[field];
    if (typeof value === 'number' && Number.isSafeInteger(value)) map[field] = BigInt(value);
  }
  if ('quantity' in json) {
    const quantity = quantityOf(json.quantity);
    if (quantity === undefined)
      return fail('quantity', 'must be a decimal integer string or a safe integer');
    map.quantity = quantity;
  }
  if ('price' in json) {
    const price = priceOf(json.price);
    if (price === undefined)
      return fail(
        'price',
        `must be a decimal string with at most ${PRICE_DECIMALS} fraction digits`,
      );
    map.price = price;
  }
  return map;
}

/**
 * A JSON execution as an Entry, checked by the wire decoder (with the subject
 * its order maps to), or the field and the rule it broke.
 */
export function entryFromJson(
  json: unknown,
  subjectRoot: string,
  partitions: number,
): ExecutionJsonResult {
  if (!isPlainObject(json)) return fail('(execution)', 'must be a JSON object');
  const map = wireMapOf(json);
  if ('ok' in map) return map as ExecutionJsonResult;
  const orderId = typeof json.blockOrderId === 'string' ? json.blockOrderId : '';
  // A non-matching order id fails the decoder's own check, naming blockOrderId.
  const subject = fillSubject(subjectRoot, orderId.slice(0, 64) || '_', partitions);
  const decoded = decodeEntry(packWire(map), subject, subjectRoot, partitions);
  return decoded.ok ? decoded : fail(decoded.field, decoded.rule);
}

/** An Entry as JSON: the inverse of entryFromJson. */
export function entryToJson(entry: Entry): ExecutionJson {
  const head = {
    blockOrderId: entry.blockOrderId,
    seq: entry.seq,
    executedAtMs: entry.executedAtMs,
  };
  if (!isAmendment(entry)) {
    return {
      fillId: entry.fillId,
      ...head,
      quantity: entry.quantity.toString(),
      price: formatPrice(entry.price),
      venue: entry.venue,
    };
  }
  const base = { kind: entry.kind, amendmentId: entry.amendmentId, ...head };
  switch (entry.kind) {
    case 'CANCEL':
      return base;
    case 'BUST':
      return { ...base, fillId: entry.fillId };
    case 'CORRECTION':
      return {
        ...base,
        fillId: entry.fillId,
        quantity: entry.quantity.toString(),
        price: formatPrice(entry.price),
      };
    default: {
      const never: never = entry;
      throw new Error(`unknown amendment ${JSON.stringify(never)}`);
    }
  }
}
