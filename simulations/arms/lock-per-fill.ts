/**
 * Arm "lock-per-fill": the classic OLTP design, in its best honest version.
 * Each fill is ONE durable transaction on relational books: lock the block
 * order (and its target rows, which it updates anyway), allocate in JS with
 * the project's allocateFill, lock the accounts in id order, then write the
 * fill, its lines, cash, positions, targets and the order's last seq in one
 * statement, and commit. Five round trips per fill: BEGIN, lock order, lock
 * accounts, write, COMMIT. synchronous_commit stays on; tables are logged.
 *
 * Per-order fill order holds: a fill goes to a worker only once the previous
 * fill of its order has committed; other orders proceed in parallel on N
 * connections.
 */
import { performance } from 'node:perf_hooks';
import type pg from 'pg';
import type { Fill } from '../../actors/block-order/decider.ts';
import type { Side } from '../../actors/domain/money.ts';
import { invariant } from '../../actors/errors.ts';
import type { Scenario } from '../scenario.ts';
import { checkInDatabase, createAndSeedBooks, readBooks } from './books-sql.ts';
import {
  big,
  openPool,
  percentiles,
  perSec,
  replayArrivals,
  sleep,
  sqlState,
  withArmDatabase,
  type ArmResult,
  type Log,
} from './common.ts';
import { allocateOn, applyLine, compareBooks, expectedBooks, type OrderBook } from './expected.ts';

export type LockMode = 'read-committed' | 'serializable';

export interface LockPerFillOptions {
  baseDatabaseUrl: string;
  scenario: Scenario;
  workers: number;
  mode: LockMode;
  log: Log;
  /** Fills per second; absent = every fill arrives at t0 (a flood). */
  arrivalRatePerSec?: number;
  /** Serialization (40001) or deadlock (40P01) retries per fill before giving up. */
  retriesMax?: number;
  /** Test hook: runs on the arm's database after the last commit, before the books are checked. */
  beforeCheck?: (pool: pg.Pool) => Promise<void>;
}

const FILLS_SCHEMA = [
  `CREATE TABLE fills (fill_id text PRIMARY KEY, block_order_id text NOT NULL, seq int NOT NULL,
     quantity bigint NOT NULL, price bigint NOT NULL, venue text NOT NULL,
     executed_at_ms bigint NOT NULL, UNIQUE (block_order_id, seq))`,
];

const RETRIABLE = new Set(['40001', '40P01']);
const RETRY_BACKOFF_MAX_MS = 20;

const LOCK_ORDER_SQL = `SELECT b.security_id, b.side, b.lot_size, b.last_seq, t.account_id, t.target, t.allocated
   FROM block_orders b JOIN block_order_targets t ON t.block_order_id = b.id
  WHERE b.id = $1 ORDER BY t.account_id FOR UPDATE`;

// ORDER BY before the lock: every transaction locks its accounts in the same order, so none deadlock.
const LOCK_ACCOUNTS_SQL = `SELECT a.id, p.quantity FROM accounts a
   LEFT JOIN positions p ON p.account_id = a.id AND p.security_id = $2::text
  WHERE a.id = ANY($1::text[]) ORDER BY a.id FOR UPDATE OF a`;

// One statement, each table modified once (CockroachDB allows no more).
const WRITE_SQL = `WITH
  f AS (INSERT INTO fills (fill_id, block_order_id, seq, quantity, price, venue, executed_at_ms)
        VALUES ($1::text, $2::text, $3::int, $4::bigint, $5::bigint, $6::text, $7::bigint)),
  l AS (INSERT INTO allocation_lines
          (block_order_id, fill_seq, account_id, quantity, price, cash_delta_minor, applied)
        SELECT $2::text, $3::int, u.a, u.q, $5::bigint, u.c, u.ok
          FROM unnest($8::text[], $9::bigint[], $10::bigint[], $11::boolean[]) AS u(a, q, c, ok)),
  c AS (UPDATE accounts SET cash_minor = accounts.cash_minor + u.c
          FROM unnest($12::text[], $13::bigint[]) AS u(a, c) WHERE accounts.id = u.a),
  p AS (INSERT INTO positions (account_id, security_id, quantity)
        SELECT u.a, $14::text, u.q FROM unnest($12::text[], $15::bigint[]) AS u(a, q)
        ON CONFLICT (account_id, security_id)
        DO UPDATE SET quantity = positions.quantity + excluded.quantity),
  t AS (UPDATE block_order_targets SET allocated = block_order_targets.allocated + u.q
          FROM unnest($8::text[], $9::bigint[]) AS u(a, q)
         WHERE block_order_targets.block_order_id = $2::text AND block_order_targets.account_id = u.a)
UPDATE block_orders SET last_seq = $3::int WHERE id = $2::text`;

interface OrderRow {
  security_id: string;
  side: Side;
  lot_size: string;
  last_seq: number;
  account_id: string;
  target: string;
  allocated: string;
}

/** The order as locked: its definition and what it has allocated so far. */
function orderFromRows(rows: readonly OrderRow[], fill: Fill): OrderBook {
  const first = rows[0];
  invariant(first, `block order ${fill.blockOrderId} has no targets`);
  invariant(
    first.last_seq + 1 === fill.seq,
    `${fill.fillId}: seq ${fill.seq} after ${first.last_seq} (per-order chain broken)`,
  );
  // allocateFill's tie rotation depends on accountId order: sort as the deciders do.
  const sorted = [...rows].sort((x, y) => (x.account_id < y.account_id ? -1 : 1));
  return {
    securityId: first.security_id,
    side: first.side,
    lotSize: big(first.lot_size),
    targets: sorted.map((r) => ({ accountId: r.account_id, quantity: big(r.target) })),
    allocated: new Map(sorted.map((r) => [r.account_id, big(r.allocated)])),
    lastSeq: first.last_seq,
  };
}

/**
 * The account rule on each line, against the locked positions: a SELL beyond
 * the position is a rejected line (written, nothing applied). Returns the
 * statement's arrays; amounts as text so they stay exact.
 */
function decideLines(
  order: OrderBook,
  fill: Fill,
  lines: ReadonlyArray<{ accountId: string; quantity: bigint }>,
  held: ReadonlyMap<string, bigint>,
) {
  const w = { cash: [] as string[], applied: [] as boolean[] };
  const apply = { applyIds: [] as string[], applyCash: [] as string[], applyQty: [] as string[] };
  for (const line of lines) {
    const position = held.get(line.accountId);
    invariant(position !== undefined, `account ${line.accountId} was not locked`);
    const book = { cashMinor: 0n, positions: new Map([[order.securityId, position]]) };
    const delta = applyLine(book, { ...order, quantity: line.quantity, price: fill.price });
    w.cash.push(String(delta ?? 0n));
    w.applied.push(delta !== undefined);
    if (delta === undefined) continue;
    apply.applyIds.push(line.accountId);
    apply.applyCash.push(String(delta));
    apply.applyQty.push(String(order.side === 'BUY' ? line.quantity : -line.quantity));
  }
  return { ...w, ...apply };
}

/** The body of one fill's transaction; returns the number of lines written. */
async function fillBody(client: pg.ClientBase, fill: Fill): Promise<number> {
  // Named: each connection parses and plans the statements once.
  const orderRows = await client.query<OrderRow>({
    name: 'lpf_lock_order',
    text: LOCK_ORDER_SQL,
    values: [fill.blockOrderId],
  });
  const order = orderFromRows(orderRows.rows, fill);
  const lines = allocateOn(order, fill);
  const ids = lines.map((l) => l.accountId);
  const locked = await client.query<{ id: string; quantity: string | null }>({
    name: 'lpf_lock_accounts',
    text: LOCK_ACCOUNTS_SQL,
    values: [ids, order.securityId],
  });
  invariant(locked.rows.length === ids.length, `${fill.fillId}: an allocated account is missing`);
  const held = new Map(locked.rows.map((r) => [r.id, big(r.quantity ?? '0')]));
  const w = decideLines(order, fill, lines, held);
  const f = fill;
  const values = [
    f.fillId,
    f.blockOrderId,
    f.seq,
    String(f.quantity),
    String(f.price),
    f.venue,
    f.executedAtMs,
    ids,
    lines.map((l) => String(l.quantity)),
    w.cash,
    w.applied,
    w.applyIds,
    w.applyCash,
    order.securityId,
    w.applyQty,
  ];
  await client.query({ name: 'lpf_write', text: WRITE_SQL, values });
  return lines.length;
}

/** Runs one fill's transaction, retrying the whole of it on 40001/40P01. */
async function fillTransaction(
  client: pg.ClientBase,
  fill: Fill,
  mode: LockMode,
  retriesMax: number,
): Promise<{ lines: number; retries: number }> {
  const begin = `BEGIN ISOLATION LEVEL ${mode === 'serializable' ? 'SERIALIZABLE' : 'READ COMMITTED'}`;
  let lastError: unknown;
  for (let attempt = 0; attempt <= retriesMax; attempt++) {
    try {
      await client.query(begin);
      const lines = await fillBody(client, fill);
      await client.query('COMMIT');
      return { lines, retries: attempt };
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      if (!RETRIABLE.has(sqlState(error) ?? '')) throw error;
      lastError = error;
      await sleep(Math.random() * Math.min(RETRY_BACKOFF_MAX_MS, 2 ** attempt));
    }
  }
  throw lastError;
}

/**
 * Hands out fills: a fill is ready once it has arrived and the previous fill
 * of its order has committed. Ready fills go out in the order they became ready.
 */
function createDispatcher(fills: readonly Fill[]) {
  const waiting = new Map<string, number[]>();
  const busy = new Set<string>();
  const ready: number[] = [];
  let readyHead = 0;
  let completed = 0;
  let stopped = false;
  const idle: Array<() => void> = [];
  const wake = () => idle.splice(0).forEach((w) => w());
  const push = (i: number) => {
    ready.push(i);
    idle.shift()?.();
  };
  return {
    arrive(i: number): void {
      const orderId = fills[i]?.blockOrderId ?? '';
      if (!busy.has(orderId)) {
        busy.add(orderId);
        push(i);
      } else {
        const queue = waiting.get(orderId) ?? [];
        queue.push(i);
        waiting.set(orderId, queue);
      }
    },
    complete(i: number): void {
      const orderId = fills[i]?.blockOrderId ?? '';
      const next = waiting.get(orderId)?.shift();
      if (next === undefined) busy.delete(orderId);
      else push(next);
      if (++completed === fills.length) wake();
    },
    stop(): void {
      stopped = true;
      wake();
    },
    /** The next ready fill, or undefined once every fill completed (or after stop). */
    async take(): Promise<number | undefined> {
      // Bounded: every wake-up either finds a fill, or ends on completion or stop.
      while (!stopped && completed < fills.length) {
        if (readyHead < ready.length) return ready[readyHead++];
        await new Promise<void>((resolve) => idle.push(resolve));
      }
      return undefined;
    },
  };
}

interface RunStats {
  lines: number;
  retries: number;
  arrivedMs: Float64Array;
  committedMs: Float64Array;
}

/** Replays arrivals into the dispatcher while `workers` connections run fills. */
async function driveFills(
  pool: pg.Pool,
  options: LockPerFillOptions,
  retriesMax: number,
): Promise<RunStats> {
  const fills = options.scenario.publishOrder;
  const stats: RunStats = {
    lines: 0,
    retries: 0,
    arrivedMs: new Float64Array(fills.length),
    committedMs: new Float64Array(fills.length),
  };
  const dispatcher = createDispatcher(fills);
  const clients = await Promise.all(Array.from({ length: options.workers }, () => pool.connect()));
  const worker = async (client: pg.PoolClient) => {
    // Bounded by the number of fills: take() ends once all have completed.
    for (let i = await dispatcher.take(); i !== undefined; i = await dispatcher.take()) {
      const fill = fills[i];
      invariant(fill, `no fill ${i}`);
      const r = await fillTransaction(client, fill, options.mode, retriesMax);
      stats.committedMs[i] = performance.now();
      stats.lines += r.lines;
      stats.retries += r.retries;
      dispatcher.complete(i);
    }
  };
  const t0Ms = performance.now();
  const running = clients.map((c) =>
    worker(c).then(
      () => undefined,
      (error: unknown) => {
        // One failed fill stops the run: later fills of its order cannot go on.
        dispatcher.stop();
        return error;
      },
    ),
  );
  await replayArrivals({
    count: fills.length,
    t0Ms,
    arrivalRatePerSec: options.arrivalRatePerSec,
    arrive: (i, atMs) => {
      stats.arrivedMs[i] = atMs;
      dispatcher.arrive(i);
    },
  });
  const failures = (await Promise.all(running)).filter((e) => e !== undefined);
  clients.forEach((c) => c.release());
  if (failures.length > 0) throw failures[0];
  return stats;
}

export async function runLockPerFill(options: LockPerFillOptions): Promise<ArmResult> {
  const { scenario, workers, mode, log } = options;
  invariant(workers >= 1 && workers <= 64, `runLockPerFill: workers ${workers} out of 1..64`);
  invariant(scenario.publishOrder.length > 0, 'runLockPerFill: the scenario has no fills');
  const retriesMax = options.retriesMax ?? 100;
  const expected = expectedBooks(scenario);
  return withArmDatabase(options.baseDatabaseUrl, 'lock', async (url) => {
    const pool = openPool(url, workers + 1);
    try {
      await createAndSeedBooks(pool, scenario, FILLS_SCHEMA);
      log(`lock-per-fill ${mode} × ${workers}: ${scenario.publishOrder.length} fills`);
      const stats = await driveFills(pool, options, retriesMax);
      const elapsedMs =
        stats.committedMs.reduce((m, x) => Math.max(m, x), 0) -
        stats.arrivedMs.reduce((m, x) => Math.min(m, x), Infinity);
      await options.beforeCheck?.(pool);
      const books = compareBooks(expected, await readBooks(pool));
      const inDb = await checkInDatabase(pool, 'fills');
      const latency = stats.committedMs.map((c, i) => c - (stats.arrivedMs[i] ?? 0));
      const result: ArmResult = {
        arm: 'lock-per-fill',
        lines: stats.lines,
        fills: scenario.publishOrder.length,
        elapsedMs: Math.round(elapsedMs),
        linesPerSec: perSec(stats.lines, elapsedMs),
        fillsPerSec: perSec(scenario.publishOrder.length, elapsedMs),
        latencyMs: percentiles([...latency]),
        booksOk: books.ok && inDb.violations.length === 0,
        checks: books.checks + inDb.checks,
        violations: [...books.violations, ...inDb.violations].slice(0, 50),
        details: {
          mode,
          workers,
          retries: stats.retries,
          roundTripsPerFill: 5,
          arrivalRatePerSec: options.arrivalRatePerSec ?? 'flood',
          rejectedLines: expected.rejectedLines,
        },
      };
      log(
        `lock-per-fill ${mode} × ${workers}: ${result.linesPerSec} lines/s, ${stats.retries} retries`,
      );
      return result;
    } finally {
      await pool.end();
    }
  });
}

/** The first `fills` fills in arrival order: each order keeps a seq prefix, so it is a valid workload. */
export function scenarioPrefix(scenario: Scenario, fills: number): Scenario {
  invariant(fills >= 1, `scenarioPrefix: fills ${fills} must be >= 1`);
  const publishOrder = scenario.publishOrder.slice(0, fills);
  const fillsByOrder = new Map<string, Fill[]>();
  for (const f of publishOrder)
    fillsByOrder.set(f.blockOrderId, [...(fillsByOrder.get(f.blockOrderId) ?? []), f]);
  invariant(publishOrder.length <= scenario.publishOrder.length, 'prefix within the workload');
  return { ...scenario, publishOrder, fillsByOrder };
}

export interface TuneRow {
  mode: LockMode;
  workers: number;
  linesPerSec: number;
  fillsPerSec: number;
  retries: number;
  p99Ms: number | undefined;
  booksOk: boolean;
  /** Why the setting could not finish, if it could not. */
  error?: string;
}

/** One setting on the prefix; a setting that cannot finish (a fill beyond its retries) loses, it does not abort the tuning. */
async function tuneRow(
  options: { baseDatabaseUrl: string; log: Log },
  scenario: Scenario,
  mode: LockMode,
  workers: number,
): Promise<TuneRow> {
  try {
    const r = await runLockPerFill({ ...options, scenario, workers, mode });
    const retries = Number(r.details.retries ?? 0);
    const { linesPerSec, fillsPerSec, booksOk } = r;
    return { mode, workers, linesPerSec, fillsPerSec, retries, p99Ms: r.latencyMs?.p99, booksOk };
  } catch (error) {
    options.log(`lock-per-fill ${mode} × ${workers} did not finish: ${(error as Error).message}`);
    const failed = { linesPerSec: 0, fillsPerSec: 0, retries: -1, p99Ms: undefined };
    return { mode, workers, ...failed, booksOk: false, error: (error as Error).message };
  }
}

/**
 * Tries every mode × worker count on the first `prefixFills` fills (default
 * 4,000) and returns the fastest setting whose books were exact, with the table.
 */
export async function tuneLockPerFill(options: {
  baseDatabaseUrl: string;
  scenario: Scenario;
  log: Log;
  prefixFills?: number;
  workersList?: readonly number[];
  modes?: readonly LockMode[];
}): Promise<{ mode: LockMode; workers: number; prefixFills: number; table: TuneRow[] }> {
  const prefixFills = Math.min(options.prefixFills ?? 4_000, options.scenario.publishOrder.length);
  const scenario = scenarioPrefix(options.scenario, prefixFills);
  const table: TuneRow[] = [];
  for (const mode of options.modes ?? (['read-committed', 'serializable'] as const)) {
    for (const workers of options.workersList ?? [4, 8, 16]) {
      table.push(await tuneRow(options, scenario, mode, workers));
    }
  }
  const best = table.filter((row) => row.booksOk).sort((a, b) => b.linesPerSec - a.linesPerSec)[0];
  invariant(best, 'tuneLockPerFill: no setting kept the books exact');
  options.log(`lock-per-fill tuning on ${prefixFills} fills: ${best.mode} × ${best.workers} won`);
  return { mode: best.mode, workers: best.workers, prefixFills, table };
}
