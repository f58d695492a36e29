/**
 * Recovery figures, on a journal a benchmark run left behind:
 * - activation: a fresh actor system asks each account for its view, one at
 *   a time, so each ask is one actor recovering from its snapshot and the
 *   journal tail (p50/p99 of those asks);
 * - replay: every key's whole journal read page by page and folded with the
 *   deciders' `evolve`, snapshots ignored (events per second).
 */
import {
  evolve as evolveAccount,
  initialState as initialAccount,
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
import { Database } from '../persistence/db.ts';
import { SqlReferenceData } from '../persistence/reference.ts';
import { SqlJournal } from '../persistence/sql-journal.ts';
import { startActors } from '../system/actors.ts';
import type { Config } from '../system/config.ts';
import { createLogger } from '../system/log.ts';
import { replay } from '../system/recovery.ts';
import { percentiles, type LatencyMs } from './arms/common.ts';

export interface RecoveryFigures {
  activations: number;
  activationMs: LatencyMs;
  replayKeys: number;
  replayEvents: number;
  replayEventsPerSec: number;
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

/** Folds every key's journal from the first event; returns events folded and seconds taken. */
async function replayAll(db: Database, pageEvents: number, concurrencyMax: number) {
  const journal = new SqlJournal(db, journalOptions);
  const rows = await db.query<{ persistence_key: string }>(
    'SELECT DISTINCT persistence_key FROM journal',
  );
  const keys = rows.map((r) => r.persistence_key);
  let events = 0;
  const fold = async (key: string) => {
    const account = key.startsWith(`${ACCOUNT_KIND}-`);
    invariant(account || key.startsWith(`${BLOCK_ORDER_KIND}-`), `unknown key ${key}`);
    let a = initialAccount();
    let b = initialBlockOrder();
    await replay(journal, key, 0, pageEvents, (record) => {
      const event = decodeVersioned(record.payload, key) as never;
      if (account) a = evolveAccount(a, event);
      else b = evolveBlockOrder(b, event);
      events++;
    });
  };
  const startedMs = performance.now();
  // Many keys at once: their page reads made in one turn share one query.
  for (let i = 0; i < keys.length; i += concurrencyMax)
    await Promise.all(keys.slice(i, i + concurrencyMax).map(fold));
  const seconds = (performance.now() - startedMs) / 1000;
  await journal.close();
  return { keys: keys.length, events, seconds };
}

export async function measureRecovery(
  config: Config,
  options: { accountIds: readonly string[]; activationsMax: number },
): Promise<RecoveryFigures> {
  const db = await Database.open({
    url: config.databaseUrl,
    poolMax: 4,
    retriesMax: config.dbRetriesMax,
    retryBackoffMs: config.dbRetryBackoffMs,
  });
  try {
    const ids = options.accountIds.slice(0, options.activationsMax);
    const samplesMs = await activations(config, db, ids);
    const replayed = await replayAll(db, config.replayPageEvents, 64);
    return {
      activations: samplesMs.length,
      activationMs: percentiles(samplesMs) ?? { p50: 0, p90: 0, p99: 0, p999: 0, max: 0 },
      replayKeys: replayed.keys,
      replayEvents: replayed.events,
      replayEventsPerSec: Math.round(replayed.events / replayed.seconds),
    };
  } finally {
    await db.close();
  }
}
