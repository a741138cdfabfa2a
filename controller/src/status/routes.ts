import { readFileSync } from 'node:fs';
import express, { type Express, type Request, type Response } from 'express';
import type { AdminAuth } from './admin-auth.js';
import type { StatusReporter } from './report.js';

/** The page's files as `npm run build` writes them, read once at start. */
export interface PageFiles {
  index: string;
  login: string;
  assets: ReadonlyMap<string, { type: string; body: Buffer }>;
}

const ASSET_TYPES: Record<string, string> = {
  'app.js': 'text/javascript; charset=utf-8',
  'style.css': 'text/css; charset=utf-8',
  'favicon.svg': 'image/svg+xml',
};

/** Reads the built page from `dir`; undefined when it was not built (the page then says so). */
export function loadPage(dir: URL): PageFiles | undefined {
  try {
    const read = (name: string) => readFileSync(new URL(name, dir));
    const assets = new Map(Object.entries(ASSET_TYPES).map(([name, type]) => [name, { type, body: read(name) }]));
    return { index: read('index.html').toString('utf8'), login: read('login.html').toString('utf8'), assets };
  } catch {
    return undefined;
  }
}

/**
 * Everything the page loads comes from this origin and nothing else may run, frame it or be
 * sent anywhere: the page shows a cluster's inner state.
 */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    + "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'same-origin',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
  'permissions-policy': 'camera=(), microphone=(), geolocation=(), interest-cohort=()',
  'cache-control': 'no-store',
};

const FAILED_LOGIN = '<p class="error" role="alert">That token is not one of API_TOKENS.</p>';

/**
 * A login form may only be posted by this origin's own page: a browser names the page that
 * posted (Origin, Sec-Fetch-Site), and another site's form is refused. (The referrer policy is
 * `same-origin`, not `no-referrer`, because under the latter a browser sends `Origin: null`.)
 */
function sameOrigin(req: Request): boolean {
  const site = req.headers['sec-fetch-site'];
  if (site !== undefined && site !== 'same-origin' && site !== 'none') return false;
  const origin = req.headers.origin;
  return origin === undefined || origin === `http://${req.headers.host}`;
}

export interface StatusRoutesDeps {
  reporter: StatusReporter;
  auth: AdminAuth;
  page: PageFiles | undefined;
}

/** `GET /` (the page, or its login form), its assets, `GET /status.json`, and login/logout. */
export function addStatusRoutes(app: Express, { reporter, auth, page }: StatusRoutesDeps): void {
  app.use((_req, res, next) => {
    for (const [name, value] of Object.entries(SECURITY_HEADERS)) res.setHeader(name, value);
    next();
  });
  const html = (res: Response, status: number, body: string) => res.status(status).type('html').send(body);

  app.get('/', (req, res) => {
    if (!page) return void res.status(503).type('text').send('The status page was not built: run npm run build.\n');
    if (!auth.allowed(req)) return void html(res, 401, page.login.replace('<!--message-->', ''));
    html(res, 200, page.index);
  });
  app.get('/assets/:name', (req, res) => {
    const asset = page?.assets.get(String(req.params.name));
    if (!asset) return void res.status(404).json({ error: 'not_found', message: 'no such asset' });
    res.type(asset.type).send(asset.body);
  });
  app.get('/status.json', async (req, res) => {
    if (!auth.allowed(req)) return void res.status(401).json({ error: 'unauthorized', message: 'log in at / or send a bearer token of API_TOKENS' });
    res.json({ ...(await reporter.report()), auth: auth.on });
  });
  app.post('/login', express.urlencoded({ extended: false, limit: '4kb' }), (req, res) => {
    if (!sameOrigin(req)) return void res.status(403).json({ error: 'forbidden', message: 'cross-site login refused' });
    const token = typeof req.body?.token === 'string' ? req.body.token as string : '';
    const cookie = auth.login(token);
    if (!cookie) return void html(res, 401, (page?.login ?? '').replace('<!--message-->', FAILED_LOGIN));
    res.setHeader('set-cookie', cookie).redirect(303, '/');
  });
  app.post('/logout', (req, res) => {
    if (!sameOrigin(req)) return void res.status(403).json({ error: 'forbidden', message: 'cross-site logout refused' });
    res.setHeader('set-cookie', auth.logout()).redirect(303, '/');
  });
}
