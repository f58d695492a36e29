/**
 * Prometheus metrics (prom-client), served by the API at GET /metrics.
 *
 * Counters the service keeps anyway (the consumer's, the journal's, the
 * hosts') are read when scraped, so the hot paths pay nothing extra. Three
 * things are observed as they happen: each journal batch (its size and
 * commit time, histograms), each dead letter (by reason), each API request
 * (duration by route). Consumer lag is asked of JetStream per partition at
 * scrape time, each ask bounded.
 */
import client from 'prom-client';
import type { Registry } from 'prom-client';
import { invariant } from '../actors/errors.ts';
import type { ConsumerStatsView } from '../api/ports.ts';

/** What /metrics reads at scrape time: the running service's counters. */
export interface MetricsSources {
  consumer: () => ConsumerStatsView;
  journal: () => { events: number; batches: number; conflicts: number; fallbacks: number };
  /** Per actor kind: live now, passivated, stopped by their supervisor, crashes so far, queued commands. */
  actors: () => Array<{
    kind: string;
    live: number;
    passivated: number;
    stopped: number;
    crashes: number;
    mailboxDepth: number;
  }>;
  /** Allocation lines durable on their accounts (applied, or refused into suspense). */
  linesApplied: () => number;
  /** Per partition: messages not yet delivered plus delivered and not acked. */
  consumerLag: () => Promise<Array<{ partition: number; pending: number; unacked: number }>>;
}

/** Distinct dead-letter reasons counted apart, at most (reasons are codes: a handful). */
const REASONS_MAX = 100;

export class Metrics {
  readonly registry: Registry = new client.Registry();
  readonly #batchEvents: client.Histogram;
  readonly #batchSeconds: client.Histogram;
  readonly #deadLetters: client.Counter<'reason'>;
  readonly #requests: client.Histogram<'method' | 'route' | 'status'>;
  readonly #reasons = new Set<string>();

  constructor(sources: MetricsSources) {
    const registers = [this.registry];
    this.#batchEvents = new client.Histogram({
      name: 'blockfill_journal_batch_events',
      help: 'Events per journal batch (group commit)',
      buckets: [1, 10, 50, 100, 250, 500, 1_000, 2_000, 5_000],
      registers,
    });
    this.#batchSeconds = new client.Histogram({
      name: 'blockfill_journal_commit_seconds',
      help: 'Time to write and commit one journal batch',
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    });
    this.#deadLetters = new client.Counter({
      name: 'blockfill_dead_letters_total',
      help: 'Messages dead-lettered by this process, by reason',
      labelNames: ['reason'],
      registers,
    });
    this.#requests = new client.Histogram({
      name: 'blockfill_api_request_seconds',
      help: 'API request durations, by method, route pattern and status',
      labelNames: ['method', 'route', 'status'],
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 15],
      registers,
    });
    registerScraped(registers, sources);
  }

  observeBatch(events: number, seconds: number): void {
    invariant(events > 0 && seconds >= 0, `a batch of ${events} events in ${seconds} s`);
    this.#batchEvents.observe(events);
    this.#batchSeconds.observe(seconds);
  }

  deadLettered(reason: string): void {
    // Past the bound every new reason shares one series: memory stays bounded.
    if (!this.#reasons.has(reason) && this.#reasons.size >= REASONS_MAX) reason = 'OTHER';
    this.#reasons.add(reason);
    this.#deadLetters.inc({ reason });
  }

  observeRequest(method: string, route: string, status: number, seconds: number): void {
    this.#requests.observe({ method, route, status: String(status) }, seconds);
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

/** Counters read from the service's own counters when scraped (then the gauges). */
function registerScraped(registers: Registry[], sources: MetricsSources): void {
  const counter = (name: string, help: string, read: () => number) =>
    new client.Counter({
      name,
      help,
      registers,
      collect() {
        this.reset();
        this.inc(read());
      },
    });
  counter(
    'blockfill_fills_consumed_total',
    'Messages applied and acked',
    () => sources.consumer().acked,
  );
  counter(
    'blockfill_duplicates_total',
    'Exact re-sends acked without effect',
    () => sources.consumer().duplicates,
  );
  counter(
    'blockfill_exceptions_total',
    'Conflicting executions (an exception, never a duplicate)',
    () => sources.consumer().conflicts,
  );
  counter(
    'blockfill_naks_total',
    'Messages nak-ed for redelivery',
    () => sources.consumer().nakked,
  );
  counter(
    'blockfill_lines_applied_total',
    'Allocation lines durable on their accounts (applied, or refused into suspense)',
    sources.linesApplied,
  );
  counter(
    'blockfill_events_persisted_total',
    'Journal events durably written',
    () => sources.journal().events,
  );
  counter(
    'blockfill_journal_batches_total',
    'Journal batches committed',
    () => sources.journal().batches,
  );
  counter(
    'blockfill_journal_conflicts_total',
    'Journal rows refused as another writer’s',
    () => sources.journal().conflicts,
  );
  registerScrapedGauges(registers, sources);
}

/** Gauges read when scraped: held fills, actors per kind, consumer lag per partition. */
function registerScrapedGauges(registers: Registry[], sources: MetricsSources): void {
  new client.Gauge({
    name: 'blockfill_held_fills',
    help: 'Fills held (arrived before their predecessor)',
    registers,
    collect() {
      this.set(sources.consumer().heldFills);
    },
  });
  const perKind = (
    name: string,
    help: string,
    pick: (a: ReturnType<MetricsSources['actors']>[number]) => number,
  ) =>
    new client.Gauge({
      name,
      help,
      labelNames: ['kind'],
      registers,
      collect() {
        this.reset();
        for (const a of sources.actors()) this.set({ kind: a.kind }, pick(a));
      },
    });
  perKind(
    'blockfill_actors_live',
    'Live actors (the rest are passivated: on disk only)',
    (a) => a.live,
  );
  perKind('blockfill_actors_stopped', 'Actors their supervisor stopped', (a) => a.stopped);
  perKind(
    'blockfill_actors_passivated',
    'Actors woken since start and passivated since (their state is in the journal)',
    (a) => a.passivated,
  );
  perKind(
    'blockfill_mailbox_depth',
    'Commands queued over all live actors of the kind',
    (a) => a.mailboxDepth,
  );
  new client.Counter({
    name: 'blockfill_actor_restarts_total',
    help: 'Actor crashes answered by a restart, since start',
    labelNames: ['kind'],
    registers,
    collect() {
      this.reset();
      for (const a of sources.actors()) this.inc({ kind: a.kind }, a.crashes);
    },
  });
  new client.Gauge({
    name: 'blockfill_consumer_lag_messages',
    help: 'Per partition: messages not yet delivered plus delivered and not yet acked',
    labelNames: ['partition'],
    registers,
    async collect() {
      this.reset();
      for (const p of await sources.consumerLag())
        this.set({ partition: String(p.partition) }, p.pending + p.unacked);
    },
  });
}
