/**
 * Start-up failures say what failed: each wrong DATABASE_URL, a silent
 * database server, an unmigrated schema and an unreachable NATS_URL get their
 * own code and a message naming the variable (password hidden).
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import t, { type Test } from 'tap';
import { BlockfillError, ErrorCode } from '../actors/errors.ts';
import { dropDatabase, freshDatabase, deleteStreams } from '../simulations/support.ts';
import type { Config } from '../system/config.ts';
import { openJetStream } from '../system/jetstream.ts';
import type { Logger } from '../system/log.ts';
import { startService } from '../system/service.ts';
import { testConfig, testDatabase } from './helpers/harness.ts';

const hex = () => randomBytes(4).toString('hex');

/** The BlockfillError startService(config) fails with; a failed assertion if it starts. */
async function startupError(t: Test, config: Config): Promise<BlockfillError | undefined> {
  try {
    const service = await startService(config);
    await service.stop();
  } catch (error) {
    t.type(error, BlockfillError, String(error));
    return error instanceof BlockfillError ? error : undefined;
  }
  t.fail('start-up succeeded');
  return undefined;
}

/** A TCP server that runs `onConnection` for each client; closed (with its clients) at teardown. */
async function fakeServer(t: Test, onConnection: (socket: net.Socket) => void): Promise<number> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
    onConnection(socket);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  return (server.address() as net.AddressInfo).port;
}

/**
 * Completes PostgreSQL's start-up handshake (AuthenticationOk, ReadyForQuery)
 * for the first message received, then never answers anything.
 */
function handshakeThenSilence(socket: net.Socket): void {
  socket.once('data', () => {
    const authOk = Buffer.from([0x52, 0, 0, 0, 8, 0, 0, 0, 0]);
    const ready = Buffer.from([0x5a, 0, 0, 0, 5, 0x49]);
    socket.write(Buffer.concat([authOk, ready]));
  });
}

t.test('an unreachable database server is DB_UNREACHABLE, password hidden', async (t) => {
  const secret = `pw${hex()}`;
  const url = `postgres://postgres:${secret}@127.0.0.1:1/postgres`;
  const error = await startupError(t, testConfig({ DATABASE_URL: url }));
  t.equal(error?.code, ErrorCode.DbUnreachable);
  t.equal(
    error?.message,
    'cannot reach the database server at DATABASE_URL=postgres://postgres:***@127.0.0.1:1/postgres ' +
      '(ECONNREFUSED): check that it runs and that host and port are right',
  );
  t.notMatch(error?.message, secret);
});

t.test('a database that does not exist is DB_MISSING', async (t) => {
  const name = `bf_missing_${hex()}`;
  const url = `postgres://postgres@127.0.0.1:5432/${name}`;
  const error = await startupError(t, testConfig({ DATABASE_URL: url }));
  t.equal(error?.code, ErrorCode.DbMissing);
  t.equal(
    error?.message,
    `database "${name}" does not exist on the server at DATABASE_URL=${url}: ` +
      'create it, then run `npm run db:migrate`',
  );
});

t.test('a role the server refuses is DB_AUTH_FAILED', async (t) => {
  const role = `nosuchrole_${hex()}`;
  const url = `postgres://${role}:secret@127.0.0.1:5432/postgres`;
  const error = await startupError(t, testConfig({ DATABASE_URL: url }));
  t.equal(error?.code, ErrorCode.DbAuthFailed);
  t.match(
    error?.message,
    `the server at DATABASE_URL=postgres://${role}:***@127.0.0.1:5432/postgres refused role "${role}" (SQLSTATE 28`,
  );
  t.notMatch(error?.message, 'secret');
});

t.test('an empty database is SCHEMA_NOT_MIGRATED', async (t) => {
  const config = testConfig();
  const name = `bf_test_${hex()}`;
  const url = await freshDatabase(config.databaseUrl, name);
  t.teardown(() => dropDatabase(config.databaseUrl, name));
  const error = await startupError(t, { ...config, databaseUrl: url });
  t.equal(error?.code, ErrorCode.SchemaNotMigrated);
  t.match(error?.message, /^the database at DATABASE_URL=\S+ lacks migrations 1(, \d+)*: /);
  t.match(error?.message, 'run `npm run db:migrate`');
});

t.test('a server that accepts but never answers fails within DB_CONNECT_TIMEOUT_MS', async (t) => {
  const port = await fakeServer(t, () => undefined);
  const url = `postgres://postgres@127.0.0.1:${port}/blockfill`;
  const started = Date.now();
  const error = await startupError(
    t,
    testConfig({ DATABASE_URL: url, DB_CONNECT_TIMEOUT_MS: '300' }),
  );
  const elapsedMs = Date.now() - started;
  t.equal(error?.code, ErrorCode.DbTimeout);
  t.equal(
    error?.message,
    `the database server at DATABASE_URL=${url} did not complete a connection within 300 ms ` +
      '(DB_CONNECT_TIMEOUT_MS): check that host and port are a PostgreSQL server and that it is ' +
      'not overloaded',
  );
  t.ok(elapsedMs >= 290 && elapsedMs < 3_000, `failed after ${elapsedMs} ms`);
});

t.test('a server that connects but never answers the first query fails in time', async (t) => {
  const port = await fakeServer(t, handshakeThenSilence);
  const url = `postgres://postgres@127.0.0.1:${port}/blockfill`;
  const started = Date.now();
  const error = await startupError(
    t,
    testConfig({ DATABASE_URL: url, DB_CONNECT_TIMEOUT_MS: '300' }),
  );
  const elapsedMs = Date.now() - started;
  t.equal(error?.code, ErrorCode.DbTimeout);
  t.match(error?.message, 'did not answer a first query within 300 ms (DB_CONNECT_TIMEOUT_MS)');
  t.ok(elapsedMs >= 290 && elapsedMs < 3_000, `failed after ${elapsedMs} ms`);
});

t.test('an unreachable NATS server is NATS_UNREACHABLE naming NATS_URL', async (t) => {
  const config = testConfig({ NATS_URL: 'nats://127.0.0.1:1' });
  const { url } = await testDatabase(t, config);
  const error = await startupError(t, { ...config, databaseUrl: url });
  t.equal(error?.code, ErrorCode.NatsUnreachable);
  t.equal(
    error?.message,
    'cannot reach NATS (ECONNREFUSED) at NATS_URL=nats://127.0.0.1:1: ' +
      'check that the server runs and that host and port are right',
  );
});

t.test('PORT=0 logs the port the OS gave, which serves the API', async (t) => {
  const base = testConfig({ PORT: '0' });
  const { url } = await testDatabase(t, base);
  const config = { ...base, databaseUrl: url };
  const lines: Array<{ msg: string; fields: Record<string, unknown> }> = [];
  const record = (msg: string, fields: Record<string, unknown> = {}) => lines.push({ msg, fields });
  const log: Logger = { debug: record, info: record, warn: record, error: record };
  const service = await startService(config, { listen: true, log });
  t.teardown(async () => {
    await service.stop();
    const nats = await openJetStream(config, 'blockfill-test-cleanup');
    await deleteStreams(nats.jsm, config.namespace).finally(() => nats.nc.close());
  });
  const started = lines.find((l) => l.msg === 'blockfill started');
  const port = started?.fields.port;
  t.type(port, 'number');
  t.not(port, 0);
  t.equal(port, (service.app.server.address() as net.AddressInfo).port);
  t.equal(started?.fields.http, `127.0.0.1:${String(port)}`);
  t.equal((await fetch(`http://127.0.0.1:${String(port)}/healthz`)).status, 200);
});

/** Runs system/main.ts to its exit; returns its exit code and its stderr lines. */
async function runMain(env: Record<string, string>): Promise<{ code: number; lines: string[] }> {
  const child = spawn(process.execPath, ['system/main.ts'], {
    env: { ...process.env, LOG_LEVEL: 'info', PORT: '0', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const [code] = (await once(child, 'exit')) as [number | null];
  return { code: code ?? -1, lines: stderr.split('\n').filter((l) => l !== '') };
}

t.test('system/main.ts reports a known start-up failure as one line and exits 1', async (t) => {
  const cases: Array<[env: Record<string, string>, code: string, text: string]> = [
    [
      { DATABASE_URL: 'postgres://postgres:hunter2@127.0.0.1:1/postgres' },
      ErrorCode.DbUnreachable,
      'DATABASE_URL=postgres://postgres:***@127.0.0.1:1/postgres (ECONNREFUSED)',
    ],
    [
      { DATABASE_URL: `postgres://postgres@127.0.0.1:5432/bf_missing_${hex()}` },
      ErrorCode.DbMissing,
      'does not exist on the server',
    ],
  ];
  for (const [env, code, text] of cases) {
    const run = await runMain({ BLOCKFILL_NAMESPACE: `T${hex()}`, ...env });
    t.equal(run.code, 1, code);
    t.equal(run.lines.length, 1, `${code}: one line: ${run.lines.join('\n')}`);
    const line = JSON.parse(run.lines[0] ?? '{}') as Record<string, unknown>;
    t.equal(line.level, 'error');
    t.equal(line.code, code);
    t.match(line.msg, /^start-up failed: /);
    t.match(line.msg, text);
    t.notMatch(run.lines[0], /hunter2|stack|\n\s+at /);
  }
});
