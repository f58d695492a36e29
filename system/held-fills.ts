/**
 * Fills that arrived ahead of their order's next seq, held in memory until
 * the missing one is allocated, instead of being nak'ed with growing delays.
 * After a crash the fill that was in flight comes back only when its ack
 * wait expires, and every later fill of that order would otherwise bounce
 * between the consumer and the server meanwhile (a nak storm).
 *
 * Bounded: at most `heldMax` fills in all; beyond it the caller naks as before.
 * Pure bookkeeping (no timers, no NATS): the consumer drives it.
 */
import { invariant } from '../actors/errors.ts';

export interface Held<T> {
  seq: number;
  item: T;
  sinceMs: number;
}

export class HeldFills<T> {
  readonly #heldMax: number;
  readonly #byOrder = new Map<string, Map<number, Held<T>>>();
  #size = 0;

  constructor(heldMax: number) {
    invariant(Number.isSafeInteger(heldMax) && heldMax >= 0, `heldMax ${heldMax}`);
    this.#heldMax = heldMax;
  }

  get size(): number {
    return this.#size;
  }

  /** Holds `item` (seq `seq` of `orderId`); false if full or that seq is already held. */
  hold(orderId: string, seq: number, item: T, nowMs: number): boolean {
    if (this.#size >= this.#heldMax) return false;
    const order = this.#byOrder.get(orderId) ?? new Map<number, Held<T>>();
    if (order.has(seq)) return false;
    order.set(seq, { seq, item, sinceMs: nowMs });
    this.#byOrder.set(orderId, order);
    this.#size++;
    invariant(this.#size <= this.#heldMax, `held fills ${this.#size} beyond ${this.#heldMax}`);
    return true;
  }

  /** Takes the fill held as `seq` of `orderId`, if any (it is the order's next). */
  take(orderId: string, seq: number): T | undefined {
    const order = this.#byOrder.get(orderId);
    const held = order?.get(seq);
    if (!order || !held) return undefined;
    order.delete(seq);
    if (order.size === 0) this.#byOrder.delete(orderId);
    this.#size--;
    invariant(this.#size >= 0, 'held fills went negative');
    return held.item;
  }

  /**
   * Per order, the lowest held fill once it waited `afterMs`: a retry in
   * case its predecessor's allocation was missed (the others would only be
   * out of order again). Taken out; the caller dispatches it.
   */
  takeStale(nowMs: number, afterMs: number): T[] {
    const out: T[] = [];
    for (const [orderId, order] of this.#byOrder) {
      let lowest: Held<T> | undefined;
      for (const held of order.values()) if (!lowest || held.seq < lowest.seq) lowest = held;
      if (lowest && nowMs - lowest.sinceMs >= afterMs) {
        const item = this.take(orderId, lowest.seq);
        if (item !== undefined) out.push(item);
      }
    }
    return out;
  }

  /** Every held item (for in-progress acks). */
  *items(): Generator<T> {
    for (const order of this.#byOrder.values()) for (const held of order.values()) yield held.item;
  }

  /** Takes everything (shutdown: the caller naks them, so the next process gets them at once). */
  takeAll(): T[] {
    const all = [...this.items()];
    invariant(all.length === this.#size, `held ${all.length} fills, counted ${this.#size}`);
    this.#byOrder.clear();
    this.#size = 0;
    return all;
  }
}
