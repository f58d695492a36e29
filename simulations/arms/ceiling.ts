/**
 * Arm "ceiling": the fastest durable way this machine writes rows shaped like
 * the journal, as an upper bound for any design. Rows: `accounts` keys
 * `account-ACC000123`, each with its own increasing sequence_nr, event_type
 * AllocationApplied, and a payload of random bytes exactly as long as the
 * msgpack of a typical account AllocationApplied event (measured with the
 * project's codec; 1,024 distinct random payloads, reused round-robin).
 * Every statement commits on its own (synchronous_commit on, logged table).
 * Each configuration starts from a fresh table and ends with COUNT(*) = rows.
 */
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import type pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { invariant } from '../../actors/errors.ts';
import { encodeVersioned } from '../../persistence/codec.ts';
import { prng } from '../scenario.ts';
import { big, openPool, perSec, withArmDatabase, type Log } from './common.ts';

export type CeilingMethod = 'insert' | 'unnest' | 'copy-binary' | 'copy-text';

export interface CeilingConfig {
  method: CeilingMethod;
  batchRows: number;
  connections: number;
}

export interface CeilingTry extends CeilingConfig {
  rowsPerSec: number;
}

export interface CeilingResult {
  rowsPerSec: number;
  method: 'copy' | 'insert' | 'unnest';
  tried: CeilingTry[];
  /** The winning configuration, in full. */
  best: CeilingTry;
  payloadBytes: number;
  rows: number;
}

export const DEFAULT_CEILING_GRID: readonly CeilingConfig[] = [
  ...[500, 2_000].flatMap((batchRows) =>
    [1, 2, 4].map((connections) => ({ method: 'insert' as const, batchRows, connections })),
  ),
  ...[2_000, 10_000].flatMap((batchRows) =>
    [1, 2, 4].map((connections) => ({ method: 'unnest' as const, batchRows, connections })),
  ),
  ...[10_000, 50_000].flatMap((batchRows) =>
    [1, 2].map((connections) => ({ method: 'copy-binary' as const, batchRows, connections })),
  ),
  { method: 'copy-text', batchRows: 50_000, connections: 1 },
];

const JOURNAL_DDL = `CREATE TABLE journal (persistence_key text NOT NULL, sequence_nr bigint NOT NULL,
  event_type text NOT NULL, payload bytea NOT NULL, created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (persistence_key, sequence_nr))`;

const COLUMNS = '(persistence_key, sequence_nr, event_type, payload)';
const EVENT_TYPE = 'AllocationApplied';
const DISTINCT_PAYLOADS = 1_024;
/** Bind parameters per statement are limited to 65,535 by the wire protocol. */
const BIND_PARAMS_MAX = 65_535;

interface JournalRows {
  keys: string[];
  seqs: number[];
  payloads: Buffer[];
}

/** Bytes of a typical account AllocationApplied event, as the journal stores it. */
export function allocationAppliedBytes(): number {
  const event = {
    type: 'AllocationApplied',
    allocation: {
      blockOrderId: 'BO00123',
      fillSeq: 187,
      prevSeq: 181,
      securityId: 'SEC0042',
      side: 'BUY',
      quantity: 300n,
      price: 101_250_000n,
    },
    cashDeltaMinor: -3_037_500n,
    atMs: Date.UTC(2026, 10, 20, 14, 30),
  };
  return encodeVersioned(event).length;
}

/** Rows spread at random (seeded) over the accounts; each key's seq counts up from 1. */
function journalRows(rows: number, accounts: number, payloadBytes: number): JournalRows {
  invariant(rows >= 1 && accounts >= 1, `journalRows: rows ${rows}, accounts ${accounts}`);
  const rnd = prng(7);
  const next = new Uint32Array(accounts);
  const pool = Array.from({ length: DISTINCT_PAYLOADS }, () => randomBytes(payloadBytes));
  const out: JournalRows = {
    keys: new Array(rows),
    seqs: new Array(rows),
    payloads: new Array(rows),
  };
  for (let i = 0; i < rows; i++) {
    const a = Math.floor(rnd() * accounts);
    out.keys[i] = `account-ACC${String(a + 1).padStart(6, '0')}`;
    out.seqs[i] = ++next[a]!;
    out.payloads[i] = pool[i % DISTINCT_PAYLOADS]!;
  }
  return out;
}

/** Multi-row INSERT with bind parameters; named, so each connection parses it once per size. */
async function writeInsert(
  client: pg.ClientBase,
  r: JournalRows,
  from: number,
  to: number,
): Promise<void> {
  const tuples: string[] = [];
  const values: unknown[] = [];
  for (let i = from; i < to; i++) {
    const p = values.length;
    tuples.push(`($${p + 1}, $${p + 2}, $${p + 3}, $${p + 4})`);
    values.push(r.keys[i], r.seqs[i], EVENT_TYPE, r.payloads[i]);
  }
  const text = `INSERT INTO journal ${COLUMNS} VALUES ${tuples.join(', ')}`;
  await client.query({ name: `journal_insert_${to - from}`, text, values });
}

async function writeUnnest(
  client: pg.ClientBase,
  r: JournalRows,
  from: number,
  to: number,
): Promise<void> {
  await client.query(
    `INSERT INTO journal ${COLUMNS} SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bytea[])`,
    [
      r.keys.slice(from, to),
      r.seqs.slice(from, to),
      new Array(to - from).fill(EVENT_TYPE),
      r.payloads.slice(from, to),
    ],
  );
}

/** PostgreSQL binary COPY: header, one tuple per row (4 fields), trailer. */
function binaryCopyBuffer(r: JournalRows, from: number, to: number): Buffer {
  const typeBytes = Buffer.from(EVENT_TYPE);
  let size = 19 + 2;
  for (let i = from; i < to; i++)
    size +=
      2 + 4 * 4 + Buffer.byteLength(r.keys[i]!) + 8 + typeBytes.length + r.payloads[i]!.length;
  const b = Buffer.allocUnsafe(size);
  let o = b.write('PGCOPY\n\xff\r\n\0', 0, 'latin1');
  o = b.writeInt32BE(0, o);
  o = b.writeInt32BE(0, o);
  for (let i = from; i < to; i++) {
    o = b.writeInt16BE(4, o);
    const key = r.keys[i]!;
    o = b.writeInt32BE(Buffer.byteLength(key), o);
    o += b.write(key, o, 'utf8');
    o = b.writeInt32BE(8, o);
    o = b.writeBigInt64BE(BigInt(r.seqs[i]!), o);
    o = b.writeInt32BE(typeBytes.length, o);
    o += typeBytes.copy(b, o);
    const payload = r.payloads[i]!;
    o = b.writeInt32BE(payload.length, o);
    o += payload.copy(b, o);
  }
  o = b.writeInt16BE(-1, o);
  invariant(o === size, `binaryCopyBuffer: wrote ${o} of ${size} bytes`);
  return b;
}

/** Text COPY: tab-separated; bytea in hex, its backslash escaped for the text format. */
function textCopyBuffer(r: JournalRows, from: number, to: number): Buffer {
  const parts: string[] = [];
  for (let i = from; i < to; i++) {
    parts.push(
      `${r.keys[i]}\t${r.seqs[i]}\t${EVENT_TYPE}\t\\\\x${r.payloads[i]!.toString('hex')}\n`,
    );
  }
  return Buffer.from(parts.join(''), 'utf8');
}

async function writeCopy(client: pg.ClientBase, data: Buffer, binary: boolean): Promise<void> {
  const stream = client.query(
    copyFrom(`COPY journal ${COLUMNS} FROM STDIN${binary ? ' (FORMAT binary)' : ''}`),
  );
  await pipeline(Readable.from([data]), stream);
}

/** Writes rows [from, to) with `method` on `client`: one statement, one commit. */
function writeBatch(
  method: CeilingMethod,
  client: pg.ClientBase,
  r: JournalRows,
  from: number,
  to: number,
): Promise<void> {
  switch (method) {
    case 'insert':
      return writeInsert(client, r, from, to);
    case 'unnest':
      return writeUnnest(client, r, from, to);
    case 'copy-binary':
      return writeCopy(client, binaryCopyBuffer(r, from, to), true);
    case 'copy-text':
      return writeCopy(client, textCopyBuffer(r, from, to), false);
  }
}

/** One configuration on a fresh table; returns its rows/s after checking COUNT(*). */
async function tryConfig(pool: pg.Pool, r: JournalRows, config: CeilingConfig): Promise<number> {
  const { method, batchRows, connections } = config;
  invariant(batchRows >= 1 && connections >= 1, `tryConfig: bad config ${JSON.stringify(config)}`);
  invariant(
    method !== 'insert' || batchRows * 4 <= BIND_PARAMS_MAX,
    `insert batch ${batchRows} exceeds the bind limit`,
  );
  await pool.query('DROP TABLE IF EXISTS journal');
  await pool.query(JOURNAL_DDL);
  const rows = r.keys.length;
  const clients = await Promise.all(Array.from({ length: connections }, () => pool.connect()));
  let nextRow = 0;
  const startMs = performance.now();
  try {
    await Promise.all(
      clients.map(async (client) => {
        // Bounded: each turn takes the next batch; there are rows / batchRows of them.
        while (nextRow < rows) {
          const from = nextRow;
          nextRow = Math.min(rows, from + batchRows);
          await writeBatch(method, client, r, from, nextRow);
        }
      }),
    );
  } finally {
    clients.forEach((c) => c.release());
  }
  const elapsedMs = performance.now() - startMs;
  const count = await pool.query<{ n: string }>('SELECT count(*) AS n FROM journal');
  invariant(
    big(count.rows[0]?.n) === BigInt(rows),
    `ceiling ${method}: ${count.rows[0]?.n} rows, expected ${rows}`,
  );
  return perSec(rows, elapsedMs);
}

export async function runCeiling(options: {
  baseDatabaseUrl: string;
  rows: number;
  accounts: number;
  log: Log;
  grid?: readonly CeilingConfig[];
}): Promise<CeilingResult> {
  const { rows, accounts, log } = options;
  const grid = options.grid ?? DEFAULT_CEILING_GRID;
  invariant(grid.length > 0, 'runCeiling: an empty grid');
  const payloadBytes = allocationAppliedBytes();
  const data = journalRows(rows, accounts, payloadBytes);
  return withArmDatabase(options.baseDatabaseUrl, 'ceiling', async (url) => {
    const pool = openPool(url, Math.max(...grid.map((c) => c.connections)) + 1);
    try {
      const tried: CeilingTry[] = [];
      for (const config of grid) {
        const rowsPerSec = await tryConfig(pool, data, config);
        log(
          `ceiling ${config.method} batch ${config.batchRows} × ${config.connections}: ${rowsPerSec} rows/s`,
        );
        tried.push({ ...config, rowsPerSec });
      }
      const best = [...tried].sort((a, b) => b.rowsPerSec - a.rowsPerSec)[0];
      invariant(best, 'runCeiling: nothing was tried');
      const method = best.method.startsWith('copy') ? 'copy' : (best.method as 'insert' | 'unnest');
      return { rowsPerSec: best.rowsPerSec, method, tried, best, payloadBytes, rows };
    } finally {
      await pool.end();
    }
  });
}
