// Builds the package: dist/*.js and *.d.ts (tsc: the ES module npm ships)
// and dist/wsgate-client.min.js (esbuild: one minified ES module, the
// browser bundle the README sizes and the console serves). With --console
// it also copies the bundle to the console's static files, which a test
// keeps equal to a fresh build.
import { execFileSync } from 'node:child_process';
import { copyFileSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { build } from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');

rmSync(join(here, 'dist'), { recursive: true, force: true });
execFileSync(process.execPath, [tsc, '-p', here], { stdio: 'inherit' });
const bundle = join(here, 'dist/wsgate-client.min.js');
await build({
  entryPoints: [join(here, 'src/index.ts')],
  outfile: bundle,
  bundle: true,
  minify: true,
  format: 'esm',
  target: 'es2022',
  legalComments: 'none',
  logLevel: 'warning',
});
const min = readFileSync(bundle);
console.log(`@wsgate/client: ${min.length} bytes minified, ${gzipSync(min, { level: 9 }).length} bytes minified+gzipped`);
if (process.argv.includes('--console')) {
  copyFileSync(bundle, join(here, '../../localstack/devtools/console/static/wsgate-client.mjs'));
  console.log('copied to localstack/devtools/console/static/wsgate-client.mjs');
}
