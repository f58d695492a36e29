/**
 * Coalesces the lookups made in one turn of the event loop into one query:
 * thousands of actors start at once in a burst, and a query each would
 * dominate start-up. `keysMax` bounds the IN list.
 */
export class LookupBatcher<V> {
  readonly #load: (ids: string[]) => Promise<Map<string, V>>;
  readonly #keysMax: number;
  #waiting = new Map<
    string,
    Array<{ resolve: (v: V | undefined) => void; reject: (e: unknown) => void }>
  >();
  #scheduled = false;

  constructor(load: (ids: string[]) => Promise<Map<string, V>>, keysMax: number) {
    this.#load = load;
    this.#keysMax = keysMax;
  }

  get(id: string): Promise<V | undefined> {
    return new Promise((resolve, reject) => {
      const waiters = this.#waiting.get(id);
      if (waiters) waiters.push({ resolve, reject });
      else this.#waiting.set(id, [{ resolve, reject }]);
      if (!this.#scheduled) {
        this.#scheduled = true;
        setImmediate(() => this.#flush());
      }
    });
  }

  #flush(): void {
    this.#scheduled = false;
    const all = this.#waiting;
    this.#waiting = new Map();
    const ids = [...all.keys()];
    for (let i = 0; i < ids.length; i += this.#keysMax) {
      const chunk = ids.slice(i, i + this.#keysMax);
      this.#load(chunk).then(
        (found) => {
          for (const id of chunk) for (const w of all.get(id) ?? []) w.resolve(found.get(id));
        },
        (error: unknown) => {
          for (const id of chunk) for (const w of all.get(id) ?? []) w.reject(error);
        },
      );
    }
  }
}
