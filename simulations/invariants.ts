/**
 * Exact checks of the books after a run, from the journal (decoded
 * independently of the actors) and from the live actors through the API.
 *
 * The expected books come from what was PUBLISHED (fills, busts,
 * corrections and cancels, per order in seq order) and from the journals,
 * never from the actors' own counters:
 * - conservation per order (filled = applied on accounts + suspense) and per
 *   account (cash and positions = opening + Σ its journaled lines);
 * - no double application (each line key once), no line without its order's
 *   event, no event without its lines on the accounts;
 * - every bust, correction and cancel reflected (in the journal, the
 *   execution index and the API's figures);
 * - no negative position except one flagged by the written rule;
 * - the rebalancing limits: no sell target beyond the opening position, and
 *   (given the day's prices) no buy beyond the opening cash.
 * A failed check names the order and the accounts.
 */
import type { FastifyInstance } from 'fastify';
import { lineEvents, type AccountEvent, type Allocation } from '../actors/account/decider.ts';
import { sameAmendment } from '../actors/block-order/amendments.ts';
import {
  entryOf,
  entryIdOf,
  isAmendment,
  type BlockOrderEvent,
  type Entry,
} from '../actors/block-order/decider.ts';
import { cashDelta, notionalMinor } from '../actors/domain/money.ts';
import type { AccountView, BlockOrderView } from '../actors/views.ts';
import { decodeVersioned } from '../persistence/codec.ts';
import type { Database } from '../persistence/db.ts';
import { likePrefix } from '../persistence/journal.ts';
import type { SeedData } from '../persistence/reference.ts';
import { AverageBooks } from './average-checks.ts';
import { orderFairness, summarizeFairness, type FairnessFigures } from './fairness.ts';
import { liveFillsOf } from './scenario.ts';
import { checkExecutionIndex, checkSuspenseLedger, type JournaledEntry } from './ledger-checks.ts';

export interface InvariantReport {
  ok: boolean;
  checks: number;
  violations: string[];
  fills: number;
  busts: number;
  corrections: number;
  cancels: number;
  allocationLines: number;
  /** Account journal rows that carry lines (a batch row carries several). */
  accountEvents: number;
  /** Lines applied or rejected on accounts, counted from the journal. */
  allocationLinesApplied: number;
  rejectedAllocations: number;
  /** Negative positions left by amendments, each flagged by the written rule. */
  negativePositionsFlagged: number;
  /** Refused lines still in suspense at the end (shares that sit on no account). */
  suspenseOpenLines: number;
  suspenseOpenQuantity: bigint;
  /** Fairness of the books as allocated (the actors' policy), from the journals. */
  booksFairness: FairnessFigures;
  /** Average-price releases (0 for pro-rata books), and the busts and corrections that amended one. */
  averageReleases: number;
  releaseAmendments: number;
  /** Each account's cash and positions moved, as its journal says (checked against the API): not for JSON. */
  accountDeltas: ReadonlyMap<string, { cash: bigint; positions: ReadonlyMap<string, bigint> }>;
}

interface JournalRow {
  persistence_key: string;
  sequence_nr: string;
  payload: Buffer;
}

export async function* readJournal(
  db: Database,
  prefix: string,
  pageRows = 20_000,
): AsyncGenerator<{ key: string; seq: number; event: unknown }> {
  let key = prefix;
  let seq = 0;
  for (;;) {
    const rows = await db.query<JournalRow>(
      `SELECT persistence_key, sequence_nr, payload FROM journal
       WHERE (persistence_key, sequence_nr) > ($1, $2) AND persistence_key LIKE $3
       ORDER BY persistence_key, sequence_nr LIMIT $4`,
      [key, seq, likePrefix(prefix), pageRows],
    );
    for (const r of rows)
      yield {
        key: r.persistence_key,
        seq: Number(r.sequence_nr),
        event: decodeVersioned(r.payload, r.persistence_key),
      };
    const last = rows.at(-1);
    if (!last || rows.length < pageRows) return;
    key = last.persistence_key;
    seq = Number(last.sequence_nr);
  }
}

export interface CheckArgs {
  db: Database;
  app: FastifyInstance;
  seed: SeedData;
  /** What was published per block order, in seq order: fills and amendments. */
  fillsByOrder: ReadonlyMap<string, readonly Entry[]>;
  /** Ids in this run (a shared database may hold other runs). */
  idPrefix: string;
  /** The day's price per security the rebalancing priced buys at: checks no buy beyond cash. */
  rebalancePrices?: ReadonlyMap<string, bigint>;
  /** Told after each account and order the API check read (the longest part of a big check). */
  onViewChecked?: () => void;
}

export type Check = (condition: boolean, message: () => string) => void;

/** One line an order's event sent an account: what the account must have applied. */
interface ExpectedLine {
  quantity: bigint;
  price: bigint;
  /** An amendment line: what the account had of the fill (its seq, quantity and price). */
  amends?: { seq: number; quantity: bigint; price: bigint };
}

/** What the published stream says an order holds, walked in seq order. */
interface OrderModel {
  filled: bigint;
  fills: number;
  busts: number;
  corrections: number;
  cancelled: boolean;
}

function modelOf(entries: readonly Entry[]): OrderModel {
  const count = (kind: string) => entries.filter((e) => isAmendment(e) && e.kind === kind).length;
  return {
    filled: liveFillsOf(entries).reduce((s, f) => s + f.quantity, 0n),
    fills: entries.filter((e) => !isAmendment(e)).length,
    busts: count('BUST'),
    corrections: count('CORRECTION'),
    cancelled: count('CANCEL') > 0,
  };
}

export async function checkInvariants(args: CheckArgs): Promise<InvariantReport> {
  const books = new Books(args);
  await books.readOrders();
  await books.readAccounts();
  books.checkConservation();
  books.checkRebalanceLimits();
  await checkSuspenseLedger(args.db, args.idPrefix, books.openSuspense, books.check);
  await checkExecutionIndex(args.db, args.idPrefix, books.journaled, books.check);
  await books.checkAccountsApi();
  await books.checkOrdersApi();
  return books.report();
}

/** The books as the journals and the published stream say they must be. */
class Books {
  readonly #args: CheckArgs;
  readonly violations: string[] = [];
  checks = 0;
  readonly check: Check = (condition, message) => {
    this.checks++;
    if (!condition && this.violations.length < 50) this.violations.push(message());
  };
  readonly models = new Map<string, OrderModel>();
  readonly expectedLines = new Map<string, ExpectedLine>();
  /** Per order, per account: quantity held of the order's live fills (from the order's journal). */
  readonly allocatedByOrder = new Map<string, Map<string, bigint>>();
  /** Per order, per account: Σ quantity × price of its current lines (price units), for fairness. */
  readonly heldNotional = new Map<string, Map<string, bigint>>();
  /** Per fill id: each account's current share and its version seq and price. */
  readonly fillLines = new Map<
    string,
    { seq: number; price: bigint; lines: Map<string, bigint> }
  >();
  readonly journaled = new Map<string, JournaledEntry>();
  readonly averages = new AverageBooks(this.check);
  readonly counts = { fills: 0, busts: 0, corrections: 0, cancels: 0, lines: 0 };
  // Accounts, from their journals.
  readonly applied = new Set<string>();
  readonly deltas = new Map<string, { cash: bigint; positions: Map<string, bigint> }>();
  readonly flaggedNegative = new Set<string>();
  readonly appliedByOrder = new Map<string, bigint>();
  readonly suspendedByOrder = new Map<string, bigint>();
  readonly openSuspense = new Map<string, Allocation>();
  readonly accountCounts = { events: 0, lines: 0, rejected: 0 };

  constructor(args: CheckArgs) {
    this.#args = args;
    for (const [id, entries] of args.fillsByOrder) this.models.set(id, modelOf(entries));
    for (const o of args.seed.blockOrders) {
      if (o.policy?.kind !== 'AVERAGE_PRICE') continue;
      const target = o.targets.reduce((s, t) => s + t.quantity, 0n);
      this.averages.define(o.id, { ...o.policy, target });
    }
  }

  async readOrders(): Promise<void> {
    const orders = new Map(this.#args.seed.blockOrders.map((o) => [o.id, o]));
    for await (const { key, seq, event } of readJournal(
      this.#args.db,
      `block-order-${this.#args.idPrefix}`,
    )) {
      const id = key.slice('block-order-'.length);
      if (!orders.has(id)) continue;
      const e = event as BlockOrderEvent;
      if (e.type === 'BlockOrderOpened' || e.type === 'AllocationsConfirmed') continue;
      const entry = entryOf(e);
      if (!entry) continue;
      this.#published(id, entry);
      const entryId = entryIdOf(entry);
      this.check(!this.journaled.has(entryId), () => `${id}: id ${entryId} journaled twice`);
      this.journaled.set(entryId, { entry, key, sequenceNr: seq, ...releaseKeyOf(e) });
      this.#orderEvent(id, e);
    }
  }

  /** The journaled entry is the one published at its seq. */
  #published(id: string, entry: Entry): void {
    const published = this.#args.fillsByOrder.get(id)?.[entry.seq - 1];
    const same =
      published !== undefined &&
      isAmendment(published) === isAmendment(entry) &&
      (isAmendment(published) && isAmendment(entry)
        ? sameAmendment(published, entry).length === 0
        : !isAmendment(published) &&
          !isAmendment(entry) &&
          published.fillId === entry.fillId &&
          published.quantity === entry.quantity &&
          published.price === entry.price);
    this.check(
      same,
      () => `${id} seq ${entry.seq}: journaled entry differs from the published one`,
    );
  }

  #orderEvent(
    id: string,
    e: Exclude<BlockOrderEvent, { type: 'BlockOrderOpened' | 'AllocationsConfirmed' }>,
  ) {
    const allocated = this.allocatedByOrder.get(id) ?? new Map<string, bigint>();
    this.allocatedByOrder.set(id, allocated);
    switch (e.type) {
      case 'FillAllocated': {
        this.counts.fills++;
        const sum = e.lines.reduce((s, l) => s + l.quantity, 0n);
        this.check(
          sum === e.fill.quantity,
          () => `${id} seq ${e.fill.seq}: lines sum to ${sum}, fill is ${e.fill.quantity}`,
        );
        const lines = new Map<string, bigint>();
        for (const l of e.lines) {
          this.check(
            l.quantity > 0n,
            () => `${id} seq ${e.fill.seq}: non-positive line for ${l.accountId}`,
          );
          lines.set(l.accountId, l.quantity);
          this.#expect(
            id,
            e.fill.seq,
            l.accountId,
            { quantity: l.quantity, price: e.fill.price },
            allocated,
            l.quantity,
          );
        }
        this.fillLines.set(e.fill.fillId, { seq: e.fill.seq, price: e.fill.price, lines });
        return;
      }
      case 'FillBusted':
      case 'FillCorrected':
        return this.#amendEvent(id, e, allocated);
      case 'OrderCancelled':
        this.counts.cancels++;
        if (e.release || this.averages.has(id)) this.#averageLines(id, e, allocated);
        return;
      case 'FillAccumulated':
        this.counts.fills++;
        return this.#averageLines(id, e, allocated);
      case 'AveragedFillAmended':
        if (e.amendment.kind === 'BUST') this.counts.busts++;
        else this.counts.corrections++;
        return this.#averageLines(id, e, allocated);
      default: {
        const never: never = e;
        throw new Error(`unknown block order event ${JSON.stringify(never)}`);
      }
    }
  }

  #amendEvent(
    id: string,
    e: Extract<BlockOrderEvent, { type: 'FillBusted' | 'FillCorrected' }>,
    allocated: Map<string, bigint>,
  ): void {
    const a = e.amendment;
    if (e.type === 'FillBusted') this.counts.busts++;
    else this.counts.corrections++;
    const current = this.fillLines.get(a.fillId);
    this.check(
      current !== undefined,
      () => `${id} seq ${a.seq}: amends fill ${a.fillId}, never allocated`,
    );
    if (!current) return;
    this.check(
      e.amended.amendsSeq === current.seq && e.amended.previousPrice === current.price,
      () =>
        `${id} seq ${a.seq}: amends fill ${a.fillId} as of seq ${e.amended.amendsSeq}, its lines are of seq ${current.seq}`,
    );
    const price = e.type === 'FillCorrected' ? e.amendment.price : current.price;
    const next = new Map<string, bigint>();
    for (const l of e.lines) {
      this.check(
        l.previousQuantity === (current.lines.get(l.accountId) ?? 0n),
        () =>
          `${id} seq ${a.seq}: ${l.accountId} had ${current.lines.get(l.accountId) ?? 0n} of ${a.fillId}, the event says ${l.previousQuantity}`,
      );
      if (l.quantity > 0n) next.set(l.accountId, l.quantity);
      const amends = { seq: current.seq, quantity: l.previousQuantity, price: current.price };
      this.#expect(
        id,
        a.seq,
        l.accountId,
        { quantity: l.quantity, price, amends },
        allocated,
        l.quantity - l.previousQuantity,
      );
    }
    const named = new Set(e.lines.map((l) => l.accountId));
    const untouched = [...current.lines.keys()].filter((acc) => !named.has(acc));
    this.check(
      untouched.length === 0,
      () => `${id} seq ${a.seq}: leaves ${untouched.join(', ')} out of the amendment`,
    );
    this.fillLines.set(a.fillId, { seq: a.seq, price, lines: next });
  }

  /** An average-price order's event: the lines its release (or release amendment) sets. */
  #averageLines(
    id: string,
    e: Parameters<AverageBooks['event']>[1],
    allocated: Map<string, bigint>,
  ): void {
    for (const l of this.averages.event(id, e)) {
      const { seq, accountId, quantity, price, amends } = l;
      const line = amends ? { quantity, price, amends } : { quantity, price };
      this.#expect(id, seq, accountId, line, allocated, quantity - (amends?.quantity ?? 0n));
    }
  }

  #expect(
    id: string,
    seq: number,
    accountId: string,
    line: ExpectedLine,
    allocated: Map<string, bigint>,
    delta: bigint,
  ) {
    this.counts.lines++;
    const lineKey = `${id}|${seq}|${accountId}`;
    this.check(!this.expectedLines.has(lineKey), () => `${lineKey}: allocated twice`);
    this.expectedLines.set(lineKey, line);
    const notional = this.heldNotional.get(id) ?? new Map<string, bigint>();
    this.heldNotional.set(id, notional);
    const was = line.amends ? line.amends.quantity * line.amends.price : 0n;
    addTo(notional, accountId, line.quantity * line.price - was);
    allocated.set(accountId, (allocated.get(accountId) ?? 0n) + delta);
  }

  async readAccounts(): Promise<void> {
    for await (const { key, event } of readJournal(
      this.#args.db,
      `account-${this.#args.idPrefix}`,
    )) {
      const accountId = key.slice('account-'.length);
      const e = event as AccountEvent;
      if (e.type === 'SuspenseApplied') {
        const a = e.allocation;
        const lineKey = `${a.blockOrderId}|${a.fillSeq}|${accountId}`;
        this.check(
          this.openSuspense.delete(lineKey),
          () => `${lineKey}: resolved but not in suspense`,
        );
        addTo(this.suspendedByOrder, a.blockOrderId, -a.quantity);
        this.#applied(accountId, a);
        continue;
      }
      const lines = lineEvents(e);
      if (lines.length > 0) this.accountCounts.events++;
      for (const line of lines) this.#accountLine(accountId, line);
    }
    for (const lineKey of this.expectedLines.keys())
      this.check(this.applied.has(lineKey), () => `${lineKey}: allocated but never applied`);
  }

  #accountLine(accountId: string, e: ReturnType<typeof lineEvents>[number]): void {
    this.accountCounts.lines++;
    const a = e.allocation;
    const lineKey = `${a.blockOrderId}|${a.fillSeq}|${accountId}`;
    this.check(!this.applied.has(lineKey), () => `${lineKey}: applied twice`);
    this.applied.add(lineKey);
    const x = this.expectedLines.get(lineKey);
    this.check(
      x !== undefined &&
        x.quantity === a.quantity &&
        x.price === a.price &&
        x.amends?.seq === a.amends?.seq &&
        x.amends?.quantity === a.amends?.quantity &&
        x.amends?.price === a.amends?.price,
      () => `${lineKey}: applied allocation matches no allocated line`,
    );
    switch (e.type) {
      case 'AllocationRejected':
        this.accountCounts.rejected++;
        this.openSuspense.set(lineKey, a);
        addTo(this.suspendedByOrder, a.blockOrderId, a.quantity);
        return;
      case 'AllocationApplied':
        return this.#applied(accountId, a);
      case 'AllocationAmended':
        return this.#amended(accountId, e);
      default: {
        const never: never = e;
        throw new Error(`unknown line event ${JSON.stringify(never)}`);
      }
    }
  }

  #amended(accountId: string, e: Extract<AccountEvent, { type: 'AllocationAmended' }>): void {
    const a = e.allocation;
    const was = a.amends;
    this.check(
      was !== undefined,
      () => `${a.blockOrderId}|${a.fillSeq}|${accountId}: amends nothing`,
    );
    if (!was) return;
    const delta = a.quantity - was.quantity;
    const oldKey = `${a.blockOrderId}|${was.seq}|${accountId}`;
    if (e.suspended) {
      this.check(
        this.openSuspense.delete(oldKey),
        () => `${oldKey}: amended in suspense, but not in suspense`,
      );
      if (a.quantity > 0n) this.openSuspense.set(`${a.blockOrderId}|${a.fillSeq}|${accountId}`, a);
      addTo(this.suspendedByOrder, a.blockOrderId, delta);
      return;
    }
    this.check(
      !this.openSuspense.has(oldKey),
      () => `${oldKey}: in suspense, but amended on the books`,
    );
    addTo(this.appliedByOrder, a.blockOrderId, delta);
    const cash =
      cashDelta(a.side, a.quantity, a.price) - cashDelta(a.side, was.quantity, was.price);
    this.#move(accountId, a.securityId, cash, signed(a, delta));
    if (e.negativePosition) this.flaggedNegative.add(`${accountId}|${a.securityId}`);
  }

  /** A line on the account's books: its order's applied quantity, the account's cash and position. */
  #applied(accountId: string, a: Allocation): void {
    addTo(this.appliedByOrder, a.blockOrderId, a.quantity);
    const cash = cashDelta(a.side, a.quantity, a.price);
    this.#move(accountId, a.securityId, cash, signed(a, a.quantity));
  }

  #move(accountId: string, securityId: string, cash: bigint, shares: bigint): void {
    const d = this.deltas.get(accountId) ?? { cash: 0n, positions: new Map<string, bigint>() };
    this.deltas.set(accountId, d);
    d.cash += cash;
    d.positions.set(securityId, (d.positions.get(securityId) ?? 0n) + shares);
  }

  /** Per order: what the stream filled is on the accounts or in suspense, and within targets. */
  checkConservation(): void {
    for (const order of this.#args.seed.blockOrders) {
      const model = this.models.get(order.id) ?? modelOf([]);
      const allocated = this.allocatedByOrder.get(order.id) ?? new Map<string, bigint>();
      const allocatedQty = [...allocated.values()].reduce((s, q) => s + q, 0n);
      // Average price: what is accumulated is on no account yet (0 for pro-rata).
      const held = this.averages.accumulatedOf(order.id).quantity;
      this.check(
        allocatedQty + held === model.filled,
        () =>
          `${order.id}: allocated ${allocatedQty} + accumulated ${held}, the stream filled ${model.filled}`,
      );
      for (const t of order.targets) {
        const q = allocated.get(t.accountId) ?? 0n;
        this.check(
          q >= 0n && q <= t.quantity,
          () => `${order.id}: ${t.accountId} holds ${q} of a target of ${t.quantity}`,
        );
      }
      this.averages.checkCash(order.id);
      const onAccounts = this.appliedByOrder.get(order.id) ?? 0n;
      const suspended = this.suspendedByOrder.get(order.id) ?? 0n;
      this.check(
        model.filled === onAccounts + suspended + held,
        () =>
          `${order.id}: filled ${model.filled} ≠ applied ${onAccounts} + suspense ${suspended} + accumulated ${held}`,
      );
    }
  }

  /**
   * No sell target beyond the opening position; with the rebalance prices,
   * no account's buys cost more than its opening cash plus its sells' proceeds.
   */
  checkRebalanceLimits(): void {
    const { seed, rebalancePrices } = this.#args;
    const accounts = new Map(seed.accounts.map((a) => [a.id, a]));
    const net = new Map<string, bigint>();
    for (const order of seed.blockOrders)
      for (const t of order.targets) {
        if (order.side === 'SELL') {
          const held = accounts.get(t.accountId)?.positions[order.securityId] ?? 0n;
          this.check(
            t.quantity <= held,
            () => `${order.id}: ${t.accountId} sells ${t.quantity}, holds ${held}`,
          );
        }
        const price = rebalancePrices?.get(order.securityId);
        if (price === undefined) continue;
        const cost = notionalMinor(t.quantity, price);
        addTo(net, t.accountId, order.side === 'BUY' ? cost : -cost);
      }
    for (const [accountId, cost] of net) {
      const cash = accounts.get(accountId)?.openingCashMinor ?? 0n;
      this.check(
        cost <= cash,
        () => `${accountId}: buys net of sells cost ${cost} at the rebalance prices, has ${cash}`,
      );
    }
  }

  async checkAccountsApi(): Promise<void> {
    await inBatches(this.#args.seed.accounts, async (account) => {
      const res = await getView(this.#args.app, `/api/v1/accounts/${account.id}`);
      this.#args.onViewChecked?.();
      this.check(res.statusCode === 200, () => `GET /accounts/${account.id}: ${res.statusCode}`);
      if (res.statusCode !== 200) return;
      const view = res.json<AccountView>();
      const d = this.deltas.get(account.id);
      const expectedCash = account.openingCashMinor + (d?.cash ?? 0n);
      this.check(
        BigInt(view.cashMinor) === expectedCash,
        () => `${account.id}: cash ${view.cashMinor}, expected ${expectedCash}`,
      );
      const securities = new Set([
        ...Object.keys(account.positions),
        ...(d ? d.positions.keys() : []),
      ]);
      for (const s of securities) {
        const expected = (account.positions[s] ?? 0n) + (d?.positions.get(s) ?? 0n);
        this.check(
          BigInt(view.positions[s] ?? '0') === expected,
          () => `${account.id}: position in ${s} is ${view.positions[s]}, expected ${expected}`,
        );
        this.check(
          expected >= 0n || this.flaggedNegative.has(`${account.id}|${s}`),
          () => `${account.id}: negative position in ${s} without the rule's flag`,
        );
      }
    });
  }

  async checkOrdersApi(): Promise<void> {
    await inBatches(this.#args.seed.blockOrders, async (order) => {
      const res = await getView(this.#args.app, `/api/v1/block-orders/${order.id}`);
      this.#args.onViewChecked?.();
      this.check(res.statusCode === 200, () => `GET /block-orders/${order.id}: ${res.statusCode}`);
      if (res.statusCode !== 200) return;
      const view = res.json<BlockOrderView>();
      const m = this.models.get(order.id) ?? modelOf([]);
      const shown = [
        view.filledQuantity,
        view.fills,
        view.busts,
        view.corrections,
        view.cancelledQuantity !== null,
      ];
      const expected = [m.filled.toString(), m.fills, m.busts, m.corrections, m.cancelled];
      this.check(
        JSON.stringify(shown) === JSON.stringify(expected),
        () =>
          `${order.id}: API shows filled/fills/busts/corrections/cancelled ${JSON.stringify(shown)}, the stream ${JSON.stringify(expected)}`,
      );
      this.check(
        view.unconfirmedLines === 0 && view.confirmedThroughSeq === view.lastFillSeq,
        () => `${order.id}: ${view.unconfirmedLines} lines unconfirmed`,
      );
      const suspended = this.suspendedByOrder.get(order.id) ?? 0n;
      this.check(
        BigInt(view.suspense.openQuantity) === suspended,
        () => `${order.id}: API suspense ${view.suspense.openQuantity}, journals ${suspended}`,
      );
      const allocated = this.allocatedByOrder.get(order.id) ?? new Map<string, bigint>();
      for (const a of view.accounts)
        this.check(
          BigInt(a.allocatedQuantity) === (allocated.get(a.accountId) ?? 0n),
          () => `${order.id}: API allocation of ${a.accountId} differs from the journal`,
        );
    });
  }

  report(): InvariantReport {
    const openQuantity = [...this.openSuspense.values()].reduce((s, a) => s + a.quantity, 0n);
    return {
      ok: this.violations.length === 0,
      checks: this.checks,
      violations: this.violations,
      fills: this.counts.fills,
      busts: this.counts.busts,
      corrections: this.counts.corrections,
      cancels: this.counts.cancels,
      allocationLines: this.counts.lines,
      accountEvents: this.accountCounts.events,
      allocationLinesApplied: this.accountCounts.lines,
      rejectedAllocations: this.accountCounts.rejected,
      negativePositionsFlagged: this.flaggedNegative.size,
      suspenseOpenLines: this.openSuspense.size,
      suspenseOpenQuantity: openQuantity,
      booksFairness: this.#fairness(),
      averageReleases: this.averages.releases,
      releaseAmendments: this.averages.releaseAmendments,
      accountDeltas: this.deltas,
    };
  }

  /** Each order's accounts as the journals hold them, against its live fills' VWAP. */
  #fairness(): FairnessFigures {
    const perOrder = this.#args.seed.blockOrders.map((order) => {
      const fills = liveFillsOf(this.#args.fillsByOrder.get(order.id) ?? []);
      const held = this.allocatedByOrder.get(order.id);
      const notional = this.heldNotional.get(order.id);
      // Measured on what the accounts got: an accumulation not yet released is left out.
      const accumulated = this.averages.accumulatedOf(order.id);
      return orderFairness({
        blockQuantity: fills.reduce((s, f) => s + f.quantity, 0n) - accumulated.quantity,
        blockNotional: fills.reduce((s, f) => s + f.quantity * f.price, 0n) - accumulated.notional,
        targetTotal: order.targets.reduce((s, t) => s + t.quantity, 0n),
        accounts: order.targets.map((t) => ({
          accountId: t.accountId,
          target: t.quantity,
          quantity: held?.get(t.accountId) ?? 0n,
          notional: notional?.get(t.accountId) ?? 0n,
        })),
      });
    });
    const residue = this.#args.seed.blockOrders.reduce(
      (s, o) => s + this.averages.residueOf(o.id),
      0n,
    );
    return summarizeFairness(perOrder, residue);
  }
}

/** The release an average-price entry sets the lines of (the index's lines_key; null: none). */
function releaseKeyOf(e: BlockOrderEvent): { releaseKey?: string | null } {
  if (e.type === 'FillAccumulated') return { releaseKey: e.release?.key ?? null };
  if (e.type === 'AveragedFillAmended')
    return { releaseKey: e.change?.key ?? e.release?.key ?? null };
  if (e.type === 'OrderCancelled' && e.release) return { releaseKey: e.release.key };
  return {};
}

const addTo = (m: Map<string, bigint>, k: string, q: bigint) => m.set(k, (m.get(k) ?? 0n) + q);

const signed = (a: Allocation, quantity: bigint): bigint =>
  a.side === 'BUY' ? quantity : -quantity;

/** Runs `each` over `items`, 32 at a time (the API is in-process: bounded, not serial). */
async function inBatches<T>(items: readonly T[], each: (item: T) => Promise<void>): Promise<void> {
  const concurrency = 32;
  for (let i = 0; i < items.length; i += concurrency)
    await Promise.all(items.slice(i, i + concurrency).map(each));
}

/** Attempts per API read: a 503 (an actor busy recovering, say) is transient, a 4xx is not. */
const API_ATTEMPTS_MAX = 5;
const API_RETRY_MS = 2_000;

/** GET `url` through the app, again after a 503, up to API_ATTEMPTS_MAX times. */
async function getView(app: FastifyInstance, url: string) {
  for (let attempt = 1; ; attempt++) {
    const res = await app.inject({ method: 'GET', url });
    if (res.statusCode !== 503 || attempt >= API_ATTEMPTS_MAX) return res;
    await new Promise((resolve) => setTimeout(resolve, API_RETRY_MS * attempt));
  }
}
