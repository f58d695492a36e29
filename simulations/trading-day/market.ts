/**
 * The market of a trading day: a daily open/high/low/close bar per security
 * and day, as a seeded random walk. Floats live only inside the walk; every
 * bar is rounded to a one-cent tick and stored as a bigint price
 * (PRICE_DECIMALS, "micro"), with low <= open, close <= high and low > 0.
 */
import { PRICE_DECIMALS } from '../../actors/domain/money.ts';
import { assertNever, invariant } from '../../actors/errors.ts';
import type { TradingDayOptions } from './options.ts';
import { AssetClass, type TradingSecurity } from './reference.ts';
import { Stream, rngAt, type Rng } from './random.ts';

export interface Bar {
  openMicro: bigint;
  highMicro: bigint;
  lowMicro: bigint;
  closeMicro: bigint;
}

/** bars[securityIndex][dayIndex]. */
export interface Market {
  days: number;
  bars: ReadonlyArray<readonly Bar[]>;
}

/** One cent, the tick every price is rounded to. */
const TICK_MICRO = 10n ** BigInt(PRICE_DECIMALS - 2);
const PRICE_MIN_CENTS = 1;
const PRICE_MAX_CENTS = 10_000_000; // 100,000.00: keeps quantity * price far from int64

/** Daily volatility in basis points: bonds move least, equities most. */
function volatilityBps(assetClass: AssetClass, rng: Rng): number {
  switch (assetClass) {
    case AssetClass.Equity:
      return rng.int(100, 300);
    case AssetClass.Etf:
      return rng.int(60, 150);
    case AssetClass.Bond:
      return rng.int(10, 40);
    default:
      return assertNever(assetClass, 'asset class');
  }
}

/**
 * About N(0, 1): the sum of four uniforms, centred and scaled. Only + and *,
 * so the walk is bit-identical on every platform (no Math.log or Math.cos).
 */
function gaussian(rng: Rng): number {
  return (rng.unit() + rng.unit() + rng.unit() + rng.unit() - 2) * 1.7320508075688772;
}

const toCents = (price: number): number =>
  Math.min(PRICE_MAX_CENTS, Math.max(PRICE_MIN_CENTS, Math.round(price * 100)));

const max = (...xs: bigint[]): bigint => xs.reduce((a, b) => (b > a ? b : a));
const min = (...xs: bigint[]): bigint => xs.reduce((a, b) => (b < a ? b : a));

/** One security's bars over `days` days. */
export function walkSecurity(seed: number, security: TradingSecurity, days: number): Bar[] {
  const rng = rngAt(seed, Stream.Market, security.index);
  const sigma = volatilityBps(security.assetClass, rng) / 10_000;
  let previousClose = rng.int(500, 50_000) / 100; // 5.00 .. 500.00
  const bars: Bar[] = [];
  for (let day = 0; day < days; day++) {
    const open = toCents(previousClose * (1 + 0.3 * sigma * gaussian(rng)));
    const close = toCents((open / 100) * (1 + sigma * gaussian(rng)));
    const top = (Math.max(open, close) / 100) * (1 + 0.5 * sigma * Math.abs(gaussian(rng)));
    const bottom = (Math.min(open, close) / 100) * (1 - 0.5 * sigma * Math.abs(gaussian(rng)));
    const [o, c] = [BigInt(open) * TICK_MICRO, BigInt(close) * TICK_MICRO];
    // Rounding can cross a bound by a tick: the bigint max/min restore the invariant.
    const bar: Bar = {
      openMicro: o,
      closeMicro: c,
      highMicro: max(BigInt(toCents(top)) * TICK_MICRO, o, c),
      lowMicro: min(BigInt(toCents(bottom)) * TICK_MICRO, o, c),
    };
    invariant(bar.lowMicro > 0n && bar.lowMicro <= min(o, c), `bar low ${security.id}/${day}`);
    invariant(bar.highMicro >= max(o, c), `bar high ${security.id}/${day}`);
    bars.push(bar);
    previousClose = close / 100;
  }
  return bars;
}

export function generateMarket(
  options: TradingDayOptions,
  securities: readonly TradingSecurity[],
): Market {
  invariant(securities.length === options.securities, 'generateMarket: securities mismatch');
  const bars = securities.map((security) => walkSecurity(options.seed, security, options.days));
  invariant(
    bars.every((b) => b.length === options.days),
    'generateMarket: a short series',
  );
  return { days: options.days, bars };
}

export function barOf(market: Market, securityIndex: number, dayIndex: number): Bar {
  invariant(dayIndex >= 0 && dayIndex < market.days, `barOf: day ${dayIndex} out of range`);
  const bar = market.bars[securityIndex]?.[dayIndex];
  invariant(bar !== undefined, `barOf: no bar for security ${securityIndex} day ${dayIndex}`);
  return bar;
}
