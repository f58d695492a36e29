/**
 * `npm run simulate -- --scenario <name> [options]`: a trading day, from
 * rebalancing to the tape, run through JetStream and the actors on the local
 * services in a database and stream namespace of its own, with every
 * invariant checked exactly. Exits 0 only if the books hold; 2 on a bad
 * command line. With --json, stdout is one JSON object and all else goes to
 * stderr.
 */
import { parseArgs } from 'node:util';
import { runScenario, type RunResult } from './run.ts';
import { tradingDayScenario, type TradingDayScenario } from './trading-day/scenario.ts';
import type { StreamShape } from './trading-day/shape.ts';
import type { AmendOptions } from './trading-day/amendments.ts';

const ShapeKind = { Steady: 'steady', Burst: 'burst', Auctions: 'auctions' } as const;
type ShapeKind = (typeof ShapeKind)[keyof typeof ShapeKind];

interface ScenarioSpec {
  summary: string;
  accounts: number;
  securities: number;
  /** Paced by this shape unless the command line says otherwise; absent = as fast as possible. */
  shape?: ShapeKind;
  ratePerSec: number;
  /** The market's busts, corrections and cancels (absent: about 1 % each). */
  amend?: Partial<AmendOptions>;
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

/** The shipped scenarios (busts and corrections and a million accounts come with later increments). */
const SCENARIOS: Readonly<Record<string, ScenarioSpec>> = {
  smoke: {
    summary: 'a small day: 300 accounts, 10 securities, as fast as possible (seconds)',
    ...{ accounts: 300, securities: 10, ratePerSec: 500 },
  },
  'trading-day': {
    summary: 'a day at the default size: 2,000 accounts, 50 securities, as fast as possible',
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
};

const USAGE = `npm run simulate -- --scenario <name> [--accounts N] [--securities N] [--seed S]
    [--shape steady|burst|auctions] [--rate FILLS_PER_S] [--json] [--keep]

Scenarios:
${Object.entries(SCENARIOS)
  .map(([name, s]) => `  ${name.padEnd(14)} ${s.summary}`)
  .join('\n')}

Rebalances the scenario's accounts into block orders, builds the day's tape
(sells before buys), runs it through JetStream and the actors in a database
and namespace of its own (dropped afterwards unless --keep), and checks
every invariant exactly. Pacing: --shape sends on that shape at base rate
--rate (burst: 10x for 5 s every 20 s; auctions: 5x in the first and last
10 % of the run); --rate alone holds that many fills/s; with neither, fills
go as fast as JetStream takes them, unless the scenario has a shape.`;

interface Args {
  scenario: ScenarioSpec & { name: string };
  accounts: number;
  securities: number;
  seed: number;
  /** Absent: as fast as JetStream takes them. */
  pace?: StreamShape;
  json: boolean;
  keep: boolean;
}

class UsageError extends Error {}

function wholeNumber(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n))
    throw new UsageError(`--${name} must be a whole number, got ${JSON.stringify(value)}`);
  return n;
}

function parse(argv: string[]): Args | 'help' {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      scenario: { type: 'string' },
      accounts: { type: 'string' },
      securities: { type: 'string' },
      seed: { type: 'string' },
      rate: { type: 'string' },
      shape: { type: 'string' },
      json: { type: 'boolean', default: false },
      keep: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) return 'help';
  const name = values.scenario;
  if (name === undefined) throw new UsageError('--scenario is required');
  const spec = SCENARIOS[name];
  if (!spec) throw new UsageError(`unknown scenario ${JSON.stringify(name)}`);
  const pace = paceOf(spec, values.shape, values.rate);
  return {
    scenario: { ...spec, name },
    accounts: wholeNumber('accounts', values.accounts, spec.accounts),
    securities: wholeNumber('securities', values.securities, spec.securities),
    seed: wholeNumber('seed', values.seed, 42),
    ...(pace === undefined ? {} : { pace }),
    json: values.json,
    keep: values.keep,
  };
}

function paceOf(
  spec: ScenarioSpec,
  shapeArg: string | undefined,
  rateArg: string | undefined,
): StreamShape | undefined {
  const rate = wholeNumber('rate', rateArg, spec.ratePerSec);
  if (rate < 1) throw new UsageError('--rate must be at least 1');
  if (shapeArg !== undefined && !(Object.values(ShapeKind) as string[]).includes(shapeArg))
    throw new UsageError(`--shape must be one of ${Object.values(ShapeKind).join(', ')}`);
  const kind = (shapeArg as ShapeKind | undefined) ?? spec.shape;
  if (kind !== undefined) return shapeOf(kind, rate);
  return rateArg === undefined ? undefined : shapeOf(ShapeKind.Steady, rate);
}

function parseOrExit(argv: string[]): Args {
  try {
    const args = parse(argv);
    if (args !== 'help') return args;
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  } catch (error) {
    // node:util's own errors (unknown option, missing value) carry a code.
    const known = error instanceof UsageError || (error as { code?: string }).code !== undefined;
    if (!known) throw error;
    process.stderr.write(`${(error as Error).message}\n\n${USAGE}\n`);
    process.exit(2);
  }
}

function report(args: Args, day: TradingDayScenario, result: RunResult) {
  return {
    scenario: args.scenario.name,
    pace: args.pace ?? 'as fast as possible',
    offeredPerSec:
      result.publishMs > 0 ? Math.round((result.fills * 1000) / result.publishMs) : null,
    invariantsOk: result.invariantsOk,
    fills: day.scenario.publishOrder.length,
    busts: day.amendments.busts,
    corrections: day.amendments.corrections,
    cancels: day.amendments.cancels,
    linesPerSec: result.linesPerSec,
    fillsPerSec: result.fillsPerSec,
    p50Ms: result.latencyMs.p50,
    p99Ms: result.latencyMs.p99,
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
    accountsTrading: day.rebalance.accountsTrading,
    blockOrders: day.rebalance.orders,
    lines: result.lines,
    suspenseOpenLines: result.invariants?.suspenseOpenLines ?? null,
    violations: result.invariants?.violations ?? [],
    databaseName: args.keep ? result.databaseName : null,
  };
}

function textOf(value: unknown): string {
  if (Array.isArray(value)) return value.join('; ') || '-';
  return typeof value === 'object' && value !== null ? JSON.stringify(value) : String(value);
}

const args = parseOrExit(process.argv.slice(2));
const say = (line: string) => (args.json ? process.stderr : process.stdout).write(`${line}\n`);
say(`scenario ${args.scenario.name}: rebalancing and building the tape ...`);
const day = tradingDayScenario({
  world: { seed: args.seed, accounts: args.accounts, securities: args.securities, idPrefix: 'TD' },
  ...(args.pace ? { tape: { shape: args.pace } } : {}),
  amend: args.scenario.amend ?? {},
});
say(
  `  ${day.rebalance.accountsScanned} accounts scanned, ${day.rebalance.accountsTrading} trading, ` +
    `${day.rebalance.orders} block orders, ${day.rebalance.lines} lines, ${day.tape.fills} fills`,
);
const result = await runScenario({
  scenario: day.scenario,
  tag: 'sim',
  keepDatabase: args.keep,
  publishInFlightMax: 256,
  ...(args.pace ? { publishScheduleMs: (i: number) => day.sendOffsetsMs[i] ?? 0 } : {}),
  settleTimeoutMs: 600_000,
  checkInvariants: true,
  env: process.env,
  progress: say,
}).catch((error: Error) => {
  say(`simulation failed: ${error.message}`);
  if (args.json)
    process.stdout.write(`${JSON.stringify({ invariantsOk: false, error: error.message })}\n`);
  process.exit(1);
});
const out = report(args, day, result);
if (args.json) process.stdout.write(`${JSON.stringify(out)}\n`);
else for (const [key, value] of Object.entries(out)) say(`${key.padEnd(20)} ${textOf(value)}`);
process.exitCode = result.invariantsOk ? 0 : 1;
