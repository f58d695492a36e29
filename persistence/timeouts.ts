/** One bound on a wait, for every layer (no dependencies). */

/**
 * `work`, or the error `timedOut()` makes once `timeoutMs` has passed; the
 * timer is cleared either way and never holds the process open.
 */
export function withTimeout<T>(
  work: Promise<T>,
  timeoutMs: number,
  timedOut: () => Error,
): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(timedOut()), timeoutMs);
    timer.unref();
  });
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}

/** The usual error: "<what> took longer than <ms> ms". */
export const tookLonger = (what: string, ms: number) => (): Error =>
  new Error(`${what} took longer than ${ms} ms`);
