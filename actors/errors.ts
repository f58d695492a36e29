/**
 * Errors that cross module boundaries carry a stable `name` and `code`, so the
 * API and the logs can map them without string matching on messages.
 */
export const ErrorCode = {
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
  /** Input broke a rule; `field` names the field, the message names the rule. */
  Validation: 'VALIDATION',
  /** A broken invariant: the process must not continue with this state. */
  Invariant: 'INVARIANT',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export class BlockfillError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'BlockfillError';
    this.code = code;
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

/** Exhaustiveness check for discriminated unions. */
export function assertNever(value: never, what = 'value'): never {
  throw new InvariantError(
    `unexpected ${what}: ${JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))}`,
  );
}
