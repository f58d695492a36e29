/**
 * The checker's view of average-price orders, recomputed from the journaled
 * entries (each checked equal to the published one) and never from the
 * release figures the actors wrote:
 * - a release takes every fill accumulated since the last one, each in
 *   exactly one release;
 * - every line of a release is at one price, the VWAP of its fills' current
 *   versions, rounded half-even;
 * - the residue is street cash less the accounts' cash, within its bound;
 * - a bust or correction of a released fill amends that release's current
 *   lines, and the release is re-priced from its fills' new versions;
 * - a release comes exactly when the order's terms (reference data) say:
 *   every N live accumulated fills, T ms of market time after the window
 *   opened, when a fill or a correction of an accumulated fill brings the
 *   order to its target, and on a cancel (of whatever is accumulated).
 * At the end, per order: Σ street cash of the released live fills = Σ the
 * accounts' cash of the releases' current lines + Σ residue, to the cent;
 * a cancelled order accumulates nothing. An open one may (a run that stops
 * mid-day): that accumulation is on no account yet.
 */
import type { AverageRelease, ReleaseChange } from '../actors/block-order/average.ts';
import type { BlockOrderEvent } from '../actors/block-order/decider.ts';
import { residueBoundMinor } from '../actors/domain/average-price.ts';
import { notionalMinor, vwap } from '../actors/domain/money.ts';
import type { Check } from './invariants.ts';

/** One account line a release sets: what the checker expects the account to have applied. */
export interface ReleaseLine {
  seq: number;
  accountId: string;
  quantity: bigint;
  price: bigint;
  amends?: { seq: number; quantity: bigint; price: bigint };
}

interface ReleaseModel {
  fillIds: string[];
  seq: number;
  price: bigint;
  residueMinor: bigint;
  lines: Map<string, bigint>;
}

/** An order's release triggers and target, from the reference data (not from the actor). */
export interface AverageTerms {
  everyFills: number | null;
  everyMarketMs: number | null;
  target: bigint;
}

interface OrderAverages {
  terms: AverageTerms;
  fills: Map<string, { quantity: bigint; price: bigint; releaseKey: string | null }>;
  accumulated: string[];
  releases: Map<string, ReleaseModel>;
  /** Σ the live fills' quantities. */
  filled: bigint;
  /** When the current accumulation's window opened (its first fill); null while empty. */
  windowAtMs: number | null;
  cancelled: boolean;
}

type AverageEvent = Extract<
  BlockOrderEvent,
  { type: 'FillAccumulated' | 'AveragedFillAmended' | 'OrderCancelled' }
>;

export class AverageBooks {
  readonly #orders = new Map<string, OrderAverages>();
  readonly #check: Check;
  releases = 0;
  /** Busts and corrections of released fills: each amends its release. */
  releaseAmendments = 0;

  constructor(check: Check) {
    this.#check = check;
  }

  /** An average-price order of the reference data: its events are checked against `terms`. */
  define(id: string, terms: AverageTerms): void {
    const order = { terms, fills: new Map(), accumulated: [], releases: new Map() };
    this.#orders.set(id, { ...order, filled: 0n, windowAtMs: null, cancelled: false });
  }

  has(orderId: string): boolean {
    return this.#orders.has(orderId);
  }

  /** The lines the event sets on accounts (to expect on their journals). */
  event(id: string, e: AverageEvent): ReleaseLine[] {
    const order = this.#orders.get(id);
    this.#check(
      order !== undefined,
      () => `${id}: ${e.type} on an order that is not average-price`,
    );
    if (!order) return [];
    switch (e.type) {
      case 'FillAccumulated':
        return this.#accumulated(id, order, e);
      case 'OrderCancelled': {
        order.cancelled = true;
        const held = order.accumulated.length > 0;
        this.#check(
          (e.release != null) === held,
          () =>
            `${id}: the cancel ${e.release ? 'released' : 'kept'} ${order.accumulated.length} accumulated fills`,
        );
        return e.release ? this.#release(id, order, e.amendment.seq, e.release) : [];
      }
      case 'AveragedFillAmended':
        return this.#amended(id, order, e);
      default: {
        const never: never = e;
        throw new Error(`not an average-price event: ${JSON.stringify(never)}`);
      }
    }
  }

  /** A fill taken: released exactly when the order's terms say (every N, market time, completion). */
  #accumulated(
    id: string,
    order: OrderAverages,
    e: Extract<AverageEvent, { type: 'FillAccumulated' }>,
  ): ReleaseLine[] {
    const { fill } = e;
    order.fills.set(fill.fillId, { ...fill, releaseKey: null });
    if (order.accumulated.length === 0) order.windowAtMs = fill.executedAtMs;
    order.accumulated.push(fill.fillId);
    order.filled += fill.quantity;
    const { everyFills, everyMarketMs, target } = order.terms;
    const due =
      order.filled === target ||
      (everyFills !== null && order.accumulated.length >= everyFills) ||
      (everyMarketMs !== null && fill.executedAtMs - order.windowAtMs! >= everyMarketMs);
    this.#check(
      (e.release !== null) === due,
      () =>
        `${id} seq ${fill.seq}: ${e.release ? 'released' : 'kept'} ${order.accumulated.length} fills; the terms say ${due ? 'release' : 'keep'}`,
    );
    return e.release ? this.#release(id, order, fill.seq, e.release) : [];
  }

  #release(id: string, order: OrderAverages, seq: number, r: AverageRelease): ReleaseLine[] {
    this.releases++;
    order.windowAtMs = null;
    const where = `${id} release ${r.key} at seq ${seq}`;
    this.#check(
      r.fillIds.join() === order.accumulated.join(),
      () =>
        `${where}: releases ${r.fillIds.length} fills, ${order.accumulated.length} were accumulated`,
    );
    for (const fillId of order.accumulated) order.fills.get(fillId)!.releaseKey = r.key;
    const model: ReleaseModel = {
      fillIds: order.accumulated,
      seq,
      price: 0n,
      residueMinor: 0n,
      lines: new Map(r.lines.map((l) => [l.accountId, l.quantity])),
    };
    order.accumulated = [];
    order.releases.set(r.key, model);
    this.#price(where, order, model, r.figures);
    return r.lines.map((l) => ({
      seq,
      accountId: l.accountId,
      quantity: l.quantity,
      price: model.price,
    }));
  }

  /** Re-prices a release from its fills' current versions and checks the actors' figures. */
  #price(
    where: string,
    order: OrderAverages,
    model: ReleaseModel,
    figures: { averagePrice: bigint; residueMinor: bigint },
  ): void {
    let quantity = 0n;
    let notional = 0n;
    let streetMinor = 0n;
    let live = 0;
    for (const fillId of model.fillIds) {
      const f = order.fills.get(fillId)!;
      if (f.quantity === 0n) continue;
      live++;
      quantity += f.quantity;
      notional += f.quantity * f.price;
      streetMinor += notionalMinor(f.quantity, f.price);
    }
    const held = [...model.lines.values()].reduce((s, q) => s + q, 0n);
    this.#check(held === quantity, () => `${where}: lines hold ${held}, its fills ${quantity}`);
    const price = vwap(notional, quantity) ?? model.price;
    let accountsMinor = 0n;
    for (const q of model.lines.values()) accountsMinor += notionalMinor(q, price);
    const residueMinor = streetMinor - accountsMinor;
    this.#check(
      figures.averagePrice === price && figures.residueMinor === residueMinor,
      () =>
        `${where}: priced ${figures.averagePrice} residue ${figures.residueMinor}, the fills say ${price} and ${residueMinor}`,
    );
    const bound = residueBoundMinor(live, model.lines.size, quantity);
    this.#check(
      residueMinor <= bound && -residueMinor <= bound,
      () => `${where}: residue ${residueMinor} beyond its bound ${bound}`,
    );
    model.price = price;
    model.residueMinor = residueMinor;
  }

  #amended(
    id: string,
    order: OrderAverages,
    e: Extract<BlockOrderEvent, { type: 'AveragedFillAmended' }>,
  ): ReleaseLine[] {
    const a = e.amendment;
    const f = order.fills.get(a.fillId);
    const where = `${id} seq ${a.seq}`;
    this.#check(f !== undefined, () => `${where}: amends fill ${a.fillId}, never taken`);
    if (!f) return [];
    const after = a.kind === 'CORRECTION' ? a : { quantity: 0n, price: f.price };
    const releaseKey = f.releaseKey;
    order.filled += after.quantity - f.quantity;
    f.quantity = after.quantity;
    f.price = after.price;
    if (after.quantity === 0n) order.accumulated = order.accumulated.filter((x) => x !== a.fillId);
    if (order.accumulated.length === 0) order.windowAtMs = null;
    this.#check(
      (e.change?.key ?? null) === releaseKey,
      () =>
        `${where}: fill ${a.fillId} is in release ${releaseKey}, the event amends ${e.change?.key}`,
    );
    // Completion by a correction of an accumulated fill releases (never a release's amendment).
    const completes =
      releaseKey === null && a.kind === 'CORRECTION' && order.filled === order.terms.target;
    this.#check(
      (e.release !== undefined) === completes,
      () =>
        `${where}: ${e.release ? 'released' : 'kept'} the accumulation; the order is ${completes ? 'complete' : 'not completed by it'}`,
    );
    if (e.release) return this.#release(id, order, a.seq, e.release);
    if (!e.change || releaseKey === null) return [];
    return this.#changed(where, order, order.releases.get(releaseKey)!, e.change, a.seq);
  }

  #changed(
    where: string,
    order: OrderAverages,
    model: ReleaseModel,
    change: ReleaseChange,
    seq: number,
  ): ReleaseLine[] {
    this.#check(
      change.amendsSeq === model.seq,
      () =>
        `${where}: amends release ${change.key} as of seq ${change.amendsSeq}, its lines are of seq ${model.seq}`,
    );
    this.releaseAmendments++;
    const was = { seq: model.seq, price: model.price, lines: model.lines };
    const out: ReleaseLine[] = [];
    const next = new Map<string, bigint>();
    for (const l of change.lines) {
      const had = was.lines.get(l.accountId) ?? 0n;
      this.#check(
        l.previousQuantity === had,
        () =>
          `${where}: ${l.accountId} had ${had} of release ${change.key}, the event says ${l.previousQuantity}`,
      );
      if (l.quantity > 0n) next.set(l.accountId, l.quantity);
      out.push({
        seq,
        accountId: l.accountId,
        quantity: l.quantity,
        price: 0n, // set once priced, below
        amends: { seq: was.seq, quantity: l.previousQuantity, price: was.price },
      });
    }
    const named = new Set(change.lines.map((l) => l.accountId));
    const untouched = [...was.lines.keys()].filter((x) => !named.has(x));
    this.#check(
      untouched.length === 0,
      () => `${where}: leaves ${untouched.join(', ')} out of the amendment`,
    );
    model.seq = seq;
    model.lines = next;
    this.#price(`${where} release ${change.key}`, order, model, change.after);
    for (const line of out) line.price = model.price;
    return out;
  }

  /**
   * What the order still accumulates (its live fills not yet released): on
   * no account until a release, so conservation and fairness leave it out.
   */
  accumulatedOf(id: string): { quantity: bigint; notional: bigint } {
    let quantity = 0n;
    let notional = 0n;
    const order = this.#orders.get(id);
    for (const fillId of order?.accumulated ?? []) {
      const f = order!.fills.get(fillId)!;
      quantity += f.quantity;
      notional += f.quantity * f.price;
    }
    return { quantity, notional };
  }

  /**
   * Per order: street cash of its released fills = accounts' cash of its
   * releases + residue; a cancelled order released everything.
   */
  checkCash(id: string): void {
    const order = this.#orders.get(id);
    if (!order) return;
    let streetMinor = 0n;
    for (const f of order.fills.values())
      if (f.quantity > 0n && f.releaseKey !== null)
        streetMinor += notionalMinor(f.quantity, f.price);
    let booked = 0n;
    for (const r of order.releases.values()) {
      booked += r.residueMinor;
      for (const q of r.lines.values()) booked += notionalMinor(q, r.price);
    }
    this.#check(
      streetMinor === booked,
      () => `${id}: street cash ${streetMinor} ≠ accounts' cash + residue ${booked}`,
    );
    this.#check(
      !order.cancelled || order.accumulated.length === 0,
      () => `${id}: cancelled, yet ${order.accumulated.length} fills are still accumulated`,
    );
  }

  residueOf(id: string): bigint {
    let sum = 0n;
    for (const r of this.#orders.get(id)?.releases.values() ?? []) sum += r.residueMinor;
    return sum;
  }
}
