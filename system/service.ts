/**
 * The composition root: database, journal, actor system with its two
 * supervisors, JetStream consumers and the inspection API, started and
 * stopped in order.
 */
import type { FastifyInstance } from 'fastify';
import { accountBehavior } from '../actors/account/shell.ts';
import type { AccountEvent, AccountState } from '../actors/account/decider.ts';
import type { BlockOrderEvent, Fill } from '../actors/block-order/decider.ts';
import {
  BLOCK_ORDER_KIND,
  blockOrderBehavior,
  UNCONFIRMED_EVENT_TYPES,
  type BlockOrderShellState,
} from '../actors/block-order/shell.ts';
import { BlockfillError, ErrorCode } from '../actors/errors.ts';
import {
  noopObserver,
  type AccountMessage,
  type AllocateFillReply,
  type AllocationObserver,
  type BlockOrderMessage,
  type Clock,
  type ReferencePort,
  type ViewReply,
} from '../actors/protocol.ts';
import type { AccountView, BlockOrderView, InspectionPort, Readiness } from '../actors/views.ts';
import { buildApp } from '../api/app.ts';
import { decodeVersioned, encodeVersioned } from '../persistence/codec.ts';
import { Database } from '../persistence/db.ts';
import { keysWhoseLastEventIs, type Journal } from '../persistence/journal.ts';
import { SqlJournal } from '../persistence/sql-journal.ts';
import { migrations } from '../persistence/migrations/index.ts';
import { SqlReferenceData } from '../persistence/reference.ts';
import { ActorSystem, EntityHost } from './entity-host.ts';
import { streamNames, type Config } from './config.ts';
import {
  ensureConsumers,
  ensureStreams,
  FillConsumer,
  fillPublisher,
  openJetStream,
  type NatsHandles,
  type Publisher,
} from './jetstream.ts';
import { createLogger, type Logger } from './log.ts';

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
  accounts: EntityHost<AccountState, AccountMessage, AccountEvent>;
  blockOrders: EntityHost<BlockOrderShellState, BlockOrderMessage, BlockOrderEvent>;
  consumer: FillConsumer;
  publisher: Publisher;
  app: FastifyInstance;
  inspection: InspectionPort;
  allocate(fill: Fill): Promise<AllocateFillReply>;
  /** Wakes block orders whose journal ends with unconfirmed allocations; returns how many. */
  wakeUnconfirmed(): Promise<number>;
  stop(): Promise<void>;
}

/** No shutdown step may hang SIGTERM forever (a database that stopped answering, say). */
const shutdownStepMs = 10_000;

function withTimeout<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([
    work,
    new Promise<T>((_, reject) =>
      setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms).unref(),
    ),
  ]);
}

export const systemClock: Clock = { nowMs: () => Date.now() };

export class SchemaNotMigratedError extends Error {
  readonly code = 'SCHEMA_NOT_MIGRATED';
  constructor(missing: number[]) {
    super(`database schema lacks migrations ${missing.join(', ')}: run \`npm run db:migrate\``);
    this.name = 'SchemaNotMigratedError';
  }
}

async function assertMigrated(db: Database): Promise<void> {
  let applied: Set<number>;
  try {
    const rows = await db.query<{ version: number }>('SELECT version FROM schema_migrations');
    applied = new Set(rows.map((r) => Number(r.version)));
  } catch {
    applied = new Set();
  }
  const missing = migrations.map((m) => m.version).filter((v) => !applied.has(v));
  if (missing.length > 0) throw new SchemaNotMigratedError(missing);
}

const codec = { encode: encodeVersioned, decode: decodeVersioned };

function viewOrThrow<V>(reply: ViewReply<V>): V | undefined {
  switch (reply.type) {
    case 'View':
      return reply.view;
    case 'NotFound':
      return undefined;
    case 'Failed': {
      const known = (Object.values(ErrorCode) as string[]).includes(reply.code);
      throw known
        ? new BlockfillError(reply.code as ErrorCode, reply.message)
        : new Error(`${reply.code}: ${reply.message}`);
    }
    default: {
      const never: never = reply;
      throw new Error(`unexpected reply ${JSON.stringify(never)}`);
    }
  }
}

export async function startService(config: Config, options: ServiceOptions = {}): Promise<Service> {
  const log = options.log ?? createLogger(config.logLevel, { service: 'blockfill' });
  const clock = options.clock ?? systemClock;
  const observer = options.observer ?? noopObserver;
  const db = await Database.open({
    url: config.databaseUrl,
    poolMax: config.dbPoolMax,
    retriesMax: config.dbRetriesMax,
    retryBackoffMs: config.dbRetryBackoffMs,
  });
  const cleanup: Array<() => Promise<void>> = [() => db.close()];
  try {
    await assertMigrated(db);
    const journal = new SqlJournal(db, {
      batchEventsMax: config.journalBatchEventsMax,
      flushIntervalMs: config.journalFlushIntervalMs,
      flushesInFlightMax: config.journalFlushesInFlightMax,
      pendingEventsMax: config.journalPendingEventsMax,
    });
    const baseReference = new SqlReferenceData(db);
    const reference = options.reference ? options.reference(baseReference) : baseReference;
    const system = new ActorSystem(
      `blockfill-${process.pid}-${Math.random().toString(36).slice(2, 8)}`,
      { recoveryConcurrencyMax: config.recoveryConcurrencyMax },
    );
    const hostOptions = {
      idleMs: config.actorIdleMs,
      batchCommandsMax: config.actorBatchCommandsMax,
      mailboxMax: config.actorMailboxMax,
      snapshotEveryEvents: config.snapshotEveryEvents,
      snapshotsInFlightMax: 32,
      replayPageEvents: config.replayPageEvents,
      scheduledMax: 100_000,
      supervision: {
        crashesMax: config.supervisorCrashesMax,
        windowMs: config.supervisorWindowMs,
        backoffMinMs: config.supervisorBackoffMinMs,
        backoffMaxMs: config.supervisorBackoffMaxMs,
      },
    };
    const accounts = new EntityHost(
      system,
      accountBehavior({ reference, clock, observer }),
      { codec, journal, log },
      hostOptions,
    );
    const blockOrders = new EntityHost(
      system,
      blockOrderBehavior({
        reference,
        clock,
        observer,
        accounts: { send: (id, message) => accounts.send(id, message) },
        redeliveryAttemptsMax: config.redeliveryAttemptsMax,
        redeliveryBackoffMs: config.redeliveryBackoffMs,
        outboxFillsMax: config.outboxFillsMax,
        onParked: (blockOrderId, accountId, attempts) =>
          log.error('re-delivery to an account keeps failing: retrying at the slowest backoff', {
            blockOrder: blockOrderId,
            account: accountId,
            attempts,
          }),
      }),
      { codec, journal, log },
      hostOptions,
    );
    // A failed start stops what it had started: no timers or actors left behind.
    cleanup.unshift(async () => {
      accounts.close();
      blockOrders.close();
      system.stop();
    });

    const timeoutMs = config.actorAskTimeoutMs;
    const allocate = (fill: Fill) =>
      blockOrders.ask<AllocateFillReply>(
        fill.blockOrderId,
        (replyTo) => ({ type: 'AllocateFill', fill, replyTo }),
        timeoutMs,
      );

    const names = streamNames(config);
    const nats = await openJetStream(config, `blockfill-${process.pid}`);
    cleanup.unshift(async () => {
      await nats.nc.close();
    });
    await ensureStreams(nats.jsm, names, config.partitions, {
      replicas: config.streamReplicas,
      maxAgeMs: config.streamMaxAgeMs,
    });
    const durables = await ensureConsumers(nats.jsm, names, config);
    const consumer = new FillConsumer({ js: nats.js, names, config, log, allocate });

    const inspection: InspectionPort = {
      async account(id) {
        return viewOrThrow(
          await accounts.ask<ViewReply<AccountView>>(
            id,
            (replyTo) => ({ type: 'GetView', replyTo }),
            timeoutMs,
          ),
        );
      },
      async blockOrder(id) {
        return viewOrThrow(
          await blockOrders.ask<ViewReply<BlockOrderView>>(
            id,
            (replyTo) => ({ type: 'GetView', replyTo }),
            timeoutMs,
          ),
        );
      },
      async readiness(): Promise<Readiness> {
        const database = await db.ping().then(
          () => ({ ok: true }),
          (error: Error) => ({ ok: false, detail: error.message }),
        );
        const natsCheck = nats.nc.isClosed()
          ? { ok: false, detail: 'connection closed' }
          : await nats.nc.rtt().then(
              (ms) => ({ ok: true, detail: `rtt ${ms.toFixed(1)} ms` }),
              (error: Error) => ({ ok: false, detail: error.message }),
            );
        const consumerCheck = consumer.running
          ? { ok: true }
          : { ok: false, detail: 'not consuming' };
        const stoppedActors = [...accounts.stoppedActors(), ...blockOrders.stoppedActors()];
        return {
          ready: database.ok && natsCheck.ok && consumerCheck.ok && stoppedActors.length === 0,
          checks: { database, nats: natsCheck, consumer: consumerCheck },
          stoppedActors,
        };
      },
    };

    const app = await buildApp(
      { inspection },
      {
        logger:
          config.logLevel === 'silent'
            ? false
            : { level: config.logLevel === 'info' ? 'warn' : config.logLevel },
      },
    );
    cleanup.unshift(() => app.close());
    if (options.listen) await app.listen({ host: config.httpHost, port: config.httpPort });

    const wakeUnconfirmed = async (): Promise<number> => {
      const prefix = `${BLOCK_ORDER_KIND}-`;
      const keys = await keysWhoseLastEventIs(db, prefix, UNCONFIRMED_EVENT_TYPES);
      const ids = keys.map((key) => key.slice(prefix.length));
      const concurrency = Math.max(1, config.recoveryConcurrencyMax);
      for (let i = 0; i < ids.length; i += concurrency) {
        // One slow or failing order must not fail start-up: the rest still wake,
        // and the failed one re-delivers on its next message.
        const results = await Promise.allSettled(
          ids
            .slice(i, i + concurrency)
            .map((id) => blockOrders.ask(id, (replyTo) => ({ type: 'Wake', replyTo }), timeoutMs)),
        );
        results.forEach((r, j) => {
          if (r.status === 'rejected') {
            log.warn('could not wake a block order at start-up', {
              blockOrder: ids[i + j],
              error: r.reason,
            });
          }
        });
      }
      return ids.length;
    };

    const woken = await wakeUnconfirmed();
    if (woken > 0) log.info('re-delivering unconfirmed allocations', { blockOrders: woken });
    await consumer.start(durables);
    log.info('blockfill started', {
      partitions: config.partitions,
      stream: names.executions,
      http: options.listen ? `${config.httpHost}:${config.httpPort}` : 'inject-only',
    });

    // Each step runs even if an earlier one failed (e.g. the database is gone):
    // a half-stopped service would keep timers and sockets alive.
    const step = async (name: string, work: () => unknown) => {
      try {
        await work();
      } catch (error) {
        log.warn('shutdown step failed', { step: name, error });
      }
    };
    let stopping: Promise<void> | undefined;
    const stop = () =>
      (stopping ??= (async () => {
        // Stop taking fills; every fill in flight is answered (its event durable) and acked.
        await step('consumer', () => withTimeout(consumer.stop(), shutdownStepMs, 'consumer stop'));
        await step('journal drain', () =>
          withTimeout(journal.drain(), shutdownStepMs, 'journal drain'),
        );
        await step('nats flush', () => withTimeout(nats.nc.flush(), shutdownStepMs, 'nats flush'));
        await step('http', () => withTimeout(app.close(), shutdownStepMs, 'http close'));
        accounts.close();
        blockOrders.close();
        system.stop();
        await step('journal close', () => journal.close());
        await step('nats close', () => nats.nc.close());
        await step('database close', () => db.close());
        log.info('blockfill stopped', { ...consumer.stats });
      })());

    return {
      config,
      db,
      journal,
      nats,
      accounts,
      blockOrders,
      consumer,
      publisher: fillPublisher(nats.js, names, config.partitions),
      app,
      inspection,
      allocate,
      wakeUnconfirmed,
      stop,
    };
  } catch (error) {
    for (const c of cleanup) await c().catch(() => undefined);
    throw error;
  }
}
