/**
 * A bound on work in flight for the simulations' feeders: `slot()` waits while
 * `max` are unfinished, `done()` frees one, `idle()` waits for all. O(1) per
 * item (racing a set of promises would be O(n) per item).
 */
import { invariant } from '../actors/errors.ts';

export class InFlight {
  readonly #max: number;
  #count = 0;
  #waiters: Array<() => void> = [];
  #idle: Array<() => void> = [];

  constructor(max: number) {
    invariant(Number.isSafeInteger(max) && max >= 1, `in-flight bound ${max} must be >= 1`);
    this.#max = max;
  }

  async slot(): Promise<void> {
    while (this.#count >= this.#max)
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    this.#count++;
  }

  done(): void {
    this.#count--;
    invariant(this.#count >= 0, 'more done() than slot()');
    this.#waiters.shift()?.();
    if (this.#count === 0) for (const w of this.#idle.splice(0)) w();
  }

  async idle(): Promise<void> {
    if (this.#count === 0) return;
    await new Promise<void>((resolve) => this.#idle.push(resolve));
  }
}
