/**
 * The command line of `npm run simulate`: the shipped scenarios and the
 * options, parsed with node:util parseArgs. Every error is a UsageError
 * (or node's own, with a code) naming the option and the rule.
 */
import { parseArgs } from 'node:util';
import { defaultAmendOptions, type AmendOptions } from './trading-day/amendments.ts';
import { TRADING_DAY_LIMITS } from './trading-day/options.ts';
import type { StreamShape } from './trading-day/shape.ts';
import type { AveragePricePolicy } from '../actors/domain/average-price.ts';
import { REPORTED_AVG_PRICE, type AllocationPolicy } from './simulate-report.ts';

const ShapeKind = { Steady: 'steady', Burst: 'burst', Auctions: 'auctions' } as const;
type ShapeKind = (typeof ShapeKind)[keyof typeof ShapeKind];

const POLICIES: readonly AllocationPolicy[] = ['pro-rata', 'avg-price'];

export interface ScenarioSpec {
  summary: string;
  accounts: number;
  securities: number;
  /** Paced by this shape unless the command line says otherwise; absent = as fast as possible. */
  shape?: ShapeKind;
  ratePerSec: number;
  /** The market's busts, corrections and cancels (absent: about 1 % each). */
  amend?: Partial<AmendOptions>;
  /** At most this many fills of the day's tape are sent (a prefix); absent: the whole tape. */
  fills?: number;
}

/** A shape at base rate X: bursts of 10 × X for 5 s every 20 s; auctions 5 × X in the first and last 10 %. */
function shapeOf(kind: ShapeKind, ratePerSec: number): StreamShape {
  switch (kind) {
    case ShapeKind.Steady:
      return { kind: 'STEADY', ratePerSec };
    case ShapeKind.Burst:
      return { kind: 'BURST', ratePerSec, factor: 10, burstSec: 5, periodSec: 20 };
    case ShapeKind.Auctions:
      return { kind: 'AUCTIONS', ratePerSec, factor: 5, peakBps: 1_000 };
    default: {
      const never: never = kind;
      throw new Error(`unknown shape ${String(never)}`);
    }
  }
}

export const SCENARIOS: Readonly<Record<string, ScenarioSpec>> = {
  smoke: {
    summary: 'a small day: 300 accounts, 10 securities, as fast as possible (seconds)',
    ...{ accounts: 300, securities: 10, ratePerSec: 500 },
  },
  'trading-day': {
    summary:
      'the default day (npm run demo): 2,000 accounts, 50 securities, ~1 % busts/corrections',
    ...{ accounts: 2_000, securities: 50, ratePerSec: 500 },
  },
  burst: {
    summary: 'the default day paced at 40 fills/s, with bursts of 10x for 5 s every 20 s',
    ...{ accounts: 2_000, securities: 50, shape: ShapeKind.Burst, ratePerSec: 40 },
  },
  'busts-and-corrections': {
    summary:
      'the default day with 5 % of fills busted, 5 % corrected, half the short orders cancelled',
    ...{ accounts: 2_000, securities: 50, ratePerSec: 500 },
    amend: { bustShareBps: 500, correctionShareBps: 500, cancelShareBps: 5_000 },
  },
  'million-accounts': {
    summary:
      '1,000,000 accounts over 500 securities; the first 50,000 fills of their day (~15 min)',
    ...{ accounts: 1_000_000, securities: 500, ratePerSec: 500, fills: 50_000 },
  },
};

export const USAGE = `npm run simulate -- --scenario <name> [--accounts N] [--securities N] [--days N]
    [--fills N] [--rate X] [--shape steady|burst|auctions] [--policy pro-rata|avg-price]
    [--release-every-fills N] [--release-every-minutes M] [--seed S] [--database NAME] [--namespace NS] [--reports-dir DIR] [--json] [--keep]

Scenarios:
${Object.entries(SCENARIOS)
  .map(([name, s]) => `  ${name.padEnd(22)} ${s.summary}`)
  .join('\n')}

Rebalances the scenario's accounts into block orders (day N of --days of
market data), builds that day's tape (sells before buys, with the market's
busts, corrections and cancels), runs it through JetStream and the actors,
and checks every invariant exactly. --fills sends only the first N fills of
the tape. Pacing: --shape sends on that shape at base rate --rate; --rate
alone holds that many fills/s; with neither, as fast as JetStream takes them.
--policy: how the block orders allocate. pro-rata (default): each fill on
arrival, at its own price. avg-price: fills accumulate and are released at
their VWAP every --release-every-minutes of market time (default 30), every
--release-every-fills fills (default off) and on completion; each order's day
ends with a cancel of its remainder, which releases the rest. The report
measures the run's policy on the actual books and the other one by replaying
the same tape through its pure rule.
The run's database and namespace are its own (from the run id, or --database
and --namespace, which must not exist yet) and are removed afterwards unless
--keep. The report goes to <reports-dir>/<run-id>/report.{json,html}.`;

export interface SimulateArgs {
  scenario: ScenarioSpec & { name: string };
  accounts: number;
  securities: number;
  days: number;
  fills?: number;
  seed: number;
  policy: AllocationPolicy;
  /** The avg-price triggers (used with --policy avg-price; the report's counterfactual otherwise). */
  avgPrice: AveragePricePolicy;
  /** Absent: as fast as JetStream takes them. */
  pace?: StreamShape;
  database?: string;
  namespace?: string;
  reportsDir: string;
  json: boolean;
  keep: boolean;
  /** What the report records as the run's settings. */
  settings: Record<string, string | number | boolean | null>;
}

export class UsageError extends Error {
  override name = 'UsageError';
}

function wholeNumber(
  name: string,
  value: string | undefined,
  fallback: number,
  max: number,
): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < 1 || n > max)
    throw new UsageError(
      `--${name} must be a whole number from 1 to ${max}, got ${JSON.stringify(value)}`,
    );
  return n;
}

/** Same rules as the run's own names: a database name PostgreSQL takes unquoted, a stream-safe namespace. */
const DATABASE_NAME = /^[a-z][a-z0-9_]{0,62}$/;
const NAMESPACE = /^[A-Za-z][A-Za-z0-9_]{0,31}$/;

function named(option: string, value: string | undefined, pattern: RegExp): string | undefined {
  if (value === undefined || pattern.test(value)) return value;
  throw new UsageError(`--${option} must match ${pattern.source}, got ${JSON.stringify(value)}`);
}

const OPTIONS = {
  scenario: { type: 'string' },
  accounts: { type: 'string' },
  securities: { type: 'string' },
  days: { type: 'string' },
  fills: { type: 'string' },
  seed: { type: 'string' },
  rate: { type: 'string' },
  shape: { type: 'string' },
  policy: { type: 'string' },
  'release-every-fills': { type: 'string' },
  'release-every-minutes': { type: 'string' },
  database: { type: 'string' },
  namespace: { type: 'string' },
  'reports-dir': { type: 'string' },
  json: { type: 'boolean', default: false },
  keep: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
} as const;

export function parseSimulateArgs(argv: string[]): SimulateArgs | 'help' {
  const { values: v } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: OPTIONS,
  });
  if (v.help) return 'help';
  if (v.scenario === undefined) throw new UsageError('--scenario is required');
  const spec = SCENARIOS[v.scenario];
  if (!spec) throw new UsageError(`unknown scenario ${JSON.stringify(v.scenario)}`);
  const policy = (v.policy ?? 'pro-rata') as AllocationPolicy;
  if (!POLICIES.includes(policy))
    throw new UsageError(`--policy must be one of ${POLICIES.join(', ')}`);
  const avgPrice = avgPriceOf(policy, v['release-every-fills'], v['release-every-minutes']);
  const pace = paceOf(spec, v.shape, v.rate);
  const fills = v.fills === undefined ? spec.fills : wholeNumber('fills', v.fills, 0, 10_000_000);
  const args = {
    scenario: { ...spec, name: v.scenario },
    accounts: wholeNumber('accounts', v.accounts, spec.accounts, TRADING_DAY_LIMITS.accountsMax),
    securities: wholeNumber(
      'securities',
      v.securities,
      spec.securities,
      TRADING_DAY_LIMITS.securitiesMax,
    ),
    days: wholeNumber('days', v.days, 5, TRADING_DAY_LIMITS.daysMax),
    ...(fills === undefined ? {} : { fills }),
    seed: v.seed === undefined ? 42 : wholeNumber('seed', v.seed, 42, Number.MAX_SAFE_INTEGER),
    policy,
    avgPrice,
    ...(pace === undefined ? {} : { pace }),
    ...optional('database', named('database', v.database, DATABASE_NAME)),
    ...optional('namespace', named('namespace', v.namespace, NAMESPACE)),
    reportsDir: v['reports-dir'] ?? 'reports',
    json: v.json,
    keep: v.keep,
  };
  return { ...args, settings: settingsOf(args) };
}

/** The avg-price triggers: a release every M minutes of market time (default 30), every N fills (default off). */
function avgPriceOf(
  policy: AllocationPolicy,
  fillsArg: string | undefined,
  minutesArg: string | undefined,
): AveragePricePolicy {
  if (policy === 'pro-rata' && (fillsArg ?? minutesArg) !== undefined)
    throw new UsageError(
      '--release-every-fills and --release-every-minutes need --policy avg-price',
    );
  const everyFills =
    fillsArg === undefined ? null : wholeNumber('release-every-fills', fillsArg, 0, 1_000_000);
  const minutes = wholeNumber(
    'release-every-minutes',
    minutesArg,
    REPORTED_AVG_PRICE.everyMarketMs / 60_000,
    24 * 60,
  );
  return { everyFills, everyMarketMs: minutes * 60_000 };
}

const optional = <K extends string>(key: K, value: string | undefined) =>
  (value === undefined ? {} : { [key]: value }) as Partial<Record<K, string>>;

function settingsOf(a: Omit<SimulateArgs, 'settings'>): SimulateArgs['settings'] {
  return {
    scenario: a.scenario.name,
    accounts: a.accounts,
    securities: a.securities,
    days: a.days,
    fills: a.fills ?? null,
    seed: a.seed,
    policy: a.policy,
    releaseEveryFills: a.avgPrice.everyFills,
    releaseEveryMinutes:
      a.avgPrice.everyMarketMs === null ? null : a.avgPrice.everyMarketMs / 60_000,
    pace: a.pace ? JSON.stringify(a.pace) : 'as fast as possible',
    bustShareBps: a.scenario.amend?.bustShareBps ?? defaultAmendOptions.bustShareBps,
    correctionShareBps:
      a.scenario.amend?.correctionShareBps ?? defaultAmendOptions.correctionShareBps,
    cancelShareBps: a.scenario.amend?.cancelShareBps ?? defaultAmendOptions.cancelShareBps,
    keep: a.keep,
  };
}

function paceOf(
  spec: ScenarioSpec,
  shapeArg: string | undefined,
  rateArg: string | undefined,
): StreamShape | undefined {
  const rate = wholeNumber('rate', rateArg, spec.ratePerSec, 1_000_000);
  if (shapeArg !== undefined && !(Object.values(ShapeKind) as string[]).includes(shapeArg))
    throw new UsageError(`--shape must be one of ${Object.values(ShapeKind).join(', ')}`);
  const kind = (shapeArg as ShapeKind | undefined) ?? spec.shape;
  if (kind !== undefined) return shapeOf(kind, rate);
  return rateArg === undefined ? undefined : shapeOf(ShapeKind.Steady, rate);
}
