/**
 * `npm run bench -- --sweep`: throughput and p99 against one dimension at a
 * time, and where each curve bends:
 * - fan-out: 1, 10 and 100 accounts per fill;
 * - accounts: 100 (hot), 1k, 100k and 1M, lock per fill beside blockfill at
 *   100 and 1k;
 * - partitions: 1, 2, 4 and 8.
 *
 * Each point is a saturation run (a backlog at t0: lines/s) and a steady run
 * at half that point's saturation rate (p99 from publish to all lines
 * durable). Books are checked exactly on every run up to 100k accounts; at
 * 1M accounts the journal-and-API check would take longer than the run and
 * is skipped (said in the output).
 */
import type { ArmResult } from './arms/common.ts';
import { runLockPerFill } from './arms/lock-per-fill.ts';
import { runScenario, type RunResult } from './run.ts';
import { generateScenario, type ScenarioOptions } from './scenario.ts';

export interface SweepPoint {
  series: 'fanOut' | 'accounts' | 'partitions';
  x: number;
  linesPerSec: number;
  fillsPerSec: number;
  p99Ms: number;
  steadyFillsPerSec: number;
  booksChecked: boolean;
  lockPerFillLinesPerSec?: number;
  /** Why the point could not be measured, if it could not (the sweep goes on). */
  error?: string;
}

export interface SweepOptions {
  quick: boolean;
  seed: number;
  baseDatabaseUrl: string;
  lock: { workers: number; mode: 'read-committed' | 'serializable' };
  say: (line: string) => void;
}

interface PointSpec {
  series: SweepPoint['series'];
  x: number;
  scenario: Partial<ScenarioOptions>;
  env?: Record<string, string>;
  lockPerFill?: boolean;
}

function specs(o: SweepOptions): PointSpec[] {
  const fills = o.quick ? 1_000 : 20_000;
  const base = { seed: o.seed, fills };
  const fanOut = [1, 10, 100].map((k) => ({
    series: 'fanOut' as const,
    x: k,
    scenario: { ...base, accountsPerOrderMin: k, accountsPerOrderMax: k },
  }));
  const accountCounts = o.quick ? [100, 1_000, 10_000] : [100, 1_000, 100_000, 1_000_000];
  const accounts = accountCounts.map((n) => ({
    series: 'accounts' as const,
    x: n,
    // Enough orders that every account is served: ~10 accounts per order.
    scenario: {
      ...base,
      accounts: n,
      blockOrders: Math.max(200, Math.ceil(n / 10)),
      fills: Math.max(fills, Math.ceil(n / 10)),
      accountsPerOrderMin: Math.min(5, n),
      accountsPerOrderMax: Math.min(15, n),
    },
    lockPerFill: n <= 1_000,
  }));
  const partitions = [1, 2, 4, 8].map((p) => ({
    series: 'partitions' as const,
    x: p,
    scenario: base,
    env: { PARTITIONS: String(p) },
  }));
  return [...fanOut, ...accounts, ...partitions];
}

async function blockfill(
  spec: PointSpec,
  o: SweepOptions,
  rate: number | undefined,
  check: boolean,
): Promise<RunResult> {
  const scenario = generateScenario(
    rate === undefined
      ? spec.scenario
      : { ...spec.scenario, fills: Math.ceil(rate * (o.quick ? 2 : 10)) },
  );
  return runScenario({
    scenario,
    tag: 'sweep',
    keepDatabase: false,
    publishInFlightMax: 512,
    prepublish: rate === undefined,
    ...(rate === undefined
      ? {}
      : { publishRatePerSec: rate, latencyFromFill: Math.floor(scenario.publishOrder.length / 4) }),
    settleTimeoutMs: 1_800_000,
    checkInvariants: check,
    env: { ...process.env, ...spec.env },
    progress: () => {},
  });
}

async function point(spec: PointSpec, o: SweepOptions): Promise<SweepPoint> {
  const check = (spec.scenario.accounts ?? 2_000) <= 100_000;
  o.say(
    `sweep ${spec.series} = ${spec.x}: saturation${check ? '' : ' (books not checked at this size)'}`,
  );
  const flood = await blockfill(spec, o, undefined, check);
  if (!flood.invariantsOk) throw new Error(`sweep ${spec.series}=${spec.x}: books violated`);
  const steadyRate = Math.max(50, Math.floor(flood.fillsPerSec / 2));
  o.say(`sweep ${spec.series} = ${spec.x}: steady at ${steadyRate} fills/s`);
  const steady = await blockfill(spec, o, steadyRate, check);
  let lock: ArmResult | undefined;
  if (spec.lockPerFill) {
    lock = await runLockPerFill({
      baseDatabaseUrl: o.baseDatabaseUrl,
      scenario: generateScenario(spec.scenario),
      ...o.lock,
      log: () => {},
    });
    if (!lock.booksOk) throw new Error(`sweep lock per fill at ${spec.x}: books violated`);
  }
  return {
    series: spec.series,
    x: spec.x,
    linesPerSec: flood.linesPerSec,
    fillsPerSec: flood.fillsPerSec,
    p99Ms: steady.latencyMs.p99,
    steadyFillsPerSec: steady.fillsPerSec,
    booksChecked: check,
    ...(lock ? { lockPerFillLinesPerSec: lock.linesPerSec } : {}),
  };
}

/**
 * Where a curve bends. Throughput: on an axis that should add capacity
 * (fan-out, partitions) the first step that gains less than 10 %; on an axis
 * that should not cost any (accounts) the first step that loses more than
 * 10 %. p99: the first step where it more than doubles.
 */
export function bendOf(points: readonly SweepPoint[], expectGrowth: boolean): string {
  const bent = (gain: number) => (expectGrowth ? gain < 1.1 : gain < 0.9);
  let throughput = expectGrowth ? 'throughput keeps rising' : 'throughput holds';
  let latency = 'p99 never doubles';
  for (let i = points.length - 1; i >= 1; i--) {
    const prev = points[i - 1];
    const cur = points[i];
    if (!prev || !cur) continue;
    const gain = cur.linesPerSec / Math.max(1, prev.linesPerSec);
    if (bent(gain))
      throughput = `throughput bends from ${prev.x} to ${cur.x} (×${gain.toFixed(2)})`;
    if (cur.p99Ms > 2 * Math.max(1, prev.p99Ms))
      latency = `p99 more than doubles from ${prev.x} to ${cur.x} (${prev.p99Ms} → ${cur.p99Ms} ms)`;
  }
  return `${throughput}; ${latency}`;
}

export async function runSweep(o: SweepOptions) {
  const points: SweepPoint[] = [];
  for (const spec of specs(o)) {
    try {
      points.push(await point(spec, o));
    } catch (error) {
      const message = (error as Error).message;
      o.say(`sweep ${spec.series} = ${spec.x} failed: ${message}`);
      const empty = { linesPerSec: 0, fillsPerSec: 0, p99Ms: 0, steadyFillsPerSec: 0 };
      points.push({
        series: spec.series,
        x: spec.x,
        ...empty,
        booksChecked: false,
        error: message,
      });
    }
  }
  const series = (name: SweepPoint['series']) =>
    points.filter((p) => p.series === name && p.error === undefined);
  const bends = {
    fanOut: bendOf(series('fanOut'), true),
    accounts: bendOf(series('accounts'), false),
    partitions: bendOf(series('partitions'), true),
  };
  o.say('');
  o.say(
    `${'series'.padEnd(11)}${'x'.padStart(9)}${'lines/s'.padStart(10)}${'fills/s'.padStart(9)}${'p99 ms'.padStart(9)}  lock per fill lines/s`,
  );
  for (const p of points) {
    o.say(
      `${p.series.padEnd(11)}${p.x.toLocaleString('en-US').padStart(9)}${p.linesPerSec.toLocaleString('en-US').padStart(10)}${p.fillsPerSec.toLocaleString('en-US').padStart(9)}${String(p.p99Ms).padStart(9)}  ${p.lockPerFillLinesPerSec?.toLocaleString('en-US') ?? '-'}${p.error ? ` FAILED: ${p.error}` : p.booksChecked ? '' : ' (books not checked)'}`,
    );
  }
  for (const [name, bend] of Object.entries(bends)) o.say(`${name}: ${bend}`);
  return { points, bends };
}
