// The client against an in-process fake of the gateway's socket: the same
// intents as clients/go's tests (tokens per connect, resubscribe, resume
// only after the subscription answered, holes, gaps, lost answers, refusals).
import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';
import { Client, RefusedError, Subscription, WsgateError } from '../dist/index.js';
import { event, FakeGateway, sleep } from './fake.mjs';

const fast = { minBackoff: 5, maxBackoff: 20, gapWait: 40, replyTimeout: 2000 };

// Every client a test starts is closed after it, passed or failed, so a
// failure does not leave timers holding the run open.
const started = [];
afterEach(() => started.splice(0).forEach((c) => c.close()));

/** setup starts a client on a fake gateway, collecting what it delivers. */
function setup(options = {}) {
  const gw = new FakeGateway();
  const got = [];
  const gaps = [];
  const states = [];
  let tokens = 0;
  const c = new Client({
    url: 'wss://gw.example/prod?x=1',
    token: async () => `tok${++tokens}`,
    topics: ['orders.*'],
    ...fast,
    onEvent: (e) => got.push(`${e.topic}:${e.seq}`),
    onGap: (g) => gaps.push(g),
    onState: (s) => states.push(s),
    WebSocket: gw.WebSocket,
    ...options,
  });
  started.push(c);
  return { gw, c, got, gaps, states, tokens: () => tokens };
}

test('a fresh token per connect, as a bearer subprotocol, never in the URL', async () => {
  const { gw, c, tokens } = setup();
  await c.connect();
  const s = gw.last;
  assert.deepEqual(s.protocols, ['bearer.tok1']);
  assert.equal(s.url.searchParams.get('envelope'), '1');
  assert.equal(s.url.searchParams.get('x'), '1', 'the caller query stays');
  assert.ok(!s.url.search.includes('tok'), 'no token in the URL');
  s.end(1006);
  await gw.waitFor(() => gw.sockets.length === 2 && gw.last.readyState === 1, 'a reconnect');
  assert.deepEqual(gw.last.protocols, ['bearer.tok2']);
  assert.equal(tokens(), 2);
  c.close();
  await c.closed;
});

test('after a drop it subscribes again and resumes only once the subscription answered, up to its start', async () => {
  const { gw, c, got } = setup();
  await c.connect();
  const sub = await gw.frame((f) => f.type === 'subscribe');
  assert.equal(sub.topic, 'orders.*');
  gw.last.reply({ type: 'subscribed', id: sub.id, topics: ['orders.*'] });
  gw.last.reply(event('orders.a', 1));
  gw.last.reply(event('orders.a', 2));
  await gw.waitFor(() => got.length === 2, 'two events');

  gw.last.end(1006);
  await gw.waitFor(() => gw.sockets.length === 2 && gw.last.readyState === 1);
  const again = await gw.frame((f) => f.type === 'subscribe');
  await sleep(30);
  assert.ok(!gw.last.frames.some((f) => f.type === 'resume'), 'no resume before the subscription answered');
  gw.last.reply(event('orders.a', 6)); // live, after the new subscription: held
  gw.last.reply({ type: 'subscribed', id: again.id, topics: ['orders.*'], seqs: { 'orders.a': 5 } });
  const resume = await gw.frame((f) => f.type === 'resume');
  assert.deepEqual({ topic: resume.topic, since: resume.since, until: resume.until }, { topic: 'orders.a', since: 2, until: 5 });
  gw.last.reply(event('orders.a', 3));
  gw.last.reply(event('orders.a', 5));
  gw.last.reply({ type: 'resumed', id: resume.id, topic: 'orders.a', seq: 5, replayed: 2 });
  await gw.waitFor(() => got.length === 5, 'all events');
  assert.deepEqual(got, ['orders.a:1', 'orders.a:2', 'orders.a:3', 'orders.a:5', 'orders.a:6'], '4 was filtered away; each once, in order');
  assert.equal(c.stats.resumes, 1);
  c.close();
});

test('a hole waits gapWait, then the client asks for it', async () => {
  const { gw, c, got } = setup();
  await c.connect();
  gw.last.reply(event('orders.a', 1));
  gw.last.reply(event('orders.a', 3));
  gw.last.reply(event('orders.a', 3)); // a repeat
  await gw.waitFor(() => got.length === 1);
  const resume = await gw.frame((f) => f.type === 'resume', 'a resume for the hole');
  assert.equal(resume.since, 1);
  assert.equal(got.length, 1, '3 waited');
  gw.last.reply(event('orders.a', 2));
  gw.last.reply({ type: 'resumed', id: resume.id, topic: 'orders.a', seq: 3, replayed: 1 });
  await gw.waitFor(() => got.length === 3);
  assert.deepEqual(got, ['orders.a:1', 'orders.a:2', 'orders.a:3']);
  assert.equal(c.stats.duplicates, 1);
  c.close();
});

test('history that cannot fill a hole is a gap: reported, and what is held delivered', async () => {
  const { gw, c, got, gaps } = setup();
  await c.connect();
  gw.last.reply(event('orders.a', 1));
  gw.last.reply(event('orders.a', 4));
  const resume = await gw.frame((f) => f.type === 'resume');
  gw.last.reply({ type: 'error', id: resume.id, code: 'history_expired', message: 'events 2-3 of orders.a are no longer kept' });
  await gw.waitFor(() => got.length === 2);
  assert.deepEqual(got, ['orders.a:1', 'orders.a:4']);
  assert.equal(gaps.length, 1);
  assert.equal(gaps[0].topic, 'orders.a');
  assert.equal(gaps[0].after, 1);
  assert.ok(gaps[0].error instanceof WsgateError && gaps[0].error.code === 'history_expired');
  c.close();
});

test('a resume cut short by the replay cap is asked again at once', async () => {
  const { gw, c, got } = setup({ gapWait: 300, topics: ['orders.a'] });
  await c.connect();
  const sub = await gw.frame((f) => f.type === 'subscribe');
  gw.last.reply({ type: 'subscribed', id: sub.id, topics: ['orders.a'], seqs: { 'orders.a': 0 } });
  gw.last.reply(event('orders.a', 1));
  gw.last.reply(event('orders.a', 9));
  await gw.waitFor(() => got.length === 1);
  const first = await gw.frame((f) => f.type === 'resume', 'the hole asked for after gapWait');
  assert.equal(first.since, 1);
  gw.last.reply({ type: 'resumed', id: first.id, topic: 'orders.a', seq: 4, replayed: 3, more: true });
  const again = await gw.frame((f) => f.type === 'resume', 'the rest asked for, without another gapWait', 200);
  assert.equal(again.since, 4);
  c.close();
});

test('a topic that had no event when subscribed resumes from 0 after a drop', async () => {
  const { gw, c, got } = setup({ topics: ['a.b'] });
  await c.connect();
  const sub = await gw.frame((f) => f.type === 'subscribe');
  gw.last.reply({ type: 'subscribed', id: sub.id, topics: ['a.b'], seqs: { 'a.b': 0 } });
  await sleep(20);
  gw.last.end(1006);
  await gw.waitFor(() => gw.sockets.length === 2 && gw.last.readyState === 1);
  const again = await gw.frame((f) => f.type === 'subscribe');
  gw.last.reply({ type: 'subscribed', id: again.id, topics: ['a.b'], seqs: { 'a.b': 1 } });
  const resume = await gw.frame((f) => f.type === 'resume', 'a resume from 0');
  assert.deepEqual({ topic: resume.topic, since: resume.since, until: resume.until }, { topic: 'a.b', since: 0, until: 1 });
  gw.last.reply(event('a.b', 1));
  gw.last.reply({ type: 'resumed', id: resume.id, topic: 'a.b', seq: 1, replayed: 1 });
  await gw.waitFor(() => got.length === 1, 'the event published while away');
  c.close();
});

test('integration errors keep one pending resend per pattern', async () => {
  const { gw, c } = setup({ topics: ['a.b', 'a.c', 'a.d'], minBackoff: 50, maxBackoff: 50 });
  await c.connect();
  await gw.waitFor(() => gw.last.frames.filter((f) => f.type === 'subscribe').length === 3, 'three subscribes');
  for (let i = 0; i < 3; i++) gw.last.reply({ message: 'Internal server error', connectionId: 'c1', requestId: `r${i}` });
  await sleep(400);
  const topics = gw.last.frames.filter((f) => f.type === 'subscribe').map((f) => f.topic).sort();
  assert.deepEqual(topics, ['a.b', 'a.b', 'a.c', 'a.c', 'a.d', 'a.d'], 'each pattern sent once more, not once per error');
  c.close();
});

test('an integration error sends the unanswered subscribe again', async () => {
  const { gw, c } = setup();
  await c.connect();
  await gw.frame((f) => f.type === 'subscribe');
  gw.last.reply({ message: 'Internal server error', connectionId: 'c1', requestId: 'r1' });
  const again = await gw.frame((f) => f.type === 'subscribe', 'the subscribe again');
  assert.equal(again.topic, 'orders.*');
  assert.equal(c.stats.retries, 1);
  c.close();
});

test('a subscribe left unanswered is asked again after replyTimeout', async () => {
  const { gw, c } = setup({ replyTimeout: 60 });
  await c.connect();
  await gw.frame((f) => f.type === 'subscribe');
  await gw.frame((f) => f.type === 'subscribe', 'the subscribe again', 1000);
  c.close();
});

test('unavailable and rate_limited subscribes are retried; a forbidden one is dropped and rejected', async () => {
  const { gw, c } = setup({ topics: [] });
  await c.connect();
  const p = c.subscribe('orders.*', { filters: { region: ['eu'] } });
  const s1 = await gw.frame((f) => f.type === 'subscribe');
  assert.deepEqual(s1.filters, { region: ['eu'] });
  assert.equal(s1.presence, undefined, 'presence only when asked');
  gw.last.reply({ type: 'error', id: s1.id, code: 'unavailable', message: 'try again' });
  const s2 = await gw.frame((f) => f.type === 'subscribe');
  gw.last.reply({ type: 'error', id: s2.id, code: 'rate_limited', message: 'slow down' });
  const s3 = await gw.frame((f) => f.type === 'subscribe');
  gw.last.reply({ type: 'subscribed', id: s3.id, topics: ['orders.*'] });
  assert.deepEqual(await p, ['orders.*']);

  const denied = c.subscribe('admin.>');
  const s4 = await gw.frame((f) => f.type === 'subscribe' && f.topic === 'admin.>');
  gw.last.reply({ type: 'error', id: s4.id, code: 'forbidden', message: 'not allowed to subscribe to admin.>' });
  await assert.rejects(denied, (e) => e instanceof WsgateError && e.code === 'forbidden');
  gw.last.end(1006);
  await gw.waitFor(() => gw.sockets.length === 2 && gw.last.readyState === 1);
  await sleep(20);
  assert.deepEqual(gw.last.frames.filter((f) => f.type === 'subscribe').map((f) => f.topic), ['orders.*'], 'the refused pattern is not asked again');
  c.close();
});

test('a refused handshake is typed by asking the gateway in an auth message, and stops the client', async () => {
  const { gw, c, states, tokens } = setup();
  gw.accept = (s) => s.protocols.length === 0; // only token-less handshakes open (auth-message mode)
  gw.onFrame = (f, s) => {
    if (f.type === 'auth') s.reply({ type: 'auth_response', id: f.id, success: false, error: 'invalid_token', message: 'token is malformed' });
  };
  await assert.rejects(c.connect(), (e) => e instanceof RefusedError && e.status === 401 && e.reason === 'invalid_token');
  await assert.rejects(c.closed, RefusedError);
  assert.equal(tokens(), 2, 'one token for the handshake, a fresh one for the auth message');
  await sleep(50);
  assert.equal(gw.sockets.length, 2, 'no retry after a 401');
  assert.deepEqual(states.map((s) => s.state), ['connecting', 'disconnected', 'closed']);
});

test('too_many_connections (429) is retried with backoff', async () => {
  const { gw, c } = setup();
  let refusals = 2;
  gw.accept = (s) => s.protocols.length === 0 || refusals === 0;
  gw.onFrame = (f, s) => {
    if (f.type === 'auth') {
      refusals--;
      s.reply({ type: 'auth_response', id: f.id, success: false, error: 'too_many_connections' });
    }
  };
  await c.connect();
  assert.equal(gw.last.protocols.length, 1, 'connected with the token once allowed');
  c.close();
});

test('when the diagnosis finds the token good, that connection is the session', async () => {
  const { gw, c } = setup();
  gw.accept = (s) => s.protocols.length === 0;
  gw.onFrame = (f, s) => {
    if (f.type === 'auth') s.reply({ type: 'auth_response', id: f.id, success: true });
  };
  await c.connect();
  await gw.frame((f) => f.type === 'subscribe', 'subscribed on the auth-message connection');
  assert.equal(gw.sockets.length, 2);
  c.close();
});

test('an unreachable gateway is retried, not refused', async () => {
  const { gw, c, states } = setup();
  let up = false;
  gw.accept = () => up;
  const p = c.connect();
  await gw.waitFor(() => gw.sockets.length >= 6, 'several attempts');
  up = true;
  await p;
  const waits = states.filter((s) => s.state === 'disconnected').map((s) => s.wait);
  assert.ok(waits.every((w) => w >= 2.5 && w <= 20), `waits within the backoff: ${waits}`);
  c.close();
});

test('positions() survive a restart: the new client resumes after them', async () => {
  const first = setup();
  await first.c.connect();
  first.gw.last.reply(event('orders.a', 1));
  first.gw.last.reply(event('orders.a', 2));
  await first.gw.waitFor(() => first.got.length === 2);
  const saved = JSON.parse(JSON.stringify(first.c.positions()));
  first.c.close();
  assert.deepEqual(saved, { 'orders.a': 2 });

  const { gw, c } = setup({ positions: saved });
  await c.connect();
  const sub = await gw.frame((f) => f.type === 'subscribe');
  gw.last.reply({ type: 'subscribed', id: sub.id, topics: ['orders.*'] });
  const resume = await gw.frame((f) => f.type === 'resume');
  assert.equal(resume.since, 2);
  assert.equal(resume.until, undefined, 'a wildcard subscription gives no start: resume to the end');
  c.close();
});

test('a scoped connection resumes with ?since= and ends the replay at the id-less resumed', async () => {
  const { gw, c, got } = setup({ topics: [], scope: 'telemetry.1', positions: { 'telemetry.1': 7 } });
  await c.connect();
  assert.equal(gw.last.url.searchParams.get('topic'), 'telemetry.1');
  assert.equal(gw.last.url.searchParams.get('since'), '7');
  gw.last.reply(event('telemetry.1', 10)); // live, during the replay: held
  gw.last.reply(event('telemetry.1', 8));
  await sleep(10);
  assert.deepEqual(got, []);
  gw.last.reply({ type: 'resumed', topic: 'telemetry.1', seq: 9, replayed: 1 });
  await gw.waitFor(() => got.length === 2);
  assert.deepEqual(got, ['telemetry.1:8', 'telemetry.1:10']);
  c.close();
});

test('pings before the idle cut, reconnects at maxAge', async () => {
  const { gw, c } = setup({ pingEvery: 20, maxAge: 150 });
  await c.connect();
  await gw.frame((f) => f.type === 'ping');
  await gw.waitFor(() => gw.sockets.length === 2 && gw.last.readyState === 1, 'a new connection after maxAge');
  assert.equal(gw.sockets[0].readyState, 3);
  assert.equal(c.stats.connects, 2);
  c.close();
});

test('events(): an async iterator per pattern, ended by its signal; it unsubscribes what it subscribed', async () => {
  const { gw, c } = setup({ topics: [] });
  await c.connect();
  const ac = new AbortController();
  const seen = [];
  const done = (async () => {
    for await (const e of c.events('orders.*', { signal: ac.signal })) {
      seen.push(e.seq);
      if (seen.length === 2) ac.abort();
    }
  })();
  const sub = await gw.frame((f) => f.type === 'subscribe');
  gw.last.reply({ type: 'subscribed', id: sub.id, topics: ['orders.*'] });
  gw.last.reply(event('other.a', 1));
  gw.last.reply(event('orders.a', 1));
  gw.last.reply(event('orders.a', 2));
  await done;
  assert.deepEqual(seen, [1, 2]);
  const unsub = await gw.frame((f) => f.type === 'unsubscribe');
  assert.equal(unsub.topic, 'orders.*');
  c.close();
});

test('events() throws the refusal of its subscription', async () => {
  const { gw, c } = setup({ topics: [] });
  await c.connect();
  const it = c.events('secret.>');
  const next = it.next();
  const sub = await gw.frame((f) => f.type === 'subscribe');
  gw.last.reply({ type: 'error', id: sub.id, code: 'forbidden', message: 'no' });
  await assert.rejects(next, (e) => e instanceof WsgateError && e.code === 'forbidden');
  c.close();
});

test('requestCurrentState collects the state frames up to the pong that follows them', async () => {
  const { gw, c } = setup();
  await c.connect();
  gw.onFrame = (f, s) => {
    if (f.type !== 'batch') return;
    const [req, ping] = f.messages;
    if (req.topic === 'orders.none') {
      s.reply({ type: 'error', id: req.id, code: 'not_found', message: 'orders.none has no state' });
      s.reply({ type: 'pong', id: ping.id, time: new Date().toISOString() });
      return;
    }
    s.reply({ type: 'order_state', n: 1 });
    s.reply({ n: 2 });
    s.reply({ type: 'pong', id: ping.id, time: new Date().toISOString() });
  };
  assert.deepEqual(await c.requestCurrentState('orders.a'), [{ type: 'order_state', n: 1 }, { n: 2 }]);
  assert.deepEqual(await c.requestCurrentState('orders.none'), []);
  c.close();
});

test('the pong that ends a state request is the client\'s own: onReply never sees it', async () => {
  const replies = [];
  const { gw, c } = setup({ onReply: (m) => replies.push(m) });
  await c.connect();
  gw.onFrame = (f, s) => {
    if (f.type !== 'batch') return;
    if (f.messages[0].topic === 'orders.none') s.reply({ type: 'error', id: f.messages[0].id, code: 'not_found', message: 'no state' });
    else s.reply({ type: 'order_state', n: 1 });
    s.reply({ type: 'pong', id: f.messages[1].id, time: new Date().toISOString() });
  };
  assert.deepEqual(await c.requestCurrentState('orders.a'), [{ type: 'order_state', n: 1 }]);
  assert.deepEqual(await c.requestCurrentState('orders.none'), [], 'refused: settled before its pong');
  await new Promise((r) => setTimeout(r, 20));
  assert.ok(!replies.some((m) => m && m.type === 'pong'), `no pong among the replies: ${JSON.stringify(replies)}`);
  c.close();
});

test('close() stops reconnecting, ends iterators and resolves closed', async () => {
  const { gw, c } = setup();
  await c.connect();
  const it = c.events('orders.*');
  const next = it.next();
  c.close();
  assert.deepEqual(await next, { value: undefined, done: true });
  await c.closed;
  await sleep(30);
  assert.equal(gw.sockets.length, 1);
  assert.throws(() => c.send({ type: 'ping' }), /not connected/);
});

test('a bad URL and a missing WebSocket are refused at once', () => {
  assert.throws(() => new Client({ url: 'https://gw.example' }), /not a ws:\/\/ or wss:\/\/ address/);
  assert.throws(() => new Client({ url: 'nope' }), TypeError);
});

test('promises nobody awaits do not become unhandled rejections', async () => {
  const unhandled = [];
  const record = (e) => unhandled.push(e);
  process.on('unhandledRejection', record);
  try {
    const { gw, c } = setup();
    gw.accept = (s) => s.protocols.length === 0;
    gw.onFrame = (f, s) => s.reply({ type: 'auth_response', id: f.id, success: false, error: 'forbidden' });
    c.subscribe('x.y'); // subscribe and forget
    c.connect(); // connect and forget: refused
    await gw.waitFor(() => gw.sockets.length === 2);
    await sleep(50);
    assert.deepEqual(unhandled, []);
  } finally {
    process.off('unhandledRejection', record);
  }
});

test('an already aborted signal stops the client and the iterator at once', async () => {
  const ac = new AbortController();
  ac.abort();
  const { gw, c } = setup({ signal: ac.signal });
  await assert.rejects(c.connect(), /closed/);
  const it = c.events('orders.*', { signal: ac.signal });
  assert.deepEqual(await it.next(), { value: undefined, done: true });
  assert.equal(gw.sockets.length, 0);
});

test('publish resolves with the event id and number; a refusal rejects; from reaches onEvent', async () => {
  const events = [];
  const { gw, c } = setup({ onEvent: (e) => events.push(e) });
  await c.connect();
  gw.onFrame = (f, s) => {
    if (f.type !== 'publish') return;
    if (f.topic === 'orders.secret') return s.reply({ type: 'error', id: f.id, code: 'forbidden', message: 'not allowed to publish to orders.secret' });
    s.reply({ ...event(f.topic, 1, f.payload), from: 'user:alice' });
    s.reply({ type: 'published', id: f.id, topic: f.topic, event_id: 'ev-1', seq: 1 });
  };
  assert.deepEqual(await c.publish('orders.a', { text: 'hi' }, { attributes: { lang: 'en' } }), { eventId: 'ev-1', seq: 1 });
  const sent = gw.last.frames.find((f) => f.type === 'publish');
  assert.deepEqual({ topic: sent.topic, payload: sent.payload, attributes: sent.attributes }, { topic: 'orders.a', payload: { text: 'hi' }, attributes: { lang: 'en' } });
  await assert.rejects(c.publish('orders.secret', 1), (e) => e instanceof WsgateError && e.code === 'forbidden');
  await gw.waitFor(() => events.length === 1);
  assert.equal(events[0].from, 'user:alice');
});

test('presence reads every page and adds up a principal met twice', async () => {
  const { gw, c } = setup();
  await c.connect();
  gw.onFrame = (f, s) => {
    if (f.type !== 'presence') return;
    if (!f.cursor) s.reply({ type: 'presence', id: f.id, topic: f.topic, members: [{ ptype: 'user', sub: 'alice', connections: 1 }], cursor: 'next' });
    else s.reply({ type: 'presence', id: f.id, topic: f.topic, members: [{ ptype: 'user', sub: 'alice', connections: 1 }, { ptype: 'anonymous', connections: 3 }] });
  };
  assert.deepEqual(await c.presence('room.1'), [{ ptype: 'user', sub: 'alice', connections: 2 }, { ptype: 'anonymous', connections: 3 }]);
  assert.deepEqual(gw.last.frames.filter((f) => f.type === 'presence').map((f) => f.cursor), [undefined, 'next']);
});

test('subscribe with presence asks for join and leave events, on every connect', async () => {
  const { gw, c } = setup({ topics: [] });
  await c.connect();
  c.subscribe('room.1', { presence: true });
  const sub = await gw.frame((f) => f.type === 'subscribe');
  assert.equal(sub.presence, true);
  gw.last.end(1006);
  await gw.waitFor(() => gw.sockets.length === 2 && gw.last.readyState === 1);
  assert.equal((await gw.frame((f) => f.type === 'subscribe')).presence, true);
});

test('a Subscription has its own state and typed events: subscribing, subscribed, publication, unsubscribed', async () => {
  const { gw, c } = setup({ topics: [] });
  await c.connect();
  const s = c.newSubscription('orders.*', { filters: { region: ['eu'] } });
  assert.ok(s instanceof Subscription);
  assert.equal(s.state, 'unsubscribed');
  assert.equal(c.getSubscription('orders.*'), s);
  assert.throws(() => c.newSubscription('orders.*'), /exists already/);
  const seen = [];
  s.on('state', (e) => seen.push(`${e.previous}>${e.state}`));
  s.on('subscribed', (e) => seen.push(`subscribed ${e.topics} ${JSON.stringify(e.seqs)}`));
  s.on('publication', (e) => seen.push(`${e.topic}:${e.seq}`));
  s.on('unsubscribed', (e) => seen.push(`unsubscribed ${e.error ?? ''}`));
  const other = c.newSubscription('other.*'); // never subscribed: no frame, no events
  other.on('publication', (e) => seen.push(`other ${e.topic}`));
  const p = s.subscribe();
  assert.equal(s.state, 'subscribing');
  const sub = await gw.frame((f) => f.type === 'subscribe');
  assert.deepEqual(sub.filters, { region: ['eu'] });
  gw.last.reply({ type: 'subscribed', id: sub.id, topics: ['orders.*'] });
  assert.deepEqual(await p, ['orders.*']);
  assert.equal(s.state, 'subscribed');
  assert.deepEqual(s.topics, ['orders.*']);
  gw.last.reply(event('orders.a', 1));
  gw.last.reply(event('other.a', 1));
  gw.last.reply(event('orders.a', 2));
  await gw.waitFor(() => seen.includes('orders.a:2'));
  assert.deepEqual(s.positions(), { 'orders.a': 2 });
  await Promise.all([s.unsubscribe(), (async () => {
    const u = await gw.frame((f) => f.type === 'unsubscribe');
    gw.last.reply({ type: 'unsubscribed', id: u.id, topics: ['orders.*'] });
  })()]);
  assert.deepEqual(seen, ['unsubscribed>subscribing', 'subscribing>subscribed', 'subscribed orders.* {}', 'orders.a:1', 'orders.a:2', 'subscribed>unsubscribed', 'unsubscribed ']);
  assert.ok(!gw.last.frames.some((f) => f.type === 'subscribe' && f.topic === 'other.*'), 'a subscription made but not subscribed is not sent');
  c.close();
});

test('replies go to the command recorded under their id, not to an id that names a pattern', async () => {
  const { gw, c } = setup({ topics: [] });
  await c.connect();
  const s = c.newSubscription('orders.*');
  const errors = [];
  s.on('error', (e) => errors.push(e.code));
  const p = s.subscribe();
  const sub = await gw.frame((f) => f.type === 'subscribe');
  assert.notEqual(sub.id, 'sub:orders.*');
  gw.last.reply({ type: 'error', id: 'sub:orders.*', code: 'forbidden', message: 'not this one' });
  await sleep(20);
  assert.equal(s.state, 'subscribing', 'an answer to an id the client did not send changes nothing');
  gw.last.reply({ type: 'error', id: sub.id, code: 'rate_limited', message: 'slow down' });
  const again = await gw.frame((f) => f.type === 'subscribe');
  assert.equal(again.id, sub.id, 'asked again under its id');
  gw.last.reply({ type: 'error', id: again.id, code: 'forbidden', message: 'not allowed to subscribe to orders.*' });
  await assert.rejects(p, (e) => e instanceof WsgateError && e.code === 'forbidden');
  assert.equal(s.state, 'unsubscribed');
  assert.deepEqual(errors, ['rate_limited', 'forbidden']);
  c.close();
});

test('joins, leaves and gaps reach the subscriptions of their topic; a malformed message is nobody\'s but onReply\'s', async () => {
  const replies = [];
  const { gw, c } = setup({ topics: [], onReply: (m) => replies.push(m) });
  await c.connect();
  const room = c.newSubscription('room.1', { presence: true });
  const seen = [];
  room.on('join', (m) => seen.push(`join ${m.sub} ${m.seq}`));
  room.on('leave', (m) => seen.push(`leave ${m.sub} ${m.seq}`));
  room.on('gap', (g) => seen.push(`gap ${g.topic} after ${g.after} ${g.error.code}`));
  room.on('publication', (e) => seen.push(`${e.topic}:${e.seq}`));
  room.subscribe();
  const sub = await gw.frame((f) => f.type === 'subscribe');
  assert.equal(sub.presence, true);
  gw.last.reply({ type: 'subscribed', id: sub.id, topics: ['room.1'], seqs: { 'room.1': 0 } });
  gw.last.reply({ type: 'join', id: 'p-1', topic: 'room.1', ptype: 'user', sub: 'bob', seq: 1 });
  gw.last.reply({ type: 'join', id: 'p-2', topic: 'room.2', ptype: 'user', sub: 'eve', seq: 1 });
  gw.last.reply({ type: 'leave', id: 'p-3', topic: 'room.1', ptype: 'user', sub: 'bob', seq: 2 });
  gw.last.reply({ type: 'subscribed', id: sub.id }); // no topics: not a subscribed message
  gw.last.reply(event('room.1', 1));
  gw.last.reply(event('room.1', 3));
  const resume = await gw.frame((f) => f.type === 'resume');
  gw.last.reply({ type: 'error', id: resume.id, code: 'history_expired', message: 'gone' });
  await gw.waitFor(() => seen.length === 5, 'the presence events, the gap and the events');
  assert.deepEqual(seen, ['join bob 1', 'leave bob 2', 'room.1:1', 'gap room.1 after 1 history_expired', 'room.1:3']);
  assert.ok(replies.some((m) => m.type === 'subscribed' && !m.topics), 'the malformed subscribed went to onReply');
  assert.equal(room.state, 'subscribed');
  c.close();
});

test('requestCurrentState leaves the gateway\'s own messages out of the state', async () => {
  const { gw, c } = setup();
  await c.connect();
  gw.onFrame = (f, s) => {
    if (f.type !== 'batch') return;
    s.reply({ status: 'open' });
    s.reply({ type: 'join', id: 'p-1', topic: 'orders.a', ptype: 'user', sub: 'bob', seq: 1 });
    s.reply({ type: 'pong', id: f.messages[1].id, time: new Date().toISOString() });
  };
  assert.deepEqual(await c.requestCurrentState('orders.a'), [{ status: 'open' }]);
  c.close();
});
