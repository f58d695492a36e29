/**
 * The start-up sweep: a block order whose journal ends with unconfirmed
 * allocations is woken, so it re-delivers those lines now instead of on its
 * next fill (which may never come). Bounded: RECOVERY_CONCURRENCY_MAX at once.
 */
import { BLOCK_ORDER_KIND, UNCONFIRMED_EVENT_TYPES } from '../actors/block-order/shell.ts';
import { invariant } from '../actors/errors.ts';
import type { BlockOrderMessage } from '../actors/protocol.ts';
import type { Database } from '../persistence/db.ts';
import { keysWhoseLastEventIs } from '../persistence/journal.ts';
import type { EntityHost } from './entity-host.ts';
import type { Logger } from './log.ts';

export async function wakeUnconfirmed(deps: {
  db: Database;
  blockOrders: EntityHost<unknown, BlockOrderMessage, unknown>;
  concurrencyMax: number;
  askTimeoutMs: number;
  log: Logger;
}): Promise<number> {
  invariant(deps.concurrencyMax >= 1, 'the sweep wakes at least one order at a time');
  const prefix = `${BLOCK_ORDER_KIND}-`;
  const keys = await keysWhoseLastEventIs(deps.db, prefix, UNCONFIRMED_EVENT_TYPES);
  const ids = keys.map((key) => key.slice(prefix.length));
  for (let i = 0; i < ids.length; i += deps.concurrencyMax) {
    // One slow or failing order must not fail start-up: the rest still wake,
    // and the failed one re-delivers on its next message.
    const chunk = ids.slice(i, i + deps.concurrencyMax);
    const results = await Promise.allSettled(
      chunk.map((id) =>
        deps.blockOrders.ask(id, (replyTo) => ({ type: 'Wake', replyTo }), deps.askTimeoutMs),
      ),
    );
    results.forEach((r, j) => {
      if (r.status === 'rejected')
        deps.log.warn('could not wake a block order at start-up', {
          blockOrder: chunk[j],
          error: r.reason,
        });
    });
  }
  return ids.length;
}
