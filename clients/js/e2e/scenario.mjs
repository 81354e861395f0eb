// The end-to-end scenario of @wsgate/client against the local stack, the
// same in Node and in headless Chromium: it uses only what both have
// (fetch, WebSocket, AbortController). The harness (e2e_test.go) serves
// the stack's controls at `api`: tickets and tokens, publishing through
// EventBridge, dropping every connection, restarting the gateway.
//
// run resolves with figures, or throws at the first failed check.

export async function run(lib, { api, runner, log = () => {} }) {
  const { Client, RefusedError, WsgateError } = lib;
  const base = `e2e.${runner}`;
  const post = async (path, body) => {
    const r = await fetch(api + path, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body ?? {}) });
    const out = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(`${path}: HTTP ${r.status}: ${JSON.stringify(out)}`);
    return out;
  };
  const { ws } = await (await fetch(api + '/config')).json();
  const check = (ok, what) => {
    if (!ok) throw new Error('check failed: ' + what);
  };
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const waitFor = async (cond, what, ms = 20000) => {
    const end = Date.now() + ms;
    while (!cond()) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}; got ${JSON.stringify([...got])}, want ${JSON.stringify([...want])}`);
      await sleep(20);
    }
  };
  const figures = {};

  // ---- a ticket minted per connect; a wildcard with a filter ----
  let tickets = 0;
  const ticket = async () => {
    tickets++;
    return (await post('/ticket', { sub: `alice-${runner}`, topics: [`${base}.>`] })).token;
  };
  const got = new Map(); // topic -> [n, ...] in delivery order
  const seqs = new Map(); // topic -> [seq, ...]
  const states = [];
  const gaps = [];
  const client = new Client({
    url: ws,
    token: ticket,
    onEvent: (e) => {
      if (!got.has(e.topic)) (got.set(e.topic, []), seqs.set(e.topic, []));
      got.get(e.topic).push(e.data.n);
      seqs.get(e.topic).push(e.seq);
    },
    onGap: (g) => gaps.push(g),
    onState: (s) => {
      states.push(s.state);
      log(`state ${s.state}${s.error ? ': ' + s.error.message : ''}${s.wait ? ` (retry in ${Math.round(s.wait)} ms)` : ''}`);
    },
    onReply: (m, raw) => log('reply ' + raw),
  });
  await client.connect();
  const topics = await client.subscribe(`${base}.orders.*`, { filters: { region: ['eu'] } });
  check(topics.includes(`${base}.orders.*`), `subscribed: ${JSON.stringify(topics)}`);

  // Events to two topics, every other one outside the filter; all kept in
  // history. want: what the client must receive, per topic.
  const want = new Map();
  let n = 0;
  const publish = async (count) => {
    const details = [];
    for (let i = 0; i < count; i++) {
      n++;
      const topic = `${base}.orders.${n % 2 ? 'a' : 'b'}`;
      const region = n % 4 < 2 ? 'eu' : 'us';
      details.push({ topic, payload: { n }, attributes: { region }, history: true });
      if (region === 'eu') {
        if (!want.has(topic)) want.set(topic, []);
        want.get(topic).push(n);
      }
    }
    await post('/publish', { details });
  };
  const total = () => [...want.values()].reduce((s, l) => s + l.length, 0);
  const received = () => [...got.values()].reduce((s, l) => s + l.length, 0);
  const everyEventOnceInOrder = (when) => {
    for (const [topic, list] of want) {
      const g = got.get(topic) ?? [];
      check(JSON.stringify([...g].sort((a, b) => a - b)) === JSON.stringify([...list].sort((a, b) => a - b)), `${when}: ${topic} got ${JSON.stringify(g)}, want ${JSON.stringify(list)} (each once)`);
      const s = seqs.get(topic);
      check(s.every((v, i) => i === 0 || v > s[i - 1]), `${when}: ${topic} in sequence order: ${JSON.stringify(s)}`);
    }
    check(![...got.keys()].some((t) => !want.has(t)), `${when}: nothing outside the filter: ${JSON.stringify([...got.keys()])}`);
  };

  let t0 = Date.now();
  await publish(8);
  await waitFor(() => received() === total(), 'the first events');
  figures.first_events_ms = Date.now() - t0;
  everyEventOnceInOrder('before any fault');
  log(`received ${received()} events live`);

  // ---- a dropped connection: a new ticket, resubscribe, resume ----
  const before = tickets;
  const dropped = await post('/drop');
  check(dropped.dropped >= 1, 'the stack dropped the connection');
  await publish(8);
  await waitFor(() => received() === total(), 'the events published around a drop');
  everyEventOnceInOrder('after a drop');
  check(tickets > before, 'a fresh ticket for the reconnect');
  log(`after the drop: ${received()} events, ${client.stats.resumes} resumes`);

  // ---- a gateway restart while events are published ----
  t0 = Date.now();
  const restarted = post('/restart', { down_ms: 1000 });
  await sleep(100);
  await publish(8);
  await restarted;
  await waitFor(() => received() === total(), 'the events published while the gateway was down');
  figures.restart_recovered_ms = Date.now() - t0;
  everyEventOnceInOrder('after a restart');
  check(client.stats.connects >= 3, `reconnected after the drop and the restart: ${client.stats.connects} connects`);
  check(gaps.length === 0, `no gap while history holds everything: ${JSON.stringify(gaps)}`);

  // ---- the async iterator, stopped by an AbortSignal ----
  const ac = new AbortController();
  const iterated = [];
  const iteration = (async () => {
    for await (const e of client.events(`${base}.prices.*`, { signal: ac.signal })) {
      iterated.push(e.data.n);
      if (iterated.length === 3) ac.abort();
    }
  })();
  await sleep(500); // the iterator's subscribe answered (events before it are not its)
  await post('/publish', { details: [1, 2, 3, 4].map((i) => ({ topic: `${base}.prices.x`, payload: { n: 100 + i }, history: true })), wait: true });
  await iteration;
  check(iterated.length === 3 && new Set(iterated).size === 3 && iterated.every((v) => v > 100 && v < 105), `the iterator yielded three events, then stopped: ${JSON.stringify(iterated)}`);

  // ---- current state ----
  await post('/publish', { details: [{ topic: `${base}.orders.state`, state: [{ status: 'open' }, { type: 'line', qty: 2 }] }], wait: true });
  const state = await client.requestCurrentState(`${base}.orders.state`);
  check(JSON.stringify(state) === '[{"status":"open"},{"type":"line","qty":2}]', `the stored state: ${JSON.stringify(state)}`);
  check((await client.requestCurrentState(`${base}.orders.none`)).length === 0, 'no state: []');
  await client.subscribe(`${base}.nohist`);
  await post('/publish', { details: [{ topic: `${base}.nohist`, payload: { n: 1 } }], wait: true });
  await waitFor(() => got.get(`${base}.nohist`)?.length === 1, 'the event without history');
  const positions = client.positions();
  check(positions[`${base}.nohist`] === 1 && positions[`${base}.orders.a`] > 0, `positions: ${JSON.stringify(positions)}`);
  client.close();
  await client.closed;
  check(states.at(-1) === 'closed', 'closed');
  figures.connects = client.stats.connects;
  figures.resumes = client.stats.resumes;
  figures.duplicates_dropped = client.stats.duplicates;
  figures.tickets = tickets;

  // ---- history off: a gap, reported ----
  // Saved positions (as a page keeps them in localStorage) restore a new
  // client; an event published without history while it was away cannot
  // be replayed.
  await post('/publish', { details: [{ topic: `${base}.nohist`, payload: { n: 2 } }], wait: true });
  const gapped = [];
  const later = new Client({ url: ws, token: ticket, topics: [`${base}.nohist`], positions: JSON.parse(JSON.stringify(positions)), onGap: (g) => gapped.push(g) });
  await later.connect();
  await waitFor(() => gapped.length === 1, 'the gap');
  check(gapped[0].topic === `${base}.nohist` && gapped[0].after === 1, `the gap after 1: ${JSON.stringify(gapped[0])}`);
  check(gapped[0].error instanceof WsgateError && gapped[0].error.code === 'history_expired', `history_expired: ${gapped[0].error}`);
  later.close();

  // ---- publishing from the client (the token's publish claim) ----
  const chatToken = (await post('/token', { sub: `bob-${runner}`, topics: [`${base}.chat.*`], publish: [`${base}.chat.*`] })).token;
  const heard = [];
  const chatter = new Client({ url: ws, token: () => chatToken, topics: [`${base}.chat.room`], onEvent: (e) => heard.push(e) });
  await chatter.connect();
  await sleep(300); // the subscription answered
  const sent = await chatter.publish(`${base}.chat.room`, { text: 'hello' });
  check(sent.seq === 1 && sent.eventId, `published: ${JSON.stringify(sent)}`);
  await waitFor(() => heard.length === 1, 'its own message');
  check(heard[0].from === `user:bob-${runner}` && heard[0].data.text === 'hello' && heard[0].id === sent.eventId, `the message names its sender: ${JSON.stringify(heard[0])}`);
  const denied = await chatter.publish(`${base}.orders.a`, { n: 0 }).then(() => null, (e) => e);
  check(denied instanceof WsgateError && denied.code === 'forbidden', `publishing outside the claim is refused: ${denied}`);
  chatter.close();

  // ---- refusals ----
  const refused = async (token, what) => {
    const seen = [];
    const c = new Client({ url: ws, token, onState: (s) => seen.push(s.state), minBackoff: 10 });
    const err = await c.connect().then(() => null, (e) => e);
    check(err instanceof RefusedError, `${what}: refused, not retried: ${err}`);
    await sleep(200);
    check(seen.filter((s) => s === 'connecting').length === 1, `${what}: one attempt: ${seen}`);
    return err;
  };
  const bad = await refused(() => 'not.a.token', 'a bad token');
  check(bad.status === 401 && bad.reason === 'invalid_token', `a bad token is 401 invalid_token: ${bad.message}`);
  const { token } = await post('/token', { sub: 'mallory', topics: ['x.>'] });
  const [h, p] = token.split('.');
  const tampered = await refused(() => `${h}.${p}.${'A'.repeat(43)}`, 'a forged signature');
  check(tampered.status === 401, `a forged signature is 401: ${tampered.message}`);
  // A ticket is single-use: a client that keeps one (instead of minting one
  // per connect) is refused at its reconnect.
  const once = await ticket();
  const reuser = new Client({ url: ws, token: () => once, minBackoff: 10 });
  await reuser.connect();
  reuser.drop();
  const reused = await reuser.closed.then(() => null, (e) => e);
  check(reused instanceof RefusedError && reused.status === 401 && reused.reason === 'ticket_used', `a ticket used twice: ${reused}`);
  figures.refusals = [bad.reason, tampered.reason, reused.reason];
  return figures;
}
