/**
 * A stable digest of the books: every account's and every block order's
 * state, folded from its journal with the deciders' own `evolve`, as
 * canonical JSON (sorted keys, bigint as a decimal string), hashed with
 * sha256. Two databases with the same books give the same digest, however
 * their events were batched or their keys ordered.
 *
 * Generic on purpose: every field of the state counts unless excluded below,
 * so a field added later is covered without touching this file.
 */
import { createHash, type Hash } from 'node:crypto';
import * as account from '../../actors/account/decider.ts';
import { ACCOUNT_KIND } from '../../actors/account/shell.ts';
import * as blockOrder from '../../actors/block-order/decider.ts';
import { BLOCK_ORDER_KIND } from '../../actors/block-order/shell.ts';
import type { Database } from '../../persistence/db.ts';
import { List, Map as PMap } from 'immutable';
import { readJournal } from '../invariants.ts';

/**
 * Block-order fields left out of the digest: delivery bookkeeping, not books.
 * Which fills are still awaiting their accounts (`pending`) and how far the
 * accounts have confirmed (`confirmedThroughSeq`) depend on when
 * confirmations happened to be journaled, which differs between a live run and a replay; the
 * allocations themselves do not.
 */
export const BLOCK_ORDER_EXCLUDED_FIELDS: readonly string[] = ['pending', 'confirmedThroughSeq'];

/**
 * Canonical JSON: object keys sorted (at every depth), bigint as a decimal
 * string, undefined members dropped, Maps as objects (immutable.js maps and
 * lists as Maps and arrays). Anything else that JSON
 * cannot hold exactly (a function, a symbol, a non-finite number, a Set, bytes)
 * throws, so a new kind of field is noticed rather than silently skipped.
 */
export function canonicalJson(value: unknown): string {
  switch (typeof value) {
    case 'bigint':
      return JSON.stringify(value.toString());
    case 'string':
    case 'boolean':
      return JSON.stringify(value);
    case 'number':
      if (!Number.isFinite(value)) throw new Error(`cannot digest the number ${value}`);
      return JSON.stringify(value);
    case 'object':
      if (value === null) return 'null';
      if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
      if (value instanceof Map) return canonicalJson(Object.fromEntries(value));
      // The average-price state's persistent collections: as the plain ones.
      if (PMap.isMap(value)) return canonicalJson(Object.fromEntries(value.entries()));
      if (List.isList(value)) return canonicalJson(value.toArray());
      return canonicalObject(value);
    default:
      throw new Error(`cannot digest a ${typeof value}`);
  }
}

function canonicalObject(value: object): string {
  const proto: unknown = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null)
    throw new Error(
      `cannot digest a ${(value as { constructor?: { name?: string } }).constructor?.name ?? 'object'}`,
    );
  const record = value as Record<string, unknown>;
  const members = Object.keys(record)
    .filter((k) => record[k] !== undefined)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${canonicalJson(record[k])}`);
  return `{${members.join(',')}}`;
}

/** sha256 (hex) of the canonical JSON of `value`. */
export function digestOf(value: unknown): string {
  return createHash('sha256').update(canonicalJson(value)).digest('hex');
}

/** The block order's state with the delivery bookkeeping removed. */
export function blockOrderBooks(state: blockOrder.BlockOrderState): Record<string, unknown> {
  const out: Record<string, unknown> = { ...state };
  for (const field of BLOCK_ORDER_EXCLUDED_FIELDS) delete out[field];
  return out;
}

export interface StateDigest {
  /** sha256 over every key's canonical state, keys in order. */
  digest: string;
  accounts: number;
  blockOrders: number;
  /** Journal rows folded. */
  events: number;
}

/** Folds each key's journal (rows come ordered by key, then seq) and feeds each final state to `hash`. */
async function foldKind<S>(
  db: Database,
  prefix: string,
  fold: { initial: () => S; evolve: (state: S, event: never) => S; books: (state: S) => unknown },
  hash: Hash,
): Promise<{ keys: number; events: number }> {
  let key: string | undefined;
  let state = fold.initial();
  let keys = 0;
  let events = 0;
  const emit = () => {
    if (key === undefined) return;
    hash.update(`${JSON.stringify(key)}:${canonicalJson(fold.books(state))}\n`);
    keys++;
  };
  for await (const row of readJournal(db, prefix)) {
    if (row.key !== key) {
      emit();
      key = row.key;
      state = fold.initial();
    }
    state = fold.evolve(state, row.event as never);
    events++;
  }
  emit();
  return { keys, events };
}

/** The digest of every account's and block order's state in `db`'s journal. */
export async function digestBooks(db: Database): Promise<StateDigest> {
  const hash = createHash('sha256');
  const accounts = await foldKind(
    db,
    `${ACCOUNT_KIND}-`,
    { initial: account.initialState, evolve: account.evolve, books: (s) => s },
    hash,
  );
  hash.update('--\n');
  const orders = await foldKind(
    db,
    `${BLOCK_ORDER_KIND}-`,
    { initial: blockOrder.initialState, evolve: blockOrder.evolve, books: blockOrderBooks },
    hash,
  );
  return {
    digest: hash.digest('hex'),
    accounts: accounts.keys,
    blockOrders: orders.keys,
    events: accounts.events + orders.events,
  };
}
