/**
 * The outage and burst drills' fast parts (the drills themselves take
 * minutes and do not run here): private servers started, killed, restarted
 * and cleaned up; the timeline arithmetic; the feed's retries and bounds; the
 * RSS and log readers; the options.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { jetstreamManager, jetstream } from '@nats-io/jetstream';
import pg from 'pg';
import t from 'tap';
import { connectNats } from '../system/jetstream.ts';
import { offeredPerSec, parseBurstOptions, runBurstDrill } from '../simulations/drills/burst.ts';
import { DRILLS, USAGE } from '../simulations/drills/cli.ts';
import {
  FillFeed,
  parseProcStatus,
  RssSampler,
  summarizeLog,
  untilAborted,
  type MeterSample,
  type ReadinessPoll,
} from '../simulations/drills/harness.ts';
import {
  drainedSample,
  outageTimeline,
  parseOutageOptions,
  runOutageDrill,
} from '../simulations/drills/outage.ts';
import { PrivateServers, privateServersAvailable } from '../simulations/drills/private-servers.ts';
import { generateScenario } from '../simulations/scenario.ts';

const available = privateServersAvailable();

const skipNats = available.nats ? false : 'no nats-server binary';
const skipPostgres = available.postgres ? false : 'no PostgreSQL binaries or postgres OS user';

t.test(
  'a private NATS: killed and restarted on its port and store, then removed',
  { skip: skipNats },
  async (t) => {
    const servers = await PrivateServers.create();
    t.teardown(() => servers.cleanup());
    const nats = await servers.startNats();
    t.ok(nats.running && nats.pid, 'running');
    t.not(nats.port, 4222, 'never the shared port');
    const nc = await connectNats([nats.url], 'drill-outage-test');
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: 'T', subjects: ['t.>'], duplicate_window: 120_000_000_000 });
    const first = await jetstream(nc).publish('t.1', 'x', { msgID: 'fill-1' });
    t.equal(first.duplicate, false);
    await nc.close();

    const pid = nats.pid;
    await nats.kill();
    t.notOk(nats.running, 'SIGKILLed and reaped');
    await nats.start();
    t.not(nats.pid, pid, 'a new process ...');
    const nc2 = await connectNats([nats.url], 'drill-outage-test-2');
    t.teardown(() => nc2.close());
    const info = await (await jetstreamManager(nc2)).streams.info('T');
    t.equal(info.state.messages, 1, '... on the same store: the acknowledged message survived');
    const again = await jetstream(nc2).publish('t.1', 'x', { msgID: 'fill-1' });
    t.equal(again.duplicate, true, 'the duplicate window survived too: a re-publish is dropped');

    await servers.cleanup();
    t.notOk(nats.running, 'cleanup stops it');
    t.notOk(existsSync(servers.rootDir), 'cleanup removes the temp directory');
  },
);

t.test(
  'a private PostgreSQL: stopped immediately and started on its port and data',
  { skip: skipPostgres },
  async (t) => {
    const servers = await PrivateServers.create();
    t.teardown(() => servers.cleanup());
    const server = await servers.startPostgres();
    t.not(server.port, 5432, 'never the shared port');
    const query = async (sql: string) => {
      const client = new pg.Client({
        connectionString: server.url(),
        connectionTimeoutMillis: 2_000,
      });
      client.on('error', () => undefined);
      await client.connect();
      try {
        return (await client.query(sql)).rows as Array<Record<string, unknown>>;
      } finally {
        await client.end();
      }
    };
    await query('CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)');
    await server.stop();
    t.notOk(server.running);
    await t.rejects(query('SELECT 1'), 'refused while it is down');
    await server.start();
    t.same(await query('SELECT x FROM kept'), [{ x: 42 }], 'same data after the restart');
    await servers.cleanup();
    t.notOk(existsSync(servers.rootDir), 'cleanup removes the temp directory');
  },
);

t.test('the outage timeline: noticed, back, ready, drained and the drain rate', async (t) => {
  // 200 fills/s offered; the database down from 10 s, restarted at 15 s, back at 15.5 s.
  const marks = { what: 'database' as const, downAtMs: 10_000, upAtMs: 15_000, backAtMs: 15_500 };
  const polls: ReadinessPoll[] = [];
  for (let at = 0; at <= 20_000; at += 100) {
    const notReady = at >= 10_100 && at <= 15_800;
    polls.push({ atMs: at, status: notReady ? 503 : 200 });
  }
  polls[101] = { atMs: 10_100, status: 503, detail: 'database: connect ECONNREFUSED' };
  const samples: MeterSample[] = [];
  for (let at = 0; at <= 20_000; at += 500) {
    const enqueued = at / 5;
    let allocated: number | null = enqueued - 10;
    if (at > 10_000 && at < 16_000) allocated = null; // no count while it is down
    if (at >= 16_000) allocated = Math.min(enqueued, 1_990 + (at - 15_500) * 0.8);
    samples.push({ atMs: at, allocated, enqueued, published: enqueued });
  }
  const timeline = outageTimeline({ marks, t0Ms: 1_000, polls, samples, slackMs: 1_000 });
  t.same(timeline, {
    what: 'database',
    downAtMs: 9_000,
    noticedMs: 100,
    backMs: 5_500,
    restartMs: 500,
    readyMs: 5_900,
    // The feed published throughout (only the database was down).
    publishingResumedMs: 6_000,
    // The first count after back (16 s) is higher than the last before it.
    resumedMs: 6_000,
    // At 17 s, 3,190 allocated covers what was offered at back (3,100) but not by 16 s
    // (3,200); at 17.5 s, 3,500 covers the 3,300 offered by 16.5 s.
    drainedMs: 7_500,
    // (3,500 − 1,990 at the last count before back) over the 2 s since back.
    drainFillsPerSec: 755,
    backlogAtBack: 3_100 - 1_990,
    notReadyDetail: 'database: connect ECONNREFUSED',
    readyz: [
      { ms: 0, status: 200 },
      { ms: 100, status: 503, detail: 'database: connect ECONNREFUSED' },
      { ms: 5_900, status: 200 },
    ],
  });
  const stuck = samples.map((s) => (s.atMs >= 16_000 ? { ...s, allocated: 2_000 } : s));
  t.equal(drainedSample(stuck, marks.backAtMs, 1_000), undefined, 'never caught up: not drained');
  const never = polls.map((p) => ({ ...p, status: 200 }));
  const unnoticed = outageTimeline({ marks, t0Ms: 0, polls: never, samples, slackMs: 1_000 });
  t.equal(unnoticed.noticedMs, null, 'no 503 seen: noticed is null');
});

t.test('the feed: retries while publishing fails, every fill acknowledged once', async (t) => {
  const fills = generateScenario({
    fills: 300,
    accounts: 20,
    blockOrders: 4,
    securities: 2,
  }).publishOrder;
  const stored = new Map<string, number>();
  let down = true;
  let lostAcks = 0;
  const publish = async (fill: (typeof fills)[number]) => {
    await sleep(1);
    if (down) throw new Error('no responders');
    const seen = stored.get(fill.fillId) ?? 0;
    stored.set(fill.fillId, seen + 1);
    // The first publish after the outage lands but its ack is lost (a timeout).
    if (seen === 0 && lostAcks === 0) {
      lostAcks++;
      throw new Error('timeout');
    }
    return { duplicate: seen > 0 };
  };
  const feed = new FillFeed({
    ...{ publish, fills, ratePerSec: 2_000, inFlightMax: 8, bufferMax: 50 },
    ...{ failingForMaxMs: 5_000, signal: AbortSignal.timeout(10_000) },
  });
  await sleep(100);
  t.ok(feed.failedAttempts > 0, 'publishes failed while it was down');
  t.ok(feed.bufferedMax <= 50, `the buffer stayed within its bound (${feed.bufferedMax})`);
  t.ok(feed.lagMaxFills > 0, 'the schedule lagged instead of buffering more');
  down = false;
  await feed.done;
  t.equal(feed.published, fills.length, 'every fill acknowledged ...');
  t.equal(stored.size, fills.length, '... and stored');
  t.equal(feed.serverDuplicates, 1, 'the re-publish of the landed one was a duplicate');
  t.equal(feed.publishedAt(feed.startedAtMs - 1), 0);
  t.equal(feed.publishedAt(performance.now()), fills.length);
});

t.test('the feed sends nothing while the connection is down, and no busy loop', async (t) => {
  const fills = generateScenario({
    fills: 50,
    accounts: 5,
    blockOrders: 2,
    securities: 1,
  }).publishOrder;
  let up = false;
  let calls = 0;
  let checks = 0;
  const feed = new FillFeed({
    publish: async () => {
      calls++;
      return { duplicate: false };
    },
    canSend: () => (checks++, up),
    ...{ fills, ratePerSec: 1_000, inFlightMax: 4, bufferMax: 100 },
    ...{ failingForMaxMs: 1_000, signal: AbortSignal.timeout(5_000) },
  });
  await sleep(200);
  t.equal(calls, 0, 'nothing published while down');
  t.equal(feed.buffered, 50, 'what fell due waits in the buffer');
  t.ok(checks < 50, `the loop ticked (${checks} checks in 200 ms), it did not spin`);
  up = true;
  await feed.done;
  t.equal(feed.published, 50);
  t.equal(feed.failedAttempts, 0);
});

t.test('untilAborted gives up on a long check as soon as the drill is interrupted', async (t) => {
  const abort = new AbortController();
  const never = new Promise<number>(() => undefined);
  const waiting = untilAborted(never, abort.signal);
  abort.abort(new Error('interrupted by SIGINT'));
  await t.rejects(waiting, /interrupted by SIGINT/);
  t.equal(await untilAborted(Promise.resolve(7), new AbortController().signal), 7);
});

t.test('a feed that never gets through ends with the last error, bounded', async (t) => {
  const fills = generateScenario({
    fills: 10,
    accounts: 5,
    blockOrders: 1,
    securities: 1,
  }).publishOrder;
  const feed = new FillFeed({
    publish: async () => {
      throw new Error('connection refused');
    },
    ...{ fills, ratePerSec: 1_000, inFlightMax: 4, bufferMax: 10 },
    ...{ failingForMaxMs: 200, signal: AbortSignal.timeout(5_000) },
  });
  await t.rejects(feed.done, /every publish failed for 200 ms.*connection refused/);
});

t.test('RSS: /proc status parsed; the sampler reads this process', async (t) => {
  const text = 'Name:\tnode\nVmHWM:\t  524288 kB\nVmRSS:\t  262144 kB\nThreads:\t7\n';
  t.same(parseProcStatus(text), { rssKiB: 262_144, hwmKiB: 524_288 });
  t.same(parseProcStatus('Name: x\n'), {});
  const sampler = new RssSampler(process.pid, 20);
  await sleep(100);
  await sampler.stop();
  t.ok(sampler.samples >= 2, `${sampler.samples} samples`);
  t.ok(sampler.peakMiB > 10 && sampler.peakMiB < 100_000, `peak ${sampler.peakMiB} MiB`);
  t.ok(sampler.hwmKiB >= sampler.peakKiB, 'the high-water mark covers every sample');
  const gone = new RssSampler(2 ** 22 + 1, 10);
  await gone.stop();
  t.equal(gone.samples, 0);
  t.ok(gone.readFailures > 0, 'a process that is gone is a read failure, not a crash');
});

t.test('the child log summary counts by level and message, and per window', async (t) => {
  const line = (level: string, msg: string, time: number) => JSON.stringify({ level, msg, time });
  const text = [
    line('warn', 'actor crashed', 1_000),
    line('warn', 'actor crashed', 2_000),
    line('error', 'consumer loop ended', 5_000),
    'not json',
    '',
  ].join('\n');
  const s = summarizeLog(text, [{ name: 'database', fromEpochMs: 1_500, toEpochMs: 5_000 }], false);
  t.equal(s.lines, 4);
  t.same(s.byLevel, { warn: 2, error: 1, raw: 1 });
  t.same(s.top[0], { level: 'warn', msg: 'actor crashed', count: 2 });
  t.same(s.inWindows, { database: 2 });
});

t.test('options: defaults, --quick, sizes and refusals', async (t) => {
  const o = parseOutageOptions([]);
  t.match(o, { ratePerSec: 200, dbDownS: 30, natsDownS: 10, quick: false });
  t.equal(o.fills, 200 * (10 + 30 + 5 + 10 + 5 + 240), 'the plan plus the recovery allowance');
  t.match(parseOutageOptions(['--quick']), { dbDownS: 5, natsDownS: 3, warmUpS: 3 });
  t.equal(parseOutageOptions(['--quick', '--db-down-s', '7']).dbDownS, 7, 'an explicit value wins');
  t.equal(parseOutageOptions(['--rate', '100', '--seconds', '30']).fills, 3_000);
  t.throws(() => parseOutageOptions(['--fills', '10', '--seconds', '5']), /not both/);
  t.throws(() => parseOutageOptions(['--rate', '0']), /between 1 and/);
  const b = parseBurstOptions([]);
  t.match(b, { sustainablePerSec: 2_000, factor: 10, seconds: 60, warmUpS: 5 });
  t.equal(b.fills, 2_000 * 5 + 20_000 * 60);
  t.match(parseBurstOptions(['--quick']), { seconds: 10, warmUpS: 2 });
  t.throws(() => parseBurstOptions(['--rss-bound-mib', 'lots']), /whole number/);
  t.equal(offeredPerSec({ publishedAt: (ms) => ms * 3 }, 1_000, 3_000), 3_000);
});

t.test('the command line knows both drills', async (t) => {
  t.equal(DRILLS.outage?.run, runOutageDrill);
  t.equal(DRILLS.burst?.run, runBurstDrill);
  t.notMatch(USAGE, /not implemented yet/);
  const io = { progress: () => undefined };
  const help = await runOutageDrill(['--help'], io);
  t.match(help, { ok: true, exitCode: undefined });
  t.match(help.summary.join('\n'), /pg_ctl stop -m immediate/);
  t.match((await runBurstDrill(['--help'], io)).summary.join('\n'), /--rss-bound-mib/);
  // Through the real command line: exit 2, and stdout is exactly one JSON object.
  const bad = spawnSync(
    process.execPath,
    ['simulations/drills/cli.ts', 'burst', '--json', '--factor', 'x'],
    { encoding: 'utf8', timeout: 20_000 },
  );
  t.equal(bad.status, 2, 'a bad option is exit 2');
  t.match(JSON.parse(bad.stdout), { drill: 'burst', ok: false, error: /--factor/ });
});
