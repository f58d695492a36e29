/**
 * Stream shapes: when, in ms from the start of the run, the k-th fill of the
 * tape is sent. A shape is a piecewise-constant rate (fills per second); the
 * k-th fill (0-based) goes at the time t_k where the cumulative rate reaches
 * k, so fill 0 goes at 0 and n fills at X/s take n/X s.
 *
 * - STEADY: X fills/s throughout.
 * - BURST: X fills/s, and every `periodSec` a burst of `factor` × X for
 *   `burstSec` (the burst opens each period).
 * - AUCTIONS: a U-shaped day: the first and the last `peakBps` of the run go
 *   at `factor` × X, the middle at X (the open and close auctions).
 *
 * The schedule is a function of (shape, n, k): nothing is stored per fill.
 * Floats are used here only with + - * / (bit-identical everywhere); offsets
 * are floored to whole ms, so they are non-decreasing in k. Sending "as fast
 * as possible" is the publisher's choice (TapeOptions.asFastAsPossible): the
 * schedule stays what market time is derived from.
 */
import { assertNever, invariant } from '../../actors/errors.ts';

export type StreamShape =
  | { kind: 'STEADY'; ratePerSec: number }
  | { kind: 'BURST'; ratePerSec: number; factor: number; burstSec: number; periodSec: number }
  | { kind: 'AUCTIONS'; ratePerSec: number; factor: number; peakBps: number };

export const SHAPE_LIMITS = {
  ratePerSecMax: 10_000_000,
  factorMax: 1_000,
  periodSecMax: 86_400,
  /** Each of the two auction peaks: at most 40 % of the run, so a middle remains. */
  peakBpsMax: 4_000,
} as const;

export interface Schedule {
  shape: StreamShape;
  fills: number;
  /** When fill k (0-based, < fills) is sent, in ms from the start of the run. */
  offsetMsOf(k: number): number;
  /** Exact (unfloored) seconds of fill k: what market time is scaled from. */
  offsetSecOf(k: number): number;
  /** The run's length: when fill `fills` would go, in seconds (> 0 unless no fills). */
  durationSec: number;
}

const isIn = (x: number, min: number, max: number): boolean =>
  Number.isFinite(x) && x >= min && x <= max;

export function checkShape(shape: StreamShape): void {
  const L = SHAPE_LIMITS;
  invariant(isIn(shape.ratePerSec, 1e-3, L.ratePerSecMax), `shape: ratePerSec out of range`);
  switch (shape.kind) {
    case 'STEADY':
      return;
    case 'BURST':
      invariant(isIn(shape.factor, 1, L.factorMax), `shape: factor 1..${L.factorMax}`);
      invariant(isIn(shape.periodSec, 1e-3, L.periodSecMax), 'shape: periodSec out of range');
      invariant(isIn(shape.burstSec, 0, shape.periodSec), 'shape: burstSec 0..periodSec');
      return;
    case 'AUCTIONS':
      invariant(isIn(shape.factor, 1, L.factorMax), `shape: factor 1..${L.factorMax}`);
      invariant(
        Number.isSafeInteger(shape.peakBps) && isIn(shape.peakBps, 0, L.peakBpsMax),
        `shape: peakBps 0..${L.peakBpsMax}`,
      );
      return;
    default:
      return assertNever(shape, 'stream shape');
  }
}

/** Seconds of fill k for a burst shape: whole periods, then inside the burst or after it. */
function burstSec(s: Extract<StreamShape, { kind: 'BURST' }>, k: number): number {
  const fast = s.ratePerSec * s.factor;
  const inBurst = fast * s.burstSec;
  const perPeriod = inBurst + s.ratePerSec * (s.periodSec - s.burstSec);
  const periods = Math.floor(k / perPeriod);
  const rest = k - periods * perPeriod;
  const within = rest < inBurst ? rest / fast : s.burstSec + (rest - inBurst) / s.ratePerSec;
  return periods * s.periodSec + within;
}

/** Seconds of fill k of n for the U shape: the run's length follows from n. */
function auctionsSec(s: Extract<StreamShape, { kind: 'AUCTIONS' }>, n: number, k: number): number {
  const peak = s.peakBps / 10_000;
  const fast = s.ratePerSec * s.factor;
  // n = fast * peak * D * 2 + rate * (1 - 2 peak) * D
  const durationSec = n / (2 * peak * fast + (1 - 2 * peak) * s.ratePerSec);
  const inPeak = fast * peak * durationSec; // fills in each peak
  if (k <= inPeak) return k / fast;
  if (k <= n - inPeak) return peak * durationSec + (k - inPeak) / s.ratePerSec;
  return (1 - peak) * durationSec + (k - (n - inPeak)) / fast;
}

function secOf(shape: StreamShape, n: number, k: number): number {
  switch (shape.kind) {
    case 'STEADY':
      return k / shape.ratePerSec;
    case 'BURST':
      return burstSec(shape, k);
    case 'AUCTIONS':
      return auctionsSec(shape, n, k);
    default:
      return assertNever(shape, 'stream shape');
  }
}

/** The send schedule of `fills` fills under `shape`. */
export function scheduleOf(shape: StreamShape, fills: number): Schedule {
  checkShape(shape);
  invariant(Number.isSafeInteger(fills) && fills >= 0, `scheduleOf: bad fills ${fills}`);
  const offsetSecOf = (k: number): number => {
    invariant(Number.isSafeInteger(k) && k >= 0 && k < fills, `offsetOf: ${k} of ${fills}`);
    return secOf(shape, fills, k);
  };
  return {
    shape,
    fills,
    offsetSecOf,
    offsetMsOf: (k) => Math.floor(offsetSecOf(k) * 1_000),
    durationSec: secOf(shape, fills, fills),
  };
}
