/**
 * The operations API on a real service (PostgreSQL, JetStream): intake,
 * block-order lists with cursors, an order's status, a fill's history, a
 * portfolio report, dead letters and their replay, actor management.
 */
import t from 'tap';
import { fillSubject } from '../system/fill-wire.ts';
import { packWire } from '../system/wire-codec.ts';
import { streamNames } from '../system/config.ts';
import { confirmedThrough, eventually, smallSeed, startTestService } from './helpers/harness.ts';

const fill = (fillId: string, seq: number, quantity: string, price: string) => ({
  fillId,
  blockOrderId: 'BUY1',
  seq,
  quantity,
  price,
  venue: 'XNYS',
  executedAtMs: 1_790_000_000_000 + seq * 1_000,
});

type Json = Record<string, unknown>;

t.test('intake, status, a fill and its bust, a report, lists', async (t) => {
  const { service } = await startTestService(t, { seed: smallSeed() });
  const inject = async (method: 'GET' | 'POST', url: string, payload?: unknown) => {
    const res = await service.app.inject({
      method,
      url,
      ...(payload === undefined ? {} : { payload: payload as Json }),
    });
    return { status: res.statusCode, body: res.json<Json>() };
  };

  const bad = { ...fill('F3', 3, '100', '1.5'), quantity: 1.5 };
  const first = await inject('POST', '/api/v1/executions', [
    fill('F1', 1, '500', '101.25'),
    fill('F2', 2, '500', '101.75'),
    bad,
    { ...fill('F4', 4, '10', '1'), colour: 'red' },
  ]);
  t.equal(first.status, 200);
  t.match(first.body, { created: 2, duplicates: 0, errors: 2 });
  const items = first.body.items as Json[];
  t.match(items[2], { index: 2, status: 'ERROR', field: 'quantity' });
  t.match(items[3], { index: 3, status: 'ERROR', field: 'colour', rule: 'is not a known field' });
  t.ok((items[0]?.streamSequence as number) > 0, 'acknowledged by JetStream: a stream sequence');

  const again = await inject('POST', '/api/v1/executions', [fill('F1', 1, '500', '101.25')]);
  t.match(again.body, { created: 0, duplicates: 1, errors: 0 }, 'a re-send is a duplicate');
  const tooMany = await inject(
    'POST',
    '/api/v1/executions',
    Array.from({ length: 101 }, (_, i) => fill(`X${i}`, i + 1, '10', '1')),
  );
  t.equal(tooMany.status, 400, 'more than 100 items');
  t.match(tooMany.body, { error: 'BAD_REQUEST', field: 'body' });

  await confirmedThrough(service, 'BUY1', 2);
  const bust = {
    kind: 'BUST',
    amendmentId: 'B1',
    blockOrderId: 'BUY1',
    seq: 3,
    fillId: 'F2',
    executedAtMs: 1_790_000_009_000,
  };
  t.match((await inject('POST', '/api/v1/executions', [bust])).body, { created: 1 });
  await confirmedThrough(service, 'BUY1', 3);

  const status = await inject('GET', '/api/v1/execution/BUY1/status');
  t.equal(status.status, 200);
  t.match(status.body, {
    orderId: 'BUY1',
    status: 'PARTIALLY_FILLED',
    filledQuantity: '500',
    remainingQuantity: '500',
    vwapPrice: '101.250000',
    fills: 2,
    busts: 1,
    lastExecutionAt: new Date(1_790_000_009_000).toISOString(),
  });
  t.ok(
    Date.parse(String(status.body.lastUpdate)) > 0,
    'last update: when its last event became durable',
  );
  t.equal((await inject('GET', '/api/v1/execution/NOPE/status')).status, 404);

  const f2 = await inject('GET', '/api/v1/execution/fills/F2');
  t.equal(f2.status, 200);
  t.match(f2.body, {
    fillId: 'F2',
    blockOrderId: 'BUY1',
    securityId: 'SEC1',
    current: { quantity: '0', busted: true },
  });
  const history = f2.body.history as Array<{ kind: string; lines: Json[] }>;
  t.same(
    history.map((h) => h.kind),
    ['FILL', 'BUST'],
  );
  t.same(history[0]?.lines, [
    { accountId: 'A1', quantity: '300' },
    { accountId: 'A2', quantity: '150' },
    { accountId: 'A3', quantity: '50' },
  ]);
  t.match(history[1]?.lines, [{ accountId: 'A1', quantity: '0', previousQuantity: '300' }]);
  t.equal((await inject('GET', '/api/v1/execution/fills/NOPE')).status, 404);

  const report = await inject(
    'GET',
    '/api/v1/execution/reports/A1?start_date=2026-09-21&end_date=2026-09-21',
  );
  t.equal(report.status, 200);
  t.same(
    (report.body.allocations as Json[]).map((a) => [a.fillSeq, a.type, a.quantity, a.price]),
    [
      [1, 'ALLOCATION', '300', '101.250000'],
      [2, 'ALLOCATION', '300', '101.750000'],
      [2, 'REVERSAL', '300', '101.750000'],
    ],
  );
  t.same(report.body.totals, [
    {
      securityId: 'SEC1',
      boughtQuantity: '300',
      soldQuantity: '0',
      netQuantity: '300',
      buyAveragePrice: '101.250000',
      sellAveragePrice: null,
      cashDeltaMinor: '-3037500',
    },
  ]);
  const outside = await inject(
    'GET',
    '/api/v1/execution/reports/A1?start_date=2026-11-21&end_date=2026-11-30',
  );
  t.match(outside.body, { allocationCount: 0, totals: [] }, 'nothing traded in that window');
  const backwards = await inject(
    'GET',
    '/api/v1/execution/reports/A1?start_date=2026-11-21&end_date=2026-11-20',
  );
  t.match(backwards, { status: 400, body: { field: 'end_date' } });
  t.match(
    await inject('GET', '/api/v1/execution/reports/A1?start_date=2026-02-30&end_date=2026-03-01'),
    {
      status: 400,
      body: { field: 'start_date' },
    },
  );
  t.equal(
    (
      await inject(
        'GET',
        '/api/v1/execution/reports/NOBODY?start_date=2026-09-21&end_date=2026-09-21',
      )
    ).status,
    404,
  );

  // Lists: keyset pages with opaque cursors.
  const page1 = await inject('GET', '/api/v1/block-orders?limit=1');
  t.same(
    (page1.body.items as Json[]).map((o) => o.blockOrderId),
    ['BUY1'],
  );
  t.type(page1.body.nextCursor, 'string');
  const page2 = await inject(
    'GET',
    `/api/v1/block-orders?limit=1&cursor=${String(page1.body.nextCursor)}`,
  );
  t.same(
    (page2.body.items as Json[]).map((o) => o.blockOrderId),
    ['SELL1'],
  );
  const page3 = await inject(
    'GET',
    `/api/v1/block-orders?limit=1&cursor=${String(page2.body.nextCursor)}`,
  );
  t.same(page3.body, { items: [], nextCursor: null }, 'the end');
  const partial = await inject('GET', '/api/v1/block-orders?status=PARTIALLY_FILLED');
  t.same(
    (partial.body.items as Json[]).map((o) => o.blockOrderId),
    ['BUY1'],
  );
  t.match((partial.body.items as Json[])[0], { remainingQuantity: '500', vwapPrice: '101.250000' });
  const bySecurity = await inject(
    'GET',
    '/api/v1/block-orders?security=SEC1&side=SELL&tradeDate=2026-11-20',
  );
  t.same(
    (bySecurity.body.items as Json[]).map((o) => o.blockOrderId),
    ['SELL1'],
  );
  t.match(await inject('GET', '/api/v1/block-orders?cursor=bm90LWEtY3Vyc29y'), {
    status: 400,
    body: { field: 'cursor' },
  });
  t.match(await inject('GET', '/api/v1/block-orders?limit=101'), {
    status: 400,
    body: { field: 'limit' },
  });
  t.match(await inject('GET', '/api/v1/block-orders?status=LOST'), {
    status: 400,
    body: { field: 'status' },
  });
});

t.test('dead letters: listed with their reason, replayed with a corrected body', async (t) => {
  const { service } = await startTestService(t, { seed: smallSeed() });
  const names = streamNames(service.config);
  const subject = fillSubject(names.subjectRoot, 'SELL1', service.config.partitions);
  const broken = {
    v: 1,
    fillId: 'S1',
    blockOrderId: 'SELL1',
    seq: 1,
    quantity: 100n,
    price: -5n,
    venue: 'XNYS',
    executedAtMs: 1,
  };
  await service.nats.js.publish(subject, packWire(broken), { msgID: 'S1' });
  const list = await eventually('the dead letter', async () => {
    const res = await service.app.inject({ method: 'GET', url: '/api/v1/dead-letters' });
    const body = res.json<{ items: Json[]; nextCursor: string | null }>();
    return body.items.length > 0 ? body : undefined;
  });
  t.match(list.items[0], {
    id: '1',
    reason: 'INVALID_FIELD',
    field: 'price',
    originalSubject: subject,
    execution: null,
  });
  t.equal(list.nextCursor, null);
  const none = await service.app.inject({
    method: 'GET',
    url: '/api/v1/dead-letters?reason=DECODE_FAILED',
  });
  t.same(none.json(), { items: [], nextCursor: null }, 'filtered by reason');
  // Two more, then pages of two: every one once, in order, and the end.
  for (const n of [2, 3])
    await service.nats.js.publish(subject, packWire({ ...broken, fillId: `S${n}`, seq: n }), {
      msgID: `S${n}`,
    });
  await eventually('three dead letters', async () => {
    const res = await service.app.inject({ method: 'GET', url: '/api/v1/dead-letters' });
    return res.json<{ items: unknown[] }>().items.length === 3 ? true : undefined;
  });
  const p1 = (
    await service.app.inject({ method: 'GET', url: '/api/v1/dead-letters?limit=2' })
  ).json<{ items: Json[]; nextCursor: string | null }>();
  t.same(
    p1.items.map((d) => d.id),
    ['1', '2'],
  );
  const p2 = (
    await service.app.inject({
      method: 'GET',
      url: `/api/v1/dead-letters?limit=2&cursor=${String(p1.nextCursor)}`,
    })
  ).json<{ items: Json[]; nextCursor: string | null }>();
  t.same(
    p2.items.map((d) => d.id),
    ['3'],
  );
  t.equal(p2.nextCursor, null, 'the end');
  const one = await service.app.inject({ method: 'GET', url: '/api/v1/dead-letters/1' });
  t.match(one.json(), { id: '1', bodyBase64: Buffer.from(packWire(broken)).toString('base64') });
  t.equal(
    (await service.app.inject({ method: 'GET', url: '/api/v1/dead-letters/99' })).statusCode,
    404,
  );

  const asWas = await service.app.inject({
    method: 'POST',
    url: '/api/v1/dead-letters/1/replay',
    payload: {},
  });
  t.match(asWas, { statusCode: 400 });
  t.match(
    asWas.json(),
    { field: 'execution.price' },
    'as it was, it would only be dead-lettered again',
  );
  const execution = {
    fillId: 'S1',
    blockOrderId: 'SELL1',
    seq: 1,
    quantity: '100',
    price: '99.5',
    venue: 'XNYS',
    executedAtMs: 1,
  };
  const replay = await service.app.inject({
    method: 'POST',
    url: '/api/v1/dead-letters/1/replay',
    payload: { execution },
  });
  t.equal(replay.statusCode, 200);
  t.match(replay.json(), { id: '1', outcome: 'PUBLISHED', subject });
  const twice = await service.app.inject({
    method: 'POST',
    url: '/api/v1/dead-letters/1/replay',
    payload: { execution },
  });
  t.match(twice.json(), { outcome: 'DUPLICATE' }, 'a retried replay is deduplicated');
  const order = await confirmedThrough(service, 'SELL1', 1);
  t.equal(order.filledQuantity, '100', 'the corrected fill is allocated');
  const wrongList = await service.app.inject({
    method: 'GET',
    url: `/api/v1/block-orders?cursor=${Buffer.from(JSON.stringify(['dead-letters', 1])).toString('base64url')}`,
  });
  t.match(wrongList.json(), { field: 'cursor' }, "another list's cursor is refused");
});

t.test('actors: counts, one actor, and restarting one its supervisor stopped', async (t) => {
  const { service, db } = await startTestService(t, {
    seed: smallSeed(),
    config: { SUPERVISOR_CRASHES_MAX: '2' },
  });
  const get = async (url: string) =>
    (await service.app.inject({ method: 'GET', url })).json<Json>();
  t.match(await get('/api/v1/actors/account/A1'), { state: 'ABSENT', view: { accountId: 'A1' } });
  t.match(
    await get('/api/v1/actors/account/A1'),
    { state: 'LIVE', mailboxDepth: 0 },
    'woken by the read',
  );
  const stats = (await get('/api/v1/actors')).kinds as Json[];
  t.match(stats[0], { kind: 'account', live: 1, passivated: 0, stopped: 0 });
  const notStopped = await service.app.inject({
    method: 'POST',
    url: '/api/v1/actors/account/A1/restart',
  });
  t.match(notStopped, { statusCode: 409 });
  t.match(notStopped.json(), { error: 'NOT_STOPPED' });
  t.equal(
    (await service.app.inject({ method: 'GET', url: '/api/v1/actors/robot/A1' })).statusCode,
    400,
  );

  // A4's snapshot is unreadable: every recovery crashes, and the supervisor stops it.
  await db.query(
    `INSERT INTO snapshots (persistence_key, sequence_nr, payload) VALUES ('account-A4', 1, $1)`,
    [Buffer.from([0xc1, 0xc1])],
  );
  await eventually('A4 stopped', async () => {
    await service.app.inject({ method: 'GET', url: '/api/v1/accounts/A4' });
    const s = await get('/api/v1/actors/account/A4');
    return s.state === 'STOPPED' ? s : undefined;
  });
  t.match(await get('/api/v1/actors/account/A4'), { stoppedReason: /./, view: null });
  t.match((await get('/api/v1/actors')).kinds, [{ kind: 'account', stopped: 1 }]);
  // The operator removes the cause, then restarts it: it recovers from its journal.
  await db.query(`DELETE FROM snapshots WHERE persistence_key = 'account-A4'`);
  const restarted = await service.app.inject({
    method: 'POST',
    url: '/api/v1/actors/account/A4/restart',
  });
  t.same(restarted.json(), { kind: 'account', id: 'A4', restarted: true });
  const a4 = await service.app.inject({ method: 'GET', url: '/api/v1/accounts/A4' });
  t.equal(a4.statusCode, 200, 'served again');
  t.equal((await get('/api/v1/actors/account/A4')).state, 'LIVE');
});

t.test('unversioned paths of before /api/v1 still answer, marked deprecated', async (t) => {
  const { service } = await startTestService(t, { seed: smallSeed() });
  const res = await service.app.inject({ method: 'GET', url: '/accounts/A1' });
  t.equal(res.statusCode, 200);
  t.equal(res.headers.deprecation, 'true');
  t.equal(res.headers.link, '</api/v1/accounts/A1>; rel="successor-version"');
  const current = await service.app.inject({ method: 'GET', url: '/api/v1/accounts/A1' });
  t.equal(current.headers.deprecation, undefined);
  t.same(res.json(), current.json());
});

t.test('booking and reconciliation through the API', async (t) => {
  const { service, db } = await startTestService(t, { seed: smallSeed() });
  const post = (url: string, payload?: Json) =>
    service.app.inject({ method: 'POST', url, ...(payload ? { payload } : {}) });
  const get = (url: string) => service.app.inject({ method: 'GET', url });
  t.match(
    (await post('/api/v1/bookings/batches')).json(),
    { error: 'BOOKING_EMPTY' },
    'nothing yet',
  );
  await post('/api/v1/executions', [fill('F1', 1, '500', '101.25')] as unknown as Json);
  await confirmedThrough(service, 'BUY1', 1);
  const clean = await get('/api/v1/reconciliation?tradeDate=2026-11-20');
  t.match(clean.json(), {
    tradeDate: '2026-11-20',
    clean: true,
    breaks: [],
    securities: [{ securityId: 'SEC1', streetQuantity: '500', booksQuantity: '500' }],
  });
  t.match((await get('/api/v1/reconciliation?tradeDate=2026-13-01')).json(), {
    field: 'tradeDate',
  });

  const closed = await post('/api/v1/bookings/batches', { cleanup: true });
  t.equal(closed.statusCode, 201);
  const batch = closed.json<Json>();
  t.match(batch, { id: 'BKG-0000000001', batchNo: 1, lineCount: 3, fileKept: false });
  t.equal(closed.headers.location, `/api/v1/bookings/batches/${String(batch.id)}`);
  const again = await post('/api/v1/bookings/batches');
  t.equal(again.statusCode, 409, 'a duplicate close: nothing new');
  t.same((await get(`/api/v1/bookings/batches/${String(batch.id)}`)).json(), batch);
  const file = await get(`/api/v1/bookings/batches/${String(batch.id)}/file`);
  t.equal(file.statusCode, 200);
  t.match(file.headers['content-type'], /^text\/csv/);
  t.equal(
    file.body,
    [
      'portfolio_id,security_id,source_id,transaction_type,quantity,price,transaction_date',
      'A1,SEC1,AC.BUY1.1.A1,BUY,300,101.250000,2026-09-21',
      'A2,SEC1,AC.BUY1.1.A2,BUY,150,101.250000,2026-09-21',
      'A3,SEC1,AC.BUY1.1.A3,BUY,50,101.250000,2026-09-21',
      '',
    ].join('\n'),
    'regenerated after cleanup, byte for byte',
  );
  const membership = await get('/api/v1/bookings/membership?fillId=F1');
  t.match(membership.json(), { fillId: 'F1', batches: [{ id: batch.id }], truncated: false });
  t.equal(
    membership.json<{ lines: unknown[] }>().lines.length,
    3,
    'every line of the fill, in its batch',
  );
  t.equal((await get('/api/v1/bookings/batches/BKG-0000000009')).statusCode, 404);
  // A rebuild from JetStream numbers journal rows anew and starts the marks over
  // (the replay drill truncates them): what was booked is still never booked twice.
  await db.query('DELETE FROM booking_marks');
  t.match((await post('/api/v1/bookings/batches')).json(), { error: 'BOOKING_EMPTY' });
  await post('/api/v1/executions', [fill('F2', 2, '500', '101.5')] as unknown as Json);
  await confirmedThrough(service, 'BUY1', 2);
  t.match(
    (await post('/api/v1/bookings/batches')).json(),
    {
      id: 'BKG-0000000002',
      lineCount: 3,
    },
    "only the new fill's lines",
  );
  t.equal((await get('/api/v1/bookings/batches/nope')).statusCode, 400);

  // A break: the street has a fill no account got.
  await db.query(
    `INSERT INTO executions (fill_id, block_order_id, fill_seq, quantity, price, venue, executed_at_ms, persistence_key, sequence_nr, kind, lines_key)
     VALUES ('FAKE', 'BUY1', 99, 100, 101000000, 'XNYS', 1, 'block-order-BUY1', 99, 'FILL', 'FAKE')`,
  );
  const broken = (await get('/api/v1/reconciliation')).json<{ clean: boolean; breaks: Json[] }>();
  t.equal(broken.clean, false);
  t.match(broken.breaks, [{ kind: 'SHARES', securityId: 'SEC1', orders: ['BUY1'] }]);
});
