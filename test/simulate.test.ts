/**
 * `npm run simulate`: the trading-day scenario as a runnable Scenario
 * (services-free), and the command itself against the real services: the
 * usage, a bad command line (exit 2, no stack trace), and the smoke
 * scenario end to end with --json (one JSON object on stdout, books exact).
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { validateReport } from '../simulations/report/types.ts';
import { parseSimulateArgs } from '../simulations/simulate-args.ts';
import { tradingDayScenario } from '../simulations/trading-day/scenario.ts';
import { entriesByOrderOf } from '../simulations/scenario.ts';
import { loadConfig } from '../system/config.ts';
import { assertNamespaceFree, deleteStreams, withMaintenance } from '../simulations/support.ts';
import { streamNames } from '../system/config.ts';
import { ensureStreams, openJetStream } from '../system/jetstream.ts';

const SIMULATE = fileURLToPath(new URL('../simulations/simulate.ts', import.meta.url));

function simulate(args: string[]) {
  const run = spawnSync(process.execPath, [SIMULATE, ...args], {
    encoding: 'utf8',
    env: { ...process.env, LOG_LEVEL: 'silent' },
    timeout: 240_000,
  });
  return { code: run.status, stdout: run.stdout, stderr: run.stderr };
}

t.test('given a small world, the scenario holds the tape and the accounts it serves', async (t) => {
  const day = tradingDayScenario({ world: { seed: 5, accounts: 120, securities: 6 } });
  const { scenario } = day;
  t.ok(scenario.publishOrder.length > 0, 'the tape has fills');
  t.equal(scenario.publishOrder.length, day.tape.fills);
  const perOrder = [...scenario.fillsByOrder.values()].reduce((n, fills) => n + fills.length, 0);
  t.equal(perOrder, scenario.publishOrder.length, 'every fill is in its order');
  // Fills and amendments share each order's sequence: 1..n with no gap, in publish order.
  const entriesByOrder = entriesByOrderOf(scenario);
  for (const [id, entries] of entriesByOrder)
    t.same(
      entries.map((f) => f.seq),
      entries.map((_, i) => i + 1),
      `${id}: seqs from 1, in order`,
    );
  const targetIds = new Set(
    scenario.seed.blockOrders.flatMap((o) => o.targets.map((x) => x.accountId)),
  );
  t.same(
    scenario.seed.accounts.map((a) => a.id).sort(),
    [...targetIds].sort(),
    'the seed holds exactly the accounts the orders serve',
  );
  t.equal(day.rebalance.accountsTrading, targetIds.size);
  t.same(
    tradingDayScenario({ world: { seed: 5, accounts: 120, securities: 6 } }).scenario.publishOrder,
    scenario.publishOrder,
    'deterministic from the seed',
  );
});

t.test('given a heavy amendment rate, busts, corrections and cancels are woven in', async (t) => {
  const amend = { bustShareBps: 1_000, correctionShareBps: 1_000, cancelShareBps: 10_000 };
  const day = tradingDayScenario({ world: { seed: 5, accounts: 300, securities: 6 }, amend });
  const amended = day.scenario.amended;
  if (!amended) throw new Error('no amendments');
  const { busts, corrections, cancels } = amended.counts;
  t.ok(busts > 0 && corrections > 0 && cancels > 0, `${busts}/${corrections}/${cancels}`);
  t.equal(
    amended.publishOrder.length,
    day.scenario.publishOrder.length + busts + corrections + cancels,
  );
  for (const [id, entries] of amended.entriesByOrder)
    t.same(
      entries.map((e) => e.seq),
      entries.map((_, i) => i + 1),
      `${id}: one sequence for fills and amendments`,
    );
  const again = tradingDayScenario({ world: { seed: 5, accounts: 300, securities: 6 }, amend });
  t.same(again.scenario.amended?.publishOrder, amended.publishOrder, 'deterministic');
});

t.test('--help lists the scenarios; a bad command line exits 2 without a stack', async (t) => {
  const help = simulate(['--help']);
  t.equal(help.code, 0);
  t.match(help.stdout, /smoke\s+a small day/);
  t.match(help.stdout, /trading-day\s+the default day \(npm run demo\)/);
  t.match(help.stdout, /burst\s+the default day paced/);
  t.match(help.stdout, /busts-and-corrections\s+the default day with 5 % of fills busted/);
  t.match(help.stdout, /million-accounts\s+1,000,000 accounts/);
  const bads = [
    ['--bogus'],
    ['--scenario', 'nope'],
    ['--scenario', 'smoke', '--rate', 'x'],
    ['--scenario', 'smoke', '--shape', 'zigzag'],
    ['--scenario', 'smoke', '--fills', '0'],
    ['--scenario', 'smoke', '--policy', 'fifo'],
    ['--scenario', 'smoke', '--database', 'Robert; DROP'],
    ['--scenario', 'smoke', '--namespace', 'a.b'],
    ['--scenario', 'smoke', '--release-every-fills', '5'],
    ['--scenario', 'smoke', '--policy', 'avg-price', '--release-every-minutes', '0'],
  ];
  // Each is refused by the parser, naming the option; two go through the whole command.
  for (const bad of bads)
    t.throws(() => parseSimulateArgs(bad), /--|Unknown option|unknown scenario/, bad.join(' '));
  for (const bad of [['--bogus'], ['--scenario', 'smoke', '--fills', '0']]) {
    const run = simulate(bad);
    t.equal(run.code, 2, `${bad.join(' ')}: exit 2`);
    t.notMatch(run.stderr, /\n\s+at /, `${bad.join(' ')}: no stack trace`);
    t.match(run.stderr, /npm run simulate -- --scenario/, `${bad.join(' ')}: the usage`);
  }
});

t.test('under avg-price, releases and their amendments leave exact books', async (t) => {
  const reportsDir = t.testdir();
  const run = simulate([
    ...['--scenario', 'busts-and-corrections', '--accounts', '400', '--securities', '12'],
    ...['--fills', '600', '--policy', 'avg-price', '--release-every-fills', '4'],
    ...['--json', '--reports-dir', reportsDir],
  ]);
  t.equal(run.code, 0, run.stderr.slice(-2_000));
  const out = JSON.parse(run.stdout.trim()) as Record<string, unknown>;
  t.match(out, {
    invariantsOk: true,
    violations: [],
    fairness: { policy: 'avg-price', 'avg-price': Object, 'pro-rata': Object },
    booking: { matchesBooks: true },
    reconciliation: { clean: true, breaks: 0 },
  });
  t.ok((out.booking as { lines: number }).lines > 0, 'the day was booked');
  t.ok(Number(out.busts) > 0 && Number(out.corrections) > 0, `${out.busts}/${out.corrections}`);
  const report = JSON.parse(
    readFileSync(join(dirname(String(out.reportPath)), 'report.json'), 'utf8'),
  ) as { fairness: { measuredOnBooks: boolean; byPolicy: Record<string, { orders: number }> } };
  t.equal(report.fairness.measuredOnBooks, true, 'avg-price measured on the books');
  t.ok(report.fairness.byPolicy['avg-price']!.orders > 0);
});

t.test('the smoke scenario, end to end: one JSON object, a report, exact books', async (t) => {
  const reportsDir = t.testdir();
  const suffix = randomBytes(3).toString('hex');
  const database = `blockfill_simtest_${suffix}`;
  const namespace = `SIMTEST${suffix.toUpperCase()}`;
  const run = simulate([
    ...['--scenario', 'smoke', '--json', '--reports-dir', reportsDir],
    ...['--database', database, '--namespace', namespace, '--fills', '200'],
  ]);
  t.equal(run.code, 0, run.stderr.slice(-2_000));
  const lines = run.stdout.trim().split('\n');
  t.equal(lines.length, 1, 'stdout is exactly one line');
  const out = JSON.parse(lines[0] ?? '{}') as Record<string, unknown>;
  t.match(out, {
    scenario: 'smoke',
    pace: 'as fast as possible',
    invariantsOk: true,
    violations: [],
    fills: 200,
    busts: Number,
    corrections: Number,
    cancels: Number,
    linesPerSec: Number,
    p50Ms: Number,
    p99Ms: Number,
    fairness: { policy: 'pro-rata', 'pro-rata': Object, 'avg-price': Object },
    peakRssBytes: Number,
    reportPath: String,
    booking: { batches: 1, matchesBooks: true },
    reconciliation: { clean: true, breaks: 0 },
  });
  t.ok(
    (out.booking as { lines: number }).lines >= Number(out.lines) - 0,
    'every allocation line booked (a reversal and its new line count twice)',
  );
  t.ok(Number(out.lines) > Number(out.fills), 'fills, fanned out to lines');
  const reportPath = String(out.reportPath);
  t.ok(reportPath.startsWith(reportsDir), 'the report is under --reports-dir');
  const json = JSON.parse(
    readFileSync(join(dirname(reportPath), 'report.json'), 'utf8'),
  ) as unknown;
  t.same(validateReport(json), [], 'report.json follows its schema');
  t.match(json, { scenario: 'smoke', counts: { fills: 200 }, invariants: { ok: true } });
  const phases = (json as { memory: Array<{ phase: string }> }).memory.map((p) => p.phase);
  t.same(phases, ['built', 'seeded', 'published', 'settled', 'checked'], 'memory after each phase');
  t.ok(readFileSync(reportPath, 'utf8').includes('data-chart="fairness"'), 'report.html written');
  const left = await withMaintenance(loadConfig(process.env).databaseUrl, (db) =>
    db.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]),
  );
  t.same(left, [], 'the run dropped the database it created');
});

t.test('a paced run follows the shape it was given', async (t) => {
  const run = simulate([
    ...['--scenario', 'smoke', '--shape', 'auctions', '--rate', '2000', '--json'],
    ...['--reports-dir', t.testdir()],
  ]);
  t.equal(run.code, 0, run.stderr.slice(-2_000));
  const out = JSON.parse(run.stdout.trim()) as Record<string, unknown>;
  t.match(out, {
    pace: { kind: 'AUCTIONS', ratePerSec: 2000, factor: 5, peakBps: 1000 },
    invariantsOk: true,
  });
});

t.test('a run refuses a namespace whose streams exist (they may be another run’s)', async (t) => {
  const config = loadConfig(process.env);
  const namespace = `NSTEST${randomBytes(3).toString('hex').toUpperCase()}`;
  const nats = await openJetStream(config, 'blockfill-namespace-test');
  t.teardown(async () => {
    await deleteStreams(nats.jsm, namespace);
    await nats.nc.close();
  });
  await assertNamespaceFree(nats.jsm, namespace);
  t.pass('a fresh namespace is free');
  const limits = { replicas: config.streamReplicas, maxAgeMs: config.streamMaxAgeMs };
  await ensureStreams(nats.jsm, streamNames({ namespace }), 1, limits);
  await t.rejects(
    assertNamespaceFree(nats.jsm, namespace),
    /exists: namespace .* may be another run's/,
  );
});
