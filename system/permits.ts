/**
 * A counting semaphore: at most `permitsMax` holders at once, the rest queue
 * in order. Bounds in-flight fills (the consumer), concurrent recoveries (the
 * host) and the simulations' feeders.
 */
import { invariant } from '../actors/errors.ts';

export class Permits {
  #available: number;
  readonly #permitsMax: number;
  readonly #waiters: Array<() => void> = [];
  readonly #idle: Array<() => void> = [];

  constructor(permitsMax: number) {
    invariant(Number.isSafeInteger(permitsMax) && permitsMax >= 1, `${permitsMax} permits`);
    this.#available = permitsMax;
    this.#permitsMax = permitsMax;
  }

  get available(): number {
    return this.#available;
  }

  async acquire(): Promise<void> {
    if (this.#available > 0) {
      this.#available--;
      return;
    }
    await new Promise<void>((resolve) => this.#waiters.push(resolve));
  }

  release(): void {
    const next = this.#waiters.shift();
    if (next) return next();
    this.#available++;
    invariant(this.#available <= this.#permitsMax, 'a permit was released twice');
    if (this.#available === this.#permitsMax) for (const w of this.#idle.splice(0)) w();
  }

  /** Runs `work` holding a permit; the permit is released however it ends. */
  async with<T>(work: () => Promise<T>): Promise<T> {
    await this.acquire();
    try {
      return await work();
    } finally {
      this.release();
    }
  }

  /** Resolves once every permit is back. */
  async idle(): Promise<void> {
    if (this.#available === this.#permitsMax) return;
    await new Promise<void>((resolve) => this.#idle.push(resolve));
  }
}
