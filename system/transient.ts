/**
 * Which failures say "the infrastructure is having a moment" rather than
 * "this actor's state or input is broken". A supervisor keeps resetting an
 * actor through the first kind (with capped backoff) and only counts the
 * second kind towards stopping it.
 *
 * Our errors carry their own `transient` flag, set where they are thrown
 * (actors/errors.ts). Other errors are judged by their codes only, never by
 * their messages: a code from our table, the database's SQLSTATE class, the
 * operating system's errno. A driver error with none is wrapped at its source
 * (db.ts).
 */

// SQLSTATE classes: 08 connection, 40 rollback (40001 and deadlocks), 53
// insufficient resources, 57 operator intervention (e.g. admin shutdown);
// 42P01 undefined table (a migration or restore in progress).
import { isTransientCode } from '../actors/errors.ts';

const TRANSIENT_SQLSTATE = /^(08|40|53|57)|^42P01$/;
const TRANSIENT_ERRNO: ReadonlySet<string> = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EAI_AGAIN',
  'EHOSTUNREACH',
]);

export function isTransientFailure(error: unknown, depth = 0): boolean {
  if (typeof error !== 'object' || error === null || depth > 5) return false;
  const e = error as { transient?: unknown; code?: unknown; sqlState?: unknown; cause?: unknown };
  if (typeof e.transient === 'boolean') return e.transient;
  for (const code of [e.code, e.sqlState]) {
    if (typeof code !== 'string') continue;
    if (TRANSIENT_ERRNO.has(code) || isTransientCode(code)) return true;
    if (/^[0-9A-Z]{5}$/.test(code) && TRANSIENT_SQLSTATE.test(code)) return true;
  }
  return isTransientFailure(e.cause, depth + 1);
}
