/**
 * What the API needs from the running system: the port the composition root
 * (system/inspection.ts) implements. The views themselves are the actors'.
 */
import type { AccountView, BlockOrderView } from '../actors/views.ts';

export interface ReadinessCheck {
  ok: boolean;
  detail?: string;
}

export interface Readiness {
  ready: boolean;
  checks: { database: ReadinessCheck; nats: ReadinessCheck; consumer: ReadinessCheck };
  /** Actors stopped by a supervisor after repeated crashes, by path. */
  stoppedActors: string[];
}

/** Prometheus metrics: the text of a scrape, and each request's duration to record. */
export interface MetricsPort {
  readonly contentType: string;
  render(): Promise<string>;
  /** `route`: the route's pattern (never the raw URL: the label set stays bounded). */
  observeRequest(method: string, route: string, status: number, seconds: number): void;
}

/** Events one page holds, at most, and by default. */
export const EVENTS_PAGE_MAX = 500;
export const EVENTS_PAGE_DEFAULT = 100;

/** One journaled event of an account, decoded; amounts as decimal strings. */
export interface JournalEventView {
  seq: number;
  type: string;
  /** When it was journaled (ISO). */
  at: string;
  event: Record<string, unknown>;
}

export interface AccountEventsPage {
  accountId: string;
  events: JournalEventView[];
  /** The `after` of the next page; null when this page is the last. */
  nextAfter: number | null;
}

/** What the API needs from the running system. */
export interface InspectionPort {
  /** undefined when no such account exists (404). */
  account(id: string): Promise<AccountView | undefined>;
  /** undefined when no such block order exists (404). */
  blockOrder(id: string): Promise<BlockOrderView | undefined>;
  readiness(): Promise<Readiness>;
  /** What the fill consumer did since this process started (in memory, never fails). */
  consumerStats(): ConsumerStatsView;
  /**
   * Resolution of a refused line: apply it to its account now. undefined when
   * no such account exists (404); throws SuspenseNotAppliedError when the line
   * is not in suspense there (404) or the account still cannot take it (409).
   */
  retrySuspense(
    accountId: string,
    blockOrderId: string,
    fillSeq: number,
  ): Promise<SuspenseRetryResult | undefined>;
  /**
   * The account's journal after seq `after`, oldest first, at most `limit`
   * events (1..EVENTS_PAGE_MAX). undefined when no such account exists (404).
   */
  accountEvents(id: string, after: number, limit: number): Promise<AccountEventsPage | undefined>;
}

/**
 * The fill consumer's counters since start: how many messages it acked as
 * allocated, acked as exact duplicates, dead-lettered (conflicts among them)
 * and nak'ed, and how many fills it holds now ahead of their predecessor.
 */
export interface ConsumerStatsView {
  acked: number;
  duplicates: number;
  deadLettered: number;
  /** Of deadLettered: CONFLICTING_EXECUTION, a collision with an applied execution. */
  conflicts: number;
  nakked: number;
  heldFills: number;
}

/** Bounds of a fault plan: the schema and the injector both hold to them. */
export const FAULT_COUNT_MAX = 10_000;
export const FAULT_DELAY_MAX_MS = 60_000;

/** Fault injection (tests and drills only): refuses every request unless enabled. */
export interface FaultPort {
  readonly enabled: boolean;
  readonly plan: FaultPlanView;
  readonly fired: number;
  inject(request: FaultRequestBody): FaultPlanView;
  clear(): void;
}

export interface FaultRequestBody {
  actorThrows?: { kind: string; id?: string; count: number; transient?: boolean };
  journalFailures?: number;
  journalDelayMs?: number;
}

export interface FaultPlanView {
  actorThrows: Array<{ kind: string; id?: string; remaining: number; transient: boolean }>;
  journalFailures: number;
  journalDelayMs: number;
}

export interface SuspenseRetryResult {
  outcome: 'APPLIED';
  accountId: string;
  blockOrderId: string;
  fillSeq: number;
  cashDeltaMinor: string;
}

/** Why a suspense retry applied nothing: NOT_IN_SUSPENSE (404) or STILL_REFUSED (409). */
export class SuspenseNotAppliedError extends Error {
  readonly outcome: 'NOT_IN_SUSPENSE' | 'STILL_REFUSED';
  constructor(outcome: 'NOT_IN_SUSPENSE' | 'STILL_REFUSED', message: string) {
    super(message);
    this.name = 'SuspenseNotAppliedError';
    this.outcome = outcome;
  }
}
