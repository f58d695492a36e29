/**
 * `npm start` under a process supervisor: SIGTERM to npm must reach the
 * service, which drains and exits, leaving no orphaned node process behind.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { deleteStreams } from '../simulations/support.ts';
import { openJetStream } from '../system/jetstream.ts';
import { eventually, testConfig, testDatabase } from './helpers/harness.ts';

const root = dirname(dirname(fileURLToPath(import.meta.url)));

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The JSON log lines among `output`'s lines (npm adds lines of its own). */
function logLines(output: string): Array<Record<string, unknown>> {
  return output
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

t.test('SIGTERM to npm start drains the service and leaves no process behind', async (t) => {
  const config = testConfig();
  const { url } = await testDatabase(t, config);
  t.teardown(async () => {
    const nats = await openJetStream(config, 'blockfill-test-cleanup');
    await deleteStreams(nats.jsm, config.namespace).finally(() => nats.nc.close());
  });
  const npm = spawn('npm', ['start'], {
    cwd: root,
    // npm and the script's `node` must be this Node (24), not an older one on PATH.
    env: {
      ...process.env,
      PATH: `${dirname(process.execPath)}:${process.env.PATH ?? ''}`,
      DATABASE_URL: url,
      BLOCKFILL_NAMESPACE: config.namespace,
      PORT: '0',
      LOG_LEVEL: 'info',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  npm.stdout.on('data', (d: Buffer) => (output += d.toString()));
  npm.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const npmExited = once(npm, 'exit');
  const service: { pid?: number } = {};
  // Never leave a service running, whatever the assertions below do.
  t.teardown(() => {
    if (service.pid !== undefined && alive(service.pid)) process.kill(service.pid, 'SIGKILL');
    if (npm.exitCode === null) npm.kill('SIGKILL');
  });

  const started = await eventually(
    `the service's start-up line in:\n${output}`,
    () => logLines(output).find((l) => l.msg === 'blockfill started'),
    20_000,
  );
  const pid = started.pid as number;
  service.pid = pid;
  t.type(pid, 'number', 'the service logs its pid');
  t.not(pid, npm.pid, 'the service is a process of its own');
  t.ok(alive(pid), 'the service runs');
  const port = started.port as number;
  t.not(port, 0, 'the real port is logged, not PORT=0');
  t.equal((await fetch(`http://127.0.0.1:${port}/healthz`)).status, 200);

  npm.kill('SIGTERM');
  // Draining an idle service takes well under a second; the bound only keeps a failure short.
  await eventually('the service to exit', () => (alive(pid) ? undefined : true), 8_000).catch(
    () => undefined,
  );
  t.notOk(alive(pid), 'the service exited (no orphan)', { output });
  const npmCode = await Promise.race([
    npmExited.then(() => npm.exitCode ?? npm.signalCode),
    new Promise((resolve) => setTimeout(() => resolve('still running'), 3_000)),
  ]);
  t.not(npmCode, 'still running', 'npm exited too');
  const lines = logLines(output);
  t.ok(
    lines.some((l) => l.msg === 'shutting down' && l.signal === 'SIGTERM' && l.pid === pid),
    'the service received SIGTERM',
  );
  t.ok(
    lines.some((l) => l.msg === 'blockfill stopped' && l.pid === pid),
    'the service drained and stopped',
  );
});
