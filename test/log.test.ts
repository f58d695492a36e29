/**
 * The logger's one format (shared with Fastify) and the repeat limiter, on an
 * injected clock and timer: no services, no real time.
 */
import t from 'tap';
import { BlockfillError, ErrorCode, InvariantError } from '../actors/errors.ts';
import { buildApp } from '../api/app.ts';
import type { InspectionPort } from '../api/ports.ts';
import {
  createLogger,
  createRepeatLimiter,
  type Logger,
  type RepeatLimiterOptions,
} from '../system/log.ts';

interface Line {
  level: string;
  msg: string;
  fields: Record<string, unknown>;
}

/** A logger that records its lines, a settable clock and a timer fired by hand. */
function harness(options: Partial<RepeatLimiterOptions> = {}) {
  const lines: Line[] = [];
  const at =
    (level: string) =>
    (msg: string, fields: Record<string, unknown> = {}) =>
      lines.push({ level, msg, fields });
  const log: Logger = {
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
  };
  let now = 0;
  let timer: { fn: () => void; dueMs: number } | undefined;
  const limiter = createRepeatLimiter(log, {
    windowMs: 10_000,
    nowMs: () => now,
    setTimer: (fn, ms) => {
      const armed = { fn, dueMs: now + ms };
      timer = armed;
      return () => {
        if (timer === armed) timer = undefined;
      };
    },
    ...options,
  });
  /** Moves the clock to `ms`, firing the timer each time it comes due on the way. */
  const advanceTo = (ms: number) => {
    while (timer && timer.dueMs <= ms) {
      const { fn, dueMs } = timer;
      timer = undefined;
      now = Math.max(now, dueMs);
      fn();
    }
    now = ms;
  };
  return { lines, limiter, advanceTo, timerDueMs: () => timer?.dueMs };
}

const outage = () =>
  new BlockfillError(ErrorCode.DbUnavailable, 'database unavailable: connection refused');

t.test('a repeated failure is written once, then summarized once per window', async (t) => {
  const { lines, limiter, advanceTo } = harness();
  // An actor crashing every 2 s for 60 s: 31 crashes.
  for (let ms = 0; ms <= 60_000; ms += 2_000) {
    advanceTo(ms);
    limiter.error('block-order:B1', 'actor crashed', { error: outage() });
  }
  advanceTo(100_000);
  t.equal(lines.length, 1 + 7, 'the first crash, then one summary per 10 s window');
  t.strictSame(lines[0], {
    level: 'error',
    msg: 'actor crashed',
    fields: {
      key: 'block-order:B1',
      error: {
        name: 'BlockfillError',
        message: 'database unavailable: connection refused',
        code: 'DB_UNAVAILABLE',
      },
    },
  });
  // Windows [0, 10) ... [50, 60) hold 4 then 5 repeats; [60, 70) holds the last crash.
  t.strictSame(
    lines.slice(1).map((l) => l.msg),
    [
      'actor crashed: repeated 4 times in the last 10 s',
      ...Array<string>(5).fill('actor crashed: repeated 5 times in the last 10 s'),
      'actor crashed: repeated 1 time in the last 10 s',
    ],
  );
  t.strictSame(lines[1]?.fields, {
    key: 'block-order:B1',
    code: 'DB_UNAVAILABLE',
    repeated: 4,
    windowMs: 10_000,
  });
  t.equal(lines[1]?.level, 'error', 'the summary keeps the level');
  const counted = lines.slice(1).reduce((n, l) => n + (l.fields.repeated as number), 0);
  t.equal(1 + counted, 31, 'every crash is written or counted');
  t.equal(limiter.size, 0, 'a quiet window forgets its entry');
});

t.test('after a quiet window the failure is written in full again', async (t) => {
  const { lines, limiter, advanceTo } = harness();
  limiter.warn('k', 'nats reconnecting', { error: outage() });
  advanceTo(30_000);
  limiter.warn('k', 'nats reconnecting', { error: outage() });
  t.strictSame(
    lines.map((l) => [l.level, l.msg]),
    [
      ['warn', 'nats reconnecting'],
      ['warn', 'nats reconnecting'],
    ],
  );
});

t.test('a window is summarized even when the failure stops', async (t) => {
  const { lines, limiter, advanceTo, timerDueMs } = harness();
  limiter.error('k', 'actor crashed', { error: outage() });
  advanceTo(1_000);
  limiter.error('k', 'actor crashed', { error: outage() });
  t.equal(timerDueMs(), 10_000, 'the timer is armed for the end of the window');
  advanceTo(10_000);
  t.equal(lines.length, 2);
  t.equal(lines[1]?.msg, 'actor crashed: repeated 1 time in the last 10 s');
});

t.test('keys, messages and error codes are counted apart', async (t) => {
  const { lines, limiter } = harness();
  limiter.error('a', 'actor crashed', { error: outage() });
  limiter.error('b', 'actor crashed', { error: outage() });
  limiter.error('a', 'snapshot failed', { error: outage() });
  limiter.error('a', 'actor crashed', { error: new InvariantError('broken') });
  limiter.error('a', 'actor crashed', { error: outage() });
  t.equal(lines.length, 4, 'only the last one repeats an entry');
  t.equal(limiter.size, 4);
});

t.test('stacks are dropped for infrastructure errors only', async (t) => {
  const { lines, limiter } = harness();
  const driver = Object.assign(new Error('terminating connection'), { code: '57P01' });
  const invariant = new InvariantError('allocation exceeds the fill');
  const bug = new TypeError('x is undefined');
  limiter.error('driver', 'actor crashed', { error: driver });
  limiter.error('invariant', 'actor crashed', { error: invariant });
  limiter.error('bug', 'actor crashed', { error: bug });
  t.strictSame(lines[0]?.fields.error, {
    name: 'Error',
    message: 'terminating connection',
    code: '57P01',
  });
  t.equal(lines[1]?.fields.error, invariant, 'a broken invariant keeps its stack');
  t.equal(lines[2]?.fields.error, bug, 'a programming error keeps its stack');
});

t.test('memory is bounded: beyond keysMax the oldest entry is evicted', async (t) => {
  const { lines, limiter, advanceTo } = harness({ keysMax: 3 });
  for (const key of ['a', 'b', 'c']) limiter.error(key, 'actor crashed', { error: outage() });
  advanceTo(1_000);
  limiter.error('a', 'actor crashed', { error: outage() }); // counted
  limiter.error('d', 'actor crashed', { error: outage() }); // evicts a, writing its count
  t.equal(limiter.size, 3);
  t.strictSame(
    lines.slice(3).map((l) => [l.msg, l.fields.key]),
    [
      ['actor crashed: repeated 1 time in the last 1 s', 'a'],
      ['actor crashed', 'd'],
    ],
  );
  limiter.error('a', 'actor crashed', { error: outage() });
  t.equal(lines.at(-1)?.fields.key, 'a', 'an evicted key is written in full again');
  t.equal(limiter.size, 3);
});

t.test('many distinct keys never grow past keysMax', async (t) => {
  const { limiter } = harness({ keysMax: 1_000 });
  for (let i = 0; i < 5_000; i++) limiter.error(`actor-${i}`, 'actor crashed', { error: outage() });
  t.equal(limiter.size, 1_000);
});

t.test('close writes the pending summaries and forgets everything', async (t) => {
  const { lines, limiter, advanceTo, timerDueMs } = harness();
  limiter.error('k', 'actor crashed', { error: outage() });
  limiter.error('k', 'actor crashed', { error: outage() });
  limiter.error('q', 'actor crashed', { error: outage() });
  advanceTo(500);
  limiter.close();
  t.strictSame(
    lines.map((l) => l.msg),
    ['actor crashed', 'actor crashed', 'actor crashed: repeated 1 time in the last 500 ms'],
  );
  t.equal(limiter.size, 0);
  t.equal(timerDueMs(), undefined, 'the timer is cancelled');
});

t.test('the logger writes bigints exactly at any depth (a fill in a field)', async (t) => {
  const written: string[] = [];
  const write = process.stderr.write.bind(process.stderr);
  process.stderr.write = ((chunk: string) =>
    written.push(chunk) > 0) as typeof process.stderr.write;
  try {
    createLogger('info').warn('fill dead-lettered', {
      quantity: 7n,
      existing: { quantity: 100n, price: 101_250_000n, lines: [{ quantity: 2n ** 70n }] },
    });
  } finally {
    process.stderr.write = write;
  }
  t.equal(written.length, 1);
  const line = JSON.parse(written[0] ?? '{}') as Record<string, unknown>;
  t.match(line, {
    msg: 'fill dead-lettered',
    quantity: '7',
    existing: { quantity: '100', price: '101250000', lines: [{ quantity: String(2n ** 70n) }] },
  });
});

/** Runs `fn` with process.stderr captured; returns the JSON lines written. */
async function stderrLines(fn: () => Promise<void> | void): Promise<Record<string, unknown>[]> {
  const written: string[] = [];
  const write = process.stderr.write.bind(process.stderr);
  process.stderr.write = ((chunk: string) =>
    written.push(chunk) > 0) as typeof process.stderr.write;
  try {
    await fn();
  } finally {
    process.stderr.write = write;
  }
  return written.map((l) => JSON.parse(l) as Record<string, unknown>);
}

t.test('one format: ISO time, level by name, errors at any key with name and code', async (t) => {
  const lines = await stderrLines(() => {
    const log = createLogger('info', { service: 'blockfill' });
    log.debug('not written at info');
    log.error('journal batch failed', {
      cause: new BlockfillError(ErrorCode.DbUnreachable, 'database unreachable'),
      wrapped: new Error('decode failed', { cause: new Error('truncated payload') }),
    });
  });
  t.equal(lines.length, 1, 'debug is below info');
  const [line] = lines;
  t.match(line, {
    level: 'error',
    msg: 'journal batch failed',
    service: 'blockfill',
    cause: { name: String, message: 'database unreachable', code: ErrorCode.DbUnreachable },
    wrapped: { message: 'decode failed', cause: { message: 'truncated payload' } },
  });
  t.match(String(line?.time), /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/, 'an ISO instant');
});

t.test(
  'Fastify logs through the same logger: request logs at info, with the request id',
  async (t) => {
    const lines = await stderrLines(async () => {
      const log = createLogger('info', { service: 'blockfill' });
      const app = await buildApp(
        { inspection: { readiness: async () => ({ ready: true }) } as unknown as InspectionPort },
        { loggerInstance: log.pino },
      );
      await app.inject({ method: 'GET', url: '/healthz', headers: { 'x-request-id': 'req-77' } });
      await app.inject({ method: 'GET', url: '/nope', headers: { 'x-request-id': 'req-78' } });
      await app.close();
    });
    const requests = lines.filter((l) => l.reqId === 'req-78');
    t.ok(requests.length >= 2, 'incoming and completed');
    for (const l of requests) {
      t.equal(l.level, 'info');
      t.equal(l.service, 'blockfill', 'the service’s own base fields');
      t.match(String(l.time), /^\d{4}-\d{2}-\d{2}T/);
    }
    t.match(
      requests.find((l) => l.msg === 'request completed'),
      { res: { statusCode: 404 } },
    );
    t.notOk(
      lines.some((l) => l.reqId === 'req-77'),
      'probes log at warn only',
    );
  },
);
