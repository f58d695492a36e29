/**
 * The knobs of a generated trading day, their defaults and their limits.
 * Every size has a ceiling so a typo cannot ask for a billion accounts; the
 * options are checked once, here, and trusted everywhere else.
 */
import { invariant } from '../../actors/errors.ts';

export const TRADING_DAY_LIMITS = {
  securitiesMax: 5_000,
  accountsMax: 10_000_000,
  daysMax: 260,
  modelsMax: 200,
  /** Securities in one model portfolio. */
  modelSecuritiesMax: 50,
  groupsMax: 16,
  /** Allocation targets over all block orders of one rebalance. */
  linesMax: 50_000_000,
} as const;

export interface TradingDayOptions {
  seed: number;
  securities: number;
  accounts: number;
  /** Days of market data; day 0 is `firstTradeDate`, then one per weekday. */
  days: number;
  models: number;
  modelSecuritiesMin: number;
  modelSecuritiesMax: number;
  /** Share of accounts whose eligibility flag is set, in basis points. */
  eligibleBps: number;
  /** Largest relative deviation of a holding from its model weight, in basis points. */
  holdingSpreadBps: number;
  /** Share of accounts that also hold a security outside their model (to be sold). */
  offModelBps: number;
  /** Share of accounts that hold only cash (a new mandate: everything to buy). */
  allCashBps: number;
  /** Prefix for every id, so runs can share a database. */
  idPrefix: string;
  /** ISO date (YYYY-MM-DD, a weekday) of day 0. */
  firstTradeDate: string;
}

export const defaultTradingDay: TradingDayOptions = {
  seed: 42,
  securities: 50,
  accounts: 2_000,
  days: 5,
  models: 5,
  modelSecuritiesMin: 4,
  modelSecuritiesMax: 12,
  eligibleBps: 9_000,
  holdingSpreadBps: 1_000,
  offModelBps: 500,
  allCashBps: 200,
  idPrefix: '',
  firstTradeDate: '2026-11-16',
};

const isCount = (n: number, min: number, max: number): boolean =>
  Number.isSafeInteger(n) && n >= min && n <= max;

/** The defaults with `overrides` applied, every size within its limit. */
export function resolveOptions(overrides: Partial<TradingDayOptions> = {}): TradingDayOptions {
  const o: TradingDayOptions = { ...defaultTradingDay, ...overrides };
  const L = TRADING_DAY_LIMITS;
  invariant(isCount(o.seed, 0, Number.MAX_SAFE_INTEGER), `seed: bad ${o.seed}`);
  // Two securities at least: the first is a round lot of 100, the second of 1.
  invariant(isCount(o.securities, 2, L.securitiesMax), `securities: 2..${L.securitiesMax}`);
  invariant(isCount(o.accounts, 0, L.accountsMax), `accounts: 0..${L.accountsMax}`);
  invariant(isCount(o.days, 1, L.daysMax), `days: 1..${L.daysMax}`);
  invariant(isCount(o.models, 1, L.modelsMax), `models: 1..${L.modelsMax}`);
  invariant(
    isCount(o.modelSecuritiesMin, 1, o.modelSecuritiesMax) &&
      isCount(o.modelSecuritiesMax, 1, L.modelSecuritiesMax),
    `modelSecuritiesMin..Max: within 1..${L.modelSecuritiesMax}`,
  );
  for (const key of ['eligibleBps', 'holdingSpreadBps', 'offModelBps', 'allCashBps'] as const)
    invariant(isCount(o[key], 0, 10_000), `${key}: 0..10000`);
  invariant(/^[A-Za-z0-9_-]{0,20}$/.test(o.idPrefix), `idPrefix: up to 20 of [A-Za-z0-9_-]`);
  invariant(isWeekday(o.firstTradeDate), `firstTradeDate: a weekday YYYY-MM-DD`);
  return o;
}

const DAY_MS = 86_400_000;

function isWeekday(date: string): boolean {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(date)) return false;
  const ms = Date.parse(`${date}T00:00:00Z`);
  const weekday = new Date(ms).getUTCDay();
  return Number.isFinite(ms) && new Date(ms).toISOString().startsWith(date) && weekday % 6 !== 0;
}

/** The ISO date of trading day `dayIndex`: weekdays only, counted from day 0. */
export function tradeDateOf(options: TradingDayOptions, dayIndex: number): string {
  invariant(
    isCount(dayIndex, 0, options.days - 1),
    `day ${dayIndex} outside 0..${options.days - 1}`,
  );
  let ms = Date.parse(`${options.firstTradeDate}T00:00:00Z`);
  for (let left = dayIndex; left > 0;) {
    ms += DAY_MS;
    if (new Date(ms).getUTCDay() % 6 !== 0) left -= 1;
  }
  return new Date(ms).toISOString().slice(0, 10);
}
