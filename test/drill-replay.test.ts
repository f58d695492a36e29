/**
 * The replay drill, small, against the real PostgreSQL and NATS, with the
 * market's busts, corrections and cancels in the stream (the default): once
 * through the CLI with --json (stdout must be exactly one JSON object), once
 * from a later stream seq through the function the CLI runs (messages before
 * it are skipped, so the books must come out different and the drill must
 * fail).
 */
import { spawn } from 'node:child_process';
import t from 'tap';
import { NOT_DERIVED_TABLES } from '../persistence/migrations/index.ts';
import { parseReplayOptions, runReplayDrill } from '../simulations/drills/replay.ts';

const SMALL = ['--fills', '400', '--orders', '8', '--accounts', '40', '--securities', '4'];

function runCli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['simulations/drills/cli.ts', ...args], {
      cwd: new URL('..', import.meta.url),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 90_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

t.test(
  'replay through the CLI: rebuilt books equal the live ones; one JSON object on stdout',
  async (t) => {
    const { code, stdout, stderr } = await runCli(['replay', '--json', ...SMALL]);
    t.equal(code, 0, `exit 0 (stderr: ${stderr.slice(-2000)})`);
    const lines = stdout.trim().split('\n');
    t.equal(lines.length, 1, 'stdout is one line');
    const json = JSON.parse(stdout) as Record<string, unknown>;
    t.equal(typeof json, 'object');
    t.equal(json.drill, 'replay');
    t.equal(json.equal, true);
    t.equal(json.ok, true);
    t.match(json.digestBefore, /^[0-9a-f]{64}$/);
    t.equal(json.digestAfter, json.digestBefore);
    t.equal(json.fills, 400, 'every fill replayed and settled');
    // Seed 42 at this size: 11 busts, 3 corrections, 1 cancel.
    const amendments = { busts: json.busts, corrections: json.corrections, cancels: json.cancels };
    for (const [kind, n] of Object.entries(amendments))
      t.ok((n as number) > 0, `${String(n)} ${kind} replayed`);
    t.same(amendments, json.published, 'every published amendment replayed and settled');
    t.equal(
      json.entries,
      400 + Object.values(amendments).reduce<number>((a, n) => a + (n as number), 0),
    );
    t.match(json.liveRun, { ...amendments, fills: 400, invariantsOk: true }, 'and in the live run');
    t.equal(json.from, 'start');
    t.equal(json.skippedMessages, 0);
    t.ok((json.events as number) > 400, `${String(json.events)} journal rows rebuilt`);
    t.ok((json.eventsPerSec as number) > 0);
    t.ok((json.seconds as number) > 0);
    t.equal(json.invariantsAfterOk, true, 'the replayed books are exact too');
    const truncated = json.truncatedTables as string[];
    for (const table of ['journal', 'snapshots'])
      t.ok(truncated.includes(table), `${table} truncated`);
    for (const table of NOT_DERIVED_TABLES) t.notOk(truncated.includes(table), `${table} kept`);
    t.match(stderr, /drill replay: OK/, 'progress and the verdict on stderr');
  },
);

t.test('replay from a later seq skips fills: the digests differ and the drill fails', async (t) => {
  const result = await runReplayDrill([...SMALL, '--from-seq', '200', '--timeout-ms', '30000'], {
    progress: () => {},
  });
  const json = result.json as Record<string, unknown>;
  t.equal(json.from, 'seq 200');
  t.equal(json.skippedMessages, 199, 'the messages before seq 200 were acked unread');
  t.equal(json.equal, false);
  t.not(json.digestAfter, json.digestBefore);
  t.equal(result.ok, false);
  t.match(result.failures.join('\n'), /digest after the replay differs/);
});

t.test(
  'replay of average-price orders: released every 3 fills, the rebuilt books equal',
  async (t) => {
    const result = await runReplayDrill(
      [...SMALL, '--policy', 'avg-price', '--release-every-fills', '3'],
      { progress: () => {} },
    );
    const json = result.json as Record<string, unknown>;
    t.same(result.failures, []);
    t.equal(json.policy, 'avg-price');
    t.equal(json.equal, true, 'digest after = digest before');
    t.match(json.digestBefore, /^[0-9a-f]{64}$/);
    t.equal(json.fills, 400, 'every fill replayed and settled');
    t.ok((json.busts as number) > 0 && (json.corrections as number) > 0, 'with amendments');
    const liveRun = json.liveRun as Record<string, number | boolean>;
    t.equal(liveRun.invariantsOk, true);
    t.ok(Number(liveRun.averageReleases) > 0, `${liveRun.averageReleases} releases on the books`);
    t.ok(Number(liveRun.releaseAmendments) > 0, `${liveRun.releaseAmendments} amended a release`);
    t.equal(json.invariantsAfterOk, true, 'the replayed books are exact too');
  },
);

t.test('replay: the policy option, and a bad one named', async (t) => {
  t.same(parseReplayOptions([]).policy, { kind: 'PRO_RATA' });
  t.same(parseReplayOptions(['--policy', 'avg-price']).policy, {
    kind: 'AVERAGE_PRICE',
    everyFills: 5,
    everyMarketMs: null,
  });
  t.throws(
    () => parseReplayOptions(['--policy', 'lottery']),
    /--policy must be pro-rata or avg-price/,
  );
  t.throws(() => parseReplayOptions(['--release-every-fills', '0']), /between 1/);
});

t.test('replay: amendments by default, off with --amend-bps 0', async (t) => {
  t.same(parseReplayOptions([]).amend, { amendBps: 200, cancelBps: 5_000 });
  t.same(parseReplayOptions(['--amend-bps', '0']).amend, { amendBps: 0, cancelBps: 0 });
  t.same(parseReplayOptions(['--amend-bps', '50', '--cancel-bps', '0']).amend, {
    amendBps: 50,
    cancelBps: 0,
  });
});

t.test('replay: conflicting options are a usage error', async (t) => {
  const result = await runReplayDrill(['--from-seq', '5', '--from-time', '2026-01-01T00:00:00Z'], {
    progress: () => {},
  });
  t.equal(result.exitCode, 2);
  t.match(result.failures, [/not both/]);
});
