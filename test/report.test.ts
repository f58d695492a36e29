/**
 * The simulation report: the schema accepts a realistic report and names
 * the field of every problem in a broken one; writeReport writes both files;
 * the HTML fetches nothing; and headless Chromium (Debian's, via
 * playwright-core) draws all five charts without logging an error.
 * Set REPORT_SCREENSHOT=/path.png to keep a screenshot of the rendered page.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';
import { CHROMIUM, CHROMIUM_ARGS } from './helpers/chromium.ts';
import t, { type Test } from 'tap';
import { CHART_NAMES, renderReportHtml } from '../simulations/report/html.ts';
import { validateReport, type RunReport, type SeriesPoint } from '../simulations/report/types.ts';
import { InvalidReportError, machineInfo, writeReport } from '../simulations/report/write.ts';

const DRAW_TIMEOUT_MS = 20_000;

/** A two-minute run: ramp up, a burst at 40-60 s, a drain at the end. */
function sampleSeries(): SeriesPoint[] {
  return Array.from({ length: 120 }, (_, i) => {
    const burst = i >= 40 && i < 60 ? 3 : 1;
    const fillsPerSec = i < 5 ? i * 80 : i > 112 ? Math.max(0, (119 - i) * 50) : 400 * burst;
    const settled = fillsPerSec > 0;
    return {
      tSec: i,
      fillsPerSec,
      linesPerSec: Math.round(fillsPerSec * (30 + (i % 13))),
      p50Ms: settled ? 4 + burst * 3 + (i % 7) * 0.3 : null,
      p99Ms: settled ? 18 + burst * 25 + (i % 11) : null,
      lagFills: i >= 40 && i < 70 ? Math.round(900 * Math.sin(((i - 40) / 30) * Math.PI)) : 12,
    };
  });
}

function sampleReport(): RunReport {
  return {
    schemaVersion: 1,
    runId: 'trading-day-20250301T101500Z-7f3a',
    scenario: 'trading-day',
    startedAt: '2025-03-01T10:15:00.000Z',
    finishedAt: '2025-03-01T10:17:01.250Z',
    settings: {
      accounts: 2000,
      securities: 50,
      seed: 42,
      shape: 'burst',
      ratePerSec: 400,
      keep: false,
      faults: null,
    },
    machine: machineInfo(),
    counts: {
      accounts: 2000,
      orders: 50,
      fills: 48_210,
      busts: 12,
      corrections: 7,
      cancels: 3,
      lines: 1_832_004,
      deadLettered: 0,
    },
    throughput: { elapsedMs: 121_250, fillsPerSec: 397.6, linesPerSec: 15_109.3 },
    latency: { p50Ms: 6.8, p90Ms: 31.5, p99Ms: 58.2, maxMs: 240.9 },
    series: sampleSeries(),
    fairness: {
      policy: 'pro-rata',
      measuredOnBooks: true,
      byPolicy: {
        'pro-rata': {
          orders: 50,
          accounts: 9_412,
          maxPriceDeviationBps: 37.4,
          p99PriceDeviationBps: 21.9,
          maxFillRateDeviation: 0.0004,
          residueMinor: '0',
          histogram: {
            upperBps: [1, 2, 5, 10, 20, 50],
            counts: [3_100, 2_400, 2_200, 1_200, 420, 92, 0],
          },
        },
        'avg-price': {
          orders: 50,
          accounts: 9_412,
          maxPriceDeviationBps: 0.01,
          p99PriceDeviationBps: 0.01,
          maxFillRateDeviation: 0.0004,
          residueMinor: '1873',
          histogram: { upperBps: [1, 2, 5, 10, 20, 50], counts: [9_412, 0, 0, 0, 0, 0, 0] },
        },
      },
    },
    rebalance: {
      models: [
        {
          model: 'growth',
          accounts: 700,
          driftBeforeBps: { p50: 310, p90: 820, max: 1_950 },
          driftAfterBps: { p50: 4, p90: 11, max: 38 },
        },
        {
          model: 'balanced',
          accounts: 800,
          driftBeforeBps: { p50: 190, p90: 560, max: 1_210 },
          driftAfterBps: { p50: 3, p90: 9, max: 22 },
        },
        {
          model: 'income',
          accounts: 400,
          driftBeforeBps: { p50: 120, p90: 300, max: 640 },
          driftAfterBps: { p50: 2, p90: 6, max: 15 },
        },
        {
          model: 'esg',
          accounts: 100,
          driftBeforeBps: { p50: 260, p90: 700, max: 1_400 },
          driftAfterBps: { p50: 0, p90: 0, max: 0 },
        },
      ],
    },
    invariants: {
      ok: true,
      checks: [
        {
          name: 'conservation',
          ok: true,
          detail: 'every fill allocated exactly: 48,210 fills, 0 lost',
        },
        { name: 'no double allocation', ok: true, detail: '1,832,004 lines, all unique' },
        { name: 'positions reconcile', ok: true, detail: '2,000 accounts match the reference' },
      ],
      violations: [],
    },
    peakRssBytes: 412 * 2 ** 20,
    memory: [
      {
        phase: 'built',
        rssBytes: 180 * 2 ** 20,
        heapUsedBytes: 90 * 2 ** 20,
        externalBytes: 12 * 2 ** 20,
        peakRssBytes: 181 * 2 ** 20,
      },
      {
        phase: 'settled',
        rssBytes: 400 * 2 ** 20,
        heapUsedBytes: 210 * 2 ** 20,
        externalBytes: 40 * 2 ** 20,
        peakRssBytes: 412 * 2 ** 20,
      },
    ],
  };
}

t.test('a realistic report validates', async (t) => {
  t.same(validateReport(sampleReport()), []);
  t.same(validateReport(JSON.parse(JSON.stringify(sampleReport()))), [], 'and so does its JSON');
});

t.test('a broken report gets problems that name the field', async (t) => {
  const problemsWith = (mutate: (r: Record<string, unknown> & RunReport) => void) => {
    const report = structuredClone(sampleReport()) as Record<string, unknown> & RunReport;
    mutate(report);
    return validateReport(report);
  };
  const expectProblem = (problems: string[], field: string) =>
    t.ok(
      problems.some((p) => p.startsWith(`${field}:`)),
      `names ${field}: ${JSON.stringify(problems)}`,
    );

  expectProblem(
    problemsWith((r) => delete (r as Partial<RunReport>).fairness),
    'fairness',
  );
  expectProblem(
    problemsWith((r) => Object.assign(r.latency, { p99Ms: 'slow' })),
    'latency.p99Ms',
  );
  expectProblem(
    problemsWith((r) => Object.assign(r, { schemaVersion: 2 })),
    'schemaVersion',
  );
  expectProblem(
    problemsWith((r) => Object.assign(r.fairness, { policy: 'lottery' })),
    'fairness.policy',
  );
  expectProblem(
    problemsWith((r) => Object.assign(r.series[3]!, { p50Ms: '5' })),
    'series.3.p50Ms',
  );
  expectProblem(
    problemsWith((r) => Object.assign(r.counts, { fills: 10n })),
    'counts.fills',
  );
  expectProblem(
    problemsWith((r) => Object.assign(r.throughput, { fillsPerSec: NaN })),
    'throughput.fillsPerSec',
  );
  expectProblem(
    problemsWith((r) => Object.assign(r.fairness.byPolicy['avg-price'], { residueMinor: 12 })),
    'fairness.byPolicy.avg-price.residueMinor',
  );
  expectProblem(
    problemsWith((r) => Object.assign(r.memory[1]!, { rssBytes: -1 })),
    'memory.1.rssBytes',
  );
  expectProblem(
    problemsWith((r) => delete (r.machine as Partial<RunReport['machine']>).cpus),
    'machine.cpus',
  );
  t.match(validateReport(null), [/^report: /], 'not an object at all');
});

t.test('writeReport writes report.json and report.html under <reportsDir>/<runId>', async (t) => {
  const reportsDir = t.testdir();
  const report = sampleReport();
  const written = await writeReport(report, { reportsDir });
  t.equal(written.dir, `${reportsDir}/${report.runId}`);
  t.same(JSON.parse(await readFile(written.jsonPath, 'utf8')), report, 'the JSON round-trips');
  const html = await readFile(written.htmlPath, 'utf8');
  t.match(html, /^<!doctype html>/);
  t.match(html, 'INVARIANTS OK');

  const broken = { ...report, runId: 'broken', latency: { ...report.latency, p99Ms: -1 } };
  await t.rejects(
    writeReport(broken, { reportsDir }),
    InvalidReportError,
    'an invalid report is refused',
  );
  t.notOk(existsSync(`${reportsDir}/broken`), 'and nothing is written for it');
});

t.test('the HTML is self-contained and its embedded data cannot break out', async (t) => {
  const report = sampleReport();
  report.settings.note = '</script><script>alert(1)</script><!--';
  report.invariants = {
    ok: false,
    checks: [{ name: 'x<y', ok: false, detail: '<b>bad</b>' }],
    violations: ['v'],
  };
  const html = renderReportHtml(report);
  t.notMatch(
    html,
    /<(script|link|img|iframe)[^>]*\s(src|href)\s*=/i,
    'no external scripts, stylesheets or images',
  );
  t.notMatch(html, /@import/i, 'no CSS imports');
  t.notMatch(html, /url\(\s*['"]?\s*(https?:)?\/\//i, 'no remote url()');
  t.notMatch(html, /alert\(1\)<\/script>/, 'the hostile setting is escaped');
  t.notMatch(html, /<b>bad<\/b>/, 'invariant details are escaped');
  t.match(html, 'INVARIANTS FAILED');
  for (const name of CHART_NAMES) t.match(html, `data-chart="${name}"`);
});

interface ChartState {
  name: string;
  drawn: string | undefined;
  surfaces: Array<{ width: number; height: number; inkPixels: number }>;
}

// Runs in the page (plain JS: the project's TypeScript has no DOM types).
const CHART_STATES = `[...document.querySelectorAll('[data-chart]')].map((el) => ({
  name: el.dataset.chart,
  drawn: el.dataset.drawn,
  surfaces: [...el.querySelectorAll('canvas, svg')].map((s) => {
    const r = s.getBoundingClientRect();
    let inkPixels = 0;
    if (s.tagName === 'CANVAS' && s.width > 0 && s.height > 0) {
      const px = s.getContext('2d').getImageData(0, 0, s.width, s.height).data;
      for (let i = 3; i < px.length; i += 4) if (px[i] !== 0) inkPixels += 1;
    } else if (s.tagName !== 'CANVAS') inkPixels = s.childElementCount;
    return { width: r.width, height: r.height, inkPixels };
  }),
}))`;

/** Opens the page in headless Chromium, recording errors and any request beyond the file. */
async function openInChromium(t: Test, htmlPath: string) {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: CHROMIUM_ARGS,
    timeout: 30_000,
  });
  t.teardown(() => browser.close());
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const errors: string[] = [];
  const requests: string[] = [];
  // An error means the charts may never all draw: stop waiting at once.
  let stopWaiting: (err: Error) => void = () => {};
  const failed = new Promise<never>((_, reject) => (stopWaiting = reject));
  failed.catch(() => {});
  const onError = (text: string) => {
    errors.push(text);
    stopWaiting(new Error(text));
  };
  page.on('console', (msg) => {
    if (msg.type() === 'error') onError(`console.error: ${msg.text()}`);
  });
  page.on('pageerror', (err) => onError(`pageerror: ${err.message}`));
  page.on('request', (req) => {
    if (!req.url().startsWith('file:')) requests.push(req.url());
  });
  await page.goto(pathToFileURL(htmlPath).href, { waitUntil: 'load' });
  const allDrawn = `document.body.dataset.chartsDrawn === "${CHART_NAMES.length}"`;
  await Promise.race([
    page.waitForFunction(allDrawn, undefined, { timeout: DRAW_TIMEOUT_MS }),
    failed,
  ]).catch((err: Error) => {
    throw new Error(`the charts did not all draw: ${err.message}; errors: ${errors.join('; ')}`);
  });
  return { page, errors, requests };
}

t.test('headless Chromium draws all five charts with no errors', async (t) => {
  if (!existsSync(CHROMIUM)) {
    t.fail(
      `${CHROMIUM} is missing: install Debian's chromium (apt-get install chromium); .ci/run does`,
    );
    return;
  }
  const startedMs = performance.now();
  const { htmlPath } = await writeReport(sampleReport(), { reportsDir: t.testdir() });
  const { page, errors, requests } = await openInChromium(t, htmlPath);
  const charts = (await page.evaluate(CHART_STATES)) as ChartState[];
  t.same(
    charts.map((c) => c.name),
    [...CHART_NAMES],
    'the five charts, in order',
  );
  for (const chart of charts) {
    t.equal(chart.drawn, 'true', `${chart.name}: data-drawn`);
    const inked = chart.surfaces.filter((s) => s.width > 0 && s.height > 0 && s.inkPixels > 0);
    t.ok(
      inked.length > 0,
      `${chart.name}: a non-empty canvas with a size (${JSON.stringify(chart.surfaces)})`,
    );
  }
  t.same(errors, [], 'no errors logged');
  t.same(requests, [], 'nothing fetched but the file itself');
  const screenshot = process.env.REPORT_SCREENSHOT;
  if (screenshot !== undefined && screenshot !== '')
    await page.screenshot({ path: screenshot, fullPage: true });
  t.comment(`chromium test took ${Math.round(performance.now() - startedMs)} ms`);
});
