/**
 * The account actor shell: persists the decider's event, then replies to the
 * block order that delivered the allocation. No business rule lives here.
 */
import type { PersistentBehavior, ShellContext } from '../kernel.ts';
import { InvariantError, assertNever } from '../errors.ts';
import type { AccountMessage, AllocationObserver, Clock, ReferencePort } from '../protocol.ts';
import {
  SuspenseResolution,
  type LedgerRows,
  type ResolutionRow,
  type SuspenseRow,
} from '../ledger.ts';
import { formatPrice } from '../domain/money.ts';
import { SUSPENSE_VIEW_MAX, type AccountView } from '../views.ts';
import {
  ApplyOutcome,
  decide,
  evolve,
  initialState,
  lineEvents,
  packForJournal,
  type AccountDef,
  type AccountEvent,
  type AccountState,
  type Allocation,
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
  'SuspenseApplied',
  'AllocationAmended',
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
    ledgerRows: (event, id) => accountLedgerRows(id, event),
    decodeEvent(data) {
      const type = (data as { type?: unknown }).type;
      if (typeof type !== 'string' || !EVENT_TYPES.has(type))
        throw new InvariantError(`unknown account event ${String(type)}`);
      return data as AccountEvent;
    },
    // 3: the state counts negative-position flags (2: the lines in suspense).
    snapshotFormat: 3,
    encodeSnapshot: (state) => state,
    decodeSnapshot: (data) => data as AccountState,
    async receive(state, message, ctx) {
      switch (message.type) {
        case 'ApplyAllocation':
          return applyAllocation(deps, state, message, ctx);
        case 'GetView':
          return view(deps, state, message, ctx);
        case 'RetrySuspense':
          return retrySuspense(deps, state, message, ctx);
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
    case ApplyOutcome.NotInSuspense:
    case ApplyOutcome.StillRefused:
      throw new InvariantError(`Apply cannot yield ${decision.outcome}`);
    default:
      return assertNever(decision.outcome, 'apply outcome');
  }
}

/** The suspense ledger's rows for an account event: refused lines in, resolutions out. */
function accountLedgerRows(accountId: string, event: AccountEvent): LedgerRows | undefined {
  if (event.type === 'SuspenseApplied') {
    const { blockOrderId, fillSeq } = event.allocation;
    return {
      resolutions: [{ blockOrderId, fillSeq, accountId, resolution: SuspenseResolution.Applied }],
    };
  }
  const suspense: SuspenseRow[] = [];
  const resolutions: ResolutionRow[] = [];
  for (const e of lineEvents(event)) {
    if (e.type === 'AllocationRejected') suspense.push(suspenseRow(accountId, e.allocation, e));
    if (e.type !== 'AllocationAmended' || !e.suspended) continue;
    // An amended suspended line: the old one is resolved, the amended one (if any) is in suspense.
    const a = e.allocation;
    const amendsSeq = a.amends?.seq ?? 0;
    resolutions.push({
      blockOrderId: a.blockOrderId,
      fillSeq: amendsSeq,
      accountId,
      resolution: SuspenseResolution.Amended,
    });
    if (a.quantity > 0n) suspense.push(suspenseRow(accountId, a, AMENDED_IN_SUSPENSE));
  }
  if (suspense.length === 0 && resolutions.length === 0) return undefined;
  return {
    ...(suspense.length > 0 ? { suspense } : {}),
    ...(resolutions.length > 0 ? { resolutions } : {}),
  };
}

const AMENDED_IN_SUSPENSE = {
  reason: 'AMENDED_IN_SUSPENSE',
  detail: 'the market amended a line this account had refused; the amended line stays in suspense',
};

function suspenseRow(
  accountId: string,
  a: Allocation,
  why: { reason: string; detail: string },
): SuspenseRow {
  return {
    blockOrderId: a.blockOrderId,
    fillSeq: a.fillSeq,
    accountId,
    securityId: a.securityId,
    side: a.side,
    quantity: a.quantity,
    price: a.price,
    reason: why.reason,
    detail: why.detail,
  };
}

async function retrySuspense(
  deps: AccountDeps,
  state: AccountState,
  message: Message<'RetrySuspense'>,
  ctx: Ctx,
): Promise<AccountState> {
  if (state.status === 'Empty') {
    const def = await deps.reference.account(ctx.id);
    // Never opened: nothing was ever refused here.
    ctx.reply(
      message.replyTo,
      def
        ? { type: 'NotApplied', outcome: 'NOT_IN_SUSPENSE', detail: 'no line in suspense' }
        : { type: 'NotFound' },
    );
    return state;
  }
  const { blockOrderId, fillSeq } = message;
  const command = {
    type: 'RetrySuspense' as const,
    blockOrderId,
    fillSeq,
    nowMs: deps.clock.nowMs(),
  };
  const decision = decide(command, state);
  const next = stage(deps, state, decision.events, ctx);
  const applied = decision.events[0];
  if (decision.outcome === ApplyOutcome.Applied && applied?.type === 'SuspenseApplied') {
    ctx.reply(message.replyTo, { type: 'SuspenseApplied', cashDeltaMinor: applied.cashDeltaMinor });
    return next;
  }
  const outcome = decision.outcome;
  if (outcome !== ApplyOutcome.NotInSuspense && outcome !== ApplyOutcome.StillRefused)
    throw new InvariantError(`RetrySuspense cannot yield ${outcome}`);
  const detail = decision.detail ?? `${blockOrderId} seq ${fillSeq} is not in suspense here`;
  ctx.reply(message.replyTo, { type: 'NotApplied', outcome, detail });
  return next;
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
    negativePositionFlags: state.negativePositionFlags,
    suspense: Object.values(state.suspense)
      .slice(0, SUSPENSE_VIEW_MAX)
      .map((e) => ({
        blockOrderId: e.allocation.blockOrderId,
        fillSeq: e.allocation.fillSeq,
        accountId: state.accountId,
        securityId: e.allocation.securityId,
        side: e.allocation.side,
        quantity: e.allocation.quantity.toString(),
        price: formatPrice(e.allocation.price),
        reason: e.reason,
        detail: e.detail,
        resolution: null,
      })),
    suspenseOpen: Object.keys(state.suspense).length,
    journalSeq,
  };
}

/** Reference data only, before the first allocation. */
function unopenedView(def: AccountDef): AccountView {
  const opened = evolve(initialState(), { type: 'AccountOpened', def, atMs: 0 });
  if (opened.status !== 'Open') throw new InvariantError('AccountOpened must open the account');
  return { ...toView(opened, 0), opened: false };
}
