/** Small helpers shared by the tests (no services involved). */
import type { Test } from 'tap';
import type { Fill } from '../../actors/block-order/decider.ts';
import { InvariantError } from '../../actors/errors.ts';

/** The error `fn` throws; a failed assertion (and undefined) when it returns. */
export function thrown(t: Test, fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  t.fail('expected a throw');
  return undefined;
}

/** `fn` crashes on a broken invariant whose message matches. */
export function expectInvariant(t: Test, fn: () => unknown, message: RegExp): void {
  const error = thrown(t, fn);
  t.type(error, InvariantError);
  t.match(error, { code: 'INVARIANT', message });
}

export interface Deferred<T> {
  promise: Promise<T>;
  resolve: (value: T) => void;
}

/** A promise resolved from outside: to interleave concurrent work without sleeps. */
export function deferred<T = void>(): Deferred<T> {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((res) => {
    resolve = res;
  });
  return { promise, resolve };
}

/** 101.25 in fixed point (6 decimals). */
export const TEST_PRICE = 101_250_000n;

/** A fill of smallSeed()'s BUY1 (override anything). */
export function testFill(seq: number, quantity: bigint, overrides: Partial<Fill> = {}): Fill {
  return {
    fillId: `F${seq}`,
    blockOrderId: 'BUY1',
    seq,
    quantity,
    price: TEST_PRICE,
    venue: 'XNYS',
    executedAtMs: 1_000 * seq,
    ...overrides,
  };
}
