/**
 * SERIALIZABLE transactions can abort with SQLSTATE 40001 on CockroachDB (and
 * on PostgreSQL under contention). The client must retry them: with backoff,
 * a bounded number of times.
 */

import { BlockfillError, ErrorCode } from '../actors/errors.ts';

export const SERIALIZATION_FAILURE = '40001';

export class RetriesExhaustedError extends BlockfillError {
  readonly attempts: number;
  constructor(attempts: number, cause: unknown) {
    super(
      ErrorCode.DbRetriesExhausted,
      `transaction still failed with SQLSTATE 40001 after ${attempts} attempts`,
      { cause },
    );
    this.name = 'RetriesExhaustedError';
    this.attempts = attempts;
  }
}

export function isSerializationFailure(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  const e = error as { code?: unknown; sqlState?: unknown; cause?: unknown };
  if (e.code === SERIALIZATION_FAILURE || e.sqlState === SERIALIZATION_FAILURE) return true;
  return e.cause !== undefined && e.cause !== error && isSerializationFailure(e.cause);
}

export interface RetryPolicy {
  retriesMax: number;
  backoffBaseMs: number;
  /** Called before each retry; for metrics and tests. */
  onRetry?: (attempt: number, error: unknown) => void;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export async function retrySerializable<T>(
  policy: RetryPolicy,
  attempt: () => Promise<T>,
): Promise<T> {
  for (let n = 0; ; n++) {
    try {
      return await attempt();
    } catch (error) {
      if (!isSerializationFailure(error)) throw error;
      if (n >= policy.retriesMax) throw new RetriesExhaustedError(n + 1, error);
      policy.onRetry?.(n + 1, error);
      // Full jitter: spreads competing retries apart.
      const capMs = policy.backoffBaseMs * 2 ** Math.min(n, 10);
      await sleep(Math.random() * capMs);
    }
  }
}
