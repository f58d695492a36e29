/**
 * The block-order actor shell: persists the decider's events, then delivers
 * allocations to accounts, then replies. No business rule lives here.
 */
import type { PersistentBehavior, ShellContext } from '../kernel.ts';
import { formatPrice, vwap } from '../domain/money.ts';
import { own } from '../domain/records.ts';
import { InvariantError, assertNever } from '../errors.ts';
import type {
  AccountDirectory,
  AllocationObserver,
  BlockOrderMessage,
  Clock,
  ReferencePort,
} from '../protocol.ts';
import { BlockOrderStatus, type BlockOrderView } from '../views.ts';
import {
  decide,
  evolve,
  FillRejection,
  initialState,
  markSettled,
  totalTarget,
  unsettledLines,
  type BlockOrderDef,
  type BlockOrderEvent,
  type BlockOrderState,
} from './decider.ts';

export const BLOCK_ORDER_KIND = 'block-order';

/** Domain state plus delivery bookkeeping that is never journaled. */
export interface BlockOrderShellState {
  d: BlockOrderState;
  /** After a (re)start, unsettled lines are re-delivered once, on the first live message. */
  redelivered: boolean;
  /** Re-delivery bookkeeping per account that refused or failed a delivery. */
  retry: Record<string, RetryState>;
}

export interface RetryState {
  /** Consecutive re-deliveries without a settlement: drives backoff and the bound. */
  attempts: number;
  /** A Redeliver is pending: further refusals of the same delivery wave count once. */
  scheduled: boolean;
  /** The bound was reached: re-delivery goes on at the slowest backoff. */
  parked: boolean;
}

export interface BlockOrderDeps {
  reference: ReferencePort;
  accounts: AccountDirectory;
  clock: Clock;
  observer: AllocationObserver;
  redeliveryAttemptsMax: number;
  redeliveryBackoffMs: number;
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

/** Journal event types that, as an order's last event, mean some line is still unconfirmed. */
export const UNCONFIRMED_EVENT_TYPES = ['FillAllocated', 'AllocationsConfirmedPartial'] as const;

const EVENT_TYPES: ReadonlySet<string> = new Set([
  'BlockOrderOpened',
  'FillAllocated',
  'AllocationsConfirmed',
]);

type Ctx = ShellContext<BlockOrderMessage, BlockOrderEvent>;

export function blockOrderBehavior(
  deps: BlockOrderDeps,
): PersistentBehavior<BlockOrderShellState, BlockOrderMessage, BlockOrderEvent> {
  function stage(
    state: BlockOrderShellState,
    events: BlockOrderEvent[],
    ctx: Ctx,
  ): BlockOrderShellState {
    let d = state.d;
    for (const event of events) {
      ctx.persist(event);
      d = evolve(d, event);
    }
    return { ...state, d };
  }

  /** The open state, or why the order cannot be opened. */
  async function ensureOpen(
    state: BlockOrderShellState,
    ctx: Ctx,
  ): Promise<BlockOrderShellState | { reason: FillRejection; detail: string }> {
    if (state.d.status === 'Open') return state;
    const def = await deps.reference.blockOrder(ctx.id);
    if (!def)
      return { reason: FillRejection.UnknownBlockOrder, detail: `no block order ${ctx.id}` };
    const decision = decide({ type: 'Open', def, nowMs: deps.clock.nowMs() }, state.d);
    if (decision.outcome === 'Rejected')
      return { reason: decision.reason, detail: decision.detail };
    return stage(state, decision.events, ctx);
  }

  /** Sends every unsettled line, optionally only of one fill or one account, oldest first. */
  function deliver(
    state: BlockOrderShellState,
    ctx: Ctx,
    only: { seq?: number; accountId?: string } = {},
  ): void {
    if (state.d.status !== 'Open') return;
    const def = state.d.def;
    for (const fill of state.d.pending) {
      if (only.seq !== undefined && fill.seq !== only.seq) continue;
      for (const line of fill.lines) {
        if (line.settled || (only.accountId !== undefined && line.accountId !== only.accountId))
          continue;
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
          },
          replyTo: ctx.self,
        };
        ctx.effect(() => deps.accounts.send(line.accountId, message));
      }
    }
  }

  function redeliverOnce(state: BlockOrderShellState, ctx: Ctx): BlockOrderShellState {
    if (state.redelivered) return state;
    deliver(state, ctx);
    return { ...state, redelivered: true };
  }

  function retryLater(
    state: BlockOrderShellState,
    accountId: string,
    ctx: Ctx,
  ): BlockOrderShellState {
    const current = own(state.retry, accountId) ?? { attempts: 0, scheduled: false, parked: false };
    if (current.scheduled) return state;
    const attempts = current.attempts + 1;
    // A downstream failure must not crash the order. Past the bound the
    // backoff stops growing: the lines stay unconfirmed (visible in the view)
    // and are retried at that slow, fixed rate until the account takes them.
    const parked = attempts > deps.redeliveryAttemptsMax;
    if (parked && !current.parked)
      ctx.effect(() => deps.onParked(ctx.id, accountId, current.attempts));
    ctx.scheduleSelf(
      { type: 'Redeliver', accountId },
      deps.redeliveryBackoffMs * 2 ** (Math.min(attempts, deps.redeliveryAttemptsMax) - 1),
    );
    return {
      ...state,
      retry: { ...state.retry, [accountId]: { attempts, scheduled: true, parked } },
    };
  }

  return {
    kind: BLOCK_ORDER_KIND,
    initialState: () => ({ d: initialState(), redelivered: false, retry: {} }),
    evolve: (state, event) => ({ ...state, d: evolve(state.d, event) }),
    eventType: journalEventType,
    decodeEvent(data) {
      const type = (data as { type?: unknown }).type;
      if (typeof type !== 'string' || !EVENT_TYPES.has(type))
        throw new InvariantError(`unknown block order event ${String(type)}`);
      return data as BlockOrderEvent;
    },
    encodeSnapshot: (state) => state.d,
    decodeSnapshot: (data) => ({ d: data as BlockOrderState, redelivered: false, retry: {} }),

    // The watermark rides along with whatever the batch persists anyway;
    // it may lag, which only means a little more re-delivery after a crash.
    endOfBatch(state, ctx) {
      const decision = decide({ type: 'ConfirmProgress', nowMs: deps.clock.nowMs() }, state.d);
      return stage(state, decision.events, ctx);
    },

    async receive(initial, message, ctx) {
      let state = initial;
      switch (message.type) {
        case 'AllocateFill': {
          const opened = await ensureOpen(state, ctx);
          if ('reason' in opened) {
            ctx.reply(message.replyTo, { type: 'Rejected', ...opened });
            return state;
          }
          state = redeliverOnce(opened, ctx);
          const decision = decide(
            { type: 'AllocateFill', fill: message.fill, nowMs: deps.clock.nowMs() },
            state.d,
          );
          switch (decision.outcome) {
            case 'Accepted': {
              state = stage(state, decision.events, ctx);
              const allocated = decision.events[0];
              if (allocated?.type !== 'FillAllocated')
                throw new InvariantError('an accepted fill must yield FillAllocated');
              deliver(state, ctx, { seq: allocated.fill.seq });
              ctx.reply(message.replyTo, {
                type: 'Allocated',
                seq: allocated.fill.seq,
                lines: allocated.lines.length,
              });
              return state;
            }
            case 'Duplicate':
              ctx.reply(message.replyTo, { type: 'Duplicate', reason: decision.reason });
              return state;
            case 'Rejected':
              ctx.reply(message.replyTo, {
                type: 'Rejected',
                reason: decision.reason,
                detail: decision.detail,
              });
              return state;
            default:
              return assertNever(decision, 'decision');
          }
        }
        case 'AllocationSettled': {
          state = redeliverOnce(state, ctx);
          const settled = markSettled(state.d, message.fillSeq, message.accountId);
          state = { ...state, d: settled.state };
          if (own(state.retry, message.accountId)) {
            const { [message.accountId]: _cleared, ...rest } = state.retry;
            state = { ...state, retry: rest };
          }
          // The account made its line durable before replying: the fill is done when all lines are.
          if (settled.fillSettled)
            deps.observer.fillSettled(ctx.id, message.fillSeq, deps.clock.nowMs());
          return state;
        }
        case 'AllocationNotApplied':
          return retryLater(redeliverOnce(state, ctx), message.accountId, ctx);
        case 'Failed': {
          // An account could not take a delivery (crashed, mailbox full, stopped).
          const command = message.command as { type?: string; accountId?: string } | undefined;
          if (command?.type !== 'ApplyAllocation' || typeof command.accountId !== 'string')
            return state;
          return retryLater(redeliverOnce(state, ctx), command.accountId, ctx);
        }
        case 'Redeliver': {
          state = redeliverOnce(state, ctx);
          const retry = own(state.retry, message.accountId);
          if (retry)
            state = {
              ...state,
              retry: { ...state.retry, [message.accountId]: { ...retry, scheduled: false } },
            };
          deliver(state, ctx, { accountId: message.accountId });
          return state;
        }
        case 'Wake':
          state = redeliverOnce(state, ctx);
          ctx.reply(message.replyTo, {
            type: 'Awake',
            pendingLines: unsettledLines(state.d).length,
          });
          return state;
        case 'GetView': {
          if (state.d.status === 'Open') {
            ctx.reply(message.replyTo, { type: 'View', view: toView(state.d, ctx.journalSeq) });
            return state;
          }
          const def = await deps.reference.blockOrder(ctx.id);
          ctx.reply(
            message.replyTo,
            def ? { type: 'View', view: unopenedView(def) } : { type: 'NotFound' },
          );
          return state;
        }
        default:
          return assertNever(message, 'block order message');
      }
    },
  };
}

function statusOf(filled: bigint, target: bigint): BlockOrderView['status'] {
  if (filled === 0n) return BlockOrderStatus.New;
  return filled >= target ? BlockOrderStatus.Filled : BlockOrderStatus.PartiallyFilled;
}

function toView(
  state: Extract<BlockOrderState, { status: 'Open' }>,
  journalSeq: number,
): BlockOrderView {
  const def = state.def;
  const target = totalTarget(def);
  const v = vwap(state.filledNotional, state.filledQuantity);
  return {
    blockOrderId: def.blockOrderId,
    securityId: def.securityId,
    side: def.side,
    tradeDate: def.tradeDate,
    lotSize: def.lotSize.toString(),
    status: statusOf(state.filledQuantity, target),
    targetQuantity: target.toString(),
    filledQuantity: state.filledQuantity.toString(),
    fills: state.fills,
    lastFillSeq: state.lastFillSeq,
    vwapPrice: v === null ? null : formatPrice(v),
    accounts: def.targets.map((t) => ({
      accountId: t.accountId,
      targetQuantity: t.quantity.toString(),
      allocatedQuantity: (own(state.allocated, t.accountId) ?? 0n).toString(),
    })),
    confirmedThroughSeq: state.confirmedThroughSeq,
    unconfirmedLines: unsettledLines(state).length,
    journalSeq,
  };
}

/** Reference data only, before the first fill: the view of a just-opened order. */
function unopenedView(def: BlockOrderDef): BlockOrderView {
  const opened = evolve(initialState(), { type: 'BlockOrderOpened', def, atMs: 0 });
  if (opened.status !== 'Open') throw new InvariantError('BlockOrderOpened must open the order');
  return toView(opened, 0);
}
