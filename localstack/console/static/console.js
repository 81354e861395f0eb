// wsgate console: connect, subscribe, watch events, resume after drops.
// No framework: the DOM and one WebSocket. The names on the wire come from
// protocol.js, generated from the Go package shared/protocol (a Go test in
// internal/protocoljs fails if this file writes one out instead).
'use strict';

const $ = (id) => document.getElementById(id);
const GAP_WAIT_MS = 1000;     // an event past a hole waits this long for the missing one
const PING_EVERY_MS = 240000; // inside API Gateway's 10-minute idle timeout
const MAX_ROWS = 1000;
const SPARK_POINTS = 60;

const S = {
  ws: null,
  wanted: false,       // the user asked to be connected
  attempt: 0,
  reconnects: 0,
  retryTimer: null,
  pingTimer: null,
  subs: [],            // patterns, resubscribed on every connect
  topics: new Map(),   // topic -> {last, known, held: [], resuming, gapTimer}
  paused: false,
  pending: [],         // rows received while paused
  latencies: [],
  counts: { events: 0, duplicates: 0, gaps: 0 },
};

function topicState(t) {
  let ts = S.topics.get(t);
  if (!ts) {
    ts = { last: 0, known: false, held: [], resuming: false, gapTimer: null };
    S.topics.set(t, ts);
  }
  return ts;
}

// ---- connection ----

function setState(state, info) {
  const el = $('state');
  el.textContent = state;
  el.className = 'state ' + state;
  el.dataset.state = state;
  $('conninfo').textContent = info || '';
  $('connect').disabled = state !== 'disconnected';
  $('disconnect').disabled = state === 'disconnected';
}

function endpoint() {
  const raw = $('url').value.trim();
  const u = new URL(raw);
  if (u.protocol !== 'ws:' && u.protocol !== 'wss:') throw new Error('the endpoint must be a ws:// or wss:// URL');
  u.searchParams.set('envelope', '1');
  return u.toString();
}

function connect() {
  S.wanted = true;
  clearTimeout(S.retryTimer);
  let url;
  try { url = endpoint(); } catch (e) { log('error', e.message); S.wanted = false; return; }
  const token = $('token').value.trim();
  setState(S.attempt ? 'reconnecting' : 'connecting', url.replace(/\?.*/, ''));
  let ws;
  try {
    ws = new WebSocket(url, token ? ['bearer.' + token] : []);
  } catch (e) { log('error', 'cannot connect: ' + e.message); S.wanted = false; setState('disconnected'); return; }
  S.ws = ws;
  ws.onopen = () => {
    if (S.ws !== ws) return;
    if (S.attempt) S.reconnects++;
    S.attempt = 0;
    setState('connected', url.replace(/\?.*/, ''));
    log('info', 'connected');
    for (const p of S.subs) send({ type: protocol.TypeSubscribe, id: 'sub:' + p, topic: p });
    // Resume every topic whose position we know: the gateway replays what
    // was published while we were away, then "resumed".
    for (const [t, ts] of S.topics) {
      if (ts.known) { ts.resuming = true; send({ type: protocol.TypeResume, id: 'resume:' + t, topic: t, since: ts.last }); }
    }
    clearInterval(S.pingTimer);
    S.pingTimer = setInterval(() => send({ type: protocol.TypePing }), PING_EVERY_MS);
    updateCounts();
  };
  ws.onmessage = (m) => { if (S.ws === ws) receive(m.data); };
  ws.onclose = (ev) => {
    if (S.ws !== ws) return;
    clearInterval(S.pingTimer);
    S.ws = null;
    for (const ts of S.topics.values()) ts.resuming = false;
    log(ev.code === 1000 ? 'info' : 'error', `closed: ${ev.code}${ev.reason ? ' ' + ev.reason : ''}`);
    if (!S.wanted) { setState('disconnected'); return; }
    // Equal jitter: half the backoff fixed, half random, capped at 10 s.
    const base = Math.min(10000, 250 * 2 ** S.attempt++);
    const wait = base / 2 + Math.random() * base / 2;
    setState('reconnecting', `retry in ${(wait / 1000).toFixed(1)} s`);
    S.retryTimer = setTimeout(connect, wait);
  };
}

function disconnect() {
  S.wanted = false;
  clearTimeout(S.retryTimer);
  S.attempt = 0;
  if (S.ws) S.ws.close(1000, 'console');
  else setState('disconnected');
}

function send(v) {
  if (!S.ws || S.ws.readyState !== WebSocket.OPEN) { log('error', 'not connected'); return false; }
  S.ws.send(typeof v === 'string' ? v : JSON.stringify(v));
  return true;
}

// ---- messages ----

function receive(data) {
  let m;
  try { m = JSON.parse(data); } catch { log('reply', String(data)); return; }
  const id = typeof m.id === 'string' ? m.id : '';
  if (m.type === protocol.TypeEvent && m.topic && m.seq > 0) { onEvent(m, data.length); return; }
  if (m.type === protocol.TypeSubscribed) {
    for (const [t, seq] of Object.entries(m.seqs || {})) {
      const ts = topicState(t);
      if (!ts.known && !ts.resuming && ts.held.length === 0) { ts.last = seq; ts.known = true; }
    }
  } else if (m.type === protocol.TypeResumed && id.startsWith('resume:')) {
    resumed(id.slice(7), m.seq || 0);
  } else if (m.type === protocol.TypeError && id.startsWith('resume:')) {
    const t = id.slice(7);
    if (m.code === protocol.CodeHistoryExpired) lost(t, m.message);
    else { topicState(t).resuming = false; armGap(t); }
  }
  log(m.type === protocol.TypeError ? 'error' : 'reply', data);
}

function onEvent(m, size) {
  const ts = topicState(m.topic);
  if (m.seq <= ts.last || ts.held.some((h) => h.seq === m.seq)) { S.counts.duplicates++; updateCounts(); return; }
  if (!ts.known && !ts.resuming && ts.held.length === 0) { ts.last = m.seq - 1; ts.known = true; }
  const e = { topic: m.topic, seq: m.seq, id: m.id, time: m.time, data: m.data ?? m.data_base64, size, received: Date.now(), viaResume: ts.resuming };
  const i = ts.held.findIndex((h) => h.seq > e.seq);
  if (i < 0) ts.held.push(e); else ts.held.splice(i, 0, e);
  release(m.topic);
}

// release shows the held events that follow the position without a hole;
// a hole waits GAP_WAIT_MS, then the page asks the gateway for it.
function release(t) {
  const ts = topicState(t);
  if (ts.resuming) return;
  while (ts.held.length && ts.held[0].seq === ts.last + 1) {
    const e = ts.held.shift();
    ts.last = e.seq;
    show(e);
  }
  armGap(t);
}

function armGap(t) {
  const ts = topicState(t);
  if (ts.held.length === 0) { clearTimeout(ts.gapTimer); ts.gapTimer = null; return; }
  if (ts.gapTimer || ts.resuming) return;
  ts.gapTimer = setTimeout(() => {
    ts.gapTimer = null;
    if (ts.held.length && !ts.resuming && send({ type: protocol.TypeResume, id: 'resume:' + t, topic: t, since: ts.last })) ts.resuming = true;
    else armGap(t);
  }, GAP_WAIT_MS);
}

// resumed: everything up to seq meant for us was replayed; numbers in
// between were never ours (filtered, or drawn by a redelivery and skipped).
function resumed(t, seq) {
  const ts = topicState(t);
  ts.resuming = false;
  while (ts.held.length && ts.held[0].seq <= seq) { const e = ts.held.shift(); ts.last = e.seq; show(e); }
  ts.last = Math.max(ts.last, seq);
  ts.known = true;
  release(t);
}

// lost: the gateway no longer holds what we missed. Show the hole, then
// carry on from what we hold.
function lost(t, why) {
  const ts = topicState(t);
  ts.resuming = false;
  S.counts.gaps++;
  const to = ts.held.length ? ts.held[0].seq - 1 : null;
  addRow(gapRow(t, ts.last, to, why));
  if (ts.held.length) { ts.last = ts.held[0].seq - 1; release(t); }
  updateCounts();
}

// ---- the table ----

function show(e) {
  S.counts.events++;
  const lat = e.time ? e.received - Date.parse(e.time) : NaN;
  if (Number.isFinite(lat)) { S.latencies.push(lat); if (S.latencies.length > SPARK_POINTS) S.latencies.shift(); }
  const tr = document.createElement('tr');
  tr.className = 'event' + (e.viaResume ? ' resumed' : '');
  tr.dataset.topic = e.topic;
  tr.dataset.seq = String(e.seq);
  const payload = typeof e.data === 'string' ? e.data : JSON.stringify(e.data);
  const pretty = typeof e.data === 'string' ? e.data : JSON.stringify(e.data, null, 2);
  tr.append(
    cell(clock(new Date(e.received))),
    cell(e.topic, 'topic'),
    cell(String(e.seq), 'num seq'),
    cell(bytes(e.size), 'num'),
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
  tr.title = e.id ? `event ${e.id}${e.viaResume ? ' (replayed by resume)' : ''}` : '';
  addRow(tr);
  spark();
  updateCounts();
}

function gapRow(t, after, to, why) {
  const tr = document.createElement('tr');
  tr.className = 'gap';
  tr.dataset.topic = t;
  const range = to ? `${after + 1}–${to}` : `after ${after}`;
  tr.append(cell(clock(new Date())), cell(t), cell(range, 'num'), cell(''), cell(''), cell(`gap: events ${range} are lost (${why || 'history expired'}); reload the topic's state`, 'payload'));
  return tr;
}

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
  $('counts').textContent = `${c.events} events · ${c.duplicates} repeats dropped · ${c.gaps} gaps · ${S.reconnects} reconnects` +
    (S.paused ? ` · paused, ${S.pending.length} waiting` : '');
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
      send({ type: protocol.TypeUnsubscribe, id: 'unsub:' + p, topic: p });
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
  send({ type: protocol.TypeSubscribe, id: 'sub:' + p, topic: p });
}

async function mint() {
  const q = new URLSearchParams({ sub: $('mint-sub').value.trim() || 'console', topics: $('mint-topics').value.trim() || '>' });
  const r = await fetch('/console/api/token?' + q);
  const body = await r.json();
  if (!r.ok) { log('error', 'token: ' + (body.error || r.status)); return; }
  $('token').value = body.token;
  log('info', `minted a dev token for ${body.sub}`);
}

async function publish() {
  const out = $('pub-result');
  let payload;
  try { payload = JSON.parse($('pub-payload').value); } catch (e) { out.textContent = 'payload is not JSON: ' + e.message; return; }
  const r = await fetch('/console/api/publish', {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ topic: $('pub-topic').value.trim(), payload, history: $('pub-history').checked }),
  });
  const body = await r.json();
  out.textContent = r.ok ? `published ${body.id}` : `refused: ${body.error}`;
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
  $('mint').onclick = () => mint().catch((e) => log('error', e.message));
  $('subscribe').onclick = () => { subscribe($('topic').value); };
  $('topic').onkeydown = (e) => { if (e.key === 'Enter') subscribe($('topic').value); };
  $('state-req').onclick = () => { const t = $('topic').value.trim(); if (t) send({ type: protocol.TypeRequestCurrentState, id: 'state:' + t, topic: t }); };
  $('send').onclick = () => { const v = $('command').value.trim(); if (v) send(v); };
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
    $('mint-box').hidden = !cfg.token;
    $('publish-panel').hidden = !cfg.publish;
    if (q.get('connect') === '1') connect();
  });
}

init();
