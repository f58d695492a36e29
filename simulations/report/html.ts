/**
 * report.html: one self-contained page for a RunReport that opens with no
 * network. uPlot's JS and CSS are read from node_modules and inlined, the
 * report rides along as JSON, and a small script draws five charts. Each
 * chart element gets data-drawn="true" once drawn, and the body counts them
 * in data-charts-drawn: the headless-browser test waits on that.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { FairnessFigures, RunReport } from './types.ts';

export const CHART_NAMES = ['throughput', 'latency', 'lag', 'fairness', 'rebalance'] as const;
export type ChartName = (typeof CHART_NAMES)[number];

const require = createRequire(import.meta.url);

function asset(specifier: string): string {
  return readFileSync(require.resolve(specifier), 'utf8');
}

/** Inline text must not end its element early: `</script` inside JS is the same as `<\/script`. */
function inlineSafe(text: string, tag: 'script' | 'style'): string {
  return text.replace(new RegExp(`</(${tag})`, 'gi'), '<\\/$1');
}

/** JSON for a <script type="application/json">: `<` escaped, so no `</script>` or `<!--` can occur. */
export function embedJson(value: unknown): string {
  return JSON.stringify(value).replace(/</g, '\\u003c');
}

export function escapeHtml(text: string): string {
  return text
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

const integer = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
const decimal = new Intl.NumberFormat('en-US', { maximumFractionDigits: 1 });
const fine = new Intl.NumberFormat('en-US', { maximumFractionDigits: 2 });

function mib(bytes: number): string {
  return `${decimal.format(bytes / 2 ** 20)} MiB`;
}

function durationText(ms: number): string {
  if (ms < 1000) return `${integer.format(ms)} ms`;
  if (ms < 120_000) return `${decimal.format(ms / 1000)} s`;
  return `${decimal.format(ms / 60_000)} min`;
}

function tile(label: string, value: string, unit = '', tone = ''): string {
  const unitHtml = unit === '' ? '' : ` <span class="unit">${escapeHtml(unit)}</span>`;
  return `<div class="tile ${tone}"><div class="value">${escapeHtml(value)}${unitHtml}</div><div class="label">${escapeHtml(label)}</div></div>`;
}

/** Orange when nonzero: not wrong, but worth a look. */
function countTile(label: string, count: number, tone: 'note' | 'bad'): string {
  return tile(label, integer.format(count), '', count > 0 ? tone : '');
}

function tilesHtml(report: RunReport): string {
  const { counts, throughput, latency } = report;
  const fairness = report.fairness.byPolicy[report.fairness.policy];
  const policy = report.fairness.policy;
  const tiles = [
    tile('fills', integer.format(counts.fills)),
    countTile('busts', counts.busts, 'note'),
    countTile('corrections', counts.corrections, 'note'),
    countTile('cancels', counts.cancels, 'note'),
    tile('account lines / s', integer.format(throughput.linesPerSec)),
    tile('fills / s', integer.format(throughput.fillsPerSec)),
    tile('latency p50', decimal.format(latency.p50Ms), 'ms'),
    tile('latency p99', decimal.format(latency.p99Ms), 'ms'),
    tile('peak RSS', decimal.format(report.peakRssBytes / 2 ** 20), 'MiB'),
    tile(`max price deviation (${policy})`, fine.format(fairness.maxPriceDeviationBps), 'bps'),
    tile(
      `max fill-rate deviation (${policy})`,
      `±${fine.format(fairness.maxFillRateDeviation * 100)}`,
      '%',
    ),
    countTile('dead-lettered', counts.deadLettered, 'bad'),
  ];
  return `<div class="tiles">${tiles.join('\n')}</div>`;
}

function statusHtml(report: RunReport): string {
  const { invariants } = report;
  if (invariants.ok)
    return `<div class="status ok" data-status="ok">INVARIANTS OK <small>${invariants.checks.length} checks passed</small></div>`;
  const failed = invariants.checks.filter((c) => !c.ok).length + invariants.violations.length;
  return `<div class="status failed" data-status="failed">INVARIANTS FAILED <small>${failed} problem${failed === 1 ? '' : 's'}</small></div>`;
}

function factsHtml(report: RunReport): string {
  const { counts, latency } = report;
  const cell = (k: string, v: string) => `<th>${escapeHtml(k)}</th><td>${escapeHtml(v)}</td>`;
  const rows = [
    cell('scenario', report.scenario) + cell('run', report.runId),
    cell('started', report.startedAt) + cell('finished', report.finishedAt),
    cell('elapsed', durationText(report.throughput.elapsedMs)) +
      cell(
        'latency p90 / max',
        `${decimal.format(latency.p90Ms)} / ${decimal.format(latency.maxMs)} ms`,
      ),
    cell('accounts', integer.format(counts.accounts)) +
      cell('block orders', integer.format(counts.orders)),
    cell('account lines', integer.format(counts.lines)) +
      cell('fairness policy', report.fairness.policy),
  ];
  return `<table class="facts">${rows.map((r) => `<tr>${r}</tr>`).join('')}</table>`;
}

function chartSection(name: ChartName, title: string, note: string, extra = ''): string {
  return `<section class="chart" data-chart="${name}"><h2>${escapeHtml(title)}</h2><p class="note">${escapeHtml(note)}</p><div class="plots"></div>${extra}</section>`;
}

function keyValueTable(rows: Array<[string, string]>): string {
  const body = rows.map(([k, v]) => `<tr><th>${escapeHtml(k)}</th><td>${escapeHtml(v)}</td></tr>`);
  return `<table class="kv">${body.join('')}</table>`;
}

function fairnessTable(report: RunReport): string {
  const row = (policy: 'pro-rata' | 'avg-price', f: FairnessFigures) =>
    `<tr${policy === report.fairness.policy ? ' class="current"' : ''}><th>${policy}</th><td>${integer.format(f.orders)}</td><td>${integer.format(f.accounts)}</td><td>${fine.format(f.maxPriceDeviationBps)}</td><td>${fine.format(f.p99PriceDeviationBps)}</td><td>${fine.format(f.maxFillRateDeviation * 100)} %</td><td>${escapeHtml(f.residueMinor)}</td></tr>`;
  const { byPolicy } = report.fairness;
  return `<table class="grid"><tr><th>policy</th><th>orders</th><th>account-orders</th><th>max price dev (bps)</th><th>p99 price dev (bps)</th><th>max fill-rate dev</th><th>residue (cents)</th></tr>${row('pro-rata', byPolicy['pro-rata'])}${row('avg-price', byPolicy['avg-price'])}</table>`;
}

function rebalanceTable(report: RunReport): string {
  const p = (x: { p50: number; p90: number; max: number }) =>
    `${fine.format(x.p50)} / ${fine.format(x.p90)} / ${fine.format(x.max)}`;
  const rows = report.rebalance.models.map(
    (m) =>
      `<tr><th>${escapeHtml(m.model)}</th><td>${integer.format(m.accounts)}</td><td>${p(m.driftBeforeBps)}</td><td>${p(m.driftAfterBps)}</td></tr>`,
  );
  return `<table class="grid"><tr><th>model</th><th>accounts</th><th>drift before, bps (p50 / p90 / max)</th><th>drift after, bps (p50 / p90 / max)</th></tr>${rows.join('')}</table>`;
}

function invariantsHtml(report: RunReport): string {
  const { checks, violations } = report.invariants;
  const rows = checks.map(
    (c) =>
      `<tr class="${c.ok ? 'pass' : 'fail'}"><td class="mark">${c.ok ? '✓' : '✗'}</td><th>${escapeHtml(c.name)}</th><td>${escapeHtml(c.detail)}</td></tr>`,
  );
  const list =
    violations.length === 0
      ? '<p>No violations.</p>'
      : `<ul class="violations">${violations.map((v) => `<li>${escapeHtml(v)}</li>`).join('')}</ul>`;
  return `<section class="wide"><h2>Invariants</h2><table class="checks">${rows.join('')}</table>${list}</section>`;
}

function detailsHtml(report: RunReport): string {
  const settings = Object.entries(report.settings).map(([k, v]): [string, string] => [
    k,
    v === null ? '—' : String(v),
  ]);
  const m = report.machine;
  const machine: Array<[string, string]> = [
    ['host', m.hostname],
    ['platform', `${m.platform} ${m.arch}`],
    ['CPUs', `${m.cpus} × ${m.cpuModel}`],
    ['memory', mib(m.totalMemBytes)],
    ['node', m.node],
    ['load average', m.loadAvg.map((x) => fine.format(x)).join(' / ')],
  ];
  const memory = report.memory.map((p): [string, string] => [
    p.phase,
    `${mib(p.rssBytes)} resident (${mib(p.heapUsedBytes)} heap, ${mib(p.externalBytes)} external), peak ${mib(p.peakRssBytes)}`,
  ]);
  return `<section class="wide two"><div><h2>Settings</h2>${keyValueTable(settings)}</div><div><h2>Machine</h2>${keyValueTable(machine)}<h2>Memory after each phase</h2>${keyValueTable(memory)}</div></section>`;
}

function chartsHtml(report: RunReport): string {
  return [
    chartSection(
      'throughput',
      'Throughput',
      'fills settled and account lines made durable, per second',
    ),
    chartSection(
      'latency',
      'Latency',
      'publish-to-settled percentiles of the fills settled in each interval',
    ),
    chartSection(
      'lag',
      'Consumer lag',
      'fills published but not yet settled, at the end of each interval',
    ),
    chartSection(
      'fairness',
      'Fairness by policy',
      'account-orders by deviation of their average price from the block average',
      fairnessTable(report),
    ),
    chartSection(
      'rebalance',
      'Rebalance: drift from model',
      'per model, before (red) and after (green): bars show max, p90 and p50, light to dark',
      rebalanceTable(report),
    ),
  ].join('\n');
}

/** The whole report as one HTML document with nothing to fetch. */
export function renderReportHtml(report: RunReport): string {
  const uplotJs = inlineSafe(asset('uplot/dist/uPlot.iife.min.js'), 'script');
  const uplotCss = inlineSafe(asset('uplot/dist/uPlot.min.css'), 'style');
  const title = `blockfill · ${report.scenario} · ${report.runId}`;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<style>${uplotCss}</style>
<style>${PAGE_CSS}</style>
</head>
<body data-charts-drawn="0">
<header><h1>blockfill simulation: ${escapeHtml(report.scenario)}</h1></header>
<main>
${statusHtml(report)}
${factsHtml(report)}
${tilesHtml(report)}
<div class="charts">
${chartsHtml(report)}
</div>
${invariantsHtml(report)}
${detailsHtml(report)}
</main>
<script type="application/json" id="report-data">${embedJson(report)}</script>
<script>${uplotJs}</script>
<script>${inlineSafe(CLIENT_JS, 'script')}</script>
</body>
</html>
`;
}

const PAGE_CSS = `
:root { --ok: #1b7f3b; --bad: #c62828; --ink: #1f2933; --muted: #5f6b7a; --line: #d9dee5; --note: #b26a00; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink); background: #f5f7fa; }
header { background: var(--ink); color: #fff; padding: 14px 28px; }
header h1 { margin: 0; font-size: 22px; font-weight: 600; }
main { max-width: 1400px; margin: 0 auto; padding: 20px 28px 40px; }
.status { font-size: 40px; font-weight: 800; letter-spacing: 0.02em; padding: 14px 22px; border-radius: 8px; color: #fff; }
.status small { font-size: 18px; font-weight: 500; margin-left: 16px; opacity: 0.9; letter-spacing: 0; }
.status.ok { background: var(--ok); }
.status.failed { background: var(--bad); }
.facts { margin: 14px 0; border-collapse: collapse; }
.facts th { text-align: left; color: var(--muted); font-weight: 500; padding: 2px 10px 2px 0; }
.facts td { padding: 2px 28px 2px 0; font-variant-numeric: tabular-nums; }
.tiles { display: grid; grid-template-columns: repeat(auto-fill, minmax(190px, 1fr)); gap: 12px; margin: 8px 0 24px; }
.tile { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; }
.tile .value { font-size: 30px; font-weight: 700; font-variant-numeric: tabular-nums; line-height: 1.15; }
.tile .unit { font-size: 16px; font-weight: 500; color: var(--muted); }
.tile .label { color: var(--muted); font-size: 13px; text-transform: uppercase; letter-spacing: 0.04em; margin-top: 4px; }
.tile.note .value { color: var(--note); }
.tile.bad .value { color: var(--bad); }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(560px, 1fr)); gap: 18px; }
.chart, .wide { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 14px 16px; min-width: 0; }
.chart[data-chart="lag"], .chart[data-chart="fairness"], .chart[data-chart="rebalance"] { grid-column: 1 / -1; }
.wide { margin-top: 18px; }
.wide.two { display: grid; grid-template-columns: 1fr 1fr; gap: 24px; }
h2 { margin: 0 0 2px; font-size: 19px; }
.note { margin: 0 0 8px; color: var(--muted); font-size: 13px; }
.plots { display: flex; gap: 12px; flex-wrap: wrap; }
.plot { flex: 1 1 320px; min-width: 0; }
.plot h3 { margin: 4px 0; font-size: 14px; font-weight: 600; text-align: center; }
table.grid, table.checks, table.kv { border-collapse: collapse; margin-top: 10px; font-size: 13px; font-variant-numeric: tabular-nums; }
table.grid th, table.grid td { border-bottom: 1px solid var(--line); padding: 4px 10px; text-align: right; }
table.grid th:first-child { text-align: left; }
table.grid tr.current th:first-child::after { content: " (this run)"; color: var(--muted); font-weight: 400; }
table.checks td, table.checks th, table.kv th, table.kv td { padding: 3px 10px; text-align: left; vertical-align: top; border-bottom: 1px solid var(--line); }
table.kv th { color: var(--muted); font-weight: 500; }
table.checks .mark { font-weight: 800; font-size: 16px; }
table.checks tr.pass .mark { color: var(--ok); }
table.checks tr.fail .mark, table.checks tr.fail th { color: var(--bad); }
.violations li { color: var(--bad); }
.error { color: var(--bad); font-weight: 600; }
`;

// The page's own script: plain browser JS (the project's TypeScript has no DOM types).
const CLIENT_JS = String.raw`
(function () {
  'use strict';
  var report = JSON.parse(document.getElementById('report-data').textContent);
  var HEIGHT = 300;
  var AXIS_FONT = '13px system-ui, sans-serif';
  var LABEL_FONT = '600 13px system-ui, sans-serif';
  var plots = [];
  var drawnCount = 0;

  function markDrawn(host) {
    if (host.dataset.drawn === 'true') return;
    host.dataset.drawn = 'true';
    drawnCount += 1;
    document.body.dataset.chartsDrawn = String(drawnCount);
  }

  function axis(label, extra) {
    return Object.assign({ label: label, font: AXIS_FONT, labelFont: LABEL_FONT, labelSize: 22, size: 56, grid: { stroke: '#e6e9ee' } }, extra || {});
  }

  // Draws the panels of one chart; the chart counts as drawn when all of them have drawn.
  function chart(name, panels) {
    var host = document.querySelector('[data-chart="' + name + '"]');
    var holder = host.querySelector('.plots');
    var pending = panels.length;
    panels.forEach(function (panel) {
      var el = document.createElement('div');
      el.className = 'plot';
      if (panel.title) el.innerHTML = '<h3></h3>';
      if (panel.title) el.firstChild.textContent = panel.title;
      holder.appendChild(el);
      var opts = Object.assign({ width: Math.max(300, el.clientWidth), height: HEIGHT }, panel.opts);
      var done = false;
      opts.hooks = { draw: [function () { if (done) return; done = true; pending -= 1; if (pending === 0) markDrawn(host); }] };
      try {
        plots.push({ el: el, u: new uPlot(opts, panel.data, el) });
      } catch (err) {
        console.error('chart ' + name + ' failed to draw: ' + (err && err.stack || err));
        var p = document.createElement('p');
        p.className = 'error';
        p.textContent = 'This chart could not be drawn: ' + err;
        el.appendChild(p);
      }
    });
  }

  function timeX() {
    return { label: 'time', value: function (u, v) { return v == null ? '—' : v + ' s'; } };
  }

  function line(label, stroke, scale, unit) {
    return { label: label, stroke: stroke, width: 2, scale: scale, spanGaps: false,
      value: function (u, v) { return v == null ? '—' : (Math.round(v * 10) / 10).toLocaleString('en-US') + ' ' + unit; } };
  }

  var series = report.series;
  var tSec = series.map(function (p) { return p.tSec; });
  var xAxis = axis('time since start (s)');
  var xScale = { time: false };

  chart('throughput', [{
    opts: {
      scales: { x: xScale, fills: { range: function (u, min, max) { return [0, Math.max(1, max * 1.08)]; } }, lines: { range: function (u, min, max) { return [0, Math.max(1, max * 1.08)]; } } },
      series: [timeX(), line('fills settled', '#1565c0', 'fills', 'fills/s'), line('account lines durable', '#ef6c00', 'lines', 'lines/s')],
      axes: [xAxis, axis('fills / s', { scale: 'fills', stroke: '#1565c0' }), axis('account lines / s', { scale: 'lines', side: 1, size: 72, stroke: '#ef6c00', grid: { show: false } })],
    },
    data: [tSec, series.map(function (p) { return p.fillsPerSec; }), series.map(function (p) { return p.linesPerSec; })],
  }]);

  chart('latency', [{
    opts: {
      scales: { x: xScale, y: { range: function (u, min, max) { return [0, Math.max(1, max * 1.08)]; } } },
      series: [timeX(), line('p50', '#2e7d32', 'y', 'ms'), line('p99', '#c62828', 'y', 'ms')],
      axes: [xAxis, axis('latency (ms)')],
    },
    data: [tSec, series.map(function (p) { return p.p50Ms; }), series.map(function (p) { return p.p99Ms; })],
  }]);

  var lagSeries = line('lag', '#6a1b9a', 'y', 'fills');
  lagSeries.fill = 'rgba(106, 27, 154, 0.15)';
  chart('lag', [{
    opts: {
      scales: { x: xScale, y: { range: function (u, min, max) { return [0, Math.max(1, max * 1.08)]; } } },
      series: [timeX(), lagSeries],
      axes: [xAxis, axis('unsettled fills')],
    },
    data: [tSec, series.map(function (p) { return p.lagFills; })],
  }]);

  // Categorical x: indices 0..n-1, labelled by the given names.
  function categoryAxis(label, names) {
    return axis(label, {
      splits: function () { return names.map(function (_, i) { return i; }); },
      values: function (u, splits) { return splits.map(function (i) { return names[i] == null ? '' : names[i]; }); },
    });
  }

  function categoryScale(n) {
    return { time: false, range: function () { return [-0.5, Math.max(0, n - 1) + 0.5]; } };
  }

  function bars(label, fill, align, unit, size) {
    return { label: label, fill: fill, stroke: fill, width: 0, points: { show: false },
      paths: uPlot.paths.bars({ size: [size || 0.4, 90], align: align }),
      value: function (u, v) { return v == null ? '—' : (Math.round(v * 100) / 100).toLocaleString('en-US') + unit; } };
  }

  function fairnessPanel(policy) {
    var h = report.fairness.byPolicy[policy].histogram;
    var last = h.upperBps[h.upperBps.length - 1];
    // The last edge stands for +Infinity (JSON has none): label it by the edge before it.
    var names = h.counts.map(function (_, i) {
      var edge = h.upperBps[i];
      if (edge == null) return '> ' + last;
      return edge >= 1e12 && i > 0 ? '> ' + h.upperBps[i - 1] : '≤ ' + edge;
    });
    var current = policy === report.fairness.policy ? ' (this run)' : '';
    return {
      title: policy + current,
      opts: {
        scales: { x: categoryScale(names.length), y: { range: function (u, min, max) { return [0, Math.max(1, max * 1.1)]; } } },
        series: [{ label: 'deviation', value: function (u, i) { return i == null ? '—' : names[i] + ' bps'; } },
          bars('account-orders', policy === 'pro-rata' ? '#1565c0' : '#00897b', 0, '', 0.7)],
        axes: [categoryAxis('price deviation (bps)', names), axis('account-orders')],
      },
      data: [names.map(function (_, i) { return i; }), h.counts],
    };
  }

  chart('fairness', [fairnessPanel('pro-rata'), fairnessPanel('avg-price')]);

  var models = report.rebalance.models;
  var modelNames = models.map(function (m) { return m.model; });
  function drift(key, stat) { return models.map(function (m) { return m[key][stat]; }); }
  chart('rebalance', [{
    opts: {
      height: 340,
      scales: { x: categoryScale(models.length), y: { distr: 4, asinh: 1, range: function (u, min, max) { return [0, Math.max(1, max * 1.15)]; } } },
      series: [{ label: 'model', value: function (u, i) { return i == null ? '—' : modelNames[i]; } },
        bars('before max', '#f4b6b6', -1, ' bps'), bars('before p90', '#e57373', -1, ' bps'), bars('before p50', '#b71c1c', -1, ' bps'),
        bars('after max', '#b9e2bf', 1, ' bps'), bars('after p90', '#66bb6a', 1, ' bps'), bars('after p50', '#1b5e20', 1, ' bps')],
      axes: [categoryAxis('model portfolio', modelNames), axis('drift from target (bps, asinh scale)', {
        size: 64,
        // asinh splits reach below zero; drift cannot.
        values: function (u, splits) { return splits.map(function (v) { return v == null || v < 0 ? '' : v.toLocaleString('en-US'); }); },
      })],
    },
    data: [modelNames.map(function (_, i) { return i; }),
      drift('driftBeforeBps', 'max'), drift('driftBeforeBps', 'p90'), drift('driftBeforeBps', 'p50'),
      drift('driftAfterBps', 'max'), drift('driftAfterBps', 'p90'), drift('driftAfterBps', 'p50')],
  }]);

  var resizeTimer = null;
  window.addEventListener('resize', function () {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(function () {
      plots.forEach(function (p) { p.u.setSize({ width: Math.max(300, p.el.clientWidth), height: p.u.height }); });
    }, 100);
  });
  document.body.dataset.chartsDrawn = String(drawnCount);
})();
`;
