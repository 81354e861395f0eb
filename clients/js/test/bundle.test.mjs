// The shipped bundle: small, and the console serves this very build.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { gzipSync } from 'node:zlib';

const built = readFileSync(new URL('../dist/wsgate-client.min.js', import.meta.url));

test('the bundle stays under 7 KB minified and gzipped', () => {
  const gz = gzipSync(built, { level: 9 }).length;
  assert.ok(gz < 7 * 1024, `${gz} bytes minified+gzipped`);
});

test('the console serves the current build (node build.mjs --console refreshes it)', () => {
  const served = readFileSync(new URL('../../../localstack/devtools/console/static/wsgate-client.mjs', import.meta.url));
  assert.ok(served.equals(built), 'localstack/devtools/console/static/wsgate-client.mjs is stale: run `npm run build -w clients/js -- --console`');
});

test('no runtime dependencies: the bundle imports nothing', () => {
  assert.doesNotMatch(built.toString(), /\bimport\s*[^(]*from\s*["']|\brequire\(/);
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url)));
  assert.deepEqual(Object.keys(pkg.dependencies ?? {}), []);
});
