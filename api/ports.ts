/**
 * What the API needs from the running system: the port the composition root
 * (system/inspection.ts) implements. The views themselves are the actors'.
 */
import type { AccountView, BlockOrderView } from '../actors/views.ts';

export interface ReadinessCheck {
  ok: boolean;
  detail?: string;
}

export interface Readiness {
  ready: boolean;
  checks: { database: ReadinessCheck; nats: ReadinessCheck; consumer: ReadinessCheck };
  /** Actors stopped by a supervisor after repeated crashes, by path. */
  stoppedActors: string[];
}

/** What the API needs from the running system. */
export interface InspectionPort {
  /** undefined when no such account exists (404). */
  account(id: string): Promise<AccountView | undefined>;
  /** undefined when no such block order exists (404). */
  blockOrder(id: string): Promise<BlockOrderView | undefined>;
  readiness(): Promise<Readiness>;
}
