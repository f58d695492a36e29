/**
 * The composition root: wiring, then an ordered list of start steps, each
 * with the stop that undoes it. Stop runs the stops in reverse order, each
 * bounded in time and each run even if an earlier one failed; a failed start
 * stops what it had started.
 *
 * Start: database → journal → actors → NATS streams and consumers → HTTP →
 * start-up sweep → consuming. Stop: stop consuming (every fill in flight is
 * answered, its event durable, and acked) → drain the journal → flush NATS
 * (the acks) → HTTP → NATS → actors → journal → database.
 */
import type { FastifyInstance } from 'fastify';
import type { Fill } from '../actors/block-order/decider.ts';
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
import { SqlReferenceData } from '../persistence/reference.ts';
import { SqlJournal } from '../persistence/sql-journal.ts';
import { startActors, type Actors } from './actors.ts';
import { natsStartupFailure, streamNames, type Config } from './config.ts';
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
  allocate(fill: Fill): Promise<AllocateFillReply>;
  /** Wakes block orders whose journal ends with unconfirmed allocations; returns how many. */
  wakeUnconfirmed(): Promise<number>;
  stop(): Promise<void>;
}

/** No shutdown step may hang SIGTERM forever (a database that stopped answering, say). */
const STOP_STEP_MS = 10_000;

function withTimeout<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([
    work,
    new Promise<T>((_, reject) =>
      setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms).unref(),
    ),
  ]);
}

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
        await withTimeout(Promise.resolve(stop()), boundMs, name);
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

function openJournal(config: Config, db: Database, faults: Faults): SqlJournal {
  return new SqlJournal(db, {
    batchEventsMax: config.journalBatchEventsMax,
    flushIntervalMs: config.journalFlushIntervalMs,
    flushesInFlightMax: config.journalFlushesInFlightMax,
    pendingEventsMax: config.journalPendingEventsMax,
    ...(faults.enabled ? { beforeBatch: faults.beforeBatch } : {}),
  });
}

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

function appOptions(config: Config) {
  const level = config.logLevel === 'info' ? 'warn' : config.logLevel;
  return { logger: config.logLevel === 'silent' ? (false as const) : { level } };
}

export async function startService(config: Config, options: ServiceOptions = {}): Promise<Service> {
  const log = options.log ?? createLogger(config.logLevel, { service: 'blockfill' });
  const stops = new Stops(log);
  // NATS connects while the database opens: both are on the restart path.
  const natsOpening = openNats(config);
  // Awaited after the database; until then its failure must not be unhandled.
  natsOpening.catch(() => undefined);
  stops.add('nats close', () =>
    natsOpening.then(
      ({ nats }) => nats.nc.close(),
      () => undefined,
    ),
  );
  try {
    const db = await openDatabase(config);
    stops.add('database close', () => db.close());
    await assertMigrated(db, config.databaseUrl);
    const faults = new Faults(config.faultInjection);
    if (faults.enabled) log.warn('fault injection is ON: for tests and drills only');
    const journal = openJournal(config, db, faults);
    stops.add('journal close', () => journal.close());
    const base = new SqlReferenceData(db);
    const reference = options.reference ? options.reference(base) : base;
    const clock = options.clock ?? systemClock;
    const observer = options.observer ?? noopObserver;
    const actors = startActors(config, { journal, reference, clock, observer, log, faults });
    stops.add('actors', () => actors.close());
    const { nats, names, durables } = await natsOpening;
    const askTimeoutMs = config.actorAskTimeoutMs;
    const allocate = (fill: Fill) =>
      actors.blockOrders.ask<AllocateFillReply>(
        fill.blockOrderId,
        (replyTo) => ({ type: 'AllocateFill', fill, replyTo }),
        askTimeoutMs,
      );
    const consumer = new FillConsumer({
      js: nats.js,
      names,
      config,
      log,
      allocate,
      execution: (fillId) => journal.execution(fillId),
      wake: (id) =>
        void actors.blockOrders
          .ask(id, (replyTo) => ({ type: 'Wake', replyTo }), askTimeoutMs)
          .catch(() => undefined),
    });
    const inspection = inspectionAdapter({ db, nats, consumer, ...actors, askTimeoutMs });
    const app = await buildApp({ inspection, faults }, appOptions(config));
    stops.add('http', () => app.close());
    if (options.listen) await app.listen({ host: config.httpHost, port: config.httpPort });
    // With PORT=0 the OS picks the port: log the one it picked.
    const address = options.listen ? app.server.address() : null;
    const port = address && typeof address === 'object' ? address.port : undefined;
    const sweep = () =>
      wakeUnconfirmed({
        db,
        blockOrders: actors.blockOrders,
        concurrencyMax: config.recoveryConcurrencyMax,
        askTimeoutMs,
        log,
      });
    // Stopping consumption first: every fill in flight is answered and acked,
    // then the journal drains and NATS flushes the acks.
    stops.add('nats flush', () => nats.nc.flush());
    stops.add('journal drain', () => journal.drain());
    // A fill in flight may wait its whole ask timeout: the step outlasts it, so
    // its ack is not lost. Added before start: a start that fails half-way stops too.
    stops.add('consumer', () => consumer.stop(), askTimeoutMs + STOP_STEP_MS);
    await consumer.start(durables);
    // Beside consuming, not before it: after a crash many orders have
    // unconfirmed lines, and waking them all first delayed readiness by
    // seconds. An order woken by a fill re-delivers its lines just the same.
    void sweep().then(
      (woken) =>
        woken > 0 && log.info('re-delivered unconfirmed allocations', { blockOrders: woken }),
      (error: unknown) =>
        log.warn('start-up sweep incomplete; orders re-deliver when next woken', { error }),
    );
    log.info('blockfill started', {
      partitions: config.partitions,
      stream: names.executions,
      http: port === undefined ? 'inject-only' : `${config.httpHost}:${port}`,
      ...(port === undefined ? {} : { port }),
    });
    let stopping: Promise<void> | undefined;
    const stop = () =>
      (stopping ??= stops.run().then(() => log.info('blockfill stopped', { ...consumer.stats })));
    const publisher = fillPublisher(nats.js, names, config.partitions);
    const { accounts, blockOrders } = actors;
    return {
      ...{ config, db, journal, nats, accounts, blockOrders, consumer, publisher, app },
      ...{ inspection, faults, allocate, wakeUnconfirmed: sweep, stop },
    };
  } catch (error) {
    await stops.run();
    // A NATS connection still opening outlives its bounded stop step: close it whenever it opens.
    void natsOpening.then(
      ({ nats }) => nats.nc.close(),
      () => undefined,
    );
    throw error;
  }
}
