/**
 * The poison drill: a corpus of bad messages of many classes (corpus.ts),
 * published raw to the run's EXECUTIONS stream among good fills, into one
 * service that runs in-process and must never restart. Then every message is
 * accounted for exactly once: allocated (good fills: the books checked
 * exactly) or applied (the valid busts, corrections and cancels), acked as an
 * exact duplicate, or dead-lettered with the reason (and field) its class
 * expects.
 *
 *   npm run drill -- poison [--json] [--fills N] [--accounts N] [--orders N] ...
 */
import { sameAmendment } from '../../actors/block-order/amendments.ts';
import {
  entryOf,
  entryIdOf,
  isAmendment,
  type BlockOrderEvent,
  type Entry,
} from '../../actors/block-order/decider.ts';
import { BLOCK_ORDER_KIND } from '../../actors/block-order/shell.ts';
import type { Database } from '../../persistence/db.ts';
import { streamNames } from '../../system/config.ts';
import { createLogger } from '../../system/log.ts';
import { startService, type Service } from '../../system/service.ts';
import { checkInvariants, readJournal, type InvariantReport } from '../invariants.ts';
import { monotonicClock } from '../run.ts';
import { generateScenario, type Scenario } from '../scenario.ts';
import {
  formatTable,
  parseDrillOptions,
  UsageError,
  usageResult,
  type DrillIO,
  type DrillResult,
} from './common.ts';
import {
  buildCorpus,
  describeExpectation,
  GOOD_FILL_CLASS,
  Outcome,
  Phase,
  type Corpus,
  type CorpusMessage,
} from './corpus.ts';
import {
  openSandbox,
  publishRaw,
  readDeadLetters,
  untilConfirmed,
  untilConsumersQuiet,
  type DeadLetter,
  type Sandbox,
} from './sandbox.ts';

export const POISON_USAGE = `npm run drill -- poison [--json] [--fills N] [--accounts N] [--orders N]
    [--securities N] [--seed N] [--timeout-ms MS] [--keep]

Publishes a corpus of bad messages (100+ classes: not msgpack, wrong shapes and
types, missing fields, floats in integer fields, overflows, huge and deeply
nested values, unknown orders, overfills, bad seqs, re-used fill ids,
conflicting and exact re-sends; malformed and invalid busts, corrections and
cancels) among good fills and valid amendments into a service running
in-process, and checks that every message is allocated or applied, acked as a
duplicate or dead-lettered with its expected reason, exactly once; that the
books are exact; and that no actor was stopped. Exit 0 only if all of it holds.

  --fills N       good fills (default 300)       --accounts N  (default 60)
  --orders N      block orders (default 8, >= 5) --securities N (default 5)
  --seed N        scenario seed (default 7)
  --timeout-ms MS bound on each wait (default 60000)
  --keep          keep the run's database (its name is printed)`;

interface PoisonOptions {
  fills: number;
  accounts: number;
  orders: number;
  securities: number;
  seed: number;
  timeoutMs: number;
  keep: boolean;
}

/** Small so the nak'ed far-future seq is dead-lettered within a second. */
const SERVICE_ENV = { CONSUMER_DELIVERIES_MAX: '4', CONSUMER_NAK_DELAY_MS: '20' };
/** Nothing changed for this long and nothing left to deliver: the phase is over. */
const QUIET_MS = 3_000;

export function parsePoisonOptions(argv: string[]): PoisonOptions & { help: boolean } {
  const { numbers, values } = parseDrillOptions(
    argv,
    {
      fills: { fallback: 300, min: 20, max: 1_000_000 },
      accounts: { fallback: 60, min: 5, max: 1_000_000 },
      orders: { fallback: 8, min: 5, max: 100_000 },
      securities: { fallback: 5, min: 1, max: 10_000 },
      seed: { fallback: 7, min: 0, max: 2 ** 31 },
      'timeout-ms': { fallback: 60_000, min: 1_000, max: 3_600_000 },
    },
    { keep: { type: 'boolean' } },
  );
  if (numbers.fills < numbers.orders * 3)
    throw new UsageError(`--fills must be at least 3 per order (${numbers.orders * 3})`);
  return {
    ...{ fills: numbers.fills, accounts: numbers.accounts, orders: numbers.orders },
    ...{ securities: numbers.securities, seed: numbers.seed, timeoutMs: numbers['timeout-ms'] },
    keep: values.keep === true,
    help: values.help === true,
  };
}

/** The drill's scenario: no order is filled completely, so a next-seq probe of 1 share fits. */
export function poisonScenario(
  o: Pick<PoisonOptions, 'fills' | 'accounts' | 'orders' | 'securities' | 'seed'>,
): Scenario {
  return generateScenario({
    ...{ seed: o.seed, fills: o.fills, accounts: o.accounts, blockOrders: o.orders },
    ...{ securities: o.securities, accountsPerOrderMin: 3, accountsPerOrderMax: 12 },
    completeShare: 0,
  });
}

export async function runPoisonDrill(argv: string[], io: DrillIO): Promise<DrillResult> {
  let options: PoisonOptions & { help: boolean };
  try {
    options = parsePoisonOptions(argv);
  } catch (error) {
    if (error instanceof UsageError) return usageResult(POISON_USAGE, error);
    throw error;
  }
  if (options.help) return usageResult(POISON_USAGE);
  const scenario = poisonScenario(options);
  const env = { ...process.env, ...SERVICE_ENV, PARTITIONS: process.env.PARTITIONS ?? '4' };
  // Fastify logs to stdout: kept silent so --json prints one object; the service's own log goes to stderr.
  const sandbox = await openSandbox('poison', { ...env, LOG_LEVEL: 'silent' }, scenario.seed, io);
  try {
    const names = streamNames(sandbox.config);
    const corpus = buildCorpus(scenario, {
      subjectRoot: names.subjectRoot,
      partitions: sandbox.config.partitions,
    });
    io.progress(
      `poison: ${corpus.classes.length - 1} bad classes, ${corpus.messages.length} messages ` +
        `(${corpus.goodFills.length} good fills), database ${sandbox.databaseName}`,
    );
    const log = createLogger((process.env.LOG_LEVEL as 'error' | undefined) ?? 'error', {
      service: 'blockfill',
    });
    const service = await startService(sandbox.config, { clock: monotonicClock, log });
    try {
      const run = await publishPhases(service, corpus, options, io);
      return await evaluate({ service, sandbox, scenario, corpus, run, io });
    } finally {
      await service.stop();
    }
  } finally {
    await sandbox.cleanup(options.keep);
  }
}

interface PhaseRun {
  /** Stream seq of each corpus message (same index). */
  seqs: number[];
  droppedAsDuplicate: number;
  /** Phases whose consumers did not drain (a message still being redelivered). */
  undrained: string[];
}

async function publishPhases(
  service: Service,
  corpus: Corpus,
  options: PoisonOptions,
  io: DrillIO,
): Promise<PhaseRun> {
  const stream = streamNames(service.config).executions;
  const seqs: number[] = new Array<number>(corpus.messages.length).fill(0);
  const undrained: string[] = [];
  let droppedAsDuplicate = 0;
  const stats = service.consumer.stats;
  // Outcomes only: a message redelivered forever keeps `nakked` moving, and must not keep the wait alive.
  const moved = () => stats.acked + stats.duplicates + stats.deadLettered;
  // Phase's declaration order is the publishing order.
  for (const phase of Object.values(Phase)) {
    const indexes = corpus.messages.flatMap((m, i) => (m.phase === phase ? [i] : []));
    const messages = indexes.map((i) => corpus.messages[i] as CorpusMessage);
    io.progress(`  phase ${phase}: publishing ${messages.length} messages ...`);
    const published = await publishRaw(service.nats, stream, messages);
    published.seqs.forEach((seq, k) => (seqs[indexes[k] as number] = seq));
    droppedAsDuplicate += published.droppedAsDuplicate;
    const quiet = await untilConsumersQuiet(service.nats, service.config, moved, {
      quietMs: QUIET_MS,
      timeoutMs: options.timeoutMs,
    });
    if (!quiet.drained) {
      undrained.push(`${phase}: ${quiet.ackPending} unacknowledged, ${quiet.pending} undelivered`);
      io.progress(`  phase ${phase}: consumers did not drain (${undrained.at(-1)})`);
    }
    await untilConfirmed(service.db, options.timeoutMs);
    await service.journal.drain();
  }
  return { seqs, droppedAsDuplicate, undrained };
}

/**
 * Every entry the block orders' journals applied (FillAllocated, FillBusted,
 * FillCorrected, OrderCancelled), by the id it claims: a fill id or an
 * amendment id (one id space). An id applied twice is listed twice.
 */
async function appliedEntries(db: Database): Promise<Map<string, Entry[]>> {
  const out = new Map<string, Entry[]>();
  for await (const { event } of readJournal(db, `${BLOCK_ORDER_KIND}-`)) {
    const e = event as BlockOrderEvent;
    const entry = entryOf(e);
    if (!entry) continue;
    const id = entryIdOf(entry);
    out.set(id, [...(out.get(id) ?? []), entry]);
  }
  return out;
}

/** The applied entry is the message's: the same amendment, or the fill with its quantity. */
function sameEntry(applied: Entry, sent: Entry): boolean {
  if (isAmendment(applied) || isAmendment(sent))
    return isAmendment(applied) && isAmendment(sent) && sameAmendment(applied, sent).length === 0;
  return applied.quantity === sent.quantity;
}

/** What happened to one message, as the table shows it. */
function observe(
  m: CorpusMessage,
  letters: DeadLetter[] | undefined,
  applied: Map<string, Entry[]>,
): string {
  if (letters && letters.length > 1) return `${letters.length} dead letters`;
  const letter = letters?.[0];
  if (letter) return observeLetter(m, letter, applied);
  const sent = m.fill;
  if (!sent) return NO_OUTCOME;
  const same = (applied.get(entryIdOf(sent)) ?? []).filter(
    (e) => e.blockOrderId === sent.blockOrderId && e.seq === sent.seq,
  );
  const done = isAmendment(sent) ? Outcome.Applied : Outcome.Allocated;
  if (same.length > 1) return `${done} ${same.length} times`;
  // An exact duplicate is the same execution as its original, applied once by that original.
  if (m.expect.outcome === Outcome.Duplicate)
    return same.length === 1 ? Outcome.Duplicate : NO_OUTCOME;
  if (same.length === 1 && sameEntry(same[0] as Entry, sent)) return done;
  // No dead letter and nothing applied: acked without an outcome, or redelivered forever.
  return NO_OUTCOME;
}

/**
 * A dead letter as the table shows it: its reason and field, flagged if it
 * does not carry the original bytes, or (a conflict) if its
 * Blockfill-Existing is not an execution the journal holds.
 */
function observeLetter(
  m: CorpusMessage,
  letter: DeadLetter,
  applied: Map<string, Entry[]>,
): string {
  const field = m.expect.field !== undefined || letter.field ? ` ${letter.field ?? '-'}` : '';
  const seen = `${letter.reason}${field}`;
  if (Buffer.compare(Buffer.from(letter.data), Buffer.from(m.bytes)) !== 0)
    return `${seen} (not the original bytes)`;
  if (letter.reason !== Outcome.ConflictingExecution) return seen;
  let existing: { fillId?: unknown; amendmentId?: unknown; seq?: unknown } | undefined;
  try {
    existing = JSON.parse(letter.existing ?? 'null') as typeof existing;
  } catch {
    return `${seen} (Blockfill-Existing is not JSON)`;
  }
  // An amendment's id is its amendmentId (its fillId names the fill it amends).
  const id = existing?.amendmentId ?? existing?.fillId;
  if (!(applied.get(String(id)) ?? []).some((e) => e.seq === Number(existing?.seq)))
    return `${seen} (Blockfill-Existing ${existing ? 'is not an applied execution' : 'missing'})`;
  return seen;
}

/** A message with no dead letter and no allocation that was not meant to be a duplicate. */
const NO_OUTCOME = 'NO DEAD LETTER, NOT ALLOCATED';

interface Evaluation {
  service: Service;
  sandbox: Sandbox;
  scenario: Scenario;
  corpus: Corpus;
  run: PhaseRun;
  io: DrillIO;
}

async function evaluate(e: Evaluation): Promise<DrillResult> {
  const { service, corpus, run } = e;
  e.io.progress('reading the dead-letter stream and the journal back ...');
  const letters = await readDeadLetters(service.nats, service.config);
  const bySeq = new Map<number, DeadLetter[]>();
  for (const l of letters)
    bySeq.set(l.originalSequence, [...(bySeq.get(l.originalSequence) ?? []), l]);
  const applied = await appliedEntries(service.db);
  const published = new Set(run.seqs);
  const unexpected = letters
    .filter((l) => !published.has(l.originalSequence))
    .map((l) => `dead letter for unpublished stream seq ${l.originalSequence}: ${l.reason}`);
  const byClass = tally(corpus, run, bySeq, applied);
  const failures: string[] = [];
  for (const [cls, c] of Object.entries(byClass))
    if (!c.ok)
      failures.push(
        `class "${cls}": expected ${c.expected}, observed ${formatObserved(c.observed)}`,
      );
  failures.push(...unexpected);
  const checks = await serviceChecks(e, applied, letters.length);
  failures.push(...checks.failures);
  const json = {
    classes: corpus.classes.length - 1,
    messages: corpus.messages.length,
    goodFills: corpus.goodFills.length,
    goodApplied: checks.goodApplied,
    duplicatesAcked: service.consumer.stats.duplicates,
    /** Of duplicatesAcked: good fills redelivered after their ack wait, not the corpus's duplicates. */
    redeliveredDuplicates: service.consumer.stats.duplicates - corpus.duplicates,
    deadLettered: letters.length,
    unexpected,
    byClass,
    invariants: checks.invariants,
    consumer: { ...service.consumer.stats },
    stoppedActors: checks.stoppedActors,
    ok: failures.length === 0,
  };
  return { ok: json.ok, json, summary: summaryLines(json, byClass), failures };
}

interface ClassTally {
  count: number;
  expected: string;
  observed: Record<string, number>;
  ok: boolean;
}

function tally(
  corpus: Corpus,
  run: PhaseRun,
  bySeq: Map<number, DeadLetter[]>,
  applied: Map<string, Entry[]>,
): Record<string, ClassTally> {
  const out: Record<string, ClassTally> = {};
  corpus.messages.forEach((m, i) => {
    const expected = describeExpectation(m.expect);
    const c = (out[m.cls] ??= { count: 0, expected, observed: {}, ok: true });
    const seen = observe(m, bySeq.get(run.seqs[i] ?? -1), applied);
    c.count++;
    c.observed[seen] = (c.observed[seen] ?? 0) + 1;
    if (seen !== expected) c.ok = false;
  });
  return out;
}

const formatObserved = (o: Record<string, number>) =>
  Object.entries(o)
    .map(([k, n]) => `${k} ×${n}`)
    .join(', ');

async function serviceChecks(
  e: Evaluation,
  applied: Map<string, Entry[]>,
  deadLettered: number,
): Promise<{
  failures: string[];
  goodApplied: number;
  invariants: unknown;
  stoppedActors: string[];
}> {
  const { service, corpus, run } = e;
  const failures: string[] = [...run.undrained.map((u) => `consumers did not drain: ${u}`)];
  if (run.droppedAsDuplicate > 0)
    failures.push(`${run.droppedAsDuplicate} publishes were dropped by the server as duplicates`);
  const goodApplied = corpus.goodFills.filter((f) => {
    const hits = applied.get(f.fillId) ?? [];
    return hits.length === 1 && hits[0]?.seq === f.seq && sameEntry(hits[0], f);
  }).length;
  if (goodApplied !== corpus.goodFills.length)
    failures.push(`${corpus.goodFills.length - goodApplied} good fills not allocated exactly once`);
  const stats = service.consumer.stats;
  // More is fine: a good fill redelivered after its ack wait (a long backlog) is a duplicate too;
  // each exact duplicate is checked per message (no dead letter, its execution allocated once).
  if (stats.duplicates < corpus.duplicates)
    failures.push(`${stats.duplicates} duplicates acked, at least ${corpus.duplicates} expected`);
  if (stats.deadLettered !== deadLettered)
    failures.push(
      `consumer counted ${stats.deadLettered} dead letters, the stream holds ${deadLettered}`,
    );
  const stoppedActors = [
    ...service.accounts.stoppedActors(),
    ...service.blockOrders.stoppedActors(),
  ];
  if (stoppedActors.length > 0) failures.push(`actors stopped: ${stoppedActors.join('; ')}`);
  if (!service.consumer.running) failures.push('the consumer is not running');
  e.io.progress('checking the books (journal and live actors) ...');
  const report: InvariantReport = await checkInvariants({
    db: service.db,
    app: service.app,
    seed: e.scenario.seed,
    fillsByOrder: corpus.expectedFills,
    idPrefix: '',
  });
  failures.push(...report.violations.map((v) => `books: ${v}`));
  const invariants = {
    ...{ ok: report.ok, checks: report.checks, fills: report.fills, busts: report.busts },
    ...{ corrections: report.corrections, cancels: report.cancels },
  };
  return { failures, goodApplied, invariants, stoppedActors };
}

function summaryLines(
  json: { classes: number; messages: number; goodFills: number; goodApplied: number } & Record<
    string,
    unknown
  >,
  byClass: Record<string, ClassTally>,
): string[] {
  const rows = Object.entries(byClass)
    .filter(([cls]) => cls !== GOOD_FILL_CLASS)
    .map(([cls, c]) => [
      cls,
      String(c.count),
      c.expected,
      formatObserved(c.observed),
      c.ok ? 'ok' : 'FAIL',
    ]);
  const good = byClass[GOOD_FILL_CLASS];
  return [
    ...formatTable([['class', 'count', 'expected', 'observed', 'ok'], ...rows]),
    '',
    `good fills: ${json.goodApplied}/${json.goodFills} allocated exactly once (${good?.ok ? 'ok' : 'FAIL'})`,
    `classes ${json.classes}, messages ${json.messages}, duplicates acked ${String(json.duplicatesAcked)}, dead-lettered ${String(json.deadLettered)}`,
  ];
}
