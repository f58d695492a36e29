/**
 * The final verification of a drill's books, shared by the kill, outage and
 * burst drills: with the service stopped, the journal is folded here (lost,
 * doubled and unpublished entries, account lines applied twice), every
 * invariant of simulations/invariants.ts is checked over the part of the
 * scenario that was published, and the JetStream server's counts are read
 * (deliveries, dead letters). Everything is measured from outside the service.
 *
 * An entry is what one message carries: a fill, or (when the scenario has
 * the market's amendments) a bust, a correction or a cancel. Each claims its
 * id once in the journal, so "lost" and "doubled" are counted over entry ids;
 * the figures still say how many of them were fills.
 */
import { lineEvents, type AccountEvent } from '../../actors/account/decider.ts';
import {
  entryOf,
  entryIdOf,
  isAmendment,
  type BlockOrderEvent,
  type Entry,
  type Fill,
} from '../../actors/block-order/decider.ts';
import { BLOCK_ORDER_KIND } from '../../actors/block-order/shell.ts';
import type { Database } from '../../persistence/db.ts';
import { streamNames, type Config } from '../../system/config.ts';
import { DeadLetterHeader, type NatsHandles, type StreamNames } from '../../system/jetstream.ts';
import { createLogger } from '../../system/log.ts';
import { startService } from '../../system/service.ts';
import { checkInvariants, readJournal, type InvariantReport } from '../invariants.ts';
import { entriesByOrderOf, entriesOf, type Scenario } from '../scenario.ts';
import type { DrillIO } from './common.ts';
import { untilAborted } from './harness.ts';

/** Examples kept per kind of failure (ids, lines, dead-letter reasons). */
const EXAMPLES_MAX = 10;

/**
 * Published ids against the ids the journal applied (one per FillAllocated,
 * FillBusted, FillCorrected or OrderCancelled row): fill and amendment ids alike.
 */
export function compareAllocations(
  publishedFillIds: Iterable<string>,
  allocatedFillIds: Iterable<string>,
): {
  /** Published, never allocated. */
  lost: string[];
  /** Allocated more than once. */
  duplicated: string[];
  /** Allocated, never published. */
  unexpected: string[];
} {
  const counts = new Map<string, number>();
  for (const id of allocatedFillIds) counts.set(id, (counts.get(id) ?? 0) + 1);
  const published = new Set(publishedFillIds);
  return {
    lost: [...published].filter((id) => !counts.has(id)),
    duplicated: [...counts].filter(([, n]) => n > 1).map(([id]) => id),
    unexpected: [...counts.keys()].filter((id) => !published.has(id)),
  };
}

/** Counts keys seen more than once (each extra sighting counts); keeps a few examples. */
export class RepeatCounter {
  readonly #seen = new Set<string>();
  repeats = 0;
  readonly examples: string[] = [];
  add(key: string): void {
    if (!this.#seen.has(key)) {
      this.#seen.add(key);
      return;
    }
    this.repeats++;
    if (this.examples.length < EXAMPLES_MAX) this.examples.push(key);
  }
}

/** Busts, corrections and cancels: what a drill's JSON reports of the market's amendments. */
export interface AmendmentCounts {
  busts: number;
  corrections: number;
  cancels: number;
}

/** Where each kind of amendment is counted. */
export const COUNT_OF_KIND = {
  BUST: 'busts',
  CORRECTION: 'corrections',
  CANCEL: 'cancels',
} as const satisfies Record<string, keyof AmendmentCounts>;

/** The amendments among `entries`, by kind. */
export function amendmentCounts(entries: Iterable<Entry>): AmendmentCounts {
  const counts: AmendmentCounts = { busts: 0, corrections: 0, cancels: 0 };
  for (const e of entries) if (isAmendment(e)) counts[COUNT_OF_KIND[e.kind]] += 1;
  return counts;
}

/**
 * The scenario as far as it was published: each order's entries in publish
 * order are a prefix of its sequence, and every entry is valid after the
 * ones before it (amend-scenario.ts), so a prefix of the stream is a
 * scenario of its own (an order with none published stays unopened).
 */
export function publishedPart(scenario: Scenario, published: number): Scenario {
  const entries = entriesOf(scenario).slice(0, published);
  const fillsByOrder = new Map<string, Fill[]>();
  const entriesByOrder = new Map<string, Entry[]>();
  for (const id of scenario.fillsByOrder.keys()) {
    fillsByOrder.set(id, []);
    entriesByOrder.set(id, []);
  }
  const publishOrder: Fill[] = [];
  for (const entry of entries) {
    entriesByOrder.get(entry.blockOrderId)?.push(entry);
    if (isAmendment(entry)) continue;
    publishOrder.push(entry);
    fillsByOrder.get(entry.blockOrderId)?.push(entry);
  }
  const part = { ...scenario, publishOrder, fillsByOrder };
  if (!scenario.amended) return part;
  const counts = amendmentCounts(entries);
  return { ...part, amended: { publishOrder: entries, entriesByOrder, counts } };
}

/**
 * Every applied entry id (once per journal row that applied it), the fill
 * ids among them, and every account line, from the journal. Minutes after a
 * long burst: an interrupt ends it.
 */
async function foldJournal(db: Database, signal: AbortSignal) {
  const appliedIds: string[] = [];
  const allocatedFills = new Set<string>();
  for await (const { event } of readJournal(db, `${BLOCK_ORDER_KIND}-`)) {
    const e = event as BlockOrderEvent;
    const entry = entryOf(e);
    if (!entry) continue;
    appliedIds.push(entryIdOf(entry));
    if (!isAmendment(entry)) allocatedFills.add(entry.fillId);
    if (appliedIds.length % 10_000 === 0) signal.throwIfAborted();
  }
  const lines = new RepeatCounter();
  let rows = 0;
  for await (const { key, event } of readJournal(db, 'account-')) {
    const accountId = key.slice('account-'.length);
    for (const line of lineEvents(event as AccountEvent))
      lines.add(`${line.allocation.blockOrderId}|${line.allocation.fillSeq}|${accountId}`);
    if (++rows % 10_000 === 0) signal.throwIfAborted();
  }
  return { appliedIds, allocatedFills: allocatedFills.size, lines };
}

async function countJournalRows(db: Database): Promise<number> {
  const rows = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM journal');
  return rows[0]?.n ?? 0;
}

/**
 * checkInvariants needs live actors: a service in this process, started on
 * the drained journal, answers the API; it must find nothing left to do.
 */
async function checkBooks(config: Config, db: Database, scenario: Scenario) {
  const rowsBefore = await countJournalRows(db);
  const service = await startService(config, {
    log: createLogger('error', { service: 'blockfill-drill-check' }),
  });
  try {
    const report = await checkInvariants({
      db: service.db,
      app: service.app,
      seed: scenario.seed,
      fillsByOrder: entriesByOrderOf(scenario),
      idPrefix: scenario.options.idPrefix,
    });
    return { report, rowsWrittenByChecker: (await countJournalRows(db)) - rowsBefore };
  } finally {
    await service.stop();
  }
}

async function deadLetters(nats: NatsHandles, names: StreamNames) {
  const dlq = await nats.jsm.streams.info(names.deadLetter);
  const reasons: string[] = [];
  const first = dlq.state.first_seq;
  for (let seq = first; seq < first + Math.min(dlq.state.messages, EXAMPLES_MAX); seq++) {
    const m = await nats.jsm.streams.getMessage(names.deadLetter, { seq }).catch(() => null);
    if (m)
      reasons.push(
        `${m.header.get(DeadLetterHeader.Reason)} ${m.header.get(DeadLetterHeader.OriginalSubject)}: ${m.header.get(DeadLetterHeader.Detail)}`,
      );
  }
  return { deadLettered: dlq.state.messages, deadLetterReasons: reasons };
}

async function deliveryCounts(nats: NatsHandles, names: StreamNames, partitions: number) {
  const stream = await nats.jsm.streams.info(names.executions);
  let deliveries = 0;
  let pending = 0;
  for (let p = 0; p < partitions; p++) {
    const info = await nats.jsm.consumers.info(names.executions, `${names.durablePrefix}_P${p}`);
    deliveries += info.delivered.consumer_seq;
    pending += info.num_pending;
  }
  const firstDeliveries = stream.state.messages - pending;
  return {
    streamMessages: stream.state.messages,
    deliveries,
    redeliveries: deliveries - firstDeliveries,
  };
}

export interface Verdict {
  /** Messages acknowledged by JetStream: fills and amendments. */
  entriesPublished: number;
  /** Distinct entry ids the journal applied. */
  entriesApplied: number;
  /** The fills among the published entries. */
  fillsPublished: number;
  /** Distinct fill ids allocated. */
  fillsAllocated: number;
  /** The amendments among the published entries. */
  amendments: AmendmentCounts;
  /** Entry ids published, never applied; the fills among them. */
  lost: string[];
  lostFills: number;
  duplicated: string[];
  unexpected: string[];
  /** Account lines applied more than once (each extra application counts), with a few examples. */
  duplicateLines: { repeats: number; examples: string[] };
  invariants: InvariantReport;
  /** Journal rows a fresh start wrote on the drained journal (must be 0: it was final). */
  rowsWrittenByChecker: number;
  streamMessages: number;
  /** Σ delivered.consumer_seq over the run's durables: every delivery, first or not. */
  deliveries: number;
  /** Deliveries beyond the first of each message: naks and ack-wait expiries alike. */
  redeliveries: number;
  deadLettered: number;
  deadLetterReasons: string[];
}

interface VerifyArgs {
  config: Config;
  db: Database;
  nats: NatsHandles;
  scenario: Scenario;
  /** Entries acknowledged by JetStream: a prefix of the scenario's entries (entriesOf). */
  published: number;
  io: DrillIO;
  signal: AbortSignal;
}

/**
 * The books of a finished run, with the service stopped (see the module's
 * comment). It runs for minutes after a long burst: an interrupt ends the
 * wait at once (the teardown closes what it uses, and it ends on its own).
 */
export function verifyRun(args: VerifyArgs): Promise<Verdict> {
  return untilAborted(verify(args), args.signal);
}

async function verify(args: VerifyArgs): Promise<Verdict> {
  const scenario = publishedPart(args.scenario, args.published);
  const names = streamNames(args.config);
  const entries = entriesOf(scenario);
  args.io.progress('folding the journal: lost and duplicated entries and lines ...');
  // Only counts leave this block: the fold's sets are garbage before the
  // invariant check builds its own (millions of lines after a long burst).
  const { comparison, lostFills, applied, duplicateLines } = await (async () => {
    const fold = await foldJournal(args.db, args.signal);
    const comparison = compareAllocations(entries.map(entryIdOf), fold.appliedIds);
    const fillIds = new Set(scenario.publishOrder.map((f) => f.fillId));
    return {
      comparison,
      lostFills: comparison.lost.filter((id) => fillIds.has(id)).length,
      applied: { entries: new Set(fold.appliedIds).size, fills: fold.allocatedFills },
      duplicateLines: { repeats: fold.lines.repeats, examples: fold.lines.examples },
    };
  })();
  args.io.progress('checking every invariant (journal and live actors) ...');
  args.signal.throwIfAborted();
  const { report, rowsWrittenByChecker } = await checkBooks(args.config, args.db, scenario);
  args.signal.throwIfAborted();
  return {
    entriesPublished: args.published,
    entriesApplied: applied.entries,
    fillsPublished: scenario.publishOrder.length,
    fillsAllocated: applied.fills,
    amendments: amendmentCounts(entries),
    ...comparison,
    lostFills,
    duplicateLines,
    invariants: report,
    rowsWrittenByChecker,
    ...(await deliveryCounts(args.nats, names, args.config.partitions)),
    ...(await deadLetters(args.nats, names)),
  };
}

/** The failed checks every drill shares: nothing lost, doubled, dead-lettered or left to do. */
export function verdictFailures(v: Verdict): string[] {
  const failures: string[] = [];
  const examples = (ids: string[]) => ids.slice(0, EXAMPLES_MAX).join(', ');
  if (v.lost.length > 0)
    failures.push(
      `${v.lost.length} published entries never applied (${v.lostFills} fills): ${examples(v.lost)}`,
    );
  if (v.duplicated.length > 0)
    failures.push(
      `${v.duplicated.length} entries applied more than once: ${examples(v.duplicated)}`,
    );
  if (v.unexpected.length > 0)
    failures.push(
      `${v.unexpected.length} applied entries were never published: ${examples(v.unexpected)}`,
    );
  failures.push(...amendmentFailures(v));
  if (v.duplicateLines.repeats > 0)
    failures.push(
      `${v.duplicateLines.repeats} account lines applied more than once: ${v.duplicateLines.examples.join(', ')}`,
    );
  for (const violation of v.invariants.violations.slice(0, EXAMPLES_MAX))
    failures.push(`invariant: ${violation}`);
  if (v.deadLettered > 0)
    failures.push(
      `${v.deadLettered} good entries dead-lettered: ${v.deadLetterReasons.join('; ')}`,
    );
  if (v.streamMessages < v.entriesPublished)
    failures.push(
      `the stream holds ${v.streamMessages} messages, ${v.entriesPublished} were acknowledged: it lost some`,
    );
  if (v.rowsWrittenByChecker !== 0)
    failures.push(
      `the drained journal was not final: a fresh start wrote ${v.rowsWrittenByChecker} rows`,
    );
  return failures;
}

/**
 * Every published bust, correction and cancel is in the journal, as many as
 * were published (the invariants check each one's lines and the API's
 * figures per order; this is the drill's own count over the run).
 */
function amendmentFailures(v: Verdict): string[] {
  const journaled = {
    busts: v.invariants.busts,
    corrections: v.invariants.corrections,
    cancels: v.invariants.cancels,
  };
  const differ = (Object.keys(journaled) as Array<keyof AmendmentCounts>).filter(
    (k) => journaled[k] !== v.amendments[k],
  );
  if (differ.length === 0) return [];
  return [
    `amendments published ${JSON.stringify(v.amendments)}, journaled ${JSON.stringify(journaled)}`,
  ];
}

export type VerdictFigures = ReturnType<typeof verdictFigures>;

/** The figures every drill's JSON reports from its verdict. */
export function verdictFigures(v: Verdict) {
  return {
    /** Messages: fills and amendments. */
    entriesPublished: v.entriesPublished,
    entriesApplied: v.entriesApplied,
    fillsPublished: v.fillsPublished,
    fillsAllocated: v.fillsAllocated,
    ...v.amendments,
    /** Published, never applied: fills, and amendments apart. */
    lostFills: v.lostFills,
    lostAmendments: v.lost.length - v.lostFills,
    /** Entries applied twice plus account lines applied twice. */
    duplicateApplications: v.duplicated.length + v.duplicateLines.repeats,
    invariantsOk: v.invariants.ok,
    /** Average price (0 for pro-rata): releases, and the amendments that amended one. */
    averageReleases: v.invariants.averageReleases,
    releaseAmendments: v.invariants.releaseAmendments,
  };
}
