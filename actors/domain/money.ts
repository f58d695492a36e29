/**
 * Fixed-point money arithmetic. Pure: every quantity, price and cash amount is
 * a `bigint`; nothing here ever touches a float.
 *
 * - Quantities are whole shares.
 * - Prices are fixed point with PRICE_DECIMALS fraction digits: 123456789n is
 *   123.456789 currency units per share.
 * - Cash is in minor units with CASH_DECIMALS fraction digits (cents).
 */
import { ValidationError, assertNever, invariant } from '../errors.ts';

export const PRICE_DECIMALS = 6;
export const CASH_DECIMALS = 2;
/** One currency unit per share, as a price. */
export const PRICE_SCALE = 10n ** BigInt(PRICE_DECIMALS);

/** Values are stored as msgpack int64, so they must fit a signed 64-bit integer. */
export const INT64_MAX = 2n ** 63n - 1n;
export const INT64_MIN = -(2n ** 63n);

export type Side = 'BUY' | 'SELL';

/** quantity * price is in units of 10^-PRICE_DECIMALS; cash in 10^-CASH_DECIMALS. */
/** Price units (quantity × price) per cent. */
export const PRICE_TO_CASH_DIVISOR = 10n ** BigInt(PRICE_DECIMALS - CASH_DECIMALS);

/**
 * numerator / denominator rounded to the nearest integer, ties to the even
 * neighbour (banker's rounding). Exact for any sign of numerator.
 */
export function roundHalfEven(numerator: bigint, denominator: bigint): bigint {
  invariant(denominator > 0n, `roundHalfEven: denominator must be > 0, got ${denominator}`);
  // BigInt division truncates toward zero; turn it into floor division so the
  // remainder is always in [0, denominator).
  let quotient = numerator / denominator;
  let remainder = numerator % denominator;
  if (remainder < 0n) {
    quotient -= 1n;
    remainder += denominator;
  }
  const twice = 2n * remainder;
  if (twice > denominator) return quotient + 1n;
  if (twice < denominator) return quotient;
  return quotient % 2n === 0n ? quotient : quotient + 1n;
}

/**
 * Notional of `quantity` shares at `price`, in cash minor units (cents).
 *
 * Rounding rule: the notional is computed PER ALLOCATION LINE (not per fill)
 * and rounded half-to-even to the cent. Consequences:
 * - the sum of a fill's line notionals may differ from the notional of the
 *   whole fill by at most half a cent per line;
 * - an account's cash change is exactly the sum of its lines' notionals
 *   (there is no separate rounding at the account level).
 */
export function notionalMinor(quantity: bigint, price: bigint): bigint {
  return roundHalfEven(quantity * price, PRICE_TO_CASH_DIVISOR);
}

/**
 * Cash change, in minor units, for an account that trades `quantity` shares at
 * `price`: a BUY pays (negative), a SELL receives (positive).
 */
export function cashDelta(side: Side, quantity: bigint, price: bigint): bigint {
  invariant(quantity >= 0n, `cashDelta: quantity must be >= 0, got ${quantity}`);
  const notional = notionalMinor(quantity, price);
  switch (side) {
    case 'BUY':
      return -notional;
    case 'SELL':
      return notional;
    default:
      return assertNever(side, 'side');
  }
}

/**
 * Volume-weighted average price from sum(quantity * price) and sum(quantity),
 * as a price (PRICE_DECIMALS), rounded half-to-even. Null when nothing traded.
 */
export function vwap(sumQtyTimesPrice: bigint, sumQty: bigint): bigint | null {
  invariant(sumQty >= 0n, `vwap: total quantity must be >= 0, got ${sumQty}`);
  if (sumQty === 0n) return null;
  return roundHalfEven(sumQtyTimesPrice, sumQty);
}

/** Fixed-point value with `decimals` fraction digits as text: (1234n, 2) -> "12.34". */
export function formatDecimal(value: bigint, decimals: number): string {
  invariant(
    Number.isSafeInteger(decimals) && decimals >= 0,
    `formatDecimal: bad decimals ${decimals}`,
  );
  const sign = value < 0n ? '-' : '';
  const digits = (value < 0n ? -value : value).toString().padStart(decimals + 1, '0');
  if (decimals === 0) return sign + digits;
  const cut = digits.length - decimals;
  return `${sign}${digits.slice(0, cut)}.${digits.slice(cut)}`;
}

/** |value|, exact. */
export const absBig = (value: bigint): bigint => (value < 0n ? -value : value);

/** A price as text with all PRICE_DECIMALS digits: 123456789n -> "123.456789". */
export function formatPrice(price: bigint): string {
  return formatDecimal(price, PRICE_DECIMALS);
}

const PLAIN_DECIMAL = /^(-?)([0-9]+)(?:\.([0-9]+))?$/;

/**
 * Parses a plain decimal ("-12.5", "100", "0.000001") into a fixed-point bigint
 * with `decimals` fraction digits. Rejects, with a ValidationError on `field`,
 * anything else: empty text, "+", whitespace, exponents, ".5", "5.", separators,
 * and more than `decimals` fraction digits (even trailing zeros: no silent
 * rounding or truncation).
 */
export function parseDecimal(field: string, text: string, decimals: number): bigint {
  invariant(
    Number.isSafeInteger(decimals) && decimals >= 0,
    `parseDecimal: bad decimals ${decimals}`,
  );
  const rule = `must be a plain decimal with at most ${decimals} fraction digits`;
  // Guards callers that pass unchecked JSON (a number would otherwise be
  // stringified by the regex test).
  if (typeof text !== 'string') throw new ValidationError(field, rule);
  const match = PLAIN_DECIMAL.exec(text);
  if (match === null) throw new ValidationError(field, rule);
  const [, sign = '', whole = '', fraction = ''] = match;
  if (fraction.length > decimals) throw new ValidationError(field, rule);
  const magnitude = BigInt(whole + fraction.padEnd(decimals, '0'));
  return sign === '-' ? -magnitude : magnitude;
}

/** Throws a ValidationError on `field` unless value fits a signed 64-bit integer. */
export function assertInt64(field: string, value: bigint): void {
  if (value > INT64_MAX || value < INT64_MIN) {
    throw new ValidationError(field, 'must fit in a signed 64-bit integer');
  }
}
