/**
 * Recovery figures, on a journal a benchmark run left behind:
 * - activation: a fresh actor system asks each account for its view, one at
 *   a time, so each ask is one actor recovering from its snapshot and the
 *   journal tail (p50/p99 of those asks);
 * - replay: the whole journal scanned in key and sequence order and folded
 *   with the deciders' `evolve`, snapshots ignored (events per second), as a
 *   rebuild of all state would.
 */
import {
  evolve as evolveAccount,
  initialState as initialAccount,
  lineEvents,
} from '../actors/account/decider.ts';
import {
  evolve as evolveBlockOrder,
  initialState as initialBlockOrder,
} from '../actors/block-order/decider.ts';
import { ACCOUNT_KIND } from '../actors/account/shell.ts';
import { BLOCK_ORDER_KIND } from '../actors/block-order/shell.ts';
import { invariant } from '../actors/errors.ts';
import type { AccountView } from '../actors/views.ts';
import type { ViewReply } from '../actors/protocol.ts';
import { decodeVersioned } from '../persistence/codec.ts';
import type { Database } from '../persistence/db.ts';
import { SqlReferenceData } from '../persistence/reference.ts';
import { SqlJournal } from '../persistence/sql-journal.ts';
import { startActors } from '../system/actors.ts';
import type { Config } from '../system/config.ts';
import { createLogger } from '../system/log.ts';
import { openDatabase } from '../system/service.ts';
import { percentiles, type LatencyMs } from './arms/common.ts';

export interface RecoveryFigures {
  activations: number;
  activationMs: LatencyMs;
  replayKeys: number;
  replayEvents: number;
  replayEventsPerSec: number;
  /** Allocation lines folded (an AllocationBatch row carries several). */
  replayLines: number;
  replayLinesPerSec: number;
}

const journalOptions = {
  batchEventsMax: 100,
  flushIntervalMs: 2,
  flushesInFlightMax: 2,
  pendingEventsMax: 10_000,
};

async function activations(config: Config, db: Database, accountIds: readonly string[]) {
  const journal = new SqlJournal(db, journalOptions);
  const log = createLogger('silent', {});
  const actors = startActors(config, {
    journal,
    reference: new SqlReferenceData(db),
    clock: { nowMs: () => Date.now() },
    observer: { fillSettled: () => {}, accountLineDurable: () => {} },
    log,
  });
  const samplesMs: number[] = [];
  try {
    for (const id of accountIds) {
      const startedMs = performance.now();
      const reply = await actors.accounts.ask<ViewReply<AccountView>>(
        id,
        (replyTo) => ({ type: 'GetView', replyTo }),
        10_000,
      );
      samplesMs.push(performance.now() - startedMs);
      invariant(reply.type === 'View' && reply.view.opened, `account ${id} did not recover`);
    }
  } finally {
    actors.close();
    await journal.close();
  }
  return samplesMs;
}

/**
 * Folds the whole journal, key by key in sequence order, as a rebuild of all
 * state would: one keyset-paged scan, each row decoded and evolved, a
 * missing sequence number an error. Returns events folded and seconds taken.
 */
async function replayAll(db: Database, pageRows: number) {
  let events = 0;
  let lines = 0;
  let keys = 0;
  let current = { key: '', seq: 0, account: true };
  let a = initialAccount();
  let b = initialBlockOrder();
  let after = { key: '', seq: 0 };
  const startedMs = performance.now();
  for (;;) {
    const rows = await db.query<{ persistence_key: string; sequence_nr: string; payload: Buffer }>(
      `SELECT persistence_key, sequence_nr, payload FROM journal
       WHERE (persistence_key, sequence_nr) > ($1, $2)
       ORDER BY persistence_key, sequence_nr LIMIT $3`,
      [after.key, after.seq, pageRows],
    );
    for (const row of rows) {
      const key = row.persistence_key;
      const seq = Number(row.sequence_nr);
      if (key !== current.key) {
        const account = key.startsWith(`${ACCOUNT_KIND}-`);
        invariant(account || key.startsWith(`${BLOCK_ORDER_KIND}-`), `unknown key ${key}`);
        current = { key, seq: 0, account };
        a = initialAccount();
        b = initialBlockOrder();
        keys++;
      }
      invariant(seq === current.seq + 1, `${key}: #${seq} after #${current.seq}`);
      current.seq = seq;
      const event = decodeVersioned(row.payload, key) as never;
      if (current.account) {
        a = evolveAccount(a, event);
        lines += lineEvents(event).length;
      } else b = evolveBlockOrder(b, event);
      events++;
    }
    const last = rows.at(-1);
    if (!last || rows.length < pageRows) break;
    after = { key: last.persistence_key, seq: Number(last.sequence_nr) };
  }
  const seconds = (performance.now() - startedMs) / 1000;
  return { keys, events, lines, seconds };
}

export async function measureRecovery(
  config: Config,
  options: { activationsMax: number },
): Promise<RecoveryFigures> {
  const db = await openDatabase(config, 4);
  try {
    // Accounts with a journal: an account no order targeted has nothing to recover.
    const rows = await db.query<{ persistence_key: string }>(
      `SELECT DISTINCT persistence_key FROM journal WHERE persistence_key LIKE $1
       ORDER BY persistence_key LIMIT $2`,
      [`${ACCOUNT_KIND}-%`, options.activationsMax],
    );
    const ids = rows.map((r) => r.persistence_key.slice(`${ACCOUNT_KIND}-`.length));
    const samplesMs = await activations(config, db, ids);
    const replayed = await replayAll(db, 20_000);
    return {
      activations: samplesMs.length,
      activationMs: percentiles(samplesMs) ?? { p50: 0, p90: 0, p99: 0, p999: 0, max: 0 },
      replayKeys: replayed.keys,
      replayEvents: replayed.events,
      replayEventsPerSec: Math.round(replayed.events / replayed.seconds),
      replayLines: replayed.lines,
      replayLinesPerSec: Math.round(replayed.lines / replayed.seconds),
    };
  } finally {
    await db.close();
  }
}
