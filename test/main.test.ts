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
  const port = Number(/"msg":"blockfill started".*?"port":(\d+)/.exec(output())?.[1]);
  t.ok(port > 0, `the real port is logged: ${port}`);
  const health = await fetch(`http://127.0.0.1:${port}/healthz`);
  t.equal(health.status, 200);
  const ready = await fetch(`http://127.0.0.1:${port}/readyz`);
  t.equal(ready.status, 200);
  t.match(await ready.json(), { ready: true, checks: { consumer: { ok: true } } });
  child.kill('SIGTERM');
  const [code] = (await exited) as [number | null];
  t.equal(code, 0, output());
  t.match(output(), /"msg":"shutting down".*"signal":"SIGTERM"/s);
  t.match(output(), /"msg":"blockfill stopped"/);
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
