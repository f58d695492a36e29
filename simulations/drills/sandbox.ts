/**
 * What the poison and replay drills need around the service: a database and
 * stream namespace of the run's own (removed afterwards), raw publishing,
 * the dead-letter stream read back, and bounded waits for the consumers to
 * go quiet and for confirmations to land.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { DeliverPolicy } from '@nats-io/jetstream';
import { BLOCK_ORDER_KIND, UNCONFIRMED_EVENT_TYPES } from '../../actors/block-order/shell.ts';
import type { Database } from '../../persistence/db.ts';
import { keysWhoseLastEventIs } from '../../persistence/journal.ts';
import { migrate } from '../../persistence/migrate.ts';
import { seedReferenceData, type SeedData } from '../../persistence/reference.ts';
import { loadConfig, streamNames, type Config } from '../../system/config.ts';
import { DeadLetterHeader, openJetStream, type NatsHandles } from '../../system/jetstream.ts';
import { Permits } from '../../system/permits.ts';
import { openDatabase } from '../../system/service.ts';
import {
  claimNamespace,
  deleteStreams,
  dropDatabase,
  freshDatabase,
  runNames,
} from '../support.ts';
import type { DrillIO } from './common.ts';

export interface Sandbox {
  config: Config;
  databaseName: string;
  /** Deletes the run's streams and (unless kept) drops its database; never throws. */
  cleanup(keepDatabase: boolean): Promise<void>;
}

/**
 * A fresh database `blockfill_<tag>_<random>` (migrated and seeded) and the
 * namespace `<TAG><RANDOM>`: nothing shared with any other run.
 */
export async function openSandbox(
  tag: string,
  env: Record<string, string | undefined>,
  seed: SeedData,
  io: DrillIO,
): Promise<Sandbox> {
  const base = loadConfig(env);
  const { databaseName, namespace } = runNames(tag);
  // Checked before anything is created: cleanup deletes this namespace's streams.
  await claimNamespace(base, namespace);
  const config: Config = {
    ...base,
    databaseUrl: await freshDatabase(base.databaseUrl, databaseName),
    namespace,
  };
  const cleanup = async (keepDatabase: boolean) => {
    const nats = await openJetStream(config, 'blockfill-drill-cleanup').catch(() => undefined);
    if (nats) {
      await deleteStreams(nats.jsm, config.namespace).catch(() => undefined);
      await nats.nc.close().catch(() => undefined);
    }
    if (keepDatabase) io.progress(`kept database ${databaseName}`);
    else await dropDatabase(base.databaseUrl, databaseName).catch(() => undefined);
  };
  try {
    const db = await openDatabase(config, 2);
    try {
      await migrate(db);
      await seedReferenceData(db, seed);
    } finally {
      await db.close();
    }
  } catch (error) {
    await cleanup(false);
    throw error;
  }
  return { config, databaseName, cleanup };
}

export interface RawMessage {
  subject: string;
  bytes: Uint8Array;
  msgId: string;
}

export interface Published {
  /** Stream sequence of each message, in input order. */
  seqs: number[];
  /** Messages the server dropped as duplicates of an earlier Nats-Msg-Id. */
  droppedAsDuplicate: number;
}

/** Publishes in order with at most `inFlightMax` unacknowledged (one connection keeps the order). */
export async function publishRaw(
  nats: NatsHandles,
  stream: string,
  messages: readonly RawMessage[],
  inFlightMax = 256,
): Promise<Published> {
  const gate = new Permits(inFlightMax);
  const seqs: number[] = new Array<number>(messages.length).fill(0);
  const failures: unknown[] = [];
  let droppedAsDuplicate = 0;
  for (let i = 0; i < messages.length && failures.length === 0; i++) {
    const m = messages[i] as RawMessage;
    await gate.acquire();
    nats.js
      .publish(m.subject, m.bytes, { msgID: m.msgId, expect: { streamName: stream } })
      .then((ack) => {
        seqs[i] = ack.seq;
        if (ack.duplicate) droppedAsDuplicate++;
      })
      .catch((error: unknown) => failures.push(error))
      .finally(() => gate.release());
  }
  await gate.idle();
  if (failures.length > 0) throw failures[0];
  return { seqs, droppedAsDuplicate };
}

export interface DeadLetter {
  reason: string;
  field?: string;
  detail?: string;
  existing?: string;
  originalSequence: number;
  originalSubject?: string;
  data: Uint8Array;
}

/** Every message of the dead-letter stream, read with an ordered consumer (bounded in time). */
export async function readDeadLetters(
  nats: NatsHandles,
  config: Config,
  timeoutMs = 20_000,
): Promise<DeadLetter[]> {
  const stream = streamNames(config).deadLetter;
  const total = (await nats.jsm.streams.info(stream)).state.messages;
  const out: DeadLetter[] = [];
  if (total === 0) return out;
  const consumer = await nats.js.consumers.get(stream, { deliver_policy: DeliverPolicy.All });
  const deadline = Date.now() + timeoutMs;
  while (out.length < total && Date.now() < deadline) {
    const batch = await consumer.fetch({ max_messages: total - out.length, expires: 2_000 });
    for await (const m of batch) {
      const h = (name: string) => (m.headers?.has(name) ? m.headers.get(name) : undefined);
      out.push({
        reason: h(DeadLetterHeader.Reason) ?? '(none)',
        field: h(DeadLetterHeader.Field),
        detail: h(DeadLetterHeader.Detail),
        existing: h('Blockfill-Existing'),
        originalSequence: Number(h(DeadLetterHeader.OriginalSequence)),
        originalSubject: h(DeadLetterHeader.OriginalSubject),
        data: m.data,
      });
    }
  }
  if (out.length < total)
    throw new Error(`read ${out.length}/${total} dead letters in ${timeoutMs} ms`);
  return out;
}

export interface QuietOutcome {
  /** Every durable had nothing pending and nothing unacknowledged. */
  drained: boolean;
  /** Messages still unacknowledged when the wait ended (e.g. redelivered forever). */
  ackPending: number;
  pending: number;
}

/**
 * Waits until the run's durable consumers are drained, or until nothing has
 * changed for `quietMs` with nothing left to deliver (a message redelivered
 * forever keeps a consumer from draining: that is reported, not waited on),
 * or `timeoutMs` passed.
 */
export async function untilConsumersQuiet(
  nats: NatsHandles,
  config: Config,
  progress: () => number,
  limits: { quietMs: number; timeoutMs: number },
): Promise<QuietOutcome> {
  const names = streamNames(config);
  const deadline = Date.now() + limits.timeoutMs;
  let lastProgress = progress();
  let quietSince = Date.now();
  for (;;) {
    let pending = 0;
    let ackPending = 0;
    for (let p = 0; p < config.partitions; p++) {
      const info = await nats.jsm.consumers.info(names.executions, `${names.durablePrefix}_P${p}`);
      pending += info.num_pending;
      ackPending += info.num_ack_pending;
    }
    if (pending === 0 && ackPending === 0) return { drained: true, ackPending, pending };
    const now = progress();
    if (now !== lastProgress) [lastProgress, quietSince] = [now, Date.now()];
    const quiet = pending === 0 && Date.now() - quietSince >= limits.quietMs;
    if (quiet || Date.now() > deadline) return { drained: false, ackPending, pending };
    await sleep(50);
  }
}

/** Waits until no block order's journal ends with unconfirmed allocations (as simulations/run.ts). */
export async function untilConfirmed(db: Database, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const keys = await keysWhoseLastEventIs(db, `${BLOCK_ORDER_KIND}-`, UNCONFIRMED_EVENT_TYPES);
    if (keys.length === 0) return;
    if (Date.now() > deadline)
      throw new Error(`${keys.length} block orders still have unconfirmed allocations`);
    await sleep(20);
  }
}
