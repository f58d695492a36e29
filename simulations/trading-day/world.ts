/**
 * The fixed part of a generated trading day, built once from the options:
 * securities, their market and the model portfolios. Accounts are not in it:
 * they stream from it (holdings.ts), so its size never depends on how many
 * accounts there are.
 */
import { invariant } from '../../actors/errors.ts';
import { generateModels, type HoldingsWorld } from './holdings.ts';
import { generateMarket } from './market.ts';
import { resolveOptions, type TradingDayOptions } from './options.ts';
import { generateSecurities } from './reference.ts';

export type World = HoldingsWorld;

export function buildWorld(overrides: Partial<TradingDayOptions> = {}): World {
  const options = resolveOptions(overrides);
  const securities = generateSecurities(options);
  const market = generateMarket(options, securities);
  const models = generateModels(options);
  invariant(models.length === options.models, 'buildWorld: models');
  return { options, securities, market, models };
}
