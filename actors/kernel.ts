/**
 * The actor contracts: what a shell (actors/) and the runtime that hosts it
 * (system/) agree on. Both import this file; neither imports the other.
 *
 * - `Ref<M>` is an actor reference that only accepts messages of type M.
 * - Every command carries its reply target (`replyTo`) and every path replies;
 *   a command that could not be handled is answered `Failed`.
 * - A `PersistentBehavior` is an event-sourced actor: `receive` decides and
 *   stages events, `evolve` folds one journaled event into the state.
 */

import type { LedgerRows } from './ledger.ts';

declare const messageType: unique symbol;
/** A reference that accepts messages of type M (a phantom type over the runtime's reference). */
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
 * What a behavior may do while it handles a command. Events are staged and
 * effects deferred: the host persists every staged event of the batch, waits
 * until they are durable, and only then runs the effects (replies, deliveries)
 * in order. If persisting fails, no effect runs: every command of the batch
 * gets a Failed reply and the actor resets.
 */
export interface ShellContext<C, E> {
  readonly id: string;
  readonly self: Ref<C>;
  /** Sequence number of the last journal row, staged events included (0 = none). */
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
  /**
   * What to journal for the events one batch staged, in order; folding the
   * result with `evolve` must equal folding the staged events (e.g. several
   * lines as one row). Absent: the staged events themselves.
   */
  pack?(staged: readonly E[]): E[];
  eventType(event: E): string;
  /**
   * Rows the journal writes beside this (packed) event, in the same commit
   * (ledger.ts). A unique row that already exists fails the append with
   * EXECUTION_CONFLICT, like a journal conflict: the actor resets.
   */
  ledgerRows?(event: E, id: string): LedgerRows | undefined;
  /** Validates a decoded event; throws on anything it does not know. */
  decodeEvent(data: unknown): E;
  encodeSnapshot(state: S): unknown;
  /**
   * The shape of the encoded state: bump it when the state changes shape, and
   * older snapshots are skipped (recovery replays the journal from the start).
   * Absent: 1.
   */
  readonly snapshotFormat?: number;
  decodeSnapshot(data: unknown): S;
  /**
   * The state after recovery, before the first command: e.g. to rebuild
   * volatile bookkeeping from the fold. Absent: the fold itself.
   */
  recovered?(state: S): S;
}
