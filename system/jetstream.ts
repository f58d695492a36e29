/**
 * JetStream topology and ingestion.
 *
 * Stream EXECUTIONS (file storage) holds fills on `executions.<partition>.<blockOrderId>`;
 * publishers set Nats-Msg-Id to the fillId, so a re-published fill is dropped
 * by the server within the duplicate window (and by the block order after it).
 * One durable pull consumer per partition (NATS 2.9: one filter subject each).
 *
 * Delivery: a message is acked only after its block order replied, which it
 * does after the fill's event is durable. A message that cannot be decoded or
 * validated, or that the block order rejects for good, goes to the
 * dead-letter stream with its reason and original bytes, and is then acked.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  jetstream,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
  type ConsumerMessages,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
} from '@nats-io/jetstream';
import { connect, headers, nanos, type NatsConnection } from '@nats-io/transport-node';
import {
  decideAgainstApplied,
  entryIdOf,
  FillRejection,
  type Entry,
} from '../actors/block-order/decider.ts';
import {
  assertNever,
  bigintsAsStrings,
  BlockfillError,
  ErrorCode,
  invariant,
} from '../actors/errors.ts';
import type { AllocateFillReply } from '../actors/protocol.ts';
import type { ConsumerStatsView } from '../api/ports.ts';
import { streamNames, type Config } from './config.ts';
import { decodeEntry, encodeEntry, fillSubject } from './fill-wire.ts';
import type { Logger } from './log.ts';
import { HeldFills } from './held-fills.ts';
import { Permits } from './permits.ts';

export type StreamNames = ReturnType<typeof streamNames>;

export async function connectNats(servers: string[], name: string): Promise<NatsConnection> {
  return connect({
    servers,
    name,
    noAsyncTraces: true,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 500,
    timeout: 5_000,
    pingInterval: 10_000,
  });
}

const DUPLICATE_WINDOW_MS = 120_000;

/** A held fill whose predecessor did not show up within this is tried again (lowest per order). */
const HELD_RETRY_AFTER_MS = 1_000;
/** A nak's delay grows with the delivery count up to this many × CONSUMER_NAK_DELAY_MS. */
const NAK_DELAY_STEPS_MAX = 25;
/** A failed partition loop is made again after 100 ms, doubling up to 2 s (stop waits for it). */
const LOOP_RESTART_BACKOFF_MS = 100;
const LOOP_RESTART_BACKOFF_MAX_MS = 2_000;

/** Creates or updates the streams; idempotent. */
export class PartitionCountError extends BlockfillError {
  constructor(stream: string, existing: number, wanted: number) {
    super(
      ErrorCode.PartitionCountChanged,
      `stream ${stream} has ${existing} partitions but PARTITIONS=${wanted}: changing the count ` +
        're-hashes block orders across consumers and would break their fill order; ' +
        'let the stream drain and recreate it, or keep PARTITIONS unchanged',
    );
    this.name = 'PartitionCountError';
  }
}

export interface StreamLimits {
  replicas: number;
  /** 0 = keep messages until deleted. */
  maxAgeMs: number;
}

export async function ensureStreams(
  jsm: JetStreamManager,
  names: StreamNames,
  partitions: number,
  limits: StreamLimits,
): Promise<void> {
  // One subject per partition: a publish to a partition no consumer reads is
  // refused by the server instead of being stranded.
  const partitionSubjects = Array.from(
    { length: partitions },
    (_, p) => `${names.subjectRoot}.${p}.*`,
  );
  const streams = [
    { name: names.executions, subjects: partitionSubjects },
    { name: names.deadLetter, subjects: [`${names.dlqSubjectRoot}.>`] },
  ];
  for (const s of streams) {
    const config = {
      name: s.name,
      subjects: s.subjects,
      storage: StorageType.File,
      retention: RetentionPolicy.Limits,
      discard: DiscardPolicy.Old,
      duplicate_window: nanos(DUPLICATE_WINDOW_MS),
      num_replicas: limits.replicas,
      max_age: nanos(limits.maxAgeMs),
    };
    try {
      const info = await jsm.streams.info(s.name);
      if (s.name === names.executions) {
        const existing = (info.config.subjects ?? []).filter((subject) =>
          new RegExp(`^${names.subjectRoot.replace(/\./g, '\\.')}\\.\\d+\\.\\*$`).test(subject),
        );
        if (existing.length > 0 && existing.length !== partitions) {
          throw new PartitionCountError(s.name, existing.length, partitions);
        }
      }
      await jsm.streams.update(s.name, config);
    } catch (error) {
      if ((error as { name?: string }).name !== 'StreamNotFoundError') throw error;
      await jsm.streams.add(config);
    }
  }
}

export async function ensureConsumers(
  jsm: JetStreamManager,
  names: StreamNames,
  config: Config,
): Promise<string[]> {
  const editable = {
    ack_wait: nanos(config.consumerAckWaitMs),
    max_ack_pending: config.consumerMaxAckPending,
    // We enforce our own bound and dead-letter past it; the server's would drop silently.
    max_deliver: -1,
  };
  // One round trip per partition at once: start-up is downtime after a crash.
  return Promise.all(
    Array.from({ length: config.partitions }, async (_, p) => {
      const durable = `${names.durablePrefix}_P${p}`;
      await jsm.consumers.add(names.executions, {
        durable_name: durable,
        filter_subject: `${names.subjectRoot}.${p}.*`,
        ack_policy: AckPolicy.Explicit,
        deliver_policy: DeliverPolicy.All,
        ...editable,
      });
      // add() leaves an existing durable as it was: apply changed settings.
      await jsm.consumers.update(names.executions, durable, editable);
      return durable;
    }),
  );
}

export interface Publisher {
  publishFill(fill: Entry): Promise<void>;
  /** A fill or an amendment, on its order's subject (deduplicated by its id). */
  publishEntry(entry: Entry): Promise<void>;
}

export function fillPublisher(
  js: JetStreamClient,
  names: StreamNames,
  partitions: number,
): Publisher {
  const publishEntry = async (entry: Entry) => {
    await js.publish(
      fillSubject(names.subjectRoot, entry.blockOrderId, partitions),
      encodeEntry(entry),
      { msgID: entryIdOf(entry), expect: { streamName: names.executions } },
    );
  };
  return { publishFill: publishEntry, publishEntry };
}

export const DeadLetterHeader = {
  Reason: 'Blockfill-Reason',
  Field: 'Blockfill-Field',
  Rule: 'Blockfill-Rule',
  Detail: 'Blockfill-Detail',
  OriginalSubject: 'Blockfill-Original-Subject',
  OriginalSequence: 'Blockfill-Original-Sequence',
  /** CONFLICTING_EXECUTION: the execution already applied, as JSON (the message is the other version). */
  Existing: 'Blockfill-Existing',
} as const;

/** A fill or amendment as JSON for a header or a log line: bigints as decimal strings. */
export function fillJson(fill: Entry): string {
  return JSON.stringify(fill, bigintsAsStrings);
}

/** What the consumer counts (GET /consumer/stats adds the fills held now). */
export type ConsumerStats = Omit<ConsumerStatsView, 'heldFills'>;

export interface FillConsumerDeps {
  js: JetStreamClient;
  names: StreamNames;
  config: Config;
  log: Logger;
  allocate(entry: Entry): Promise<AllocateFillReply>;
  /** The execution index: who claimed a fill id (for an EXECUTION_CONFLICT failure). */
  execution(id: string): Promise<Entry | undefined>;
  /** Wakes a block order (it re-delivers its unconfirmed lines); never throws. */
  wake(blockOrderId: string): void;
  /** Told of each message dead-lettered, with its reason (metrics); never throws. */
  onDeadLetter?: (reason: string) => void;
}

export class FillConsumer {
  readonly #deps: FillConsumerDeps;
  readonly #slots: Permits;
  /** The live subscription of each partition, by durable. */
  readonly #iterators = new Map<string, ConsumerMessages>();
  readonly #down = new Set<string>();
  readonly #loops: Promise<void>[] = [];
  /** Messages being handled, with when that started (for in-progress acks). */
  readonly #working = new Map<JsMsg, number>();
  readonly #held: HeldFills<{ m: JsMsg; fill: Entry }>;
  readonly #ticker: NodeJS.Timeout;
  /** When each held message was first held (held at most #heldMaxMs per delivery). */
  readonly #heldFirst = new WeakMap<JsMsg, number>();
  readonly #heldMaxMs: number;
  readonly #quietMs: number;
  /** Stale held fills the ticker dispatched again: stop() waits for them too. */
  readonly #redispatches = new Set<Promise<void>>();
  #running = false;
  readonly stats: ConsumerStats = {
    acked: 0,
    duplicates: 0,
    deadLettered: 0,
    conflicts: 0,
    nakked: 0,
  };

  constructor(deps: FillConsumerDeps) {
    this.#deps = deps;
    this.#slots = new Permits(deps.config.consumerInFlightMax);
    // Held fills have a bound of their own, equal to the in-flight bound (a held
    // fill holds no permit: it waits for its predecessor, not for the actor).
    this.#held = new HeldFills(deps.config.consumerInFlightMax);
    // Long enough for a crashed process's fills to come back (their ack wait),
    // and for a predecessor nak'ed in an outage to come back (its capped delay).
    const { consumerAckWaitMs: ackWaitMs, consumerNakDelayMs: nakDelayMs } = deps.config;
    this.#heldMaxMs = Math.max(2 * ackWaitMs, NAK_DELAY_STEPS_MAX * nakDelayMs + ackWaitMs);
    // A message in hand gets an in-progress ack within half the ack wait.
    this.#quietMs = ackWaitMs / 4;
    const tickMs = Math.max(100, Math.min(1_000, this.#quietMs));
    this.#ticker = setInterval(() => {
      try {
        this.#tick();
      } catch (error) {
        // working() throws once the connection is closed (a stop that overran its bound).
        this.#deps.log.warn('consumer tick failed', { error });
      }
    }, tickMs);
    this.#ticker.unref();
  }

  /** Consuming on every partition (a partition whose loop is restarting is not). */
  get running(): boolean {
    return this.#running && this.#down.size === 0;
  }

  /** Partitions whose loop failed and is being restarted, by durable. */
  get downPartitions(): string[] {
    return [...this.#down];
  }

  async start(durables: string[]): Promise<void> {
    invariant(!this.#running && this.#iterators.size === 0, 'the consumer starts once');
    invariant(durables.length > 0, 'the consumer needs at least one durable');
    for (const durable of durables) this.#iterators.set(durable, await this.#consume(durable));
    this.#running = true;
    for (const durable of durables) this.#loops.push(this.#loop(durable));
  }

  /** A pull subscription on one partition's durable. */
  async #consume(durable: string): Promise<ConsumerMessages> {
    // A quarter of the in-flight bound waits in the client per partition: a
    // buffered message's ack wait runs before we see it (no in-progress ack).
    const { config, js, names } = this.#deps;
    const perPartitionBuffer = Math.max(
      1,
      Math.ceil(config.consumerInFlightMax / config.partitions / 4),
    );
    const consumer = await js.consumers.get(names.executions, durable);
    // A deleted durable or stream ends the subscription (rather than a silent
    // wait for it): the loop then counts the partition down and makes it again.
    return consumer.consume({
      max_messages: perPartitionBuffer,
      expires: 5_000,
      abort_on_missing_resource: true,
    });
  }

  /**
   * One partition, for as long as the consumer runs: a subscription that ends
   * or fails (its durable deleted, the server gone) is made again with backoff,
   * and the partition counts as down meanwhile (readiness says so). Held
   * fills stay held: their predecessor comes back on the same partition.
   */
  async #loop(durable: string): Promise<void> {
    for (let attempt = 0; this.#running; attempt++) {
      const messages = this.#iterators.get(durable);
      if (messages) {
        try {
          await this.#drain(messages);
        } catch (error) {
          this.#deps.log.error('consumer loop failed; restarting it', { durable, error });
        }
      }
      if (!this.#running) return;
      this.#down.add(durable);
      this.#iterators.delete(durable);
      await sleep(Math.min(LOOP_RESTART_BACKOFF_MAX_MS, LOOP_RESTART_BACKOFF_MS * 2 ** attempt));
      if (!this.#running) return;
      try {
        this.#iterators.set(durable, await this.#consume(durable));
        this.#down.delete(durable);
        this.#deps.log.warn('consumer loop restarted', { durable, attempt });
        attempt = -1;
      } catch (error) {
        this.#deps.log.error('consumer loop could not restart; trying again', { durable, error });
      }
    }
  }

  /** Takes messages until the subscription ends; each is dispatched while a slot is free. */
  async #drain(messages: ConsumerMessages): Promise<void> {
    let waited = false;
    for await (const m of messages) {
      // After a wait for a slot, this message sat in the client's buffer
      // with its ack-wait timer running: restart it now.
      if (waited) m.working();
      // From receipt on: a message waiting for a slot gets in-progress acks too.
      this.#working.set(m, Date.now());
      waited = this.#slots.available === 0;
      await this.#slots.acquire();
      // #handle dispatches to the actor synchronously, so per-order order is kept.
      void this.#handle(m).finally(() => {
        this.#working.delete(m);
        this.#slots.release();
      });
    }
  }

  async #handle(m: JsMsg): Promise<void> {
    const { config, names } = this.#deps;
    try {
      const decoded = decodeEntry(m.data, m.subject, names.subjectRoot, config.partitions);
      if (!decoded.ok) {
        await this.#deadLetter(m, decoded.reason, { field: decoded.field, rule: decoded.rule });
        return;
      }
      await this.#dispatch(m, decoded.entry);
    } catch (error) {
      await this.#unexpected(m, error);
    }
  }

  /**
   * A bug met this message (handling threw). Retried like a failure, but a
   * message that keeps doing it must not loop forever: past the delivery
   * bound it is dead-lettered as HANDLING_FAILED with the error.
   */
  async #unexpected(m: JsMsg, error: unknown): Promise<void> {
    const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    if (m.info.deliveryCount >= this.#deps.config.consumerDeliveriesMax) {
      await this.#deadLetter(m, 'HANDLING_FAILED', { detail: message }).catch(() => this.#nak(m));
      return;
    }
    this.#deps.log.error('fill handling failed; will be redelivered', {
      subject: m.subject,
      error,
    });
    this.#nak(m);
  }

  /** Asks the block order; acks, holds, naks or dead-letters by its answer. */
  async #dispatch(m: JsMsg, fill: Entry): Promise<void> {
    if (!this.#working.has(m)) this.#working.set(m, Date.now());
    const reply = await this.#deps
      .allocate(fill)
      .catch((error: Error & { code?: string }) => ({
        type: 'Failed' as const,
        code: error.code ?? 'ASK_FAILED',
        message: error.message,
      }))
      .finally(() => this.#working.delete(m));
    switch (reply.type) {
      case 'Allocated':
        this.stats.acked++;
        m.ack();
        return this.#releaseNext(fill);
      case 'Duplicate':
        this.stats.duplicates++;
        m.ack();
        return this.#releaseNext(fill);
      case 'Rejected':
        if (reply.reason === FillRejection.OutOfOrder)
          return this.#outOfOrder(m, fill, reply.detail, reply.expectedSeq);
        await this.#deadLetter(m, reply.reason, {
          detail: reply.detail,
          ...(reply.existing ? { existing: reply.existing } : {}),
        });
        return;
      case 'Failed':
        if (reply.code === ErrorCode.ExecutionConflict) return await this.#claimFailed(m, fill);
        // A failure (database down, actor restarting or stopped) says nothing
        // about the fill: keep it, at a capped rate, until it can be handled.
        this.#nak(m);
        return;
      default: {
        const never: never = reply;
        throw new Error(`unexpected reply ${JSON.stringify(never)}`);
      }
    }
  }

  /** The fill after `fill` may be waiting here: it is next now. */
  async #releaseNext(fill: Entry): Promise<void> {
    const next = this.#held.take(fill.blockOrderId, fill.seq + 1);
    if (next) await this.#redispatch(next.m, next.fill);
  }

  /** A held message dispatched again: its own errors are its own (never the releaser's). */
  async #redispatch(m: JsMsg, fill: Entry): Promise<void> {
    // Its ack-wait timer ran since the last tick: a fresh one for its handling.
    m.working();
    try {
      await this.#dispatch(m, fill);
    } catch (error) {
      await this.#unexpected(m, error).catch(() => undefined);
    }
  }

  /**
   * Ahead of its order's next seq (the missing one is in flight, or comes
   * back after a crash's ack wait): held until its predecessor is allocated,
   * with in-progress acks so the server does not redeliver it meanwhile.
   * Only when the hold is full does it go back to the server (a nak).
   */
  async #outOfOrder(
    m: JsMsg,
    fill: Entry,
    detail: string,
    expectedSeq: number | undefined,
  ): Promise<void> {
    const nowMs = Date.now();
    const firstHeldMs = this.#heldFirst.get(m) ?? nowMs;
    // Only a gap that fills still unacked could explain is worth waiting for;
    // and not forever (a predecessor may have been dead-lettered).
    const plausible =
      expectedSeq !== undefined &&
      fill.seq - expectedSeq < this.#deps.config.consumerMaxAckPending &&
      nowMs - firstHeldMs < this.#heldMaxMs;
    const { blockOrderId, seq } = fill;
    if (plausible && this.#running && this.#held.hold(blockOrderId, seq, { m, fill }, nowMs)) {
      this.#heldFirst.set(m, firstHeldMs);
      return;
    }
    await this.#retry(m, FillRejection.OutOfOrder, detail);
  }

  /** In-progress acks for long handlings and held fills; a retry for fills held too long. */
  #tick(): void {
    const nowMs = Date.now();
    // The time kept is the last in-progress ack, so each message gets one per quiet period.
    for (const [m, sinceMs] of this.#working) {
      if (nowMs - sinceMs < this.#quietMs) continue;
      m.working();
      this.#working.set(m, nowMs);
    }
    for (const { m } of this.#held.items()) m.working();
    if (!this.#running) return;
    for (const { m, fill } of this.#held.takeStale(nowMs, HELD_RETRY_AFTER_MS)) {
      const redispatch = this.#redispatch(m, fill);
      this.#redispatches.add(redispatch);
      void redispatch.finally(() => this.#redispatches.delete(redispatch));
    }
  }

  /**
   * The commit of this fill's order failed because a fill id in it was
   * already claimed. Which one: the index says. This fill's own id claimed
   * by another execution → a conflict; claimed by this very execution (its
   * commit landed before the failing record) → applied; not claimed → it
   * only shared the failed commit, and is tried again.
   */
  async #claimFailed(m: JsMsg, fill: Entry): Promise<void> {
    // The order reset: a fill of its failed batch that did commit has its
    // lines delivered on the order's next message, so send it one.
    this.#deps.wake(fill.blockOrderId);
    const existing = await this.#deps.execution(entryIdOf(fill));
    if (!existing) return this.#nak(m);
    const decision = decideAgainstApplied(fill, existing, 'fillId');
    switch (decision.outcome) {
      case 'Duplicate':
        this.stats.duplicates++;
        m.ack();
        return this.#releaseNext(fill);
      case 'Rejected':
        return this.#deadLetter(m, decision.reason, {
          detail: decision.detail,
          ...(decision.existing ? { existing: decision.existing } : {}),
        });
      default:
        return assertNever(decision, 'decision against an applied execution');
    }
  }

  async #retry(m: JsMsg, reason: string, detail: string): Promise<void> {
    if (m.info.deliveryCount >= this.#deps.config.consumerDeliveriesMax) {
      await this.#deadLetter(m, 'DELIVERIES_EXHAUSTED', { detail: `${reason}: ${detail}` });
      return;
    }
    this.#nak(m);
  }

  /** Backs off linearly with the delivery count, capped at 25 × CONSUMER_NAK_DELAY_MS. */
  #nak(m: JsMsg): void {
    this.stats.nakked++;
    m.nak(
      this.#deps.config.consumerNakDelayMs * Math.min(m.info.deliveryCount, NAK_DELAY_STEPS_MAX),
    );
  }

  async #deadLetter(
    m: JsMsg,
    reason: string,
    info: { field?: string; rule?: string; detail?: string; existing?: Entry },
  ): Promise<void> {
    const { existing, ...logged } = info;
    const h = headers();
    h.set(DeadLetterHeader.Reason, reason);
    if (info.field) h.set(DeadLetterHeader.Field, info.field);
    if (info.rule) h.set(DeadLetterHeader.Rule, info.rule.slice(0, 500));
    if (info.detail) h.set(DeadLetterHeader.Detail, info.detail.slice(0, 500));
    if (existing) h.set(DeadLetterHeader.Existing, fillJson(existing));
    h.set(DeadLetterHeader.OriginalSubject, m.subject);
    h.set(DeadLetterHeader.OriginalSequence, String(m.seq));
    const names = this.#deps.names;
    await this.#deps.js.publish(`${names.dlqSubjectRoot}.${reason.toLowerCase()}`, m.data, {
      headers: h,
      // Re-dead-lettering the same message (after a crash before the ack) is deduplicated.
      msgID: `${names.executions}:${m.seq}`,
      expect: { streamName: names.deadLetter },
    });
    this.stats.deadLettered++;
    this.#deps.onDeadLetter?.(reason);
    if (reason === FillRejection.ConflictingExecution) this.stats.conflicts++;
    this.#deps.log.warn('fill dead-lettered', {
      subject: m.subject,
      seq: m.seq,
      reason,
      ...logged,
      ...(existing ? { existing } : {}),
    });
    m.ack();
  }

  /** Stops pulling, waits for every in-flight fill to be answered (and acked). */
  async stop(): Promise<void> {
    this.#running = false;
    for (const it of this.#iterators.values()) it.stop();
    await Promise.allSettled(this.#loops);
    await this.#slots.idle();
    await Promise.allSettled([...this.#redispatches]);
    // Held fills go back at once, for the next process to take.
    for (const { m } of this.#held.takeAll()) m.nak();
    clearInterval(this.#ticker);
    invariant(
      this.#redispatches.size === 0,
      'a held fill was re-dispatched after the consumer stopped',
    );
    invariant(this.#working.size === 0, `${this.#working.size} fills still in hand after stop`);
  }

  /** Fills held ahead of their order's next seq, now. */
  get heldFills(): number {
    return this.#held.size;
  }
}

export interface NatsHandles {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
}

export async function openJetStream(config: Config, name: string): Promise<NatsHandles> {
  const nc = await connectNats(config.natsServers, name);
  const jsm = await jetstreamManager(nc, { timeout: 10_000 });
  const js = jetstream(nc, { timeout: 10_000 });
  return { nc, js, jsm };
}
