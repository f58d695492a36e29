/**
 * GET /api/v1/execution/stream with a real WebSocket client over a real
 * socket: updates arrive as they become durable, filtered by order and data
 * type; a client that stops reading is cut off with 1013 and the server
 * keeps nothing for it; bad filters and plain HTTP get the one error shape.
 */
import t from 'tap';
import WebSocket from 'ws';
import type { AddressInfo } from 'node:net';
import { confirmedThrough, eventually, smallSeed, startTestService } from './helpers/harness.ts';

type Json = Record<string, unknown>;

const fill = (blockOrderId: string, fillId: string, seq: number, quantity: string) => ({
  fillId,
  blockOrderId,
  seq,
  quantity,
  price: '100.5',
  venue: 'XNYS',
  executedAtMs: 1_790_000_000_000 + seq,
});

async function listening(app: {
  listen: (o: object) => Promise<string>;
  server: { address(): unknown };
}) {
  await app.listen({ port: 0, host: '127.0.0.1' });
  return (app.server.address() as AddressInfo).port;
}

/** Connects, and resolves once the server confirmed the subscription. */
function connect(port: number, query: string): Promise<{ ws: WebSocket; messages: Json[] }> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/api/v1/execution/stream${query}`);
  const messages: Json[] = [];
  return new Promise((resolve, reject) => {
    ws.on('error', reject);
    ws.on('message', (data: Buffer) => {
      const message = JSON.parse(data.toString('utf8')) as Json;
      if ('subscribed' in message) resolve({ ws, messages });
      else messages.push(message);
    });
  });
}

t.test('updates as they become durable, filtered by order and data type', async (t) => {
  const { service } = await startTestService(t, { seed: smallSeed() });
  const port = await listening(service.app);
  const all = await connect(port, '');
  const buy = await connect(port, '?order_ids=BUY1&data_types=FILL_NOTIFICATION,ALLOCATION,BUST');
  t.teardown(() => {
    all.ws.terminate();
    buy.ws.terminate();
  });
  const post = (items: unknown[]) =>
    service.app.inject({ method: 'POST', url: '/api/v1/executions', payload: items as Json[] });
  await post([fill('BUY1', 'F1', 1, '500'), fill('SELL1', 'S1', 1, '100')]);
  await confirmedThrough(service, 'BUY1', 1);
  await confirmedThrough(service, 'SELL1', 1);
  await post([
    {
      kind: 'BUST',
      amendmentId: 'B1',
      blockOrderId: 'BUY1',
      seq: 2,
      fillId: 'F1',
      executedAtMs: 1,
    },
  ]);
  await confirmedThrough(service, 'BUY1', 2);
  await eventually('the bust on both streams', () =>
    buy.messages.some((m) => m.dataType === 'BUST') &&
    all.messages.some((m) => m.dataType === 'BUST')
      ? true
      : undefined,
  );
  const kinds = (ms: Json[]) => ms.map((m) => `${String(m.orderId)}:${String(m.dataType)}`);
  t.ok(
    buy.messages.every((m) => m.orderId === 'BUY1'),
    'only the order asked for',
  );
  t.same(
    [...new Set(kinds(buy.messages))].sort(),
    ['BUY1:ALLOCATION', 'BUY1:BUST', 'BUY1:FILL_NOTIFICATION'],
    'only the types asked for',
  );
  const fillNote = buy.messages.find((m) => m.dataType === 'FILL_NOTIFICATION');
  t.match(fillNote, {
    orderId: 'BUY1',
    eventId: /^block-order-BUY1@\d+\.\d+$/,
    data: { fillId: 'F1', quantity: '500', price: '100.500000', venue: 'XNYS' },
  });
  const lines = buy.messages.filter(
    (m) => m.dataType === 'ALLOCATION' && !(m.data as Json).amended,
  );
  t.same(
    lines.map((m) => [(m.data as Json).accountId, (m.data as Json).quantity]).sort(),
    [
      ['A1', '300'],
      ['A2', '150'],
      ['A3', '50'],
    ],
    'each account line, once',
  );
  t.match(
    buy.messages.find((m) => m.dataType === 'BUST'),
    { data: { fillId: 'F1', previousQuantity: '500' } },
  );
  t.ok(kinds(all.messages).includes('SELL1:FILL_NOTIFICATION'), 'no filter: every order');
  t.ok(kinds(all.messages).includes('BUY1:ORDER_UPDATE'), 'and every type');
  const ids = all.messages.map((m) => m.eventId);
  t.equal(new Set(ids).size, ids.length, 'event ids are unique');
});

t.test('a client that stops reading is cut off with 1013, not buffered for', async (t) => {
  const { service } = await startTestService(t, {
    seed: smallSeed(),
    config: { STREAM_BUFFERED_BYTES_MAX: String(16 * 1024) },
  });
  const port = await listening(service.app);
  const slow = await connect(port, '');
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    slow.ws.on('close', (code: number, reason: Buffer) =>
      resolve({ code, reason: reason.toString() }),
    ),
  );
  // Stop reading: the server's socket fills, then its send buffer grows.
  slow.ws.pause();
  let received = 0;
  const healthy = await connect(port, '?order_ids=NONE');
  healthy.ws.on('message', () => received++);
  // Updates as the host hands durable batches over, far faster than a fill
  // stream could make them: kernel buffers on loopback hold megabytes.
  const event = {
    type: 'FillAllocated',
    fill: {
      fillId: 'F1',
      blockOrderId: 'BUY1',
      seq: 1,
      quantity: 10n,
      price: 1_000_000n,
      venue: 'XNYS',
      executedAtMs: 1,
    },
    lines: [],
    atMs: 1,
  };
  // The paused client cannot see its close frame yet: the server's side tells.
  t.equal(service.feed.subscribers, 2);
  let seq = 0;
  while (service.feed.subscribers === 2 && seq < 400_000) {
    for (let i = 0; i < 2_000; i++) service.feed.durable('block-order', 'BUY1', ++seq, [event]);
    await new Promise((resolve) => setImmediate(resolve));
  }
  t.ok(seq < 400_000, `cut off after ${seq} batches`);
  t.comment(`the slow client was cut off after ${seq} updates`);
  t.equal(service.feed.subscribers, 1, 'its subscription is gone at once; the healthy one stays');
  slow.ws.resume();
  const { code, reason } = await closed;
  t.equal(code, 1013, 'Try Again Later');
  t.match(reason, /slow consumer/);
  t.equal(healthy.ws.readyState, WebSocket.OPEN, 'other subscribers are untouched');
  healthy.ws.terminate();
  t.equal(received, 0, 'and got nothing they did not ask for');
});

t.test('bad filters and plain HTTP get the one error shape', async (t) => {
  const { service } = await startTestService(t, { seed: smallSeed() });
  const plain = await service.app.inject({ method: 'GET', url: '/api/v1/execution/stream' });
  t.equal(plain.statusCode, 426);
  t.match(plain.json(), { error: 'UPGRADE_REQUIRED' });
  const badType = await service.app.inject({
    method: 'GET',
    url: '/api/v1/execution/stream?data_types=TRADE',
  });
  t.match(badType, { statusCode: 400 });
  t.match(badType.json(), { field: 'data_types' });
  const port = await listening(service.app);
  const refused = new WebSocket(`ws://127.0.0.1:${port}/api/v1/execution/stream?order_ids=a.b`);
  refused.on('error', () => undefined); // the refusal is what is tested
  const status = await new Promise<number>((resolve) =>
    refused.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0)),
  );
  t.equal(status, 400, 'the upgrade itself is refused');
  refused.terminate();
});
