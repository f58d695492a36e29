/**
 * The trading session of a trade date: 09:30 to 16:00 US Eastern, as epoch
 * milliseconds (UTC).
 *
 * Conversion: US Eastern is UTC-4 (EDT) from the second Sunday of March to
 * the first Sunday of November (the US rule since 2007), UTC-5 (EST) the rest
 * of the year. The switch happens at 02:00 local on a Sunday; trade dates are
 * weekdays, so the date alone decides. Computed by rule, not by Intl and the
 * machine's tz database, so the tape is the same on every machine (a test
 * checks the rule against Intl).
 */
import { invariant } from '../../actors/errors.ts';

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;
/** 09:30 and 16:00 local, in ms after local midnight. */
const OPEN_LOCAL_MS = 9.5 * HOUR_MS;
const CLOSE_LOCAL_MS = 16 * HOUR_MS;
export const SESSION_MS = CLOSE_LOCAL_MS - OPEN_LOCAL_MS;

export interface Session {
  tradeDate: string;
  /** 09:30 US Eastern, epoch ms. */
  openMs: number;
  /** 16:00 US Eastern, epoch ms (exclusive: the last fill is before it). */
  closeMs: number;
  /** Hours behind UTC: 4 (EDT) or 5 (EST). */
  utcOffsetHours: number;
}

/** The day of month of the n-th Sunday (n >= 1) of month `month0` (0-based) of `year`. */
function nthSunday(year: number, month0: number, n: number): number {
  const firstWeekday = new Date(Date.UTC(year, month0, 1)).getUTCDay();
  return 1 + ((7 - firstWeekday) % 7) + 7 * (n - 1);
}

/** Whether US daylight saving time is in effect on `date` (YYYY-MM-DD, a weekday). */
export function isEasternDaylightTime(date: string): boolean {
  const match = /^(\d{4})-(\d{2})-(\d{2})$/.exec(date);
  invariant(match !== null, `isEasternDaylightTime: bad date ${date}`);
  const [year, month, day] = [Number(match[1]), Number(match[2]), Number(match[3])];
  const key = month * 100 + day; // March 8 -> 308: compares within one year
  const starts = 300 + nthSunday(year, 2, 2);
  const ends = 1100 + nthSunday(year, 10, 1);
  return key >= starts && key < ends;
}

export function sessionOf(tradeDate: string): Session {
  const midnightUtcMs = Date.parse(`${tradeDate}T00:00:00Z`);
  invariant(Number.isFinite(midnightUtcMs), `sessionOf: bad date ${tradeDate}`);
  const weekday = new Date(midnightUtcMs).getUTCDay();
  invariant(weekday % 6 !== 0, `sessionOf: ${tradeDate} is a weekend`);
  const utcOffsetHours = isEasternDaylightTime(tradeDate) ? 4 : 5;
  // Local time + offset = UTC: 09:30 EDT is 13:30 UTC.
  const openMs = midnightUtcMs + OPEN_LOCAL_MS + utcOffsetHours * HOUR_MS;
  const session = { tradeDate, openMs, closeMs: openMs + SESSION_MS, utcOffsetHours };
  invariant(session.closeMs - midnightUtcMs < DAY_MS, 'sessionOf: the session ends the same day');
  return session;
}
