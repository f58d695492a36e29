/**
 * A small typed layer over nact 7.6.2 (unmaintained, weakly typed).
 *
 * - `Ref<M>` is an actor reference that only accepts messages of type M.
 * - `PersistentBehavior` describes an event-sourced actor: `receive` handles a
 *   live command and persists events; `evolve` replays one journaled event.
 * - `EntityHost` owns every actor of one kind under one supervisor actor: it
 *   spawns an actor on its first message, lets nact passivate it after an idle
 *   period, and respawns it (recovering from snapshot + journal) on its next.
 * - Supervision: a crashed actor is reset (it recovers from snapshot and
 *   journal) after an exponential backoff; more than `crashesMax` crashes in
 *   `windowMs` stop it, and it is reported by `stoppedActors()` until restart.
 *   A failed persist always crashes the actor: nact has already advanced its
 *   sequence number, so resuming would leave a hole. Never resume.
 */
import nact from 'nact';
import systemMap from 'nact/lib/system-map.js';
import {
  ActorStoppedError,
  ActorTimeoutError,
  ErrorCode,
  MailboxFullError,
} from '../actors/errors.ts';
import type { Logger } from './log.ts';
import { isTransientFailure } from './transient.ts';

declare const messageType: unique symbol;
/** A reference that accepts messages of type M (a phantom type over nact's ref). */
export type Ref<M> = { readonly [messageType]?: (m: M) => void };

/** The one reply every command can get when it could not be handled. */
export interface Failed {
  type: 'Failed';
  code: string;
  message: string;
  /** The command that failed, so the sender can retry it. */
  command?: unknown;
}

/** Commands that carry a reply target. Every path must reply to it. */
export interface Replyable {
  replyTo?: Ref<Failed> | Ref<never>;
}

/**
 * Hosts by system and supervisor name, so a message to a passivated entity
 * (e.g. an account's reply to a block order that went idle meanwhile)
 * respawns it instead of being dropped, as nact would do.
 */
const hostsBySystem = new Map<string, Map<string, { send(id: string, message: never): void }>>();

interface NactRef {
  type?: string;
  system?: { name?: string };
  path?: { parts?: string[] };
}

export function tell<M>(ref: Ref<M>, message: M): void {
  const r = ref as NactRef;
  if (r.type === 'actor' && r.system?.name) {
    // One lookup on this hot path: dispatch to the live actor we found.
    const live = systemMap.find(r.system.name, ref) as { dispatch(m: unknown): void } | undefined;
    if (live) return live.dispatch(message);
    const [supervisor, id, ...rest] = r.path?.parts ?? [];
    const host = supervisor ? hostsBySystem.get(r.system.name)?.get(supervisor) : undefined;
    if (host && id !== undefined && rest.length === 0) return host.send(id, message as never);
  }
  nact.dispatch(ref as never, message);
}

/** Answers a command that could not be handled; the command rides along so the sender can retry it. */
function replyFailed(command: Replyable, code: string, message: string): void {
  if (command.replyTo)
    tell(command.replyTo as Ref<Failed>, { type: 'Failed', code, message, command });
}

export async function ask<M, R>(
  ref: Ref<M>,
  build: (replyTo: Ref<R>) => M,
  timeoutMs: number,
  label: string,
): Promise<R> {
  try {
    return (await nact.query(
      ref as never,
      (temp: unknown) => build(temp as Ref<R>),
      timeoutMs,
    )) as R;
  } catch (error) {
    if (error instanceof Error && error.message === 'Query Timeout')
      throw new ActorTimeoutError(label, timeoutMs);
    throw error;
  }
}

/**
 * What a behavior may do while it handles a command. Events are staged and
 * effects deferred: the host persists every staged event of the batch, waits
 * until they are durable, and only then runs the effects (replies, deliveries)
 * in order. If persisting fails, no effect runs: every command of the batch
 * gets a Failed reply and the actor resets.
 */
export interface ShellContext<C, E> {
  readonly id: string;
  readonly self: Ref<C>;
  /** Sequence number of the last event, staged ones included (0 = none). */
  readonly journalSeq: number;
  /** Stages one event for the journal. */
  persist(event: E): void;
  /** Runs `effect` once every staged event is durable. */
  effect(effect: () => void): void;
  /** Replies to `to` once every staged event is durable (an effect). */
  reply<R>(to: Ref<R>, message: R): void;
  /** Sends a message to this actor later (timers are owned by the host and bounded). */
  scheduleSelf(message: C, delayMs: number): void;
}

export interface PersistentBehavior<S, C extends Replyable, E> {
  /** Persistence keys are `${kind}-${id}`. */
  readonly kind: string;
  initialState(id: string): S;
  evolve(state: S, event: E): S;
  /** May await reads (e.g. reference data) but never persistence: it stages. */
  receive(state: S, command: C, ctx: ShellContext<C, E>): S | Promise<S>;
  /** After the last command of a batch, before persisting: e.g. to stage a watermark. */
  endOfBatch?(state: S, ctx: ShellContext<C, E>): S;
  eventType(event: E): string;
  /**
   * What to journal for the events one batch staged, in order; folding the
   * result with `evolve` must equal folding the staged events (e.g. several
   * lines as one row). Absent: the staged events themselves.
   */
  pack?(staged: readonly E[]): E[];
  /** Validates a decoded event; throws on anything it does not know. */
  decodeEvent(data: unknown): E;
  encodeSnapshot(state: S): unknown;
  decodeSnapshot(data: unknown): S;
}

export interface Codec {
  encode(data: unknown): Uint8Array;
  decode(bytes: Uint8Array, what: string): unknown;
}

export interface SupervisionOptions {
  crashesMax: number;
  windowMs: number;
  backoffMinMs: number;
  backoffMaxMs: number;
}

export interface HostOptions {
  idleMs: number;
  /** Consecutive queued commands handled (and persisted) together, at most. */
  batchCommandsMax: number;
  mailboxMax: number;
  snapshotEveryEvents: number;
  scheduledMax: number;
  supervision: SupervisionOptions;
}

/** What the journal must offer the host beyond nact's engine interface. */
export interface RecoveryPermits {
  releaseRecovery(key: string): void;
}

interface NactState<S> {
  s: S;
  seq: number;
}

interface ConcreteActor {
  stopped: boolean;
  busy: boolean;
  stop(): void;
  mailbox: { length: number; shift(): { message: unknown } | undefined };
  children: Map<string, ConcreteActor>;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export class ActorSystem {
  readonly ref: unknown;
  readonly name: string;
  constructor(engine: object, name: string) {
    this.ref = (nact.start as (...args: unknown[]) => unknown)(
      { name },
      nact.configurePersistence(engine as never),
    );
    this.name = name;
  }
  stop(): void {
    nact.stop(this.ref as never);
    hostsBySystem.delete(this.name);
  }
}

export class EntityHost<S, C extends Replyable, E> {
  readonly #system: ActorSystem;
  readonly #behavior: PersistentBehavior<S, C, E>;
  readonly #options: HostOptions;
  readonly #codec: Codec;
  readonly #permits: RecoveryPermits;
  readonly #log: Logger;
  readonly #supervisorRef: unknown;
  readonly #crashes = new Map<string, number[]>();
  readonly #transientCrashes = new Map<string, number[]>();
  readonly #stopped = new Map<string, string>();
  readonly #timers = new Set<NodeJS.Timeout>();
  #closed = false;
  crashCount = 0;

  constructor(
    system: ActorSystem,
    behavior: PersistentBehavior<S, C, E>,
    deps: { codec: Codec; permits: RecoveryPermits; log: Logger },
    options: HostOptions,
  ) {
    this.#system = system;
    this.#behavior = behavior;
    this.#options = options;
    this.#codec = deps.codec;
    this.#permits = deps.permits;
    this.#log = deps.log;
    // The supervisor actor exists for the tree: its children are the entities.
    this.#supervisorRef = nact.spawnStateless(
      system.ref as never,
      () => undefined,
      `${behavior.kind}s`,
    );
    const hosts = hostsBySystem.get(system.name) ?? new Map();
    hosts.set(`${behavior.kind}s`, this);
    hostsBySystem.set(system.name, hosts);
  }

  get kind(): string {
    return this.#behavior.kind;
  }

  #supervisor(): ConcreteActor {
    const concrete = systemMap.find(this.#system.name, this.#supervisorRef) as
      ConcreteActor | undefined;
    if (!concrete) throw new Error(`supervisor ${this.#behavior.kind}s is gone`);
    return concrete;
  }

  /** Actors stopped after repeated crashes: `kind/id` with the last error. */
  stoppedActors(): string[] {
    return [...this.#stopped.entries()].map(([id, why]) => `${this.#behavior.kind}/${id}: ${why}`);
  }

  liveActors(): number {
    return this.#supervisor().children.size;
  }

  /** The live reference for `id`, spawning (and so recovering) the actor if needed. */
  refFor(id: string): Ref<C> {
    if (this.#stopped.has(id)) throw new ActorStoppedError(`${this.#behavior.kind}/${id}`);
    const supervisor = this.#supervisor();
    const existing = supervisor.children.get(id);
    if (existing && !existing.stopped) {
      if (existing.mailbox.length >= this.#options.mailboxMax) {
        throw new MailboxFullError(`${this.#behavior.kind}/${id}`, this.#options.mailboxMax);
      }
      return (existing as unknown as { reference: Ref<C> }).reference;
    }
    return this.#spawn(id);
  }

  /** Delivers `command` to actor `id`; if it cannot be delivered, replies Failed to its replyTo. */
  send(id: string, command: C): void {
    let ref: Ref<C>;
    try {
      ref = this.refFor(id);
    } catch (error) {
      const e = error as Error & { code?: string };
      replyFailed(command, e.code ?? 'UNDELIVERABLE', e.message);
      return;
    }
    tell(ref, command);
  }

  /** Async so a stopped actor or a full mailbox rejects; the dispatch itself still happens synchronously. */
  async ask<R>(id: string, build: (replyTo: Ref<R>) => C, timeoutMs: number): Promise<R> {
    return ask(this.refFor(id), build, timeoutMs, `${this.#behavior.kind}/${id}`);
  }

  #spawn(id: string): Ref<C> {
    const behavior = this.#behavior;
    const codec = this.#codec;
    const key = `${behavior.kind}-${id}`;
    const schedule = (ref: Ref<C>, msg: C, delayMs: number) => this.#schedule(ref, msg, delayMs);
    const batchMax = this.#options.batchCommandsMax;
    const systemName = this.#system.name;
    const f = async function (
      state: NactState<S>,
      message: unknown,
      ctx: { recovering?: boolean; self: Ref<C>; persist: (m: unknown) => Promise<void> },
    ): Promise<NactState<S>> {
      if (ctx.recovering) {
        return { s: behavior.evolve(state.s, message as E), seq: state.seq + 1 };
      }
      // Mailbox batching: take the commands already queued behind this one,
      // so one journal write (one commit wait) serves them all.
      const batch = [message as C];
      const concrete = systemMap.find(systemName, ctx.self) as ConcreteActor | undefined;
      while (concrete && batch.length < batchMax && concrete.mailbox.length > 0) {
        const next = concrete.mailbox.shift();
        if (next) batch.push(next.message as C);
      }
      const staged: E[] = [];
      const effects: Array<() => void> = [];
      const shellCtx: ShellContext<C, E> = {
        id,
        self: ctx.self,
        get journalSeq() {
          return state.seq + (behavior.pack ? behavior.pack(staged) : staged).length;
        },
        persist: (event: E) => {
          staged.push(event);
        },
        effect: (effect: () => void) => {
          effects.push(effect);
        },
        reply: <R>(to: Ref<R>, message: R) => {
          effects.push(() => tell(to, message));
        },
        scheduleSelf: (msg: C, delayMs: number) => schedule(ctx.self, msg, delayMs),
      };
      let s = state.s;
      let journaled: readonly E[] = [];
      try {
        for (const command of batch) s = await behavior.receive(s, command, shellCtx);
        if (behavior.endOfBatch) s = behavior.endOfBatch(s, shellCtx);
        // nact numbers the events synchronously, so they queue in order and
        // usually share one multi-row INSERT.
        // Encode all of them first: nact numbers an event only once its encoder
        // returned, so an encoder throwing in the middle would leave a hole.
        journaled = behavior.pack ? behavior.pack(staged) : staged;
        const encoded = journaled.map((event) => ({
          eventType: behavior.eventType(event),
          payload: codec.encode(event),
        }));
        if (encoded.length > 0) await Promise.all(encoded.map((event) => ctx.persist(event)));
      } catch (error) {
        // Every path replies: each sender learns of the failure before the reset.
        const e = error as Error & { code?: string };
        for (const command of batch) replyFailed(command, e.code ?? 'ACTOR_CRASHED', e.message);
        throw error;
      }
      for (const effect of effects) effect();
      const seq = state.seq + journaled.length;
      if (seq === 0 && concrete) {
        // Nothing durable (e.g. a view of an unknown id): do not keep a live
        // actor around for ACTOR_IDLE_MS; stop it as soon as it is idle.
        setImmediate(() => {
          if (!concrete.stopped && !concrete.busy && concrete.mailbox.length === 0) concrete.stop();
        });
      }
      return { s, seq };
    };
    const ref = nact.spawnPersistent(this.#supervisorRef as never, f as never, key, id, {
      initialStateFunc: () => ({ s: behavior.initialState(id), seq: 0 }),
      shutdownAfter: this.#options.idleMs,
      snapshotEvery: this.#options.snapshotEveryEvents,
      // Events arrive already encoded (see the batch above).
      encoder: (encoded: { eventType: string; payload: Uint8Array }) => encoded,
      decoder: (data: { eventType: string; payload: Uint8Array }) =>
        behavior.decodeEvent(codec.decode(data.payload, `event ${key}`)),
      snapshotEncoder: (state: NactState<S>) =>
        codec.encode({ s: behavior.encodeSnapshot(state.s), seq: state.seq }),
      snapshotDecoder: (bytes: Uint8Array) => {
        const decoded = codec.decode(bytes, `snapshot ${key}`) as { s: unknown; seq: number };
        return { s: behavior.decodeSnapshot(decoded.s), seq: decoded.seq };
      },
      onCrash: (msg: unknown, error: Error, ctx: { reset: symbol; stop: symbol }) =>
        this.#onCrash(id, key, msg, error, ctx),
    } as never);
    return ref as Ref<C>;
  }

  async #onCrash(
    id: string,
    key: string,
    _msg: unknown,
    error: Error,
    ctx: { reset: symbol; stop: symbol; mailbox?: Array<{ message: unknown }> },
  ): Promise<symbol> {
    this.crashCount++;
    this.#permits.releaseRecovery(key);
    const now = Date.now();
    const { crashesMax, backoffMinMs, backoffMaxMs, windowMs } = this.#options.supervision;
    // Infrastructure trouble (database down, connection reset) is not the
    // actor's fault: keep resetting with capped backoff, never stop for it.
    const transient = isTransientFailure(error);
    const history = transient ? this.#transientCrashes : this.#crashes;
    const recent = (history.get(id) ?? []).filter((t) => now - t < windowMs);
    recent.push(now);
    history.set(id, recent);
    if (this.#closed || (!transient && recent.length > crashesMax)) {
      if (!this.#closed) {
        this.#stopped.set(id, `${error.name}: ${error.message}`);
        this.#log.error('actor stopped after repeated crashes', {
          actor: `${this.#behavior.kind}/${id}`,
          crashes: recent.length,
          error,
        });
      }
      // nact drops a stopped actor's mailbox: answer every queued command first.
      for (const queued of ctx.mailbox ?? []) {
        replyFailed(
          queued.message as C,
          ErrorCode.ActorStopped,
          `${this.#behavior.kind}/${id} was stopped after repeated crashes`,
        );
      }
      return ctx.stop;
    }
    const backoffMs = Math.min(backoffMaxMs, backoffMinMs * 2 ** Math.min(recent.length - 1, 30));
    this.#log.warn('actor crashed; resetting from snapshot and journal', {
      actor: `${this.#behavior.kind}/${id}`,
      transient,
      backoffMs,
      error,
    });
    await sleep(backoffMs);
    return ctx.reset;
  }

  #schedule(ref: Ref<C>, message: C, delayMs: number): void {
    if (this.#closed) return;
    if (this.#timers.size >= this.#options.scheduledMax) {
      throw new Error(
        `${this.#behavior.kind}: ${this.#options.scheduledMax} timers pending (its bound)`,
      );
    }
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      tell(ref, message);
    }, delayMs);
    this.#timers.add(timer);
  }

  /** Cancels timers and stops every actor of this kind (their passivation timers with them). */
  close(): void {
    this.#closed = true;
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    // nact's own recursive stop misses grandchildren, so stop them here.
    const supervisor = systemMap.find(this.#system.name, this.#supervisorRef) as
      ConcreteActor | undefined;
    if (supervisor) for (const child of [...supervisor.children.values()]) child.stop();
  }
}
