// An in-process stand-in for the gateway's WebSocket endpoint, for the unit
// tests: it records every socket the client opens, the handshake's URL and
// subprotocols, and every frame the client writes; the test answers as the
// gateway would. The end-to-end tests (e2e/) use the real local stack.

export class FakeGateway {
  constructor() {
    /** @type {FakeSocket[]} */
    this.sockets = [];
    /** Decides a handshake: true opens it, false refuses it (close 1006 before open, as a browser reports any refusal). */
    this.accept = () => true;
    /** Called with each frame a client writes, parsed. */
    this.onFrame = () => {};
    const gw = this;
    this.WebSocket = class extends FakeSocket {
      constructor(url, protocols) {
        super(gw, url, protocols);
      }
    };
  }

  get last() {
    return this.sockets[this.sockets.length - 1];
  }

  /** waitFor resolves once cond() holds, polling; rejects after ms. */
  async waitFor(cond, what = 'condition', ms = 2000) {
    const end = Date.now() + ms;
    while (!cond()) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await sleep(2);
    }
  }

  /** frame waits for the next frame (on any socket) matching pred. */
  async frame(pred, what = 'a frame', ms = 2000) {
    let got;
    await this.waitFor(() => (got = this.sockets.flatMap((s) => s.frames).find((f) => !f.seen && pred(f))), what, ms);
    got.seen = true;
    return got;
  }
}

export class FakeSocket {
  constructor(gw, url, protocols = []) {
    this.gw = gw;
    this.url = new URL(url);
    this.protocols = protocols;
    this.readyState = 0;
    this.frames = [];
    this.onopen = this.onclose = this.onmessage = null;
    gw.sockets.push(this);
    setTimeout(() => {
      if (gw.accept(this)) {
        this.readyState = 1;
        this.onopen?.({});
      } else this.end(1006, '');
    }, 1);
  }

  send(data) {
    if (this.readyState !== 1) throw new Error('send on a socket that is not open');
    const f = JSON.parse(data);
    this.frames.push(f);
    this.gw.onFrame(f, this);
  }

  close(code = 1000, reason = '') {
    if (this.readyState > 1) return;
    this.readyState = 2;
    setTimeout(() => this.end(code, reason), 1);
  }

  /** reply sends a message to the client. */
  reply(m) {
    if (this.readyState === 1) setTimeout(() => this.onmessage?.({ data: typeof m === 'string' ? m : JSON.stringify(m) }), 0);
  }

  /** end closes from the server's side (1006: the network). */
  end(code = 1006, reason = '') {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** event is an enveloped event frame. */
export const event = (topic, seq, data = { n: seq }) => ({ type: 'event', topic, seq, id: `e-${topic}-${seq}`, time: new Date().toISOString(), data });
