/**
 * Shared pieces of the comparison arms: the result shape the bench prints,
 * latency percentiles, an isolated database per run, and the arrival clock
 * (a flood at t0 or a steady rate) that every arm replays the workload with.
 */
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { invariant } from '../../actors/errors.ts';
import { dropDatabase, freshDatabase } from '../support.ts';

export interface LatencyMs {
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
}

export interface ArmResult {
  arm: string;
  lines: number;
  fills: number;
  elapsedMs: number;
  linesPerSec: number;
  fillsPerSec: number;
  latencyMs?: LatencyMs;
  booksOk: boolean;
  checks: number;
  violations: string[];
  details: Record<string, unknown>;
}

export type Log = (line: string) => void;

/** Nearest-rank percentiles of `samplesMs`; undefined when there is no sample. */
export function percentiles(samplesMs: readonly number[]): LatencyMs | undefined {
  if (samplesMs.length === 0) return undefined;
  const sorted = Float64Array.from(samplesMs).sort();
  // Per mille, so the rank is integer arithmetic (99.9 / 100 * 1000 is not 999 in floats).
  const at = (perMille: number): number => {
    const rank = Math.ceil((perMille * sorted.length) / 1000);
    return round3(sorted[Math.min(sorted.length, Math.max(1, rank)) - 1] ?? Number.NaN);
  };
  const max = round3(sorted[sorted.length - 1] ?? Number.NaN);
  invariant(Number.isFinite(max), 'percentiles: samples must be finite numbers');
  return { p50: at(500), p90: at(900), p99: at(990), p999: at(999), max };
}

export const round3 = (x: number): number => Math.round(x * 1000) / 1000;

/** Events per second over `elapsedMs`, rounded; 0 when nothing was measured. */
export function perSec(count: number, elapsedMs: number): number {
  return elapsedMs > 0 ? Math.round((count * 1000) / elapsedMs) : 0;
}

/** `bf_arm_<tag>_<8 hex>`: unique per run, so concurrent runs never share or drop each other's. */
export function armDatabaseName(tag: string): string {
  invariant(/^[a-z][a-z0-9]{0,20}$/.test(tag), `armDatabaseName: bad tag ${tag}`);
  return `bf_arm_${tag}_${randomBytes(4).toString('hex')}`;
}

/**
 * Creates a database of our own, runs `work` against its URL, and drops it
 * afterwards (even on failure). Only the database created here is dropped.
 */
export async function withArmDatabase<T>(
  baseDatabaseUrl: string,
  tag: string,
  work: (url: string) => Promise<T>,
): Promise<T> {
  const name = armDatabaseName(tag);
  const url = await freshDatabase(baseDatabaseUrl, name);
  invariant(url.includes(name), 'withArmDatabase: the URL names the database created');
  try {
    return await work(url);
  } finally {
    await dropDatabase(baseDatabaseUrl, name);
  }
}

/** A pg pool on `url`; int8 stays text so the arms turn it into bigint, never a float. */
export function openPool(url: string, max: number): pg.Pool {
  invariant(max >= 1 && max <= 256, `openPool: max ${max} out of 1..256`);
  const pool = new pg.Pool({ connectionString: url, max });
  // An idle client's error (server restart) must not crash the process.
  pool.on('error', () => undefined);
  return pool;
}

/** Parses an int8/numeric column that pg returns as text. */
export function big(value: unknown): bigint {
  invariant(
    typeof value === 'string' || typeof value === 'number' || typeof value === 'bigint',
    `big: not an integer column: ${String(value)}`,
  );
  return BigInt(value);
}

/** SQLSTATE of a pg error, if any. */
export function sqlState(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

export const sleep = (ms: number): Promise<void> =>
  new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Replays arrivals: all `count` items at t0 (flood) or item i at
 * t0 + i / ratePerSec. Calls `arrive(i, arrivedAtMs)` in order, each exactly
 * once; resolves after the last arrival. Times are performance.now() ms.
 */
export async function replayArrivals(options: {
  count: number;
  t0Ms: number;
  arrivalRatePerSec?: number;
  arrive: (index: number, arrivedAtMs: number) => void;
}): Promise<void> {
  const { count, t0Ms, arrivalRatePerSec: rate, arrive } = options;
  invariant(count >= 0, 'replayArrivals: count must be >= 0');
  invariant(rate === undefined || rate > 0, `replayArrivals: rate ${rate} must be > 0`);
  if (rate === undefined) {
    for (let i = 0; i < count; i++) arrive(i, t0Ms);
    return;
  }
  const intervalMs = 1000 / rate;
  let next = 0;
  // Bounded: each turn releases every item due by now; there are `count` items.
  while (next < count) {
    const due = Math.min(count, Math.floor((performance.now() - t0Ms) / intervalMs) + 1);
    for (; next < due; next++) arrive(next, t0Ms + next * intervalMs);
    if (next < count) await sleep(Math.max(1, Math.min(20, intervalMs)));
  }
}
