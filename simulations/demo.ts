/**
 * `npm run demo`: the main job. Seeds a realistic scenario (by default 2,000
 * accounts, 200 block orders, 50,000 fills), runs it through JetStream and the
 * actors on the local services, checks every invariant exactly, prints
 * throughput and latency. Exits 0 only if every invariant holds.
 *
 *   npm run demo -- [--json] [--fills N] [--accounts N] [--orders N] [--seed N] [--keep]
 */
import { parseCommandLine } from './cli.ts';
import { runScenario } from './run.ts';

const USAGE = `npm run demo -- [--json] [--fills N] [--accounts N] [--orders N] [--securities N] [--seed N] [--keep]

Seeds a scenario in a database of its own, runs it through JetStream and the actors,
checks every invariant exactly and prints throughput and latency; exits 0 only if the books hold.`;
const args = parseCommandLine(
  process.argv.slice(2),
  {
    json: 'boolean',
    fills: 'number',
    accounts: 'number',
    orders: 'number',
    securities: 'number',
    seed: 'number',
    keep: 'boolean',
  },
  USAGE,
);
const json = args.json === true;
const say = (line: string) => (json ? process.stderr : process.stdout).write(`${line}\n`);

const result = await runScenario({
  scenario: {
    ...(typeof args.fills === 'number' ? { fills: args.fills } : {}),
    ...(typeof args.accounts === 'number' ? { accounts: args.accounts } : {}),
    ...(typeof args.orders === 'number' ? { blockOrders: args.orders } : {}),
    ...(typeof args.securities === 'number' ? { securities: args.securities } : {}),
    ...(typeof args.seed === 'number' ? { seed: args.seed } : {}),
  },
  tag: 'demo',
  keepDatabase: args.keep === true,
  publishInFlightMax: 256,
  settleTimeoutMs: 600_000,
  checkInvariants: true,
  env: process.env,
  progress: say,
}).catch((error: Error) => {
  say(`demo failed: ${error.message}`);
  if (json)
    process.stdout.write(`${JSON.stringify({ invariantsOk: false, error: error.message })}\n`);
  process.exit(1);
});

const inv = result.invariants;
say('');
say(`fills allocated           ${result.fills}`);
say(`allocation lines          ${inv?.allocationLines ?? '-'}`);
say(`lines durable on accounts ${result.lines}`);
say(
  `elapsed                   ${(result.elapsedMs / 1000).toFixed(2)} s (publishing took ${(result.publishMs / 1000).toFixed(2)} s)`,
);
say(
  `throughput                ${result.fillsPerSec} fills/s, ${result.linesPerSec} allocation lines/s`,
);
say(
  `latency publish -> all lines durable: p50 ${result.latencyMs.p50} ms, p90 ${result.latencyMs.p90} ms, p99 ${result.latencyMs.p99} ms, max ${result.latencyMs.max} ms`,
);
say(
  '  (all fills are published at once, so latency includes queueing behind the backlog; npm run bench also measures it at a steady rate)',
);
say(
  `journal                   ${result.journal.events} rows in ${result.journal.batches} commits (largest ${result.journal.batchEventsLargest}, mean commit ${(result.journal.flushMsTotal / Math.max(1, result.journal.batches)).toFixed(1)} ms), ${result.journal.conflicts} conflicts`,
);
say(
  `consumer                  ${result.consumer.acked} acked, ${result.consumer.duplicates} duplicates, ${result.consumer.nakked} nakked, ${result.consumer.deadLettered} dead-lettered; actor crashes ${result.actorCrashes}`,
);
if (inv) {
  say(
    `invariants                ${inv.ok ? 'ALL HOLD' : 'VIOLATED'} (${inv.checks} exact checks; ${inv.rejectedAllocations} allocations rejected by accounts)`,
  );
  for (const v of inv.violations) say(`  violation: ${v}`);
}
say(
  `database                  ${result.databaseName}${args.keep === true ? ' (kept)' : ' (dropped)'}`,
);
if (json) {
  process.stdout.write(
    `${JSON.stringify({
      invariantsOk: result.invariantsOk,
      fills: result.fills,
      lines: result.lines,
      fillsPerSec: result.fillsPerSec,
      linesPerSec: result.linesPerSec,
      latencyMs: { p50: result.latencyMs.p50, p99: result.latencyMs.p99 },
    })}\n`,
  );
}
process.exit(result.invariantsOk ? 0 : 1);
