/**
 * Memory figures of the actor kernel, in a process of their own (run with
 * --expose-gc; prints one JSON line):
 * - heap per live account: N accounts each take one allocation line and stay
 *   live; (heap after − heap before) / N, both measured after a full GC;
 * - peak RSS over M accounts: lines for M accounts in waves while idle
 *   actors passivate after `idleMs`, so the live set stays bounded.
 *
 * The journal here keeps nothing (a journal that acknowledges and forgets)
 * and reference data is computed from the id, so the figures are the actors'
 * own. Nothing of the service's persistence is measured here.
 *
 *   node --expose-gc simulations/memory-bench.ts [--live N] [--total M] [--idle-ms N] [--only heap|rss]
 */
import { accountBehavior } from '../actors/account/shell.ts';
import type { AllocationReply } from '../actors/protocol.ts';
import { decodeVersioned, encodeVersioned } from '../persistence/codec.ts';
import { emptyJournalStats, type Journal } from '../persistence/journal.ts';
import { ActorSystem, EntityHost } from '../system/entity-host.ts';
import { ask } from '../system/messaging.ts';
import { createLogger } from '../system/log.ts';
import { parseArgs } from './cli.ts';
import { Permits } from '../system/permits.ts';

/** Acknowledges every append and forgets it: the kernel's memory, not the journal's. */
function forgettingJournal(): Journal {
  const stats = emptyJournalStats();
  return {
    stats,
    append: async (records) => void (stats.events += records.length),
    load: async () => [],
    snapshot: async () => undefined,
    saveSnapshot: async () => {},
    execution: async () => undefined,
    executionAt: async () => undefined,
    fillVersionRecord: async () => undefined,
    drain: async () => {},
    close: async () => {},
  };
}

const accountId = (i: number) => `ACC${String(i).padStart(7, '0')}`;

function startAccounts(idleMs: number) {
  const system = new ActorSystem(`memory-${process.pid}`, { recoveryConcurrencyMax: 64 });
  const reference = {
    blockOrder: async () => undefined,
    account: async (id: string) => ({ accountId: id, cashMinor: 10_000_000n, positions: {} }),
  };
  const observer = { fillSettled: () => {}, accountLineDurable: () => {} };
  const host = new EntityHost(
    system,
    accountBehavior({ reference, clock: { nowMs: () => 1_763_650_000_000 }, observer }),
    {
      journal: forgettingJournal(),
      codec: { encode: encodeVersioned, decode: decodeVersioned },
      log: createLogger('silent', {}),
    },
    {
      idleMs,
      batchCommandsMax: 64,
      mailboxMax: 1_000,
      snapshotEveryEvents: 100,
      snapshotsInFlightMax: 8,
      replayPageEvents: 100,
      scheduledMax: 10,
      supervision: { crashesMax: 3, windowMs: 60_000, backoffMinMs: 1, backoffMaxMs: 10 },
    },
  );
  return { system, host };
}

/** One BUY line to each account in [from, to), at most `inFlightMax` unanswered. */
async function feed(host: ReturnType<typeof startAccounts>['host'], from: number, to: number) {
  const gate = new Permits(2_000);
  const allocation = {
    blockOrderId: 'BO1',
    fillSeq: 1,
    prevSeq: 0,
    securityId: 'SEC1',
    side: 'BUY' as const,
    quantity: 100n,
    price: 101_250_000n,
  };
  for (let i = from; i < to; i++) {
    await gate.acquire();
    const id = accountId(i);
    void ask<never, AllocationReply>(
      (m) => host.send(id, m),
      (replyTo) => ({ type: 'ApplyAllocation', accountId: id, allocation, replyTo }) as never,
      60_000,
      id,
    ).finally(() => gate.release());
  }
  await gate.idle();
}

const gc = (globalThis as { gc?: () => void }).gc;

async function heapPerLiveAccount(live: number): Promise<number> {
  if (!gc) throw new Error('run with node --expose-gc');
  const { system, host } = startAccounts(3_600_000);
  gc();
  const before = process.memoryUsage().heapUsed;
  await feed(host, 0, live);
  gc();
  const after = process.memoryUsage().heapUsed;
  if (host.liveActors() !== live) throw new Error(`${host.liveActors()} live, expected ${live}`);
  host.close();
  system.stop();
  return Math.round((after - before) / live);
}

async function peakRssOver(
  total: number,
  idleMs: number,
): Promise<{ peakRssBytes: number; liveMax: number }> {
  const { system, host } = startAccounts(idleMs);
  let liveMax = 0;
  const wave = 50_000;
  for (let from = 0; from < total; from += wave) {
    await feed(host, from, Math.min(total, from + wave));
    liveMax = Math.max(liveMax, host.liveActors());
  }
  host.close();
  system.stop();
  return { peakRssBytes: process.resourceUsage().maxRSS * 1024, liveMax };
}

const args = parseArgs(process.argv.slice(2), {
  live: 'number',
  total: 'number',
  'idle-ms': 'number',
  only: 'string',
});
const only = typeof args.only === 'string' ? args.only : 'both';
const live = typeof args.live === 'number' ? args.live : 100_000;
const total = typeof args.total === 'number' ? args.total : 1_000_000;
const idleMs = typeof args['idle-ms'] === 'number' ? args['idle-ms'] : 1_000;
const out: Record<string, number> = { idleMs };
if (only !== 'rss') {
  out.heapBytesPerLiveAccount = await heapPerLiveAccount(live);
  out.liveAccounts = live;
}
if (only !== 'heap') {
  const peak = await peakRssOver(total, idleMs);
  out.millionAccountsPeakRssBytes = peak.peakRssBytes;
  out.accountsTotal = total;
  out.liveMax = peak.liveMax;
}
process.stdout.write(`${JSON.stringify(out)}\n`);
process.exit(0);
