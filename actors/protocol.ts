/**
 * Messages between actors and from the outside, and the ports the shells use.
 * Every command carries its reply target; every path replies.
 */
import type { Failed, Ref } from './kernel.ts';
import type { AccountDef, Allocation } from './account/decider.ts';
import type { Amendment } from './block-order/amendments.ts';
import type {
  BlockOrderDef,
  BlockOrderEvent,
  Entry,
  Fill,
  FillRejection,
} from './block-order/decider.ts';
import type { AccountView, BlockOrderActorView } from './views.ts';

export type ViewReply<V> = { type: 'View'; view: V } | { type: 'NotFound' } | Failed;

export type AllocateFillReply =
  | { type: 'Allocated'; seq: number; lines: number }
  | { type: 'Duplicate'; reason: string }
  | {
      type: 'Rejected';
      reason: FillRejection;
      detail: string;
      existing?: Entry;
      /** OUT_OF_ORDER: the seq the order takes next. */
      expectedSeq?: number;
    }
  | Failed;

/** Outcomes an account reports for an allocation it has settled durably (or already had). */
export type SettledOutcome = 'APPLIED' | 'REJECTED' | 'DUPLICATE';

export type AllocationReply =
  | {
      type: 'AllocationSettled';
      blockOrderId: string;
      fillSeq: number;
      accountId: string;
      outcome: SettledOutcome;
    }
  | {
      type: 'AllocationNotApplied';
      blockOrderId: string;
      fillSeq: number;
      accountId: string;
      reason: string;
    }
  | Failed;

export type BlockOrderMessage =
  | { type: 'AllocateFill'; fill: Fill; replyTo: Ref<AllocateFillReply> }
  /** A bust, correction or cancel: answered like a fill. */
  | { type: 'Amend'; amendment: Amendment; replyTo: Ref<AllocateFillReply> }
  | { type: 'Redeliver'; accountId: string; replyTo?: undefined }
  | { type: 'Wake'; replyTo: Ref<{ type: 'Awake'; pendingLines: number } | Failed> }
  | { type: 'GetView'; replyTo: Ref<ViewReply<BlockOrderActorView>> }
  | (AllocationReply & { replyTo?: undefined });

export type AccountMessage =
  | {
      type: 'ApplyAllocation';
      accountId: string;
      allocation: Allocation;
      replyTo: Ref<AllocationReply>;
    }
  | { type: 'GetView'; replyTo: Ref<ViewReply<AccountView>> }
  | {
      type: 'RetrySuspense';
      blockOrderId: string;
      fillSeq: number;
      replyTo: Ref<RetrySuspenseReply>;
    };

/** The answer to a suspense retry (a resolution path; see docs/ARCHITECTURE.md). */
export type RetrySuspenseReply =
  | { type: 'SuspenseApplied'; cashDeltaMinor: bigint }
  | {
      type: 'NotApplied';
      outcome: 'NOT_IN_SUSPENSE' | 'STILL_REFUSED';
      detail: string;
    }
  | { type: 'NotFound' }
  | Failed;

/** The execution index (ledger.ts), read where the small state cannot answer. */
export interface ExecutionLookup {
  /** The entry (fill or amendment) applied as `seq` of `blockOrderId`, if on record. */
  executionAt(blockOrderId: string, seq: number): Promise<Entry | undefined>;
  /**
   * The event that last set the lines under `key` (a fill id; an
   * average-price order's release key), if on record: the fill's allocation
   * or its latest bust or correction; a release or its latest amendment.
   */
  linesSetBy(key: string): Promise<BlockOrderEvent | undefined>;
}

/** Reference data: what rebalancing decided. Read once per actor, then journaled. */
export interface ReferencePort {
  blockOrder(id: string): Promise<BlockOrderDef | undefined>;
  account(id: string): Promise<AccountDef | undefined>;
}

export interface Clock {
  nowMs(): number;
}

/** Observations for simulations and benchmarks; must be cheap and never throw. */
export interface AllocationObserver {
  /** Every line of fill `seq` is durable on its account. */
  fillSettled(blockOrderId: string, seq: number, atMs: number): void;
  /** One allocation line (applied or rejected) is durable on its account. */
  accountLineDurable(): void;
}

export const noopObserver: AllocationObserver = {
  fillSettled: () => {},
  accountLineDurable: () => {},
};

/** Sends to an account actor by id (the block order does not hold account refs). */
export interface AccountDirectory {
  send(accountId: string, message: AccountMessage): void;
}
