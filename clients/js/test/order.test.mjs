// The ordering rules, the backoff and topic matching, without a socket.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { backoff } from '../dist/backoff.js';
import { matches, TopicState } from '../dist/order.js';

const ev = (seq) => ({ topic: 't', seq, id: `e${seq}` });
const seqs = (out) => (out ?? []).map((e) => e.seq);

test('backoff: equal jitter, doubling from base, capped', () => {
  for (let n = 0; n < 12; n++) {
    const d = Math.min(10000, 100 * 2 ** n);
    assert.equal(backoff(n, 100, 10000, () => 0), d / 2, `attempt ${n}: the fixed half`);
    assert.equal(backoff(n, 100, 10000, () => 1), d, `attempt ${n}: at most the whole`);
    const r = backoff(n, 100, 10000);
    assert.ok(r >= d / 2 && r <= d, `attempt ${n}: ${r} in [${d / 2}, ${d}]`);
  }
  assert.equal(backoff(1000, 100, 10000, () => 1), 10000, 'a huge attempt stays capped');
  const draws = new Set(Array.from({ length: 50 }, () => backoff(5, 100, 10000)));
  assert.ok(draws.size > 40, 'clients coming back after a restart spread out');
});

test('matches: * is one segment, > one or more at the end', () => {
  const cases = [
    ['orders.*', 'orders.acme', true],
    ['orders.*', 'orders.acme.1', false],
    ['orders.*', 'orders', false],
    ['orders.>', 'orders.acme.1', true],
    ['orders.>', 'orders', false],
    ['*.acme', 'orders.acme', true],
    ['orders.acme', 'orders.acme', true],
    ['orders.acme', 'orders.acm', false],
    ['>', 'a', true],
  ];
  for (const [p, t, want] of cases) assert.equal(matches(p, t), want, `${p} ~ ${t}`);
});

test('a repeat is dropped, whether delivered or held', () => {
  const ts = new TopicState(3);
  assert.equal(ts.receive(ev(3), 0, 1000), undefined, 'at the position');
  assert.equal(ts.receive(ev(1), 0, 1000), undefined, 'below it');
  assert.deepEqual(seqs(ts.receive(ev(5), 0, 1000)), [], 'past a hole: held');
  assert.equal(ts.receive(ev(5), 0, 1000), undefined, 'held already');
  assert.deepEqual(seqs(ts.receive(ev(4), 0, 1000)), [4, 5], 'the hole filled releases both, in order');
});

test('without a known start, the first events wait gapWait for earlier ones, then the lowest starts the topic', () => {
  const ts = new TopicState();
  assert.deepEqual(seqs(ts.receive(ev(8), 1, 1000)), [], 'a fan-out numbered later may arrive first: held');
  assert.deepEqual(seqs(ts.receive(ev(7), 5, 1000)), [], 'the earlier one arrives');
  assert.ok(!ts.due(500, 1000));
  assert.ok(ts.due(1001, 1000) && ts.settling);
  assert.deepEqual(seqs(ts.settle(1001)), [7, 8], 'both, in order: none taken for a repeat');
  assert.equal(ts.last, 8);
  assert.deepEqual(seqs(ts.receive(ev(10), 1010, 1000)), [], 'now a hole waits');
  assert.equal(ts.gapSince, 1010, 'from when it appeared');
  assert.ok(ts.due(2010, 1000) && !ts.settling, 'and is asked for (resume), not settled');
  assert.deepEqual(seqs(ts.receive(ev(9), 1020, 1000)), [9, 10]);
  assert.equal(ts.gapSince, 0);
});

test('a subscription start ends the wait of events held without one', () => {
  const ts = new TopicState();
  ts.receive(ev(12), 1, 1000);
  assert.deepEqual(seqs(ts.subscribed(10, 2)), [], '11 is missing');
  assert.ok(!ts.settling);
  assert.deepEqual(seqs(ts.receive(ev(11), 3, 1000)), [11, 12]);

  const early = new TopicState();
  early.receive(ev(9), 1, 1000);
  assert.deepEqual(seqs(early.subscribed(10, 2)), [9], 'an event held is ours even numbered before the start it was given');
  assert.equal(early.last, 9);
});

test('resumed releases what is held up to its number, and skips what was filtered', () => {
  const ts = new TopicState(2);
  ts.resuming = true;
  assert.deepEqual(seqs(ts.receive(ev(6), 0, 1000)), [], 'held during a resume');
  assert.deepEqual(seqs(ts.receive(ev(4), 0, 1000)), [], 'replayed, held until resumed');
  assert.deepEqual(seqs(ts.resumed(5, 0)), [4, 6], '3 and 5 were not ours; 6 follows 5');
  assert.equal(ts.last, 6);
  assert.equal(ts.resuming, false);
});

test('lost delivers what is held, holes and all', () => {
  const ts = new TopicState(1);
  ts.receive(ev(4), 0, 1000);
  ts.receive(ev(3), 0, 1000);
  ts.resuming = true;
  assert.deepEqual(seqs(ts.lost(0)), [3, 4]);
  assert.equal(ts.last, 4);
});

test('a negative gapWait delivers at once: repeats still dropped, order not restored', () => {
  const ts = new TopicState(1);
  assert.deepEqual(seqs(ts.receive(ev(3), 0, -1)), [3]);
  assert.equal(ts.receive(ev(2), 0, -1), undefined, 'below the position now: dropped');
  assert.equal(ts.receive(ev(3), 0, -1), undefined);
});
