/**
 * The composition root: wiring, then an ordered list of start steps, each
 * with the stop that undoes it. Stop runs the stops in reverse order, each
 * bounded in time and each run even if an earlier one failed; a failed start
 * stops what it had started.
 *
 * Start: NATS (streams, consumers) connects while the database, the journal
 * and the actors start; then HTTP, then consuming, with the start-up sweep
 * beside it. Stop: stop consuming (every fill in flight is answered, its
 * event durable, and acked) → drain the journal → flush NATS (the acks) →
 * HTTP → actors → journal → database → NATS.
 */
import type { FastifyInstance } from 'fastify';
import { isAmendment, type Entry } from '../actors/block-order/decider.ts';
import {
  noopObserver,
  type AllocateFillReply,
  type AllocationObserver,
  type Clock,
  type ReferencePort,
} from '../actors/protocol.ts';
import { buildApp } from '../api/app.ts';
import type { InspectionPort } from '../api/ports.ts';
import { Database } from '../persistence/db.ts';
import type { Journal } from '../persistence/journal.ts';
import { assertMigrated } from '../persistence/migrate.ts';
import { tookLonger, withTimeout } from '../persistence/timeouts.ts';
import { SqlReferenceData } from '../persistence/reference.ts';
import { SqlJournal } from '../persistence/sql-journal.ts';
import { startActors, type Actors } from './actors.ts';
import { natsStartupFailure, streamNames, type Config } from './config.ts';
import { join } from 'node:path';
import { actorAdmin } from './actor-admin.ts';
import { bookingAdapter } from './booking.ts';
import { reconcile } from './reconciliation.ts';
import { deadLetters } from './dead-letters.ts';
import { executionsAdapter } from './execution-views.ts';
import { executionReport } from './execution-report.ts';
import { EventFeed } from './event-feed.ts';
import { inspectionAdapter } from './inspection.ts';
import {
  ensureConsumers,
  ensureStreams,
  FillConsumer,
  fillPublisher,
  openJetStream,
  type NatsHandles,
  type Publisher,
} from './jetstream.ts';
import { Faults } from './faults.ts';
import { createLogger, type Logger } from './log.ts';
import { Metrics, type MetricsSources } from './metrics.ts';
import { wakeUnconfirmed } from './startup-sweep.ts';

export interface ServiceOptions {
  observer?: AllocationObserver;
  clock?: Clock;
  log?: Logger;
  /** Listen on config.httpHost:httpPort (npm start); tests use app.inject instead. */
  listen?: boolean;
  /** Wrap the reference port (tests use this to inject faults). */
  reference?: (base: ReferencePort) => ReferencePort;
}

export interface Service {
  config: Config;
  db: Database;
  journal: Journal;
  nats: NatsHandles;
  accounts: Actors['accounts'];
  blockOrders: Actors['blockOrders'];
  consumer: FillConsumer;
  publisher: Publisher;
  app: FastifyInstance;
  inspection: InspectionPort;
  /** Fault injection: refuses every request unless FAULT_INJECTION=on. */
  faults: Faults;
  /** The live feed behind the WebSocket stream. */
  feed: EventFeed;
  allocate(entry: Entry): Promise<AllocateFillReply>;
  /** Wakes block orders whose journal ends with unconfirmed allocations; returns how many. */
  wakeUnconfirmed(): Promise<number>;
  stop(): Promise<void>;
}

/** No shutdown step may hang SIGTERM forever (a database that stopped answering, say). */
const STOP_STEP_MS = 10_000;

export const systemClock: Clock = { nowMs: () => Date.now() };

/** Stops, last started first; each bounded and each run whatever the others did. */
class Stops {
  readonly #stops: Array<{ name: string; stop: () => unknown; boundMs: number }> = [];
  readonly #log: Logger;
  constructor(log: Logger) {
    this.#log = log;
  }
  add(name: string, stop: () => unknown, boundMs = STOP_STEP_MS): void {
    this.#stops.push({ name, stop, boundMs });
  }
  async run(): Promise<void> {
    for (const { name, stop, boundMs } of [...this.#stops].reverse()) {
      try {
        await withTimeout(Promise.resolve(stop()), boundMs, tookLonger(name, boundMs));
      } catch (error) {
        this.#log.warn('shutdown step failed', { step: name, error });
      }
    }
  }
}

/** The database of `config`, with its pool size (or `poolMax`) and 40001 retry policy. */
export async function openDatabase(config: Config, poolMax = config.dbPoolMax): Promise<Database> {
  return Database.open({
    url: config.databaseUrl,
    poolMax,
    retriesMax: config.dbRetriesMax,
    retryBackoffMs: config.dbRetryBackoffMs,
    connectTimeoutMs: config.dbConnectTimeoutMs,
  });
}

function openJournal(config: Config, db: Database, faults: Faults, metrics: Metrics): SqlJournal {
  return new SqlJournal(db, {
    batchEventsMax: config.journalBatchEventsMax,
    flushIntervalMs: config.journalFlushIntervalMs,
    flushesInFlightMax: config.journalFlushesInFlightMax,
    pendingEventsMax: config.journalPendingEventsMax,
    ...(faults.enabled ? { beforeBatch: faults.beforeBatch } : {}),
    observeBatch: (events, seconds) => metrics.observeBatch(events, seconds),
  });
}

/** Bound on each partition's consumer-info ask at scrape time. */
const LAG_ASK_TIMEOUT_MS = 2_000;

/**
 * What /metrics reads, from the parts as they come up (a scrape during
 * start-up sees zeros). A partition whose consumer cannot be asked within
 * the bound is left out of that scrape rather than failing it.
 */
function metricsSources(wired: Wired): MetricsSources {
  const zeroConsumer = { acked: 0, duplicates: 0, deadLettered: 0, conflicts: 0, nakked: 0 };
  const zeroJournal = { events: 0, batches: 0, conflicts: 0, fallbacks: 0 };
  return {
    consumer: () => {
      const c = wired.consumer;
      return c ? { ...c.stats, heldFills: c.heldFills } : { ...zeroConsumer, heldFills: 0 };
    },
    journal: () => wired.core?.journal.stats ?? zeroJournal,
    linesApplied: () => wired.linesApplied,
    actors: () => {
      const a = wired.core?.actors;
      return (a ? [a.accounts, a.blockOrders] : []).map((host) => ({
        kind: host.kind,
        live: host.liveActors(),
        passivated: host.passivatedActors(),
        stopped: host.stoppedActors().length,
        crashes: host.crashCount,
        mailboxDepth: host.mailboxDepths().total,
      }));
    },
    consumerLag: async () => {
      const opened = wired.opened;
      if (!opened) return [];
      const asks = opened.durables.map(async (durable, partition) => {
        const ask = opened.nats.jsm.consumers.info(opened.names.executions, durable);
        const info = await withTimeout(
          ask,
          LAG_ASK_TIMEOUT_MS,
          tookLonger('consumer info', LAG_ASK_TIMEOUT_MS),
        );
        return { partition, pending: info.num_pending, unacked: info.num_ack_pending };
      });
      const settled = await Promise.allSettled(asks);
      return settled.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    },
  };
}

/** The parts metrics read, set as start-up brings each one up. */
interface Wired {
  /** Counted by the observer the actors report durable lines to. */
  linesApplied: number;
  core?: Core;
  opened?: OpenedNats;
  consumer?: FillConsumer;
}

type OpenedNats = Awaited<ReturnType<typeof openNats>>;

async function openNats(config: Config) {
  const nats = await openJetStream(config, `blockfill-${process.pid}`).catch((error: unknown) => {
    throw natsStartupFailure(error, config.natsServers);
  });
  const names = streamNames(config);
  try {
    await ensureStreams(nats.jsm, names, config.partitions, {
      replicas: config.streamReplicas,
      maxAgeMs: config.streamMaxAgeMs,
    });
    const durables = await ensureConsumers(nats.jsm, names, config);
    return { nats, names, durables };
  } catch (error) {
    await nats.nc.close();
    throw error;
  }
}

/**
 * Fastify logs through the service's own pino logger: one format on stderr,
 * request logs (at info) carrying the request id. A hand-made logger
 * without pino (a test's) leaves Fastify silent.
 */
function appOptions(config: Config, log: Logger) {
  const security = {
    apiKey: config.apiKey,
    protectReads: config.apiKeyReads,
    corsOrigins: config.corsOrigins,
    rateLimitPerMinute: config.rateLimitPerMinute,
  };
  if (config.apiKey === null) log.info('API_KEY is not set: the mutating routes are open');
  const logger = config.logLevel === 'silent' || !log.pino ? {} : { loggerInstance: log.pino };
  return { security, ...logger };
}

/** What start-up builds before NATS is needed: the database, the journal and the actors. */
interface Core {
  db: Database;
  faults: Faults;
  journal: SqlJournal;
  actors: Actors;
}

async function openCore(
  config: Config,
  options: ServiceOptions,
  log: Logger,
  stops: Stops,
  metrics: Metrics,
  feed: EventFeed,
) {
  const db = await openDatabase(config);
  stops.add('database close', () => db.close());
  await assertMigrated(db, config.databaseUrl);
  const faults = new Faults(config.faultInjection);
  if (faults.enabled) log.warn('fault injection is ON: for tests and drills only');
  const journal = openJournal(config, db, faults, metrics);
  stops.add('journal close', () => journal.close());
  const base = new SqlReferenceData(db);
  const actors = startActors(config, {
    journal,
    reference: options.reference ? options.reference(base) : base,
    clock: options.clock ?? systemClock,
    observer: options.observer ?? noopObserver,
    log,
    faults,
    onDurable: (kind, id, firstSeq, events) => feed.durable(kind, id, firstSeq, events),
  });
  stops.add('actors', () => actors.close());
  const core: Core = { db, faults, journal, actors };
  return core;
}

/** The consumer wired to the block orders: it allocates, looks claims up and wakes orders. */
function fillConsumer(
  config: Config,
  log: Logger,
  core: Core,
  opened: OpenedNats,
  metrics: Metrics,
) {
  const askTimeoutMs = config.actorAskTimeoutMs;
  const { blockOrders } = core.actors;
  const allocate = (entry: Entry) =>
    blockOrders.ask<AllocateFillReply>(
      entry.blockOrderId,
      (replyTo) =>
        isAmendment(entry)
          ? { type: 'Amend', amendment: entry, replyTo }
          : { type: 'AllocateFill', fill: entry, replyTo },
      askTimeoutMs,
    );
  const consumer = new FillConsumer({
    ...{ js: opened.nats.js, names: opened.names, config, log, allocate },
    execution: (id) => core.journal.execution(id),
    wake: (id) =>
      void blockOrders
        .ask(id, (replyTo) => ({ type: 'Wake', replyTo }), askTimeoutMs)
        .catch(() => undefined),
    onDeadLetter: (reason) => metrics.deadLettered(reason),
  });
  return { consumer, allocate };
}

/** The operations API's ports: executions (read models and intake), dead letters, actors. */
function operationPorts(
  config: Config,
  log: Logger,
  core: Core,
  opened: OpenedNats,
  inspection: InspectionPort,
) {
  const { db } = core;
  const { js, jsm } = opened.nats;
  const stream = { names: opened.names, partitions: config.partitions };
  const blockOrderView = (id: string) => inspection.blockOrder(id);
  return {
    executions: executionsAdapter({
      db,
      blockOrderView,
      intake: { js, ...stream },
      report: (portfolioId, start, end) =>
        executionReport({ db, journal: core.journal, inspection }, portfolioId, start, end),
    }),
    deadLetters: deadLetters({ js, jsm, ...stream }),
    actors: actorAdmin({ ...core.actors, inspection }),
    bookings: bookingAdapter({
      db,
      bookingDir: bookingDirOf(config),
      nowMs: () => Date.now(),
      log,
    }),
    reconciliation: {
      reconcile: (tradeDate?: string) => reconcile({ db }, tradeDate ? { tradeDate } : {}),
    },
  };
}

/** Booking files of a namespace live apart: test runs and demos never share a folder. */
const bookingDirOf = (config: Config) => join(config.bookingDir, config.namespace || 'default');

/** Listens if asked; with PORT=0 the OS picks the port, so the one it picked is returned. */
async function listen(config: Config, options: ServiceOptions, app: FastifyInstance) {
  if (!options.listen) return undefined;
  await app.listen({ host: config.httpHost, port: config.httpPort });
  const address = app.server.address();
  return address && typeof address === 'object' ? address.port : undefined;
}

/**
 * Runs beside consuming, not before it: after a crash many orders have
 * unconfirmed lines, and waking them all first delayed readiness by seconds.
 * An order woken by a fill re-delivers its lines just the same.
 */
function startSweep(config: Config, log: Logger, core: Core): () => Promise<number> {
  const sweep = () =>
    wakeUnconfirmed({
      db: core.db,
      blockOrders: core.actors.blockOrders,
      concurrencyMax: config.recoveryConcurrencyMax,
      askTimeoutMs: config.actorAskTimeoutMs,
      log,
    });
  void sweep().then(
    (woken) =>
      woken > 0 && log.info('re-delivered unconfirmed allocations', { blockOrders: woken }),
    (error: unknown) =>
      log.warn('start-up sweep incomplete; orders re-deliver when next woken', { error }),
  );
  return sweep;
}

/** Closes the connection whenever it opens: the chain outlives its bounded stop step. */
const closeWhenOpen = (opening: Promise<OpenedNats>): Promise<void> =>
  opening.then(
    ({ nats }) => nats.nc.close(),
    () => undefined,
  );

function logStarted(log: Logger, config: Config, stream: string, port: number | undefined): void {
  log.info('blockfill started', {
    ...{ partitions: config.partitions, stream },
    http: port === undefined ? 'inject-only' : `${config.httpHost}:${port}`,
    ...(port === undefined ? {} : { port }),
  });
}

/** The feed of durable batches behind the WebSocket stream; a failing subscriber is dropped, and logged. */
const liveFeed = (log: Logger) =>
  new EventFeed(
    () => Date.now(),
    (error) => log.warn('a stream subscriber failed and was dropped', { error }),
  );

/** Lines durable on accounts, for /metrics: counted on their way to the caller's observer. */
function countingLines(observer: AllocationObserver, wired: Wired): AllocationObserver {
  return {
    fillSettled: observer.fillSettled.bind(observer),
    accountLineDurable: () => {
      wired.linesApplied++;
      observer.accountLineDurable();
    },
  };
}

/** The API on the running parts: inspection, metrics, the operations ports and the live feed. */
async function serviceApp(
  config: Config,
  log: Logger,
  parts: {
    core: Core;
    opened: OpenedNats;
    consumer: FillConsumer;
    metrics: Metrics;
    feed: EventFeed;
  },
) {
  const { core, opened, consumer, metrics, feed } = parts;
  const inspection = inspectionAdapter({
    db: core.db,
    journal: core.journal,
    nats: opened.nats,
    consumer,
    ...core.actors,
    askTimeoutMs: config.actorAskTimeoutMs,
  });
  const app = await buildApp(
    {
      ...{ inspection, faults: core.faults, metrics },
      ...operationPorts(config, log, core, opened, inspection),
      stream: { feed, bufferedBytesMax: config.streamBufferedBytesMax },
    },
    appOptions(config, log),
  );
  return { inspection, app };
}

export async function startService(config: Config, options: ServiceOptions = {}): Promise<Service> {
  const log = options.log ?? createLogger(config.logLevel, { service: 'blockfill' });
  const stops = new Stops(log);
  const wired: Wired = { linesApplied: 0 };
  const metrics = new Metrics(metricsSources(wired));
  // NATS connects while the database opens: both are on the restart path.
  const natsOpening = openNats(config);
  // Awaited after the database; until then its failure must not be unhandled.
  natsOpening.catch(() => undefined);
  stops.add('nats close', () => closeWhenOpen(natsOpening));
  try {
    const feed = liveFeed(log);
    const observer = countingLines(options.observer ?? noopObserver, wired);
    const core = await openCore(config, { ...options, observer }, log, stops, metrics, feed);
    wired.core = core;
    const opened = await natsOpening;
    wired.opened = opened;
    const { nats, names } = opened;
    const { consumer, allocate } = fillConsumer(config, log, core, opened, metrics);
    wired.consumer = consumer;
    const askTimeoutMs = config.actorAskTimeoutMs;
    const { inspection, app } = await serviceApp(config, log, {
      core,
      opened,
      consumer,
      metrics,
      feed,
    });
    stops.add('http', () => app.close());
    const port = await listen(config, options, app);
    // Stopping consumption first: every fill in flight is answered and acked,
    // then the journal drains and NATS flushes the acks.
    stops.add('nats flush', () => nats.nc.flush());
    stops.add('journal drain', () => core.journal.drain());
    // A fill in flight may wait its whole ask timeout: the step outlasts it, so
    // its ack is not lost. Added before start: a start that fails half-way stops too.
    stops.add('consumer', () => consumer.stop(), askTimeoutMs + STOP_STEP_MS);
    await consumer.start(opened.durables);
    const sweep = startSweep(config, log, core);
    logStarted(log, config, names.executions, port);
    let stopping: Promise<void> | undefined;
    const stop = () =>
      (stopping ??= stops.run().then(() => log.info('blockfill stopped', { ...consumer.stats })));
    const publisher = fillPublisher(nats.js, names, config.partitions);
    const { db, journal, faults, actors } = core;
    return {
      ...{
        config,
        db,
        journal,
        nats,
        consumer,
        publisher,
        app,
        inspection,
        faults,
        allocate,
        feed,
      },
      ...{
        accounts: actors.accounts,
        blockOrders: actors.blockOrders,
        wakeUnconfirmed: sweep,
        stop,
      },
    };
  } catch (error) {
    // The 'nats close' step closes a connection still opening whenever it opens.
    await stops.run();
    throw error;
  }
}
