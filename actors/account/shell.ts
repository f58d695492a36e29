/**
 * The account actor shell: persists the decider's event, then replies to the
 * block order that delivered the allocation. No business rule lives here.
 */
import type { PersistentBehavior, ShellContext } from '../kernel.ts';
import { InvariantError, assertNever } from '../errors.ts';
import type { AccountMessage, AllocationObserver, Clock, ReferencePort } from '../protocol.ts';
import type { AccountView } from '../views.ts';
import {
  ApplyOutcome,
  decide,
  evolve,
  initialState,
  packForJournal,
  type AccountDef,
  type AccountEvent,
  type AccountState,
} from './decider.ts';

export const ACCOUNT_KIND = 'account';

export interface AccountDeps {
  reference: ReferencePort;
  clock: Clock;
  observer: AllocationObserver;
}

const EVENT_TYPES: ReadonlySet<string> = new Set([
  'AccountOpened',
  'AllocationApplied',
  'AllocationRejected',
  'AllocationBatch',
]);

type Ctx = ShellContext<AccountMessage, AccountEvent>;

type Message<T extends AccountMessage['type']> = Extract<AccountMessage, { type: T }>;

export function accountBehavior(
  deps: AccountDeps,
): PersistentBehavior<AccountState, AccountMessage, AccountEvent> {
  return {
    kind: ACCOUNT_KIND,
    initialState,
    evolve,
    eventType: (event) => event.type,
    pack: packForJournal,
    decodeEvent(data) {
      const type = (data as { type?: unknown }).type;
      if (typeof type !== 'string' || !EVENT_TYPES.has(type))
        throw new InvariantError(`unknown account event ${String(type)}`);
      return data as AccountEvent;
    },
    encodeSnapshot: (state) => state,
    decodeSnapshot: (data) => data as AccountState,
    async receive(state, message, ctx) {
      switch (message.type) {
        case 'ApplyAllocation':
          return applyAllocation(deps, state, message, ctx);
        case 'GetView':
          return view(deps, state, message, ctx);
        default:
          return assertNever(message, 'account message');
      }
    },
  };
}

function stage(deps: AccountDeps, state: AccountState, events: AccountEvent[], ctx: Ctx) {
  let next = state;
  for (const event of events) {
    ctx.persist(event);
    if (event.type !== 'AccountOpened') ctx.effect(() => deps.observer.accountLineDurable());
    next = evolve(next, event);
  }
  return next;
}

async function applyAllocation(
  deps: AccountDeps,
  initial: AccountState,
  message: Message<'ApplyAllocation'>,
  ctx: Ctx,
): Promise<AccountState> {
  const a = message.allocation;
  const reply = { blockOrderId: a.blockOrderId, fillSeq: a.fillSeq, accountId: ctx.id };
  let state = initial;
  if (state.status === 'Empty') {
    const def = await deps.reference.account(ctx.id);
    if (!def) {
      const reason = `no account ${ctx.id}`;
      ctx.reply(message.replyTo, { type: 'AllocationNotApplied', ...reply, reason });
      return state;
    }
    const opened = decide({ type: 'Open', def, nowMs: deps.clock.nowMs() }, state);
    state = stage(deps, state, opened.events, ctx);
  }
  const decision = decide({ type: 'Apply', allocation: a, nowMs: deps.clock.nowMs() }, state);
  state = stage(deps, state, decision.events, ctx);
  switch (decision.outcome) {
    case ApplyOutcome.Applied:
    case ApplyOutcome.Rejected:
    case ApplyOutcome.Duplicate:
      ctx.reply(message.replyTo, {
        type: 'AllocationSettled',
        ...reply,
        outcome: decision.outcome,
      });
      return state;
    case ApplyOutcome.Gap:
    case ApplyOutcome.NotOpen:
      ctx.reply(message.replyTo, {
        type: 'AllocationNotApplied',
        ...reply,
        reason: decision.outcome,
      });
      return state;
    case ApplyOutcome.Opened:
    case ApplyOutcome.AlreadyOpen:
      throw new InvariantError(`Apply cannot yield ${decision.outcome}`);
    default:
      return assertNever(decision.outcome, 'apply outcome');
  }
}

async function view(
  deps: AccountDeps,
  state: AccountState,
  message: Message<'GetView'>,
  ctx: Ctx,
): Promise<AccountState> {
  if (state.status === 'Open') {
    ctx.reply(message.replyTo, { type: 'View', view: toView(state, ctx.journalSeq) });
    return state;
  }
  const def = await deps.reference.account(ctx.id);
  ctx.reply(
    message.replyTo,
    def ? { type: 'View', view: unopenedView(def) } : { type: 'NotFound' },
  );
  return state;
}

const strings = (record: Record<string, bigint>): Record<string, string> =>
  Object.fromEntries(Object.entries(record).map(([k, v]) => [k, v.toString()]));

function toView(state: Extract<AccountState, { status: 'Open' }>, journalSeq: number): AccountView {
  return {
    accountId: state.accountId,
    opened: true,
    cashMinor: state.cashMinor.toString(),
    positions: strings(state.positions),
    lastAppliedSeqByOrder: { ...state.lastSeqByOrder },
    rejectedAllocations: state.rejected,
    journalSeq,
  };
}

/** Reference data only, before the first allocation. */
function unopenedView(def: AccountDef): AccountView {
  const opened = evolve(initialState(), { type: 'AccountOpened', def, atMs: 0 });
  if (opened.status !== 'Open') throw new InvariantError('AccountOpened must open the account');
  return { ...toView(opened, 0), opened: false };
}
