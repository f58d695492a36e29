/**
 * What `npm run simulate` reports: the run's RunReport (report.json and
 * report.html, simulations/report/) and the one-object JSON summary, built
 * from the scenario, the run's result and the fairness of both allocation
 * policies on the day's final tape.
 */
import type { BookingCheck } from './booking-check.ts';
import type { AveragePricePolicy } from '../actors/domain/average-price.ts';
import { invariant } from '../actors/errors.ts';
import { percentiles } from './arms/common.ts';
import { counterfactualFairness, type TapeOrder } from './fairness.ts';
import type { RunReport } from './report/types.ts';
import { machineInfo } from './report/write.ts';
import type { RunResult } from './run.ts';
import { entriesByOrderOf, liveFillsOf } from './scenario.ts';
import type { TradingDayScenario } from './trading-day/scenario.ts';

export type AllocationPolicy = 'pro-rata' | 'avg-price';

/**
 * The avg-price triggers the report measures: a release every 30 minutes of
 * market time (and at completion), as a desk that averages per half hour would.
 */
export const REPORTED_AVG_PRICE = { everyFills: null, everyMarketMs: 30 * 60_000 } as const;

/**
 * Each order's fills as the day ended: busted fills gone, corrected ones at
 * their corrected quantity and price, in seq order. Both policies are
 * measured on this tape with their pure rules (fairness.ts).
 */
export function* finalTape(day: TradingDayScenario): Generator<TapeOrder> {
  const { scenario } = day;
  const byOrder = entriesByOrderOf(scenario);
  const lots = new Map(scenario.seed.securities.map((s) => [s.id, s.lotSize]));
  for (const order of scenario.seed.blockOrders) {
    const lotSize = lots.get(order.securityId);
    invariant(lotSize !== undefined, `${order.id}: no lot size`);
    const fills = liveFillsOf(byOrder.get(order.id) ?? []);
    yield { def: { lotSize, side: order.side, targets: order.targets }, fills };
  }
}

/** p50, p90 and max of a sample (nearest rank), 0 for none. */
function spread(values: readonly number[]): { p50: number; p90: number; max: number } {
  const p = percentiles(values);
  return p ? { p50: p.p50, p90: p.p90, max: p.max } : { p50: 0, p90: 0, max: 0 };
}

export interface ReportInput {
  runId: string;
  scenarioName: string;
  policy: AllocationPolicy;
  startedAt: Date;
  finishedAt: Date;
  settings: RunReport['settings'];
  day: TradingDayScenario;
  result: RunResult;
  peakRssBytes: number;
  /** Memory after each phase: the scenario built, then the run's (RunResult.memory). */
  memory: RunReport['memory'];
  /** The avg-price triggers: the actors' under --policy avg-price, else the replay's. */
  avgPrice: AveragePricePolicy;
}

export function buildReport(input: ReportInput): RunReport {
  const { day, result } = input;
  // The run's policy is measured on the books it left; the other by replaying its pure rule.
  const books = result.invariants?.booksFairness;
  const measured = (policy: AllocationPolicy) =>
    books && policy === input.policy
      ? books
      : counterfactualFairness({ orders: finalTape(day), policy, avgPrice: input.avgPrice });
  const fairness = {
    policy: input.policy,
    measuredOnBooks: books !== undefined,
    byPolicy: { 'pro-rata': measured('pro-rata'), 'avg-price': measured('avg-price') },
  };
  const models = [...day.rebalance.driftByModel.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([model, drift]) => ({
      model,
      accounts: drift.before.length,
      driftBeforeBps: spread(drift.before),
      driftAfterBps: spread(drift.after),
    }));
  return {
    schemaVersion: 1,
    runId: input.runId,
    scenario: input.scenarioName,
    startedAt: input.startedAt.toISOString(),
    finishedAt: input.finishedAt.toISOString(),
    settings: input.settings,
    machine: machineInfo(),
    counts: countsOf(day, result),
    throughput: {
      elapsedMs: result.elapsedMs,
      fillsPerSec: result.fillsPerSec,
      linesPerSec: result.linesPerSec,
    },
    latency: {
      p50Ms: result.latencyMs.p50,
      p90Ms: result.latencyMs.p90,
      p99Ms: result.latencyMs.p99,
      maxMs: result.latencyMs.max,
    },
    series: result.series,
    fairness,
    rebalance: { models },
    invariants: invariantsOf(result),
    peakRssBytes: input.peakRssBytes,
    memory: input.memory,
  };
}

function countsOf(day: TradingDayScenario, result: RunResult): RunReport['counts'] {
  return {
    accounts: day.rebalance.accountsTrading,
    orders: day.rebalance.orders,
    fills: day.scenario.publishOrder.length,
    ...day.amendments,
    lines: result.lines,
    deadLettered: result.consumer.deadLettered,
  };
}

function invariantsOf(result: RunResult): RunReport['invariants'] {
  const r = result.invariants;
  if (!r) return { ok: result.invariantsOk, checks: [], violations: [] };
  const named = (name: string, ok: boolean, detail: string) => ({ name, ok, detail });
  return {
    ok: r.ok,
    checks: [
      named('books exact', r.ok, `${r.checks} checks, ${r.violations.length} violations`),
      named('fills', true, `${r.fills} allocated, ${r.allocationLines} lines`),
      named(
        'amendments reflected',
        r.ok,
        `${r.busts} busts, ${r.corrections} corrections, ${r.cancels} cancels`,
      ),
      named(
        'suspense',
        true,
        `${r.suspenseOpenLines} lines open (${r.suspenseOpenQuantity} shares)`,
      ),
      named(
        'negative positions',
        true,
        `${r.negativePositionsFlagged} flagged by the written rule`,
      ),
    ],
    violations: r.violations,
  };
}

/** The one JSON object `--json` prints: the keys first. */
export function summaryOf(
  report: RunReport,
  extra: {
    reportPath: string;
    pace: unknown;
    databaseName: string | null;
    namespace: string | null;
    booking?: BookingCheck | undefined;
  },
) {
  const chosen = report.fairness.byPolicy[report.fairness.policy];
  const other = report.fairness.policy === 'pro-rata' ? 'avg-price' : 'pro-rata';
  const brief = (f: typeof chosen) => ({
    maxPriceDeviationBps: f.maxPriceDeviationBps,
    p99PriceDeviationBps: f.p99PriceDeviationBps,
    maxFillRateDeviation: f.maxFillRateDeviation,
    residueMinor: f.residueMinor,
  });
  return {
    scenario: report.scenario,
    runId: report.runId,
    pace: extra.pace,
    invariantsOk: report.invariants.ok,
    accounts: report.counts.accounts,
    orders: report.counts.orders,
    fills: report.counts.fills,
    busts: report.counts.busts,
    corrections: report.counts.corrections,
    cancels: report.counts.cancels,
    lines: report.counts.lines,
    deadLettered: report.counts.deadLettered,
    linesPerSec: report.throughput.linesPerSec,
    fillsPerSec: report.throughput.fillsPerSec,
    p50Ms: report.latency.p50Ms,
    p99Ms: report.latency.p99Ms,
    fairness: {
      policy: report.fairness.policy,
      [report.fairness.policy]: brief(chosen),
      [other]: brief(report.fairness.byPolicy[other]),
    },
    peakRssBytes: report.peakRssBytes,
    violations: report.invariants.violations,
    ...(extra.booking
      ? {
          booking: {
            batches: extra.booking.batches,
            lines: extra.booking.lines,
            accounts: extra.booking.accounts,
            matchesBooks: extra.booking.matchesBooks,
          },
          reconciliation: {
            clean: extra.booking.reconciliationClean,
            breaks: extra.booking.reconciliationBreaks,
          },
        }
      : {}),
    reportPath: extra.reportPath,
    databaseName: extra.databaseName,
    namespace: extra.namespace,
  };
}
