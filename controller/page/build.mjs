// The status page, as the admin port serves it: app.ts bundled by esbuild, the rest copied.
import { copyFileSync, mkdirSync } from 'node:fs';
import { build } from 'esbuild';

const src = new URL('./', import.meta.url);
const out = new URL('../dist/page/', import.meta.url);
mkdirSync(out, { recursive: true });
await build({
  entryPoints: [new URL('app.ts', src).pathname],
  outfile: new URL('app.js', out).pathname,
  bundle: true,
  format: 'esm',
  target: 'es2022',
  minify: true,
  legalComments: 'none',
  logLevel: 'warning',
});
for (const file of ['index.html', 'login.html', 'style.css', 'favicon.svg']) copyFileSync(new URL(file, src), new URL(file, out));
