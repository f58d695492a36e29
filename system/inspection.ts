/**
 * The inspection adapter: the API's port (api/ports.ts) on the running
 * system. A view comes from the live actor (an ask with a timeout), never
 * from a copy; readiness checks the database, NATS, the consumer and the
 * supervisors.
 */
import { ACCOUNT_KIND } from '../actors/account/shell.ts';
import { bigintsAsStrings, BlockfillError, ErrorCode, invariant } from '../actors/errors.ts';
import type {
  AccountMessage,
  BlockOrderMessage,
  RetrySuspenseReply,
  ViewReply,
} from '../actors/protocol.ts';
import type { AccountView, BlockOrderActorView } from '../actors/views.ts';
import {
  EVENTS_PAGE_MAX,
  SuspenseNotAppliedError,
  type AccountEventsPage,
  type InspectionPort,
  type Readiness,
  type ReadinessCheck,
  type SuspenseRetryResult,
} from '../api/ports.ts';
import { decodeVersioned } from '../persistence/codec.ts';
import type { Database } from '../persistence/db.ts';
import type { Journal } from '../persistence/journal.ts';
import { blockOrderSuspense } from '../persistence/suspense-ledger.ts';
import type { EntityHost } from './entity-host.ts';
import type { FillConsumer, NatsHandles } from './jetstream.ts';

export interface InspectionDeps {
  db: Database;
  journal: Pick<Journal, 'load'>;
  nats: NatsHandles;
  consumer: FillConsumer;
  accounts: EntityHost<unknown, AccountMessage, unknown>;
  blockOrders: EntityHost<unknown, BlockOrderMessage, unknown>;
  askTimeoutMs: number;
}

function viewOrThrow<V>(reply: ViewReply<V>): V | undefined {
  switch (reply.type) {
    case 'View':
      return reply.view;
    case 'NotFound':
      return undefined;
    case 'Failed': {
      const known = (Object.values(ErrorCode) as string[]).includes(reply.code);
      const code = known ? (reply.code as ErrorCode) : ErrorCode.ActorCrashed;
      throw new BlockfillError(code, reply.message);
    }
    default: {
      const never: never = reply;
      throw new Error(`unexpected reply ${JSON.stringify(never)}`);
    }
  }
}

const check = (work: Promise<string | undefined>): Promise<ReadinessCheck> =>
  work.then(
    (detail) => (detail === undefined ? { ok: true } : { ok: true, detail }),
    (error: Error) => ({ ok: false, detail: error.message }),
  );

async function readiness(deps: InspectionDeps): Promise<Readiness> {
  const { db, nats, consumer } = deps;
  const database = await check(db.ping().then(() => undefined));
  const natsCheck = nats.nc.isClosed()
    ? { ok: false, detail: 'connection closed' }
    : await check(nats.nc.rtt().then((ms) => `rtt ${ms.toFixed(1)} ms`));
  const down = consumer.downPartitions;
  const consumerCheck = consumer.running
    ? { ok: true }
    : { ok: false, detail: down.length > 0 ? `restarting ${down.join(', ')}` : 'not consuming' };
  const stoppedActors = [...deps.accounts.stoppedActors(), ...deps.blockOrders.stoppedActors()];
  return {
    ready: database.ok && natsCheck.ok && consumerCheck.ok && stoppedActors.length === 0,
    checks: { database, nats: natsCheck, consumer: consumerCheck },
    stoppedActors,
  };
}

async function retrySuspense(
  deps: InspectionDeps,
  accountId: string,
  blockOrderId: string,
  fillSeq: number,
): Promise<SuspenseRetryResult | undefined> {
  const reply = await deps.accounts.ask<RetrySuspenseReply>(
    accountId,
    (replyTo) => ({ type: 'RetrySuspense', blockOrderId, fillSeq, replyTo }),
    deps.askTimeoutMs,
  );
  switch (reply.type) {
    case 'SuspenseApplied':
      return {
        outcome: 'APPLIED',
        accountId,
        blockOrderId,
        fillSeq,
        cashDeltaMinor: reply.cashDeltaMinor.toString(),
      };
    case 'NotFound':
      return undefined;
    case 'NotApplied':
      throw new SuspenseNotAppliedError(
        reply.outcome,
        `${accountId}: ${blockOrderId} seq ${fillSeq}: ${reply.detail}`,
      );
    case 'Failed':
      return viewOrThrow(reply);
    default: {
      const never: never = reply;
      throw new Error(`unexpected reply ${JSON.stringify(never)}`);
    }
  }
}

/** Decoded, with amounts as decimal strings: what JSON carries exactly. */
const jsonSafe = (value: unknown): Record<string, unknown> =>
  JSON.parse(JSON.stringify(value, bigintsAsStrings)) as Record<string, unknown>;

/**
 * A page of the account's journal, read from the journal itself (not the
 * actor). An empty first page asks the actor whether the account exists.
 */
async function accountEvents(
  deps: InspectionDeps,
  id: string,
  after: number,
  limit: number,
): Promise<AccountEventsPage | undefined> {
  invariant(limit >= 1 && limit <= EVENTS_PAGE_MAX, `a page of ${limit} events`);
  invariant(Number.isSafeInteger(after) && after >= 0, `events after ${after}`);
  // One page size for every request: the journal keeps a batcher per size, so the
  // client's `limit` only cuts what was read.
  const read = await deps.journal.load(`${ACCOUNT_KIND}-${id}`, after, EVENTS_PAGE_MAX);
  const records = read.slice(0, limit);
  if (records.length === 0 && (await inspectionView(deps, id)) === undefined) return undefined;
  const events = records.map((r) => ({
    seq: r.seq,
    type: r.eventType,
    at: new Date(r.createdAtMs).toISOString(),
    event: jsonSafe(decodeVersioned(r.payload, `event ${r.key}#${r.seq}`)),
  }));
  const more = read.length > limit || read.length === EVENTS_PAGE_MAX;
  const nextAfter = more ? (records.at(-1)?.seq ?? null) : null;
  return { accountId: id, events, nextAfter };
}

const inspectionView = async (deps: InspectionDeps, id: string) =>
  viewOrThrow(
    await deps.accounts.ask<ViewReply<AccountView>>(
      id,
      (replyTo) => ({ type: 'GetView', replyTo }),
      deps.askTimeoutMs,
    ),
  );

export function inspectionAdapter(deps: InspectionDeps): InspectionPort {
  const timeoutMs = deps.askTimeoutMs;
  return {
    account: (id) => inspectionView(deps, id),
    accountEvents: (id, after, limit) => accountEvents(deps, id, after, limit),
    blockOrder: async (id) => {
      const view = viewOrThrow(
        await deps.blockOrders.ask<ViewReply<BlockOrderActorView>>(
          id,
          (replyTo) => ({ type: 'GetView', replyTo }),
          timeoutMs,
        ),
      );
      return view && { ...view, suspense: await blockOrderSuspense(deps.db, id) };
    },
    retrySuspense: (accountId, blockOrderId, fillSeq) =>
      retrySuspense(deps, accountId, blockOrderId, fillSeq),
    readiness: () => readiness(deps),
    consumerStats: () => ({ ...deps.consumer.stats, heldFills: deps.consumer.heldFills }),
  };
}
