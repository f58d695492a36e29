/**
 * A block order's delivery bookkeeping: which account has settled (applied
 * or durably rejected) which line of the fills after the watermark, and the
 * re-delivery state per account. Owned by the shell, never journaled: on
 * recovery it is rebuilt from the fold as "nothing settled after the
 * watermark", and those lines are delivered again (accounts are idempotent).
 *
 * Mutable on purpose: it is the shell's private working memory, and a reset
 * rebuilds it, so a failed batch cannot leave it out of step with the journal.
 * Bounded: it tracks at most `fillsMax` fills; the shell refuses new fills
 * beyond that until accounts catch up.
 */
import { invariant } from '../errors.ts';
import type { PendingFill } from './decider.ts';

export interface RetryState {
  /** Consecutive re-deliveries without a settlement: drives backoff and the bound. */
  attempts: number;
  /** A Redeliver is pending: further refusals of the same delivery wave count once. */
  scheduled: boolean;
  /** The bound was reached: re-delivery goes on at the slowest backoff. */
  parked: boolean;
}

export interface OpenLine {
  seq: number;
  accountId: string;
}

export class Outbox {
  readonly fillsMax: number;
  /** Per fill after the watermark, oldest first: the accounts whose line is not settled yet. */
  readonly #open = new Map<number, Set<string>>();
  readonly #retry = new Map<string, RetryState>();
  #confirmedThroughSeq: number;
  #lastSeq: number;
  /** After a (re)start, open lines are re-delivered once, on the first live message. */
  redelivered = false;

  constructor(fillsMax: number, confirmedThroughSeq = 0) {
    invariant(fillsMax >= 1, 'an outbox holds at least one fill');
    this.fillsMax = fillsMax;
    this.#confirmedThroughSeq = confirmedThroughSeq;
    this.#lastSeq = confirmedThroughSeq;
  }

  /** Every line of the unconfirmed fills is open: the state after a recovery. */
  static fromPending(
    fillsMax: number,
    confirmedThroughSeq: number,
    pending: readonly PendingFill[],
  ) {
    const outbox = new Outbox(Math.max(fillsMax, pending.length), confirmedThroughSeq);
    for (const fill of pending) outbox.add(fill);
    return outbox;
  }

  get fills(): number {
    return this.#open.size;
  }

  get full(): boolean {
    return this.#open.size >= this.fillsMax;
  }

  add(fill: PendingFill): void {
    invariant(fill.seq > this.#lastSeq, `outbox: fill ${fill.seq} after ${this.#lastSeq}`);
    invariant(this.#open.size < this.fillsMax, `outbox holds ${this.fillsMax} fills (its bound)`);
    this.#lastSeq = fill.seq;
    this.#open.set(fill.seq, new Set(fill.lines.map((l) => l.accountId)));
  }

  /** Records a settlement; true when it was the fill's last open line. Unknown lines are ignored (a late reply). */
  settle(seq: number, accountId: string): boolean {
    const open = this.#open.get(seq);
    if (!open?.delete(accountId)) return false;
    return open.size === 0;
  }

  isOpen(seq: number, accountId: string): boolean {
    return this.#open.get(seq)?.has(accountId) ?? false;
  }

  /** The highest fill seq such that it and every fill before it are settled by all their accounts. */
  settledThrough(): number {
    let through = this.#confirmedThroughSeq;
    for (const [seq, open] of this.#open) {
      if (open.size > 0) break;
      through = seq;
    }
    return through;
  }

  /** The watermark is durable: forget the fills up to it. */
  confirmed(throughSeq: number): void {
    invariant(throughSeq >= this.#confirmedThroughSeq, 'the watermark only moves forward');
    for (const [seq, open] of this.#open) {
      if (seq > throughSeq) break;
      invariant(open.size === 0, `fill ${seq} confirmed with ${open.size} open lines`);
      this.#open.delete(seq);
    }
    this.#confirmedThroughSeq = throughSeq;
  }

  /** Open lines, oldest first, optionally of one fill or one account. */
  openLines(only: { seq?: number; accountId?: string } = {}): OpenLine[] {
    const out: OpenLine[] = [];
    for (const [seq, open] of this.#open) {
      if (only.seq !== undefined && seq !== only.seq) continue;
      for (const accountId of open) {
        if (only.accountId === undefined || accountId === only.accountId)
          out.push({ seq, accountId });
      }
    }
    return out;
  }

  retryOf(accountId: string): RetryState | undefined {
    return this.#retry.get(accountId);
  }

  setRetry(accountId: string, retry: RetryState | undefined): void {
    if (retry) this.#retry.set(accountId, retry);
    else this.#retry.delete(accountId);
  }
}
