/**
 * The only file that touches nact (7.6.2, unmaintained) and its internals.
 * nact is the actor runtime: mailboxes, one message at a time per actor,
 * idle shutdown, reset/stop on a crash. Persistence is ours (entity-host.ts);
 * nact's persistent actors are not used.
 *
 * Internals relied on (test/nact-adapter.test.ts fails loudly if they change):
 * - `nact/lib/system-map.js` `find(systemName, ref)` returns the concrete
 *   actor, whose `mailbox` is a denque (`length`, `shift()`), whose `busy` is
 *   true while its function runs, and whose `children` is a Map by name;
 * - a crash's supervision context carries `mailbox` (the queued messages)
 *   and the `reset` / `stop` decisions; reset re-runs `initialStateFunc` and
 *   goes on with the next queued message; stop drops the mailbox;
 * - a reference is `{ type: 'actor', system: { name }, path: { parts } }`.
 */
import nact from 'nact';
import systemMap from 'nact/lib/system-map.js';
import { invariant } from '../actors/errors.ts';

interface ConcreteActor {
  stopped: boolean;
  busy: boolean;
  reference: unknown;
  stop(): void;
  dispatch(message: unknown): void;
  mailbox: { length: number; shift(): { message: unknown } | undefined };
  children: Map<string, ConcreteActor>;
}

interface NactRef {
  type?: string;
  system?: { name?: string };
  path?: { parts?: string[] };
}

/** A live actor, as the host needs to see it. */
export interface LiveActor {
  readonly ref: unknown;
  readonly stopped: boolean;
  readonly busy: boolean;
  readonly queued: number;
  /** Removes and returns up to `max` queued messages, oldest first (mailbox batching). */
  takeQueued(max: number): unknown[];
  stop(): void;
}

/** A view of a concrete actor; one per actor (the host looks actors up on every message). */
class LiveView implements LiveActor {
  readonly #concrete: ConcreteActor;
  constructor(concrete: ConcreteActor) {
    this.#concrete = concrete;
  }
  get ref(): unknown {
    return this.#concrete.reference;
  }
  get stopped(): boolean {
    return this.#concrete.stopped;
  }
  get busy(): boolean {
    return this.#concrete.busy;
  }
  get queued(): number {
    return this.#concrete.mailbox.length;
  }
  takeQueued(max: number): unknown[] {
    const out: unknown[] = [];
    const mailbox = this.#concrete.mailbox;
    while (out.length < max && mailbox.length > 0) {
      const next = mailbox.shift();
      if (next) out.push(next.message);
    }
    return out;
  }
  stop(): void {
    this.#concrete.stop();
  }
}

const views = new WeakMap<ConcreteActor, LiveActor>();

function live(concrete: ConcreteActor): LiveActor {
  let view = views.get(concrete);
  if (!view) {
    view = new LiveView(concrete);
    views.set(concrete, view);
  }
  return view;
}

export const CrashDecision = { Reset: 'reset', Stop: 'stop' } as const;
export type CrashDecision = (typeof CrashDecision)[keyof typeof CrashDecision];

export function startSystem(name: string): unknown {
  invariant(name.length > 0, 'an actor system needs a name');
  return (nact.start as (...args: unknown[]) => unknown)({ name });
}

export function stopSystem(systemRef: unknown): void {
  nact.stop(systemRef as never);
}

/** A parent for one kind of entity: its children are the entities. */
export function spawnGroup(systemRef: unknown, name: string): unknown {
  return nact.spawnStateless(systemRef as never, () => undefined, name);
}

function concreteOf(ref: unknown): ConcreteActor | undefined {
  const r = ref as NactRef;
  if (r?.type !== 'actor' || !r.system?.name) return undefined;
  return systemMap.find(r.system.name, ref) as ConcreteActor | undefined;
}

/** The live child `id` of a group, if any. */
export function childOf(groupRef: unknown, id: string): LiveActor | undefined {
  const child = concreteOf(groupRef)?.children.get(id);
  return child && !child.stopped ? live(child) : undefined;
}

/** Queued messages over a group's live children: the total and the deepest mailbox. */
export function mailboxDepths(groupRef: unknown): { total: number; max: number } {
  let total = 0;
  let max = 0;
  for (const child of concreteOf(groupRef)?.children.values() ?? []) {
    if (child.stopped) continue;
    const depth = child.mailbox.length;
    total += depth;
    if (depth > max) max = depth;
  }
  return { total, max };
}

export function childCount(groupRef: unknown): number {
  return concreteOf(groupRef)?.children.size ?? 0;
}

/**
 * Stops every child of a group (nact's recursive stop misses grandchildren)
 * and returns the messages that were still queued, so they can be answered.
 */
export function stopChildren(groupRef: unknown): unknown[] {
  const group = concreteOf(groupRef);
  const queued: unknown[] = [];
  if (!group) return queued;
  for (const child of [...group.children.values()]) {
    for (const m of live(child).takeQueued(Number.MAX_SAFE_INTEGER)) queued.push(m);
    child.stop();
  }
  return queued;
}

export function liveActor(ref: unknown): LiveActor | undefined {
  const concrete = concreteOf(ref);
  return concrete && !concrete.stopped ? live(concrete) : undefined;
}

/** What every entity of one kind runs; shared by all of them (an actor costs no closures of its own). */
export interface EntityRuntime<S> {
  initialState(): S;
  handle(state: S, message: unknown, id: string, self: unknown): Promise<S>;
  /** Decides after a crash; `queued` are the messages waiting in the mailbox. */
  onCrash(id: string, error: Error, queued: unknown[]): Promise<CrashDecision>;
}

/** nact's per-actor functions, made once per kind: they find the entity's id in nact's context. */
export interface EntityKind {
  readonly f: unknown;
  readonly initialStateFunc: () => unknown;
  readonly onCrash: unknown;
}

export function entityKind<S>(runtime: EntityRuntime<S>): EntityKind {
  type Ctx = { self: unknown; name: string };
  type CrashCtx = Ctx & { reset: symbol; stop: symbol; mailbox?: Array<{ message: unknown }> };
  return {
    f: (state: S, message: unknown, ctx: Ctx) => runtime.handle(state, message, ctx.name, ctx.self),
    initialStateFunc: () => runtime.initialState(),
    onCrash: async (_message: unknown, error: Error, ctx: CrashCtx) => {
      const queued = (ctx.mailbox ?? []).map((m) => m.message);
      const decision = await runtime.onCrash(ctx.name, error, queued);
      return decision === CrashDecision.Stop ? ctx.stop : ctx.reset;
    },
  };
}

export function spawnEntity(
  groupRef: unknown,
  id: string,
  kind: EntityKind,
  idleMs: number,
): unknown {
  invariant(idleMs > 0, 'entities passivate after a positive idle time');
  return nact.spawn(groupRef as never, kind.f as never, id, {
    initialStateFunc: kind.initialStateFunc,
    shutdownAfter: idleMs,
    onCrash: kind.onCrash,
  } as never);
}

/** The group name and entity id a reference points to, if it is an entity's. */
export function entityAddress(
  ref: unknown,
): { systemName: string; group: string; id: string } | undefined {
  const r = ref as NactRef;
  if (r?.type !== 'actor' || !r.system?.name) return undefined;
  const [group, id, ...rest] = r.path?.parts ?? [];
  if (group === undefined || id === undefined || rest.length > 0) return undefined;
  return { systemName: r.system.name, group, id };
}

/** Delivers to a live actor; false if there is none (stopped, passivated or not an actor ref). */
export function dispatchTo(ref: unknown, message: unknown): boolean {
  const concrete = concreteOf(ref);
  if (!concrete || concrete.stopped) return false;
  concrete.dispatch(message);
  return true;
}
