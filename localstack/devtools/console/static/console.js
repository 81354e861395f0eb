// wsgate console: connect, subscribe, watch events, resume after drops.
// No framework: the DOM and the wsgate client library (@wsgate/client,
// clients/js, served as wsgate-client.mjs), which keeps the connection:
// tickets or tokens per connect, reconnects, resubscribes, resumes every
// topic from its last sequence number, drops repeats, restores order and
// reports gaps. The names on the wire come from its protocol namespace.
import { Client, RefusedError, protocol } from './wsgate-client.mjs';

const $ = (id) => document.getElementById(id);
const MAX_ROWS = 1000;
const SPARK_POINTS = 60;

const S = {
  client: null,
  cfg: {},             // the local stack's extras (/console/api/config)
  subs: [],            // patterns, subscribed on every connect
  positions: {},       // per topic, kept across Disconnect/Connect
  connects: 0,
  paused: false,
  pending: [],         // rows received while paused
  latencies: [],
  counts: { events: 0, gaps: 0 },
  // stateRequests are the current-state requests in flight, each true once
  // a not_found reply answered it: that reply is the request's own answer,
  // which currentState logs ("has no state"), so the log shows it once.
  stateRequests: new Map(),
};

// ---- connection ----

function setState(state, info) {
  const el = $('state');
  el.textContent = state;
  el.className = 'state ' + state;
  el.dataset.state = state;
  $('conninfo').textContent = info || '';
  const idle = state === 'disconnected' || state === 'closed';
  $('connect').disabled = !idle;
  $('disconnect').disabled = idle;
}

function endpoint() {
  const u = new URL($('url').value.trim());
  if (u.protocol !== 'ws:' && u.protocol !== 'wss:') throw new Error('the endpoint must be a ws:// or wss:// URL');
  return u.toString();
}

// token is called by the client on every connect: the pasted token, or on
// the local stack without one a freshly minted dev token.
async function token() {
  const pasted = $('token').value.trim();
  if (pasted || !S.cfg.token) return pasted;
  return (await mintToken()).token;
}

function connect() {
  let url;
  try { url = endpoint(); } catch (e) { log('error', e.message); return; }
  const shown = url.replace(/\?.*/, '');
  // A refusal reaches onState as 'disconnected' and again as 'closed', and
  // rejects connect(): log each error once.
  let logged;
  const logError = (e, text) => {
    if (e === logged) return;
    logged = e;
    log(e instanceof RefusedError ? 'error' : 'info', text);
  };
  const c = new Client({
    url,
    token,
    topics: S.subs,
    positions: S.positions,
    onEvent: show,
    onGap: (g) => {
      S.counts.gaps++;
      addRow(gapRow(g.topic, g.after, g.error.message));
      updateCounts();
    },
    onState: (s) => {
      if (S.client !== c) return;
      if (s.state === 'connected') {
        S.connects++;
        log('info', 'connected');
      }
      if (s.error) logError(s.error, s.error.message + (s.wait ? ` (retry in ${(s.wait / 1000).toFixed(1)} s)` : ''));
      const state = s.state === 'closed' ? 'disconnected' : s.state === 'disconnected' ? 'reconnecting' : s.state === 'connecting' && S.connects ? 'reconnecting' : s.state;
      setState(state, s.wait ? `retry in ${(s.wait / 1000).toFixed(1)} s` : shown);
      updateCounts();
    },
    onReply: (m, raw) => {
      if (answersStateRequest(m)) return;
      log(m && m.type === protocol.TypeError ? 'error' : 'reply', raw || String(m));
    },
  });
  S.client = c;
  setState('connecting', shown);
  c.connect().catch((e) => { if (e !== logged) log('error', 'not connected: ' + e.message); logged = e; });
}

function disconnect() {
  const c = S.client;
  if (!c) return;
  S.positions = c.positions();
  c.close();
  S.client = null;
  setState('disconnected');
  log('info', 'disconnected');
}

function command(v) {
  try { S.client ? S.client.send(v) : log('error', 'not connected'); } catch (e) { log('error', e.message); }
}

// ---- events ----

function show(e) {
  S.counts.events++;
  const received = Date.now();
  const lat = e.time ? received - e.time.getTime() : NaN;
  if (Number.isFinite(lat)) { S.latencies.push(lat); if (S.latencies.length > SPARK_POINTS) S.latencies.shift(); }
  const data = e.binary ? `(${e.binary.length} bytes binary)` : e.data;
  const tr = document.createElement('tr');
  tr.className = 'event';
  tr.dataset.topic = e.topic;
  tr.dataset.seq = String(e.seq);
  const payload = typeof data === 'string' ? data : JSON.stringify(data);
  const pretty = typeof data === 'string' ? data : JSON.stringify(data, null, 2);
  tr.append(
    cell(clock(new Date(received))),
    cell(e.topic, 'topic'),
    cell(String(e.seq), 'num seq'),
    cell(bytes(e.binary ? e.binary.length : payload.length), 'num'),
    cell(Number.isFinite(lat) ? `${lat} ms` : '', 'num latency'),
  );
  const td = cell('', 'payload');
  const det = document.createElement('details');
  const sum = document.createElement('summary');
  sum.textContent = payload;
  const pre = document.createElement('pre');
  pre.textContent = pretty;
  det.append(sum, pre);
  td.append(det);
  tr.append(td);
  tr.title = e.id ? `event ${e.id}` : '';
  addRow(tr);
  spark();
  updateCounts();
}

function gapRow(t, after, why) {
  const tr = document.createElement('tr');
  tr.className = 'gap';
  tr.dataset.topic = t;
  tr.append(cell(clock(new Date())), cell(t), cell(`after ${after}`, 'num'), cell(''), cell(''), cell(`gap: events after ${after} are lost (${why}); reload the topic's state`, 'payload'));
  return tr;
}

// ---- the table ----

function addRow(tr) {
  if (S.paused) { S.pending.push(tr); updateCounts(); return; }
  const body = $('events').tBodies[0];
  applyFilter(tr);
  body.prepend(tr);
  while (body.rows.length > MAX_ROWS) body.deleteRow(-1);
}

function applyFilter(tr) {
  const f = $('filter').value.trim().toLowerCase();
  tr.hidden = f !== '' && !tr.textContent.toLowerCase().includes(f);
}

function cell(text, cls) {
  const td = document.createElement('td');
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function clock(d) { return d.toTimeString().slice(0, 8) + '.' + String(d.getMilliseconds()).padStart(3, '0'); }
function bytes(n) { return n < 1024 ? `${n} B` : `${(n / 1024).toFixed(1)} KB`; }

function spark() {
  const pts = S.latencies;
  if (!pts.length) return;
  const max = Math.max(...pts, 1);
  const w = 180, h = 28;
  const step = pts.length > 1 ? w / (SPARK_POINTS - 1) : 0;
  $('spark').querySelector('polyline').setAttribute('points',
    pts.map((v, i) => `${(i * step).toFixed(1)},${(h - 2 - (v / max) * (h - 4)).toFixed(1)}`).join(' '));
  const sorted = [...pts].sort((a, b) => a - b);
  $('spark-value').textContent = `p50 ${sorted[Math.floor(sorted.length / 2)]} ms, max ${max} ms`;
}

function updateCounts() {
  const c = S.counts;
  const repeats = S.client ? S.client.stats.duplicates : 0;
  const reconnects = Math.max(0, S.connects - 1);
  $('counts').textContent = `${plural(c.events, 'event')} · ${plural(repeats, 'repeat')} dropped · ${plural(c.gaps, 'gap')} · ${plural(reconnects, 'reconnect')}` +
    (S.paused ? ` · paused, ${S.pending.length} waiting` : '');
}

// plural: "1 event", "2 events".
function plural(n, noun) {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}

// ---- log ----

function log(kind, text) {
  const li = document.createElement('li');
  li.className = kind;
  li.textContent = `${clock(new Date())} ${text}`;
  const ol = $('log');
  ol.prepend(li);
  while (ol.children.length > 200) ol.lastChild.remove();
}

// ---- subscriptions and commands ----

function renderSubs() {
  const ul = $('subs');
  ul.replaceChildren(...S.subs.map((p) => {
    const li = document.createElement('li');
    li.textContent = p;
    li.dataset.pattern = p;
    const x = document.createElement('button');
    x.textContent = '×';
    x.title = 'unsubscribe';
    x.onclick = () => {
      S.subs = S.subs.filter((s) => s !== p);
      if (S.client) S.client.unsubscribe(p).then(() => log('info', 'unsubscribed ' + p), (e) => log('error', `unsubscribe ${p}: ${e.message}`));
      renderSubs();
    };
    li.append(x);
    return li;
  }));
}

function subscribe(p) {
  p = p.trim();
  if (!p) return;
  if (!S.subs.includes(p)) { S.subs.push(p); renderSubs(); }
  if (!S.client) return; // subscribed at the next connect
  S.client.subscribe(p).catch((e) => {
    log('error', `subscribe ${p}: ${e.code || ''} ${e.message}`);
    S.subs = S.subs.filter((s) => s !== p);
    renderSubs();
  });
}

async function currentState(t) {
  if (!S.client) { log('error', 'not connected'); return; }
  const req = {};
  S.stateRequests.set(req, false);
  try {
    const frames = await S.client.requestCurrentState(t);
    log('info', frames.length ? `${t}: ${frames.length} state frame(s)` : `${t} has no state`);
  } finally {
    S.stateRequests.delete(req);
  }
}

// answersStateRequest reports whether reply m is a state request's
// not_found, which the client turns into "no state" for currentState to
// log (it reaches onReply before the request settles), and marks that
// request answered: one not_found per request in flight, no more.
function answersStateRequest(m) {
  if (!m || m.type !== protocol.TypeError || m.code !== protocol.CodeNotFound) return false;
  for (const [req, answered] of S.stateRequests) {
    if (!answered) { S.stateRequests.set(req, true); return true; }
  }
  return false;
}

async function mintToken() {
  const q = new URLSearchParams({ sub: $('mint-sub').value.trim() || 'console', topics: $('mint-topics').value.trim() || '>' });
  const r = await fetch('/console/api/token?' + q);
  const body = await r.json();
  if (!r.ok) throw new Error('token: ' + (body.error || r.status));
  log('info', `minted a dev token for ${body.sub}`);
  return body;
}

async function publish() {
  const out = $('pub-result');
  let payload;
  try { payload = JSON.parse($('pub-payload').value); } catch (e) { out.textContent = 'payload is not JSON: ' + e.message; return; }
  const r = await fetch('/console/api/publish', {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ topic: $('pub-topic').value.trim(), payload, history: $('pub-history').checked, published_at: new Date().toISOString() }),
  });
  const body = await r.json();
  out.textContent = r.ok ? `published ${body.id}` : `refused: ${body.error}`;
}

// ---- refused events (local stack) ----

async function pollRefused() {
  const r = await fetch('/console/api/refused');
  if (!r.ok) return;
  const list = await r.json();
  $('refused').replaceChildren(...list.slice().reverse().map((e) => {
    const li = document.createElement('li');
    li.textContent = `${clock(new Date(e.time))} event ${e.event_id} refused: ${e.reason}`;
    return li;
  }));
}

// ---- wiring ----

function init() {
  const q = new URLSearchParams(location.search);
  $('url').value = q.get('url') || `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/`;
  if (q.get('token')) $('token').value = q.get('token');
  for (const p of (q.get('subscribe') || '').split(',')) if (p.trim()) S.subs.push(p.trim());
  renderSubs();
  // A token in the address bar ends up in history and logs: take it out.
  if (q.has('token')) { q.delete('token'); history.replaceState(null, '', location.pathname + (q.size ? '?' + q : '')); }

  $('connect').onclick = connect;
  $('disconnect').onclick = disconnect;
  $('mint').onclick = () => mintToken().then((b) => { $('token').value = b.token; }, (e) => log('error', e.message));
  $('subscribe').onclick = () => { subscribe($('topic').value); };
  $('topic').onkeydown = (e) => { if (e.key === 'Enter') subscribe($('topic').value); };
  $('state-req').onclick = () => { const t = $('topic').value.trim(); if (t) currentState(t).catch((e) => log('error', `current state of ${t}: ${e.message}`)); };
  $('send').onclick = () => { const v = $('command').value.trim(); if (v) command(v); };
  $('publish').onclick = () => publish().catch((e) => { $('pub-result').textContent = e.message; });
  $('pause').onclick = () => {
    S.paused = !S.paused;
    $('pause').textContent = S.paused ? 'Resume view' : 'Pause';
    if (!S.paused) { const rows = S.pending; S.pending = []; rows.forEach(addRow); }
    updateCounts();
  };
  $('filter').oninput = () => { for (const tr of $('events').tBodies[0].rows) applyFilter(tr); };
  $('clear').onclick = () => { $('events').tBodies[0].replaceChildren(); S.latencies = []; };
  setState('disconnected');
  updateCounts();

  fetch('/console/api/config').then((r) => (r.ok ? r.json() : {})).catch(() => ({})).then((cfg) => {
    S.cfg = cfg;
    $('mint-box').hidden = !cfg.token;
    $('publish-panel').hidden = !cfg.publish;
    $('refused-panel').hidden = !cfg.refused;
    if (cfg.refused) { pollRefused().catch(() => {}); setInterval(() => pollRefused().catch(() => {}), 2000); }
    if (cfg.token) $('token').placeholder = 'JWT or ticket; empty: a dev token minted per connect';
    if (q.get('connect') === '1') connect();
  });
}

init();
