/**
 * Seeded random streams for the trading-day generator. Every entity draws
 * from its own stream, keyed by (seed, stream, index), so entity i is
 * produced without producing 0..i-1: that is what lets 1,000,000 accounts
 * stream one at a time and still be the same accounts on every run.
 */
import { invariant } from '../../actors/errors.ts';
import { prng } from '../scenario.ts';

/** One stream per kind of entity, so adding a kind never shifts another's draws. */
export const Stream = {
  Security: 1,
  Market: 2,
  Model: 3,
  Account: 4,
  /** Per block order of a day's tape: complete or not, overfill or not, where it stops. */
  TapeOrder: 5,
  /** Per block order of a day's tape: fill sizes. */
  TapeSize: 6,
  /** Per block order of a day's tape: prices and venues. */
  TapePrint: 7,
  /** Per day: which order's next fill the tape publishes. */
  TapeInterleave: 8,
  /** Per day: which fills are busted or corrected, how, and which orders cancelled. */
  TapeAmend: 9,
} as const;
export type Stream = (typeof Stream)[keyof typeof Stream];

export interface Rng {
  /** Uniform in [0, 1). */
  unit(): number;
  /** Uniform integer in [min, max], both inclusive. */
  int(min: number, max: number): number;
  /** True with probability bps / 10,000. */
  chance(bps: number): boolean;
}

/** murmur3's finaliser: spreads every input bit over the output. */
function fmix32(input: number): number {
  let h = input >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The 32-bit seed of entity `index` of `stream`. */
export function streamSeed(seed: number, stream: Stream, index: number): number {
  invariant(Number.isSafeInteger(seed) && seed >= 0, `streamSeed: bad seed ${seed}`);
  invariant(
    Number.isSafeInteger(index) && index >= 0 && index <= 0xffffffff,
    `streamSeed: bad index ${index}`,
  );
  // The high half of a seed above 2^32 still counts (Math.floor: no 32-bit truncation).
  const high = Math.floor(seed / 0x1_0000_0000);
  return fmix32(fmix32(fmix32(seed ^ fmix32(high)) ^ stream) + index);
}

/** A random stream for entity `index` of `stream`. */
export function rngAt(seed: number, stream: Stream, index: number): Rng {
  const next = prng(streamSeed(seed, stream, index));
  const int = (min: number, max: number): number => {
    invariant(Number.isSafeInteger(min) && Number.isSafeInteger(max), 'int: bounds not integers');
    invariant(min <= max, `int: min ${min} > max ${max}`);
    return min + Math.floor(next() * (max - min + 1));
  };
  return { unit: next, int, chance: (bps) => int(0, 9_999) < bps };
}
