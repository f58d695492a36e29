import t from 'tap';
import type { AccountView, BlockOrderView } from '../actors/views.ts';
import { eventually, smallSeed, startTestService } from './helpers/harness.ts';

t.test(
  'published fills become exact allocations on the accounts, visible through the API',
  async (t) => {
    const { service } = await startTestService(t, { seed: smallSeed() });
    const fills = [
      {
        fillId: 'F1',
        blockOrderId: 'BUY1',
        seq: 1,
        quantity: 500n,
        price: 101_250_000n,
        venue: 'XNYS',
        executedAtMs: 1_000,
      },
      {
        fillId: 'F2',
        blockOrderId: 'BUY1',
        seq: 2,
        quantity: 500n,
        price: 101_750_000n,
        venue: 'XNAS',
        executedAtMs: 2_000,
      },
    ];
    for (const f of fills) await service.publisher.publishFill(f);
    const order = await eventually('BUY1 fully confirmed', async () => {
      const res = await service.app.inject({ method: 'GET', url: '/api/v1/block-orders/BUY1' });
      const view = res.json<BlockOrderView>();
      return view.fills === 2 && view.unconfirmedLines === 0 && view.confirmedThroughSeq === 2
        ? view
        : undefined;
    });
    t.equal(order.status, 'FILLED');
    t.equal(order.filledQuantity, '1000');
    t.equal(order.vwapPrice, '101.500000');
    t.same(
      order.accounts.map((a) => [a.accountId, a.allocatedQuantity]),
      [
        ['A1', '600'],
        ['A2', '300'],
        ['A3', '100'],
      ],
    );
    // A1: 300 @ 101.25 + 300 @ 101.75 (pro-rata 60 % of each fill) = 30375 + 30525 = 60900.00
    const a1 = (
      await service.app.inject({ method: 'GET', url: '/api/v1/accounts/A1' })
    ).json<AccountView>();
    t.equal(a1.positions.SEC1, '1600');
    t.equal(a1.cashMinor, String(1_000_000_00n - 6_090_000n));
    t.same(a1.lastAppliedSeqByOrder, { BUY1: 2 });

    // A1's journal through the API: decoded, exact, a page at a time.
    const events = await service.app.inject({
      method: 'GET',
      url: '/api/v1/accounts/A1/events?limit=1',
    });
    t.equal(events.statusCode, 200);
    const page = events.json<{
      accountId: string;
      events: Array<{ seq: number; type: string; at: string; event: Record<string, unknown> }>;
      nextAfter: number | null;
    }>();
    t.equal(page.accountId, 'A1');
    t.equal(page.events.length, 1);
    t.equal(page.events[0]?.seq, 1);
    t.equal(page.events[0]?.type, page.events[0]?.event.type, 'the type is the event’s own');
    t.match(page.events[0]?.at, /^\d{4}-\d\d-\d\dT/);
    t.equal(page.nextAfter, 1);
    const rest = await service.app.inject({
      method: 'GET',
      url: '/api/v1/accounts/A1/events?after=1',
    });
    const all = [...page.events, ...rest.json<typeof page>().events];
    t.same(
      all.map((e) => e.seq),
      all.map((_, i) => i + 1),
      'seqs 1..n, no gap',
    );
    t.match(JSON.stringify(all), /"quantity":"300"/, 'a 300-share line, as a decimal string');
    t.equal(rest.json<typeof page>().nextAfter, null, 'the last page');

    // The same run as Prometheus sees it.
    const scrape = await service.app.inject({ method: 'GET', url: '/metrics' });
    t.equal(scrape.statusCode, 200);
    t.match(scrape.headers['content-type'], /^text\/plain; version=0\.0\.4/);
    const value = (series: string) => {
      const line = scrape.body.split('\n').find((l) => l.startsWith(`${series} `));
      return line === undefined ? undefined : Number(line.slice(series.length + 1));
    };
    t.equal(value('blockfill_fills_consumed_total'), 2, 'both fills consumed');
    t.equal(value('blockfill_lines_applied_total'), 6, 'two fills, three accounts each');
    t.equal(value('blockfill_actors_live{kind="account"}'), 3);
    t.equal(value('blockfill_actors_passivated{kind="account"}'), 0);
    t.ok(
      Number(value('blockfill_events_persisted_total')) >= 2 + 3 * 2,
      'order and account events',
    );
    t.ok(Number(value('blockfill_journal_batch_events_count')) >= 1, 'batch sizes observed');
    t.ok(Number(value('blockfill_journal_commit_seconds_count')) >= 1, 'commit times observed');
    t.equal(value('blockfill_actors_live{kind="block-order"}'), 1);
    t.equal(value('blockfill_actors_live{kind="account"}'), 3);
    t.equal(value('blockfill_actors_stopped{kind="account"}'), 0);
    const lag = scrape.body
      .split('\n')
      .filter((l) => l.startsWith('blockfill_consumer_lag_messages{'));
    t.equal(lag.length, service.config.partitions, 'a lag figure per partition');
    t.ok(
      lag.every((l) => l.endsWith(' 0')),
      'nothing left to deliver or ack',
    );
    t.match(
      scrape.body,
      /blockfill_api_request_seconds_count\{method="GET",route="\/api\/v1\/accounts\/:id",status="200"\} 1\n/,
      'request durations by route pattern, not raw URL',
    );

    // The client picks any limit: the journal reads one page size whatever it is.
    const limits = Array.from({ length: 20 }, (_, i) => i + 1);
    const codes = await Promise.all(
      limits.map(
        async (limit) =>
          (
            await service.app.inject({
              method: 'GET',
              url: `/api/v1/accounts/A1/events?limit=${limit}`,
            })
          ).statusCode,
      ),
    );
    t.same(
      codes,
      limits.map(() => 200),
      '20 distinct limits, all served',
    );
    const unknownLater = await service.app.inject({
      method: 'GET',
      url: '/api/v1/accounts/NOPE/events?after=5',
    });
    t.equal(unknownLater.statusCode, 404, 'an unknown account is 404 at any `after`');
  },
);

t.test('reading an unknown id does not leave a live actor behind', async (t) => {
  const { service } = await startTestService(t, { seed: smallSeed() });
  const responses = await Promise.all(
    Array.from({ length: 50 }, (_, i) =>
      service.app.inject({ method: 'GET', url: `/api/v1/accounts/NOPE${i}` }),
    ),
  );
  t.ok(responses.every((r) => r.statusCode === 404));
  await eventually('no live account actors', () =>
    service.accounts.liveActors() === 0 ? true : undefined,
  );
  t.equal(service.accounts.liveActors(), 0);
});
