/**
 * The actor system of one process: a host for accounts and one for block
 * orders, on one journal, wired to each other.
 */
import { accountBehavior } from '../actors/account/shell.ts';
import type { AccountEvent, AccountState } from '../actors/account/decider.ts';
import type { BlockOrderEvent } from '../actors/block-order/decider.ts';
import { blockOrderBehavior, type BlockOrderShellState } from '../actors/block-order/shell.ts';
import type {
  AccountMessage,
  AllocationObserver,
  BlockOrderMessage,
  Clock,
  ReferencePort,
} from '../actors/protocol.ts';
import type { PersistentBehavior, Replyable } from '../actors/kernel.ts';
import { decodeVersioned, encodeVersioned } from '../persistence/codec.ts';
import type { Journal } from '../persistence/journal.ts';
import type { Config } from './config.ts';
import { ActorSystem, EntityHost, type HostDeps, type HostOptions } from './entity-host.ts';
import type { Faults } from './faults.ts';
import type { Logger } from './log.ts';

export interface Actors {
  system: ActorSystem;
  accounts: EntityHost<AccountState, AccountMessage, AccountEvent>;
  blockOrders: EntityHost<BlockOrderShellState, BlockOrderMessage, BlockOrderEvent>;
  /** Stops every actor and their timers, then the system. */
  close(): void;
}

const codec = { encode: encodeVersioned, decode: decodeVersioned };

export function hostOptionsOf(config: Config): HostOptions {
  return {
    idleMs: config.actorIdleMs,
    batchCommandsMax: config.actorBatchCommandsMax,
    mailboxMax: config.actorMailboxMax,
    snapshotEveryEvents: config.snapshotEveryEvents,
    snapshotsInFlightMax: 32,
    replayPageEvents: config.replayPageEvents,
    scheduledMax: 100_000,
    supervision: {
      crashesMax: config.supervisorCrashesMax,
      windowMs: config.supervisorWindowMs,
      backoffMinMs: config.supervisorBackoffMinMs,
      backoffMaxMs: config.supervisorBackoffMaxMs,
    },
  };
}

/** The behavior, throwing where the fault plan says (before it handles the message). */
function withFaults<S, C extends Replyable, E>(
  behavior: PersistentBehavior<S, C, E>,
  faults: Faults,
): PersistentBehavior<S, C, E> {
  return {
    ...behavior,
    receive(state, command, ctx) {
      faults.beforeReceive(behavior.kind, ctx.id);
      return behavior.receive(state, command, ctx);
    },
  };
}

export function startActors(
  config: Config,
  deps: {
    journal: Journal;
    reference: ReferencePort;
    clock: Clock;
    observer: AllocationObserver;
    log: Logger;
    /** Fault injection (tests and drills only); absent = none. */
    faults?: Faults;
    /** Told each durable batch (the live feed); absent = none. */
    onDurable?: HostDeps['onDurable'];
  },
  hostOptions: HostOptions = hostOptionsOf(config),
): Actors {
  const { journal, reference, clock, observer, log } = deps;
  const hostDeps: HostDeps = {
    codec,
    journal,
    log,
    ...(deps.onDurable ? { onDurable: deps.onDurable } : {}),
  };
  const faulty = <S, C extends Replyable, E>(b: PersistentBehavior<S, C, E>) =>
    deps.faults?.enabled ? withFaults(b, deps.faults) : b;
  const system = new ActorSystem(
    `blockfill-${process.pid}-${Math.random().toString(36).slice(2, 8)}`,
    { recoveryConcurrencyMax: config.recoveryConcurrencyMax },
  );
  const accounts = new EntityHost(
    system,
    faulty(accountBehavior({ reference, clock, observer })),
    hostDeps,
    hostOptions,
  );
  const blockOrders = new EntityHost(
    system,
    faulty(
      blockOrderBehavior({
        reference,
        executions: {
          executionAt: (blockOrderId, seq) => journal.executionAt(blockOrderId, seq),
          linesSetBy: async (key) => {
            const record = await journal.fillVersionRecord(key);
            if (!record) return undefined;
            return decodeVersioned(
              record.payload,
              `${record.key}#${record.seq}`,
            ) as BlockOrderEvent;
          },
        },
        clock,
        observer,
        accounts: { send: (id, message) => accounts.send(id, message) },
        redeliveryAttemptsMax: config.redeliveryAttemptsMax,
        redeliveryBackoffMs: config.redeliveryBackoffMs,
        outboxFillsMax: config.outboxFillsMax,
        onParked: (blockOrder, account, attempts) =>
          log.error('re-delivery to an account keeps failing: retrying at the slowest backoff', {
            blockOrder,
            account,
            attempts,
          }),
      }),
    ),
    hostDeps,
    hostOptions,
  );
  const close = () => {
    accounts.close();
    blockOrders.close();
    system.stop();
  };
  return { system, accounts, blockOrders, close };
}
