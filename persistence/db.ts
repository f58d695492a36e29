/**
 * The database handle: MikroORM 7 on PostgreSQL or CockroachDB (both speak the
 * PostgreSQL wire protocol). Every write transaction runs SERIALIZABLE and is
 * retried on SQLSTATE 40001.
 */
import { Socket } from 'node:net';
import { MikroORM } from '@mikro-orm/postgresql';
import { CompiledQuery, type Kysely, type Transaction } from 'kysely';
import pg from 'pg';
import { BlockfillError, ErrorCode } from '../actors/errors.ts';
import { redactUrl, UNREACHABLE_ERRNOS } from './addresses.ts';
import { withTimeout } from './timeouts.ts';
import { entities } from './entities.ts';
import { retrySerializable, type RetryPolicy } from './retry.ts';

export interface DatabaseOptions {
  url: string;
  poolMax: number;
  retriesMax: number;
  retryBackoffMs: number;
  /** Bound on connecting at open, and again on the first query (default 5000). */
  connectTimeoutMs?: number;
}

export type Row = object;

export const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;

/** Opening the database failed for a reason the operator must fix (never transient). */
export class DatabaseStartupError extends BlockfillError {
  constructor(code: ErrorCode, message: string, cause?: unknown) {
    super(code, message, { cause, transient: false });
    this.name = 'DatabaseStartupError';
  }
}

/** SQLSTATEs that say which part of DATABASE_URL the server rejected. */
const DATABASE_MISSING = '3D000';
const AUTH_REJECTED: ReadonlySet<string> = new Set(['28000', '28P01']);

/** `error` as the start-up failure it means, by SQLSTATE or errno; other errors unchanged. */
function startupFailure(error: unknown, client: pg.Client, url: string): unknown {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code !== 'string') return error;
  const where = `DATABASE_URL=${redactUrl(url)}`;
  if (code === DATABASE_MISSING) {
    return new DatabaseStartupError(
      ErrorCode.DbMissing,
      `database "${client.database}" does not exist on the server at ${where}: ` +
        'create it, then run `npm run db:migrate`',
      error,
    );
  }
  if (AUTH_REJECTED.has(code)) {
    return new DatabaseStartupError(
      ErrorCode.DbAuthFailed,
      `the server at ${where} refused role "${client.user}" (SQLSTATE ${code}): ` +
        'check the role and its password',
      error,
    );
  }
  if (UNREACHABLE_ERRNOS.has(code)) {
    return new DatabaseStartupError(
      ErrorCode.DbUnreachable,
      `cannot reach the database server at ${where} (${code}): ` +
        'check that it runs and that host and port are right',
      error,
    );
  }
  return error;
}

/**
 * Connects once and runs a first query, each bounded by `timeoutMs`, so that
 * a wrong URL or a server that never answers fails start-up with a message
 * saying which, instead of a hang or a pool error much later.
 */
export async function probeDatabase(url: string, timeoutMs: number): Promise<void> {
  // Our own socket, so a silent server's connection can be cut at the bound.
  const socket = new Socket();
  const client = new pg.Client({ connectionString: url, stream: () => socket });
  client.on('error', () => undefined); // reported through connect/query; a late one must not crash
  const timedOut = (step: string) => () =>
    new DatabaseStartupError(
      ErrorCode.DbTimeout,
      `the database server at DATABASE_URL=${redactUrl(url)} did not ${step} within ` +
        `${timeoutMs} ms (DB_CONNECT_TIMEOUT_MS): check that host and port are a PostgreSQL server ` +
        'and that it is not overloaded',
    );
  try {
    await withTimeout(client.connect(), timeoutMs, timedOut('complete a connection'));
    await withTimeout(client.query('SELECT 1'), timeoutMs, timedOut('answer a first query'));
  } catch (error) {
    socket.destroy();
    throw startupFailure(error, client, url);
  }
  await client.end();
}

/**
 * The driver reports a lost or refused connection as a plain Error with no
 * SQLSTATE ("Connection terminated unexpectedly", a pool connect timeout).
 * Such an error is wrapped here, where it is thrown, as DB_UNAVAILABLE
 * (transient); errors with a SQLSTATE or an errno keep their code, and
 * programming errors (TypeError, RangeError ...) stay what they are.
 */
export function driverFailure(error: unknown): unknown {
  if (!(error instanceof Error) || error instanceof BlockfillError) return error;
  if (Object.getPrototypeOf(error) !== Error.prototype) return error;
  if ((error as { code?: unknown }).code !== undefined) return error;
  return new BlockfillError(ErrorCode.DbUnavailable, `database unavailable: ${error.message}`, {
    cause: error,
  });
}
export type Query = <R extends Row = Row>(sql: string, params?: readonly unknown[]) => Promise<R[]>;

export class Database {
  readonly orm: MikroORM;
  readonly retry: RetryPolicy;
  #serializationRetries = 0;

  private constructor(orm: MikroORM, options: DatabaseOptions) {
    this.orm = orm;
    this.retry = {
      retriesMax: options.retriesMax,
      backoffBaseMs: options.retryBackoffMs,
      onRetry: () => {
        this.#serializationRetries++;
      },
    };
  }

  /** Probes the server first (see probeDatabase), then opens the pool. */
  static async open(options: DatabaseOptions): Promise<Database> {
    await probeDatabase(options.url, options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS);
    const orm = await MikroORM.init({
      clientUrl: options.url,
      entities,
      pool: { min: 0, max: options.poolMax },
      debug: false,
      allowGlobalContext: false,
      ensureDatabase: false,
      discovery: { warnWhenNoEntities: false },
    });
    return new Database(orm, options);
  }

  /** How many 40001 retries this process has made; exposed for tests and metrics. */
  get serializationRetries(): number {
    return this.#serializationRetries;
  }

  /**
   * The hot paths (journal, snapshots, replay) use MikroORM's own Kysely client
   * with real bind parameters: MikroORM's `execute` inlines values into the SQL
   * text, which is slow for large multi-row inserts of binary payloads.
   * Placeholders are PostgreSQL style: $1, $2, ...
   */
  get #client(): Kysely<unknown> {
    return this.orm.em.getConnection().getClient();
  }

  #inFlight = 0;
  #idleWaiters: Array<() => void> = [];

  /**
   * Counts `work` as in flight until it settles: close() waits for it, since
   * MikroORM 7.2.1's close never returns while a pool connection is opening.
   */
  async track<T>(work: () => Promise<T>): Promise<T> {
    this.#inFlight++;
    try {
      return await work();
    } catch (error) {
      throw driverFailure(error);
    } finally {
      if (--this.#inFlight === 0) for (const w of this.#idleWaiters.splice(0)) w();
    }
  }

  /** One statement in its own implicit transaction. */
  query<T extends Row = Row>(sql: string, params: readonly unknown[] = []): Promise<T[]> {
    return this.track(async () => {
      const result = await this.#client.executeQuery<T>(CompiledQuery.raw(sql, [...params]));
      return result.rows as T[];
    });
  }

  /**
   * One write statement that is a whole transaction by itself (an insert that
   * reads nothing), retried on 40001 like a transaction: CockroachDB may abort
   * even an implicit transaction under contention.
   */
  statement(sql: string, params: readonly unknown[]): Promise<void> {
    return this.track(() =>
      retrySerializable(this.retry, async () => {
        await this.#client.executeQuery(CompiledQuery.raw(sql, [...params]));
      }),
    );
  }

  /**
   * Runs `work` in a SERIALIZABLE transaction and retries the whole
   * transaction on 40001. `work` must be safe to run more than once.
   */
  serializable<T>(work: (q: Query) => Promise<T>): Promise<T> {
    return this.track(() =>
      retrySerializable(this.retry, () =>
        this.#client
          .transaction()
          .setIsolationLevel('serializable')
          .execute((trx: Transaction<unknown>) =>
            work(async <R extends Row = Row>(sql: string, params: readonly unknown[] = []) => {
              const result = await trx.executeQuery<R>(CompiledQuery.raw(sql, [...params]));
              return result.rows as R[];
            }),
          ),
      ),
    );
  }

  async ping(): Promise<void> {
    await this.query('SELECT 1');
  }

  /** Waits (bounded) for in-flight work, then closes the pool (bounded too). */
  async close(timeoutMs = 5_000): Promise<void> {
    const bounded = (p: Promise<unknown>) =>
      Promise.race([p, new Promise((resolve) => setTimeout(resolve, timeoutMs).unref())]);
    if (this.#inFlight > 0)
      await bounded(new Promise<void>((resolve) => this.#idleWaiters.push(resolve)));
    await bounded(this.orm.close(true));
  }
}
