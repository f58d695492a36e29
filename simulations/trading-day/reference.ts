/**
 * Reference data of a trading day: securities with a ticker, an asset class
 * and a round lot. Equities trade in round lots of 100, ETFs and bonds in
 * lots of 1, so both lot sizes are always present (security 0 is an equity,
 * security 1 an ETF).
 */
import { assertNever, invariant } from '../../actors/errors.ts';
import type { SeedData } from '../../persistence/reference.ts';
import type { TradingDayOptions } from './options.ts';
import { Stream, rngAt } from './random.ts';

export const AssetClass = {
  Equity: 'EQUITY',
  Etf: 'ETF',
  Bond: 'BOND',
} as const;
export type AssetClass = (typeof AssetClass)[keyof typeof AssetClass];

export interface TradingSecurity {
  index: number;
  id: string;
  ticker: string;
  assetClass: AssetClass;
  lotSize: bigint;
}

/** Round lot per asset class: what a block order's allocation rounds to. */
export function lotSizeOf(assetClass: AssetClass): bigint {
  switch (assetClass) {
    case AssetClass.Equity:
      return 100n;
    case AssetClass.Etf:
    case AssetClass.Bond:
      return 1n;
    default:
      return assertNever(assetClass, 'asset class');
  }
}

const LETTERS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ';

/** A unique four-letter ticker per index: base 26 (26^4 > any security limit). */
export function tickerOf(index: number): string {
  invariant(Number.isSafeInteger(index) && index >= 0 && index < 26 ** 4, `ticker: bad ${index}`);
  let rest = index;
  let ticker = '';
  for (let i = 0; i < 4; i++) {
    ticker = (LETTERS[rest % 26] ?? 'A') + ticker;
    rest = Math.floor(rest / 26);
  }
  return ticker;
}

export const securityIdOf = (prefix: string, index: number): string =>
  `${prefix}SEC${String(index + 1).padStart(5, '0')}`;

function assetClassAt(seed: number, index: number): AssetClass {
  if (index === 0) return AssetClass.Equity;
  if (index === 1) return AssetClass.Etf;
  const draw = rngAt(seed, Stream.Security, index).int(0, 99);
  // Mostly equities, as in a typical balanced book.
  if (draw < 60) return AssetClass.Equity;
  return draw < 85 ? AssetClass.Etf : AssetClass.Bond;
}

export function generateSecurities(options: TradingDayOptions): TradingSecurity[] {
  invariant(options.securities >= 2, 'generateSecurities: need 2 securities at least');
  const securities = Array.from({ length: options.securities }, (_, index) => {
    const assetClass = assetClassAt(options.seed, index);
    return {
      index,
      id: securityIdOf(options.idPrefix, index),
      ticker: tickerOf(index),
      assetClass,
      lotSize: lotSizeOf(assetClass),
    };
  });
  invariant(new Set(securities.map((s) => s.lotSize)).size === 2, 'both lot sizes present');
  return securities;
}

/** The securities as reference data the actors read. */
export function toSeedSecurities(securities: readonly TradingSecurity[]): SeedData['securities'] {
  return securities.map(({ id, ticker, lotSize }) => ({ id, ticker, lotSize }));
}
