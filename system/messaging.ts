/**
 * Telling and asking actors. A reference is either a live entity's (nact
 * delivers it), a passivated entity's (its host respawns it: a late reply
 * must not be dropped), or a reply slot of an ask (resolves a promise, with
 * no temporary actor).
 */
import { ActorTimeoutError, invariant } from '../actors/errors.ts';
import type { Ref } from '../actors/kernel.ts';
import { dispatchTo, entityAddress } from './nact-adapter.ts';

/** The reply slot of one ask: the first message resolves it; later ones are ignored. */
class ReplySlot {
  readonly deliver: (message: unknown) => void;
  constructor(deliver: (message: unknown) => void) {
    this.deliver = deliver;
  }
}

export interface EntitySender {
  send(id: string, message: never): void;
}

/** Hosts by actor-system name and group name, to respawn a passivated entity on a message. */
const hosts = new Map<string, Map<string, EntitySender>>();

export function registerHost(systemName: string, group: string, host: EntitySender): void {
  const bySystem = hosts.get(systemName) ?? new Map<string, EntitySender>();
  invariant(!bySystem.has(group), `a host for ${group} already runs in ${systemName}`);
  bySystem.set(group, host);
  hosts.set(systemName, bySystem);
}

export function unregisterHosts(systemName: string): void {
  hosts.delete(systemName);
}

/** Delivers `message` to `ref`; returns false if nobody can take it (its system is gone). */
export function tell<M>(ref: Ref<M>, message: M): boolean {
  if (ref instanceof ReplySlot) {
    ref.deliver(message);
    return true;
  }
  if (dispatchTo(ref, message)) return true;
  const address = entityAddress(ref);
  const host = address && hosts.get(address.systemName)?.get(address.group);
  if (!host || !address) return false;
  host.send(address.id, message as never);
  return true;
}

/**
 * Sends the command `build` makes (with a reply slot as its replyTo) through
 * `send`, and resolves with the first reply; rejects with ActorTimeoutError
 * after `timeoutMs`.
 */
export function ask<M, R>(
  send: (message: M) => void,
  build: (replyTo: Ref<R>) => M,
  timeoutMs: number,
  label: string,
): Promise<R> {
  invariant(timeoutMs > 0, 'an ask needs a positive timeout');
  return new Promise<R>((resolve, reject) => {
    let done = false;
    const timer = setTimeout(() => {
      done = true;
      reject(new ActorTimeoutError(label, timeoutMs));
    }, timeoutMs);
    const slot = new ReplySlot((message) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve(message as R);
    });
    try {
      send(build(slot as Ref<R>));
    } catch (error) {
      done = true;
      clearTimeout(timer);
      reject(error as Error);
    }
  });
}
