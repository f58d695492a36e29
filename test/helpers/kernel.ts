/**
 * The actor kernel without services: both entity hosts on an in-memory
 * journal and in-memory reference data, wired as the service wires them.
 * For tests that must run in milliseconds (batching, ordering, recovery).
 */
import type { Fill } from '../../actors/block-order/decider.ts';
import type {
  AccountMessage,
  AllocateFillReply,
  AllocationObserver,
  BlockOrderMessage,
  ReferencePort,
  ViewReply,
} from '../../actors/protocol.ts';
import type { AccountView, BlockOrderActorView } from '../../actors/views.ts';
import type { MemoryJournal } from '../../persistence/memory-journal.ts';
import type { SeedData } from '../../persistence/reference.ts';
import { memoryReference } from '../../simulations/memory-reference.ts';
import { hostOptionsOf, startActors } from '../../system/actors.ts';
import { loadConfig } from '../../system/config.ts';
import type { EntityHost } from '../../system/entity-host.ts';
import { createLogger } from '../../system/log.ts';

export interface Kernel {
  accounts: EntityHost<unknown, AccountMessage, unknown>;
  blockOrders: EntityHost<unknown, BlockOrderMessage, unknown>;
  allocate(fill: Fill): Promise<AllocateFillReply>;
  account(id: string): Promise<AccountView>;
  blockOrder(id: string): Promise<BlockOrderActorView>;
  stop(): void;
}

export function startKernel(
  journal: MemoryJournal,
  seed: SeedData,
  options: {
    observer?: AllocationObserver;
    snapshotEveryEvents?: number;
    /** Wrap the reference data (to inject faults). */
    reference?: (base: ReferencePort) => ReferencePort;
  } = {},
): Kernel {
  const config = loadConfig({
    LOG_LEVEL: 'silent',
    REDELIVERY_BACKOFF_MS: '1',
    OUTBOX_FILLS_MAX: '1000',
    RECOVERY_CONCURRENCY_MAX: '8',
  });
  const hostOptions = {
    ...hostOptionsOf(config),
    idleMs: 60_000,
    batchCommandsMax: 64,
    snapshotEveryEvents: options.snapshotEveryEvents ?? 7,
    replayPageEvents: 5,
    supervision: { crashesMax: 3, windowMs: 60_000, backoffMinMs: 1, backoffMaxMs: 5 },
  };
  const observer = options.observer ?? { fillSettled: () => {}, accountLineDurable: () => {} };
  const { accounts, blockOrders, close } = startActors(
    config,
    {
      journal,
      reference: (options.reference ?? ((r) => r))(memoryReference(seed)),
      clock: { nowMs: () => 1_763_650_000_000 },
      observer,
      log: createLogger('silent', {}),
    },
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
    stop: close,
  };
}
