/**
 * The one table of error codes. Every error blockfill throws is a
 * BlockfillError: a stable `name`, a `code` from this table, and a
 * `transient` flag set where it is thrown (from the table's default unless
 * the thrower knows better). The API, the logs and supervision map errors by
 * code and flag, never by matching message strings.
 */
export const ErrorCode = {
  // Actors
  /** The actor did not answer an ask within its timeout. */
  ActorTimeout: 'ACTOR_TIMEOUT',
  /** The supervisor stopped the actor after too many crashes. */
  ActorStopped: 'ACTOR_STOPPED',
  /** The actor's mailbox is at its bound. */
  MailboxFull: 'MAILBOX_FULL',
  /** The actor crashed while handling the command (it resets and recovers). */
  ActorCrashed: 'ACTOR_CRASHED',
  /** The command could not be delivered to its actor. */
  Undeliverable: 'UNDELIVERABLE',
  /** A block order has its bound of fills awaiting their accounts: try the fill again later. */
  OutboxFull: 'OUTBOX_FULL',
  /** An actor kind has its bound of scheduled messages pending. */
  TimersFull: 'TIMERS_FULL',
  /** Input broke a rule; `field` names the field, the message names the rule. */
  Validation: 'VALIDATION',
  /** A broken invariant: the process must not continue with this state. */
  Invariant: 'INVARIANT',
  // Persistence
  /** Another writer owns the actor: the journal already holds that row. */
  JournalConflict: 'JOURNAL_CONFLICT',
  /** Too many rows wait to be written (the journal's bound). */
  JournalOverloaded: 'JOURNAL_OVERLOADED',
  /** A key's journal misses a sequence number. */
  JournalGap: 'JOURNAL_GAP',
  /** The journal was closed (shutdown). */
  JournalClosed: 'JOURNAL_CLOSED',
  /** Stored bytes carry a schema version this build cannot read. */
  SchemaVersionUnknown: 'SCHEMA_VERSION_UNKNOWN',
  /** Stored bytes are not valid msgpack. */
  DecodeFailed: 'DECODE_FAILED',
  /** A transaction kept failing with SQLSTATE 40001. */
  DbRetriesExhausted: 'DB_RETRIES_EXHAUSTED',
  /** The database could not be reached or dropped the connection. */
  DbUnavailable: 'DB_UNAVAILABLE',
  /** The schema lacks migrations: run `npm run db:migrate`. */
  SchemaNotMigrated: 'SCHEMA_NOT_MIGRATED',
  /** Start-up: the database server cannot be reached at DATABASE_URL's address. */
  DbUnreachable: 'DB_UNREACHABLE',
  /** Start-up: the server answers, but DATABASE_URL's database does not exist. */
  DbMissing: 'DB_MISSING',
  /** Start-up: the server refused DATABASE_URL's role or password. */
  DbAuthFailed: 'DB_AUTH_FAILED',
  /** Start-up: connecting or the first query took longer than its bound. */
  DbTimeout: 'DB_TIMEOUT',
  /** A fill id is already claimed by another execution (another order, seq or content). */
  ExecutionConflict: 'EXECUTION_CONFLICT',
  /** Fault injection (tests and drills only) failed this on purpose. */
  InjectedFault: 'INJECTED_FAULT',
  /** A fault was requested but FAULT_INJECTION is off. */
  FaultInjectionDisabled: 'FAULT_INJECTION_DISABLED',
  // System
  /** An environment variable is invalid. */
  ConfigInvalid: 'CONFIG_INVALID',
  /** PARTITIONS differs from the stream's partition count. */
  PartitionCountChanged: 'PARTITION_COUNT_CHANGED',
  /** Start-up: NATS_URL's server cannot be reached. */
  NatsUnreachable: 'NATS_UNREACHABLE',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** Codes that mean "the infrastructure is having a moment": worth retrying, never the input's fault. */
const TRANSIENT_CODES: ReadonlySet<ErrorCode> = new Set([
  ErrorCode.ActorTimeout,
  ErrorCode.TimersFull,
  // Another writer, or our own commit whose acknowledgement was lost with the
  // connection: recovering from the journal always resolves it.
  ErrorCode.JournalConflict,
  ErrorCode.MailboxFull,
  ErrorCode.OutboxFull,
  ErrorCode.JournalOverloaded,
  ErrorCode.JournalClosed,
  ErrorCode.DbRetriesExhausted,
  ErrorCode.DbUnavailable,
  // The input's fault, not the actor's: the actor resets (never stops for
  // it) and the consumer dead-letters the fill that re-used the id.
  ErrorCode.ExecutionConflict,
  ErrorCode.InjectedFault,
]);

export function isTransientCode(code: string): boolean {
  return TRANSIENT_CODES.has(code as ErrorCode);
}

export class BlockfillError extends Error {
  readonly code: ErrorCode;
  readonly transient: boolean;
  constructor(
    code: ErrorCode,
    message: string,
    options?: { cause?: unknown; transient?: boolean },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'BlockfillError';
    this.code = code;
    this.transient = options?.transient ?? TRANSIENT_CODES.has(code);
  }
}

export class ActorTimeoutError extends BlockfillError {
  constructor(actor: string, timeoutMs: number) {
    super(ErrorCode.ActorTimeout, `actor ${actor} did not answer within ${timeoutMs} ms`);
    this.name = 'ActorTimeoutError';
  }
}

export class ActorStoppedError extends BlockfillError {
  constructor(actor: string) {
    super(
      ErrorCode.ActorStopped,
      `actor ${actor} was stopped by its supervisor after repeated crashes`,
    );
    this.name = 'ActorStoppedError';
  }
}

export class MailboxFullError extends BlockfillError {
  constructor(actor: string, mailboxMax: number) {
    super(ErrorCode.MailboxFull, `actor ${actor} has ${mailboxMax} messages queued (its bound)`);
    this.name = 'MailboxFullError';
  }
}

export class ValidationError extends BlockfillError {
  readonly field: string;
  readonly rule: string;
  constructor(field: string, rule: string) {
    super(ErrorCode.Validation, `${field}: ${rule}`);
    this.name = 'ValidationError';
    this.field = field;
    this.rule = rule;
  }
}

export class InvariantError extends BlockfillError {
  constructor(message: string) {
    super(ErrorCode.Invariant, message);
    this.name = 'InvariantError';
  }
}

/** Crash on a broken invariant rather than continue with corrupt state. */
export function invariant(condition: unknown, message: string): asserts condition {
  if (!condition) throw new InvariantError(message);
}

/** A JSON.stringify replacer: bigints (money, quantities) as exact decimal strings. */
export const bigintsAsStrings = (_key: string, value: unknown): unknown =>
  typeof value === 'bigint' ? value.toString() : value;

/** Exhaustiveness check for discriminated unions. */
export function assertNever(value: never, what = 'value'): never {
  throw new InvariantError(`unexpected ${what}: ${JSON.stringify(value, bigintsAsStrings)}`);
}
