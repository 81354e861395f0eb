// Runs the end-to-end scenario in Node with its built-in WebSocket (Node 22;
// Node 20 with --experimental-websocket). Started by e2e_test.go with
// E2E_API (the harness) and E2E_LIB (the client bundle, an ES module).
// Prints one JSON line of figures; exits non-zero on the first failed check.
import { pathToFileURL } from 'node:url';
import { run } from './scenario.mjs';

const lib = await import(pathToFileURL(process.env.E2E_LIB).href);
try {
  const figures = await run(lib, { api: process.env.E2E_API, runner: 'node', log: (s) => console.error(s) });
  console.log(JSON.stringify(figures));
  process.exit(0);
} catch (e) {
  console.error(e.stack || String(e));
  process.exit(1);
}
