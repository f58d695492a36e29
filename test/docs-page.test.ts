/**
 * The API's Swagger UI (/docs) in headless Chromium: every operation of the
 * OpenAPI document is listed, the page logs no error (its CSP included), and
 * it asks nothing of any host but the API's own: it works offline.
 */
import { existsSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import { CHROMIUM, CHROMIUM_ARGS } from './helpers/chromium.ts';
import { chromium } from 'playwright-core';
import { buildApp } from '../api/app.ts';
import type { InspectionPort } from '../api/ports.ts';

t.test('Swagger UI lists every operation, offline and without errors', async (t) => {
  if (!existsSync(CHROMIUM)) {
    t.fail(`${CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)`);
    return;
  }
  const port = { readiness: async () => ({ ready: true }) } as unknown as InspectionPort;
  const app = await buildApp({ inspection: port });
  t.teardown(() => app.close());
  await app.listen({ port: 0, host: '127.0.0.1' });
  const origin = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  const spec = (await app.inject({ method: 'GET', url: '/docs/json' })).json() as {
    paths: Record<string, Record<string, unknown>>;
  };
  const documented = Object.values(spec.paths).reduce((n, ops) => n + Object.keys(ops).length, 0);

  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: CHROMIUM_ARGS,
    timeout: 30_000,
  });
  t.teardown(() => browser.close());
  const page = await browser.newPage();
  const errors: string[] = [];
  const elsewhere: string[] = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => void (m.type() === 'error' && errors.push(m.text())));
  page.on('request', (r) => void (r.url().startsWith(origin) || elsewhere.push(r.url())));
  await page.goto(`${origin}/docs/`);
  await page.waitForSelector('.opblock', { timeout: 20_000 });
  const listed = await page.$$eval('.opblock', (els) => els.length);
  t.equal(listed, documented, `${listed} operations listed, as documented`);
  t.ok(documented >= 8, 'the API’s routes are in the document');
  t.same(errors, [], 'no errors, no CSP violations');
  t.same(elsewhere, [], 'nothing asked of any other host');
});
