/**
 * `npm run bench`: a benchmark, not a test. Runs the end-to-end path on the
 * local services twice:
 *  1. saturation: every fill published as fast as JetStream takes them; the
 *     figure is durable account events per second;
 *  2. steady load: fills published at a fixed rate below saturation; the
 *     figure is the latency from publish to every allocation durable.
 * Both runs also check every invariant. Prints the figures, writes them as
 * JSON to bench-results/, and with --json prints them as one JSON line last.
 *
 *   npm run bench -- [--json] [--fills N] [--rate FILLS_PER_SEC] [--paced-fills N] [--seed N]
 */
import { mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { parseArgs } from './cli.ts';
import { runScenario, type RunResult } from './run.ts';

const args = parseArgs(process.argv.slice(2), {
  json: 'boolean',
  fills: 'number',
  rate: 'number',
  'paced-fills': 'number',
  seed: 'number',
});
const json = args.json === true;
const say = (line: string) => (json ? process.stderr : process.stdout).write(`${line}\n`);
const seed = typeof args.seed === 'number' ? args.seed : 7;
const floodFills = typeof args.fills === 'number' ? args.fills : 50_000;
const pacedFills = typeof args['paced-fills'] === 'number' ? args['paced-fills'] : 10_000;
const rate = typeof args.rate === 'number' ? args.rate : 1_000;

const common = {
  namespace: 'BENCH',
  databaseName: 'blockfill_bench',
  keepDatabase: false,
  publishInFlightMax: 256,
  settleTimeoutMs: 600_000,
  checkInvariants: true,
  env: process.env,
  progress: say,
};

const describe = (label: string, r: RunResult) => {
  say(`${label}:`);
  say(
    `  ${r.fills} fills, ${r.accountEvents} durable account events in ${(r.elapsedMs / 1000).toFixed(2)} s`,
  );
  say(`  ${r.accountEventsPerSec} account events/s, ${r.fillsPerSec} fills/s`);
  say(
    `  latency publish -> all allocations durable: p50 ${r.latencyMs.p50} ms, p90 ${r.latencyMs.p90} ms, p99 ${r.latencyMs.p99} ms, max ${r.latencyMs.max} ms`,
  );
  say(
    `  journal: ${r.journal.events} events in ${r.journal.batches} commits; invariants ${r.invariantsOk ? 'hold' : 'VIOLATED'}`,
  );
};

say(`saturation run: ${floodFills} fills, published as fast as possible`);
const flood = await runScenario({ ...common, scenario: { seed, fills: floodFills } });
describe('saturation', flood);
say(`steady run: ${pacedFills} fills at ${rate} fills/s`);
const steady = await runScenario({
  ...common,
  scenario: { seed: seed + 1, fills: pacedFills },
  publishRatePerSec: rate,
});
describe('steady', steady);

const summary = {
  invariantsOk: flood.invariantsOk && steady.invariantsOk,
  accountEventsPerSec: flood.accountEventsPerSec,
  fillsPerSec: flood.fillsPerSec,
  latencyMs: { p50: steady.latencyMs.p50, p99: steady.latencyMs.p99 },
  saturation: flood,
  steady: { ...steady, publishRatePerSec: rate },
  machine: {
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
  },
  at: new Date().toISOString(),
};
await mkdir('bench-results', { recursive: true });
const file = `bench-results/bench-${summary.at.replace(/[:.]/g, '-')}.json`;
await writeFile(file, `${JSON.stringify(summary, null, 2)}\n`);
say(`written ${file}`);
if (json) process.stdout.write(`${JSON.stringify(summary)}\n`);
process.exit(summary.invariantsOk ? 0 : 1);
