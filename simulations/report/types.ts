/**
 * The simulation report (reports/<run-id>/report.json): its type, a JSON
 * Schema for it, and a validator that names every bad field. Numbers are JS
 * numbers; amounts that could exceed 2^53 are decimal strings, so the file
 * never needs bigints.
 */
import { Type } from 'typebox';
import type { Static, TSchema } from 'typebox';
import { Value } from 'typebox/value';

export interface SeriesPoint {
  tSec: number; // seconds since the run started (bucket start)
  fillsPerSec: number; // fills settled in this bucket
  linesPerSec: number; // account lines durable in this bucket
  p50Ms: number | null; // latency percentiles of fills settled in this bucket
  p99Ms: number | null;
  lagFills: number; // published but not yet settled, at the end of the bucket
}
export interface FairnessFigures {
  orders: number;
  accounts: number; // account-order pairs measured
  maxPriceDeviationBps: number;
  p99PriceDeviationBps: number;
  maxFillRateDeviation: number; // absolute difference of fill rates, 0..1
  residueMinor: string; // rounding residue in cents (avg-price), "0" for pro-rata
  histogram: { upperBps: number[]; counts: number[] }; // price deviation distribution
}
export interface RunReport {
  schemaVersion: 1;
  runId: string;
  scenario: string;
  startedAt: string;
  finishedAt: string; // ISO
  settings: Record<string, string | number | boolean | null>;
  machine: {
    hostname: string;
    platform: string;
    arch: string;
    cpus: number;
    cpuModel: string;
    totalMemBytes: number;
    node: string;
    loadAvg: number[];
  };
  counts: {
    accounts: number;
    orders: number;
    fills: number;
    busts: number;
    corrections: number;
    cancels: number;
    lines: number;
    deadLettered: number;
  };
  throughput: { elapsedMs: number; fillsPerSec: number; linesPerSec: number };
  latency: { p50Ms: number; p90Ms: number; p99Ms: number; maxMs: number };
  series: SeriesPoint[];
  fairness: {
    policy: 'pro-rata' | 'avg-price';
    /** The run's policy measured on the journals' books (the other by replaying its rule). */
    measuredOnBooks: boolean;
    byPolicy: { 'pro-rata': FairnessFigures; 'avg-price': FairnessFigures };
  };
  rebalance: {
    models: Array<{
      model: string;
      accounts: number;
      driftBeforeBps: { p50: number; p90: number; max: number };
      driftAfterBps: { p50: number; p90: number; max: number };
    }>;
  };
  invariants: {
    ok: boolean;
    checks: Array<{ name: string; ok: boolean; detail: string }>;
    violations: string[];
  };
  peakRssBytes: number;
  /** Memory at the end of each phase of the run, in order (where a large run's memory goes). */
  memory: MemoryPoint[];
}

export interface MemoryPoint {
  phase: string; // built, seeded, published, settled, checked
  rssBytes: number; // resident set at the end of the phase
  heapUsedBytes: number; // V8 heap in use then
  externalBytes: number; // outside the heap: Buffers (journal payloads, messages) and the like
  peakRssBytes: number; // the process's largest resident set so far
}

const Count = Type.Integer({ minimum: 0 });
const NonNegative = Type.Number({ minimum: 0 });
const MaybeMs = Type.Union([NonNegative, Type.Null()]);
const DecimalInteger = Type.String({ pattern: '^-?(0|[1-9][0-9]*)$' });
// An ISO-8601 instant as Date#toISOString writes it (offsets allowed too).
const IsoInstant = Type.String({
  pattern: '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(\\.\\d+)?(Z|[+-]\\d{2}:\\d{2})$',
});
const Percentiles = Type.Object({ p50: Type.Number(), p90: Type.Number(), max: Type.Number() });

export const SeriesPointSchema = Type.Object({
  tSec: NonNegative,
  fillsPerSec: NonNegative,
  linesPerSec: NonNegative,
  p50Ms: MaybeMs,
  p99Ms: MaybeMs,
  lagFills: Count,
});

export const FairnessFiguresSchema = Type.Object({
  orders: Count,
  accounts: Count,
  maxPriceDeviationBps: NonNegative,
  p99PriceDeviationBps: NonNegative,
  maxFillRateDeviation: Type.Number({ minimum: 0, maximum: 1 }),
  residueMinor: DecimalInteger,
  histogram: Type.Object({ upperBps: Type.Array(Type.Number()), counts: Type.Array(Count) }),
});

const MachineSchema = Type.Object({
  hostname: Type.String(),
  platform: Type.String(),
  arch: Type.String(),
  cpus: Count,
  cpuModel: Type.String(),
  totalMemBytes: Count,
  node: Type.String(),
  loadAvg: Type.Array(Type.Number()),
});

const CountsSchema = Type.Object({
  accounts: Count,
  orders: Count,
  fills: Count,
  busts: Count,
  corrections: Count,
  cancels: Count,
  lines: Count,
  deadLettered: Count,
});

const RebalanceModelSchema = Type.Object({
  model: Type.String(),
  accounts: Count,
  driftBeforeBps: Percentiles,
  driftAfterBps: Percentiles,
});

const InvariantsSchema = Type.Object({
  ok: Type.Boolean(),
  checks: Type.Array(
    Type.Object({ name: Type.String(), ok: Type.Boolean(), detail: Type.String() }),
  ),
  violations: Type.Array(Type.String()),
});

export const RunReportSchema = Type.Object({
  schemaVersion: Type.Literal(1),
  runId: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$' }),
  scenario: Type.String(),
  startedAt: IsoInstant,
  finishedAt: IsoInstant,
  settings: Type.Record(
    Type.String(),
    Type.Union([Type.String(), Type.Number(), Type.Boolean(), Type.Null()]),
  ),
  machine: MachineSchema,
  counts: CountsSchema,
  throughput: Type.Object({
    elapsedMs: NonNegative,
    fillsPerSec: NonNegative,
    linesPerSec: NonNegative,
  }),
  latency: Type.Object({
    p50Ms: NonNegative,
    p90Ms: NonNegative,
    p99Ms: NonNegative,
    maxMs: NonNegative,
  }),
  series: Type.Array(SeriesPointSchema),
  fairness: Type.Object({
    policy: Type.Union([Type.Literal('pro-rata'), Type.Literal('avg-price')]),
    measuredOnBooks: Type.Boolean(),
    byPolicy: Type.Object({
      'pro-rata': FairnessFiguresSchema,
      'avg-price': FairnessFiguresSchema,
    }),
  }),
  rebalance: Type.Object({ models: Type.Array(RebalanceModelSchema) }),
  invariants: InvariantsSchema,
  peakRssBytes: Count,
  memory: Type.Array(
    Type.Object({
      phase: Type.String({ minLength: 1 }),
      rssBytes: Count,
      heapUsedBytes: Count,
      externalBytes: Count,
      peakRssBytes: Count,
    }),
  ),
});

/** `/latency/p99Ms` -> `latency.p99Ms`; the root is `report`. */
function fieldName(pointer: string, child?: string): string {
  const parts = pointer.split('/').slice(1);
  if (child !== undefined) parts.push(child);
  return parts.length === 0 ? 'report' : parts.map((p) => p.replace(/~1/g, '/')).join('.');
}

/** Values JSON cannot carry faithfully: bigints (throw) and NaN/Infinity (become null). */
function unserializable(value: unknown, path: string, out: string[]): void {
  if (typeof value === 'bigint') out.push(`${path}: is a bigint (use a number or decimal string)`);
  else if (typeof value === 'number' && !Number.isFinite(value))
    out.push(`${path}: is ${value} (not representable in JSON)`);
  else if (Array.isArray(value)) value.forEach((v, i) => unserializable(v, `${path}.${i}`, out));
  else if (value !== null && typeof value === 'object')
    for (const [k, v] of Object.entries(value)) unserializable(v, `${path}.${k}`, out);
}

function schemaProblems(schema: TSchema, value: unknown): string[] {
  const problems: string[] = [];
  for (const error of Value.Errors(schema, value)) {
    // The branches of a union repeat what its anyOf error says; "schema is false" repeats additionalProperties.
    if (error.schemaPath.includes('/anyOf/') || error.keyword === 'boolean') continue;
    if (error.keyword === 'required') {
      const missing = (error.params as { requiredProperties?: string[] }).requiredProperties ?? [];
      for (const name of missing)
        problems.push(`${fieldName(error.instancePath, name)}: is required`);
      continue;
    }
    problems.push(`${fieldName(error.instancePath)}: ${error.message}`);
  }
  return problems;
}

/** Every problem with `value` as a RunReport, each naming its field; empty when valid. */
export function validateReport(value: unknown): string[] {
  const problems = [...schemaProblems(RunReportSchema, value)];
  unserializable(value, 'report', problems);
  return [...new Set(problems)];
}

// Compile-time proof that the schema describes exactly the RunReport type.
type Equal<A, B> =
  (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
type Assert<T extends true> = T;
type _SchemaMatchesType = [
  Assert<Equal<Static<typeof SeriesPointSchema>, SeriesPoint>>,
  Assert<Equal<Static<typeof FairnessFiguresSchema>, FairnessFigures>>,
  Assert<Equal<Static<typeof RunReportSchema>, RunReport>>,
];
