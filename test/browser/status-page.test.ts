/**
 * The status page in a real headless Chromium (Debian's, driven by playwright-core): its figures
 * match /pool and /metrics, it follows sessions being created and ended without a reload, it
 * logs no console error, and it asks for nothing outside the admin origin. Screenshots go to
 * .artifacts/ (git-ignored).
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { eventually, metric, pool, ROOT, startController, waitWarm, type Controller } from '../integration/harness.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const ARTIFACTS = path.join(ROOT, '.artifacts');
const TOKEN = 'browser-test-token-0123456789';

/** Chromium reaches out (updates, sync, QUIC probes) unless told not to; this machine refuses all of it. */
const QUIET = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--disable-default-apps', '--disable-extensions'];

interface Watch {
  page: Page;
  consoleErrors: string[];
  /** Every request the page tried that left the admin origin (each was aborted). */
  outside: string[];
}

/** A page on `origin` whose every request elsewhere is blocked and recorded, and whose console errors are kept. */
async function open(context: BrowserContext, origin: string): Promise<Watch> {
  const watch: Watch = { page: await context.newPage(), consoleErrors: [], outside: [] };
  await context.route('**/*', (route) => {
    const url = route.request().url();
    if (new URL(url).origin === origin) return route.continue();
    watch.outside.push(url);
    return route.abort('blockedbyclient');
  });
  watch.page.on('console', (m) => { if (m.type() === 'error') watch.consoleErrors.push(m.text()); });
  watch.page.on('pageerror', (e) => watch.consoleErrors.push(e.message));
  watch.page.on('request', (r) => { if (new URL(r.url()).origin !== origin) watch.outside.push(r.url()); });
  return watch;
}

const figure = (page: Page, selector: string) => page.locator(selector).first().textContent();
const inPool = (name: string, key: string) => `[data-pool="chatbot"] [data-${name}="${key}"]`;

async function createSession(c: Controller): Promise<string> {
  const res = await fetch(`${c.base}/sessions`, { method: 'POST' });
  assert.equal(res.status, 201);
  return ((await res.json()) as { id: string }).id;
}

/** The page's figures equal what /pool and /metrics say now (polled: the page redraws every 2 s). */
async function matches(c: Controller, page: Page, what: string): Promise<void> {
  await eventually(`page figures to match /pool and /metrics (${what})`, async () => {
    const p = (await pool(c)) as unknown as { pools: Record<string, Record<string, number>> };
    const expected = {
      warm: String(p.pools.chatbot?.warm), warming: String(p.pools.chatbot?.warming),
      assigned: String(p.pools.chatbot?.assigned), size: String(p.pools.chatbot?.size),
      claimed: String(await metric(c, 'warmpool_claims_total', 'pool="chatbot",result="claimed"')),
      sessions: String(await metric(c, 'warmpool_sessions_active')),
    };
    const shown = {
      warm: await figure(page, inPool('figure', 'warm')), warming: await figure(page, inPool('figure', 'warming')),
      assigned: await figure(page, inPool('figure', 'assigned')), size: await figure(page, inPool('figure', 'size')),
      claimed: await figure(page, inPool('key', 'claimed')),
      sessions: await figure(page, '[data-figure="sessions"]'),
    };
    return JSON.stringify(shown) === JSON.stringify(expected) ? true : undefined;
  }, 10_000, { intervalMs: 200 });
}

describe('status page in Chromium', () => {
  let browser: Browser;
  let c: Controller;
  before(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM}: run bash test/browser/setup.sh (or set CHROMIUM_PATH)`);
    mkdirSync(ARTIFACTS, { recursive: true });
    [browser, c] = await Promise.all([
      chromium.launch({ executablePath: CHROMIUM, args: QUIET, headless: true }),
      startController({ POOL_SIZE: '3', STATUS_SAMPLE_S: '0.5', SESSION_CREATE_RATE: '0', LOG_LEVEL: 'info' }),
    ]);
    await waitWarm(c, 3);
  });
  after(async () => {
    await browser?.close();
    await c?.stop();
  });

  test('when sessions come and go, then the open page follows them, matching /pool and /metrics, with no error and nothing fetched elsewhere', async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 1000 } });
    const w = await open(context, c.admin);
    await w.page.goto(`${c.admin}/`);
    await matches(c, w.page, 'at open');
    await w.page.evaluate('window.stayed = true');

    const ids = [await createSession(c), await createSession(c), await createSession(c)];
    await matches(c, w.page, 'three sessions');
    assert.equal(await w.page.locator('#sessions tbody tr').count(), 3);
    assert.equal(await figure(w.page, '[data-figure="sessions"]'), '3');

    assert.equal((await fetch(`${c.base}/sessions/${ids[0]}`, { method: 'DELETE' })).status, 204);
    await w.page.locator('#ends tbody tr').first().getByText('deleted').waitFor({ timeout: 10_000 });
    await matches(c, w.page, 'one ended');
    assert.equal(await figure(w.page, '[data-figure="sessions"]'), '2');
    assert.equal(await w.page.evaluate('window.stayed'), true, 'no reload');

    // Enough samples for the charts to draw lines, then the pictures.
    await w.page.locator('[data-chart="pool"] polyline').first().waitFor({ timeout: 10_000 });
    const html = await w.page.content();
    for (const id of ids) assert.ok(!html.includes(id), 'the page shows no session id');
    await w.page.screenshot({ path: path.join(ARTIFACTS, 'status-page.png'), fullPage: true });
    await w.page.setViewportSize({ width: 390, height: 844 });
    assert.equal(await w.page.evaluate('document.documentElement.scrollWidth <= window.innerWidth'), true, 'no sideways scrolling on a phone');
    await w.page.screenshot({ path: path.join(ARTIFACTS, 'status-page-phone.png'), fullPage: true });

    await context.close();
    assert.deepEqual(w.consoleErrors, []);
    assert.deepEqual(w.outside, []);
  });
});

describe('status page in Chromium with API_TOKENS', () => {
  let browser: Browser;
  let c: Controller;
  before(async () => {
    [browser, c] = await Promise.all([
      chromium.launch({ executablePath: CHROMIUM, args: QUIET, headless: true }),
      startController({ POOL_SIZE: '1', API_TOKENS: TOKEN }),
    ]);
  });
  after(async () => {
    await browser?.close();
    await c?.stop();
  });

  test('when an operator opens the page, then it asks for a token, and the right one shows the page until logging out', async () => {
    const context = await browser.newContext();
    const w = await open(context, c.admin);
    const first = await w.page.goto(`${c.admin}/`);
    assert.equal(first?.status(), 401);
    await w.page.fill('#token', TOKEN);
    await Promise.all([w.page.waitForURL(`${c.admin}/`), w.page.click('button[type=submit]')]);
    await w.page.locator('[data-pool="chatbot"]').waitFor({ timeout: 10_000 });
    const cookies = await context.cookies();
    assert.deepEqual(cookies.map((k) => [k.name, k.httpOnly, k.sameSite]), [['warmpool_admin', true, 'Strict']]);
    assert.equal(await w.page.evaluate('document.cookie'), '', 'no script reads the login');

    await Promise.all([w.page.waitForURL(`${c.admin}/`), w.page.click('#logout button')]);
    await w.page.locator('#token').waitFor();
    await context.close();
    // The login page's own 401 is the one error Chromium reports; anything else is a defect.
    assert.deepEqual(w.consoleErrors.filter((e) => !/401/.test(e)), []);
    assert.deepEqual(w.outside, []);
  });
});
