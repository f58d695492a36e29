/**
 * `npm run bench`: a benchmark, not a test. The same workload (same seed,
 * orders, accounts and fills) runs four ways, one after another, on this
 * machine, and every run ends with its books checked exactly:
 *
 * - blockfill: fills on JetStream, consumed by the actors, journaled durably;
 * - lock per fill: one transaction per fill, account rows under row locks
 *   (its best mode and worker count found first on a prefix);
 * - batch cycle: fills staged, then allocated and applied set-based, one
 *   transaction per cycle;
 * - ceiling: the fastest durable way this machine writes journal-shaped rows.
 *
 * Then a steady run (fixed rate, 10 accounts per fill) for latency, and the
 * ratios. Each arm warms up and runs `--runs` times (default 3); figures are
 * medians. A table goes to stdout (stderr with --json, whose one JSON line is
 * then the only stdout), and everything to bench-results/bench-<time>.json.
 *
 *   npm run bench -- [--quick] [--json] [--runs N] [--fills N] [--seed N]
 *                    [--cycle-ms N] [--rate N] [--steady-seconds N]
 *   npm run bench -- --sweep [--quick] [--json]    (throughput and p99 per dimension: sweep.ts)
 */
import { execFile } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { loadConfig } from '../system/config.ts';
import { runBatchCycle } from './arms/batch-cycle.ts';
import { runCeiling, type CeilingConfig } from './arms/ceiling.ts';
import type { ArmResult } from './arms/common.ts';
import { expectedBooks } from './arms/expected.ts';
import { runLockPerFill, tuneLockPerFill } from './arms/lock-per-fill.ts';
import { machineInfo, median, printTable, type Row } from './bench-report.ts';
import { parseCommandLine } from './cli.ts';
import { measureRecovery, type RecoveryFigures } from './recovery-bench.ts';
import { runScenario, type RunResult } from './run.ts';
import { runSweep } from './sweep.ts';
import { generateScenario, type Scenario, type ScenarioOptions } from './scenario.ts';

const USAGE = `npm run bench -- [--quick] [--json] [--runs N] [--fills N] [--seed N] [--cycle-ms N] [--rate N] [--steady-seconds N]
npm run bench -- --sweep [--quick] [--json]

The same workload through blockfill, lock per fill, a batch cycle and the write ceiling; books checked exactly;
medians, ratios and the machine to bench-results/*.json (see docs/PERFORMANCE.md).`;
const args = parseCommandLine(
  process.argv.slice(2),
  {
    json: 'boolean',
    quick: 'boolean',
    sweep: 'boolean',
    runs: 'number',
    fills: 'number',
    seed: 'number',
    'cycle-ms': 'number',
    rate: 'number',
    'steady-seconds': 'number',
  },
  USAGE,
);
const quick = args.quick === true;
const num = (name: string, full: number, small: number) =>
  typeof args[name] === 'number' ? (args[name] as number) : quick ? small : full;
const settings = {
  quick,
  runs: Math.max(1, num('runs', 3, 1)),
  warmup: !quick,
  fills: num('fills', 50_000, 2_000),
  seed: num('seed', 7, 7),
  cycleMs: num('cycle-ms', 5_000, 1_000),
  steadyRatePerSec: num('rate', 2_000, 500),
  steadySeconds: num('steady-seconds', 20, 3),
  steadyAccountsPerFill: 10,
  hotAccounts: 100,
  lockTunePrefixFills: quick ? 500 : 4_000,
};
const json = args.json === true;
const execFileAsync = promisify(execFile);
const say = (line: string) => (json ? process.stderr : process.stdout).write(`${line}\n`);
const baseDatabaseUrl = loadConfig(process.env).databaseUrl;

const scenarioOptions = (over: Partial<ScenarioOptions> = {}): Partial<ScenarioOptions> => ({
  seed: settings.seed,
  fills: settings.fills,
  ...over,
});

/** Warm-up (on a fifth of the work, not counted), then `runs` measured runs. */
async function measured<T>(label: string, run: (warmup: boolean) => Promise<T>): Promise<T[]> {
  if (settings.warmup) {
    say(`${label}: warm-up`);
    await run(true);
  }
  const out: T[] = [];
  for (let i = 0; i < settings.runs; i++) {
    say(`${label}: run ${i + 1}/${settings.runs}`);
    out.push(await run(false));
  }
  return out;
}

const prefixOf = (scenario: Scenario, warmup: boolean): Scenario =>
  warmup
    ? generateScenario({ ...scenario.options, fills: Math.ceil(scenario.options.fills / 5) })
    : scenario;

async function blockfillRun(
  scenario: Scenario,
  extra: Partial<Parameters<typeof runScenario>[0]> = {},
) {
  const r = await runScenario({
    scenario,
    tag: 'bench',
    keepDatabase: false,
    publishInFlightMax: 512,
    prepublish: true,
    settleTimeoutMs: 900_000,
    checkInvariants: true,
    env: process.env,
    progress: say,
    ...extra,
  });
  if (!r.invariantsOk)
    throw new Error(`blockfill books violated: ${r.invariants?.violations.join('; ')}`);
  return r;
}

function armOk(r: ArmResult): ArmResult {
  if (!r.booksOk) throw new Error(`${r.arm} books violated: ${r.violations.join('; ')}`);
  return r;
}

const ceilingGrid: readonly CeilingConfig[] = quick
  ? [
      { method: 'unnest', batchRows: 2_000, connections: 2 },
      { method: 'copy-binary', batchRows: 10_000, connections: 2 },
    ]
  : [
      { method: 'insert', batchRows: 2_000, connections: 2 },
      { method: 'insert', batchRows: 2_000, connections: 4 },
      { method: 'unnest', batchRows: 2_000, connections: 2 },
      { method: 'unnest', batchRows: 10_000, connections: 2 },
      { method: 'unnest', batchRows: 2_000, connections: 4 },
      { method: 'copy-binary', batchRows: 10_000, connections: 2 },
      { method: 'copy-binary', batchRows: 50_000, connections: 2 },
      { method: 'copy-binary', batchRows: 10_000, connections: 4 },
    ];

async function main(): Promise<void> {
  const machine = await machineInfo(baseDatabaseUrl);
  const scenario = generateScenario(scenarioOptions());
  const lines = expectedBooks(scenario).lines;
  say(
    `workload: ${scenario.publishOrder.length} fills, ${lines} allocation lines (${(lines / scenario.publishOrder.length).toFixed(1)} per fill), ${scenario.seed.accounts.length} accounts`,
  );

  const ceilings = await ceilingRuns(lines, scenario.seed.accounts.length);
  const tuning = await tuneLockPerFill({
    baseDatabaseUrl,
    scenario,
    log: say,
    prefixFills: settings.lockTunePrefixFills,
    workersList: quick ? [8] : [4, 8, 16],
  });
  const lockOptions = { baseDatabaseUrl, workers: tuning.workers, mode: tuning.mode, log: say };
  const locks = await measured('lock per fill', async (warmup) =>
    armOk(await runLockPerFill({ ...lockOptions, scenario: prefixOf(scenario, warmup) })),
  );
  const batches = await measured('batch cycle', async (warmup) =>
    armOk(
      await runBatchCycle({
        baseDatabaseUrl,
        scenario: prefixOf(scenario, warmup),
        cycleMs: settings.cycleMs,
        log: say,
      }),
    ),
  );
  let recovery: RecoveryFigures | undefined;
  let measuredRuns = 0;
  const blockfills = await measured('blockfill', (warmup) =>
    blockfillRun(prefixOf(scenario, warmup), {
      // After the last measured run: recover from the journal it left.
      afterStop: async (config) => {
        if (warmup || ++measuredRuns < settings.runs) return;
        say('recovery: activating accounts one by one, then replaying the whole journal');
        recovery = await measureRecovery(config, { activationsMax: quick ? 200 : 2_000 });
      },
    }),
  );

  const hot = await hotAccounts(lockOptions);
  const steady = await steadyRuns();
  const memory = await memoryFigures();
  const report = summarize({
    machine,
    scenario,
    lines,
    ceilings,
    tuning,
    locks,
    batches,
    blockfills,
    hot,
    steady,
    recovery,
    memory,
  });
  await writeResults(report);
}

/** The kernel's memory, each figure in a fresh process of its own (see memory-bench.ts). */
async function memoryFigures(): Promise<Record<string, number>> {
  const run = async (extra: string[]) => {
    const { stdout } = await execFileAsync(
      process.execPath,
      ['--expose-gc', 'simulations/memory-bench.ts', ...extra],
      { maxBuffer: 1 << 20 },
    );
    return JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}') as Record<string, number>;
  };
  const live = quick ? '10000' : '100000';
  const total = quick ? '50000' : '1000000';
  say(`memory: ${live} live accounts; then ${total} accounts with passivation`);
  const heap = await run(['--only', 'heap', '--live', live]);
  const rss = await run(['--only', 'rss', '--total', total]);
  return { ...heap, ...rss };
}

/**
 * The ceiling: every method and shape of the grid on a fifth of the rows,
 * then the best insert-like and the best COPY on all of them, `runs` times.
 */
async function ceilingRuns(rows: number, accounts: number) {
  say(`ceiling: trying ${ceilingGrid.length} ways on ${Math.ceil(rows / 5)} rows`);
  const trial = await runCeiling({
    baseDatabaseUrl,
    rows: Math.ceil(rows / 5),
    accounts,
    log: say,
    grid: ceilingGrid,
  });
  const best = (copy: boolean) =>
    [...trial.tried]
      .filter((t) => t.method.startsWith('copy') === copy)
      .sort((a, b) => b.rowsPerSec - a.rowsPerSec)[0];
  const finalists = [best(false), best(true)].filter((t) => t !== undefined);
  const grid = finalists.map(({ method, batchRows, connections }) => ({
    method,
    batchRows,
    connections,
  }));
  const out = [];
  for (let i = 0; i < settings.runs; i++) {
    say(`ceiling: run ${i + 1}/${settings.runs} (${rows} rows)`);
    out.push(await runCeiling({ baseDatabaseUrl, rows, accounts, log: say, grid }));
  }
  return { runs: out, trial: trial.tried };
}

async function hotAccounts(lockOptions: Omit<Parameters<typeof runLockPerFill>[0], 'scenario'>) {
  const hotScenario = generateScenario(
    scenarioOptions({ accounts: settings.hotAccounts, fills: Math.ceil(settings.fills / 2) }),
  );
  say(`hot accounts: ${settings.hotAccounts} accounts, ${hotScenario.publishOrder.length} fills`);
  const lock = armOk(await runLockPerFill({ ...lockOptions, scenario: hotScenario }));
  const blockfill = await blockfillRun(hotScenario);
  return { lock, blockfill };
}

/** A fixed publish rate below saturation, 10 accounts per fill: the latency figures. */
async function steadyRuns() {
  const fills = settings.steadyRatePerSec * settings.steadySeconds;
  const scenario = generateScenario(
    scenarioOptions({
      seed: settings.seed + 1,
      fills,
      accountsPerOrderMin: settings.steadyAccountsPerFill,
      accountsPerOrderMax: settings.steadyAccountsPerFill,
    }),
  );
  const runs = await measured('steady', (warmup) =>
    blockfillRun(prefixOf(scenario, warmup), {
      prepublish: false,
      publishRatePerSec: settings.steadyRatePerSec,
      // The first quarter warms every actor up (reference reads, openings): not steady state.
      latencyFromFill: Math.floor(fills / 4),
    }),
  );
  say(`batch cycle at the steady rate (cycle ${settings.cycleMs} ms)`);
  const batch = armOk(
    await runBatchCycle({
      baseDatabaseUrl,
      scenario,
      cycleMs: settings.cycleMs,
      arrivalRatePerSec: settings.steadyRatePerSec,
      log: say,
    }),
  );
  return { runs, batch, linesPerFill: expectedBooks(scenario).lines / fills };
}

type Inputs = {
  machine: Awaited<ReturnType<typeof machineInfo>>;
  scenario: Scenario;
  lines: number;
  ceilings: Awaited<ReturnType<typeof ceilingRuns>>;
  tuning: Awaited<ReturnType<typeof tuneLockPerFill>>;
  locks: ArmResult[];
  batches: ArmResult[];
  blockfills: RunResult[];
  hot: Awaited<ReturnType<typeof hotAccounts>>;
  steady: Awaited<ReturnType<typeof steadyRuns>>;
  recovery: RecoveryFigures | undefined;
  memory: Record<string, number>;
};

function summarize(i: Inputs) {
  const m = (xs: number[]) => median(xs);
  const blockfill = {
    linesPerSec: m(i.blockfills.map((r) => r.linesPerSec)),
    fillsPerSec: m(i.blockfills.map((r) => r.fillsPerSec)),
    p50Ms: m(i.blockfills.map((r) => r.latencyMs.p50)),
    p99Ms: m(i.blockfills.map((r) => r.latencyMs.p99)),
    runs: i.blockfills.map((r) => ({
      linesPerSec: r.linesPerSec,
      elapsedMs: r.elapsedMs,
      journal: r.journal,
    })),
  };
  const arm = (rs: ArmResult[]) => ({
    linesPerSec: m(rs.map((r) => r.linesPerSec)),
    fillsPerSec: m(rs.map((r) => r.fillsPerSec)),
    p50Ms: m(rs.map((r) => r.latencyMs?.p50 ?? 0)),
    p99Ms: m(rs.map((r) => r.latencyMs?.p99 ?? 0)),
    runs: rs.map((r) => ({
      linesPerSec: r.linesPerSec,
      elapsedMs: r.elapsedMs,
      details: r.details,
    })),
  });
  const runs = i.ceilings.runs;
  const best = [...runs].sort((a, b) => a.rowsPerSec - b.rowsPerSec)[Math.floor(runs.length / 2)];
  const ceiling = {
    rowsPerSec: m(runs.map((c) => c.rowsPerSec)),
    method: best?.method ?? 'unnest',
    best: best?.best,
    tried: i.ceilings.trial,
    finals: runs.map((c) => c.tried),
  };
  const steady = {
    fillsPerSec: m(i.steady.runs.map((r) => r.fillsPerSec)),
    linesPerFill: Math.round(i.steady.linesPerFill * 10) / 10,
    p50Ms: m(i.steady.runs.map((r) => r.latencyMs.p50)),
    p99Ms: m(i.steady.runs.map((r) => r.latencyMs.p99)),
    p999Ms: m(i.steady.runs.map((r) => r.latencyMs.p999)),
  };
  const lockPerFill = {
    ...arm(i.locks),
    mode: i.tuning.mode,
    workers: i.tuning.workers,
    tuning: i.tuning.table,
  };
  const batchCycle = {
    ...arm(i.batches),
    cycleMs: settings.cycleMs,
    steadyP99Ms: i.steady.batch.latencyMs?.p99 ?? 0,
    steadyP50Ms: i.steady.batch.latencyMs?.p50 ?? 0,
  };
  const ratio = (a: number, b: number) => (b > 0 ? Math.round((a / b) * 100) / 100 : 0);
  const ratios = {
    vsLockPerFill: ratio(blockfill.linesPerSec, lockPerFill.linesPerSec),
    vsLockPerFillHot: ratio(i.hot.blockfill.linesPerSec, i.hot.lock.linesPerSec),
    vsBatchCycle: ratio(blockfill.linesPerSec, batchCycle.linesPerSec),
    vsBatchCycleP99: ratio(batchCycle.steadyP99Ms, steady.p99Ms),
    ofCeiling: ratio(blockfill.linesPerSec, ceiling.rowsPerSec),
  };
  const hot = {
    accounts: settings.hotAccounts,
    blockfillLinesPerSec: i.hot.blockfill.linesPerSec,
    lockPerFillLinesPerSec: i.hot.lock.linesPerSec,
  };
  const recovery = i.recovery && {
    activationP50Ms: i.recovery.activationMs.p50,
    activationP99Ms: i.recovery.activationMs.p99,
    activations: i.recovery.activations,
    replayEventsPerSec: i.recovery.replayEventsPerSec,
    replayEvents: i.recovery.replayEvents,
    replayLinesPerSec: i.recovery.replayLinesPerSec,
    replayLines: i.recovery.replayLines,
    replayKeys: i.recovery.replayKeys,
  };
  return {
    blockfill,
    lockPerFill,
    batchCycle,
    ceiling,
    steady,
    recovery,
    memory: i.memory,
    hot,
    ratios,
    machine: i.machine,
    settings,
    workload: {
      fills: i.scenario.publishOrder.length,
      lines: i.lines,
      accounts: i.scenario.seed.accounts.length,
      orders: i.scenario.seed.blockOrders.length,
    },
    at: new Date().toISOString(),
  };
}

async function writeResults(report: ReturnType<typeof summarize>): Promise<void> {
  const rows: Row[] = [
    [
      'blockfill',
      report.blockfill.linesPerSec,
      report.blockfill.fillsPerSec,
      report.blockfill.p50Ms,
      report.blockfill.p99Ms,
      'backlog at t0, JetStream → actors → journal',
    ],
    [
      'lock per fill',
      report.lockPerFill.linesPerSec,
      report.lockPerFill.fillsPerSec,
      report.lockPerFill.p50Ms,
      report.lockPerFill.p99Ms,
      `${report.lockPerFill.mode} × ${report.lockPerFill.workers} workers (fastest tried)`,
    ],
    [
      'batch cycle',
      report.batchCycle.linesPerSec,
      report.batchCycle.fillsPerSec,
      report.batchCycle.p50Ms,
      report.batchCycle.p99Ms,
      `one set-based transaction every ${report.batchCycle.cycleMs} ms`,
    ],
    [
      'ceiling',
      report.ceiling.rowsPerSec,
      null,
      null,
      null,
      `rows/s, ${report.ceiling.best?.method} ${report.ceiling.best?.batchRows} × ${report.ceiling.best?.connections}`,
    ],
  ];
  say('');
  printTable(say, rows, report);
  const r = report.recovery;
  if (r)
    say(
      `recovery: activation p50 ${r.activationP50Ms} ms, p99 ${r.activationP99Ms} ms (${r.activations} accounts one by one); replay ${r.replayEventsPerSec.toLocaleString('en-US')} journal rows/s (${r.replayEvents} rows), ${r.replayLinesPerSec.toLocaleString('en-US')} allocation lines/s`,
    );
  const mem = report.memory;
  say(
    `memory: ${mem.heapBytesPerLiveAccount} heap bytes per live account (${mem.liveAccounts} live); peak RSS ${Math.round((mem.millionAccountsPeakRssBytes ?? 0) / 2 ** 20)} MiB over ${mem.accountsTotal} accounts (live at most ${mem.liveMax})`,
  );
  await mkdir('bench-results', { recursive: true });
  const file = `bench-results/bench-${report.at.replace(/[:.]/g, '-')}.json`;
  await writeFile(file, `${JSON.stringify(report, null, 2)}\n`);
  say(`written ${file}`);
  if (json) process.stdout.write(`${JSON.stringify(report)}\n`);
}

/** --sweep: one dimension at a time (see sweep.ts), with the tuned lock-per-fill beside it. */
async function sweepMain(): Promise<void> {
  const machine = await machineInfo(baseDatabaseUrl);
  const scenario = generateScenario(scenarioOptions());
  const tuning = await tuneLockPerFill({
    baseDatabaseUrl,
    scenario,
    log: say,
    prefixFills: settings.lockTunePrefixFills,
    workersList: quick ? [8] : [8, 16],
    modes: ['read-committed'],
  });
  const sweep = await runSweep({
    quick,
    seed: settings.seed,
    baseDatabaseUrl,
    lock: { workers: tuning.workers, mode: tuning.mode },
    say,
  });
  const report = {
    sweep,
    lockPerFill: { mode: tuning.mode, workers: tuning.workers },
    machine,
    settings,
    at: new Date().toISOString(),
  };
  await mkdir('bench-results', { recursive: true });
  const file = `bench-results/sweep-${report.at.replace(/[:.]/g, '-')}.json`;
  await writeFile(file, `${JSON.stringify(report, null, 2)}\n`);
  say(`written ${file}`);
  if (json) process.stdout.write(`${JSON.stringify(report)}\n`);
}

await (args.sweep === true ? sweepMain() : main()).then(
  () => process.exit(0),
  (error: Error) => {
    say(`bench failed: ${error.message}`);
    process.exit(1);
  },
);
