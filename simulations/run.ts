/**
 * One end-to-end run on the local services: fresh database and streams, seed,
 * start the service in-process, publish the fills, wait until every fill is
 * allocated and every allocation is durable on its account, measure, check
 * the books, clean up.
 */
import type { Clock, AllocationObserver } from '../actors/protocol.ts';
import { BLOCK_ORDER_KIND, UNCONFIRMED_EVENT_TYPES } from '../actors/block-order/shell.ts';
import { Database } from '../persistence/db.ts';
import { keysWhoseLastEventIs } from '../persistence/journal.ts';
import { migrate } from '../persistence/migrate.ts';
import { seedReferenceData } from '../persistence/reference.ts';
import { loadConfig, type Config } from '../system/config.ts';
import { createLogger } from '../system/log.ts';
import { openJetStream } from '../system/jetstream.ts';
import { startService } from '../system/service.ts';
import { checkInvariants, type InvariantReport } from './invariants.ts';
import { generateScenario, type ScenarioOptions } from './scenario.ts';
import { deleteStreams, dropDatabase, freshDatabase } from './support.ts';

export interface RunOptions {
  scenario: Partial<ScenarioOptions>;
  namespace: string;
  databaseName: string;
  keepDatabase: boolean;
  publishInFlightMax: number;
  /** Fills per second; absent = as fast as JetStream takes them (a flood). */
  publishRatePerSec?: number;
  settleTimeoutMs: number;
  checkInvariants: boolean;
  env: Record<string, string | undefined>;
  progress: (line: string) => void;
}

export interface RunResult {
  invariantsOk: boolean;
  invariants?: InvariantReport;
  fills: number;
  accountEvents: number;
  fillsPerSec: number;
  accountEventsPerSec: number;
  latencyMs: { p50: number; p90: number; p99: number; max: number };
  elapsedMs: number;
  publishMs: number;
  journal: {
    events: number;
    batches: number;
    batchEventsLargest: number;
    conflicts: number;
    flushMsTotal: number;
  };
  consumer: { acked: number; duplicates: number; deadLettered: number; nakked: number };
  actorCrashes: number;
  config: Pick<
    Config,
    | 'partitions'
    | 'journalBatchEventsMax'
    | 'journalFlushIntervalMs'
    | 'consumerInFlightMax'
    | 'snapshotEveryEvents'
  >;
}

export const monotonicClock: Clock = { nowMs: () => performance.timeOrigin + performance.now() };

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return Math.round((sorted[i] ?? 0) * 100) / 100;
}

export async function runScenario(options: RunOptions): Promise<RunResult> {
  const base = loadConfig(options.env);
  const scenario = generateScenario(options.scenario);
  const fillTotal = scenario.publishOrder.length;
  options.progress(
    `scenario: ${scenario.seed.securities.length} securities, ${scenario.seed.accounts.length} accounts, ${scenario.seed.blockOrders.length} block orders, ${fillTotal} fills`,
  );

  const databaseUrl = await freshDatabase(base.databaseUrl, options.databaseName);
  const config: Config = { ...base, databaseUrl, namespace: options.namespace };
  const seedDb = await Database.open({
    url: databaseUrl,
    poolMax: 2,
    retriesMax: config.dbRetriesMax,
    retryBackoffMs: config.dbRetryBackoffMs,
  });
  try {
    await migrate(seedDb);
    await seedReferenceData(seedDb, scenario.seed);
  } finally {
    await seedDb.close();
  }

  const publishedAt = new Map<string, number>();
  const latencies: number[] = [];
  let settled = 0;
  let accountEvents = 0;
  let lastSettledAt = 0;
  let onAllSettled: (() => void) | undefined;
  const allSettled = new Promise<void>((resolve) => (onAllSettled = resolve));
  const observer: AllocationObserver = {
    fillSettled(blockOrderId, seq, atMs) {
      const key = `${blockOrderId}#${seq}`;
      const t0 = publishedAt.get(key);
      if (t0 === undefined) return; // a re-report after a restart, or not ours
      publishedAt.delete(key);
      latencies.push(atMs - t0);
      lastSettledAt = atMs;
      if (++settled === fillTotal) onAllSettled?.();
    },
    accountLineDurable() {
      accountEvents++;
    },
  };

  // A stale stream of an aborted earlier run must not leak old fills into this one.
  const nats = await openJetStream(config, 'blockfill-setup');
  try {
    await deleteStreams(nats.jsm, options.namespace);
  } finally {
    await nats.nc.close();
  }

  const log = createLogger(config.logLevel === 'info' ? 'warn' : config.logLevel, {
    service: 'blockfill',
  });
  const service = await startService(config, { observer, clock: monotonicClock, log });
  try {
    const startedAt = monotonicClock.nowMs();
    // Publish with a bounded number of unacknowledged publishes; launches
    // happen in stream order, so each order's fills reach JetStream in sequence.
    let next = 0;
    const inFlight = new Set<Promise<void>>();
    const rate = options.publishRatePerSec;
    const publishAll = async () => {
      while (next < fillTotal) {
        const fill = scenario.publishOrder[next];
        if (!fill) break;
        if (rate !== undefined) {
          const dueMs = startedAt + (next * 1000) / rate;
          const waitMs = dueMs - monotonicClock.nowMs();
          if (waitMs > 1) await new Promise((resolve) => setTimeout(resolve, waitMs));
        }
        next++;
        publishedAt.set(`${fill.blockOrderId}#${fill.seq}`, monotonicClock.nowMs());
        const p = service.publisher.publishFill(fill).finally(() => inFlight.delete(p));
        inFlight.add(p);
        if (inFlight.size >= options.publishInFlightMax) await Promise.race(inFlight);
      }
      await Promise.all(inFlight);
    };
    const progressTimer = setInterval(() => {
      options.progress(
        `  published ${Math.min(next, fillTotal)}/${fillTotal}, settled ${settled}, account events ${accountEvents}`,
      );
    }, 2_000);
    let publishMs = 0;
    try {
      await publishAll();
      publishMs = monotonicClock.nowMs() - startedAt;
      const timeout = new Promise<'timeout'>((resolve) =>
        setTimeout(() => resolve('timeout'), options.settleTimeoutMs).unref(),
      );
      if ((await Promise.race([allSettled.then(() => 'done' as const), timeout])) === 'timeout') {
        throw new Error(
          `only ${settled}/${fillTotal} fills settled within ${options.settleTimeoutMs} ms`,
        );
      }
    } finally {
      clearInterval(progressTimer);
    }
    const elapsedMs = lastSettledAt - startedAt;
    // Let the last watermarks land before reading the books.
    await waitForConfirmations(service.db, options.settleTimeoutMs);
    await service.journal.drain();

    let invariants: InvariantReport | undefined;
    if (options.checkInvariants) {
      options.progress('checking invariants against the journal and the live actors ...');
      invariants = await checkInvariants({
        db: service.db,
        app: service.app,
        seed: scenario.seed,
        fillsByOrder: scenario.fillsByOrder,
        idPrefix: scenario.options.idPrefix,
      });
    }
    latencies.sort((a, b) => a - b);
    const seconds = elapsedMs / 1000;
    return {
      invariantsOk: invariants ? invariants.ok : true,
      invariants,
      fills: settled,
      accountEvents,
      fillsPerSec: Math.round(settled / seconds),
      accountEventsPerSec: Math.round(accountEvents / seconds),
      latencyMs: {
        p50: percentile(latencies, 50),
        p90: percentile(latencies, 90),
        p99: percentile(latencies, 99),
        max: percentile(latencies, 100),
      },
      elapsedMs: Math.round(elapsedMs),
      publishMs: Math.round(publishMs),
      journal: { ...service.journal.stats },
      consumer: { ...service.consumer.stats },
      actorCrashes: service.accounts.crashCount + service.blockOrders.crashCount,
      config: {
        partitions: config.partitions,
        journalBatchEventsMax: config.journalBatchEventsMax,
        journalFlushIntervalMs: config.journalFlushIntervalMs,
        consumerInFlightMax: config.consumerInFlightMax,
        snapshotEveryEvents: config.snapshotEveryEvents,
      },
    };
  } finally {
    const jsm = service.nats.jsm;
    await deleteStreams(jsm, options.namespace).catch(() => undefined);
    await service.stop();
    if (!options.keepDatabase) await dropDatabase(base.databaseUrl, options.databaseName);
  }
}

/** Waits until no block order's journal ends with unconfirmed allocations. */
async function waitForConfirmations(db: Database, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const keys = await keysWhoseLastEventIs(db, `${BLOCK_ORDER_KIND}-`, UNCONFIRMED_EVENT_TYPES);
    if (keys.length === 0) return;
    if (Date.now() > deadline) {
      throw new Error(`${keys.length} block orders still have unconfirmed allocations`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
