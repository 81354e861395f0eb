// The wsgate client: one connection at a time, over a succession of
// WebSockets. It reconnects with equal-jitter backoff, subscribes every
// Subscription again, resumes every topic from the last sequence number it
// delivered once the subscription covering it has answered, drops repeats,
// holds events past a hole and then asks for it, and reports what history
// could not fill. Each command it sends is recorded by id with its owner
// (a Subscription, a resume of a topic, a caller's promise), and the reply
// goes to that owner. The same behaviour as the Go client (clients/go);
// README's "JavaScript client" lists where the browser made it differ.

import { backoff } from './backoff.js';
import { checkToken, dial, type WebSocketClass } from './dial.js';
import { ConnectionError, NotConnectedError, RefusedError, WsgateError } from './errors.js';
import { asMessage, isIntegrationError, parse, replyID, unreachable } from './messages.js';
import { matches, TopicState, type WsgateEvent } from './order.js';
import * as P from './protocol.js';
import { type Gap, handled, type SubscribeOptions, Subscription, type SubscriptionHost } from './subscription.js';

export type { WebSocketClass } from './dial.js';

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
  filters?: SubscribeOptions['filters'];
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
  /** Each event once, in sequence order per topic (a Subscription's publication event has those of its topics). */
  onEvent?: (e: WsgateEvent) => void;
  /** Events history could not replay: reload the topic's state. */
  onGap?: (g: Gap) => void;
  onState?: (s: StateChange) => void;
  /** Every other message: pong, subscribed, errors, joins and leaves, state frames, ... (parsed, and as received). */
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

/**
 * A command sent on the current connection and not answered yet, by the
 * id it was sent with: who the answer goes to. A subscribe or a resume is
 * asked again after replyTimeout; a caller's request is not.
 */
type Pending =
  | { kind: 'subscribe'; sub: Subscription; at: number }
  | { kind: 'resume'; topic: string; at: number }
  | { kind: 'call'; waiter: Waiter<P.ServerMessage>; ids: string[] };

type Settings = Required<Pick<ClientOptions, 'minBackoff' | 'maxBackoff' | 'pingEvery' | 'maxAge' | 'gapWait' | 'replyTimeout'>> & ClientOptions;

export class Client implements SubscriptionHost {
  private readonly o: Settings;
  private readonly WS: WebSocketClass;
  private ws?: WebSocket;
  private running = false;
  private stopped = false;
  private wake?: () => void;
  /** Each topic's position and held events: one per topic, whichever subscriptions match it (events come once per connection). */
  private readonly topicStates = new Map<string, TopicState>();
  private readonly subs = new Map<string, Subscription>();
  /** Commands of this connection not answered yet, by id. */
  private readonly pending = new Map<string, Pending>();
  /** Patterns events() subscribed, with how many iterations use them. */
  private readonly iterSubs = new Map<string, number>();
  /** State requests in flight, collecting their frames. */
  private readonly stateCollectors = new Set<unknown[]>();
  /** Ids of the client's own pings (the end of a state request): their pongs are not replies. */
  private readonly bookkeeping = new Set<string>();
  private readonly timers: ReturnType<typeof setTimeout>[] = [];
  private connectedWaiters: Waiter<void>[] = [];
  private closedWaiter!: Waiter<void>;
  private nextID = 0;
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
    for (const p of options.topics ?? []) void this.subscribe(p, { filters: options.filters });
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

  /** close ends the connection and stops reconnecting; subscriptions end, and so do iterators from events(). */
  close(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.wake?.();
    this.ws?.close(1000, 'closed');
    this.finish();
  }

  /** Sequence numbers delivered, by topic: keep them (localStorage, say) and pass them as options.positions. */
  positions(): Record<string, number> {
    return this.positionsOf('>', true);
  }

  /** @internal positionsOf is positions() of the topics pattern matches. */
  positionsOf(pattern: string, all = false): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [t, ts] of this.topicStates) if (ts.known && ts.last > 0 && (all || matches(pattern, t))) out[t] = ts.last;
    return out;
  }

  /**
   * newSubscription makes the subscription to a pattern, unsubscribed
   * until its subscribe(); there is one per pattern (getSubscription finds
   * it), and making a second is an error.
   */
  newSubscription(pattern: string, options: SubscribeOptions = {}): Subscription {
    if (this.subs.has(pattern)) throw new Error(`wsgate: a subscription to ${pattern} exists already`);
    if (!pattern) throw new TypeError('wsgate: a subscription needs a pattern');
    const s = new Subscription(this, pattern, options);
    this.subs.set(pattern, s);
    return s;
  }

  /** getSubscription is the subscription to the pattern, if there is one. */
  getSubscription(pattern: string): Subscription | undefined {
    return this.subs.get(pattern);
  }

  /** subscriptions lists the subscriptions, in the order they were made. */
  subscriptions(): Subscription[] {
    return [...this.subs.values()];
  }

  /** removeSubscription unsubscribes it and forgets it. */
  async removeSubscription(s: Subscription): Promise<void> {
    if (this.subs.get(s.pattern) === s) this.subs.delete(s.pattern);
    this.iterSubs.delete(s.pattern);
    await s.unsubscribe();
  }

  /**
   * subscribe subscribes to a pattern (making its Subscription if needed,
   * with these options), on this and every later connection; resolves with
   * the topics the gateway subscribed, rejects with a WsgateError when it
   * refuses the pattern (which is then dropped).
   */
  subscribe(pattern: string, options: SubscribeOptions = {}): Promise<string[]> {
    const s = this.subs.get(pattern) ?? this.newSubscription(pattern);
    s.options = options;
    return s.subscribe();
  }

  /** unsubscribe drops a pattern; resolves once the gateway confirms (at once when not connected). */
  async unsubscribe(pattern: string): Promise<void> {
    const s = this.subs.get(pattern);
    if (s) return this.removeSubscription(s);
    if (this.ws?.readyState === 1) await this.request({ type: P.TypeUnsubscribe, topic: pattern });
  }

  /** @internal attach sends a subscription's subscribe on the open connection. */
  attach(s: Subscription): void {
    if (this.ws?.readyState === 1 && this.subs.get(s.pattern) === s) this.sendSubscribe(this.ws, s);
  }

  /** @internal detach sends a subscription's unsubscribe. */
  async detach(s: Subscription): Promise<void> {
    if (this.ws?.readyState === 1) await this.request({ type: P.TypeUnsubscribe, topic: s.pattern });
  }

  /**
   * requestCurrentState asks for a topic's stored state: the frames its
   * publishers stored, in order; [] when it has none (or none this
   * principal may see: the gateway does not tell them apart).
   */
  async requestCurrentState(topic: string): Promise<unknown[]> {
    // A batch with a ping after the request: the pong marks where the
    // state frames end.
    const id = this.newID();
    const end = this.newID();
    const frames: unknown[] = [];
    this.stateCollectors.add(frames);
    this.bookkeeping.add(end);
    try {
      await this.request({ type: P.TypeBatch, messages: [{ type: P.TypeRequestCurrentState, topic, id }, { type: P.TypePing, id: end }] }, end, id);
    } catch (e) {
      if (e instanceof WsgateError && e.code === P.CodeNotFound) return [];
      throw e;
    } finally {
      this.stateCollectors.delete(frames);
      // end stays in bookkeeping until its pong comes: a refusal (not_found)
      // settles the request before it.
    }
    return frames;
  }

  /**
   * events iterates over the events of topics matching pattern, subscribing
   * to it if the client is not yet (and unsubscribing when the iteration
   * ends, if it did). Ends when signal aborts or the client closes; throws
   * when the gateway refuses the subscription or the client for good.
   */
  events(pattern: string, options: { filters?: SubscribeOptions['filters']; signal?: AbortSignal } = {}): AsyncIterableIterator<WsgateEvent> {
    const queue: WsgateEvent[] = [];
    let failure: Error | undefined;
    let done = false;
    let notify: (() => void) | undefined;
    const had = this.subs.get(pattern);
    const own = !had || had.state === 'unsubscribed' || this.iterSubs.has(pattern);
    if (own) this.iterSubs.set(pattern, (this.iterSubs.get(pattern) ?? 0) + 1);
    const sub = had ?? this.newSubscription(pattern, { filters: options.filters });
    const offs = [
      sub.on('publication', (e) => {
        queue.push(e);
        notify?.();
      }),
      sub.on('unsubscribed', ({ error }) => end(error)),
    ];
    const end = (err?: Error) => {
      if (done) return;
      done = true;
      failure = err;
      queue.length = 0; // stopped: what is not taken yet is not wanted
      offs.forEach((off) => off());
      const n = (this.iterSubs.get(pattern) ?? 0) - 1;
      if (own && n > 0) this.iterSubs.set(pattern, n);
      else if (own && this.iterSubs.delete(pattern) && sub.state !== 'unsubscribed' && !this.stopped) this.unsubscribe(pattern).catch(() => {});
      notify?.();
    };
    if (this.stopped || options.signal?.aborted) end();
    else if (own && sub.state === 'unsubscribed') sub.subscribe().catch(() => {}); // a refusal ends it through unsubscribed
    options.signal?.addEventListener('abort', () => end());
    const it: AsyncIterableIterator<WsgateEvent> = {
      [Symbol.asyncIterator]: () => it,
      next: async () => {
        while (!queue.length && !done) await new Promise<void>((r) => (notify = r));
        if (queue.length) return { value: queue.shift()!, done: false };
        if (failure) throw failure;
        return { value: undefined, done: true };
      },
      return: async () => {
        end();
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
    const m = await this.request({ type: P.TypePublish, topic, payload, attributes: options.attributes });
    if (m.type !== P.TypePublished) throw new WsgateError(P.CodeBadRequest, `wsgate: a publish answered by ${m.type}`, replyID(m));
    return { eventId: m.event_id, seq: m.seq };
  }

  /**
   * presence lists who is subscribed to a topic now (one the gateway's
   * WSGATE_PRESENCE_TOPICS enables and the token may read), reading every
   * page: principal, and how many of its connections.
   */
  async presence(topic: string): Promise<P.PresenceMember[]> {
    const all = new Map<string, P.PresenceMember>();
    let cursor: string | undefined;
    do {
      const m = await this.request({ type: P.TypePresence, topic, cursor });
      if (m.type !== P.TypePresence) throw new WsgateError(P.CodeBadRequest, `wsgate: a presence request answered by ${m.type}`, replyID(m));
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
        const ws = await dial({
          WS: this.WS,
          token: async () => checkToken(this.o.token ? await this.o.token() : ''),
          hasToken: !!this.o.token,
          url: (scoped) => this.url(scoped),
          scoped: !!this.o.scope,
          replyTimeout: this.o.replyTimeout,
          stopped: () => this.stopped,
        });
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

  /** session serves one connection until it ends, with the error that ended it. */
  private session(ws: WebSocket): Promise<Error> {
    this.ws = ws;
    this.stats.connects++;
    this.pending.clear(); // a new connection asks everything again
    this.bookkeeping.clear();
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
        for (const p of this.pending.values()) if (p.kind === 'call') p.waiter.reject(new NotConnectedError());
        this.pending.clear();
        for (const s of this.subs.values()) {
          s.requestID = '';
          s.resending = false;
        }
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
    for (const s of this.active()) this.sendSubscribe(ws, s);
    for (const [t, ts] of this.topicStates) {
      // A known position of 0 counts: what was published while away reaches us only by resume.
      if (t !== scope && ts.known && this.active().some((s) => matches(s.pattern, t))) ts.resuming = ts.waiting = true;
    }
  }

  /** The subscriptions asked for on every connect. */
  private active(): Subscription[] {
    return [...this.subs.values()].filter((s) => s.state !== 'unsubscribed');
  }

  private finish(err?: Error): void {
    for (const w of this.connectedWaiters.splice(0)) w.reject(err ?? new Error('wsgate: client closed'));
    for (const s of this.subs.values()) s.end(err ?? new WsgateError('closed', `client closed before ${s.pattern} was subscribed`), err);
    this.state({ state: 'closed', attempt: 0, error: err });
    if (err) this.closedWaiter.reject(err);
    else this.closedWaiter.resolve();
  }

  private state(s: StateChange): void {
    this.o.onState?.(s);
  }

  // ---- commands ----

  private newID(): string {
    return String(++this.nextID);
  }

  private write(ws: WebSocket, v: object): void {
    if (ws.readyState === 1) ws.send(JSON.stringify(v));
  }

  /** request sends a command and resolves with its answer (the reply to answerID), rejects with its error (to that id or errorID). */
  private request(v: object, answerID = this.newID(), errorID = answerID): Promise<P.ServerMessage> {
    const ws = this.ws;
    if (ws?.readyState !== 1) return Promise.reject(new NotConnectedError());
    return new Promise((resolve, reject) => {
      const p: Pending = { kind: 'call', waiter: { resolve, reject }, ids: [answerID, errorID] };
      this.pending.set(answerID, p);
      this.pending.set(errorID, p);
      this.write(ws, { id: answerID, ...v });
    });
  }

  /** sendSubscribe sends a subscription's subscribe, under the id it has on this connection. */
  private sendSubscribe(ws: WebSocket, s: Subscription): void {
    if (!s.requestID) s.requestID = this.newID();
    this.pending.set(s.requestID, { kind: 'subscribe', sub: s, at: Date.now() });
    const o = s.options;
    this.write(ws, { type: P.TypeSubscribe, topic: s.pattern, filters: o.filters, presence: o.presence || undefined, id: s.requestID });
  }

  /**
   * retrySubscribe sends a subscribe again after a backoff, on the same connection, unless a resend
   * is already scheduled: integration errors name no command, and each one resending every pending
   * subscription multiplied the frames an overloaded gateway had to refuse.
   */
  private retrySubscribe(ws: WebSocket, s: Subscription): void {
    if (s.resending) return;
    s.resending = true;
    const n = s.retries++;
    this.stats.retries++;
    this.timers.push(
      setTimeout(() => {
        s.resending = false;
        if (this.ws === ws && this.subs.get(s.pattern) === s && s.state !== 'unsubscribed') this.sendSubscribe(ws, s);
      }, backoff(n, this.o.minBackoff, this.o.maxBackoff)),
    );
  }

  /** resume asks for topic t's events after the last delivered one; the caller marked it resuming. */
  private resume(ws: WebSocket, t: string): void {
    this.stats.resumes++;
    const id = this.newID();
    this.pending.set(id, { kind: 'resume', topic: t, at: Date.now() });
    this.write(ws, { type: P.TypeResume, topic: t, ...this.topic(t).resumeRange(), id });
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
    for (const [id, p] of [...this.pending]) {
      if (p.kind === 'call' || now - p.at < this.o.replyTimeout) continue;
      this.pending.delete(id);
      if (p.kind === 'subscribe') {
        if (this.subs.get(p.sub.pattern) === p.sub && p.sub.state !== 'unsubscribed') this.sendSubscribe(ws, p.sub);
      } else this.resume(ws, p.topic);
    }
  }

  // ---- messages ----

  private handle(ws: WebSocket, data: unknown): void {
    const raw = typeof data === 'string' ? data : '';
    const f = parse(data);
    const m = f && asMessage(f);
    if (m && this.consume(ws, m)) return;
    if (f && !m) {
      if (isIntegrationError(f)) this.onIntegrationError(ws);
      // While a state request is out, a frame that is none of the
      // gateway's own messages is one of the state's.
      else for (const frames of this.stateCollectors) frames.push(f);
    }
    this.o.onReply?.(f ?? data, raw);
  }

  /** consume acts on a message by its type and reports whether it is used up (not for onReply). */
  private consume(ws: WebSocket, m: P.ServerMessage): boolean {
    const id = replyID(m);
    const owner = id ? this.pending.get(id) : undefined;
    if (owner) for (const k of owner.kind === 'call' ? owner.ids : [id]) this.pending.delete(k);
    if (owner?.kind === 'call') {
      if (m.type === P.TypeError) owner.waiter.reject(new WsgateError(m.code, m.message, m.id));
      else owner.waiter.resolve(m);
    }
    switch (m.type) {
      case P.TypeEvent:
        return this.onEvent(m);
      case P.TypeSubscribed:
        if (owner?.kind === 'subscribe') this.onSubscribed(ws, owner.sub, m);
        return false;
      case P.TypeResumed:
        return this.onResumed(owner?.kind === 'resume' ? owner.topic : undefined, !id, m);
      case P.TypeError:
        return this.onError(ws, owner, !id, m);
      case P.TypeJoin:
      case P.TypeLeave:
        for (const s of this.active()) if (matches(s.pattern, m.topic)) s.presence(m);
        return false;
      case P.TypePong:
        return id !== undefined && this.bookkeeping.delete(id); // the end of a state request is the client's own
      case P.TypeUnsubscribed:
      case P.TypeAuthResponse:
      case P.TypePublished:
      case P.TypePresence:
        return false; // a caller's answer (settled above) or nobody's: onReply has it
      default:
        return unreachable(m);
    }
  }

  private onEvent(m: P.EventMessage): boolean {
    if (!m.topic || m.seq <= 0) return false;
    const e: WsgateEvent = { topic: m.topic, seq: m.seq, id: m.id };
    if (m.time) e.time = new Date(m.time);
    if (m.from) e.from = m.from;
    if (m.data_base64) e.binary = Uint8Array.from(atob(m.data_base64), (c) => c.charCodeAt(0));
    else e.data = m.data;
    const out = this.topic(m.topic).receive(e, Date.now(), this.o.gapWait);
    if (!out) this.stats.duplicates++;
    else this.deliver(out);
    return true;
  }

  private onSubscribed(ws: WebSocket, s: Subscription, m: P.SubscribedMessage): void {
    const seqs = m.seqs ?? {};
    for (const [t, seq] of Object.entries(seqs)) this.deliver(this.topic(t).subscribed(seq, Date.now()));
    s.confirmed(m.topics ?? [], seqs);
    this.resumeUnder(ws, s.pattern);
  }

  /**
   * onResumed ends one of the client's resumes (topic: the one it asked
   * for), or the replay of a scoped connection's ?since= (which has no id).
   */
  private onResumed(topic: string | undefined, noID: boolean, m: P.ResumedMessage): boolean {
    const scoped = noID && !!this.o.scope && m.topic === this.o.scope;
    if (topic === undefined && !scoped) return false;
    const t = topic ?? m.topic;
    const ts = this.topic(t);
    this.deliver(ts.resumed(m.seq, Date.now()));
    if (m.more) {
      // The replay cap stopped it short: ask for the rest at once (a scoped
      // connection cannot resume: it reconnects with since).
      if (scoped) this.drop();
      ts.owed = true;
      ts.gapSince = 0;
    }
    return true;
  }

  /** onError handles the refusals of the client's subscribes and resumes (callers' requests are settled already). */
  private onError(ws: WebSocket, owner: Pending | undefined, noID: boolean, m: P.ErrorMessage): boolean {
    const err = new WsgateError(m.code, m.message, m.id);
    if (owner?.kind === 'subscribe') {
      const s = owner.sub;
      if (m.code === P.CodeUnavailable || m.code === P.CodeRateLimited) {
        s.deferred(err);
        this.retrySubscribe(ws, s);
      } else {
        // Refused for good (forbidden, a limit): resume what it covers
        // anyway, from history, and stop asking.
        this.resumeUnder(ws, s.pattern);
        s.refused(err);
      }
      return false;
    }
    const topic = owner?.kind === 'resume' ? owner.topic : noID && this.o.scope ? this.o.scope : '';
    if (topic && m.code === P.CodeHistoryExpired) {
      const ts = this.topic(topic);
      const gap: Gap = { topic, after: ts.last, error: err };
      const out = ts.lost(Date.now());
      this.stats.gaps++;
      this.o.onGap?.(gap);
      for (const s of this.active()) if (matches(s.pattern, topic)) s.lost(gap);
      this.deliver(out);
      return true;
    }
    if (owner?.kind === 'resume') {
      // Not replayed now (rate limited, unavailable): ask again later.
      const ts = this.topic(topic);
      ts.resuming = false;
      ts.owed = true;
      ts.gapSince = Date.now();
    }
    return false;
  }

  /** onIntegrationError sends again the subscribes not answered: one of them may be what failed. */
  private onIntegrationError(ws: WebSocket): void {
    const unanswered = [...this.pending.values()].flatMap((p) => (p.kind === 'subscribe' ? [p.sub] : []));
    for (const s of unanswered.sort((a, b) => (a.pattern < b.pattern ? -1 : 1))) this.retrySubscribe(ws, s);
  }

  /** deliver hands events, in order, to onEvent and to every subscription whose pattern matches their topic. */
  private deliver(out: WsgateEvent[]): void {
    for (const e of out) {
      this.stats.delivered++;
      this.o.onEvent?.(e);
      for (const s of this.active()) if (matches(s.pattern, e.topic)) s.publish(e);
    }
  }

  private topic(t: string): TopicState {
    let ts = this.topicStates.get(t);
    if (!ts) this.topicStates.set(t, (ts = new TopicState()));
    return ts;
  }
}
