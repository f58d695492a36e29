/**
 * After a simulated day: close booking batches through the API until nothing
 * is left, fold every line of every file back into per-account cash and
 * positions, and compare them with the books the invariant checker rebuilt
 * from the journals (which it already compared with the live actors). Then
 * reconcile through the API. Any difference is a violation of the run.
 */
import type { FastifyInstance } from 'fastify';
import { cashDelta, PRICE_DECIMALS, parseDecimal } from '../actors/domain/money.ts';
import { invariant } from '../actors/errors.ts';

export interface BookingCheck {
  batches: number;
  lines: number;
  accounts: number;
  /** Every account's cash and positions, folded from the files, equal the books. */
  matchesBooks: boolean;
  reconciliationClean: boolean;
  reconciliationBreaks: number;
  violations: string[];
}

type Deltas = ReadonlyMap<string, { cash: bigint; positions: ReadonlyMap<string, bigint> }>;

/** Closes at most this many batches (a capped batch leaves the rest for the next). */
const CLOSES_MAX = 1_000;
const VIOLATIONS_MAX = 20;

/** Every batch's CSV, closing until the API says nothing is left (409). */
async function closeAll(app: FastifyInstance): Promise<string[]> {
  const files: string[] = [];
  for (let i = 0; i < CLOSES_MAX; i++) {
    const closed = await app.inject({ method: 'POST', url: '/api/v1/bookings/batches' });
    if (closed.statusCode === 409) return files;
    invariant(closed.statusCode === 201, `booking close: ${closed.statusCode} ${closed.body}`);
    const { id } = closed.json<{ id: string }>();
    const file = await app.inject({ method: 'GET', url: `/api/v1/bookings/batches/${id}/file` });
    invariant(file.statusCode === 200, `booking file ${id}: ${file.statusCode}`);
    files.push(file.body);
  }
  throw new Error(`more than ${CLOSES_MAX} booking batches`);
}

/** A CSV line's effect on its account: signed shares and cash, as the books move them. */
function foldLine(
  books: Map<string, { cash: bigint; positions: Map<string, bigint> }>,
  row: string,
) {
  const [account = '', security = '', , type = '', quantityText = '', priceText = ''] =
    row.split(',');
  const quantity = BigInt(quantityText);
  const price = parseDecimal('price', priceText, PRICE_DECIMALS);
  const side = type.startsWith('BUY') ? 'BUY' : 'SELL';
  const sign = type.endsWith('_REVERSAL') ? -1n : 1n;
  const b = books.get(account) ?? { cash: 0n, positions: new Map<string, bigint>() };
  b.cash += sign * cashDelta(side, quantity, price);
  const shares = side === 'BUY' ? quantity : -quantity;
  b.positions.set(security, (b.positions.get(security) ?? 0n) + sign * shares);
  books.set(account, b);
}

function differences(booked: Deltas, books: Deltas): string[] {
  const out: string[] = [];
  const zero = { cash: 0n, positions: new Map<string, bigint>() };
  for (const id of new Set([...booked.keys(), ...books.keys()])) {
    const a = booked.get(id) ?? zero;
    const b = books.get(id) ?? zero;
    if (a.cash !== b.cash) out.push(`${id}: booked cash ${a.cash}, books ${b.cash}`);
    for (const s of new Set([...a.positions.keys(), ...b.positions.keys()])) {
      const x = a.positions.get(s) ?? 0n;
      const y = b.positions.get(s) ?? 0n;
      if (x !== y) out.push(`${id} ${s}: booked ${x} shares, books ${y}`);
    }
    if (out.length >= VIOLATIONS_MAX) break;
  }
  return out;
}

export async function checkBookingAndReconciliation(
  app: FastifyInstance,
  books: Deltas,
): Promise<BookingCheck> {
  const files = await closeAll(app);
  const booked = new Map<string, { cash: bigint; positions: Map<string, bigint> }>();
  let lines = 0;
  for (const csv of files) {
    const rows = csv.split('\n').filter((r) => r !== '');
    invariant(rows[0]?.startsWith('portfolio_id,'), 'a booking file starts with its header');
    for (const row of rows.slice(1)) foldLine(booked, row);
    lines += rows.length - 1;
  }
  const violations = differences(booked, books).map((d) => `booking: ${d}`);
  const rec = await app.inject({ method: 'GET', url: '/api/v1/reconciliation' });
  invariant(rec.statusCode === 200, `reconciliation: ${rec.statusCode} ${rec.body}`);
  const report = rec.json<{ clean: boolean; breaks: Array<{ kind: string; detail: string }> }>();
  for (const b of report.breaks.slice(0, VIOLATIONS_MAX))
    violations.push(`reconciliation ${b.kind}: ${b.detail}`);
  return {
    batches: files.length,
    lines,
    accounts: booked.size,
    matchesBooks: violations.every((v) => !v.startsWith('booking:')),
    reconciliationClean: report.clean,
    reconciliationBreaks: report.breaks.length,
    violations,
  };
}
