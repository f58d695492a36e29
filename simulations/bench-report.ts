/**
 * What the benchmark records beside its figures (the machine, versions) and
 * how it prints them.
 */
import os from 'node:os';
import { withMaintenance } from './support.ts';
import { loadConfig } from '../system/config.ts';
import { openJetStream } from '../system/jetstream.ts';

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return 0;
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  const value =
    sorted.length % 2 === 1
      ? (sorted[mid] ?? 0)
      : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
  return Math.round(value * 100) / 100;
}

export async function machineInfo(databaseUrl: string) {
  let postgres = 'unknown';
  let synchronousCommit = 'unknown';
  // The server, not DATABASE_URL's database (each run makes its own; that one may not exist).
  await withMaintenance(databaseUrl, async (db) => {
    const [v] = await db.query<{ version: string }>('SELECT version() AS version');
    const [s] = await db.query<{ synchronous_commit: string }>('SHOW synchronous_commit');
    postgres = v?.version ?? postgres;
    synchronousCommit = s?.synchronous_commit ?? synchronousCommit;
  });
  const config = loadConfig(process.env);
  const nats = await openJetStream(config, 'blockfill-bench-info');
  const natsVersion = nats.nc.info?.version ?? 'unknown';
  await nats.nc.close();
  return {
    cores: os.cpus().length,
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    memoryBytes: os.totalmem(),
    node: process.version,
    postgres,
    synchronousCommit,
    nats: natsVersion,
    platform: `${os.platform()} ${os.release()}`,
  };
}

export type Row = [
  name: string,
  linesPerSec: number,
  fillsPerSec: number | null,
  p50Ms: number | null,
  p99Ms: number | null,
  note: string,
];

const fmt = (x: number | null) => (x === null ? '-' : x.toLocaleString('en-US'));

export function printTable(
  say: (line: string) => void,
  rows: Row[],
  report: {
    steady: {
      fillsPerSec: number;
      linesPerFill: number;
      p50Ms: number;
      p99Ms: number;
      p999Ms: number;
    };
    batchCycle: { steadyP99Ms: number; cycleMs: number };
    hot: { accounts: number; blockfillLinesPerSec: number; lockPerFillLinesPerSec: number };
    ratios: Record<string, number>;
    settings: { runs: number };
  },
): void {
  say(
    `medians of ${report.settings.runs} run(s); lines = allocation lines durably applied to accounts`,
  );
  say(
    `${'design'.padEnd(15)}${'lines/s'.padStart(12)}${'fills/s'.padStart(10)}${'p50 ms'.padStart(10)}${'p99 ms'.padStart(10)}  how`,
  );
  for (const [name, lps, fps, p50, p99, note] of rows) {
    say(
      `${name.padEnd(15)}${fmt(lps).padStart(12)}${fmt(fps).padStart(10)}${fmt(p50).padStart(10)}${fmt(p99).padStart(10)}  ${note}`,
    );
  }
  const s = report.steady;
  say('');
  say(
    `steady ${s.fillsPerSec} fills/s × ${s.linesPerFill} lines: p50 ${s.p50Ms} ms, p99 ${s.p99Ms} ms, p999 ${s.p999Ms} ms (publish → all lines durable)`,
  );
  say(
    `batch cycle at the same rate: p99 ${report.batchCycle.steadyP99Ms} ms (cycle ${report.batchCycle.cycleMs} ms)`,
  );
  say(
    `${report.hot.accounts} hot accounts: blockfill ${fmt(report.hot.blockfillLinesPerSec)} lines/s, lock per fill ${fmt(report.hot.lockPerFillLinesPerSec)} lines/s`,
  );
  say(
    `ratios: ${Object.entries(report.ratios)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ')}`,
  );
}
