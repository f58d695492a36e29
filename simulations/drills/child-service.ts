/**
 * The service as a child process, for drills that kill, stop or starve it:
 * `node <entry>` run directly (no npm or shell in between, so a signal reaches
 * the service itself), its output kept in a bounded ring buffer for failure
 * reports, readiness polled over HTTP, SIGKILL or SIGTERM with a bounded
 * wait, and every exit reaped.
 *
 * Every live child is registered: `killAllChildren()` (also run on this
 * process's exit) SIGKILLs the ones still running, so a drill never leaves a
 * service behind.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

export interface ChildServiceOptions {
  /** The script node runs, e.g. the absolute path of system/main.ts. */
  entry: string;
  cwd: string;
  /** The child's whole environment: nothing else is inherited. */
  env: Record<string, string | undefined>;
  /** Output (stderr and stdout) kept for failure reports, in characters; older output is dropped. */
  outputCharsMax?: number;
}

export interface ChildExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface WaitReadyOptions {
  /** e.g. http://127.0.0.1:4567/readyz */
  url: string;
  timeoutMs: number;
  /** Between probes; the resolution of the measured ready time. */
  pollMs?: number;
  /** One probe's bound (a hung server must not stall the poll). */
  probeTimeoutMs?: number;
  signal?: AbortSignal;
}

/** The child exited (by itself, or by a signal) before it answered ready. */
export class ChildExitedError extends Error {
  readonly exit: ChildExit;
  constructor(exit: ChildExit, output: string) {
    super(
      `the service exited (${describeExit(exit)}) before it was ready; last output:\n${output}`,
    );
    this.name = 'ChildExitedError';
    this.exit = exit;
  }
}

export const describeExit = (exit: ChildExit): string =>
  exit.signal ? `signal ${exit.signal}` : `code ${exit.code}`;

const OUTPUT_CHARS_MAX = 64 * 1024;
/** How much of the output an error message quotes. */
const FAILURE_OUTPUT_CHARS = 8_000;
const live = new Set<ChildProcess>();
let exitHookInstalled = false;

/** SIGKILLs every child still running; synchronous, so it is safe in exit and signal handlers. */
export function killAllChildren(): void {
  for (const child of live) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}

/** Output kept up to a size bound: the newest wins (the end of a failure is what explains it). */
class OutputRing {
  readonly #charsMax: number;
  #chunks: string[] = [];
  #chars = 0;
  constructor(charsMax: number) {
    this.#charsMax = charsMax;
  }
  push(chunk: string): void {
    this.#chunks.push(chunk);
    this.#chars += chunk.length;
    while (this.#chars > this.#charsMax && this.#chunks.length > 1) {
      this.#chars -= this.#chunks.shift()?.length ?? 0;
    }
  }
  text(): string {
    const all = this.#chunks.join('');
    return all.length > this.#charsMax ? all.slice(-this.#charsMax) : all;
  }
}

export class ChildService {
  readonly pid: number;
  /** performance.now() just before the spawn. */
  readonly spawnedAtMs: number;
  /** Resolves once the child exited and was reaped; never rejects. */
  readonly exited: Promise<ChildExit>;
  readonly #child: ChildProcess;
  readonly #output: OutputRing;
  #exit: ChildExit | undefined;
  /** Set when we sent the signal that ends it (a kill or a stop is not a crash). */
  #signalled = false;

  private constructor(child: ChildProcess, spawnedAtMs: number, output: OutputRing) {
    this.#child = child;
    this.#output = output;
    this.spawnedAtMs = spawnedAtMs;
    if (child.pid === undefined) throw new Error('spawn failed: no pid');
    this.pid = child.pid;
    this.exited = new Promise<ChildExit>((resolve) => {
      child.once('exit', (code, signal) => {
        live.delete(child);
        this.#exit = { code, signal };
        resolve(this.#exit);
      });
    });
  }

  static async spawn(options: ChildServiceOptions): Promise<ChildService> {
    if (!exitHookInstalled) {
      process.on('exit', killAllChildren);
      exitHookInstalled = true;
    }
    const output = new OutputRing(options.outputCharsMax ?? OUTPUT_CHARS_MAX);
    const spawnedAtMs = performance.now();
    const child = spawn(process.execPath, [options.entry], {
      cwd: options.cwd,
      env: options.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    // A spawn failure (ENOENT, EACCES) arrives as 'error' with no pid.
    if (child.pid === undefined) {
      const [error] = (await once(child, 'error')) as [Error];
      throw error;
    }
    live.add(child);
    child.stdout?.setEncoding('utf8').on('data', (d: string) => output.push(d));
    child.stderr?.setEncoding('utf8').on('data', (d: string) => output.push(d));
    return new ChildService(child, spawnedAtMs, output);
  }

  get alive(): boolean {
    return this.#exit === undefined;
  }

  /** How it exited, once it has. */
  get exit(): ChildExit | undefined {
    return this.#exit;
  }

  /** True when the child exited without us signalling it (a crash or an early exit). */
  get exitedUnasked(): boolean {
    return this.#exit !== undefined && !this.#signalled;
  }

  /** The last output (stderr and stdout interleaved), at most the configured size, or `charsMax`. */
  output(charsMax = Infinity): string {
    const text = this.#output.text();
    return text.length > charsMax ? text.slice(-charsMax) : text;
  }

  /**
   * Polls `url` until it answers 200; returns the milliseconds since the spawn.
   * Throws ChildExitedError if the child exits first, or an Error at the timeout.
   */
  async waitReady(options: WaitReadyOptions): Promise<number> {
    const pollMs = options.pollMs ?? 10;
    const probeTimeoutMs = options.probeTimeoutMs ?? 1_000;
    const deadlineMs = performance.now() + options.timeoutMs;
    for (;;) {
      options.signal?.throwIfAborted();
      if (this.#exit) throw new ChildExitedError(this.#exit, this.output(FAILURE_OUTPUT_CHARS));
      const status = await fetch(options.url, { signal: AbortSignal.timeout(probeTimeoutMs) })
        .then(async (res) => {
          await res.body?.cancel();
          return res.status;
        })
        .catch(() => 0);
      const atMs = performance.now();
      if (status === 200 && !this.#exit) return atMs - this.spawnedAtMs;
      if (atMs > deadlineMs) {
        throw new Error(
          `the service was not ready within ${options.timeoutMs} ms (last status ${status || 'no answer'}); last output:\n${this.output(FAILURE_OUTPUT_CHARS)}`,
        );
      }
      await sleep(pollMs, undefined, options.signal ? { signal: options.signal } : {});
    }
  }

  /** SIGKILL, then waits until the child is reaped (bounded). */
  async kill(reapTimeoutMs = 5_000): Promise<ChildExit> {
    this.#signalled = true;
    if (this.alive) this.#child.kill('SIGKILL');
    return this.#waitExit(reapTimeoutMs, 'SIGKILL');
  }

  /**
   * SIGTERM and a bounded wait for a graceful exit; past the bound, SIGKILL.
   * `graceful` is true only when the child exited by itself within the bound.
   */
  async stop(timeoutMs: number): Promise<{ exit: ChildExit; graceful: boolean }> {
    this.#signalled = true;
    if (!this.alive) return { exit: await this.exited, graceful: false };
    this.#child.kill('SIGTERM');
    const exit = await Promise.race([this.exited, sleep(timeoutMs, undefined, { ref: false })]);
    if (exit) return { exit, graceful: true };
    return { exit: await this.kill(), graceful: false };
  }

  async #waitExit(timeoutMs: number, what: string): Promise<ChildExit> {
    const exit = await Promise.race([this.exited, sleep(timeoutMs, undefined, { ref: false })]);
    if (!exit) throw new Error(`pid ${this.pid} not reaped within ${timeoutMs} ms of ${what}`);
    return exit;
  }
}

/** A TCP port free on `host` right now (the OS picks it; a small race with others is possible). */
export async function freePort(host: string): Promise<number> {
  const server = createServer();
  server.listen(0, host);
  await once(server, 'listening');
  const address = server.address();
  server.close();
  await once(server, 'close');
  if (!address || typeof address !== 'object') throw new Error('no port assigned');
  return address.port;
}
