/**
 * The block-order actor shell: persists the decider's events, delivers the
 * allocation lines to their accounts once durable, and replies. Its state is
 * the decider's fold plus the outbox (delivery bookkeeping, never journaled).
 * One small handler per message type; no business rule lives here.
 */
import { formatPrice, vwap } from '../domain/money.ts';
import { ErrorCode, InvariantError, assertNever, invariant } from '../errors.ts';
import type { PersistentBehavior, ShellContext } from '../kernel.ts';
import type {
  AccountDirectory,
  AllocationObserver,
  AllocationReply,
  BlockOrderMessage,
  Clock,
  ExecutionLookup,
  ReferencePort,
} from '../protocol.ts';
import { BlockOrderStatus, type AverageView, type BlockOrderActorView } from '../views.ts';
import {
  decide,
  entryOf,
  evolve,
  FillRejection,
  initialState,
  totalTarget,
  type BlockOrderDef,
  type BlockOrderEvent,
  type BlockOrderState,
  type Decision,
  type Entry,
  type OpenState,
  type PendingFill,
} from './decider.ts';
import {
  amendLookup,
  linesKeyOfPending,
  releaseLinesAfter,
  releaseLinesOfPending,
  versionAfter,
  versionOfPending,
  type FillVersion,
} from './amendments.ts';
import { decodeOrder, encodeOrder, type AverageState, type ReleaseLines } from './average.ts';
import { Outbox } from './outbox.ts';

export const BLOCK_ORDER_KIND = 'block-order';

export interface BlockOrderShellState {
  /** The fold of the journal: exactly what the events say. */
  d: BlockOrderState;
  /** Which lines are settled and what to re-deliver: volatile, rebuilt on recovery. */
  outbox: Outbox;
}

export interface BlockOrderDeps {
  reference: ReferencePort;
  executions: ExecutionLookup;
  accounts: AccountDirectory;
  clock: Clock;
  observer: AllocationObserver;
  redeliveryAttemptsMax: number;
  redeliveryBackoffMs: number;
  /** Fills awaiting their accounts, at most; beyond it new fills are refused (and redelivered later). */
  outboxFillsMax: number;
  /** Told when re-delivery to an account gives up (the account is stopped or keeps failing). */
  onParked(blockOrderId: string, accountId: string, attempts: number): void;
}

/**
 * The journal's event_type column: a watermark that is not caught up is
 * stored as AllocationsConfirmedPartial, so the start-up sweep can find every
 * order with unconfirmed lines from the last event's type alone.
 */
export const journalEventType = (event: BlockOrderEvent): string =>
  event.type === 'AllocationsConfirmed' && !event.caughtUp
    ? 'AllocationsConfirmedPartial'
    : event.type;

/** Events that apply an entry (a fill or an amendment) at its seq: each leaves lines to confirm. */
const ENTRY_EVENT_TYPES = [
  'FillAllocated',
  'FillBusted',
  'FillCorrected',
  'OrderCancelled',
  'FillAccumulated',
  'AveragedFillAmended',
] as const satisfies readonly BlockOrderEvent['type'][];

/** Journal event types that, as an order's last event, mean some line is still unconfirmed. */
export const UNCONFIRMED_EVENT_TYPES = [
  ...ENTRY_EVENT_TYPES,
  'AllocationsConfirmedPartial',
] as const;

const EVENT_TYPES: ReadonlySet<string> = new Set<BlockOrderEvent['type']>([
  'BlockOrderOpened',
  ...ENTRY_EVENT_TYPES,
  'AllocationsConfirmed',
]);

/**
 * Average price: the release whose lines an entry's event sets (null: none),
 * for the index's amends_fill_id; undefined for a pro-rata order's event.
 */
function releaseKeyOf(event: BlockOrderEvent): string | null | undefined {
  switch (event.type) {
    case 'FillAccumulated':
      return event.release?.key ?? null;
    case 'AveragedFillAmended':
      return event.change?.key ?? event.release?.key ?? null;
    case 'OrderCancelled':
      return event.release?.key;
    default:
      return undefined;
  }
}

type Ctx = ShellContext<BlockOrderMessage, BlockOrderEvent>;
type State = BlockOrderShellState;
type Message<T extends BlockOrderMessage['type']> = Extract<BlockOrderMessage, { type: T }>;

export function blockOrderBehavior(
  deps: BlockOrderDeps,
): PersistentBehavior<State, BlockOrderMessage, BlockOrderEvent> {
  const shell = new BlockOrderShell(deps);
  return {
    kind: BLOCK_ORDER_KIND,
    initialState: () => ({ d: initialState(), outbox: new Outbox(deps.outboxFillsMax) }),
    evolve: (state, event) => ({ ...state, d: evolve(state.d, event) }),
    recovered: (state) => ({ ...state, outbox: outboxOf(state.d, deps.outboxFillsMax) }),
    eventType: journalEventType,
    // The fill (or amendment) id is claimed in the same commit as its lines, for good.
    ledgerRows: (event) => {
      const entry = entryOf(event);
      if (!entry) return undefined;
      const key = releaseKeyOf(event);
      return key === undefined
        ? { executions: [entry] }
        : { executions: [entry], linesKeys: [key] };
    },
    decodeEvent(data) {
      const type = (data as { type?: unknown }).type;
      if (typeof type !== 'string' || !EVENT_TYPES.has(type))
        throw new InvariantError(`unknown block order event ${String(type)}`);
      return data as BlockOrderEvent;
    },
    // 5: the average-price state (4: remaining and last seq per target as arrays).
    snapshotFormat: 5,
    encodeSnapshot: (state) => encodeOrder(state.d),
    decodeSnapshot: (data) => ({
      d: decodeOrder(data),
      outbox: new Outbox(deps.outboxFillsMax),
    }),
    // The watermark rides along with whatever the batch persists anyway;
    // it may lag, which only means a little more re-delivery after a crash.
    endOfBatch(state, ctx) {
      const settledThroughSeq = state.outbox.settledThrough();
      const command = { type: 'ConfirmProgress' as const, settledThroughSeq, nowMs: now(deps) };
      return shell.stage(state, decide(command, state.d).events, ctx);
    },
    async receive(state, message, ctx) {
      switch (message.type) {
        case 'AllocateFill':
          return shell.allocateFill(state, message, ctx);
        case 'Amend':
          return shell.amend(state, message, ctx);
        case 'AllocationSettled':
          return shell.settled(shell.redeliverOnce(state, ctx), message);
        case 'AllocationNotApplied':
          return shell.retryLater(shell.redeliverOnce(state, ctx), message.accountId, ctx);
        case 'Failed':
          return shell.deliveryFailed(shell.redeliverOnce(state, ctx), message, ctx);
        case 'Redeliver':
          return shell.redeliver(shell.redeliverOnce(state, ctx), message.accountId, ctx);
        case 'Wake': {
          const next = shell.redeliverOnce(state, ctx);
          ctx.reply(message.replyTo, {
            type: 'Awake',
            pendingLines: next.outbox.openLines().length,
          });
          return next;
        }
        case 'GetView':
          return shell.view(state, message, ctx);
        default:
          return assertNever(message, 'block order message');
      }
    },
  };
}

const now = (deps: BlockOrderDeps) => deps.clock.nowMs();

function outboxOf(d: BlockOrderState, fillsMax: number): Outbox {
  if (d.status !== 'Open') return new Outbox(fillsMax);
  return Outbox.fromPending(fillsMax, d.confirmedThroughSeq, d.pending);
}

/** The handlers: one method per message type, over the shell's dependencies. */
class BlockOrderShell {
  readonly #deps: BlockOrderDeps;

  constructor(deps: BlockOrderDeps) {
    this.#deps = deps;
  }

  /** Persists events and folds them; the outbox follows what became state. */
  stage(state: State, events: readonly BlockOrderEvent[], ctx: Ctx): State {
    let d = state.d;
    for (const event of events) {
      ctx.persist(event);
      d = evolve(d, event);
      const entry = entryOf(event);
      if (entry && d.status === 'Open') {
        const added = d.pending.at(-1);
        if (added?.seq !== entry.seq) throw new InvariantError('a new entry must be pending');
        state.outbox.add(added);
        // An entry with no lines (a cancel) is settled as soon as it is durable.
        if (added.lines.length === 0) {
          const { blockOrderId, seq } = entry;
          ctx.effect(() => this.#deps.observer.fillSettled(blockOrderId, seq, now(this.#deps)));
        }
      } else if (event.type === 'AllocationsConfirmed') state.outbox.confirmed(event.throughSeq);
    }
    return { ...state, d };
  }

  /** The open state, or why the order cannot be opened. */
  async ensureOpen(
    state: State,
    ctx: Ctx,
  ): Promise<State | { reason: FillRejection; detail: string }> {
    if (state.d.status === 'Open') return state;
    const def = await this.#deps.reference.blockOrder(ctx.id);
    if (!def)
      return { reason: FillRejection.UnknownBlockOrder, detail: `no block order ${ctx.id}` };
    const decision = decide({ type: 'Open', def, nowMs: now(this.#deps) }, state.d);
    if (decision.outcome === 'Rejected')
      return { reason: decision.reason, detail: decision.detail };
    return this.stage(state, decision.events, ctx);
  }

  /** Sends the open lines of `fills` (or of one account only), oldest first, once durable. */
  deliver(state: State, ctx: Ctx, fills: readonly PendingFill[], accountId?: string): void {
    if (state.d.status !== 'Open') return;
    const def = state.d.def;
    for (const fill of fills) {
      for (const line of fill.lines) {
        if (accountId !== undefined && line.accountId !== accountId) continue;
        if (!state.outbox.isOpen(fill.seq, line.accountId)) continue;
        const amended = fill.amended;
        const message = {
          type: 'ApplyAllocation' as const,
          accountId: line.accountId,
          allocation: {
            blockOrderId: def.blockOrderId,
            fillSeq: fill.seq,
            prevSeq: line.prevSeq,
            securityId: def.securityId,
            side: def.side,
            quantity: line.quantity,
            price: fill.price,
            ...(amended
              ? {
                  amends: {
                    seq: amended.amendsSeq,
                    quantity: line.previousQuantity ?? 0n,
                    price: amended.previousPrice,
                  },
                }
              : {}),
          },
          replyTo: ctx.self,
        };
        ctx.effect(() => this.#deps.accounts.send(line.accountId, message));
      }
    }
  }

  redeliverOnce(state: State, ctx: Ctx): State {
    if (state.outbox.redelivered || state.d.status !== 'Open') return state;
    this.deliver(state, ctx, state.d.pending);
    state.outbox.redelivered = true;
    return state;
  }

  /**
   * The open state, ready to take an entry (a fill or an amendment); or the
   * reply is sent (the order cannot open, or its outbox is full) and the
   * state to keep is returned as `done`.
   */
  async ready(
    initial: State,
    replyTo: Message<'Amend'>['replyTo'],
    ctx: Ctx,
  ): Promise<{ state: State } | { done: State }> {
    const opened = await this.ensureOpen(initial, ctx);
    if ('reason' in opened) {
      ctx.reply(replyTo, { type: 'Rejected', ...opened });
      return { done: initial };
    }
    const state = this.redeliverOnce(opened, ctx);
    if (!state.outbox.full) return { state };
    // Back-pressure: the entry stays in JetStream and comes back once accounts caught up.
    const detail = `${ctx.id} has ${state.outbox.fills} entries awaiting their accounts`;
    ctx.reply(replyTo, { type: 'Failed', code: ErrorCode.OutboxFull, message: detail });
    return { done: state };
  }

  async allocateFill(initial: State, message: Message<'AllocateFill'>, ctx: Ctx): Promise<State> {
    const ready = await this.ready(initial, message.replyTo, ctx);
    if ('done' in ready) return ready.done;
    const { state } = ready;
    const prior = await this.priorExecution(state, message.fill);
    const command = {
      type: 'AllocateFill' as const,
      fill: message.fill,
      prior,
      nowMs: now(this.#deps),
    };
    return this.answer(state, decide(command, state.d), message.replyTo, ctx);
  }

  /** A bust, correction or cancel: decided against the amended fill's current version. */
  async amend(initial: State, message: Message<'Amend'>, ctx: Ctx): Promise<State> {
    const ready = await this.ready(initial, message.replyTo, ctx);
    if ('done' in ready) return ready.done;
    const { state } = ready;
    const a = message.amendment;
    const prior = await this.priorExecution(state, a);
    // Only what the decision will read is looked up (nothing for a rejection decided without it).
    const lookup = amendLookup(state.d, a);
    const target = lookup?.kind === 'FILL' ? await this.fillVersion(state, lookup.key) : undefined;
    const release =
      lookup?.kind === 'RELEASE' ? await this.releaseLines(state, lookup.key) : undefined;
    const command = {
      type: 'Amend' as const,
      amendment: a,
      prior,
      target,
      release,
      nowMs: now(this.#deps),
    };
    return this.answer(state, decide(command, state.d), message.replyTo, ctx);
  }

  /** Stages an accepted entry and delivers its lines; replies for every outcome. */
  answer(state: State, decision: Decision, replyTo: Message<'Amend'>['replyTo'], ctx: Ctx): State {
    switch (decision.outcome) {
      case 'Accepted': {
        const next = this.stage(state, decision.events, ctx);
        const entry = decision.events.length === 1 ? entryOf(decision.events[0]!) : undefined;
        if (!entry || next.d.status !== 'Open')
          throw new InvariantError('an accepted entry must yield exactly its event');
        // The new entry is the last pending one (stage asserted it): no scan of the others.
        const added = next.d.pending.slice(-1);
        this.deliver(next, ctx, added);
        ctx.reply(replyTo, {
          type: 'Allocated',
          seq: entry.seq,
          lines: added[0]?.lines.length ?? 0,
        });
        return next;
      }
      case 'Duplicate':
        ctx.reply(replyTo, { type: 'Duplicate', reason: decision.reason });
        return state;
      case 'Rejected':
        ctx.reply(replyTo, {
          type: 'Rejected',
          reason: decision.reason,
          detail: decision.detail,
          ...(decision.existing ? { existing: decision.existing } : {}),
          ...(decision.expectedSeq ? { expectedSeq: decision.expectedSeq } : {}),
        });
        return state;
      default:
        return assertNever(decision, 'decision');
    }
  }

  /**
   * The fill an amendment names, as it stands now: the newest pending entry
   * that set its lines (durable, or staged in this batch), else the journal.
   */
  async fillVersion(state: State, fillId: string): Promise<FillVersion | null> {
    const set = await this.linesSetBy(state, fillId);
    if (set === undefined) return null;
    // Another order's event under this id (hostile input) is no fill of this order.
    return ('seq' in set ? versionOfPending(set) : versionAfter(set)) ?? null;
  }

  /** Average price: a release's current lines (the state says it exists). */
  async releaseLines(state: State, key: string): Promise<ReleaseLines> {
    invariant(state.d.status === 'Open', 'release lines of an order that is not open');
    const set = await this.linesSetBy(state, key);
    const lines = set && ('seq' in set ? releaseLinesOfPending(set) : releaseLinesAfter(set));
    // The state says the release exists: its event is durable, or the journal lost it.
    invariant(
      lines?.key === key,
      `release ${key} of ${state.d.def.blockOrderId} is not in the journal`,
    );
    return lines;
  }

  /**
   * What last set the lines under `key` (a fill id or a release key): the
   * newest pending entry (durable, or staged in this batch), else the
   * journal's event.
   */
  async linesSetBy(state: State, key: string): Promise<PendingFill | BlockOrderEvent | undefined> {
    if (state.d.status !== 'Open') return undefined;
    const pending = state.d.pending;
    for (let i = pending.length - 1; i >= 0; i--)
      if (linesKeyOfPending(pending[i]!) === key) return pending[i];
    return this.#deps.executions.linesSetBy(key);
  }

  /**
   * For a message at an applied seq: the execution applied there. Recent
   * fills are in memory (pending, durable or staged in this batch, whose
   * replies all wait for its commit); older ones come from the index.
   */
  async priorExecution(state: State, fill: Entry): Promise<Entry | null | undefined> {
    if (state.d.status !== 'Open' || fill.seq > state.d.lastFillSeq) return undefined;
    const pending = state.d.pending;
    if (pending.length > 0 && fill.seq >= (pending[0]?.seq ?? Infinity)) {
      const found = pending.find((p) => p.seq === fill.seq);
      if (found) return found.execution;
    }
    return (await this.#deps.executions.executionAt(state.d.def.blockOrderId, fill.seq)) ?? null;
  }

  settled(state: State, message: Extract<AllocationReply, { type: 'AllocationSettled' }>) {
    const fillSettled = state.outbox.settle(message.fillSeq, message.accountId);
    state.outbox.setRetry(message.accountId, undefined);
    // The account made its line durable before replying: the fill is done when all lines are.
    if (fillSettled)
      this.#deps.observer.fillSettled(message.blockOrderId, message.fillSeq, now(this.#deps));
    return state;
  }

  retryLater(state: State, accountId: string, ctx: Ctx): State {
    const current = state.outbox.retryOf(accountId) ?? {
      attempts: 0,
      scheduled: false,
      parked: false,
    };
    if (current.scheduled) return state;
    const attempts = current.attempts + 1;
    // A downstream failure must not crash the order. Past the bound the
    // backoff stops growing: the lines stay unconfirmed (visible in the view)
    // and are retried at that slow, fixed rate until the account takes them.
    const parked = attempts > this.#deps.redeliveryAttemptsMax;
    if (parked && !current.parked)
      ctx.effect(() => this.#deps.onParked(ctx.id, accountId, current.attempts));
    const delayMs =
      this.#deps.redeliveryBackoffMs *
      2 ** (Math.min(attempts, this.#deps.redeliveryAttemptsMax) - 1);
    ctx.scheduleSelf({ type: 'Redeliver', accountId }, delayMs);
    state.outbox.setRetry(accountId, { attempts, scheduled: true, parked });
    return state;
  }

  /** An account could not take a delivery (crashed, mailbox full, stopped). */
  deliveryFailed(state: State, message: Message<'Failed'>, ctx: Ctx): State {
    const command = message.command as { type?: string; accountId?: string } | undefined;
    if (command?.type !== 'ApplyAllocation' || typeof command.accountId !== 'string') return state;
    return this.retryLater(state, command.accountId, ctx);
  }

  redeliver(state: State, accountId: string, ctx: Ctx): State {
    const retry = state.outbox.retryOf(accountId);
    if (retry) state.outbox.setRetry(accountId, { ...retry, scheduled: false });
    if (state.d.status === 'Open') this.deliver(state, ctx, state.d.pending, accountId);
    return state;
  }

  async view(state: State, message: Message<'GetView'>, ctx: Ctx): Promise<State> {
    if (state.d.status === 'Open') {
      const unconfirmedLines = state.outbox.openLines().length;
      ctx.reply(message.replyTo, {
        type: 'View',
        view: toView(state.d, ctx.journalSeq, unconfirmedLines),
      });
      return state;
    }
    const def = await this.#deps.reference.blockOrder(ctx.id);
    ctx.reply(
      message.replyTo,
      def ? { type: 'View', view: unopenedView(def) } : { type: 'NotFound' },
    );
    return state;
  }
}

function statusOf(
  filled: bigint,
  target: bigint,
  cancelled: boolean,
): BlockOrderActorView['status'] {
  if (filled < target && cancelled) return BlockOrderStatus.Cancelled;
  if (filled === 0n) return BlockOrderStatus.New;
  return filled >= target ? BlockOrderStatus.Filled : BlockOrderStatus.PartiallyFilled;
}

function toView(
  state: OpenState,
  journalSeq: number,
  unconfirmedLines: number,
): BlockOrderActorView {
  const def = state.def;
  const target = totalTarget(def);
  const v = vwap(state.filledNotional, state.filledQuantity);
  return {
    blockOrderId: def.blockOrderId,
    securityId: def.securityId,
    side: def.side,
    tradeDate: def.tradeDate,
    lotSize: def.lotSize.toString(),
    status: statusOf(state.filledQuantity, target, state.cancelledQuantity !== null),
    targetQuantity: target.toString(),
    filledQuantity: state.filledQuantity.toString(),
    fills: state.fills,
    busts: state.busts,
    corrections: state.corrections,
    cancelledQuantity: state.cancelledQuantity === null ? null : state.cancelledQuantity.toString(),
    lastFillSeq: state.lastFillSeq,
    vwapPrice: v === null ? null : formatPrice(v),
    accounts: def.targets.map((t, i) => ({
      accountId: t.accountId,
      targetQuantity: t.quantity.toString(),
      allocatedQuantity: (t.quantity - state.remaining[i]!.remaining).toString(),
    })),
    confirmedThroughSeq: state.confirmedThroughSeq,
    unconfirmedLines,
    journalSeq,
    allocationPolicy: state.average ? 'AVERAGE_PRICE' : 'PRO_RATA',
    average: state.average ? averageView(state.average) : null,
  };
}

function averageView(avg: AverageState): AverageView {
  return {
    releaseEveryFills: avg.policy.everyFills,
    releaseEveryMarketMs: avg.policy.everyMarketMs,
    releases: avg.releases.size,
    releasedQuantity: avg.releasedQuantity.toString(),
    accumulatedQuantity: avg.accumulation.quantity.toString(),
    accumulatedFills: avg.accumulation.fills,
    residueMinor: avg.residueMinor.toString(),
  };
}

/** Reference data only, before the first fill: the view of a just-opened order. */
function unopenedView(def: BlockOrderDef): BlockOrderActorView {
  const opened = evolve(initialState(), { type: 'BlockOrderOpened', def, atMs: 0 });
  if (opened.status !== 'Open') throw new InvariantError('BlockOrderOpened must open the order');
  return toView(opened, 0, 0);
}
