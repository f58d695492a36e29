/**
 * PostgreSQL and NATS servers of a drill's own, for drills that stop or kill
 * them: each on a free port, with its data in one temp directory, never the
 * shared servers. Every wait is bounded; `cleanup()` stops what runs and
 * removes the directory, and runs by itself (synchronously) when this process
 * exits, so a drill that is interrupted leaves nothing behind.
 *
 *   const servers = await PrivateServers.create();
 *   try {
 *     const pg = await servers.startPostgres();   // initdb + pg_ctl start, trust auth
 *     const nats = await servers.startNats();     // nats-server -js -sd <dir>
 *     await pg.stop(); await pg.start();          // pg_ctl stop -m immediate, same port and data
 *     await nats.kill(); await nats.start();      // SIGKILL, same port and store
 *   } finally {
 *     await servers.cleanup();
 *   }
 *
 * initdb refuses root: as root, the PostgreSQL commands run as the `postgres`
 * OS user (runuser), and the temp directory is handed to that user.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { chown, mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { readFileSync, rmSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from './child-service.ts';

export const PG_BIN_DIR = '/usr/lib/postgresql/15/bin';
export const NATS_SERVER_BIN = '/usr/sbin/nats-server';
const HOST = '127.0.0.1';
const PG_OS_USER = 'postgres';

/** Bounds of every wait here. */
export const ServerLimits = {
  initdbMs: 60_000,
  startMs: 30_000,
  stopMs: 30_000,
  reapMs: 5_000,
  /** Output of a server or command kept for error messages. */
  outputCharsMax: 16_000,
} as const;

/** A command's result: exit code and (capped) output. */
interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  output: string;
}

const isRoot = (): boolean => process.getuid?.() === 0;

/** `cmd args`, as the postgres OS user when we are root; the environment kept minimal. */
function pgCommand(bin: string, args: string[]): { cmd: string; args: string[] } {
  const path = join(PG_BIN_DIR, bin);
  return isRoot()
    ? { cmd: 'runuser', args: ['-u', PG_OS_USER, '--', path, ...args] }
    : { cmd: path, args };
}

const PG_ENV = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C', LC_ALL: 'C' };

/** Runs a command to its end, killed at `timeoutMs`; never throws for a non-zero exit. */
async function run(
  command: { cmd: string; args: string[] },
  options: { cwd: string; timeoutMs: number },
): Promise<RunResult> {
  const child = spawn(command.cmd, command.args, {
    cwd: options.cwd,
    env: PG_ENV,
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: options.timeoutMs,
    killSignal: 'SIGKILL',
  });
  let output = '';
  const keep = (d: Buffer) => {
    output = (output + d.toString('utf8')).slice(-ServerLimits.outputCharsMax);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const failed = once(child, 'error').then(([error]) => {
    throw error;
  });
  // An 'error' after the exit (a kill that failed) must not become an unhandled rejection.
  failed.catch(() => undefined);
  const [code, signal] = (await Promise.race([once(child, 'exit'), failed])) as [
    number | null,
    NodeJS.Signals | null,
  ];
  return { code, signal, output };
}

function check(what: string, result: RunResult): void {
  if (result.code === 0) return;
  const how = result.signal ? `signal ${result.signal} (timed out?)` : `code ${result.code}`;
  throw new Error(`${what} failed (${how}):\n${result.output}`);
}

/** A PostgreSQL server of our own: trust auth for role postgres, on 127.0.0.1:port. */
export class PrivatePostgres {
  readonly port: number;
  readonly dataDir: string;
  readonly socketDir: string;
  readonly logFile: string;
  readonly #rootDir: string;
  #running = false;

  constructor(rootDir: string, port: number) {
    this.#rootDir = rootDir;
    this.port = port;
    this.dataDir = join(rootDir, 'pgdata');
    this.socketDir = join(rootDir, 'pgsock');
    this.logFile = join(rootDir, 'postgres.log');
  }

  get running(): boolean {
    return this.#running;
  }

  /** postgres://postgres@127.0.0.1:<port>/<database> */
  url(database = 'postgres'): string {
    return `postgres://${PG_OS_USER}@${HOST}:${this.port}/${database}`;
  }

  async init(): Promise<void> {
    const args = ['-D', this.dataDir, '-U', PG_OS_USER, '-A', 'trust', '-E', 'UTF8'];
    const result = await run(pgCommand('initdb', [...args, '--locale=C', '--no-sync']), {
      cwd: this.#rootDir,
      timeoutMs: ServerLimits.initdbMs,
    });
    check('initdb', result);
  }

  /** pg_ctl start on the same port and data dir; resolves once it accepts connections. */
  async start(): Promise<void> {
    const options = `-p ${this.port} -k ${this.socketDir} -c listen_addresses=${HOST}`;
    const seconds = String(Math.ceil(ServerLimits.startMs / 1000));
    const command = pgCommand('pg_ctl', [
      ...['start', '-D', this.dataDir, '-l', this.logFile, '-w', '-t', seconds, '-o', options],
    ]);
    const result = await run(command, {
      cwd: this.#rootDir,
      timeoutMs: ServerLimits.startMs + 5_000,
    });
    check(`pg_ctl start (port ${this.port})`, { ...result, output: await this.#withLog(result) });
    this.#running = true;
  }

  /** `pg_ctl stop -m immediate`: the server quits at once, as in a crash (recovery on start). */
  async stop(): Promise<void> {
    const seconds = String(Math.ceil(ServerLimits.stopMs / 1000));
    const command = pgCommand('pg_ctl', ['stop', '-D', this.dataDir, '-m', 'immediate']);
    const result = await run(
      { cmd: command.cmd, args: [...command.args, '-w', '-t', seconds] },
      { cwd: this.#rootDir, timeoutMs: ServerLimits.stopMs + 5_000 },
    );
    this.#running = false;
    check(`pg_ctl stop (port ${this.port})`, result);
  }

  /** For exit handlers: the same stop, synchronous and bounded; then SIGKILL if it is still there. */
  stopSync(): void {
    if (!this.#running) return;
    this.#running = false;
    const command = pgCommand('pg_ctl', ['stop', '-D', this.dataDir, '-m', 'immediate', '-w']);
    spawnSync(command.cmd, [...command.args, '-t', '10'], {
      cwd: this.#rootDir,
      env: PG_ENV,
      stdio: 'ignore',
      timeout: 12_000,
    });
    const pid = this.#postmasterPid();
    if (pid !== undefined) killQuietly(pid, 'SIGKILL');
  }

  #postmasterPid(): number | undefined {
    try {
      const first = readFileSync(join(this.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0];
      const pid = Number(first);
      if (!Number.isInteger(pid) || pid <= 0) return undefined;
      // A stale pid file after a crash may name a reused pid: only ours, serving this data dir.
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      return cmdline.includes(this.dataDir) ? pid : undefined;
    } catch {
      return undefined;
    }
  }

  async #withLog(result: RunResult): Promise<string> {
    if (result.code === 0) return result.output;
    const log = await readFile(this.logFile, 'utf8').catch(() => '');
    return `${result.output}\n--- ${this.logFile} ---\n${log.slice(-ServerLimits.outputCharsMax)}`;
  }
}

function killQuietly(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // Already gone.
  }
}

/** A NATS server of our own with JetStream, a child of this process. */
export class PrivateNats {
  readonly port: number;
  readonly storeDir: string;
  #child: ChildProcess | undefined;
  #output = '';

  constructor(rootDir: string, port: number) {
    this.port = port;
    this.storeDir = join(rootDir, 'nats');
  }

  get url(): string {
    return `nats://${HOST}:${this.port}`;
  }

  get running(): boolean {
    const c = this.#child;
    return c !== undefined && c.exitCode === null && c.signalCode === null;
  }

  get pid(): number | undefined {
    return this.running ? this.#child?.pid : undefined;
  }

  /** The server's last output (bounded), for failure reports. */
  output(): string {
    return this.#output;
  }

  /** Starts on the same port and store; resolves once it logs "Server is ready". */
  async start(): Promise<void> {
    if (this.running) throw new Error(`nats-server on port ${this.port} already runs`);
    const args = ['-a', HOST, '-p', String(this.port), '-js', '-sd', this.storeDir];
    // Only the output of this life tells whether this life is ready.
    this.#output = '';
    const child = spawn(NATS_SERVER_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.#child = child;
    let ready!: () => void;
    const readySeen = new Promise<void>((resolve) => (ready = resolve));
    const keep = (d: Buffer) => {
      this.#output = (this.#output + d.toString('utf8')).slice(-ServerLimits.outputCharsMax);
      if (this.#output.includes('Server is ready')) ready();
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    const failed = Promise.race([
      once(child, 'error').then(([error]) => error as Error),
      once(child, 'exit').then(([code]) => new Error(`nats-server exited (code ${code})`)),
      sleep(ServerLimits.startMs, undefined, { ref: false }).then(
        () => new Error(`nats-server not ready within ${ServerLimits.startMs} ms`),
      ),
    ]);
    const outcome = await Promise.race([readySeen, failed]);
    if (outcome instanceof Error) {
      this.killSync();
      throw new Error(`${outcome.message} (port ${this.port}):\n${this.#output}`);
    }
  }

  /** SIGKILL (a crash), and waits until it is reaped. */
  async kill(): Promise<void> {
    await this.#end('SIGKILL');
  }

  /** SIGTERM with a bounded wait, then SIGKILL. */
  async stop(): Promise<void> {
    await this.#end('SIGTERM').catch(() => this.#end('SIGKILL'));
  }

  killSync(): void {
    const pid = this.pid;
    if (pid !== undefined) killQuietly(pid, 'SIGKILL');
  }

  async #end(signal: NodeJS.Signals): Promise<void> {
    const child = this.#child;
    if (!child || !this.running) return;
    const exited = once(child, 'exit');
    child.kill(signal);
    const timeoutMs = signal === 'SIGKILL' ? ServerLimits.reapMs : ServerLimits.stopMs;
    const outcome = await Promise.race([exited, sleep(timeoutMs, 'timeout', { ref: false })]);
    if (outcome === 'timeout')
      throw new Error(`nats-server pid ${child.pid} not gone ${timeoutMs} ms after ${signal}`);
  }
}

/** Every PrivateServers not cleaned up yet: the exit hook cleans them. */
const live = new Set<PrivateServers>();
let exitHookInstalled = false;

/** Synchronous: stops every private server and removes its directory (exit and signal handlers). */
export function cleanupAllPrivateServersSync(): void {
  for (const servers of live) servers.cleanupSync();
}

/** One temp directory holding the data of the servers started through it. */
export class PrivateServers {
  readonly rootDir: string;
  postgres: PrivatePostgres | undefined;
  nats: PrivateNats | undefined;
  #cleaned = false;

  private constructor(rootDir: string) {
    this.rootDir = rootDir;
  }

  /** A fresh temp directory (readable by the postgres OS user when we are root). */
  static async create(prefix = 'blockfill-drill-'): Promise<PrivateServers> {
    if (!exitHookInstalled) {
      process.on('exit', cleanupAllPrivateServersSync);
      exitHookInstalled = true;
    }
    const rootDir = await mkdtemp(join(tmpdir(), prefix));
    const servers = new PrivateServers(rootDir);
    live.add(servers);
    if (isRoot()) {
      const pg = pgUser();
      await chown(rootDir, pg.uid, pg.gid);
    }
    return servers;
  }

  /** initdb and start, on a free port (or `port`). */
  async startPostgres(port?: number): Promise<PrivatePostgres> {
    if (this.postgres) throw new Error('this PrivateServers already has a PostgreSQL');
    const pg = new PrivatePostgres(this.rootDir, port ?? (await freePort(HOST)));
    this.postgres = pg;
    await mkdir(pg.socketDir);
    if (isRoot()) {
      const user = pgUser();
      await chown(pg.socketDir, user.uid, user.gid);
    }
    await pg.init();
    await pg.start();
    return pg;
  }

  /** nats-server with JetStream on a free port (or `port`), its store in the temp directory. */
  async startNats(port?: number): Promise<PrivateNats> {
    if (this.nats) throw new Error('this PrivateServers already has a NATS');
    const nats = new PrivateNats(this.rootDir, port ?? (await freePort(HOST)));
    this.nats = nats;
    await mkdir(nats.storeDir);
    await nats.start();
    return nats;
  }

  /** Stops both servers and removes the directory (unless `keepDir`); idempotent, never throws. */
  async cleanup(options: { keepDir?: boolean } = {}): Promise<void> {
    if (this.#cleaned) return;
    this.#cleaned = true;
    live.delete(this);
    if (this.postgres?.running) await this.postgres.stop().catch(() => this.postgres?.stopSync());
    await this.nats?.stop().catch(() => this.nats?.killSync());
    if (!options.keepDir)
      await rm(this.rootDir, { recursive: true, force: true }).catch(() => undefined);
  }

  cleanupSync(): void {
    if (this.#cleaned) return;
    this.#cleaned = true;
    live.delete(this);
    this.postgres?.stopSync();
    this.nats?.killSync();
    try {
      rmSync(this.rootDir, { recursive: true, force: true });
    } catch {
      // Best effort in an exit handler.
    }
  }
}

/** The postgres OS user's ids (root only needs them). */
function pgUser(): { uid: number; gid: number } {
  const result = spawnSync('id', ['-u', PG_OS_USER], { encoding: 'utf8', timeout: 5_000 });
  const gidResult = spawnSync('id', ['-g', PG_OS_USER], { encoding: 'utf8', timeout: 5_000 });
  const uid = Number(result.stdout.trim());
  const gid = Number(gidResult.stdout.trim());
  if (!Number.isInteger(uid) || result.status !== 0 || !Number.isInteger(gid))
    throw new Error(`no OS user "${PG_OS_USER}" to run PostgreSQL as (initdb refuses root)`);
  return { uid, gid };
}

/** Whether the binaries these servers need are installed (tests skip without them). */
export function privateServersAvailable(): { postgres: boolean; nats: boolean } {
  const exists = (path: string) => spawnSync('test', ['-x', path]).status === 0;
  const pgOk = exists(join(PG_BIN_DIR, 'initdb')) && exists(join(PG_BIN_DIR, 'pg_ctl'));
  const pgUserOk = !isRoot() || spawnSync('id', ['-u', PG_OS_USER]).status === 0;
  return { postgres: pgOk && pgUserOk, nats: exists(NATS_SERVER_BIN) };
}

/** Who runs PostgreSQL here: the postgres OS user when we are root, else us. */
export const postgresRunsAs = (): string => (isRoot() ? PG_OS_USER : userInfo().username);
