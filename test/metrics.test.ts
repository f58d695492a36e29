/** The metrics registry on fake sources: what a scrape shows, and its bounds. No services. */
import t from 'tap';
import { Metrics, type MetricsSources } from '../system/metrics.ts';

function sources(over: Partial<MetricsSources> = {}): MetricsSources {
  return {
    consumer: () => ({
      acked: 7,
      duplicates: 1,
      deadLettered: 2,
      conflicts: 1,
      nakked: 3,
      heldFills: 4,
    }),
    journal: () => ({ events: 40, batches: 5, conflicts: 0, fallbacks: 0 }),
    actors: () => [
      { kind: 'account', live: 9, passivated: 30, stopped: 1, crashes: 2, mailboxDepth: 6 },
    ],
    linesApplied: () => 123,
    consumerLag: async () => [
      { partition: 0, pending: 5, unacked: 2 },
      { partition: 1, pending: 0, unacked: 0 },
    ],
    ...over,
  };
}

const line = (text: string, series: string) =>
  text
    .split('\n')
    .find((l) => l.startsWith(`${series} `))
    ?.slice(series.length + 1);

t.test('a scrape reads the service’s own counters as they are now', async (t) => {
  let acked = 7;
  const metrics = new Metrics(
    sources({
      consumer: () => ({
        acked,
        duplicates: 1,
        deadLettered: 2,
        conflicts: 1,
        nakked: 3,
        heldFills: 4,
      }),
    }),
  );
  const first = await metrics.render();
  t.equal(line(first, 'blockfill_fills_consumed_total'), '7');
  t.equal(line(first, 'blockfill_exceptions_total'), '1');
  t.equal(line(first, 'blockfill_held_fills'), '4');
  t.equal(line(first, 'blockfill_events_persisted_total'), '40');
  t.equal(line(first, 'blockfill_actors_live{kind="account"}'), '9');
  t.equal(line(first, 'blockfill_actors_stopped{kind="account"}'), '1');
  t.equal(line(first, 'blockfill_actor_restarts_total{kind="account"}'), '2');
  t.equal(line(first, 'blockfill_actors_passivated{kind="account"}'), '30');
  t.equal(line(first, 'blockfill_mailbox_depth{kind="account"}'), '6');
  t.equal(line(first, 'blockfill_lines_applied_total'), '123');
  t.equal(line(first, 'blockfill_consumer_lag_messages{partition="0"}'), '7', 'pending + unacked');
  t.equal(line(first, 'blockfill_consumer_lag_messages{partition="1"}'), '0');
  acked = 12;
  t.equal(line(await metrics.render(), 'blockfill_fills_consumed_total'), '12', 'not summed twice');
  t.match(metrics.contentType, /^text\/plain/);
});

t.test('batches, dead letters and requests are observed as they happen', async (t) => {
  const metrics = new Metrics(sources());
  metrics.observeBatch(120, 0.004);
  metrics.observeBatch(2_000, 0.2);
  metrics.deadLettered('OVERFILL');
  metrics.deadLettered('OVERFILL');
  metrics.deadLettered('UNKNOWN_FILL');
  metrics.observeRequest('GET', '/api/v1/accounts/:id', 200, 0.002);
  const text = await metrics.render();
  t.equal(line(text, 'blockfill_journal_batch_events_count'), '2');
  t.equal(line(text, 'blockfill_journal_batch_events_sum'), '2120');
  t.equal(line(text, 'blockfill_journal_commit_seconds_bucket{le="0.005"}'), '1');
  t.equal(line(text, 'blockfill_dead_letters_total{reason="OVERFILL"}'), '2');
  t.equal(line(text, 'blockfill_dead_letters_total{reason="UNKNOWN_FILL"}'), '1');
  t.equal(
    line(
      text,
      'blockfill_api_request_seconds_count{method="GET",route="/api/v1/accounts/:id",status="200"}',
    ),
    '1',
  );
  t.throws(() => metrics.observeBatch(0, 0.1), /a batch of 0 events/);
});

t.test('dead-letter reasons are bounded: past 100 they share one series', async (t) => {
  const metrics = new Metrics(sources());
  for (let i = 0; i < 150; i++) metrics.deadLettered(`REASON_${i}`);
  const text = await metrics.render();
  const series = text.split('\n').filter((l) => l.startsWith('blockfill_dead_letters_total{'));
  t.equal(series.length, 101, '100 reasons and OTHER');
  t.equal(line(text, 'blockfill_dead_letters_total{reason="OTHER"}'), '50');
});

t.test('a partition whose lag cannot be read leaves the scrape whole', async (t) => {
  const metrics = new Metrics(sources({ consumerLag: async () => [] }));
  const text = await metrics.render();
  t.equal(line(text, 'blockfill_fills_consumed_total'), '7');
  t.notMatch(text, /blockfill_consumer_lag_messages\{/);
});
