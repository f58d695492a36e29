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
import { decodeVersioned, encodeVersioned } from '../persistence/codec.ts';
import type { Journal } from '../persistence/journal.ts';
import type { Config } from './config.ts';
import { ActorSystem, EntityHost, type HostOptions } from './entity-host.ts';
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

export function startActors(
  config: Config,
  deps: {
    journal: Journal;
    reference: ReferencePort;
    clock: Clock;
    observer: AllocationObserver;
    log: Logger;
  },
  hostOptions: HostOptions = hostOptionsOf(config),
): Actors {
  const { journal, reference, clock, observer, log } = deps;
  const system = new ActorSystem(
    `blockfill-${process.pid}-${Math.random().toString(36).slice(2, 8)}`,
    { recoveryConcurrencyMax: config.recoveryConcurrencyMax },
  );
  const accounts = new EntityHost(
    system,
    accountBehavior({ reference, clock, observer }),
    { codec, journal, log },
    hostOptions,
  );
  const blockOrders = new EntityHost(
    system,
    blockOrderBehavior({
      reference,
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
    { codec, journal, log },
    hostOptions,
  );
  const close = () => {
    accounts.close();
    blockOrders.close();
    system.stop();
  };
  return { system, accounts, blockOrders, close };
}
