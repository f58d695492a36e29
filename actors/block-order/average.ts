/**
 * The average-price policy on the block order, decided and folded purely
 * (the rule itself, prices and residue, is domain/average-price.ts).
 *
 * - A fill is accumulated (`FillAccumulated`): it sends no line. When a
 *   trigger fires (every N fills, every T ms of market time, or the order is
 *   complete) the same event releases the whole accumulation: one pro-rata
 *   allocation of its quantity at the seq of the fill that fired it, every
 *   line at the accumulation's VWAP. The release's key is that fill's id.
 * - A cancel of the remainder releases what is accumulated (key: the
 *   cancel's id). The market's cancel is also how a day order closes: the
 *   simulator ends an average-price day with one per order.
 * - A bust or correction of a fill still accumulated only changes the
 *   accumulation (`AveragedFillAmended`, no lines). Of a released fill, it
 *   amends that release: the release's accumulation is re-computed without
 *   the old version of the fill (and with the new one); a price-only change
 *   keeps every line's quantity at the new average; a quantity change re-runs
 *   the pro-rata rule with the release's seq against each account's remaining
 *   without the release. Every account of the release keeps one price, the
 *   new average, and the residue is re-booked. An amendment of a released
 *   fill never releases: a release sets lines at its own seq, and an
 *   amendment's seq sets the amended release's lines. A correction of an
 *   accumulated fill that brings the order to its target completes it: the
 *   accumulation is released at the correction's seq (key: its id).
 *
 * The state holds one small record per fill and per release (never their
 * lines): the lines of a release are read back from the pending entries or
 * the journal, like a pro-rata fill's. Those records are persistent
 * (immutable.js) maps and lists: a fold step shares all but the path it
 * changes, so a fill costs O(log n), not a copy of every fill before it.
 */
import { List, Map as PMap } from 'immutable';
import type { AllocationLine } from '../domain/allocation.ts';
import {
  accumulate,
  emptyAccumulation,
  priceRelease,
  releaseAtAverage,
  releaseDue,
  unaccumulate,
  averagePricePolicyProblem,
  type Accumulation,
  type AveragePricePolicy,
} from '../domain/average-price.ts';
import { invariant } from '../errors.ts';
import {
  amendLinesOf,
  invalidCorrection as invalidCorrectionOf,
  reallocate,
  type AmendLine,
  type Amendment,
} from './amendments.ts';
import {
  FillRejection,
  accepted,
  rejected,
  moveLines,
  totalTarget,
  type BlockOrderDef,
  type BlockOrderEvent,
  type BlockOrderState,
  type Decision,
  type Entry,
  type Fill,
  type OpenState,
  type PendingFill,
} from './decider.ts';

export const AllocationPolicyKind = {
  ProRata: 'PRO_RATA',
  AveragePrice: 'AVERAGE_PRICE',
} as const;
export type AllocationPolicyKind = (typeof AllocationPolicyKind)[keyof typeof AllocationPolicyKind];

export type AllocationPolicy =
  { kind: 'PRO_RATA' } | ({ kind: 'AVERAGE_PRICE' } & AveragePricePolicy);

export const PRO_RATA: AllocationPolicy = { kind: AllocationPolicyKind.ProRata };

/** Fills one average-price order keeps a record of, at most: beyond it fills are refused. */
export const AVERAGE_FILLS_MAX = 100_000;

/** The order's policy (an order from before policies existed is pro-rata). */
export const policyOf = (def: BlockOrderDef): AllocationPolicy => def.policy ?? PRO_RATA;

/** Why the policy cannot be used, or null. */
export function invalidPolicy(policy: AllocationPolicy): string | null {
  switch (policy.kind) {
    case 'PRO_RATA':
      return null;
    case 'AVERAGE_PRICE': {
      const problem = averagePricePolicyProblem(policy);
      return problem && `policy: ${problem.field}: ${problem.rule}`;
    }
    default: {
      // Reference data is input: an unknown policy rejects the order, it does not crash it.
      const unknown: never = policy;
      return `unknown allocation policy ${String((unknown as { kind: unknown }).kind)}`;
    }
  }
}

/** One fill of an average-price order, as it stands now. */
export interface AveragedFill {
  /** As first taken. */
  fill: Fill;
  quantity: bigint;
  price: bigint;
  busted: boolean;
  /** The key of the release that allocated it; null while accumulated. */
  releaseKey: string | null;
}

/** What a release allocated: its fills' totals, its one price and what stayed on the order. */
export interface ReleaseFigures {
  accumulation: Accumulation;
  /** The price of every line (a release busted whole keeps its last one). */
  averagePrice: bigint;
  /** Street cash less the accounts' cash, signed cents (average-price.ts). */
  residueMinor: bigint;
}

export interface ReleaseState extends ReleaseFigures {
  key: string;
  /** The seq it was released at: its lines' first seq and the tie rotation of any re-run. */
  seq: number;
  /** The seq of the entry that last set its lines (its own, or its latest amendment's). */
  versionSeq: number;
}

export interface AverageState {
  policy: AveragePricePolicy;
  accumulation: Accumulation;
  /** Ids of the accumulated fills, oldest first. */
  accumulated: List<string>;
  fills: PMap<string, AveragedFill>;
  releases: PMap<string, ReleaseState>;
  /** Σ quantity over releases: what the accounts hold of the order. */
  releasedQuantity: bigint;
  /** Σ residue over releases: the order's rounding account, signed cents. */
  residueMinor: bigint;
}

/** A release: every accumulated fill, allocated at one price. */
export interface AverageRelease {
  key: string;
  fillIds: string[];
  figures: ReleaseFigures;
  lines: AllocationLine[];
}

/** A released fill was busted or corrected: its release, before and after. */
export interface ReleaseChange {
  key: string;
  /** The seq of the entry whose lines this replaces. */
  amendsSeq: number;
  before: ReleaseFigures;
  after: ReleaseFigures;
  lines: AmendLine[];
}

/** The current lines of a release: from the pending entry or the journal event that set them. */
export interface ReleaseLines {
  key: string;
  seq: number;
  lines: AllocationLine[];
}

export const openAverage = (policy: AllocationPolicy): AverageState | null =>
  policy.kind === 'AVERAGE_PRICE'
    ? {
        policy: { everyFills: policy.everyFills, everyMarketMs: policy.everyMarketMs },
        accumulation: emptyAccumulation,
        accumulated: List(),
        fills: PMap(),
        releases: PMap(),
        releasedQuantity: 0n,
        residueMinor: 0n,
      }
    : null;

type AverageOpen = OpenState & { average: AverageState };

/** A fill checked by decideFill (seq, cancel, quantity, price): accumulated, maybe released. */
export function decideAveragedFill(state: AverageOpen, fill: Fill, nowMs: number): Decision {
  const avg = state.average;
  const target = totalTarget(state.def);
  if (state.filledQuantity + fill.quantity > target)
    return rejected(
      FillRejection.Overfill,
      `fill ${fill.quantity} exceeds the order's unfilled ${target - state.filledQuantity}`,
    );
  if (avg.fills.size >= AVERAGE_FILLS_MAX)
    return rejected(
      FillRejection.Overfill,
      `an average-price order keeps at most ${AVERAGE_FILLS_MAX} fills`,
    );
  const accumulation = accumulate(avg.accumulation, fill);
  const clock = {
    executedAtMs: fill.executedAtMs,
    orderComplete: state.filledQuantity + fill.quantity === target,
  };
  const release = releaseDue(accumulation, avg.policy, clock)
    ? releaseOf(state, accumulation, [...avg.accumulated, fill.fillId], fill.fillId, fill.seq)
    : null;
  return accepted({ type: 'FillAccumulated', fill, release, atMs: nowMs });
}

/** The release of `accumulation` at `seq`, against each account's remaining now. */
export function releaseOf(
  state: OpenState,
  accumulation: Accumulation,
  fillIds: string[],
  key: string,
  seq: number,
): AverageRelease {
  invariant(fillIds.length === accumulation.fills, `release ${key}: fills and ids differ`);
  const r = releaseAtAverage({
    lotSize: state.def.lotSize,
    releaseSeq: seq,
    accounts: state.remaining,
    accumulation,
    side: state.def.side,
  });
  const figures = { accumulation, averagePrice: r.averagePrice, residueMinor: r.residueMinor };
  return { key, fillIds, figures, lines: r.lines };
}

type FillAmendment = Extract<Amendment, { kind: 'BUST' | 'CORRECTION' }>;

/**
 * A bust or correction on an average-price order. `release`: when the fill
 * is released, its release's current lines (the shell looks them up).
 */
export function decideAveragedAmend(
  state: AverageOpen,
  a: FillAmendment,
  release: ReleaseLines | null | undefined,
  nowMs: number,
): Decision {
  const f = state.average.fills.get(a.fillId);
  if (!f)
    return rejected(FillRejection.UnknownFill, `no fill ${a.fillId} on ${state.def.blockOrderId}`);
  if (f.busted) return rejected(FillRejection.AlreadyBusted, `fill ${a.fillId} was busted`);
  const after = a.kind === 'BUST' ? { quantity: 0n, price: f.price } : a;
  const invalid = a.kind === 'CORRECTION' ? invalidCorrection(state, f, a) : null;
  if (invalid) return invalid;
  const amended = { fillId: a.fillId, quantity: f.quantity, price: f.price };
  if (f.releaseKey === null) {
    const completion = completionRelease(state, f, after, a);
    const released = completion ? { release: completion } : {};
    return accepted({
      type: 'AveragedFillAmended',
      amendment: a,
      amended,
      change: null,
      ...released,
      atMs: nowMs,
    });
  }
  invariant(
    release?.key === f.releaseKey,
    `amendment ${a.amendmentId}: the shell must look up release ${f.releaseKey}`,
  );
  const change = releaseChangeOf(state, f, after, release);
  return accepted({ type: 'AveragedFillAmended', amendment: a, amended, change, atMs: nowMs });
}

/**
 * A correction of an accumulated fill that brings the order to its target
 * completes it: the completion trigger fires, and the whole accumulation
 * (with the corrected version) is released at the correction's seq, keyed
 * by its id, as a cancel's release is. A bust never completes an order.
 */
function completionRelease(
  state: AverageOpen,
  f: AveragedFill,
  after: { quantity: bigint; price: bigint },
  a: FillAmendment,
): AverageRelease | null {
  if (a.kind !== 'CORRECTION') return null;
  const filled = state.filledQuantity - f.quantity + after.quantity;
  if (filled !== totalTarget(state.def)) return null;
  const executedAtMs = f.fill.executedAtMs;
  const without = unaccumulate(state.average.accumulation, { ...f, executedAtMs });
  const accumulation = accumulate(without, { ...after, executedAtMs });
  const ids = state.average.accumulated.toArray();
  return releaseOf(state, accumulation, ids, a.amendmentId, a.seq);
}

function invalidCorrection(
  state: AverageOpen,
  f: AveragedFill,
  a: Extract<Amendment, { kind: 'CORRECTION' }>,
): Decision | null {
  const invalid = invalidCorrectionOf(a, f, state);
  if (invalid) return invalid;
  const filled = state.filledQuantity - f.quantity + a.quantity;
  const target = totalTarget(state.def);
  if (filled > target)
    return rejected(
      FillRejection.CorrectionOverfill,
      `correction of ${a.fillId} fills ${filled} of ${target}`,
    );
  return null;
}

/** The release of fill `f`, re-computed with the fill's new version (quantity 0: busted). */
function releaseChangeOf(
  state: AverageOpen,
  f: AveragedFill,
  after: { quantity: bigint; price: bigint },
  current: ReleaseLines,
): ReleaseChange {
  const r = state.average.releases.get(current.key);
  invariant(
    r !== undefined && current.seq === r.versionSeq,
    `release ${current.key}: stale lines at seq ${current.seq}`,
  );
  const executedAtMs = f.fill.executedAtMs;
  let accumulation = unaccumulate(r.accumulation, {
    quantity: f.quantity,
    price: f.price,
    executedAtMs,
  });
  if (after.quantity > 0n) accumulation = accumulate(accumulation, { ...after, executedAtMs });
  const before: ReleaseFigures = {
    accumulation: r.accumulation,
    averagePrice: r.averagePrice,
    residueMinor: r.residueMinor,
  };
  const { figures, lines } = reallocated(state, r, accumulation, current.lines);
  const amendLines = amendLinesOf(state.def, current.lines, lines);
  return { key: r.key, amendsSeq: r.versionSeq, before, after: figures, lines: amendLines };
}

/** A release's lines for its new accumulation (see the module comment). */
function reallocated(
  state: AverageOpen,
  r: ReleaseState,
  accumulation: Accumulation,
  currentLines: AllocationLine[],
): { figures: ReleaseFigures; lines: AllocationLine[] } {
  if (accumulation.quantity === 0n)
    return { figures: { accumulation, averagePrice: r.averagePrice, residueMinor: 0n }, lines: [] };
  let lines = currentLines;
  if (accumulation.quantity !== r.accumulation.quantity) {
    const result = reallocate(state, currentLines, accumulation.quantity, r.seq);
    // The correction was checked against the order's target: a rejection here is a bug.
    invariant(result.ok, `release ${r.key}: ${result.ok ? '' : result.detail}`);
    lines = result.lines;
  }
  const priced = priceRelease(lines, accumulation, state.def.side);
  const figures = {
    accumulation,
    averagePrice: priced.averagePrice,
    residueMinor: priced.residueMinor,
  };
  return { figures, lines };
}

type AccumulatedEvent = Extract<BlockOrderEvent, { type: 'FillAccumulated' }>;
type AveragedAmendEvent = Extract<BlockOrderEvent, { type: 'AveragedFillAmended' }>;

const averageOf = (state: OpenState): AverageState => {
  invariant(state.average !== null, `${state.def.blockOrderId} is not an average-price order`);
  return state.average;
};

export function evolveAccumulated(state: OpenState, event: AccumulatedEvent): OpenState {
  const { fill, release } = event;
  invariant(fill.seq === state.lastFillSeq + 1, `fill seq ${fill.seq} after ${state.lastFillSeq}`);
  const avg = averageOf(state);
  invariant(!avg.fills.has(fill.fillId), `fill ${fill.fillId} is already taken`);
  const fills = avg.fills.set(fill.fillId, {
    fill,
    quantity: fill.quantity,
    price: fill.price,
    busted: false,
    releaseKey: null,
  });
  const next: OpenState = {
    ...state,
    filledQuantity: state.filledQuantity + fill.quantity,
    filledNotional: state.filledNotional + fill.quantity * fill.price,
    fills: state.fills + 1,
    lastFillSeq: fill.seq,
    average: {
      ...avg,
      fills,
      accumulation: accumulate(avg.accumulation, fill),
      accumulated: avg.accumulated.push(fill.fillId),
    },
  };
  if (release) return withRelease(next, release, fill.seq, fill);
  const pending = { seq: fill.seq, execution: fill, price: fill.price, lines: [], linesKey: null };
  return { ...next, pending: [...state.pending, pending] };
}

/**
 * Allocates a release at `seq` (the entry `execution` just applied): every
 * accumulated fill moves to the release, the accounts get its lines.
 */
export function withRelease(
  state: OpenState,
  release: AverageRelease,
  seq: number,
  execution: Entry,
): OpenState {
  const avg = averageOf(state);
  const { accumulation } = release.figures;
  // The whole accumulation, exactly: nothing is left behind or released twice.
  invariant(
    accumulation.quantity === avg.accumulation.quantity &&
      accumulation.cashMinor === avg.accumulation.cashMinor &&
      release.fillIds.join() === avg.accumulated.join(),
    `release ${release.key} is not the accumulation`,
  );
  const sum = release.lines.reduce((s, l) => s + l.quantity, 0n);
  invariant(sum === accumulation.quantity, `release ${release.key} lines sum to ${sum}`);
  const fills = avg.fills.withMutations((m) => {
    for (const id of release.fillIds) m.set(id, { ...m.get(id)!, releaseKey: release.key });
  });
  const releases = avg.releases.set(release.key, {
    ...release.figures,
    key: release.key,
    seq,
    versionSeq: seq,
  });
  const lines = release.lines.map((l) => ({ ...l, previousQuantity: 0n }));
  const moved = moveLines(state, lines, seq, false);
  const entry = { seq, execution, price: release.figures.averagePrice, linesKey: release.key };
  return withReleaseLines(state, moved, entry, {
    ...avg,
    fills,
    releases,
    accumulation: emptyAccumulation,
    accumulated: List(),
    releasedQuantity: avg.releasedQuantity + accumulation.quantity,
    residueMinor: avg.residueMinor + release.figures.residueMinor,
  });
}

/**
 * The order after a release's lines moved at `entry.seq` (a release, or an
 * amendment of one): each account's remaining and last seq, the new
 * average state, and the pending entry that carries the lines.
 */
function withReleaseLines(
  state: OpenState,
  moved: ReturnType<typeof moveLines>,
  entry: Omit<PendingFill, 'lines'>,
  average: AverageState,
): OpenState {
  invariant(entry.linesKey != null, `seq ${entry.seq}: release lines without their key`);
  return {
    ...state,
    remaining: moved.remaining,
    lastSeq: moved.lastSeq,
    average,
    pending: [...state.pending, { ...entry, lines: moved.pendingLines }],
  };
}

export function evolveAveragedAmend(state: OpenState, event: AveragedAmendEvent): OpenState {
  const { amendment: a, amended, change } = event;
  invariant(a.seq === state.lastFillSeq + 1, `amendment seq ${a.seq} after ${state.lastFillSeq}`);
  const avg = averageOf(state);
  const f = avg.fills.get(amended.fillId);
  invariant(
    f !== undefined && !f.busted && f.quantity === amended.quantity && f.price === amended.price,
    `${a.kind}: fill ${amended.fillId} is not as amended`,
  );
  const after =
    a.kind === 'CORRECTION'
      ? { quantity: a.quantity, price: a.price }
      : { quantity: 0n, price: f.price };
  const fills = avg.fills.set(f.fill.fillId, { ...f, ...after, busted: a.kind === 'BUST' });
  const counted = {
    ...state,
    filledQuantity: state.filledQuantity - f.quantity + after.quantity,
    filledNotional: state.filledNotional - f.quantity * f.price + after.quantity * after.price,
    busts: state.busts + (a.kind === 'BUST' ? 1 : 0),
    corrections: state.corrections + (a.kind === 'CORRECTION' ? 1 : 0),
    lastFillSeq: a.seq,
  };
  if (change === null) {
    invariant(
      f.releaseKey === null,
      `${a.kind} of released fill ${f.fill.fillId} without its release`,
    );
    const executedAtMs = f.fill.executedAtMs;
    let accumulation = unaccumulate(avg.accumulation, { ...amended, executedAtMs });
    if (after.quantity > 0n) accumulation = accumulate(accumulation, { ...after, executedAtMs });
    const accumulated =
      after.quantity > 0n ? avg.accumulated : avg.accumulated.filter((id) => id !== f.fill.fillId);
    const average = { ...avg, fills, accumulation, accumulated };
    // A correction that completed the order released the accumulation (completionRelease).
    if (event.release) return withRelease({ ...counted, average }, event.release, a.seq, a);
    const pending = { seq: a.seq, execution: a, price: after.price, lines: [], linesKey: null };
    return { ...counted, average, pending: [...state.pending, pending] };
  }
  invariant(event.release === undefined, `${a.kind}: a release change never releases`);
  return withChange(counted, { ...avg, fills }, event, change, f);
}

function withChange(
  state: OpenState,
  avg: AverageState,
  event: AveragedAmendEvent,
  change: ReleaseChange,
  f: AveragedFill,
): OpenState {
  const r = avg.releases.get(change.key);
  invariant(
    r !== undefined && f.releaseKey === change.key && r.versionSeq === change.amendsSeq,
    `release ${change.key} is not at seq ${change.amendsSeq}`,
  );
  const before = change.lines.reduce((s, l) => s + l.previousQuantity, 0n);
  const after = change.lines.reduce((s, l) => s + l.quantity, 0n);
  // Conservation: the lines are the whole release, before and after.
  invariant(
    before === r.accumulation.quantity && after === change.after.accumulation.quantity,
    `release ${change.key}: lines ${before} → ${after}`,
  );
  const seq = event.amendment.seq;
  const releases = avg.releases.set(r.key, { ...r, ...change.after, versionSeq: seq });
  const moved = moveLines(state, change.lines, seq, true);
  const amendedFill = {
    fill: f.fill,
    amendsSeq: r.versionSeq,
    previousQuantity: before,
    previousPrice: r.averagePrice,
  };
  const entry = {
    seq,
    execution: event.amendment,
    price: change.after.averagePrice,
    amended: amendedFill,
    linesKey: r.key,
  };
  return withReleaseLines(state, moved, entry, {
    ...avg,
    releases,
    releasedQuantity: avg.releasedQuantity - before + after,
    residueMinor: avg.residueMinor - r.residueMinor + change.after.residueMinor,
  });
}

/** The state as a snapshot holds it: the maps as entry lists, the list as an array. */
export function encodeOrder(d: BlockOrderState): unknown {
  if (d.status !== 'Open' || d.average === null) return d;
  const avg = d.average;
  const plain = {
    fills: [...avg.fills.entries()],
    releases: [...avg.releases.entries()],
    accumulated: avg.accumulated.toArray(),
  };
  return { ...d, average: { ...avg, ...plain } };
}

export function decodeOrder(data: unknown): BlockOrderState {
  const d = data as BlockOrderState;
  if (d.status !== 'Open' || !d.average) return d;
  const avg = d.average as unknown as {
    fills: [string, AveragedFill][];
    releases: [string, ReleaseState][];
    accumulated: string[];
  };
  invariant(
    Array.isArray(avg.fills) && Array.isArray(avg.releases) && Array.isArray(avg.accumulated),
    'average state snapshot',
  );
  const average = {
    ...d.average,
    fills: PMap(avg.fills),
    releases: PMap(avg.releases),
    accumulated: List(avg.accumulated),
  };
  return { ...d, average };
}
