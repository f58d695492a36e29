/**
 * Holdings: model portfolios (target weights per security, in basis points
 * summing to 10,000) and the accounts that follow them, each with cash,
 * positions and an eligibility flag.
 *
 * Account i is a pure function of (seed, i): `accountAt` builds it alone and
 * `streamAccounts` yields accounts one at a time, so a million accounts never
 * sit in memory together. Holdings were bought at day 0's open with a random
 * deviation from the model, so they drift from day 0 and further as the
 * market walks.
 */
import { PRICE_DECIMALS, CASH_DECIMALS } from '../../actors/domain/money.ts';
import { invariant } from '../../actors/errors.ts';
import type { SeedData } from '../../persistence/reference.ts';
import { barOf, type Market } from './market.ts';
import type { TradingDayOptions } from './options.ts';
import type { TradingSecurity } from './reference.ts';
import { Stream, rngAt, type Rng } from './random.ts';

export const WEIGHT_TOTAL_BPS = 10_000;
/** Cents to micro-currency: a price times a quantity is in micro-currency. */
export const MICRO_PER_MINOR = 10n ** BigInt(PRICE_DECIMALS - CASH_DECIMALS);

export interface ModelWeight {
  securityIndex: number;
  weightBps: number;
}

export interface ModelPortfolio {
  index: number;
  id: string;
  /** Sorted by security index; every weight > 0; they sum to WEIGHT_TOTAL_BPS. */
  weights: readonly ModelWeight[];
}

export interface HoldingPosition {
  securityIndex: number;
  quantity: bigint;
}

export interface HoldingAccount {
  index: number;
  id: string;
  name: string;
  modelId: string;
  eligible: boolean;
  cashMinor: bigint;
  /** Sorted by security index; every quantity > 0. */
  positions: readonly HoldingPosition[];
}

/** What `accountAt` needs: the reference data, the market and the models. */
export interface HoldingsWorld {
  options: TradingDayOptions;
  securities: readonly TradingSecurity[];
  market: Market;
  models: readonly ModelPortfolio[];
}

const pad = (n: number, width: number) => String(n).padStart(width, '0');
export const modelIdOf = (prefix: string, index: number) => `${prefix}MODEL${pad(index + 1, 3)}`;
export const accountIdOf = (prefix: string, index: number) => `${prefix}ACC${pad(index + 1, 8)}`;

/** `count` distinct indexes of 0..n-1, sorted: a partial Fisher-Yates shuffle. */
function pickDistinct(rng: Rng, n: number, count: number): number[] {
  invariant(count >= 1 && count <= n, `pickDistinct: ${count} of ${n}`);
  const pool = Array.from({ length: n }, (_, i) => i);
  for (let i = 0; i < count; i++) {
    const j = rng.int(i, n - 1);
    [pool[i], pool[j]] = [pool[j] ?? j, pool[i] ?? i];
  }
  return pool.slice(0, count).sort((a, b) => a - b);
}

/** Random positive weights that sum to exactly 10,000 bps (the remainder goes to the first). */
function splitWeights(rng: Rng, count: number): number[] {
  const raw = Array.from({ length: count }, () => rng.int(1, 100));
  const rawTotal = raw.reduce((a, b) => a + b, 0);
  const weights = raw.map((r) => Math.max(1, Math.floor((r * WEIGHT_TOTAL_BPS) / rawTotal)));
  weights[0] = (weights[0] ?? 0) + WEIGHT_TOTAL_BPS - weights.reduce((a, b) => a + b, 0);
  invariant(
    weights.every((w) => w > 0),
    'splitWeights: a weight <= 0',
  );
  return weights;
}

export function generateModels(options: TradingDayOptions): ModelPortfolio[] {
  const models = Array.from({ length: options.models }, (_, index) => {
    const rng = rngAt(options.seed, Stream.Model, index);
    const most = Math.min(options.modelSecuritiesMax, options.securities);
    const count = rng.int(Math.min(options.modelSecuritiesMin, most), most);
    const members = pickDistinct(rng, options.securities, count);
    const weights = splitWeights(rng, count);
    return {
      index,
      id: modelIdOf(options.idPrefix, index),
      weights: members.map((securityIndex, i) => ({ securityIndex, weightBps: weights[i] ?? 0 })),
    };
  });
  for (const m of models)
    invariant(m.weights.reduce((a, w) => a + w.weightBps, 0) === WEIGHT_TOTAL_BPS, `${m.id} sum`);
  return models;
}

/** An account's size in cents: four tiers, from 25,000.00 to 10,000,000.00. */
function accountValueMinor(rng: Rng): bigint {
  const tier = [25_000, 100_000, 500_000, 2_000_000][rng.int(0, 3)] ?? 25_000;
  return BigInt(rng.int(tier, tier * 5)) * 100n;
}

/** A model's holdings for `investedMicro`, each weight off by up to ± holdingSpreadBps. */
function modelPositions(
  world: HoldingsWorld,
  rng: Rng,
  model: ModelPortfolio,
  investedMicro: bigint,
): HoldingPosition[] {
  const spread = world.options.holdingSpreadBps;
  const positions: HoldingPosition[] = [];
  for (const { securityIndex, weightBps } of model.weights) {
    const security = world.securities[securityIndex];
    invariant(security !== undefined, `model ${model.id}: no security ${securityIndex}`);
    const skewedBps = BigInt(weightBps) * BigInt(WEIGHT_TOTAL_BPS + rng.int(-spread, spread));
    const valueMicro = (investedMicro * skewedBps) / BigInt(WEIGHT_TOTAL_BPS) ** 2n;
    const lotMicro = barOf(world.market, securityIndex, 0).openMicro * security.lotSize;
    let quantity = (valueMicro / lotMicro) * security.lotSize;
    // Odd lots exist (dividends reinvested, transfers in): rounding must cope with them.
    if (security.lotSize > 1n && rng.chance(1_000))
      quantity += BigInt(rng.int(1, Number(security.lotSize) - 1));
    if (quantity > 0n) positions.push({ securityIndex, quantity });
  }
  return positions;
}

/** A position outside the model (a legacy holding the rebalance sells), if not already held. */
function offModelPosition(world: HoldingsWorld, rng: Rng): HoldingPosition {
  const securityIndex = rng.int(0, world.securities.length - 1);
  const lotSize = world.securities[securityIndex]?.lotSize ?? 1n;
  return { securityIndex, quantity: BigInt(rng.int(1, 20)) * lotSize };
}

/** Account `index`, built from (seed, index) alone. */
export function accountAt(world: HoldingsWorld, index: number): HoldingAccount {
  const o = world.options;
  invariant(Number.isSafeInteger(index) && index >= 0 && index < o.accounts, `account ${index}?`);
  const rng = rngAt(o.seed, Stream.Account, index);
  const model = world.models[rng.int(0, world.models.length - 1)];
  invariant(model !== undefined, 'accountAt: no model');
  const eligible = rng.chance(o.eligibleBps);
  const valueMinor = accountValueMinor(rng);
  const allCash = rng.chance(o.allCashBps);
  const cashBps = allCash ? WEIGHT_TOTAL_BPS : rng.int(0, 800); // 0-8 % cash, or all cash
  const cashMinor = (valueMinor * BigInt(cashBps)) / BigInt(WEIGHT_TOTAL_BPS);
  const investedMicro = (valueMinor - cashMinor) * MICRO_PER_MINOR;
  const positions = allCash ? [] : modelPositions(world, rng, model, investedMicro);
  if (!allCash && rng.chance(o.offModelBps)) {
    const extra = offModelPosition(world, rng);
    if (!positions.some((p) => p.securityIndex === extra.securityIndex)) positions.push(extra);
    positions.sort((a, b) => a.securityIndex - b.securityIndex);
  }
  return {
    index,
    id: accountIdOf(o.idPrefix, index),
    name: `Client portfolio ${index + 1}`,
    modelId: model.id,
    eligible,
    cashMinor,
    positions,
  };
}

/** Accounts fromIndex..toIndex-1, one at a time; nothing is kept between yields. */
export function* streamAccounts(
  world: HoldingsWorld,
  fromIndex = 0,
  toIndex = world.options.accounts,
): Generator<HoldingAccount, void, undefined> {
  invariant(0 <= fromIndex && fromIndex <= toIndex, `streamAccounts: ${fromIndex}..${toIndex}`);
  invariant(toIndex <= world.options.accounts, `streamAccounts: ${toIndex} > accounts`);
  for (let index = fromIndex; index < toIndex; index++) yield accountAt(world, index);
}

/** The account as reference data the actors read (its opening cash and positions). */
export function toSeedAccount(
  world: HoldingsWorld,
  account: HoldingAccount,
): SeedData['accounts'][number] {
  const positions: Record<string, bigint> = {};
  for (const p of account.positions) {
    const security = world.securities[p.securityIndex];
    invariant(security !== undefined, `toSeedAccount: no security ${p.securityIndex}`);
    positions[security.id] = p.quantity;
  }
  return { id: account.id, name: account.name, openingCashMinor: account.cashMinor, positions };
}
