/**
 * Test isolation against the real PostgreSQL and NATS: every test gets its
 * own database and its own stream namespace, and removes both afterwards.
 */
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { AllocationObserver, Clock, ReferencePort } from '../../actors/protocol.ts';
import type { AccountView, BlockOrderView } from '../../actors/views.ts';
import { Database } from '../../persistence/db.ts';
import { migrate } from '../../persistence/migrate.ts';
import { seedReferenceData, type SeedData } from '../../persistence/reference.ts';
import { loadConfig, type Config } from '../../system/config.ts';
import { openJetStream } from '../../system/jetstream.ts';
import { createLogger } from '../../system/log.ts';
import { startService, type Service } from '../../system/service.ts';
import { deleteStreams, dropDatabase, freshDatabase } from '../../simulations/support.ts';

/** The subset of tap's Test the harness needs. */
export interface Teardown {
  teardown(fn: () => unknown): void;
}

export function uniqueSuffix(): string {
  return `${process.pid.toString(36)}${randomBytes(4).toString('hex')}`;
}

/** Config for a test: its own namespace, quiet logs, small bounds; overrides win. */
export function testConfig(overrides: Record<string, string> = {}): Config {
  return loadConfig({
    ...process.env,
    BLOCKFILL_NAMESPACE: `T${uniqueSuffix()}`,
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent',
    PARTITIONS: '2',
    CONSUMER_NAK_DELAY_MS: '20',
    SUPERVISOR_BACKOFF_MIN_MS: '1',
    SUPERVISOR_BACKOFF_MAX_MS: '20',
    REDELIVERY_BACKOFF_MS: '5',
    // Booking files of test runs stay out of the work tree (a folder per namespace, removed at teardown).
    BOOKING_DIR: join(tmpdir(), 'blockfill-test-bookings'),
    ...overrides,
  });
}

/**
 * A fresh, migrated database, dropped at teardown (after anything registered
 * later: tap runs teardowns in registration order, so `before` lets a caller
 * stop its users of the database first). Returns its URL and an open handle.
 */
export async function testDatabase(
  t: Teardown,
  config: Config,
  before: Array<() => Promise<void>> = [],
): Promise<{ url: string; db: Database }> {
  const name = `bf_test_${uniqueSuffix()}`;
  const url = await freshDatabase(config.databaseUrl, name);
  const db = await Database.open({
    url,
    poolMax: 4,
    retriesMax: config.dbRetriesMax,
    retryBackoffMs: config.dbRetryBackoffMs,
  });
  t.teardown(async () => {
    for (const cleanup of before) await cleanup().catch(() => undefined);
    await db.close().catch(() => undefined);
    await dropDatabase(config.databaseUrl, name);
  });
  await migrate(db);
  return { url, db };
}

export interface TestServiceOptions {
  config?: Record<string, string>;
  seed?: SeedData;
  observer?: AllocationObserver;
  clock?: Clock;
  reference?: (base: ReferencePort) => ReferencePort;
}

export interface TestService {
  service: Service;
  config: Config;
  /** A separate handle on the test database, for direct reads. */
  db: Database;
  /** Restarts the service on the same database and streams (a process restart). */
  restart(): Promise<Service>;
}

/** A migrated, seeded database plus a running service; everything is removed at teardown. */
export async function startTestService(
  t: Teardown,
  options: TestServiceOptions = {},
): Promise<TestService> {
  const base = testConfig(options.config);
  const cleanups: Array<() => Promise<void>> = [];
  const { url, db } = await testDatabase(t, base, cleanups);
  if (options.seed) await seedReferenceData(db, options.seed);
  const config: Config = { ...base, databaseUrl: url };
  const log = createLogger(config.logLevel, { test: true });
  const start = () =>
    startService(config, {
      log,
      ...(options.observer ? { observer: options.observer } : {}),
      ...(options.clock ? { clock: options.clock } : {}),
      ...(options.reference ? { reference: options.reference } : {}),
    });
  const handle: TestService = {
    service: await start(),
    config,
    db,
    restart: async () => {
      await handle.service.stop();
      handle.service = await start();
      return handle.service;
    },
  };
  cleanups.push(async () => {
    await handle.service.stop().catch(() => undefined);
    await rm(join(config.bookingDir, config.namespace), { recursive: true, force: true });
    const nats = await openJetStream(config, 'blockfill-test-cleanup');
    try {
      await deleteStreams(nats.jsm, config.namespace);
    } finally {
      await nats.nc.close();
    }
  });
  return handle;
}

/** Polls `probe` until it returns a value that is not undefined, or fails after `timeoutMs`. */
export async function eventually<T>(
  what: string,
  probe: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 15_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** A small hand-made scenario: 1 security (lot 10), 4 accounts, 2 block orders (BUY and SELL). */
export function smallSeed(prefix = ''): SeedData {
  const p = prefix;
  return {
    securities: [{ id: `${p}SEC1`, ticker: 'ACME', lotSize: 10n }],
    accounts: [
      {
        id: `${p}A1`,
        name: 'Alpha',
        openingCashMinor: 1_000_000_00n,
        positions: { [`${p}SEC1`]: 1_000n },
      },
      {
        id: `${p}A2`,
        name: 'Beta',
        openingCashMinor: 500_000_00n,
        positions: { [`${p}SEC1`]: 500n },
      },
      { id: `${p}A3`, name: 'Gamma', openingCashMinor: 250_000_00n, positions: {} },
      { id: `${p}A4`, name: 'Delta', openingCashMinor: 0n, positions: { [`${p}SEC1`]: 20n } },
    ],
    blockOrders: [
      {
        id: `${p}BUY1`,
        securityId: `${p}SEC1`,
        side: 'BUY',
        tradeDate: '2026-11-20',
        targets: [
          { accountId: `${p}A1`, quantity: 600n },
          { accountId: `${p}A2`, quantity: 300n },
          { accountId: `${p}A3`, quantity: 100n },
        ],
      },
      {
        id: `${p}SELL1`,
        securityId: `${p}SEC1`,
        side: 'SELL',
        tradeDate: '2026-11-20',
        targets: [
          { accountId: `${p}A1`, quantity: 400n },
          { accountId: `${p}A4`, quantity: 100n },
        ],
      },
    ],
  };
}

/** GET /accounts/:id through the running service's API; throws unless 200. */
export async function accountView(service: Service, id: string): Promise<AccountView> {
  const res = await service.app.inject({ method: 'GET', url: `/api/v1/accounts/${id}` });
  if (res.statusCode !== 200) throw new Error(`GET /accounts/${id}: ${res.statusCode} ${res.body}`);
  return res.json<AccountView>();
}

/** GET /block-orders/:id through the running service's API; throws unless 200. */
export async function blockOrderView(service: Service, id: string): Promise<BlockOrderView> {
  const res = await service.app.inject({ method: 'GET', url: `/api/v1/block-orders/${id}` });
  if (res.statusCode !== 200) {
    throw new Error(`GET /block-orders/${id}: ${res.statusCode} ${res.body}`);
  }
  return res.json<BlockOrderView>();
}

/** Waits until fills 1..seq of the order are allocated and every line is confirmed. */
export function confirmedThrough(
  service: Service,
  id: string,
  seq: number,
  timeoutMs?: number,
): Promise<BlockOrderView> {
  return eventually(
    `${id} confirmed through seq ${seq}`,
    async () => {
      const view = await blockOrderView(service, id);
      return view.lastFillSeq === seq &&
        view.confirmedThroughSeq === seq &&
        view.unconfirmedLines === 0
        ? view
        : undefined;
    },
    timeoutMs,
  );
}
