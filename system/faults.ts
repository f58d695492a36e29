/**
 * Fault injection, for tests and drills only: off unless FAULT_INJECTION=on,
 * and every request to inject is refused while it is off. It can make an
 * actor throw on its next N messages, fail the next N journal batches, and
 * slow every journal batch by X ms. Each plan is bounded.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { BlockfillError, ErrorCode, ValidationError } from '../actors/errors.ts';
import {
  FAULT_COUNT_MAX,
  FAULT_DELAY_MAX_MS,
  type FaultPlanView as FaultPlan,
  type FaultPort,
  type FaultRequestBody as FaultRequest,
} from '../api/ports.ts';

export class FaultInjectionDisabledError extends BlockfillError {
  constructor() {
    super(
      ErrorCode.FaultInjectionDisabled,
      'fault injection is disabled: start the service with FAULT_INJECTION=on (tests and drills only)',
    );
    this.name = 'FaultInjectionDisabledError';
  }
}

/** A request's count or delay, within 0..max (the API's schema holds to the same bounds). */
function intWithin(field: string, value: number, max: number): number {
  if (!Number.isSafeInteger(value) || value < 0 || value > max)
    throw new ValidationError(field, `must be an integer within 0..${max}`);
  return value;
}

export class Faults implements FaultPort {
  readonly enabled: boolean;
  #plan: FaultPlan = { actorThrows: [], journalFailures: 0, journalDelayMs: 0 };
  /** Faults that fired, for the evidence. */
  fired = 0;

  constructor(enabled: boolean) {
    this.enabled = enabled;
  }

  get plan(): FaultPlan {
    return structuredClone(this.#plan);
  }

  /** Adds to the plan; refused unless enabled. */
  inject(request: FaultRequest): FaultPlan {
    if (!this.enabled) throw new FaultInjectionDisabledError();
    const t = request.actorThrows;
    if (t) {
      const count = intWithin('actorThrows.count', t.count, FAULT_COUNT_MAX);
      if (this.#plan.actorThrows.length >= 100)
        throw new ValidationError('actorThrows', 'at most 100 actor faults at once');
      this.#plan.actorThrows.push({
        kind: t.kind,
        ...(t.id !== undefined ? { id: t.id } : {}),
        remaining: count,
        transient: t.transient ?? true,
      });
    }
    if (request.journalFailures !== undefined)
      this.#plan.journalFailures = intWithin(
        'journalFailures',
        request.journalFailures,
        FAULT_COUNT_MAX,
      );
    if (request.journalDelayMs !== undefined)
      this.#plan.journalDelayMs = intWithin(
        'journalDelayMs',
        request.journalDelayMs,
        FAULT_DELAY_MAX_MS,
      );
    return this.plan;
  }

  clear(): void {
    this.#plan = { actorThrows: [], journalFailures: 0, journalDelayMs: 0 };
  }

  /** Called before an actor handles a message: throws if a fault is planned for it. */
  beforeReceive(kind: string, id: string): void {
    if (!this.enabled || this.#plan.actorThrows.length === 0) return;
    const fault = this.#plan.actorThrows.find(
      (f) => f.remaining > 0 && f.kind === kind && (f.id === undefined || f.id === id),
    );
    if (!fault) return;
    fault.remaining--;
    this.#plan.actorThrows = this.#plan.actorThrows.filter((f) => f.remaining > 0);
    this.fired++;
    throw new BlockfillError(ErrorCode.InjectedFault, `injected fault in ${kind}/${id}`, {
      transient: fault.transient,
    });
  }

  /** Called before each journal batch: delays it, or fails it, as planned. */
  readonly beforeBatch = async (): Promise<void> => {
    if (!this.enabled) return;
    if (this.#plan.journalDelayMs > 0) await sleep(this.#plan.journalDelayMs);
    if (this.#plan.journalFailures > 0) {
      this.#plan.journalFailures--;
      this.fired++;
      throw new BlockfillError(ErrorCode.InjectedFault, 'injected journal batch failure');
    }
  };
}
