/**
 * Arm "batch-cycle": the nightly-batch design run every `cycleMs`. Fills are
 * durably staged as they arrive (multi-row INSERTs into staged_fills); each
 * cycle is ONE set-based transaction: take every staged fill not yet
 * processed, allocate in JS (allocateFill, each order's fills in seq order),
 * insert all lines in bulk, apply aggregated cash, position and target deltas
 * with set-based statements, mark the fills processed, commit.
 * One cycle runner at a time (a batch job is a singleton); the locks on the
 * block orders and accounts still keep a second runner from double-applying.
 */
import { performance } from 'node:perf_hooks';
import type pg from 'pg';
import type { Fill } from '../../actors/block-order/decider.ts';
import { invariant } from '../../actors/errors.ts';
import type { Scenario } from '../scenario.ts';
import { checkInDatabase, createAndSeedBooks, insertUnnest, readBooks } from './books-sql.ts';
import type { Column } from './books-sql.ts';
import {
  big,
  openPool,
  percentiles,
  perSec,
  replayArrivals,
  sleep,
  withArmDatabase,
  type ArmResult,
  type Log,
} from './common.ts';
import { allocateOn, applyLine, compareBooks, expectedBooks } from './expected.ts';
import type { AccountBook, OrderBook } from './expected.ts';

export interface BatchCycleOptions {
  baseDatabaseUrl: string;
  scenario: Scenario;
  /** Time between cycle starts (default in the bench: 5000). */
  cycleMs: number;
  /** Fills per second; absent = every fill arrives at t0 (a flood). */
  arrivalRatePerSec?: number;
  log: Log;
  /** Fills per staging INSERT. */
  stageBatchFills?: number;
  /** Test hook: runs on the arm's database after the last commit, before the books are checked. */
  beforeCheck?: (pool: pg.Pool) => Promise<void>;
}

const STAGED_SCHEMA = [
  `CREATE TABLE staged_fills (fill_id text PRIMARY KEY, arrival_no bigint NOT NULL,
     block_order_id text NOT NULL, seq int NOT NULL, quantity bigint NOT NULL, price bigint NOT NULL,
     venue text NOT NULL, executed_at_ms bigint NOT NULL, processed boolean NOT NULL DEFAULT false,
     UNIQUE (block_order_id, seq))`,
  `CREATE INDEX staged_fills_pending ON staged_fills (processed, arrival_no)`,
];

const STAGE_COLUMNS: Column[] = [
  ['fill_id', 'text'],
  ['arrival_no', 'bigint'],
  ['block_order_id', 'text'],
  ['seq', 'int'],
  ['quantity', 'bigint'],
  ['price', 'bigint'],
  ['venue', 'text'],
  ['executed_at_ms', 'bigint'],
].map(([name = '', type = '']) => ({ name, type }));

/** Stages arrived fills in batches, in arrival order, until all are staged. */
async function stageFills(
  pool: pg.Pool,
  fills: readonly Fill[],
  arrived: () => number,
  batchFills: number,
): Promise<void> {
  invariant(batchFills >= 1, `stageFills: batch ${batchFills} must be >= 1`);
  let staged = 0;
  // Bounded: each turn stages at least one fill or waits for the next arrival.
  while (staged < fills.length) {
    const upTo = Math.min(arrived(), staged + batchFills);
    if (upTo === staged) {
      await sleep(1);
      continue;
    }
    const batch = fills.slice(staged, upTo);
    const numbers = batch.map((_, i) => staged + i);
    const rows = [
      batch.map((f) => f.fillId),
      numbers,
      batch.map((f) => f.blockOrderId),
      batch.map((f) => f.seq),
      batch.map((f) => f.quantity),
      batch.map((f) => f.price),
      batch.map((f) => f.venue),
      batch.map((f) => f.executedAtMs),
    ];
    const inserted = await insertUnnest(pool, 'staged_fills', STAGE_COLUMNS, rows);
    invariant(inserted === batch.length, `stageFills: ${inserted} of ${batch.length} staged`);
    staged = upTo;
  }
}

interface StagedRow {
  fill_id: string;
  arrival_no: string;
  block_order_id: string;
  seq: number;
  quantity: string;
  price: string;
}

interface CycleState {
  orders: Map<string, OrderBook>;
  /** Account books holding locked positions; cashMinor accumulates this cycle's deltas. */
  accounts: Map<string, AccountBook>;
}

/** Locks the involved orders (with targets) and accounts, and reads positions. */
async function loadCycleState(client: pg.ClientBase, orderIds: string[]): Promise<CycleState> {
  const rows = await client.query<{
    id: string;
    security_id: string;
    side: 'BUY' | 'SELL';
    lot_size: string;
    last_seq: number;
    account_id: string;
    target: string;
    allocated: string;
  }>(
    `SELECT b.id, b.security_id, b.side, b.lot_size, b.last_seq, t.account_id, t.target, t.allocated
       FROM block_orders b JOIN block_order_targets t ON t.block_order_id = b.id
      WHERE b.id = ANY($1::text[]) ORDER BY b.id, t.account_id FOR UPDATE`,
    [orderIds],
  );
  const orders = new Map<string, OrderBook>();
  for (const r of rows.rows) {
    let o = orders.get(r.id);
    if (!o) {
      o = {
        securityId: r.security_id,
        side: r.side,
        lotSize: big(r.lot_size),
        targets: [],
        allocated: new Map(),
        lastSeq: r.last_seq,
      };
      orders.set(r.id, o);
    }
    o.targets.push({ accountId: r.account_id, quantity: big(r.target) });
    o.allocated.set(r.account_id, big(r.allocated));
  }
  // allocateFill's tie rotation depends on accountId order: sort as the deciders do.
  for (const o of orders.values()) o.targets.sort((x, y) => (x.accountId < y.accountId ? -1 : 1));
  invariant(orders.size === orderIds.length, 'loadCycleState: every staged order exists');
  const accountIds = [
    ...new Set([...orders.values()].flatMap((o) => o.targets.map((t) => t.accountId))),
  ];
  const locked = await client.query<{ id: string }>(
    'SELECT id FROM accounts WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE',
    [accountIds],
  );
  invariant(
    locked.rows.length === accountIds.length,
    'loadCycleState: every target account exists',
  );
  const accounts = new Map<string, AccountBook>(
    accountIds.map((id) => [id, { cashMinor: 0n, positions: new Map() }]),
  );
  const positions = await client.query<{
    account_id: string;
    security_id: string;
    quantity: string;
  }>('SELECT account_id, security_id, quantity FROM positions WHERE account_id = ANY($1::text[])', [
    accountIds,
  ]);
  for (const p of positions.rows)
    accounts.get(p.account_id)?.positions.set(p.security_id, big(p.quantity));
  return { orders, accounts };
}

interface CycleWork {
  processedIds: string[];
  processedArrivals: number[];
  lines: {
    order: string[];
    seq: number[];
    account: string[];
    qty: bigint[];
    price: bigint[];
    cash: bigint[];
    applied: boolean[];
  };
  /** `account\0security` → Σ signed quantity applied this cycle. */
  positionDeltas: Map<string, bigint>;
  /** `order\0account` → Σ quantity allocated this cycle. */
  allocatedDeltas: Map<string, bigint>;
  touchedOrders: Set<string>;
}

const SEP = '\u0000';

function addTo(map: Map<string, bigint>, key: string, delta: bigint): void {
  map.set(key, (map.get(key) ?? 0n) + delta);
}

/** Allocates the staged fills in arrival order; an order with a seq gap waits for the next cycle. */
function allocateStaged(staged: readonly StagedRow[], state: CycleState): CycleWork {
  const work: CycleWork = {
    processedIds: [],
    processedArrivals: [],
    lines: { order: [], seq: [], account: [], qty: [], price: [], cash: [], applied: [] },
    positionDeltas: new Map(),
    allocatedDeltas: new Map(),
    touchedOrders: new Set(),
  };
  const blocked = new Set<string>();
  for (const row of staged) {
    const order = state.orders.get(row.block_order_id);
    invariant(order, `staged fill ${row.fill_id} for unknown order`);
    if (blocked.has(row.block_order_id) || row.seq !== order.lastSeq + 1) {
      blocked.add(row.block_order_id);
      continue;
    }
    const fill = {
      fillId: row.fill_id,
      blockOrderId: row.block_order_id,
      seq: row.seq,
      quantity: big(row.quantity),
      price: big(row.price),
      venue: '',
      executedAtMs: 0,
    };
    for (const line of allocateOn(order, fill)) {
      const book = state.accounts.get(line.accountId);
      invariant(book, `line for unlocked account ${line.accountId}`);
      const delta = applyLine(book, { ...order, quantity: line.quantity, price: fill.price });
      const l = work.lines;
      l.order.push(fill.blockOrderId);
      l.seq.push(fill.seq);
      l.account.push(line.accountId);
      l.qty.push(line.quantity);
      l.price.push(fill.price);
      l.cash.push(delta ?? 0n);
      l.applied.push(delta !== undefined);
      addTo(work.allocatedDeltas, fill.blockOrderId + SEP + line.accountId, line.quantity);
      if (delta === undefined) continue;
      const signed = order.side === 'BUY' ? line.quantity : -line.quantity;
      addTo(work.positionDeltas, line.accountId + SEP + order.securityId, signed);
    }
    work.touchedOrders.add(fill.blockOrderId);
    work.processedIds.push(row.fill_id);
    work.processedArrivals.push(Number(row.arrival_no));
  }
  return work;
}

const LINE_COLUMNS: Column[] = [
  ['block_order_id', 'text'],
  ['fill_seq', 'int'],
  ['account_id', 'text'],
  ['quantity', 'bigint'],
  ['price', 'bigint'],
  ['cash_delta_minor', 'bigint'],
  ['applied', 'boolean'],
].map(([name = '', type = '']) => ({ name, type }));

/** Writes the cycle's lines and aggregated deltas, and marks its fills processed. */
async function writeCycle(
  client: pg.ClientBase,
  work: CycleWork,
  state: CycleState,
): Promise<void> {
  const l = work.lines;
  await insertUnnest(client, 'allocation_lines', LINE_COLUMNS, [
    l.order,
    l.seq,
    l.account,
    l.qty,
    l.price,
    l.cash,
    l.applied,
  ]);
  const cashed = [...state.accounts].filter(([, b]) => b.cashMinor !== 0n);
  await client.query(
    `UPDATE accounts SET cash_minor = accounts.cash_minor + d.c
       FROM (SELECT unnest($1::text[]) AS a, unnest($2::bigint[]) AS c) d WHERE accounts.id = d.a`,
    [cashed.map(([id]) => id), cashed.map(([, b]) => String(b.cashMinor))],
  );
  const positions = [...work.positionDeltas].map(([k, d]) => [...k.split(SEP), String(d)]);
  await client.query(
    `INSERT INTO positions (account_id, security_id, quantity)
     SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])
     ON CONFLICT (account_id, security_id) DO UPDATE SET quantity = positions.quantity + excluded.quantity`,
    [0, 1, 2].map((i) => positions.map((p) => p[i])),
  );
  const targets = [...work.allocatedDeltas].map(([k, d]) => [...k.split(SEP), String(d)]);
  await client.query(
    `UPDATE block_order_targets SET allocated = block_order_targets.allocated + d.q
       FROM unnest($1::text[], $2::text[], $3::bigint[]) AS d(o, a, q)
      WHERE block_order_targets.block_order_id = d.o AND block_order_targets.account_id = d.a`,
    [0, 1, 2].map((i) => targets.map((t) => t[i])),
  );
  const orderIds = [...work.touchedOrders];
  await client.query(
    `UPDATE block_orders SET last_seq = d.s FROM unnest($1::text[], $2::int[]) AS d(o, s) WHERE block_orders.id = d.o`,
    [orderIds, orderIds.map((id) => state.orders.get(id)?.lastSeq ?? 0)],
  );
  await client.query('UPDATE staged_fills SET processed = true WHERE fill_id = ANY($1::text[])', [
    work.processedIds,
  ]);
}

/**
 * One cycle: ONE transaction over every staged, unprocessed fill. Returns the
 * arrival numbers it committed (empty when there was nothing to do) and its line count.
 */
async function runCycle(client: pg.ClientBase): Promise<{ arrivals: number[]; lines: number }> {
  await client.query('BEGIN');
  try {
    const staged = await client.query<StagedRow>(
      `SELECT fill_id, arrival_no, block_order_id, seq, quantity, price FROM staged_fills
        WHERE NOT processed ORDER BY arrival_no`,
    );
    if (staged.rows.length === 0) {
      await client.query('COMMIT');
      return { arrivals: [], lines: 0 };
    }
    const orderIds = [...new Set(staged.rows.map((r) => r.block_order_id))].sort();
    const state = await loadCycleState(client, orderIds);
    const work = allocateStaged(staged.rows, state);
    if (work.processedIds.length > 0) await writeCycle(client, work, state);
    await client.query('COMMIT');
    invariant(work.lines.qty.length >= work.processedIds.length, 'every fill has a line');
    return { arrivals: work.processedArrivals, lines: work.lines.qty.length };
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  }
}

interface CycleStats {
  arrivedMs: Float64Array;
  committedMs: Float64Array;
  lines: number;
  cycles: number;
  cycleDurationsMs: number[];
}

/** Runs a cycle every `cycleMs` from t0 until every fill is processed; an overrun starts the next at once. */
async function runCycles(
  client: pg.ClientBase,
  stats: CycleStats,
  options: { t0Ms: number; cycleMs: number; cyclesMax: number },
): Promise<void> {
  let processed = 0;
  const total = stats.committedMs.length;
  for (let slot = 1; processed < total; slot++) {
    invariant(
      stats.cycles < options.cyclesMax,
      `batch-cycle: more than ${options.cyclesMax} cycles`,
    );
    const dueMs = options.t0Ms + slot * options.cycleMs;
    const nowMs = performance.now();
    if (dueMs > nowMs) await sleep(dueMs - nowMs);
    else slot = Math.floor((nowMs - options.t0Ms) / options.cycleMs);
    const startMs = performance.now();
    const { arrivals, lines } = await runCycle(client);
    const committedMs = performance.now();
    if (arrivals.length === 0) continue;
    for (const a of arrivals) stats.committedMs[a] = committedMs;
    processed += arrivals.length;
    stats.lines += lines;
    stats.cycles++;
    stats.cycleDurationsMs.push(Math.round(committedMs - startMs));
  }
}

export async function runBatchCycle(options: BatchCycleOptions): Promise<ArmResult> {
  const { scenario, cycleMs, log } = options;
  const fills = scenario.publishOrder;
  invariant(cycleMs >= 1, `runBatchCycle: cycleMs ${cycleMs} must be >= 1`);
  invariant(fills.length > 0, 'runBatchCycle: the scenario has no fills');
  const expected = expectedBooks(scenario);
  return withArmDatabase(options.baseDatabaseUrl, 'batch', async (url) => {
    const pool = openPool(url, 3);
    try {
      await createAndSeedBooks(pool, scenario, STAGED_SCHEMA);
      log(`batch-cycle every ${cycleMs} ms: ${fills.length} fills`);
      const stats = await driveBatch(pool, options);
      const firstMs = stats.arrivedMs.reduce((m, x) => Math.min(m, x), Infinity);
      const elapsedMs = stats.committedMs.reduce((m, x) => Math.max(m, x), 0) - firstMs;
      await options.beforeCheck?.(pool);
      const books = compareBooks(expected, await readBooks(pool));
      const inDb = await checkInDatabase(pool, 'staged_fills', 'processed');
      const latency = [...stats.committedMs].map((c, i) => c - (stats.arrivedMs[i] ?? 0));
      const result: ArmResult = {
        arm: 'batch-cycle',
        lines: stats.lines,
        fills: fills.length,
        elapsedMs: Math.round(elapsedMs),
        linesPerSec: perSec(stats.lines, elapsedMs),
        fillsPerSec: perSec(fills.length, elapsedMs),
        latencyMs: percentiles(latency),
        booksOk: books.ok && inDb.violations.length === 0,
        checks: books.checks + inDb.checks,
        violations: [...books.violations, ...inDb.violations].slice(0, 50),
        details: {
          cycleMs,
          cycles: stats.cycles,
          cycleDurationsMs: stats.cycleDurationsMs.slice(0, 100),
          // Lines per second inside the cycle transactions alone (waiting for the cycle excluded).
          inCycleLinesPerSec: perSec(
            stats.lines,
            stats.cycleDurationsMs.reduce((sum, ms) => sum + ms, 0),
          ),
          arrivalRatePerSec: options.arrivalRatePerSec ?? 'flood',
          rejectedLines: expected.rejectedLines,
        },
      };
      log(`batch-cycle: ${result.linesPerSec} lines/s over ${stats.cycles} cycles`);
      return result;
    } finally {
      await pool.end();
    }
  });
}

/** Arrivals, staging and cycles run side by side; resolves when every fill is processed. */
async function driveBatch(pool: pg.Pool, options: BatchCycleOptions): Promise<CycleStats> {
  const fills = options.scenario.publishOrder;
  const stats: CycleStats = {
    arrivedMs: new Float64Array(fills.length),
    committedMs: new Float64Array(fills.length),
    lines: 0,
    cycles: 0,
    cycleDurationsMs: [],
  };
  let arrived = 0;
  const cycleClient = await pool.connect();
  const t0Ms = performance.now();
  try {
    const arrivals = replayArrivals({
      count: fills.length,
      t0Ms,
      arrivalRatePerSec: options.arrivalRatePerSec,
      arrive: (i, atMs) => {
        stats.arrivedMs[i] = atMs;
        arrived = i + 1;
      },
    });
    const staging = stageFills(pool, fills, () => arrived, options.stageBatchFills ?? 2_000);
    // A generous bound: the cycles an arrival schedule could need, plus slack.
    const spanMs = options.arrivalRatePerSec
      ? (fills.length * 1000) / options.arrivalRatePerSec
      : 0;
    const cyclesMax = Math.ceil(spanMs / options.cycleMs) + 10_000;
    const cycles = runCycles(cycleClient, stats, { t0Ms, cycleMs: options.cycleMs, cyclesMax });
    await Promise.all([arrivals, staging, cycles]);
  } finally {
    cycleClient.release();
  }
  invariant(
    stats.committedMs.every((c) => c > 0),
    'driveBatch: every fill was committed',
  );
  return stats;
}
