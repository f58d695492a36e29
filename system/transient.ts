/**
 * Which failures say "the infrastructure is having a moment" rather than
 * "this actor's state or input is broken". A supervisor keeps resetting an
 * actor through the first kind (with capped backoff) and only counts the
 * second kind towards stopping it.
 */

// SQLSTATE classes: 08 connection, 40 rollback (incl. exhausted 40001
// retries), 53 insufficient resources, 57 operator intervention (e.g. admin
// shutdown); 42P01 undefined table (a migration or restore in progress).
const TRANSIENT_SQLSTATE = /^(08|40|53|57)|^42P01$/;
const TRANSIENT_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EAI_AGAIN',
  'DB_RETRIES_EXHAUSTED',
  'JOURNAL_OVERLOADED',
]);
const TRANSIENT_MESSAGE =
  /connection (terminated|refused|reset|closed)|timeout exceeded when trying to connect/i;

export function isTransientFailure(error: unknown, depth = 0): boolean {
  if (typeof error !== 'object' || error === null || depth > 5) return false;
  const e = error as { code?: unknown; sqlState?: unknown; message?: unknown; cause?: unknown };
  for (const code of [e.code, e.sqlState]) {
    if (typeof code !== 'string') continue;
    if (TRANSIENT_CODES.has(code)) return true;
    if (/^[0-9A-Z]{5}$/.test(code) && TRANSIENT_SQLSTATE.test(code)) return true;
  }
  if (typeof e.message === 'string' && TRANSIENT_MESSAGE.test(e.message)) return true;
  return isTransientFailure(e.cause, depth + 1);
}
