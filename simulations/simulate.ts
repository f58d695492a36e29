/**
 * `npm run simulate -- --scenario <name> [options]` (and `npm run demo`, the
 * trading-day scenario at its default size): a trading day, from rebalancing
 * to the tape with the market's busts, corrections and cancels, run through
 * JetStream and the actors on the local services in a database and stream
 * namespace of its own, with every invariant checked exactly. Writes
 * reports/<run-id>/report.json and report.html. Exits 0 only if the books
 * hold; 1 if they do not or the run failed; 2 on a bad command line. With
 * --json, stdout is one JSON object and everything else goes to stderr.
 */
import { randomBytes } from 'node:crypto';
import { PRO_RATA } from '../actors/block-order/average.ts';
import { createProgress } from './progress.ts';
import { writeReport } from './report/write.ts';
import { memoryAt, runScenario } from './run.ts';
import { buildReport, summaryOf } from './simulate-report.ts';
import { parseSimulateArgs, UsageError, USAGE, type SimulateArgs } from './simulate-args.ts';
import { tradingDayScenario } from './trading-day/scenario.ts';

function parseOrExit(argv: string[]): SimulateArgs {
  try {
    const args = parseSimulateArgs(argv);
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

/** `<scenario>-<UTC yyyymmddThhmmss>-<4 hex>`: sorts by time, unique per run. */
function runIdOf(scenario: string, now: Date): string {
  const stamp = now.toISOString().replace(/[-:]/g, '').slice(0, 15);
  return `${scenario}-${stamp}-${randomBytes(4).toString('hex')}`;
}

/** The run's own database and namespace: given, or derived from the run id. */
function namesOf(args: SimulateArgs, runId: string) {
  // 32 random bits, as support.ts runNames: two runs in one second never share a name.
  const suffix = runId.slice(-8);
  const stamp = runId.slice(-24, -9).replace('T', '');
  return {
    databaseName: args.database ?? `blockfill_sim_${stamp}_${suffix}`,
    namespace: args.namespace ?? `SIM${stamp.slice(-6)}${suffix.toUpperCase()}`,
  };
}

function printTable(summary: ReturnType<typeof summaryOf>, say: (line: string) => void): void {
  const text = (v: unknown): string =>
    Array.isArray(v)
      ? v.join('; ') || '-'
      : typeof v === 'object' && v !== null
        ? JSON.stringify(v)
        : String(v);
  say('');
  say(summary.invariantsOk ? 'INVARIANTS HELD: the books are exact' : 'INVARIANTS FAILED');
  for (const [key, value] of Object.entries(summary)) say(`  ${key.padEnd(16)} ${text(value)}`);
}

const args = parseOrExit(process.argv.slice(2));
const out = args.json ? process.stderr : process.stdout;
const say = (line: string) => out.write(`${line}\n`);
const startedAt = new Date();
const runId = runIdOf(args.scenario.name, startedAt);
const names = namesOf(args, runId);
say(
  `run ${runId}: scenario ${args.scenario.name}, database ${names.databaseName}, namespace ${names.namespace}`,
);
say('rebalancing and building the tape ...');
const day = tradingDayScenario({
  world: {
    seed: args.seed,
    accounts: args.accounts,
    securities: args.securities,
    days: args.days,
    idPrefix: 'TD',
  },
  dayIndex: args.days - 1,
  ...(args.pace ? { tape: { shape: args.pace } } : {}),
  amend: args.scenario.amend ?? {},
  ...(args.fills !== undefined ? { fillsMax: args.fills } : {}),
  policy: args.policy === 'avg-price' ? { kind: 'AVERAGE_PRICE', ...args.avgPrice } : PRO_RATA,
});
const a = day.amendments;
say(
  `  ${day.rebalance.accountsScanned} accounts scanned, ${day.rebalance.accountsTrading} trading, ` +
    `${day.rebalance.orders} block orders, ${day.rebalance.lines} order lines; tape: ${day.scenario.publishOrder.length} fills, ` +
    `${a.busts} busts, ${a.corrections} corrections, ${a.cancels} cancels`,
);
const built = memoryAt('built');
const progress = createProgress({ stream: out });
const result = await runScenario({
  scenario: day.scenario,
  tag: 'sim',
  names,
  keepDatabase: args.keep,
  publishInFlightMax: 256,
  ...(args.pace ? { publishScheduleMs: (i: number) => day.sendOffsetsMs[i] ?? 0 } : {}),
  settleTimeoutMs: 1_800_000,
  checkInvariants: true,
  checkBooking: true,
  env: process.env,
  progress: (line) => progress.line(line),
  phases: progress,
}).catch((error: Error) => {
  progress.stop();
  say(`simulation failed: ${error.message}`);
  if (args.json)
    process.stdout.write(
      `${JSON.stringify({ invariantsOk: false, runId, error: error.message })}\n`,
    );
  process.exit(1);
});
progress.stop();
const report = buildReport({
  runId,
  scenarioName: args.scenario.name,
  policy: args.policy,
  startedAt,
  finishedAt: new Date(),
  settings: args.settings,
  day,
  result,
  peakRssBytes: process.resourceUsage().maxRSS * 1024,
  memory: [built, ...result.memory],
  avgPrice: args.avgPrice,
});
const written = await writeReport(report, { reportsDir: args.reportsDir });
const summary = summaryOf(report, {
  reportPath: written.htmlPath,
  pace: args.pace ?? 'as fast as possible',
  databaseName: args.keep ? names.databaseName : null,
  namespace: args.keep ? names.namespace : null,
  booking: result.booking,
});
if (args.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
else printTable(summary, say);
say(`report: ${written.htmlPath} (and report.json beside it)`);
process.exitCode = result.invariantsOk ? 0 : 1;
