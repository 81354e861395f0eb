// The wsgate client: one logical subscription over a succession of
// WebSocket connections. It reconnects with equal-jitter backoff, subscribes
// again, resumes every topic from the last sequence number it delivered once
// the subscription covering it has answered, drops repeats, holds events
// past a hole and then asks for it, and reports what history could not
// fill. The same behaviour as the Go client (shared/client); README's
// "JavaScript client" lists where the browser made it differ.

import { backoff } from './backoff.js';
import { ConnectionError, NotConnectedError, RefusedError, WsgateError } from './errors.js';
import { matches, TopicState, type WsgateEvent } from './order.js';
import * as P from './protocol.js';

/** Subscription filters: attribute name to the values wanted. */
export type Filters = Record<string, unknown[]>;

/** A stretch of a topic's events the gateway could no longer replay. */
export interface Gap {
  topic: string;
  /** The last sequence number delivered before it. */
  after: number;
  /** The gateway's answer (code history_expired). */
  error: WsgateError;
}

export type State = 'connecting' | 'connected' | 'disconnected' | 'closed';

/** One connection change: why a connection ended and how long until the next attempt. */
export interface StateChange {
  state: State;
  attempt: number;
  error?: Error;
  /** ms until the next attempt. */
  wait?: number;
}

/** What the client did so far. */
export interface Stats {
  connects: number;
  delivered: number;
  duplicates: number;
  resumes: number;
  gaps: number;
  retries: number;
}

/**
 * Options of a subscription. presence asks for the join and leave events of
 * a presence-enabled topic (they arrive through onReply as
 * {"type":"join"|"leave","topic","ptype","sub"}).
 */
export interface SubscribeOptions {
  filters?: Filters;
  presence?: boolean;
}

/** A WebSocket constructor: the global one by default. */
export type WebSocketClass = new (url: string, protocols?: string[]) => WebSocket;

export interface ClientOptions {
  /** wss://{api}.execute-api.{region}.amazonaws.com/{stage} */
  url: string;
  /**
   * Returns the token for each connection attempt (a fresh single-use
   * ticket, say); it travels as `Sec-WebSocket-Protocol: bearer.<token>`,
   * never in the URL. Omitted: connect without one.
   */
  token?: () => string | Promise<string>;
  /** Patterns subscribed after every connect, with `filters`. */
  topics?: string[];
  filters?: Filters;
  /** Connect scoped to one topic (?topic=), push-only; it resumes with ?since=. */
  scope?: string;
  /** Positions from a previous run (positions()): the first connect resumes after them. */
  positions?: Record<string, number>;
  /** Reconnect backoff, ms: 100 to 10,000. */
  minBackoff?: number;
  maxBackoff?: number;
  /** A ping every 4 minutes, inside API Gateway's 10-minute idle cut. */
  pingEvery?: number;
  /** Reconnect (and resume) after 110 minutes, before API Gateway's 2-hour cut. */
  maxAge?: number;
  /** How long an event past a hole waits for the missing one (1,000 ms); negative delivers at once. */
  gapWait?: number;
  /** A subscribe or resume unanswered this long (30,000 ms, past API Gateway's 29 s) is asked again. */
  replyTimeout?: number;
  /** Each event once, in sequence order per topic. */
  onEvent?: (e: WsgateEvent) => void;
  /** Events history could not replay: reload the topic's state. */
  onGap?: (g: Gap) => void;
  onState?: (s: StateChange) => void;
  /** Every other message: pong, subscribed, errors, state frames, ... (parsed, and as received). */
  onReply?: (message: unknown, raw: string) => void;
  /** Stops the client, as close() does. */
  signal?: AbortSignal;
  /** For tests and other runtimes. */
  WebSocket?: WebSocketClass;
}

interface Waiter<T> {
  resolve: (v: T) => void;
  reject: (e: Error) => void;
}

interface Listener {
  pattern: string;
  push: (e: WsgateEvent) => void;
  end: (err?: Error) => void;
}

interface Message {
  type?: string;
  id?: unknown;
  topic?: string;
  topics?: string[];
  seq?: number;
  seqs?: Record<string, number>;
  more?: boolean;
  code?: string;
  message?: string;
  success?: boolean;
  error?: string;
  time?: string;
  data?: unknown;
  data_base64?: string;
  from?: string;
  event_id?: string;
  members?: { ptype: string; sub?: string; connections: number }[];
  cursor?: string;
}

// The ids of the client's own commands name what they are about, so an
// answer is tied to its pattern or topic without a table of requests.
const SUB = 'sub:';
const RESUME = 'resume:';
const UNSUB = 'unsub:';
const STATE = 'state:';
// API Gateway's whole answer to a frame whose invocation failed.
const INTEGRATION_ERROR = 'Internal server error';
const AUTH_ID = 'auth';

// The auth failures (auth_response.error) a refused handshake maps to, and
// whether to stop: 401 and 403 stop, as the Go client does; 429 waits.
const REFUSALS: Record<string, number> = {
  [P.AuthInvalidToken]: 401,
  [P.AuthTicketUsed]: 401,
  [P.AuthForbidden]: 403,
  [P.AuthRevoked]: 403,
  [P.AuthTooManyConnections]: 429,
};

// The gateway's own messages other than events.
const REPLIES = new Set([P.TypeError, P.TypeSubscribed, P.TypeUnsubscribed, P.TypePong, P.TypeResumed, P.TypeAuthResponse]);

const str = (v: unknown): string => (typeof v === 'string' ? v : '');

export class Client {
  private readonly o: Required<Pick<ClientOptions, 'minBackoff' | 'maxBackoff' | 'pingEvery' | 'maxAge' | 'gapWait' | 'replyTimeout'>> & ClientOptions;
  private readonly WS: WebSocketClass;
  private ws?: WebSocket;
  private running = false;
  private stopped = false;
  private wake?: () => void;
  private readonly topicStates = new Map<string, TopicState>();
  /** Patterns subscribed on every connect, with their options. */
  private readonly subs = new Map<string, SubscribeOptions>();
  private readonly subWaiters = new Map<string, Waiter<string[]>[]>();
  private readonly replyWaiters = new Map<string, Waiter<Message>>();
  private readonly retries = new Map<string, number>();
  private readonly resending = new Set<string>();
  /** The client's commands on this connection not answered yet, with when sent. */
  private readonly asked = new Map<string, number>();
  private readonly listeners = new Set<Listener>();
  /** Patterns events() subscribed, with how many iterations use them. */
  private readonly iterSubs = new Map<string, number>();
  /** State requests in flight, collecting their frames. */
  private readonly stateCollectors = new Set<unknown[]>();
  private readonly timers: ReturnType<typeof setTimeout>[] = [];
  private connectedWaiters: Waiter<void>[] = [];
  private closedWaiter!: Waiter<void>;
  private seqCounter = 0;
  readonly stats: Stats = { connects: 0, delivered: 0, duplicates: 0, resumes: 0, gaps: 0, retries: 0 };
  /** Resolves when the client is closed; rejects with a RefusedError when the gateway refuses it for good. */
  readonly closed: Promise<void>;

  constructor(options: ClientOptions) {
    let u: URL | undefined;
    try {
      u = new URL(options.url);
    } catch {
      /* reported below */
    }
    if (!u || (u.protocol !== 'ws:' && u.protocol !== 'wss:')) throw new TypeError(`wsgate: url ${JSON.stringify(options.url)} is not a ws:// or wss:// address`);
    this.o = { minBackoff: 100, maxBackoff: 10000, pingEvery: 240000, maxAge: 110 * 60000, gapWait: 1000, replyTimeout: 30000, ...options };
    this.o.maxBackoff = Math.max(this.o.maxBackoff, this.o.minBackoff);
    const WS = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketClass }).WebSocket;
    if (!WS) throw new TypeError('wsgate: no WebSocket in this runtime (Node 22 has one; on Node 20 run with --experimental-websocket, or pass options.WebSocket)');
    this.WS = WS;
    for (const p of options.topics ?? []) this.subs.set(p, { filters: options.filters });
    for (const [t, seq] of Object.entries(options.positions ?? {})) this.topicStates.set(t, new TopicState(seq));
    this.closed = handled(new Promise((resolve, reject) => (this.closedWaiter = { resolve, reject })));
    if (options.signal?.aborted) this.stopped = true;
    options.signal?.addEventListener('abort', () => this.close());
  }

  /**
   * connect starts the client, which then keeps a connection until close();
   * the promise resolves once it is connected, and rejects with a
   * RefusedError when the gateway refuses it for good (401, 403). Left
   * unawaited, a rejection is not an unhandled one: onState reports it too.
   */
  connect(): Promise<void> {
    if (this.stopped) return handled(Promise.reject(new Error('wsgate: client closed')));
    const p = handled(
      new Promise<void>((resolve, reject) => {
        if (this.ws?.readyState === 1) resolve();
        else this.connectedWaiters.push({ resolve, reject });
      }),
    );
    if (!this.running) {
      this.running = true;
      void this.run();
    }
    return p;
  }

  /** close ends the connection and stops reconnecting; iterators from events() end. */
  close(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.wake?.();
    this.ws?.close(1000, 'closed');
    this.finish();
  }

  /** Sequence numbers delivered, by topic: keep them (localStorage, say) and pass them as options.positions. */
  positions(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [t, ts] of this.topicStates) if (ts.known && ts.last > 0) out[t] = ts.last;
    return out;
  }

  /**
   * subscribe adds a pattern, subscribed on this and every later
   * connection; resolves with the topics the gateway subscribed, rejects
   * with a WsgateError when it refuses the pattern (which is then dropped).
   */
  subscribe(pattern: string, options: SubscribeOptions = {}): Promise<string[]> {
    this.subs.set(pattern, options);
    const p = handled(
      new Promise<string[]>((resolve, reject) => {
        const list = this.subWaiters.get(pattern) ?? [];
        list.push({ resolve, reject });
        this.subWaiters.set(pattern, list);
      }),
    );
    if (this.ws?.readyState === 1) this.sendSubscribe(this.ws, pattern);
    return p;
  }

  /** unsubscribe drops a pattern; resolves once the gateway confirms (at once when not connected). */
  async unsubscribe(pattern: string): Promise<void> {
    this.subs.delete(pattern);
    this.iterSubs.delete(pattern);
    this.settleSub(pattern, undefined, new WsgateError('unsubscribed', `unsubscribed from ${pattern}`), true);
    if (this.ws?.readyState === 1) await this.request({ type: P.TypeUnsubscribe, topic: pattern }, UNSUB + pattern);
  }

  /**
   * requestCurrentState asks for a topic's stored state: the frames its
   * publishers stored, in order; [] when it has none (or none this
   * principal may see: the gateway does not tell them apart).
   */
  async requestCurrentState(topic: string): Promise<unknown[]> {
    // A batch with a ping after the request: the pong marks where the
    // state frames end.
    const id = STATE + topic + ':' + ++this.seqCounter;
    const frames: unknown[] = [];
    this.stateCollectors.add(frames);
    try {
      await this.request({ type: P.TypeBatch, messages: [{ type: P.TypeRequestCurrentState, topic, id }, { type: P.TypePing, id: id + ':end' }] }, id + ':end', id);
    } catch (e) {
      if (e instanceof WsgateError && e.code === P.CodeNotFound) return [];
      throw e;
    } finally {
      this.stateCollectors.delete(frames);
    }
    return frames;
  }

  /**
   * events iterates over the events of topics matching pattern, subscribing
   * to it if the client is not yet (and unsubscribing when the iteration
   * ends, if it did). Ends when signal aborts or the client closes; throws
   * when the gateway refuses the subscription or the client for good.
   */
  events(pattern: string, options: { filters?: Filters; signal?: AbortSignal } = {}): AsyncIterableIterator<WsgateEvent> {
    const queue: WsgateEvent[] = [];
    let failure: Error | undefined;
    let done = false;
    let notify: (() => void) | undefined;
    const own = !this.subs.has(pattern) || this.iterSubs.has(pattern);
    if (own) this.iterSubs.set(pattern, (this.iterSubs.get(pattern) ?? 0) + 1);
    const l: Listener = {
      pattern,
      push: (e) => {
        queue.push(e);
        notify?.();
      },
      end: (err) => {
        if (done) return;
        done = true;
        failure = err;
        queue.length = 0; // stopped: what is not taken yet is not wanted
        this.listeners.delete(l);
        const n = (this.iterSubs.get(pattern) ?? 0) - 1;
        if (own && n > 0) this.iterSubs.set(pattern, n);
        else if (own && this.iterSubs.delete(pattern) && this.subs.has(pattern) && !this.stopped) this.unsubscribe(pattern).catch(() => {});
        notify?.();
      },
    };
    this.listeners.add(l);
    if (own && !this.subs.has(pattern)) this.subscribe(pattern, { filters: options.filters }).catch((e: Error) => l.end(e));
    options.signal?.addEventListener('abort', () => l.end());
    if (this.stopped || options.signal?.aborted) l.end();
    const it: AsyncIterableIterator<WsgateEvent> = {
      [Symbol.asyncIterator]: () => it,
      next: async () => {
        while (!queue.length && !done) await new Promise<void>((r) => (notify = r));
        if (queue.length) return { value: queue.shift()!, done: false };
        if (failure) throw failure;
        return { value: undefined, done: true };
      },
      return: async () => {
        l.end();
        return { value: undefined, done: true };
      },
    };
    return it;
  }

  /**
   * publish sends an event to a topic the token's `publish` claim covers;
   * resolves with its id and its number in the topic, rejects with a
   * WsgateError (forbidden, rate_limited, ...). Not retried: a publish the
   * connection lost before its answer may or may not have been delivered.
   */
  async publish(topic: string, payload: unknown, options: { attributes?: Record<string, unknown> } = {}): Promise<{ eventId: string; seq: number }> {
    const id = 'pub:' + ++this.seqCounter;
    const m = await this.request({ type: P.TypePublish, topic, payload, attributes: options.attributes }, id);
    return { eventId: str(m.event_id), seq: m.seq ?? 0 };
  }

  /**
   * presence lists who is subscribed to a topic now (one the gateway's
   * WSGATE_PRESENCE_TOPICS enables and the token may read), reading every
   * page: principal, and how many of its connections.
   */
  async presence(topic: string): Promise<{ ptype: string; sub?: string; connections: number }[]> {
    const all = new Map<string, { ptype: string; sub?: string; connections: number }>();
    let cursor: string | undefined;
    do {
      const id = 'presence:' + ++this.seqCounter;
      const m = await this.request({ type: P.TypePresence, topic, cursor }, id);
      for (const e of m.members ?? []) {
        const k = e.ptype + ':' + (e.sub ?? '');
        const had = all.get(k);
        if (had) had.connections += e.connections;
        else all.set(k, { ...e });
      }
      cursor = m.cursor;
    } while (cursor);
    return [...all.values()];
  }

  /** send writes a command (an object, as JSON, or a string as is) on the current connection. */
  send(command: object | string): void {
    const ws = this.ws;
    if (ws?.readyState !== 1) throw new NotConnectedError();
    ws.send(typeof command === 'string' ? command : JSON.stringify(command));
  }

  /** drop closes the current connection abruptly, as a network failure would; the client reconnects. For tests and drills. */
  drop(): void {
    this.ws?.close(4000, 'dropped');
  }

  // ---- the connection loop ----

  private async run(): Promise<void> {
    for (let attempt = 0; !this.stopped; ) {
      this.state({ state: 'connecting', attempt });
      let err: Error;
      try {
        const ws = await this.dial();
        if (this.stopped) {
          ws.close(1000, 'closed');
          break;
        }
        attempt = 0;
        err = await this.session(ws);
      } catch (e) {
        err = e as Error;
      }
      if (this.stopped) break;
      if (err instanceof RefusedError && err.status !== 429 && err.status < 500) {
        this.stopped = true;
        this.state({ state: 'disconnected', attempt, error: err });
        this.finish(err);
        return;
      }
      const wait = backoff(attempt, this.o.minBackoff, this.o.maxBackoff);
      this.state({ state: 'disconnected', attempt, error: err, wait });
      attempt++;
      await new Promise<void>((r) => {
        const t = setTimeout(r, wait);
        this.wake = () => {
          clearTimeout(t);
          r();
        };
      });
    }
  }

  private url(scoped: boolean): string {
    const u = new URL(this.o.url);
    u.searchParams.set('envelope', '1');
    const scope = this.o.scope;
    if (scope && scoped) {
      u.searchParams.set('topic', scope);
      const last = this.topicStates.get(scope)?.last;
      if (last) u.searchParams.set('since', String(last));
    }
    return u.toString();
  }

  private async token(): Promise<string> {
    const t = this.o.token ? await this.o.token() : '';
    // A token outside the subprotocol's token characters would make the
    // WebSocket constructor throw; JWTs and wsgate tickets never are.
    if (t && !/^[\w.~+/=-]+$/.test(t)) throw new RefusedError(401, P.AuthInvalidToken, 'the token holds characters a Sec-WebSocket-Protocol entry cannot carry');
    return t;
  }

  /**
   * open resolves with an open socket, or rejects when it fails first: on
   * close, or on error alone (Node 20's WebSocket reports a refused
   * connection with an error and no close).
   */
  private open(url: string, protocols: string[]): Promise<WebSocket> {
    return new Promise((resolve, reject) => {
      const ws = new this.WS(url, protocols);
      ws.binaryType = 'arraybuffer';
      ws.onopen = () => resolve(ws);
      ws.onerror = () => {
        ws.onerror = ws.onclose = null;
        reject(new ConnectionError('wsgate: connect failed'));
        ws.close();
      };
      ws.onclose = (ev) => reject(new ConnectionError(`wsgate: connect failed (close ${ev.code})`, ev.code, ev.reason));
    });
  }

  private async dial(): Promise<WebSocket> {
    const token = await this.token();
    try {
      return await this.open(this.url(true), token ? ['bearer.' + token] : []);
    } catch (e) {
      if (!this.o.token || this.stopped) throw e;
      return this.diagnose(e as ConnectionError);
    }
  }

  /**
   * diagnose follows a handshake that failed: a browser never shows a
   * refused handshake's HTTP status. It connects without a token, in
   * auth-message mode, and sends a fresh token in an auth message, which
   * the gateway answers with the reason (invalid_token, forbidden, ...):
   * the refusal, typed. When the token is accepted, that connection is
   * the session (unscoped); a scoped client closes it and retries.
   */
  private async diagnose(failed: ConnectionError): Promise<WebSocket> {
    let ws: WebSocket;
    try {
      ws = await this.open(this.url(false), []);
    } catch {
      throw failed; // the gateway is not there, or auth-message mode is off
    }
    const answer = await new Promise<Message | undefined>((resolve) => {
      const t = setTimeout(() => resolve(undefined), this.o.replyTimeout);
      ws.onmessage = (m) => {
        const msg = parse(m.data);
        if (msg?.type === P.TypeAuthResponse) {
          clearTimeout(t);
          resolve(msg);
        }
      };
      ws.onclose = () => resolve(undefined);
      this.token().then(
        (token) => ws.send(JSON.stringify({ type: P.TypeAuth, id: AUTH_ID, token })),
        () => resolve(undefined),
      );
    });
    if (answer?.success && !this.o.scope) return ws;
    ws.close(1000, 'diagnosed');
    const reason = str(answer?.error);
    if (answer && !answer.success && REFUSALS[reason]) throw new RefusedError(REFUSALS[reason], reason, str(answer.message));
    throw failed;
  }

  /** session serves one connection until it ends, with the error that ended it. */
  private session(ws: WebSocket): Promise<Error> {
    this.ws = ws;
    this.stats.connects++;
    this.asked.clear(); // a new connection asks everything again
    this.state({ state: 'connected', attempt: 0 });
    for (const w of this.connectedWaiters.splice(0)) w.resolve();
    return new Promise((resolve) => {
      const every = (ms: number, f: () => void) => this.timers.push(setInterval(f, ms));
      every(this.o.pingEvery, () => this.write(ws, { type: P.TypePing }));
      this.timers.push(setTimeout(() => ws.close(1000, 'reconnecting before the 2-hour limit'), this.o.maxAge));
      if (this.o.gapWait >= 0) every(Math.max(this.o.gapWait / 4, 10), () => this.checkGaps(ws));
      every(Math.max(this.o.replyTimeout / 4, 10), () => this.checkAnswers(ws));
      ws.onmessage = (m) => {
        if (this.ws === ws) this.handle(ws, m.data);
      };
      const end = (code: number, reason: string) => {
        ws.onclose = ws.onerror = null;
        this.timers.splice(0).forEach(clearInterval);
        this.ws = undefined;
        // Resumes in flight start again on the next connection, from the
        // same positions; held events stay held.
        for (const ts of this.topicStates.values()) ts.resuming = ts.waiting = false;
        for (const w of this.replyWaiters.values()) w.reject(new NotConnectedError());
        this.replyWaiters.clear();
        resolve(new ConnectionError(`wsgate: connection closed (${code}${reason ? ' ' + reason : ''})`, code, reason));
      };
      ws.onclose = (ev) => end(ev.code, ev.reason);
      // An error ends the session as a close does (a close may not follow).
      ws.onerror = () => {
        end(1006, '');
        ws.close();
      };
      this.start(ws);
    });
  }

  /** start subscribes and marks the topics to resume once their subscription answers. */
  private start(ws: WebSocket): void {
    const scope = this.o.scope;
    if (scope) {
      const ts = this.topic(scope);
      ts.resuming = ts.last > 0; // the replay of ?since= ends with resumed
    }
    for (const p of this.subs.keys()) this.sendSubscribe(ws, p);
    for (const [t, ts] of this.topicStates) {
      // A known position of 0 counts: what was published while away reaches us only by resume.
      if (t !== scope && ts.known && this.covered(t)) ts.resuming = ts.waiting = true;
    }
  }

  private covered(t: string): boolean {
    for (const p of this.subs.keys()) if (matches(p, t)) return true;
    return false;
  }

  private finish(err?: Error): void {
    for (const w of this.connectedWaiters.splice(0)) w.reject(err ?? new Error('wsgate: client closed'));
    for (const l of [...this.listeners]) l.end(err);
    for (const [p, ws] of this.subWaiters) for (const w of ws) w.reject(err ?? new WsgateError('closed', `client closed before ${p} was subscribed`));
    this.subWaiters.clear();
    this.state({ state: 'closed', attempt: 0, error: err });
    if (err) this.closedWaiter.reject(err);
    else this.closedWaiter.resolve();
  }

  private state(s: StateChange): void {
    this.o.onState?.(s);
  }

  // ---- commands ----

  private write(ws: WebSocket, v: object): void {
    if (ws.readyState === 1) ws.send(JSON.stringify(v));
  }

  private ask(ws: WebSocket, id: string, v: object): void {
    this.asked.set(id, Date.now());
    this.write(ws, { ...v, id });
  }

  /** request sends a command and resolves with its answer (the reply carrying answerID), rejects with its error (by id or errorID). */
  private request(v: object, answerID: string, errorID = answerID): Promise<Message> {
    const ws = this.ws;
    if (ws?.readyState !== 1) return Promise.reject(new NotConnectedError());
    return new Promise((resolve, reject) => {
      const w = { resolve, reject };
      this.replyWaiters.set(answerID, w);
      if (errorID !== answerID) this.replyWaiters.set(errorID, w);
      this.write(ws, { id: answerID, ...v });
    });
  }

  private sendSubscribe(ws: WebSocket, p: string): void {
    const o = this.subs.get(p);
    this.ask(ws, SUB + p, { type: P.TypeSubscribe, topic: p, filters: o?.filters, presence: o?.presence || undefined });
  }

  /**
   * retrySubscribe sends pattern p's subscribe again after a backoff, on the same connection, unless
   * a resend of p is already scheduled: integration errors name no command, and each one resending
   * every pending pattern multiplied the frames an overloaded gateway had to refuse.
   */
  private retrySubscribe(ws: WebSocket, p: string): void {
    if (this.resending.has(p)) return;
    this.resending.add(p);
    const n = this.retries.get(p) ?? 0;
    this.retries.set(p, n + 1);
    this.stats.retries++;
    this.timers.push(
      setTimeout(() => {
        this.resending.delete(p);
        if (this.ws === ws && this.subs.has(p)) this.sendSubscribe(ws, p);
      }, backoff(n, this.o.minBackoff, this.o.maxBackoff)),
    );
  }

  /** resume asks for topic t's events after the last delivered one; the caller marked it resuming. */
  private resume(ws: WebSocket, t: string): void {
    this.stats.resumes++;
    this.ask(ws, RESUME + t, { type: P.TypeResume, topic: t, ...this.topic(t).resumeRange() });
  }

  /** resumeUnder sends the resumes that waited for pattern p's subscription to answer. */
  private resumeUnder(ws: WebSocket, p: string): void {
    const due = [...this.topicStates].filter(([t, ts]) => ts.waiting && matches(p, t)).map(([t]) => t);
    for (const t of due.sort()) {
      this.topic(t).waiting = false;
      this.resume(ws, t);
    }
  }

  /** checkGaps asks the gateway about holes that waited gapWait. */
  private checkGaps(ws: WebSocket): void {
    const now = Date.now();
    for (const [t, ts] of this.topicStates) {
      if (!ts.due(now, this.o.gapWait)) continue;
      if (ts.settling) this.deliver(ts.settle(now));
      else {
        ts.resuming = true;
        ts.owed = false;
        this.resume(ws, t);
      }
    }
  }

  /** checkAnswers asks again what stayed unanswered for replyTimeout. */
  private checkAnswers(ws: WebSocket): void {
    const now = Date.now();
    for (const [id, at] of this.asked) {
      if (now - at < this.o.replyTimeout) continue;
      this.asked.delete(id);
      if (id.startsWith(SUB) && this.subs.has(id.slice(SUB.length))) this.sendSubscribe(ws, id.slice(SUB.length));
      else if (id.startsWith(RESUME)) this.resume(ws, id.slice(RESUME.length));
    }
  }

  // ---- messages ----

  private handle(ws: WebSocket, data: unknown): void {
    const raw = typeof data === 'string' ? data : '';
    const m = parse(data);
    if (m && this.consume(ws, m)) return;
    // While a state request is out, a frame that is none of the gateway's
    // own messages is one of the state's.
    if (m && !REPLIES.has(str(m.type)) && m.message !== INTEGRATION_ERROR) for (const frames of this.stateCollectors) frames.push(m);
    this.o.onReply?.(m ?? data, raw);
  }

  /** consume acts on a message by its type and reports whether it is used up (not for onReply). */
  private consume(ws: WebSocket, m: Message): boolean {
    const id = str(m.id);
    if (m.type !== P.TypeEvent && id) {
      this.asked.delete(id);
      const w = this.replyWaiters.get(id);
      if (w) {
        for (const [k, v] of this.replyWaiters) if (v === w) this.replyWaiters.delete(k);
        if (m.type === P.TypeError) w.reject(new WsgateError(str(m.code), str(m.message), m.id));
        else w.resolve(m);
      }
    }
    switch (m.type) {
      case P.TypeEvent:
        return this.onEvent(m);
      case P.TypeSubscribed:
        this.onSubscribed(ws, id, m);
        return false;
      case P.TypeResumed:
        return this.onResumed(id, m);
      case P.TypeError:
        return this.onError(ws, id, m);
      case undefined:
        if (m.message === INTEGRATION_ERROR) this.onIntegrationError(ws);
        return false;
    }
    return false;
  }

  private onEvent(m: Message): boolean {
    const topic = str(m.topic);
    const seq = m.seq;
    if (!topic || typeof seq !== 'number' || seq <= 0) return false;
    const e: WsgateEvent = { topic, seq, id: str(m.id) };
    if (m.time) e.time = new Date(m.time);
    if (m.from) e.from = m.from;
    if (m.data_base64) e.binary = Uint8Array.from(atob(m.data_base64), (c) => c.charCodeAt(0));
    else e.data = m.data;
    const out = this.topic(topic).receive(e, Date.now(), this.o.gapWait);
    if (!out) this.stats.duplicates++;
    else this.deliver(out);
    return true;
  }

  private onSubscribed(ws: WebSocket, id: string, m: Message): void {
    if (!id.startsWith(SUB)) return;
    const p = id.slice(SUB.length);
    this.retries.delete(p);
    for (const [t, seq] of Object.entries(m.seqs ?? {})) this.deliver(this.topic(t).subscribed(seq, Date.now()));
    this.settleSub(p, m.topics ?? []);
    this.resumeUnder(ws, p);
  }

  /** onResumed ends one of the client's resumes, or the replay of a scoped connection's ?since= (which has no id). */
  private onResumed(id: string, m: Message): boolean {
    const topic = str(m.topic);
    const scoped = !id && !!this.o.scope && topic === this.o.scope;
    if (!id.startsWith(RESUME) && !scoped) return false;
    this.deliver(this.topic(topic).resumed(m.seq ?? 0, Date.now()));
    if (m.more) {
      // The replay cap stopped it short: ask for the rest at once (a scoped
      // connection cannot resume: it reconnects with since).
      if (scoped) this.drop();
      const ts = this.topic(topic);
      ts.owed = true;
      ts.gapSince = 0;
    }
    return true;
  }

  /** onError handles the refusals of the client's subscribes and resumes. */
  private onError(ws: WebSocket, id: string, m: Message): boolean {
    const code = str(m.code);
    const err = new WsgateError(code, str(m.message), m.id);
    if (id.startsWith(SUB)) {
      const p = id.slice(SUB.length);
      if (code === P.CodeUnavailable || code === P.CodeRateLimited) {
        this.retrySubscribe(ws, p);
      } else {
        // Refused for good (forbidden, a limit): resume what it covers
        // anyway, from history, and stop asking.
        this.resumeUnder(ws, p);
        this.subs.delete(p);
        this.settleSub(p, undefined, err);
      }
      return false;
    }
    const resumed = id.startsWith(RESUME) ? id.slice(RESUME.length) : !id && this.o.scope ? this.o.scope : '';
    if (resumed && code === P.CodeHistoryExpired) {
      const ts = this.topic(resumed);
      const after = ts.last;
      const out = ts.lost(Date.now());
      this.stats.gaps++;
      this.o.onGap?.({ topic: resumed, after, error: err });
      this.deliver(out);
      return true;
    }
    if (id.startsWith(RESUME)) {
      // Not replayed now (rate limited, unavailable): ask again later.
      const ts = this.topic(resumed);
      ts.resuming = false;
      ts.owed = true;
      ts.gapSince = Date.now();
    }
    return false;
  }

  /** onIntegrationError sends again the subscribes not answered: one of them may be what failed. */
  private onIntegrationError(ws: WebSocket): void {
    for (const id of [...this.asked.keys()].sort()) if (id.startsWith(SUB)) this.retrySubscribe(ws, id.slice(SUB.length));
  }

  /** settleSub answers subscribe() calls of pattern p; an error also ends its iterations (with it, unless quiet). */
  private settleSub(p: string, topics?: string[], err?: Error, quiet = false): void {
    const ws = this.subWaiters.get(p);
    this.subWaiters.delete(p);
    for (const w of ws ?? []) {
      if (err) w.reject(err);
      else w.resolve(topics ?? []);
    }
    if (err) for (const l of this.listeners) if (l.pattern === p) l.end(quiet ? undefined : err);
  }

  private deliver(out: WsgateEvent[]): void {
    for (const e of out) {
      this.stats.delivered++;
      this.o.onEvent?.(e);
      for (const l of this.listeners) if (matches(l.pattern, e.topic)) l.push(e);
    }
  }

  private topic(t: string): TopicState {
    let ts = this.topicStates.get(t);
    if (!ts) this.topicStates.set(t, (ts = new TopicState()));
    return ts;
  }
}

/**
 * handled marks a promise's rejection as handled, so that a caller that
 * does not await it (subscribe and forget) does not crash Node with an
 * unhandled rejection; a caller that awaits it still gets the error.
 */
function handled<T>(p: Promise<T>): Promise<T> {
  p.catch(() => {});
  return p;
}

function parse(data: unknown): Message | undefined {
  if (typeof data !== 'string') return undefined;
  try {
    const m = JSON.parse(data);
    return m && typeof m === 'object' && !Array.isArray(m) ? m : undefined;
  } catch {
    return undefined;
  }
}
