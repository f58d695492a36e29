import { spawn } from 'node:child_process';
import { once } from 'node:events';
import t from 'tap';
import { openJetStream } from '../system/jetstream.ts';
import { deleteStreams } from '../simulations/support.ts';
import { testConfig, testDatabase } from './helpers/harness.ts';

const node = process.execPath;

function run(env: Record<string, string>) {
  const child = spawn(node, ['system/main.ts'], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  return { child, output: () => output };
}

async function waitFor(what: string, probe: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** The first JSON log line with this message, parsed (pino writes msg after the fields). */
function logLine(output: string, msg: string): Record<string, unknown> | undefined {
  for (const line of output.split('\n')) {
    if (!line.startsWith('{')) continue;
    const parsed = JSON.parse(line) as Record<string, unknown>;
    if (parsed.msg === msg) return parsed;
  }
  return undefined;
}

t.test('npm start serves the API and shuts down gracefully on SIGTERM', async (t) => {
  const config = testConfig();
  const { url } = await testDatabase(t, config);
  t.teardown(async () => {
    const nats = await openJetStream(config, 'blockfill-test-cleanup');
    await deleteStreams(nats.jsm, config.namespace).finally(() => nats.nc.close());
  });
  // PORT=0: the OS picks a free port and the start-up line says which.
  const { child, output } = run({
    DATABASE_URL: url,
    BLOCKFILL_NAMESPACE: config.namespace,
    PORT: '0',
    LOG_LEVEL: 'info',
  });
  const exited = once(child, 'exit');
  await waitFor('start-up log line', () => output().includes('blockfill started'));
  const port = Number(logLine(output(), 'blockfill started')?.port);
  t.ok(port > 0, `the real port is logged: ${port}`);
  const health = await fetch(`http://127.0.0.1:${port}/healthz`);
  t.equal(health.status, 200);
  const ready = await fetch(`http://127.0.0.1:${port}/readyz`);
  t.equal(ready.status, 200);
  t.match(await ready.json(), { ready: true, checks: { consumer: { ok: true } } });
  child.kill('SIGTERM');
  const [code] = (await exited) as [number | null];
  t.equal(code, 0, output());
  t.match(logLine(output(), 'shutting down'), { signal: 'SIGTERM', level: 'info' });
  t.ok(logLine(output(), 'blockfill stopped'), 'the last line says it stopped');
  const lines = output()
    .split('\n')
    .filter((l) => l.startsWith('{'));
  t.ok(lines.length > 0 && lines.every((l) => /"time":"\d{4}-\d\d-\d\dT/.test(l)), 'ISO times');
});

t.test('an invalid setting stops start-up with a message naming the variable', async (t) => {
  const { child, output } = run({ PARTITIONS: 'many' });
  const [code] = (await once(child, 'exit')) as [number | null];
  t.equal(code, 2);
  t.match(output(), /PARTITIONS="many": must be a whole number/);
});

t.test('an unmigrated database stops start-up and says to run the migration', async (t) => {
  const config = testConfig();
  const { url, db } = await testDatabase(t, config);
  await db.query('DROP TABLE schema_migrations');
  const { child, output } = run({
    DATABASE_URL: url,
    BLOCKFILL_NAMESPACE: config.namespace,
    PORT: '0',
  });
  const [code] = (await once(child, 'exit')) as [number | null];
  t.equal(code, 1);
  t.match(output(), /npm run db:migrate/);
});
