/**
 * The actor kernel without services: both entity hosts on an in-memory
 * journal and in-memory reference data. For tests that must run in
 * milliseconds (batching, ordering, recovery).
 */
import { accountBehavior } from '../../actors/account/shell.ts';
import { blockOrderBehavior } from '../../actors/block-order/shell.ts';
import type { Fill } from '../../actors/block-order/decider.ts';
import type {
  AccountMessage,
  AllocateFillReply,
  AllocationObserver,
  BlockOrderMessage,
  ViewReply,
} from '../../actors/protocol.ts';
import type { AccountView, BlockOrderView } from '../../actors/views.ts';
import { decodeVersioned, encodeVersioned } from '../../persistence/codec.ts';
import type { MemoryJournal } from '../../persistence/memory-journal.ts';
import type { SeedData } from '../../persistence/reference.ts';
import { memoryReference } from '../../simulations/memory-reference.ts';
import { ActorSystem, EntityHost } from '../../system/entity-host.ts';
import { createLogger } from '../../system/log.ts';

export interface Kernel {
  accounts: EntityHost<unknown, AccountMessage, unknown>;
  blockOrders: EntityHost<unknown, BlockOrderMessage, unknown>;
  allocate(fill: Fill): Promise<AllocateFillReply>;
  account(id: string): Promise<AccountView>;
  blockOrder(id: string): Promise<BlockOrderView>;
  stop(): void;
}

let systems = 0;

export function startKernel(
  journal: MemoryJournal,
  seed: SeedData,
  options: { observer?: AllocationObserver; snapshotEveryEvents?: number } = {},
): Kernel {
  const system = new ActorSystem(`kernel-test-${process.pid}-${++systems}`, {
    recoveryConcurrencyMax: 8,
  });
  const log = createLogger('silent', {});
  const codec = { encode: encodeVersioned, decode: decodeVersioned };
  const hostOptions = {
    idleMs: 60_000,
    batchCommandsMax: 64,
    mailboxMax: 10_000,
    snapshotEveryEvents: options.snapshotEveryEvents ?? 7,
    snapshotsInFlightMax: 8,
    replayPageEvents: 5,
    scheduledMax: 10_000,
    supervision: { crashesMax: 3, windowMs: 60_000, backoffMinMs: 1, backoffMaxMs: 5 },
  };
  const reference = memoryReference(seed);
  const observer = options.observer ?? { fillSettled: () => {}, accountLineDurable: () => {} };
  const clock = { nowMs: () => 1_763_650_000_000 };
  const deps = { codec, journal, log };
  const accounts = new EntityHost(
    system,
    accountBehavior({ reference, clock, observer }),
    deps,
    hostOptions,
  );
  const blockOrders = new EntityHost(
    system,
    blockOrderBehavior({
      reference,
      clock,
      observer,
      accounts: { send: (id, m) => accounts.send(id, m) },
      redeliveryAttemptsMax: 5,
      redeliveryBackoffMs: 1,
      outboxFillsMax: 1_000,
      onParked: () => {},
    }),
    deps,
    hostOptions,
  );
  const view = async <V>(reply: Promise<ViewReply<V>>): Promise<V> => {
    const r = await reply;
    if (r.type !== 'View') throw new Error(`no view: ${JSON.stringify(r)}`);
    return r.view;
  };
  return {
    accounts: accounts as unknown as Kernel['accounts'],
    blockOrders: blockOrders as unknown as Kernel['blockOrders'],
    allocate: (fill) =>
      blockOrders.ask(
        fill.blockOrderId,
        (replyTo) => ({ type: 'AllocateFill', fill, replyTo }),
        5_000,
      ),
    account: (id) => view(accounts.ask(id, (replyTo) => ({ type: 'GetView', replyTo }), 5_000)),
    blockOrder: (id) =>
      view(blockOrders.ask(id, (replyTo) => ({ type: 'GetView', replyTo }), 5_000)),
    stop: () => {
      accounts.close();
      blockOrders.close();
      system.stop();
    },
  };
}
