// One Node.js floor for the whole repository: the README states it, both
// package.json files declare it, and every locked package accepts it, so
// `npm ci` on the floor (what CI runs) warns of no EBADENGINE.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

const root = new URL('../../../', import.meta.url);
const json = (p) => JSON.parse(readFileSync(new URL(p, root), 'utf8'));
const FLOOR = 20;

// minimum reads the lowest version an engines range accepts; only the
// ">=X[.Y[.Z]]" form is understood (extend it when a package needs more).
function minimum(range) {
  const m = /^>=\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?$/.exec(range.trim());
  assert.ok(m, `engines range ${JSON.stringify(range)}: only ">=X.Y.Z" is understood here`);
  return [Number(m[1]), Number(m[2] ?? 0), Number(m[3] ?? 0)];
}
const accepts = (range, major) => {
  const [a, b, c] = minimum(range);
  return a < major || (a === major && b === 0 && c === 0);
};

test('package.json files declare the floor', () => {
  assert.equal(json('package.json').engines?.node, `>=${FLOOR}`);
  assert.equal(json('clients/js/package.json').engines?.node, `>=${FLOOR}`);
});

test('every locked package accepts the floor (npm ci warns no EBADENGINE)', () => {
  const lock = json('package-lock.json');
  const refused = Object.entries(lock.packages)
    .filter(([, p]) => p.engines?.node && !accepts(p.engines.node, FLOOR))
    .map(([name, p]) => `${name || '(root)'} ${p.engines.node}`);
  assert.deepEqual(refused, [], `locked packages refusing Node ${FLOOR}`);
});

test('the README names one Node.js version', () => {
  const readme = readFileSync(new URL('README.md', root), 'utf8');
  const named = [...readme.matchAll(/Node(?:\.js)? (\d+)(?:\+| or later)/g)].map((m) => Number(m[1]));
  assert.ok(named.includes(FLOOR), `README states Node.js ${FLOOR}+`);
  assert.deepEqual([...new Set(named)], [FLOOR], 'no other floor in the README');
});
