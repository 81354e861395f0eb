// @wsgate/client in Node.js against `make dev`, from the repository root:
//   export WSGATE_TOKEN=$(go run ./localstack/devtools/cmd/wsgate token --sub alice --topics 'demo.>' --publish 'demo.>')
//   node --experimental-websocket clients/js/examples/quickstart.mjs   # Node.js 22: no flag needed
// It subscribes, publishes two messages from the client, prints them as
// they arrive and stops. In a browser the same code runs without process.env.
import { Client, RefusedError, WsgateError, protocol } from '@wsgate/client';

const client = new Client({
  url: process.env.WSGATE_URL ?? 'ws://127.0.0.1:4510/',
  // Called on every connect. In a browser: fetch a fresh single-use ticket
  // from your backend here; it is sent as Sec-WebSocket-Protocol, never in the URL.
  token: async () => process.env.WSGATE_TOKEN,
  positions: {}, // where an earlier run stopped (client.positions()): it resumes from there
  onState: (s) => console.error('state:', s.state, s.error ? s.error.message : ''),
});

try {
  await client.connect(); // resolves once connected; keeps reconnecting after
} catch (e) {
  if (e instanceof RefusedError) console.error('refused:', e.status, e.reason); // 401 token_expired, 403 forbidden, ...
  process.exit(1);
}

await client.subscribe('demo.>'); // resolves with the topics subscribed
try {
  await client.subscribe('admin.>');
} catch (e) {
  if (e instanceof WsgateError && e.code === protocol.CodeForbidden) console.error('admin.> is not in the token');
}

// An async iterator per pattern, ended by an AbortSignal. A for await loop
// runs until then, so read it in its own task and go on here.
const stop = new AbortController();
const received = (async () => {
  for await (const e of client.events('demo.>', { signal: stop.signal })) {
    console.log(`${e.topic} #${e.seq} from ${e.from}: ${JSON.stringify(e.data)}`);
    if (e.data.text === 'bye') stop.abort();
  }
})();

await client.publish('demo.chat', { text: 'hello' }); // needs the token's publish claim
await client.publish('demo.chat', { text: 'bye' });
await received;
client.close();
await client.closed;
