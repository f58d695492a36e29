import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import t from 'tap';
import type { Entry } from '../actors/block-order/decider.ts';
import { commandUsage } from '../system/cli/args.ts';
import { commandNames, main, resolveCommand } from '../system/cli/dispatch.ts';
import { formatTable, type Io } from '../system/cli/output.ts';
import {
  csvHeader,
  csvRowToJson,
  dueAtMs,
  formatOf,
  lineDecoder,
  parseCsvLine,
  publishLines,
  type PublishLoopDeps,
} from '../system/cli/publish.ts';
import {
  blockOrderView,
  confirmedThrough,
  eventually,
  smallSeed,
  startTestService,
  uniqueSuffix,
  type Teardown,
} from './helpers/harness.ts';

const CLI = 'system/cli/main.ts';
const API_KEY = 'test-key-0123456789abcdef';

/** The environment without what would change the CLI's defaults under test. */
function baseEnv(): Record<string, string | undefined> {
  const env = { ...process.env };
  delete env.API_KEY;
  delete env.BLOCKFILL_API;
  return env;
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The CLI as a child process, as `npm run cli --` runs it. */
async function cli(args: string[], env: Record<string, string> = {}): Promise<Run> {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { ...baseEnv(), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const [code] = (await once(child, 'close')) as [number | null];
  return { code, stdout, stderr };
}

/** The CLI in this process (for the many API cases): output captured. */
async function inProcess(args: string[], env: Record<string, string> = {}): Promise<Run> {
  const out: string[] = [];
  const err: string[] = [];
  const io: Io = { out: (l) => void out.push(l), err: (l) => void err.push(l), stderrIsTty: false };
  const code = await main(args, { io, env: { ...baseEnv(), ...env } });
  return { code, stdout: out.map((l) => `${l}\n`).join(''), stderr: err.join('\n') };
}

const fill = (seq: number, extra: Record<string, unknown> = {}) =>
  JSON.stringify({
    fillId: `F${seq}`,
    blockOrderId: 'BUY1',
    seq,
    quantity: '500',
    price: seq === 1 ? '101.25' : '101.75',
    venue: seq === 1 ? 'XNYS' : 'XNAS',
    executedAtMs: seq * 1000,
    ...extra,
  });

t.test('CSV: quoted cells, empty cells, header subset, bad rows', async (t) => {
  t.same(parseCsvLine('a,"b,c",,"say ""hi"""'), { ok: true, cells: ['a', 'b,c', '', 'say "hi"'] });
  t.same(parseCsvLine(''), { ok: true, cells: [''] });
  t.same(parseCsvLine('a,'), { ok: true, cells: ['a', ''] });
  t.match(parseCsvLine('a,"b'), { ok: false, rule: /unterminated quoted cell/ });
  t.match(parseCsvLine('a,"b"x'), { ok: false, rule: /text after a closing quote \(column 2\)/ });
  t.match(parseCsvLine('a,b"c'), { ok: false, rule: /quote inside an unquoted cell/ });

  t.same(csvHeader('blockOrderId, fillId ,seq'), {
    ok: true,
    fields: ['blockOrderId', 'fillId', 'seq'],
  });
  t.match(csvHeader('fillId,qty'), { ok: false, rule: /"qty", not one of kind, amendmentId/ });
  t.match(csvHeader('seq,seq'), { ok: false, rule: /names seq twice/ });

  t.same(csvRowToJson(['blockOrderId', 'seq', 'quantity', 'kind'], ['BUY1', '7', '0500', '']), {
    ok: true,
    json: { blockOrderId: 'BUY1', seq: 7, quantity: '0500' },
  });
  t.same(csvRowToJson(['seq', 'executedAtMs'], ['x1', '1000']), {
    ok: true,
    json: { seq: 'x1', executedAtMs: 1000 },
  });
  t.match(csvRowToJson(['seq'], ['1', '2']), {
    ok: false,
    field: '(row)',
    rule: /must have 1 cells/,
  });

  const decode = lineDecoder('csv', 'executions', 4);
  t.same(decode('fillId,blockOrderId,seq,quantity,price,venue,executedAtMs,kind'), {
    kind: 'skip',
  });
  const row = decode('F1,BUY1,1,500,"101.25","XN,YS",1000,');
  t.equal(row.kind, 'entry');
  t.match(row, {
    entry: { fillId: 'F1', seq: 1, quantity: 500n, price: 101_250_000n, venue: 'XN,YS' },
  });
  t.same(decode('   '), { kind: 'skip' }, 'a blank line is skipped');
  t.match(decode('F2,BUY1,2,500,101.1234567,XNYS,2000,'), { kind: 'invalid', field: 'price' });
  t.match(decode('F2,BUY1,2,500,101.25,XNYS'), { kind: 'invalid', field: '(row)' });
  t.match(decode('F2,BUY1,x,500,101.25,XNYS,2000,'), { kind: 'invalid', field: 'seq' });
  t.throws(() => lineDecoder('csv', 'executions', 4)('fillId,bogus'), /CSV header names "bogus"/);

  const bom = lineDecoder('csv', 'executions', 4);
  t.same(bom('\uFEFFblockOrderId,fillId,seq'), { kind: 'skip' }, 'a BOM before the header');
  t.match(bom('BUY1,F1,1'), { kind: 'invalid', field: 'executedAtMs' }, 'the header was read');
  const jsonl = lineDecoder('jsonl', 'executions', 4);
  t.equal(jsonl(`\uFEFF${fill(1)}`).kind, 'entry', 'a BOM before the first line');
  t.match(jsonl('{"fillId":'), { kind: 'invalid', field: '(line)', rule: /is not JSON/ });
  t.match(jsonl('[1]'), { kind: 'invalid', field: '(execution)' });
});

t.test('format from the extension or --format', async (t) => {
  t.equal(formatOf('a/b.JSONL', undefined), 'jsonl');
  t.equal(formatOf('b.ndjson', undefined), 'jsonl');
  t.equal(formatOf('b.csv', undefined), 'csv');
  t.equal(formatOf('b.txt', 'csv'), 'csv');
  t.throws(() => formatOf('b.txt', undefined), /--format jsonl or --format csv/);
  t.throws(() => formatOf('b.csv', 'xml'), /--format must be one of jsonl, csv/);
});

const fillEntry = (seq: number): Entry => ({
  fillId: `F${seq}`,
  blockOrderId: 'BUY1',
  seq,
  quantity: 1n,
  price: 1_000_000n,
  venue: 'XNYS',
  executedAtMs: seq,
});

/** A loop over `n` fills with a fake clock that only moves when told. */
function fakeLoop(n: number, overrides: Partial<PublishLoopDeps> = {}) {
  const clock = { ms: 1_000 };
  const waits: number[] = [];
  const deps: PublishLoopDeps = {
    decode: (line) => ({ kind: 'entry', entry: fillEntry(Number(line)) }),
    publish: async () => ({ duplicate: false }),
    inFlightMax: 8,
    nowMs: () => clock.ms,
    sleepMs: async (ms) => {
      waits.push(ms);
      clock.ms += ms;
    },
    onEvent: () => undefined,
    ...overrides,
  };
  async function* lines() {
    for (let i = 1; i <= n; i++) yield String(i);
  }
  return { clock, waits, deps, lines };
}

t.test(
  'pacing: message i is due at start + i/rate, so slow steps do not shift the schedule',
  async (t) => {
    t.equal(dueAtMs(1_000, 0, 4), 1_000);
    t.equal(dueAtMs(1_000, 3, 4), 1_750);
    t.equal(dueAtMs(0, 1, 3), 1000 / 3);
    t.equal(dueAtMs(0, 1000, 1000), 1000, 'no accumulated rounding');

    const steady = fakeLoop(5, { ratePerSecond: 10 });
    const counts = await publishLines(steady.lines(), steady.deps);
    t.same(steady.waits, [100, 100, 100, 100]);
    t.match(counts, { linesRead: 5, published: 5, duplicates: 0, invalid: 0, failed: 0 });

    // Each publish takes 30 ms of the clock: the next wait is shorter, the schedule the same.
    const slow = fakeLoop(4, { ratePerSecond: 10 });
    slow.deps.publish = async () => {
      slow.clock.ms += 30;
      return { duplicate: false };
    };
    await publishLines(slow.lines(), slow.deps);
    t.same(slow.waits, [70, 70, 70]);
    t.equal(slow.clock.ms, 1_000 + 300 + 30, 'the last one went at start + 3/rate');

    const unpaced = fakeLoop(50);
    await publishLines(unpaced.lines(), unpaced.deps);
    t.same(unpaced.waits, [], 'no --rate: no waiting');
  },
);

t.test(
  'publish loop: bounded in-flight, duplicates, invalid lines and failures counted',
  async (t) => {
    let inFlight = 0;
    let inFlightMax = 0;
    const events: unknown[] = [];
    const loop = fakeLoop(20, {
      inFlightMax: 3,
      decode: (line) =>
        line === '5'
          ? { kind: 'invalid', field: 'price', rule: 'is bad' }
          : line === '6'
            ? { kind: 'skip' }
            : { kind: 'entry', entry: fillEntry(Number(line)) },
      publish: async (entry) => {
        inFlight++;
        inFlightMax = Math.max(inFlightMax, inFlight);
        await new Promise((resolve) => setImmediate(resolve));
        inFlight--;
        if (entry.seq === 7) throw new Error('no stream answered');
        return { duplicate: entry.seq % 2 === 0 };
      },
      onEvent: (e) => void (e.kind === 'line' ? undefined : events.push(e)),
    });
    const counts = await publishLines(loop.lines(), loop.deps);
    t.equal(inFlightMax, 3);
    t.same(counts, { linesRead: 20, published: 8, duplicates: 9, invalid: 1, failed: 1 });
    t.same(events, [
      { kind: 'invalid', line: 5, field: 'price', rule: 'is bad' },
      { kind: 'failed', line: 7, message: 'no stream answered' },
    ]);
  },
);

t.test('tables pad every column but the last', async (t) => {
  t.same(
    formatTable(
      ['ID', 'REASON'],
      [
        ['1', 'A'],
        ['22', 'BB'],
      ],
    ),
    ['ID  REASON', '1   A', '22  BB'],
  );
});

t.test('--help answers for the top level and every command, exit 0', async (t) => {
  const names = commandNames();
  t.same(names, [
    'publish',
    'stream status',
    'dlq list',
    'dlq show',
    'dlq replay',
    'actor list',
    'actor show',
    'actor restart',
    'booking close',
    'booking show',
    'reconcile',
  ]);
  const top = await cli(['--help']);
  t.equal(top.code, 0);
  t.match(top.stdout, /usage: npm run cli -- <command>/);
  for (const name of names) t.match(top.stdout, name, `the top level lists ${name}`);
  const runs = await Promise.all(names.map((name) => cli([...name.split(' '), '--help'])));
  names.forEach((name, i) => {
    const run = runs[i];
    t.equal(run?.code, 0, `${name} --help exits 0`);
    t.match(run?.stdout, `usage: npm run cli -- ${name}`, `${name} --help shows its usage`);
    t.match(run?.stdout, '--json', `${name} takes --json`);
  });
  const group = await cli(['dlq', '-h']);
  t.equal(group.code, 0);
  t.match(group.stdout, /dlq <list\|show\|replay>/);
  const resolved = resolveCommand(['publish', 'x.csv', '--help']);
  t.ok(
    'command' in resolved && commandUsage(resolved.command.spec).includes('--rate <per-second>'),
  );
});

t.test('a bad command line: one line naming the option and the rule, exit 2', async (t) => {
  const cases: Array<[string[], RegExp]> = [
    [
      ['publish', 'f.jsonl', '--bogus'],
      /unknown option --bogus .*see npm run cli -- publish --help/,
    ],
    [['publish', 'f.jsonl', '--rate', 'fast'], /--rate must be a positive number/],
    [['publish', 'f.jsonl', '--rate'], /--rate needs a value/],
    [['publish', 'f.jsonl', '--json=yes'], /--json takes no value/],
    [['publish', 'f.jsonl', '--format', 'xml'], /--format must be one of jsonl, csv/],
    [['publish'], /missing <file>/],
    [['publish', 'missing-file.jsonl'], /<file>: cannot read "missing-file.jsonl" \(ENOENT\)/],
    [['dlq', 'list', '--limit', '0'], /--limit must be a whole number from 1/],
    [['dlq', 'list', '--api', 'ftp://x'], /--api must be an http\(s\) URL/],
    [['dlq', 'show'], /missing <id>/],
    [['dlq', 'show', 'a', 'b'], /unexpected argument "b"/],
    [['dlq', 'nope'], /unknown subcommand "nope"/],
    [['dlq'], /a subcommand is needed: list, show, replay/],
    [['actor', 'show', 'robot', 'X'], /<kind> must be one of account, block-order/],
    [['reconcile', '--trade-date', '2026-02-30'], /--trade-date must be a date YYYY-MM-DD/],
    [['frobnicate'], /unknown command "frobnicate"/],
    [[], /a command is needed/],
  ];
  for (const [args, message] of cases) {
    const run = await inProcess(args);
    t.equal(run.code, 2, `${args.join(' ')}: exit 2`);
    t.match(run.stderr, message, args.join(' '));
    t.equal(run.stderr.split('\n').length, 1, 'one line');
    t.equal(run.stdout, '', 'nothing on stdout');
  }
  const child = await cli(['publish', 'f.jsonl', '--nope']);
  t.equal(child.code, 2, 'the process exits 2');
  t.match(child.stderr, /--nope/);
  const env = await inProcess(['dlq', 'list'], { BLOCKFILL_API: 'not a url' });
  t.equal(env.code, 2);
  t.match(env.stderr, /BLOCKFILL_API must be an http\(s\) URL/);
  const config = await inProcess(['dlq', 'list'], { PORT: 'eighty' });
  t.equal(config.code, 2);
  t.match(config.stderr, /PORT="eighty": must be a whole number/);
});

t.test('publish and stream status against the real NATS and service', async (t) => {
  const { service, config } = await startTestService(t, { seed: smallSeed() });
  const env = {
    NATS_URL: config.natsServers.join(','),
    BLOCKFILL_NAMESPACE: config.namespace,
    PARTITIONS: String(config.partitions),
  };
  const dir = t.testdir();
  const file = join(dir, 'fills.jsonl');
  await writeFile(file, `${fill(1)}\n${fill(9, { price: 101.25 })}\n\n${fill(2)}\n`);

  const first = await cli(['publish', file, '--json'], env);
  t.equal(first.code, 1, 'exit 1: a line was invalid');
  const summary = JSON.parse(first.stdout) as Record<string, unknown>;
  t.match(summary, {
    linesRead: 4,
    published: 2,
    duplicates: 0,
    invalid: 1,
    failed: 0,
    stream: `${config.namespace}_EXECUTIONS`,
    invalidLines: [{ line: 2, field: 'price' }],
  });
  t.match(first.stderr, /line 2: invalid: price must be a decimal string/);

  const again = await cli(['publish', file, '--json', '--rate', '50'], env);
  t.equal(again.code, 1);
  t.match(JSON.parse(again.stdout), { published: 0, duplicates: 2, invalid: 1 });

  const order = await eventually('BUY1 with 2 fills', async () => {
    const view = await blockOrderView(service, 'BUY1');
    return view.fills === 2 && view.unconfirmedLines === 0 ? view : undefined;
  });
  t.equal(order.filledQuantity, '1000');

  const csv = join(dir, 'sells.csv');
  const header = 'blockOrderId,fillId,seq,quantity,price,venue,executedAtMs,kind';
  await writeFile(csv, `${header}\r\nSELL1,FS1,1,100,"101.50","XNYS",3000,\r\n`);
  const text = await cli(['publish', csv], env);
  t.equal(text.code, 0, text.stderr);
  t.match(text.stdout, /published: +1\n/);
  t.match(text.stdout, /duplicates: +0\n/);
  await eventually('SELL1 with 1 fill', async () =>
    (await blockOrderView(service, 'SELL1')).fills === 1 ? true : undefined,
  );

  const status = await cli(['stream', 'status', '--json'], env);
  t.equal(status.code, 0, status.stderr);
  const report = JSON.parse(status.stdout) as {
    streams: Array<{ name: string; role: string; messages: number; lastSeq: number }>;
    consumers: Array<{ name: string; pending: number; ackPending: number; lag: number }>;
    total: { lag: number };
  };
  t.match(report.streams, [
    { role: 'executions', name: `${config.namespace}_EXECUTIONS` },
    { role: 'dead-letter', name: `${config.namespace}_EXECUTIONS_DLQ` },
  ]);
  t.ok((report.streams[0]?.messages ?? 0) >= 3, 'the stream holds the 3 fills');
  t.same(
    report.consumers.map((c) => c.name),
    [`${config.namespace}_ALLOCATOR_P0`, `${config.namespace}_ALLOCATOR_P1`],
  );
  for (const c of report.consumers) t.equal(c.lag, c.pending + c.ackPending);
  t.equal(
    report.total.lag,
    report.consumers.reduce((n, c) => n + c.lag, 0),
  );
  const table = await cli(['stream', 'status'], env);
  t.equal(table.code, 0);
  t.match(table.stdout, /CONSUMER +PENDING +ACK PENDING +ACK FLOOR +DELIVERED +LAG/);
  t.match(table.stdout, /\nTOTAL /);
});

t.test('no stream or no NATS: exit 1 with a message saying what to do', async (t) => {
  const dir = t.testdir({ 'f.jsonl': `${fill(1)}\n` });
  const namespace = `T${uniqueSuffix()}`;
  const env = { BLOCKFILL_NAMESPACE: namespace, PARTITIONS: '2' };
  const status = await cli(['stream', 'status'], env);
  t.equal(status.code, 1);
  t.match(status.stderr, `stream ${namespace}_EXECUTIONS does not exist`);
  t.match(status.stderr, /start the service first/);
  const publish = await cli(['publish', join(dir, 'f.jsonl'), '--json'], env);
  t.equal(publish.code, 1);
  t.match(publish.stderr, `stream ${namespace}_EXECUTIONS does not exist`);
  t.match(JSON.parse(publish.stdout), { error: { code: 'STREAM_NOT_FOUND' } });
  const down = await cli(['stream', 'status'], { NATS_URL: 'nats://127.0.0.1:1' });
  t.equal(down.code, 1);
  t.match(down.stderr, /cannot reach NATS .*NATS_URL=nats:\/\/127\.0\.0\.1:1/);
});

// ---- API-backed commands against a stub of the REST contract ----

interface Recorded {
  method: string;
  path: string;
  query: Record<string, string>;
  authorization: string | undefined;
  body: unknown;
}

const deadLetter = (id: string, execution: Record<string, unknown> | null) => ({
  id,
  reason: 'INVALID_FIELD',
  field: execution ? 'price' : null,
  rule: execution ? 'must be positive' : null,
  detail: null,
  originalSubject: 'executions.0.BUY1',
  originalSequence: 12,
  deadLetteredAt: '2026-11-20T10:00:00.000Z',
  execution,
  bodyBase64: 'gqF2AQ==',
});

const DL1 = deadLetter('DL1', { fillId: 'F1', blockOrderId: 'BUY1', seq: 1 });
const DL2 = deadLetter('DL2', null);
const BATCH = {
  id: 'B1',
  batchNo: 1,
  closedAt: '2026-11-20T16:00:00.000Z',
  lines: 3,
  allocations: 3,
  checksumSha256: 'ab'.repeat(32),
  fileName: 'batch-000001.csv',
  fileKept: true,
};

type Reply = { status: number; json?: unknown; text?: string } | 'hang';

const notFound = (what: string): Reply => ({
  status: 404,
  json: { error: 'NOT_FOUND', message: `no ${what}`, statusCode: 404 },
});

function gets(path: string, query: Record<string, string>): Reply {
  if (path === '/api/v1/dead-letters') {
    if (query.reason === 'BAD')
      return {
        status: 400,
        json: {
          error: 'BAD_REQUEST',
          message: 'bad query',
          field: 'reason',
          rule: 'must be one of X',
          statusCode: 400,
        },
      };
    return query.cursor === 'c2'
      ? { status: 200, json: { items: [DL2], nextCursor: null } }
      : { status: 200, json: { items: [DL1], nextCursor: 'c2' } };
  }
  if (path === '/api/v1/dead-letters/DL1') return { status: 200, json: DL1 };
  if (path.startsWith('/api/v1/dead-letters/')) return notFound(`dead letter ${path.slice(21)}`);
  if (path === '/api/v1/actors')
    return {
      status: 200,
      json: {
        kinds: [
          {
            kind: 'account',
            live: 4,
            passivated: 0,
            stopped: 1,
            mailboxDepth: 0,
            mailboxDepthMax: 9,
            restarts: 2,
          },
        ],
      },
    };
  if (path === '/api/v1/actors/block-order/BUY%201')
    return {
      status: 200,
      json: {
        kind: 'block-order',
        id: 'BUY 1',
        state: 'LIVE',
        mailboxDepth: 0,
        stoppedReason: null,
        view: { fills: 2 },
      },
    };
  if (path === '/api/v1/bookings/batches/B1') return { status: 200, json: BATCH };
  if (path === '/api/v1/bookings/batches/B1/file')
    return { status: 200, text: 'accountId,quantity\nA1,"600"\n' };
  if (path === '/api/v1/reconciliation') return reconciliation(query.tradeDate);
  return notFound(path);
}

function reconciliation(tradeDate: string | undefined): Reply {
  if (tradeDate === '2026-11-20')
    return {
      status: 200,
      json: { tradeDate, clean: true, securities: [{ securityId: 'SEC1' }], breaks: [] },
    };
  return {
    status: 200,
    json: {
      tradeDate: null,
      clean: false,
      securities: [{ securityId: 'SEC1' }],
      breaks: [
        {
          kind: 'POSITION_MISMATCH',
          securityId: 'SEC1',
          detail: 'A1 holds 1600, journal says 1590',
          accounts: ['A1'],
          orders: ['BUY1'],
        },
      ],
    },
  };
}

function posts(path: string, body: unknown, state: { closes: number }): Reply {
  if (path === '/api/v1/dead-letters/DL1/replay')
    return {
      status: 200,
      json: { id: 'DL1', outcome: 'PUBLISHED', subject: 'executions.0.BUY1', streamSequence: 77 },
    };
  if (path === '/api/v1/actors/account/A1/restart')
    return { status: 200, json: { kind: 'account', id: 'A1', state: 'LIVE' } };
  if (path === '/api/v1/bookings/batches') {
    if (typeof (body as { cleanup?: unknown }).cleanup !== 'boolean')
      return {
        status: 400,
        json: { error: 'BAD_REQUEST', message: 'cleanup', field: 'cleanup', statusCode: 400 },
      };
    return state.closes++ === 0
      ? { status: 201, json: BATCH }
      : {
          status: 409,
          json: { error: 'NOTHING_TO_BOOK', message: 'no allocations to book', statusCode: 409 },
        };
  }
  return notFound(path);
}

async function startStub(t: Teardown) {
  const requests: Recorded[] = [];
  const state: { closes: number; next?: Reply } = { closes: 0 };
  const hanging: ServerResponse[] = [];
  const server = createServer(async (req: IncomingMessage, res: ServerResponse) => {
    let raw = '';
    for await (const chunk of req) raw += String(chunk);
    const url = new URL(req.url ?? '/', 'http://stub');
    const query = Object.fromEntries(url.searchParams);
    const body = raw === '' ? undefined : (JSON.parse(raw) as unknown);
    const method = req.method ?? 'GET';
    requests.push({
      method,
      path: url.pathname,
      query,
      authorization: req.headers.authorization,
      body,
    });
    const reply =
      state.next ??
      (method === 'POST' ? posts(url.pathname, body, state) : gets(url.pathname, query));
    delete state.next;
    if (reply === 'hang') return void hanging.push(res);
    const type = reply.text !== undefined ? 'text/csv' : 'application/json';
    res.writeHead(reply.status, { 'content-type': type });
    res.end(reply.text ?? JSON.stringify(reply.json));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(async () => {
    for (const res of hanging) res.destroy();
    server.closeAllConnections();
    server.close();
  });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { url, requests, state };
}

t.test('dlq list / show / replay over the REST contract', async (t) => {
  const stub = await startStub(t);
  const env = { BLOCKFILL_API: stub.url };

  const page = await inProcess(['dlq', 'list', '--reason', 'INVALID_FIELD', '--limit', '1'], env);
  t.equal(page.code, 0, page.stderr);
  t.match(
    page.stdout,
    /^ID +TIME +REASON +FIELD +ORDER\/FILL\nDL1 +2026-11-20T10:00:00.000Z +INVALID_FIELD +price +BUY1\/F1\n/,
  );
  t.match(page.stdout, /more: --cursor c2 \(or --all\)/);
  t.same(stub.requests.at(-1), {
    method: 'GET',
    path: '/api/v1/dead-letters',
    query: { reason: 'INVALID_FIELD', limit: '1' },
    authorization: undefined,
    body: undefined,
  });

  stub.requests.length = 0;
  const all = await inProcess(['dlq', 'list', '--all', '--limit', '1', '--json'], env);
  t.equal(all.code, 0);
  t.same(JSON.parse(all.stdout), { items: [DL1, DL2], nextCursor: null });
  t.same(
    stub.requests.map((r) => r.query),
    [{ limit: '1' }, { limit: '1', cursor: 'c2' }],
    'follows nextCursor until null',
  );

  const show = await inProcess(['dlq', 'show', 'DL1', '--json'], env);
  t.same(JSON.parse(show.stdout), DL1);
  const showText = await inProcess(['dlq', 'show', 'DL1'], env);
  t.match(showText.stdout, /reason: +INVALID_FIELD/);
  t.match(showText.stdout, /execution: +\{"fillId":"F1"/);

  const missing = await inProcess(['dlq', 'show', 'nope'], env);
  t.equal(missing.code, 1);
  t.match(missing.stderr, 'error: HTTP 404 NOT_FOUND: no dead letter nope');
  const bad = await inProcess(['dlq', 'list', '--reason', 'BAD'], env);
  t.equal(bad.code, 1);
  t.match(bad.stderr, 'HTTP 400 BAD_REQUEST: bad query (field reason: must be one of X)');

  const keyed = { ...env, API_KEY };
  stub.requests.length = 0;
  const replay = await inProcess(['dlq', 'replay', 'DL1'], keyed);
  t.equal(replay.code, 0, replay.stderr);
  t.match(replay.stdout, 'replayed DL1: PUBLISHED on executions.0.BUY1 (stream seq 77)');
  t.match(stub.requests[0], {
    method: 'POST',
    path: '/api/v1/dead-letters/DL1/replay',
    authorization: `Bearer ${API_KEY}`,
    body: {},
  });
  const execution = { fillId: 'F1', blockOrderId: 'BUY1', seq: 1, quantity: '5', price: '1.5' };
  const dir = t.testdir({ 'fixed.json': JSON.stringify(execution), 'bad.json': '{nope' });
  await inProcess(['dlq', 'replay', 'DL1', '--body', join(dir, 'fixed.json')], env);
  t.match(stub.requests[1], { body: { execution }, authorization: undefined }, 'no key, no header');
  const badBody = await inProcess(['dlq', 'replay', 'DL1', '--body', join(dir, 'bad.json')], env);
  t.equal(badBody.code, 2);
  t.match(badBody.stderr, /--body: .*bad.json is not JSON/);
});

t.test('actor, booking and reconcile over the REST contract', async (t) => {
  const stub = await startStub(t);
  const env = { BLOCKFILL_API: `${stub.url}/`, API_KEY };

  const actor = await inProcess(['actor', 'show', 'block-order', 'BUY 1'], env);
  t.equal(actor.code, 0, actor.stderr);
  t.match(actor.stdout, /state: +LIVE/);
  t.match(actor.stdout, /"fills": 2/);
  t.equal(stub.requests.at(-1)?.authorization, `Bearer ${API_KEY}`, 'the key on a GET too');
  const list = await inProcess(['actor', 'list'], env);
  t.match(
    list.stdout,
    /KIND +LIVE +PASSIVATED +STOPPED +MAILBOX +MAILBOX MAX +RESTARTS\naccount +4 +0 +1 +0 +9 +2/,
  );
  const restart = await inProcess(['actor', 'restart', 'account', 'A1', '--json'], env);
  t.same(JSON.parse(restart.stdout), { kind: 'account', id: 'A1', state: 'LIVE' });
  t.match(stub.requests.at(-1), {
    method: 'POST',
    path: '/api/v1/actors/account/A1/restart',
    authorization: `Bearer ${API_KEY}`,
  });

  const close = await inProcess(['booking', 'close', '--cleanup'], env);
  t.equal(close.code, 0, close.stderr);
  t.match(stub.requests.at(-1), { path: '/api/v1/bookings/batches', body: { cleanup: true } });
  for (const key of Object.keys(BATCH)) t.match(close.stdout, `${key}:`, `prints ${key}`);
  t.match(close.stdout, `checksumSha256: ${BATCH.checksumSha256}`);
  const empty = await inProcess(['booking', 'close', '--json'], env);
  t.equal(empty.code, 1);
  t.match(stub.requests.at(-1), { body: { cleanup: false } });
  t.match(
    empty.stderr,
    'nothing to book / a close is in progress: HTTP 409 NOTHING_TO_BOOK: no allocations to book',
  );
  t.match(JSON.parse(empty.stdout), { status: 409, error: { code: 'NOTHING_TO_BOOK' } });

  const show = await inProcess(['booking', 'show', 'B1', '--json'], env);
  t.same(JSON.parse(show.stdout), BATCH);
  const file = await inProcess(['booking', 'show', 'B1', '--csv'], env);
  t.equal(file.stdout, 'accountId,quantity\nA1,"600"\n');

  const clean = await inProcess(['reconcile', '--trade-date', '2026-11-20'], env);
  t.equal(clean.code, 0);
  t.match(clean.stdout, /^clean \(2026-11-20; 1 securities checked\)/);
  t.same(stub.requests.at(-1)?.query, { tradeDate: '2026-11-20' });
  const dirty = await inProcess(['reconcile'], env);
  t.equal(dirty.code, 3, 'breaks: exit 3');
  t.match(dirty.stdout, /NOT CLEAN: 1 break\(s\)/);
  t.match(
    dirty.stdout,
    /- POSITION_MISMATCH SEC1: A1 holds 1600, journal says 1590\n +accounts: A1; orders: BUY1/,
  );
  const dirtyJson = await cli(['reconcile', '--json'], env);
  t.equal(dirtyJson.code, 3, 'the process exits 3');
  t.match(JSON.parse(dirtyJson.stdout), { clean: false });
  const closeChild = await cli(['booking', 'close'], env);
  t.equal(closeChild.code, 1, 'a 409 exits the process with 1');
});

t.test('transport failures: unreachable, timeout, a non-JSON error body', async (t) => {
  const stub = await startStub(t);
  const closed = createServer();
  closed.listen(0, '127.0.0.1');
  await once(closed, 'listening');
  const port = (closed.address() as AddressInfo).port;
  closed.close();
  await once(closed, 'close');
  const down = await inProcess(['actor', 'list', '--api', `http://127.0.0.1:${port}`]);
  t.equal(down.code, 1);
  t.match(down.stderr, `cannot reach the API at http://127.0.0.1:${port} (ECONNREFUSED)`);

  const env = { BLOCKFILL_API: stub.url };
  stub.state.next = 'hang';
  const slow = await inProcess(['actor', 'show', 'account', 'x', '--timeout-ms', '200'], env);
  t.equal(slow.code, 1);
  t.match(slow.stderr, /no answer from .*\/api\/v1\/actors\/account\/x within 200 ms/);
  stub.state.next = { status: 500, text: 'upstream exploded' };
  const broken = await inProcess(['actor', 'list', '--json'], env);
  t.equal(broken.code, 1);
  t.match(broken.stderr, 'HTTP 500 HTTP_500: upstream exploded');
  t.match(JSON.parse(broken.stdout), { status: 500, error: { code: 'HTTP_500' } });
});

t.test('the API commands against the real service', async (t) => {
  const { service } = await startTestService(t, { seed: smallSeed() });
  await service.app.listen({ port: 0, host: '127.0.0.1' });
  const address = service.app.server.address() as { port: number };
  const env = { BLOCKFILL_API: `http://127.0.0.1:${address.port}` };
  const json = async (args: string[], code = 0) => {
    const run = await inProcess([...args, '--json'], env);
    t.equal(run.code, code, `${args.join(' ')}: exit ${code} ${run.stderr}`);
    return JSON.parse(run.stdout) as Record<string, unknown>;
  };
  t.match(await json(['booking', 'close'], 1), {
    status: 409,
    error: { code: 'BOOKING_EMPTY' },
  });
  await service.app.inject({
    method: 'POST',
    url: '/api/v1/executions',
    payload: [JSON.parse(fill(1)) as Record<string, unknown>],
  });
  await confirmedThrough(service, 'BUY1', 1);
  t.match(await json(['actor', 'show', 'block-order', 'BUY1']), {
    kind: 'block-order',
    id: 'BUY1',
    state: 'LIVE',
    view: { blockOrderId: 'BUY1', filledQuantity: '500' },
  });
  t.match(await json(['actor', 'list']), { kinds: [{ kind: 'account' }, { kind: 'block-order' }] });
  t.match(await json(['reconcile']), { clean: true, breaks: [] });
  const batch = await json(['booking', 'close']);
  t.match(batch, { id: 'BKG-0000000001', lineCount: 3 });
  const csv = await inProcess(['booking', 'show', 'BKG-0000000001', '--csv'], env);
  t.match(
    csv.stdout,
    /^portfolio_id,security_id,source_id,transaction_type,quantity,price,transaction_date\n/,
  );
  t.match(await json(['dlq', 'list']), { items: [], nextCursor: null });
  t.match(await json(['actor', 'restart', 'account', 'A1'], 1), {
    status: 409,
    error: { code: 'NOT_STOPPED' },
  });
});
