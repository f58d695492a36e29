/**
 * Actor management for operators (in the spirit of Akka's management
 * endpoints): counts per kind, one actor's state, and a restart of an actor
 * its supervisor stopped. Reading a view of an actor that is not live wakes
 * it (recovery from snapshot and journal), like any message.
 */
import { assertNever } from '../actors/errors.ts';
import type {
  ActorKind,
  ActorKindStats,
  ActorStatusView,
  ActorsPort,
  InspectionPort,
} from '../api/ports.ts';
import type { EntityHost } from './entity-host.ts';

type AnyHost = EntityHost<unknown, never, unknown>;

export interface ActorAdminDeps {
  accounts: Pick<
    AnyHost,
    | 'liveActors'
    | 'passivatedActors'
    | 'stoppedActors'
    | 'mailboxDepths'
    | 'crashCount'
    | 'actorState'
    | 'restart'
  >;
  blockOrders: ActorAdminDeps['accounts'];
  inspection: Pick<InspectionPort, 'account' | 'blockOrder'>;
}

function hostOf(deps: ActorAdminDeps, kind: ActorKind): ActorAdminDeps['accounts'] {
  switch (kind) {
    case 'account':
      return deps.accounts;
    case 'block-order':
      return deps.blockOrders;
    default:
      return assertNever(kind, 'actor kind');
  }
}

function statsOf(deps: ActorAdminDeps, kind: ActorKind): ActorKindStats {
  const host = hostOf(deps, kind);
  const depths = host.mailboxDepths();
  return {
    kind,
    live: host.liveActors(),
    passivated: host.passivatedActors(),
    stopped: host.stoppedActors().length,
    mailboxDepth: depths.total,
    mailboxDepthMax: depths.max,
    restarts: host.crashCount,
  };
}

async function status(deps: ActorAdminDeps, kind: ActorKind, id: string): Promise<ActorStatusView> {
  const before = hostOf(deps, kind).actorState(id);
  if (before.state === 'STOPPED') return { kind, id, ...before, view: null };
  const view =
    kind === 'account' ? await deps.inspection.account(id) : await deps.inspection.blockOrder(id);
  // The state as it was asked: a read wakes a passivated actor.
  return { kind, id, ...before, view: (view as Record<string, unknown> | undefined) ?? null };
}

export function actorAdmin(deps: ActorAdminDeps): ActorsPort {
  return {
    stats: () => [statsOf(deps, 'account'), statsOf(deps, 'block-order')],
    status: (kind, id) => status(deps, kind, id),
    restart: (kind, id) => hostOf(deps, kind).restart(id),
  };
}
