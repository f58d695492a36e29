/**
 * The market's amendments to a block order, decided and folded purely:
 * - a BUST cancels an earlier fill: every account gives back exactly the
 *   share it had of it (quantity and cash at that fill's price);
 * - a CORRECTION replaces an earlier fill's quantity and/or price. A
 *   price-only correction keeps every account's quantity and re-prices it,
 *   so each account holds exactly what it would have, had the fill arrived
 *   corrected. A quantity correction re-runs the same pro-rata rule
 *   (allocateFill, with the fill's own seq for the tie rotation) for the
 *   corrected quantity against each account's remaining without this fill:
 *   when the fill is the order's latest (the usual case) that is exactly the
 *   allocation it would have had; after later fills, it is the share the
 *   corrected fill takes of what the order still needs;
 * - a CANCEL cancels the unfilled remainder: no fill is taken after it, and
 *   a correction may then only lower a fill.
 *
 * Each takes the next seq on the order's subject, like a fill, so it stays
 * ordered with the fills it amends. It names the fill by id; the shell finds
 * that fill's current version (its lines, after any earlier correction).
 * Invalid ones are rejected with a reason of their own and persist nothing.
 */
import { allocateFill, type AllocateResult, type AllocationLine } from '../domain/allocation.ts';
import { assertNever, invariant } from '../errors.ts';
import { decideAveragedAmend, releaseOf, withRelease, type ReleaseLines } from './average.ts';
import {
  FillRejection,
  accepted,
  linesFillIdOf,
  moveLines,
  decideRepeat,
  outOfOrder,
  rejected,
  targetIndex,
  totalTarget,
  type BlockOrderCommand,
  type BlockOrderDef,
  type BlockOrderEvent,
  type BlockOrderState,
  type Decision,
  type Fill,
  type OpenState,
  type PendingFill,
} from './decider.ts';

interface AmendmentBase {
  /** Claimed in the execution index like a fill id: one id space, unique forever. */
  amendmentId: string;
  blockOrderId: string;
  /** The next seq of the order: fills and amendments share one sequence. */
  seq: number;
  executedAtMs: number;
}

export type Amendment =
  | (AmendmentBase & { kind: 'BUST'; fillId: string })
  | (AmendmentBase & { kind: 'CORRECTION'; fillId: string; quantity: bigint; price: bigint })
  | (AmendmentBase & { kind: 'CANCEL' });

/** One account's line of an amended fill: what it had, and what it has now. */
export interface AmendLine {
  accountId: string;
  previousQuantity: bigint;
  quantity: bigint;
}

/** A fill as it stands now: after its latest correction, or busted. */
export interface FillVersion {
  fill: Fill;
  /** The seq of the entry that set these lines: the fill's own, or its latest correction's. */
  seq: number;
  quantity: bigint;
  price: bigint;
  busted: boolean;
  /** Each account's share now (quantity > 0). */
  lines: AllocationLine[];
}

/** The fields in which two amendments differ (none: the same amendment). */
export function sameAmendment(a: Amendment, b: Amendment): string[] {
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  const ra = a as unknown as Record<string, unknown>;
  const rb = b as unknown as Record<string, unknown>;
  return [...keys].filter((k) => ra[k] !== rb[k]).sort();
}

/** The version of a fill an event leaves (undefined: the event sets no fill's lines). */
export function versionAfter(event: BlockOrderEvent): FillVersion | undefined {
  switch (event.type) {
    case 'FillAllocated':
      return {
        fill: event.fill,
        seq: event.fill.seq,
        quantity: event.fill.quantity,
        price: event.fill.price,
        busted: false,
        lines: event.lines,
      };
    case 'FillBusted':
    case 'FillCorrected': {
      const busted = event.type === 'FillBusted';
      const lines = heldLines(event.lines);
      return {
        fill: event.amended.fill,
        seq: event.amendment.seq,
        quantity: busted ? 0n : (event.amendment as { quantity: bigint }).quantity,
        price: busted ? event.amended.previousPrice : (event.amendment as { price: bigint }).price,
        busted,
        lines,
      };
    }
    case 'BlockOrderOpened':
    case 'OrderCancelled':
    case 'AllocationsConfirmed':
    case 'FillAccumulated':
    case 'AveragedFillAmended':
      return undefined;
    default:
      return assertNever(event, 'block order event');
  }
}

/** Average price: the release whose lines an event sets, and those lines (undefined: none). */
export function releaseLinesAfter(event: BlockOrderEvent): ReleaseLines | undefined {
  switch (event.type) {
    case 'FillAccumulated':
      return event.release
        ? { key: event.release.key, seq: event.fill.seq, lines: event.release.lines }
        : undefined;
    case 'OrderCancelled':
      return event.release
        ? { key: event.release.key, seq: event.amendment.seq, lines: event.release.lines }
        : undefined;
    case 'AveragedFillAmended': {
      const change = event.change;
      if (!change)
        return event.release
          ? { key: event.release.key, seq: event.amendment.seq, lines: event.release.lines }
          : undefined;
      const lines = heldLines(change.lines);
      return { key: change.key, seq: event.amendment.seq, lines };
    }
    case 'BlockOrderOpened':
    case 'FillAllocated':
    case 'FillBusted':
    case 'FillCorrected':
    case 'AllocationsConfirmed':
      return undefined;
    default:
      return assertNever(event, 'block order event');
  }
}

/** The key whose lines a pending entry set: its release's (average price), else its fill's. */
export const linesKeyOfPending = (p: PendingFill): string | null | undefined =>
  p.linesKey !== undefined ? p.linesKey : linesFillIdOf(p.execution);

/** What the shell looks up before an amendment is decided (null: the decision reads nothing). */
export type AmendLookup = { kind: 'FILL' | 'RELEASE'; key: string } | null;

/**
 * A bust or correction at the order's next seq reads the named fill's
 * current lines (pro-rata) or its release's (average price, once released).
 * Anything decided without them (a cancel, a repeat, another order, a seq
 * out of order, an unknown, busted or still accumulated fill) looks up nothing.
 */
export function amendLookup(state: BlockOrderState, a: Amendment): AmendLookup {
  if (state.status !== 'Open' || a.kind === 'CANCEL') return null;
  if (a.blockOrderId !== state.def.blockOrderId || a.seq !== state.lastFillSeq + 1) return null;
  if (state.average === null) return { kind: 'FILL', key: a.fillId };
  const f = state.average.fills.get(a.fillId);
  return f && !f.busted && f.releaseKey !== null ? { kind: 'RELEASE', key: f.releaseKey } : null;
}

/** Average price: the release lines a pending entry holds (undefined: it sets none). */
export function releaseLinesOfPending(p: PendingFill): ReleaseLines | undefined {
  if (typeof p.linesKey !== 'string') return undefined;
  const lines = heldLines(p.lines);
  return { key: p.linesKey, seq: p.seq, lines };
}

type AmendCommand = Extract<BlockOrderCommand, { type: 'Amend' }>;

export function decideAmend(command: AmendCommand, state: BlockOrderState): Decision {
  const a = command.amendment;
  if (state.status === 'Empty')
    return rejected(FillRejection.UnknownBlockOrder, `no block order ${a.blockOrderId}`);
  if (a.blockOrderId !== state.def.blockOrderId)
    return rejected(FillRejection.WrongBlockOrder, `amendment is for ${a.blockOrderId}`);
  if (a.seq <= state.lastFillSeq) return decideRepeat(a, command.prior);
  if (a.seq !== state.lastFillSeq + 1) return outOfOrder(state, a.seq);
  switch (a.kind) {
    case 'CANCEL': {
      if (state.cancelledQuantity !== null)
        return rejected(FillRejection.AlreadyCancelled, 'the remainder is already cancelled');
      const cancelledQuantity = totalTarget(state.def) - state.filledQuantity;
      const avg = state.average;
      const release =
        avg && avg.accumulation.fills > 0
          ? releaseOf(state, avg.accumulation, [...avg.accumulated], a.amendmentId, a.seq)
          : undefined;
      return accepted({
        type: 'OrderCancelled',
        amendment: a,
        cancelledQuantity,
        ...(release ? { release } : {}),
        atMs: command.nowMs,
      });
    }
    case 'BUST':
    case 'CORRECTION': {
      if (state.average !== null)
        return decideAveragedAmend(
          { ...state, average: state.average },
          a,
          command.release,
          command.nowMs,
        );
      const target = amendable(a, command.target, state);
      if ('outcome' in target) return target;
      return a.kind === 'BUST'
        ? decideBust(a, target, command.nowMs)
        : decideCorrection(a, target, state, command.nowMs);
    }
    default:
      return assertNever(a, 'amendment');
  }
}

/** The current version of the fill an amendment names, or why it cannot be amended. */
function amendable(
  a: Extract<Amendment, { kind: 'BUST' | 'CORRECTION' }>,
  target: FillVersion | null | undefined,
  state: OpenState,
): FillVersion | Decision {
  invariant(target !== undefined, `amendment ${a.amendmentId}: the shell must look up its fill`);
  if (target === null || target.fill.blockOrderId !== state.def.blockOrderId)
    return rejected(FillRejection.UnknownFill, `no fill ${a.fillId} on ${state.def.blockOrderId}`);
  invariant(target.fill.fillId === a.fillId, `looked up ${target.fill.fillId} for ${a.fillId}`);
  invariant(target.seq < a.seq, `fill version seq ${target.seq} is not before ${a.seq}`);
  if (target.busted)
    return rejected(
      FillRejection.AlreadyBusted,
      `fill ${a.fillId} was busted at seq ${target.seq}`,
    );
  return target;
}

const amendedOf = (target: FillVersion) => ({
  fill: target.fill,
  amendsSeq: target.seq,
  previousQuantity: target.quantity,
  previousPrice: target.price,
});

function decideBust(
  a: Extract<Amendment, { kind: 'BUST' }>,
  target: FillVersion,
  nowMs: number,
): Decision {
  const lines = target.lines.map((l) => ({
    accountId: l.accountId,
    previousQuantity: l.quantity,
    quantity: 0n,
  }));
  return accepted({
    type: 'FillBusted',
    amendment: a,
    amended: amendedOf(target),
    lines,
    atMs: nowMs,
  });
}

function decideCorrection(
  a: Extract<Amendment, { kind: 'CORRECTION' }>,
  target: FillVersion,
  state: OpenState,
  nowMs: number,
): Decision {
  const invalid = invalidCorrection(a, target, state);
  if (invalid) return invalid;
  const shares =
    a.quantity === target.quantity
      ? { ok: true as const, lines: target.lines }
      : reallocate(state, target.lines, a.quantity, target.fill.seq);
  if (!shares.ok)
    return rejected(
      FillRejection.CorrectionOverfill,
      `correction of ${a.fillId}: ${shares.detail}`,
    );
  const lines = amendLinesOf(state.def, target.lines, shares.lines);
  const amended = amendedOf(target);
  return accepted({ type: 'FillCorrected', amendment: a, amended, lines, atMs: nowMs });
}

/** Why a correction of a fill now at `current` is refused before any allocation, or null. */
export function invalidCorrection(
  a: Extract<Amendment, { kind: 'CORRECTION' }>,
  current: { quantity: bigint; price: bigint },
  state: OpenState,
): Decision | null {
  if (a.quantity <= 0n)
    return rejected(
      FillRejection.NonPositiveQuantity,
      'a correction keeps a quantity > 0 (a bust removes a fill)',
    );
  if (a.price <= 0n) return rejected(FillRejection.NonPositivePrice, 'price must be > 0');
  if (a.quantity === current.quantity && a.price === current.price)
    return rejected(
      FillRejection.CorrectionChangesNothing,
      `fill ${a.fillId} is already ${a.quantity} at ${a.price}`,
    );
  if (state.cancelledQuantity !== null && a.quantity > current.quantity)
    return rejected(
      FillRejection.CorrectionOverfill,
      `the order's remainder is cancelled: fill ${a.fillId} can only be lowered`,
    );
  return null;
}

/** Every account with a share before or after, in the order's account order. */
export function amendLinesOf(
  def: BlockOrderDef,
  before: readonly AllocationLine[],
  after: readonly AllocationLine[],
): AmendLine[] {
  const previous = new Map(before.map((l) => [l.accountId, l.quantity]));
  const now = new Map(after.map((l) => [l.accountId, l.quantity]));
  // Only the accounts involved, not a scan of every target: an order may serve 40,000.
  const ids = [...new Set([...previous.keys(), ...now.keys()])];
  ids.sort((x, y) => targetIndex(def, x) - targetIndex(def, y));
  return ids.map((accountId) => ({
    accountId,
    previousQuantity: previous.get(accountId) ?? 0n,
    quantity: now.get(accountId) ?? 0n,
  }));
}

/**
 * `quantity` re-allocated pro-rata (tie rotation of `seq`) against each
 * account's remaining without `current`: a corrected fill's or an amended
 * release's new shares.
 */
export function reallocate(
  state: OpenState,
  current: readonly AllocationLine[],
  quantity: bigint,
  seq: number,
): AllocateResult {
  const held = new Map(current.map((l) => [l.accountId, l.quantity]));
  return allocateFill({
    lotSize: state.def.lotSize,
    fillQuantity: quantity,
    fillSeq: seq,
    accounts: state.remaining.map((r) => ({
      accountId: r.accountId,
      remaining: r.remaining + (held.get(r.accountId) ?? 0n),
    })),
  });
}

/** The lines still held (quantity > 0) among `lines`, as allocation lines. */
export const heldLines = (
  lines: readonly { accountId: string; quantity: bigint }[],
): AllocationLine[] =>
  lines
    .filter((l) => l.quantity > 0n)
    .map((l) => ({ accountId: l.accountId, quantity: l.quantity }));

type AmendmentEvent = Extract<
  BlockOrderEvent,
  { type: 'FillBusted' | 'FillCorrected' | 'OrderCancelled' }
>;

export function evolveAmendment(state: OpenState, event: AmendmentEvent): OpenState {
  const seq = event.amendment.seq;
  invariant(seq === state.lastFillSeq + 1, `amendment seq ${seq} after ${state.lastFillSeq}`);
  if (event.type === 'OrderCancelled') {
    invariant(state.cancelledQuantity === null, 'OrderCancelled on a cancelled order');
    const cancelled = { ...state, cancelledQuantity: event.cancelledQuantity, lastFillSeq: seq };
    if (event.release) return withRelease(cancelled, event.release, seq, event.amendment);
    const linesKey = state.average ? { linesKey: null } : {};
    const pending = { seq, execution: event.amendment, price: 0n, lines: [], ...linesKey };
    return { ...cancelled, pending: [...state.pending, pending] };
  }
  const { amended, lines } = event;
  const before = lines.reduce((s, l) => s + l.previousQuantity, 0n);
  const after = lines.reduce((s, l) => s + l.quantity, 0n);
  // Conservation: the lines are the whole fill, before and after.
  invariant(
    before === amended.previousQuantity,
    `${event.type}: lines had ${before}, fill had ${amended.previousQuantity}`,
  );
  const corrected = event.type === 'FillCorrected' ? event.amendment : undefined;
  invariant(after === (corrected?.quantity ?? 0n), `${event.type}: lines sum to ${after}`);
  const price = corrected?.price ?? amended.previousPrice;
  const { remaining, lastSeq, pendingLines } = moveLines(state, lines, seq, true);
  const entry = { seq, execution: event.amendment, price, lines: pendingLines, amended };
  return {
    ...state,
    remaining,
    lastSeq,
    filledQuantity: state.filledQuantity + after - before,
    filledNotional: state.filledNotional + after * price - before * amended.previousPrice,
    busts: state.busts + (corrected ? 0 : 1),
    corrections: state.corrections + (corrected ? 1 : 0),
    lastFillSeq: seq,
    pending: [...state.pending, entry],
  };
}

/** The fill id a pending entry sets the lines of, and the version it leaves (a cancel: none). */
export function versionOfPending(p: PendingFill): FillVersion | undefined {
  if (p.linesKey !== undefined) return undefined; // an average-price entry: releaseLinesOfPending
  const e = p.execution;
  const lines = heldLines(p.lines);
  if (!('kind' in e))
    return { fill: e, seq: p.seq, quantity: e.quantity, price: e.price, busted: false, lines };
  if (e.kind === 'CANCEL') return undefined;
  invariant(
    p.amended !== undefined,
    `pending ${e.kind.toLowerCase()} ${e.amendmentId} without its fill`,
  );
  const busted = e.kind === 'BUST';
  const quantity = busted ? 0n : e.quantity;
  return { fill: p.amended.fill, seq: p.seq, quantity, price: p.price, busted, lines };
}
