import t from 'tap';
import { Database } from '../persistence/db.ts';
import { loadConfig, streamNames } from '../system/config.ts';
import { openJetStream } from '../system/jetstream.ts';
import { compareAllocations, RepeatCounter } from '../simulations/drills/books.ts';
import {
  KillMode,
  outagesMs,
  parseKillOptions,
  planKills,
  runKillDrill,
  type KillReport,
  type LifeRecord,
} from '../simulations/drills/kill.ts';
import { prng } from '../simulations/scenario.ts';
import { withDatabaseName } from '../simulations/support.ts';

t.test('the loss check finds lost, doubled and unpublished fills', async (t) => {
  const clean = compareAllocations(['f1', 'f2', 'f3'], ['f3', 'f1', 'f2']);
  t.same(clean, { lost: [], duplicated: [], unexpected: [] });
  const broken = compareAllocations(['f1', 'f2', 'f3', 'f4'], ['f1', 'f3', 'f3', 'x9']);
  t.same(broken.lost, ['f2', 'f4']);
  t.same(broken.duplicated, ['f3']);
  t.same(broken.unexpected, ['x9']);
  t.same(compareAllocations(['f1'], []).lost, ['f1'], 'nothing allocated: everything lost');
});

t.test('the line check counts every repeated application', async (t) => {
  const lines = new RepeatCounter();
  for (const key of ['BO1|1|A', 'BO1|1|B', 'BO1|1|A', 'BO1|2|A', 'BO1|1|A']) lines.add(key);
  t.equal(lines.repeats, 2);
  t.same(lines.examples, ['BO1|1|A', 'BO1|1|A']);
  const none = new RepeatCounter();
  for (const key of ['a', 'b', 'c']) none.add(key);
  t.equal(none.repeats, 0);
});

t.test(
  'an outage runs from a kill in steady state to the next catch-up, kills between included',
  async (t) => {
    const life = (r: Partial<LifeRecord>): LifeRecord => ({
      ...{ life: 0, pid: 1, port: 1, mode: KillMode.Steady, spawnedAtS: 0, backlogAtSpawn: 0 },
      ...{ readyMs: null, catchUpMs: null, catchUpAtLeastMs: null, killedAfterMs: null },
      ...{ phaseAtKill: null, backlogAtKill: null, exit: null },
      ...r,
    });
    const records = [
      // The cold start is no outage; the kill in steady state starts one at 10 s.
      life({ spawnedAtS: 0, catchUpMs: 2_000, killedAfterMs: 10_000, phaseAtKill: 'steady' }),
      // Killed while recovering: the same outage goes on.
      life({ spawnedAtS: 10.1, readyMs: 2_000, killedAfterMs: 2_100, phaseAtKill: 'recovering' }),
      // Caught up at 15.3 s (outage 5.3 s), killed at 17.3 s.
      life({ spawnedAtS: 12.3, catchUpMs: 3_000, killedAfterMs: 5_000, phaseAtKill: 'steady' }),
      life({ spawnedAtS: 17.4, catchUpMs: 1_000, mode: 'final' }),
    ];
    t.same(
      outagesMs(records).map((ms) => Math.round(ms)),
      [5_300, 1_100],
    );
    t.same(outagesMs(records.slice(0, 2)), [], 'an outage not over yet has no length');
  },
);

t.test('kills are planned as an even, seeded mix of the three moments', async (t) => {
  const plan = planKills(3, prng(1));
  t.same([...plan].sort(), [KillMode.Recovering, KillMode.Starting, KillMode.Steady]);
  t.same(planKills(20, prng(7)), planKills(20, prng(7)), 'same seed, same plan');
  const counts = planKills(20, prng(7)).reduce<Record<string, number>>(
    (c, m) => ({ ...c, [m]: (c[m] ?? 0) + 1 }),
    {},
  );
  t.same(counts, { starting: 7, recovering: 7, steady: 6 });
  t.same(planKills(0, prng(1)), []);
});

t.test('options: defaults, sizes and refusals', async (t) => {
  const defaults = parseKillOptions([], {});
  t.match(defaults, { kills: 20, ratePerSec: 400, fills: 400 * (20 * 10 + 60), ackWaitMs: 2_000 });
  t.same(defaults.amend, { amendBps: 200, cancelBps: 5_000 }, '~2 % busts and corrections');
  t.same(parseKillOptions(['--amend-bps', '0'], {}).amend, { amendBps: 0, cancelBps: 0 }, 'off');
  t.same(parseKillOptions(['--amend-bps', '0', '--cancel-bps', '100'], {}).amend, {
    amendBps: 0,
    cancelBps: 100,
  });
  t.throws(() => parseKillOptions(['--amend-bps', '6000'], {}), /between 0 and 5000/);
  t.equal(parseKillOptions(['--json'], {}).kills, 20, '--json is left to the command line');
  t.equal(parseKillOptions([], { CONSUMER_ACK_WAIT_MS: '5000' }).ackWaitMs, 5_000);
  t.match(parseKillOptions(['--kills', '3', '--rate', '100', '--fills', '50'], {}), {
    kills: 3,
    ratePerSec: 100,
    fills: 50,
  });
  t.throws(() => parseKillOptions(['--kills', 'many'], {}), /--kills must be a whole number/);
  t.throws(() => parseKillOptions(['--ack-wait-ms', '10'], {}), /between 1000/);
  t.throws(() => parseKillOptions(['--bogus'], {}));
  t.same(parseKillOptions(['--policy', 'avg-price', '--release-every-fills', '7'], {}).policy, {
    kind: 'AVERAGE_PRICE',
    everyFills: 7,
    everyMarketMs: null,
  });
  t.same(parseKillOptions([], {}).policy, { kind: 'PRO_RATA' }, 'pro-rata by default');
  t.throws(
    () => parseKillOptions(['--policy', 'vwap'], {}),
    /--policy must be pro-rata or avg-price/,
  );
});

t.test('a bad option is a usage failure (exit 2) that says why, not a crash', async (t) => {
  const result = await runKillDrill(['--rate', '0'], { progress: () => {} });
  t.equal(result.ok, false);
  t.equal(result.exitCode, 2);
  t.match(result.failures[0], /--rate must be between 1/);
  const help = await runKillDrill(['--help'], { progress: () => {} });
  t.equal(help.ok, true);
  t.match(help.summary.join('\n'), /npm run drill -- kill/);
});

/** The database still exists / the stream still exists: the drill must remove both. */
async function leftovers(database: string, namespace: string) {
  const base = loadConfig(process.env);
  const db = await Database.open({
    url: withDatabaseName(base.databaseUrl, 'postgres'),
    poolMax: 1,
    retriesMax: 1,
    retryBackoffMs: 5,
  });
  const rows = await db
    .query('SELECT 1 FROM pg_database WHERE datname = $1', [database])
    .finally(() => db.close());
  const nats = await openJetStream(base, 'blockfill-test-kill-leftovers');
  const stream = await nats.jsm.streams
    .info(streamNames({ namespace }).executions)
    .then(() => true)
    .catch(() => false)
    .finally(() => nats.nc.close());
  return { database: rows.length > 0, stream };
}

const processAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

t.test(
  'a small kill drill with busts, corrections and cancels loses nothing, doubles nothing',
  async (t) => {
    const lines: string[] = [];
    const startedMs = Date.now();
    // Seed 210 at this size: an order that stops short ends (and its cancel is
    // published) at message 805 of 3122, well within what flows through three
    // kills at 100/s (≥ ~1300); the whole day would take 31 s, longer than the
    // kills (so they all land with messages flowing).
    const result = await runKillDrill(
      ['--kills', '3', '--rate', '100', '--fills', '3000'].concat([
        '--accounts',
        '200',
        '--orders',
        '40',
        '--securities',
        '10',
        '--seed',
        '210',
      ]),
      { progress: (line) => lines.push(line) },
    );
    const r = result.json as KillReport;
    t.comment(result.summary.join('\n'));
    if (!result.ok) t.comment(lines.join('\n'));
    t.same(result.failures, [], 'no failures');
    t.equal(result.ok, true);
    t.equal(r.kills, 3);
    t.ok(r.fillsPublished >= 500, `fills flowed through the kills (${r.fillsPublished})`);
    t.equal(r.fillsAllocated, r.fillsPublished);
    t.ok(r.busts > 0 && r.corrections > 0, `${r.busts} busts, ${r.corrections} corrections`);
    t.ok(r.cancels > 0, `${r.cancels} cancels`);
    t.equal(r.entriesPublished, r.fillsPublished + r.busts + r.corrections + r.cancels);
    t.equal(r.entriesApplied, r.entriesPublished, 'every fill and amendment applied');
    t.equal(r.killsAfterPublishingEnded, 0, 'every kill with fills flowing');
    t.equal(r.lostFills, 0);
    t.equal(r.lostAmendments, 0);
    t.equal(r.duplicateApplications, 0);
    t.equal(r.invariantsOk, true);
    t.equal(r.deadLettered, 0);
    t.equal(r.sigterm.exitCode, 0);
    t.ok(r.readyMsP99 !== null && r.readyMsP99 > 0, 'ready time measured');
    t.ok(r.catchUpSecondsP99 !== null && r.catchUpSecondsP99 > 0, 'catch-up time measured');
    t.ok(r.naksPerFill >= 0 && Number.isFinite(r.naksPerFill));
    t.equal(r.timeline.length, 4, 'three killed lives and the last one');
    t.same(
      r.timeline.map((life) => life.exit?.signal ?? life.exit?.code),
      ['SIGKILL', 'SIGKILL', 'SIGKILL', 0],
    );
    t.ok(r.killsByPhase.notReady >= 1, 'one kill landed before the child was ready');
    for (const life of r.timeline) t.notOk(processAlive(life.pid), `pid ${life.pid} is gone`);
    t.same(await leftovers(r.config.database, r.config.namespace), {
      database: false,
      stream: false,
    });
    t.ok(Date.now() - startedMs < 90_000, 'within 90 s');
  },
);

t.test(
  'a kill drill of average-price orders loses nothing: releases survive SIGKILL',
  async (t) => {
    const result = await runKillDrill(
      ['--kills', '2', '--rate', '100', '--fills', '2000', '--policy', 'avg-price'].concat(
        ['--release-every-fills', '4', '--accounts', '200', '--orders', '40', '--securities', '10'],
        ['--seed', '210'],
      ),
      { progress: () => {} },
    );
    const r = result.json as KillReport;
    t.comment(result.summary.join('\n'));
    t.same(result.failures, [], 'no failures');
    t.match(r.config, { policy: 'avg-price', releaseEveryFills: 4 });
    t.ok(r.averageReleases > 0, `${r.averageReleases} releases on the books`);
    t.ok(r.releaseAmendments > 0, `${r.releaseAmendments} busts and corrections amended a release`);
    t.equal(r.kills, 2);
    t.ok(r.busts > 0 && r.corrections > 0, `${r.busts} busts, ${r.corrections} corrections`);
    t.equal(r.entriesApplied, r.entriesPublished, 'every fill and amendment applied');
    t.equal(r.lostFills + r.lostAmendments + r.duplicateApplications, 0);
    t.equal(r.invariantsOk, true, 'releases, residue and accounts exact');
    t.equal(r.deadLettered, 0);
    t.same(await leftovers(r.config.database, r.config.namespace), {
      database: false,
      stream: false,
    });
  },
);
