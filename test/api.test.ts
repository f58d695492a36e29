/**
 * Inspection API over app.inject, against an in-memory InspectionPort.
 * (End-to-end tests against the running system live elsewhere.)
 */
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { connect } from 'node:net';
import t from 'tap';
import { buildApp } from '../api/app.ts';
import { OPEN_SECURITY, type SecurityOptions } from '../api/plugins/security.ts';
import type { ErrorBody } from '../api/app.ts';
import {
  ActorStoppedError,
  ActorTimeoutError,
  InvariantError,
  MailboxFullError,
  ValidationError,
} from '../actors/errors.ts';
import type { AccountView, BlockOrderView } from '../actors/views.ts';
import {
  SuspenseNotAppliedError,
  type AccountEventsPage,
  type InspectionPort,
  type ConsumerStatsView,
  type Readiness,
  type SuspenseRetryResult,
} from '../api/ports.ts';

const ID_RULE = 'must match pattern "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"';

class InMemoryInspection implements InspectionPort {
  readonly accounts = new Map<string, AccountView>();
  readonly blockOrders = new Map<string, BlockOrderView>();
  state: Readiness = readiness(true);
  /** When set, every port call rejects with it. */
  failure: Error | undefined;
  readonly calls: string[] = [];

  async account(id: string): Promise<AccountView | undefined> {
    this.calls.push(`account:${id}`);
    if (this.failure) throw this.failure;
    return this.accounts.get(id);
  }

  async blockOrder(id: string): Promise<BlockOrderView | undefined> {
    this.calls.push(`blockOrder:${id}`);
    if (this.failure) throw this.failure;
    return this.blockOrders.get(id);
  }

  readonly events = new Map<string, AccountEventsPage['events']>();

  async accountEvents(id: string, after: number, limit: number) {
    this.calls.push(`accountEvents:${id}:${after}:${limit}`);
    if (this.failure) throw this.failure;
    const all = this.events.get(id);
    if (all === undefined) return undefined;
    const events = all.filter((e) => e.seq > after).slice(0, limit);
    return {
      accountId: id,
      events,
      nextAfter: events.length === limit ? events.at(-1)!.seq : null,
    };
  }

  async readiness(): Promise<Readiness> {
    this.calls.push('readiness');
    if (this.failure) throw this.failure;
    return this.state;
  }

  stats: ConsumerStatsView = {
    acked: 7,
    duplicates: 1,
    deadLettered: 2,
    conflicts: 1,
    nakked: 3,
    heldFills: 0,
  };

  consumerStats(): ConsumerStatsView {
    this.calls.push('consumerStats');
    return this.stats;
  }

  async retrySuspense(
    accountId: string,
    blockOrderId: string,
    fillSeq: number,
  ): Promise<SuspenseRetryResult | undefined> {
    this.calls.push(`retrySuspense:${accountId}:${blockOrderId}:${fillSeq}`);
    if (this.failure) throw this.failure;
    if (!this.accounts.has(accountId)) return undefined;
    if (fillSeq === 2) throw new SuspenseNotAppliedError('STILL_REFUSED', 'holds 0, sells 100');
    if (fillSeq !== 1) throw new SuspenseNotAppliedError('NOT_IN_SUSPENSE', 'not in suspense');
    return { outcome: 'APPLIED', accountId, blockOrderId, fillSeq, cashDeltaMinor: '1012500' };
  }
}

function readiness(ready: boolean): Readiness {
  return {
    ready,
    checks: {
      database: { ok: true },
      nats: ready ? { ok: true } : { ok: false, detail: 'connection refused' },
      consumer: { ok: ready },
    },
    stoppedActors: ready ? [] : ['/api/v1/accounts/ACC-7'],
  };
}

const account: AccountView = {
  accountId: 'ACC-1',
  opened: true,
  // Beyond Number.MAX_SAFE_INTEGER: any float round trip would change the digits.
  cashMinor: '-123456789012345678901234567',
  positions: { US0378331005: '9007199254740993', 'SEC.B': '0' },
  lastAppliedSeqByOrder: { 'BO-1': 42 },
  rejectedAllocations: 1,
  negativePositionFlags: 0,
  suspense: [
    {
      blockOrderId: 'BO-1',
      fillSeq: 2,
      accountId: 'ACC-1',
      securityId: 'US0378331005',
      side: 'SELL',
      quantity: '100',
      price: '10.125000',
      reason: 'INSUFFICIENT_POSITION',
      detail: 'holds 0, sells 100',
      resolution: null,
    },
  ],
  suspenseOpen: 1,
  journalSeq: 17,
};

const filledOrder: BlockOrderView = {
  blockOrderId: 'BO-1',
  securityId: 'US0378331005',
  side: 'BUY',
  tradeDate: '2025-03-14',
  lotSize: '100',
  status: 'PARTIALLY_FILLED',
  targetQuantity: '90071992547409930',
  filledQuantity: '9007199254740993',
  fills: 3,
  busts: 0,
  corrections: 0,
  cancelledQuantity: null,
  lastFillSeq: 3,
  vwapPrice: '187123456789.012345',
  accounts: [
    {
      accountId: 'ACC-1',
      targetQuantity: '60071992547409930',
      allocatedQuantity: '6007199254740993',
    },
    {
      accountId: 'ACC-2',
      targetQuantity: '30000000000000000',
      allocatedQuantity: '3000000000000000',
    },
  ],
  confirmedThroughSeq: 2,
  unconfirmedLines: 2,
  journalSeq: 9,
  suspense: {
    openLines: 1,
    openQuantity: '100',
    resolvedLines: 0,
    resolvedQuantity: '0',
    lines: [{ ...account.suspense[0]!, blockOrderId: 'BO-1' }],
  },
  allocationPolicy: 'AVERAGE_PRICE',
  average: {
    releaseEveryFills: 10,
    releaseEveryMarketMs: null,
    releases: 1,
    releasedQuantity: '9007199254740000',
    accumulatedQuantity: '993',
    accumulatedFills: 2,
    residueMinor: '-3',
  },
};

const newOrder: BlockOrderView = {
  ...filledOrder,
  blockOrderId: 'BO-2',
  side: 'SELL',
  status: 'NEW',
  filledQuantity: '0',
  fills: 0,
  lastFillSeq: 0,
  vwapPrice: null,
  accounts: [],
  confirmedThroughSeq: 0,
  unconfirmedLines: 0,
  journalSeq: 0,
  allocationPolicy: 'PRO_RATA',
  average: null,
};

async function setup(t: { teardown(fn: () => unknown): void }, logLines?: string[]) {
  const port = new InMemoryInspection();
  port.accounts.set(account.accountId, account);
  port.blockOrders.set(filledOrder.blockOrderId, filledOrder);
  port.blockOrders.set(newOrder.blockOrderId, newOrder);
  const logger = logLines
    ? { level: 'info', stream: { write: (line: string) => void logLines.push(line) } }
    : false;
  const app = await buildApp({ inspection: port }, { logger });
  t.teardown(() => app.close());
  return { app, port };
}

/** Parses an error reply, failing the test unless it is declared and valid JSON. */
function errorBody(res: { headers: Record<string, unknown>; body: string }): ErrorBody {
  assert.match(String(res.headers['content-type']), /^application\/json/);
  return JSON.parse(res.body) as ErrorBody;
}

t.test('GET /accounts/:id returns the view, exact integer strings intact', async (t) => {
  const { app, port } = await setup(t);
  const res = await app.inject({ method: 'GET', url: '/api/v1/accounts/ACC-1' });
  t.equal(res.statusCode, 200);
  t.match(res.headers['content-type'], /^application\/json/);
  t.same(res.json(), account);
  t.ok(res.body.includes('"cashMinor":"-123456789012345678901234567"'), 'cash is a JSON string');
  t.ok(res.body.includes('"US0378331005":"9007199254740993"'), 'position is a JSON string');
  t.same(port.calls, ['account:ACC-1']);
});

t.test('GET /block-orders/:id returns the view, with and without a VWAP', async (t) => {
  const { app } = await setup(t);
  const filled = await app.inject({ method: 'GET', url: '/api/v1/block-orders/BO-1' });
  t.equal(filled.statusCode, 200);
  t.same(filled.json(), filledOrder);
  t.ok(filled.body.includes('"vwapPrice":"187123456789.012345"'));
  t.ok(filled.body.includes('"allocatedQuantity":"6007199254740993"'));

  const fresh = await app.inject({ method: 'GET', url: '/api/v1/block-orders/BO-2' });
  t.equal(fresh.statusCode, 200);
  t.same(fresh.json(), newOrder);
  t.ok(fresh.body.includes('"vwapPrice":null'));
});

t.test('response schemas drop properties the views do not declare', async (t) => {
  const { app, port } = await setup(t);
  port.accounts.set('LEAKY', {
    ...account,
    accountId: 'LEAKY',
    internalMailbox: ['secret'],
  } as AccountView);
  port.blockOrders.set('LEAKY', {
    ...filledOrder,
    blockOrderId: 'LEAKY',
    accounts: [
      { ...filledOrder.accounts[0]!, password: 'hunter2' } as BlockOrderView['accounts'][0],
    ],
  });
  const a = await app.inject({ method: 'GET', url: '/api/v1/accounts/LEAKY' });
  t.equal(a.statusCode, 200);
  t.notOk(a.body.includes('internalMailbox'));
  const b = await app.inject({ method: 'GET', url: '/api/v1/block-orders/LEAKY' });
  t.equal(b.statusCode, 200);
  t.notOk(b.body.includes('hunter2'));
  t.same(b.json().accounts, [filledOrder.accounts[0]]);
});

t.test('unknown ids are 404 with a JSON body', async (t) => {
  const { app, port } = await setup(t);
  for (const [url, kind] of [
    ['/api/v1/accounts/NOPE', 'account'],
    ['/api/v1/block-orders/NOPE', 'block order'],
  ] as const) {
    const res = await app.inject({ method: 'GET', url });
    t.equal(res.statusCode, 404, url);
    t.same(errorBody(res), {
      error: 'NOT_FOUND',
      message: `${kind} NOPE not found`,
      statusCode: 404,
    });
  }
  t.same(port.calls, ['account:NOPE', 'blockOrder:NOPE'], 'the port was asked');
});

t.test(
  'malformed ids are 400 naming field "id" and the rule; the port is not called',
  async (t) => {
    const { app, port } = await setup(t);
    const cases = [
      encodeURIComponent('bad id!'),
      'a'.repeat(65),
      '.hidden',
      encodeURIComponent('a/b'),
    ];
    for (const prefix of ['/api/v1/accounts/', '/api/v1/block-orders/']) {
      for (const id of cases) {
        const res = await app.inject({ method: 'GET', url: prefix + id });
        t.equal(res.statusCode, 400, prefix + id);
        const body = errorBody(res);
        t.equal(body.error, 'BAD_REQUEST');
        t.equal(body.field, 'id');
        t.equal(body.rule, ID_RULE);
        t.ok(body.message.includes('"id"') && body.message.includes(ID_RULE), body.message);
        t.equal(body.statusCode, 400);
      }
    }
    t.same(port.calls, []);
  },
);

t.test('an id of exactly 64 characters is accepted', async (t) => {
  const { app, port } = await setup(t);
  const id = 'A' + 'b'.repeat(63);
  const res = await app.inject({ method: 'GET', url: `/api/v1/accounts/${id}` });
  t.equal(res.statusCode, 404);
  t.same(port.calls, [`account:${id}`]);
});

t.test('router errors (absurdly long parameter) still get the JSON error body', async (t) => {
  const { app, port } = await setup(t);
  const id = 'a'.repeat(300);
  const res = await app.inject({ method: 'GET', url: `/api/v1/accounts/${id}` });
  t.equal(res.statusCode, 414);
  t.same(errorBody(res), { error: 'URI_TOO_LONG', message: 'URI Too Long', statusCode: 414 });
  t.same(port.calls, []);
});

t.test('a ValidationError from the port is 400 with its field and rule', async (t) => {
  const { app, port } = await setup(t);
  port.failure = new ValidationError('tradeDate', 'must be an ISO date');
  const res = await app.inject({ method: 'GET', url: '/api/v1/block-orders/BO-1' });
  t.equal(res.statusCode, 400);
  t.same(errorBody(res), {
    error: 'BAD_REQUEST',
    message: 'tradeDate: must be an ISO date',
    field: 'tradeDate',
    rule: 'must be an ISO date',
    statusCode: 400,
  });
});

t.test('unavailable actors are 503 with their (safe) message', async (t) => {
  const { app, port } = await setup(t);
  for (const failure of [
    new ActorTimeoutError('/api/v1/accounts/ACC-1', 500),
    new ActorStoppedError('/api/v1/accounts/ACC-1'),
    new MailboxFullError('/api/v1/accounts/ACC-1', 1000),
  ]) {
    port.failure = failure;
    const res = await app.inject({ method: 'GET', url: '/api/v1/accounts/ACC-1' });
    t.equal(res.statusCode, 503, failure.name);
    t.same(errorBody(res), {
      error: failure.code,
      message: failure.message,
      statusCode: 503,
    });
  }
});

t.test('other errors are 500 without details, and the real error is logged', async (t) => {
  const logLines: string[] = [];
  const { app, port } = await setup(t, logLines);
  for (const failure of [
    new Error('connect ECONNREFUSED postgres://blockfill:s3cret@db'),
    new InvariantError('allocated 7 > target 5 for BO-1/s3cret'),
  ]) {
    port.failure = failure;
    logLines.length = 0;
    const res = await app.inject({ method: 'GET', url: '/api/v1/block-orders/BO-1' });
    t.equal(res.statusCode, 500, failure.name);
    t.same(errorBody(res), { error: 'INTERNAL', message: 'internal error', statusCode: 500 });
    t.notOk(res.body.includes('s3cret'), 'no detail in the body');
    const logged = logLines.map(
      (l) => JSON.parse(l) as { level: number; err?: { message?: string } },
    );
    t.ok(
      logged.some((l) => l.level === 50 && l.err?.message === failure.message),
      'logged at error level with the real message',
    );
  }
});

t.test('GET /healthz is 200 without touching the port', async (t) => {
  const { app, port } = await setup(t);
  port.failure = new ActorTimeoutError('/system', 1);
  port.state = readiness(false);
  const res = await app.inject({ method: 'GET', url: '/healthz' });
  t.equal(res.statusCode, 200);
  t.same(res.json(), { status: 'ok' });
  t.same(port.calls, []);
});

t.test('GET /readyz is 200 when ready, 503 with the same body when not', async (t) => {
  const { app, port } = await setup(t);
  const ok = await app.inject({ method: 'GET', url: '/readyz' });
  t.equal(ok.statusCode, 200);
  t.same(ok.json(), readiness(true));

  port.state = readiness(false);
  const notReady = await app.inject({ method: 'GET', url: '/readyz' });
  t.equal(notReady.statusCode, 503);
  t.match(notReady.headers['content-type'], /^application\/json/);
  t.same(notReady.json(), readiness(false));
});

t.test('GET /consumer/stats: the counters, exactly as the port has them', async (t) => {
  const { app, port } = await setup(t);
  const res = await app.inject({ method: 'GET', url: '/api/v1/consumer/stats' });
  t.equal(res.statusCode, 200);
  t.same(res.json(), port.stats);
  port.stats = { ...port.stats, conflicts: 2, deadLettered: 3 };
  t.same((await app.inject({ method: 'GET', url: '/api/v1/consumer/stats' })).json(), port.stats);
  t.same(port.calls, ['consumerStats', 'consumerStats']);
});

t.test('GET /readyz when readiness itself fails: 503 error body, not a Readiness', async (t) => {
  const { app, port } = await setup(t);
  port.failure = new ActorTimeoutError('/system/readiness', 200);
  const res = await app.inject({ method: 'GET', url: '/readyz' });
  t.equal(res.statusCode, 503);
  t.same(errorBody(res), {
    error: 'ACTOR_TIMEOUT',
    message: port.failure.message,
    statusCode: 503,
  });
});

t.test('unknown routes are 404 with a JSON body', async (t) => {
  const { app, port } = await setup(t);
  for (const [method, url] of [
    ['GET', '/nope'],
    ['GET', '/accounts'],
    ['DELETE', '/api/v1/accounts/ACC-1/extra'],
  ] as const) {
    const res = await app.inject({ method, url });
    t.equal(res.statusCode, 404, `${method} ${url}`);
    t.same(errorBody(res), {
      error: 'NOT_FOUND',
      message: `route ${method} ${url} not found`,
      statusCode: 404,
    });
  }
  t.same(port.calls, []);
});

t.test('a malformed JSON body is 400 with a JSON body', async (t) => {
  const { app } = await setup(t);
  // The API has no body routes; add one to exercise the root error handler.
  app.post('/probe', async () => ({ reached: true }));
  const res = await app.inject({
    method: 'POST',
    url: '/probe',
    headers: { 'content-type': 'application/json' },
    payload: '{"not": json',
  });
  t.equal(res.statusCode, 400);
  const body = errorBody(res);
  t.equal(body.error, 'BAD_REQUEST');
  t.equal(body.statusCode, 400);
  t.match(body.message, /not valid JSON/);
});

t.test(
  'POST suspense retry: 200 applied, 409 still refused, 404 not in suspense or no account',
  async (t) => {
    const { app, port } = await setup(t);
    const url = (account: string, seq: string) =>
      `/api/v1/accounts/${account}/suspense/BO-1/${seq}/retry`;
    const ok = await app.inject({ method: 'POST', url: url('ACC-1', '1') });
    t.equal(ok.statusCode, 200);
    t.strictSame(ok.json(), {
      outcome: 'APPLIED',
      accountId: 'ACC-1',
      blockOrderId: 'BO-1',
      fillSeq: 1,
      cashDeltaMinor: '1012500',
    });
    const refused = await app.inject({ method: 'POST', url: url('ACC-1', '2') });
    t.equal(refused.statusCode, 409);
    t.match(refused.json(), { error: 'STILL_REFUSED', message: /holds 0/, statusCode: 409 });
    const absent = await app.inject({ method: 'POST', url: url('ACC-1', '3') });
    t.equal(absent.statusCode, 404);
    t.match(absent.json(), { error: 'NOT_IN_SUSPENSE' });
    const noAccount = await app.inject({ method: 'POST', url: url('ACC-9', '1') });
    t.equal(noAccount.statusCode, 404);
    t.match(noAccount.json(), { message: 'account ACC-9 not found' });
    for (const bad of ['0', '-1', 'x', '1.5', '1234567890123456']) {
      const res = await app.inject({ method: 'POST', url: url('ACC-1', bad) });
      t.equal(res.statusCode, 400, `fillSeq ${bad}`);
      t.match(res.json(), { field: 'fillSeq' });
    }
    t.equal(port.calls.filter((c) => c.startsWith('retrySuspense')).length, 4);
  },
);

// ------------------------------------------------------------- HTTP conventions

t.test('a known path with another method is 405 with Allow, not 404', async (t) => {
  const { app, port } = await setup(t);
  for (const [method, url, allow] of [
    ['DELETE', '/api/v1/accounts/ACC-1', 'GET, HEAD'],
    ['POST', '/api/v1/block-orders/BO-1?x=1', 'GET, HEAD'],
    ['GET', '/api/v1/accounts/ACC-1/suspense/BO-1/1/retry', 'POST'],
    ['PUT', '/healthz', 'GET, HEAD'],
  ] as const) {
    const res = await app.inject({ method, url });
    t.equal(res.statusCode, 405, `${method} ${url}`);
    t.equal(res.headers.allow, allow);
    const body = errorBody(res);
    t.equal(body.error, 'METHOD_NOT_ALLOWED');
    t.match(
      body.message,
      new RegExp(`^method ${method} not allowed on /[^?]*; allowed: ${allow}$`),
    );
  }
  t.same(port.calls, [], 'no actor was asked');
});

t.test('an error repeats at most a short prefix of the URL', async (t) => {
  const { app } = await setup(t);
  const url = `/nope/${'x'.repeat(9_000)}`;
  const res = await app.inject({ method: 'GET', url });
  t.equal(res.statusCode, 404);
  const body = errorBody(res);
  t.ok(res.body.length < 300, `a ${res.body.length}-byte body for a 9 kB URL`);
  t.match(body.message, /^route GET \/nope\/x+… not found$/);
  const long = await app.inject({ method: 'DELETE', url: `/api/v1/accounts/${'y'.repeat(200)}` });
  t.equal(long.statusCode, 405);
  t.ok(long.body.length < 300, 'the 405 too');
});

t.test('every 503 says when to retry', async (t) => {
  const { app, port } = await setup(t);
  port.failure = new ActorTimeoutError('account/ACC-1', 10_000);
  const busy = await app.inject({ method: 'GET', url: '/api/v1/accounts/ACC-1' });
  t.equal(busy.statusCode, 503);
  t.equal(busy.headers['retry-after'], '1', 'an actor busy: a second');
  port.failure = undefined;
  port.state = readiness(false);
  const notReady = await app.inject({ method: 'GET', url: '/readyz' });
  t.equal(notReady.statusCode, 503);
  t.equal(notReady.headers['retry-after'], '5', 'not ready: a few seconds');
  port.state = readiness(true);
  const ready = await app.inject({ method: 'GET', url: '/readyz' });
  t.equal(ready.statusCode, 200);
  t.notOk(ready.headers['retry-after'], 'none when ready');
});

t.test('X-Request-Id: the client’s when sane, else generated; returned and logged', async (t) => {
  const logLines: string[] = [];
  const { app } = await setup(t, logLines);
  const given = await app.inject({
    method: 'GET',
    url: '/api/v1/accounts/ACC-1',
    headers: { 'x-request-id': 'trace-42.a:b' },
  });
  t.equal(given.headers['x-request-id'], 'trace-42.a:b');
  const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
  for (const bad of ['has space', 'x'.repeat(129), 'new\nline']) {
    const res = await app.inject({
      method: 'GET',
      url: '/healthz',
      headers: { 'x-request-id': bad },
    });
    t.match(res.headers['x-request-id'], uuid, `not kept: ${JSON.stringify(bad.slice(0, 12))}`);
  }
  const none = await app.inject({ method: 'GET', url: '/nope' });
  t.match(none.headers['x-request-id'], uuid, 'generated, on an error too');
  const logged = logLines.map((l) => JSON.parse(l) as { reqId?: string });
  t.ok(
    logged.some((l) => l.reqId === 'trace-42.a:b'),
    'the logs carry the client’s id',
  );
});

t.test('parser errors (431, malformed request) get the one JSON error body', async (t) => {
  const { app } = await setup(t);
  await app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = app.server.address() as AddressInfo;
  const raw = (request: string) =>
    new Promise<string>((resolve, reject) => {
      const socket = connect(port, '127.0.0.1', () => socket.end(request));
      let reply = '';
      socket.on('data', (chunk) => (reply += chunk.toString('utf8')));
      socket.on('close', () => resolve(reply));
      socket.on('error', reject);
    });
  const big = await raw(`GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`);
  t.match(big, /^HTTP\/1\.1 431 /);
  t.same(JSON.parse(big.slice(big.indexOf('\r\n\r\n') + 4)), {
    error: 'REQUEST_HEADER_FIELDS_TOO_LARGE',
    message: 'Request Header Fields Too Large',
    statusCode: 431,
  });
  const garbage = await raw('NOT HTTP AT ALL\r\n\r\n');
  t.match(garbage, /^HTTP\/1\.1 400 /);
  t.match(JSON.parse(garbage.slice(garbage.indexOf('\r\n\r\n') + 4)), {
    error: 'BAD_REQUEST',
    statusCode: 400,
  });
});

t.test(
  'OpenAPI 3 from the route schemas, and Swagger UI at /docs with nothing to fetch',
  async (t) => {
    const { app, port } = await setup(t);
    const res = await app.inject({ method: 'GET', url: '/docs/json' });
    t.equal(res.statusCode, 200);
    const spec = res.json() as {
      openapi: string;
      info: { title: string };
      paths: Record<
        string,
        Record<string, { parameters?: Array<{ name: string }>; responses: Record<string, unknown> }>
      >;
    };
    t.match(spec.openapi, /^3\./);
    t.equal(spec.info.title, 'blockfill');
    const account = spec.paths['/api/v1/accounts/{id}']?.get;
    t.ok(account, 'GET /accounts/{id} is documented');
    t.same(
      account?.parameters?.map((p) => p.name),
      ['id'],
    );
    t.ok(account?.responses['200'], 'with its 200 schema');
    t.ok(spec.paths['/api/v1/block-orders/{id}']?.get, 'GET /block-orders/{id}');
    t.ok(
      spec.paths['/api/v1/accounts/{id}/suspense/{blockOrderId}/{fillSeq}/retry']?.post,
      'the retry',
    );
    t.ok(spec.paths['/readyz']?.get);
    const page = await app.inject({ method: 'GET', url: '/docs/' });
    t.equal(page.statusCode, 200);
    const csp = String(page.headers['content-security-policy']);
    t.match(csp, /default-src 'self'/, 'a CSP');
    t.notMatch(csp, /upgrade-insecure-requests/, 'no https upgrade: the API speaks plain HTTP');
    t.match(page.headers['content-type'], /text\/html/);
    // Every script and stylesheet the page loads is served here: no network needed.
    const assets = [...page.body.matchAll(/(?:src|href)="\.?\/?([^"]+\.(?:js|css))"/g)].map(
      (m) => m[1]!,
    );
    t.ok(assets.length >= 2, `assets: ${assets.join(', ')}`);
    for (const asset of assets) {
      t.notMatch(asset, /^https?:/, `${asset} is local`);
      const got = await app.inject({ method: 'GET', url: `/docs/${asset.replace(/^\.?\//, '')}` });
      t.equal(got.statusCode, 200, `/docs/${asset}`);
    }
    t.same(port.calls, []);
  },
);

// ------------------------------------------------------------------- security

async function secured(t: { teardown(fn: () => unknown): void }, security: SecurityOptions) {
  const port = new InMemoryInspection();
  port.accounts.set(account.accountId, account);
  const app = await buildApp({ inspection: port }, { security });
  t.teardown(() => app.close());
  return { app, port };
}

const KEY = 'k3y-for-tests-0123456789';

t.test('an API key guards the mutating routes: 401 without it, in the one shape', async (t) => {
  const { app } = await secured(t, { ...OPEN_SECURITY, apiKey: KEY });
  const url = '/api/v1/accounts/ACC-1/suspense/BO-1/1/retry';
  const none = await app.inject({ method: 'POST', url });
  t.equal(none.statusCode, 401);
  t.equal(none.headers['www-authenticate'], 'Bearer realm="blockfill"');
  t.same(errorBody(none), {
    error: 'UNAUTHORIZED',
    message: 'an API key is required',
    statusCode: 401,
  });
  const wrong = await app.inject({ method: 'POST', url, headers: { 'x-api-key': 'nope' } });
  t.equal(wrong.statusCode, 401);
  t.match(errorBody(wrong).message, /wrong/);
  const bearer = await app.inject({
    method: 'POST',
    url,
    headers: { authorization: `Bearer ${KEY}` },
  });
  t.equal(bearer.statusCode, 200, 'Bearer');
  const header = await app.inject({ method: 'POST', url, headers: { 'x-api-key': KEY } });
  t.equal(header.statusCode, 200, 'X-Api-Key');
  const read = await app.inject({ method: 'GET', url: '/api/v1/accounts/ACC-1' });
  t.equal(read.statusCode, 200, 'reads need no key');
  const faults = await app.inject({ method: 'DELETE', url: '/faults' });
  t.equal(faults.statusCode, 401, 'fault injection is mutating too');
});

t.test('API_KEY_READS: the key guards the reads of client data too, not the probes', async (t) => {
  const { app } = await secured(t, { ...OPEN_SECURITY, apiKey: KEY, protectReads: true });
  const get = (url: string, headers: Record<string, string> = {}) =>
    app.inject({ method: 'GET', url, headers });
  t.equal((await get('/api/v1/accounts/ACC-1')).statusCode, 401, 'a read without the key');
  t.equal((await get('/accounts/ACC-1')).statusCode, 401, 'its unversioned path too');
  t.equal((await get('/api/v1/accounts/ACC-1', { 'x-api-key': KEY })).statusCode, 200);
  for (const open of ['/healthz', '/readyz', '/docs/json'])
    t.equal((await get(open)).statusCode, 200, `${open} stays open`);
});

t.test('CORS only for the configured origins', async (t) => {
  const { app } = await secured(t, { ...OPEN_SECURITY, corsOrigins: ['https://ops.example.com'] });
  const allowed = await app.inject({
    method: 'GET',
    url: '/healthz',
    headers: { origin: 'https://ops.example.com' },
  });
  t.equal(allowed.headers['access-control-allow-origin'], 'https://ops.example.com');
  const other = await app.inject({
    method: 'GET',
    url: '/healthz',
    headers: { origin: 'https://evil.example.com' },
  });
  t.notOk(other.headers['access-control-allow-origin'], 'no header for another origin');
  const { app: closed } = await secured(t, OPEN_SECURITY);
  const none = await closed.inject({
    method: 'GET',
    url: '/healthz',
    headers: { origin: 'https://ops.example.com' },
  });
  t.notOk(none.headers['access-control-allow-origin'], 'none configured: none allowed');
});

t.test('a rate limit answers 429 with Retry-After, in the one shape', async (t) => {
  const { app } = await secured(t, { ...OPEN_SECURITY, rateLimitPerMinute: 3 });
  const codes: number[] = [];
  let last;
  for (let i = 0; i < 4; i++) {
    last = await app.inject({ method: 'GET', url: '/api/v1/accounts/ACC-1' });
    codes.push(last.statusCode);
  }
  t.same(codes, [200, 200, 200, 429]);
  t.ok(Number(last?.headers['retry-after']) > 0, 'Retry-After');
  t.match(JSON.parse(last?.body ?? '{}'), {
    error: 'TOO_MANY_REQUESTS',
    statusCode: 429,
    message: /more than 3 requests a minute/,
  });
});

t.test(
  'GET /accounts/:id/events: a page of the journal; bad query named; unknown 404',
  async (t) => {
    const { app, port } = await setup(t);
    const event = (seq: number) => ({
      seq,
      type: 'AllocationApplied',
      at: '2026-11-24T00:00:00.000Z',
      event: { type: 'AllocationApplied', quantity: '300', price: '101250000' },
    });
    port.events.set('ACC-1', [event(1), event(2), event(3)]);
    const first = await app.inject({ method: 'GET', url: '/api/v1/accounts/ACC-1/events?limit=2' });
    t.equal(first.statusCode, 200);
    t.same(first.json(), { accountId: 'ACC-1', events: [event(1), event(2)], nextAfter: 2 });
    const next = await app.inject({
      method: 'GET',
      url: '/api/v1/accounts/ACC-1/events?after=2&limit=2',
    });
    t.same(next.json(), { accountId: 'ACC-1', events: [event(3)], nextAfter: null });
    const byDefault = await app.inject({ method: 'GET', url: '/api/v1/accounts/ACC-1/events' });
    t.equal(byDefault.json<AccountEventsPage>().events.length, 3);
    t.ok(port.calls.includes('accountEvents:ACC-1:0:100'), 'after 0, 100 by default');
    for (const [query, field] of [
      ['limit=0', 'limit'],
      ['limit=501', 'limit'],
      ['limit=x', 'limit'],
      ['after=-1', 'after'],
      ['after=1.5', 'after'],
      ['cursor=abc', 'cursor'],
    ] as const) {
      const res = await app.inject({
        method: 'GET',
        url: `/api/v1/accounts/ACC-1/events?${query}`,
      });
      t.equal(res.statusCode, 400, query);
      t.equal(errorBody(res).field, field, `${query} names ${field}`);
    }
    const unknown = await app.inject({ method: 'GET', url: '/api/v1/accounts/ACC-9/events' });
    t.equal(unknown.statusCode, 404);
  },
);
