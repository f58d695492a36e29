/**
 * The actor host: every actor of one kind, event-sourced on our Journal, on
 * nact's runtime (through nact-adapter.ts).
 *
 * One batch of an actor, in mailbox order and without locks:
 * 1. recover if the actor has no state yet: latest snapshot + journal tail;
 * 2. take the commands queued behind the first one (mailbox batching);
 * 3. `receive` each: decide, stage events, defer effects; then `endOfBatch`;
 * 4. encode every staged event (packed), append them, wait until durable;
 * 5. only then run the effects (replies, deliveries) in order.
 * If anything before 5 fails, every command of the batch is answered Failed
 * and the actor crashes; supervision resets it (it recovers from the
 * journal, never resuming a state the journal does not hold) or stops it.
 *
 * Entities spawn on their first message, passivate after `idleMs` idle, and
 * respawn on their next message (also a late reply to a passivated actor).
 */
import {
  ActorStoppedError,
  BlockfillError,
  ErrorCode,
  MailboxFullError,
  invariant,
} from '../actors/errors.ts';
import type { Failed, PersistentBehavior, Ref, Replyable, ShellContext } from '../actors/kernel.ts';
import type { Journal, JournalRecord } from '../persistence/journal.ts';
import { createRepeatLimiter, type Logger, type RepeatLimiter } from './log.ts';
import { ask, registerHost, tell, unregisterHosts } from './messaging.ts';
import {
  childCount,
  mailboxDepths,
  childOf,
  CrashDecision,
  entityKind,
  liveActor,
  spawnEntity,
  spawnGroup,
  startSystem,
  stopChildren,
  stopSystem,
  type EntityKind,
} from './nact-adapter.ts';
import { Permits } from './permits.ts';
import { replay } from './recovery.ts';
import { isTransientFailure } from './transient.ts';

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
  /** Snapshot writes in flight per host; a snapshot due beyond it waits for the next batch. */
  snapshotsInFlightMax: number;
  replayPageEvents: number;
  scheduledMax: number;
  supervision: SupervisionOptions;
}

export interface HostDeps {
  journal: Journal;
  codec: Codec;
  log: Logger;
  /** Told each batch's events once durable (the live feed); must not throw, and never blocks. */
  onDurable?: (kind: string, id: string, firstSeq: number, events: readonly unknown[]) => void;
}

/** One actor system: a nact system, and the recovery permits its hosts share. */
export class ActorSystem {
  readonly ref: unknown;
  readonly name: string;
  readonly recoveries: Permits;
  constructor(name: string, options: { recoveryConcurrencyMax: number }) {
    this.ref = startSystem(name);
    this.name = name;
    this.recoveries = new Permits(options.recoveryConcurrencyMax);
  }
  stop(): void {
    stopSystem(this.ref);
    unregisterHosts(this.name);
  }
}

interface Live<S> {
  live: true;
  s: S;
  /** The last journal row of this actor (0 = none). */
  seq: number;
  rowsSinceSnapshot: number;
}
type Slot<S> = { live: false } | Live<S>;

interface Decided<S, E> {
  s: S;
  staged: E[];
  effects: Array<() => void>;
}

/** Crashes of one kind with one cause are logged once per window, then as a count. */
const CRASH_LOG_WINDOW_MS = 10_000;

/** Actors whose recent crashes are remembered before old entries are pruned (an outage crashes every live actor). */
const CRASH_HISTORY_KEYS_MAX = 10_000;

function prune(history: Map<string, number[]>, sinceMs: number): void {
  for (const [id, times] of history) {
    if (!times.some((t) => t >= sinceMs)) history.delete(id);
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Answers a command that could not be handled; the command rides along so the sender can retry it. */
function replyFailed(command: unknown, code: string, message: string): void {
  const replyTo = (command as Replyable | undefined)?.replyTo;
  if (replyTo) tell(replyTo as Ref<Failed>, { type: 'Failed', code, message, command });
}

/** Runs every effect, even after one throws (every path replies); then rethrows the first error. */
function runEffects(effects: ReadonlyArray<() => void>): void {
  let failure: unknown;
  for (const effect of effects) {
    try {
      effect();
    } catch (error) {
      failure ??= error;
    }
  }
  if (failure !== undefined) throw failure;
}

function failAll(commands: readonly unknown[], error: unknown): void {
  const e = error as Error & { code?: string };
  for (const c of commands) replyFailed(c, e.code ?? ErrorCode.ActorCrashed, e.message);
}

/** Ids tracked for the passivated count, at most (about 60 MB of ids at the bound). */
const WOKEN_TRACKED_MAX = 2_000_000;

export class EntityHost<S, C extends Replyable, E> {
  readonly #system: ActorSystem;
  readonly #behavior: PersistentBehavior<S, C, E>;
  readonly #options: HostOptions;
  readonly #deps: HostDeps;
  readonly #group: unknown;
  readonly #kind: EntityKind;
  readonly #crashes = new Map<string, number[]>();
  readonly #transientCrashes = new Map<string, number[]>();
  readonly #stopped = new Map<string, string>();
  /** Ids with a journal woken since start (bounded): the passivated count is those not live now. */
  readonly #woken = new Set<string>();
  readonly #timers = new Set<NodeJS.Timeout>();
  #snapshotsInFlight = 0;
  #closed = false;
  /** Crash lines: an outage crashes every live actor every few seconds; one line per cause and window. */
  readonly #crashLog: RepeatLimiter;
  crashCount = 0;

  constructor(
    system: ActorSystem,
    behavior: PersistentBehavior<S, C, E>,
    deps: HostDeps,
    options: HostOptions,
  ) {
    invariant(options.batchCommandsMax >= 1, 'a batch holds at least one command');
    invariant(options.snapshotEveryEvents >= 1, 'snapshots every N >= 1 events');
    this.#system = system;
    this.#behavior = behavior;
    this.#options = options;
    this.#deps = deps;
    this.#crashLog = createRepeatLimiter(deps.log, { windowMs: CRASH_LOG_WINDOW_MS });
    this.#group = spawnGroup(system.ref, `${behavior.kind}s`);
    // One set of functions for every actor of this kind: a live actor costs no closures.
    this.#kind = entityKind<Slot<S>>({
      initialState: () => ({ live: false }),
      handle: (slot, message, id, self) =>
        this.#handle(id, `${behavior.kind}-${id}`, slot, message as C, self),
      onCrash: (id, error, queued) => this.#onCrash(id, error, queued),
    });
    registerHost(system.name, `${behavior.kind}s`, this);
  }

  get kind(): string {
    return this.#behavior.kind;
  }

  /** Actors stopped after repeated crashes: `kind/id` with the last error. */
  stoppedActors(): string[] {
    return [...this.#stopped.entries()].map(([id, why]) => `${this.kind}/${id}: ${why}`);
  }

  liveActors(): number {
    return childCount(this.#group);
  }

  /** Woken since start and passivated since (not live, not stopped); untracked past the bound. */
  passivatedActors(): number {
    return Math.max(0, this.#woken.size - this.liveActors() - this.#stopped.size);
  }

  /** Queued commands over every live actor of this kind, and the deepest mailbox. */
  mailboxDepths(): { total: number; max: number } {
    return mailboxDepths(this.#group);
  }

  /** How actor `id` stands: live (with its mailbox depth), passivated, stopped (why) or never woken. */
  actorState(id: string): {
    state: 'LIVE' | 'PASSIVATED' | 'STOPPED' | 'ABSENT';
    mailboxDepth: number;
    stoppedReason: string | null;
  } {
    const stoppedReason = this.#stopped.get(id) ?? null;
    if (stoppedReason !== null) return { state: 'STOPPED', mailboxDepth: 0, stoppedReason };
    const child = childOf(this.#group, id);
    if (child) return { state: 'LIVE', mailboxDepth: child.queued, stoppedReason };
    return { state: this.#woken.has(id) ? 'PASSIVATED' : 'ABSENT', mailboxDepth: 0, stoppedReason };
  }

  /**
   * An actor its supervisor stopped may run again (an operator fixed the
   * cause): its crash history is forgotten and its next message recovers it
   * from snapshot and journal. false when it was not stopped.
   */
  restart(id: string): boolean {
    if (!this.#stopped.delete(id)) return false;
    this.#crashes.delete(id);
    this.#transientCrashes.delete(id);
    this.#deps.log.warn('stopped actor restarted by an operator', { actor: `${this.kind}/${id}` });
    return true;
  }

  /** The live reference for `id`, spawning (and so recovering) the actor if needed. */
  refFor(id: string): Ref<C> {
    if (this.#stopped.has(id)) throw new ActorStoppedError(`${this.kind}/${id}`);
    const existing = childOf(this.#group, id);
    if (!existing) return this.#spawn(id);
    if (existing.queued >= this.#options.mailboxMax)
      throw new MailboxFullError(`${this.kind}/${id}`, this.#options.mailboxMax);
    return existing.ref as Ref<C>;
  }

  /** Delivers `command` to actor `id`; if it cannot be delivered, replies Failed to its replyTo. */
  send(id: string, command: C): void {
    let ref: Ref<C>;
    try {
      ref = this.refFor(id);
    } catch (error) {
      const e = error as Error & { code?: string };
      replyFailed(command, e.code ?? ErrorCode.Undeliverable, e.message);
      return;
    }
    tell(ref, command);
  }

  /** Rejects (ActorStoppedError, MailboxFullError, ActorTimeoutError) instead of throwing. */
  ask<R>(id: string, build: (replyTo: Ref<R>) => C, timeoutMs: number): Promise<R> {
    const send = (command: C) => {
      // Nobody can take it (the system is stopping): reject now rather than time out.
      if (!tell(this.refFor(id), command)) throw new ActorStoppedError(`${this.kind}/${id}`);
    };
    return ask(send, build, timeoutMs, `${this.kind}/${id}`);
  }

  #spawn(id: string): Ref<C> {
    return spawnEntity(this.#group, id, this.#kind, this.#options.idleMs) as Ref<C>;
  }

  async #handle(id: string, key: string, slot: Slot<S>, first: C, self: unknown): Promise<Slot<S>> {
    let state: Live<S>;
    try {
      state = slot.live ? slot : await this.#recover(id, key);
    } catch (error) {
      failAll([first], error);
      throw error;
    }
    const actor = liveActor(self);
    // Stopped while recovering (shutdown): the command is answered, nothing more happens.
    if (!actor) {
      failAll([first], new ActorStoppedError(`${this.kind}/${id}`));
      return state;
    }
    // Mailbox batching: one journal append (one commit wait) serves every queued command.
    const batch = [first, ...(actor.takeQueued(this.#options.batchCommandsMax - 1) as C[])];
    let decided: Decided<S, E>;
    let rows: number;
    try {
      decided = await this.#decide(id, state, batch, self);
      rows = await this.#persist(id, key, state.seq, decided.staged);
    } catch (error) {
      failAll(batch, error);
      throw error;
    }
    if (rows > 0) this.#tellDurable(id, state.seq + 1, decided.staged);
    runEffects(decided.effects);
    const next: Live<S> = {
      live: true,
      s: decided.s,
      seq: state.seq + rows,
      rowsSinceSnapshot: state.rowsSinceSnapshot + rows,
    };
    // Nothing durable (e.g. a view of an unknown id): stop as soon as it is idle.
    if (next.seq === 0) setImmediate(() => actor.busy || actor.queued > 0 || actor.stop());
    // Only an actor with a journal can be passivated: a lookup of an unknown id is not one.
    else if (this.#woken.size < WOKEN_TRACKED_MAX) this.#woken.add(id);
    return this.#maybeSnapshot(key, next);
  }

  /** The feed is an observer: its failure is logged, never the actor's. */
  #tellDurable(id: string, firstSeq: number, events: readonly E[]): void {
    const onDurable = this.#deps.onDurable;
    if (!onDurable) return;
    try {
      onDurable(this.kind, id, firstSeq, events);
    } catch (error) {
      this.#deps.log.warn('the live feed failed on a durable batch', {
        actor: `${this.kind}/${id}`,
        error,
      });
    }
  }

  async #recover(id: string, key: string): Promise<Live<S>> {
    return this.#system.recoveries.with(async () => {
      const { journal, codec } = this.#deps;
      const behavior = this.#behavior;
      let s = behavior.initialState(id);
      let seq = 0;
      const snapshot = await journal.snapshot(key);
      if (snapshot) {
        const decoded = codec.decode(snapshot.payload, `snapshot ${key}`) as {
          s: unknown;
          seq: number;
          f?: number;
        };
        invariant(
          decoded.seq === snapshot.seq,
          `snapshot of ${key} says #${decoded.seq}, row #${snapshot.seq}`,
        );
        // A snapshot of another state shape is skipped: the journal alone rebuilds the state.
        if ((decoded.f ?? 1) === (behavior.snapshotFormat ?? 1)) {
          s = behavior.decodeSnapshot(decoded.s);
          seq = snapshot.seq;
        }
      }
      const last = await replay(journal, key, seq, this.#options.replayPageEvents, (record) => {
        s = behavior.evolve(s, behavior.decodeEvent(codec.decode(record.payload, `event ${key}`)));
      });
      if (behavior.recovered) s = behavior.recovered(s);
      return { live: true, s, seq: last, rowsSinceSnapshot: last - seq };
    });
  }

  async #decide(id: string, state: Live<S>, batch: C[], self: unknown): Promise<Decided<S, E>> {
    const behavior = this.#behavior;
    const staged: E[] = [];
    const effects: Array<() => void> = [];
    const ctx: ShellContext<C, E> = {
      id,
      self: self as Ref<C>,
      get journalSeq() {
        return state.seq + (behavior.pack ? behavior.pack(staged) : staged).length;
      },
      persist: (event) => void staged.push(event),
      effect: (effect) => void effects.push(effect),
      reply: (to, message) => void effects.push(() => tell(to, message)),
      scheduleSelf: (message, delayMs) => this.#schedule(self as Ref<C>, message, delayMs),
    };
    let s = state.s;
    for (const command of batch) s = await behavior.receive(s, command, ctx);
    if (behavior.endOfBatch) s = behavior.endOfBatch(s, ctx);
    return { s, staged, effects };
  }

  /** Appends the batch's events as rows after `lastSeq`; returns how many rows. */
  async #persist(id: string, key: string, lastSeq: number, staged: readonly E[]): Promise<number> {
    if (staged.length === 0) return 0;
    const behavior = this.#behavior;
    const rows = behavior.pack ? behavior.pack(staged) : staged;
    invariant(rows.length > 0, `${key}: packing ${staged.length} events left no row`);
    // Every row is encoded before any is appended: a failed encode leaves no hole.
    const records: JournalRecord[] = rows.map((event, i) => {
      const ledger = behavior.ledgerRows?.(event, id);
      return {
        key,
        seq: lastSeq + i + 1,
        eventType: behavior.eventType(event),
        payload: this.#deps.codec.encode(event),
        ...(ledger ? { ledger } : {}),
      };
    });
    await this.#deps.journal.append(records);
    return records.length;
  }

  #maybeSnapshot(key: string, state: Live<S>): Live<S> {
    if (state.rowsSinceSnapshot < this.#options.snapshotEveryEvents) return state;
    if (this.#snapshotsInFlight >= this.#options.snapshotsInFlightMax) return state;
    const payload = this.#deps.codec.encode({
      s: this.#behavior.encodeSnapshot(state.s),
      seq: state.seq,
      f: this.#behavior.snapshotFormat ?? 1,
    });
    this.#snapshotsInFlight++;
    // Behind the actor's back: a lost snapshot only means a longer replay.
    this.#deps.journal
      .saveSnapshot({ key, seq: state.seq, payload })
      .catch((error: unknown) => this.#deps.log.warn('snapshot not saved', { key, error }))
      .finally(() => this.#snapshotsInFlight--);
    return { ...state, rowsSinceSnapshot: 0 };
  }

  async #onCrash(id: string, error: Error, queued: unknown[]): Promise<CrashDecision> {
    this.crashCount++;
    const now = Date.now();
    const { crashesMax, backoffMinMs, backoffMaxMs, windowMs } = this.#options.supervision;
    // Infrastructure trouble (database down, connection reset) is not the
    // actor's fault: keep resetting with capped backoff, never stop for it.
    const transient = isTransientFailure(error);
    const history = transient ? this.#transientCrashes : this.#crashes;
    const recent = (history.get(id) ?? []).filter((t) => now - t < windowMs);
    recent.push(now);
    history.set(id, recent);
    if (history.size > CRASH_HISTORY_KEYS_MAX) prune(history, now - windowMs);
    if (this.#closed || (!transient && recent.length > crashesMax)) {
      this.#stop(id, error, recent.length, queued);
      return CrashDecision.Stop;
    }
    const backoffMs = Math.min(backoffMaxMs, backoffMinMs * 2 ** Math.min(recent.length - 1, 30));
    const cause = (error as { code?: unknown }).code ?? error.name;
    this.#crashLog.warn(
      `${this.kind}:${String(cause)}`,
      'actor crashed; resetting from snapshot and journal',
      {
        actor: `${this.kind}/${id}`,
        transient,
        backoffMs,
        error,
      },
    );
    await sleep(backoffMs);
    return CrashDecision.Reset;
  }

  #stop(id: string, error: Error, crashes: number, queued: unknown[]): void {
    if (!this.#closed) {
      this.#stopped.set(id, `${error.name}: ${error.message}`);
      this.#deps.log.error('actor stopped after repeated crashes', {
        actor: `${this.kind}/${id}`,
        crashes,
        error,
      });
    }
    // A stopped actor's mailbox is dropped: answer every queued command first.
    const why = new ActorStoppedError(`${this.kind}/${id}`);
    for (const command of queued) replyFailed(command, ErrorCode.ActorStopped, why.message);
  }

  #schedule(ref: Ref<C>, message: C, delayMs: number): void {
    if (this.#closed) return;
    // At the bound the batch fails with a transient error: the actor resets
    // (never stops for it) and re-delivers its open lines on recovery.
    if (this.#timers.size >= this.#options.scheduledMax)
      throw new BlockfillError(
        ErrorCode.TimersFull,
        `${this.kind}: ${this.#options.scheduledMax} timers pending (its bound)`,
      );
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      tell(ref, message);
    }, delayMs);
    this.#timers.add(timer);
  }

  /** Cancels timers and stops every actor of this kind (their passivation timers with them). */
  close(): void {
    this.#closed = true;
    this.#crashLog.close();
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    // A stopped actor's mailbox is dropped: answer what is still queued.
    const why = `${this.kind} is shutting down`;
    for (const command of stopChildren(this.#group))
      replyFailed(command, ErrorCode.ActorStopped, why);
  }
}
