// A subscription to one topic pattern: its own state (unsubscribed,
// subscribing, subscribed), its options, its pending subscribe() calls and
// its typed events. The Client (client.ts) sends its commands, routes the
// replies to it by the id it recorded for it, and hands it the events of
// the topics it matches, ordered and without repeats.

import { Emitter } from './emitter.js';
import { WsgateError } from './errors.js';
import type { WsgateEvent } from './order.js';
import type { PresenceEventMessage } from './protocol.js';

/** Subscription filters: attribute name to the values wanted. */
export type Filters = Record<string, unknown[]>;

/** Options of a subscription. presence asks for the join and leave events of a presence-enabled topic. */
export interface SubscribeOptions {
  filters?: Filters;
  presence?: boolean;
}

/** A stretch of a topic's events the gateway could no longer replay. */
export interface Gap {
  topic: string;
  /** The last sequence number delivered before it. */
  after: number;
  /** The gateway's answer (code history_expired). */
  error: WsgateError;
}

export type SubscriptionState = 'unsubscribed' | 'subscribing' | 'subscribed';

/** The events of a Subscription, by name, with what their listeners get. */
export interface SubscriptionEvents {
  /** Every change of state. */
  state: { state: SubscriptionState; previous: SubscriptionState };
  /** The gateway confirmed it (on every connect): the topics it subscribed and, for exact ones, where each began. */
  subscribed: { topics: string[]; seqs: Record<string, number> };
  /** It ended: unsubscribe(), a refusal (error) or the client closing (error when the gateway refused the client). */
  unsubscribed: { error?: Error };
  /** Each event of a topic it matches, once, in sequence order per topic. */
  publication: WsgateEvent;
  /** Events of a topic it matches that history could not replay. */
  gap: Gap;
  /** The gateway refused it (it is then unsubscribed), or could not do it now (it is asked again). */
  error: WsgateError;
  /** A principal's first subscription to a topic it matches (presence: true). */
  join: PresenceEventMessage;
  /** A principal's last subscription to a topic it matches going. */
  leave: PresenceEventMessage;
}

/** What a Subscription needs of its Client. */
export interface SubscriptionHost {
  /** send the subscription's subscribe on the open connection, if any. */
  attach(s: Subscription): void;
  /** send its unsubscribe; resolves once the gateway confirms (at once when not connected). */
  detach(s: Subscription): Promise<void>;
  /** the sequence numbers delivered in the topics it matches. */
  positionsOf(pattern: string): Record<string, number>;
}

interface Waiter {
  resolve: (topics: string[]) => void;
  reject: (e: Error) => void;
}

export class Subscription extends Emitter<SubscriptionEvents> {
  private current: SubscriptionState = 'unsubscribed';
  private waiters: Waiter[] = [];
  private subscribedTopics: string[] = [];
  /** @internal The id of its subscribe on the current connection ('' before the first). */
  requestID = '';
  /** @internal Subscribes refused for now in a row (rate_limited, unavailable, an integration error). */
  retries = 0;
  /** @internal A resend is scheduled: integration errors name no command, so each one must not add another. */
  resending = false;

  /** @internal Made by Client.newSubscription. */
  constructor(
    private readonly host: SubscriptionHost,
    readonly pattern: string,
    public options: SubscribeOptions = {},
  ) {
    super();
  }

  get state(): SubscriptionState {
    return this.current;
  }

  /** The topics the gateway subscribed at its last confirmation. */
  get topics(): string[] {
    return [...this.subscribedTopics];
  }

  /**
   * subscribe asks for the subscription on this and every later connection;
   * resolves with the topics the gateway subscribed, rejects with a
   * WsgateError when it refuses the pattern (which is then unsubscribed).
   */
  subscribe(): Promise<string[]> {
    const p = handled(new Promise<string[]>((resolve, reject) => this.waiters.push({ resolve, reject })));
    if (this.current === 'unsubscribed') this.setState('subscribing');
    this.host.attach(this);
    return p;
  }

  /** unsubscribe ends the subscription; resolves once the gateway confirms (at once when not connected). */
  unsubscribe(): Promise<void> {
    this.end(new WsgateError('unsubscribed', `unsubscribed from ${this.pattern}`));
    return this.host.detach(this);
  }

  /** Sequence numbers delivered in the topics it matches. */
  positions(): Record<string, number> {
    return this.host.positionsOf(this.pattern);
  }

  /** @internal The gateway confirmed it. */
  confirmed(topics: string[], seqs: Record<string, number>): void {
    this.retries = 0;
    this.subscribedTopics = [...topics];
    this.setState('subscribed');
    for (const w of this.waiters.splice(0)) w.resolve([...topics]);
    this.emit('subscribed', { topics: [...topics], seqs });
  }

  /** @internal The gateway could not do it now: it is asked again. */
  deferred(err: WsgateError): void {
    this.emit('error', err);
  }

  /**
   * @internal end unsubscribes it: its pending subscribe() calls reject
   * with rejectWith; the unsubscribed event carries error (a refusal, or
   * the client's when the gateway refused the client; none for
   * unsubscribe() and close()).
   */
  end(rejectWith: Error, error?: Error): void {
    for (const w of this.waiters.splice(0)) w.reject(rejectWith);
    if (this.current === 'unsubscribed') return;
    this.requestID = '';
    this.setState('unsubscribed');
    this.emit('unsubscribed', error ? { error } : {});
  }

  /** @internal The gateway refused it for good. */
  refused(err: WsgateError): void {
    this.emit('error', err);
    this.end(err, err);
  }

  /** @internal An event of a topic it matches, ordered. */
  publish(e: WsgateEvent): void {
    this.emit('publication', e);
  }

  /** @internal A gap in a topic it matches. */
  lost(g: Gap): void {
    this.emit('gap', g);
  }

  /** @internal A join or leave in a topic it matches. */
  presence(m: PresenceEventMessage): void {
    this.emit(m.type, m);
  }

  private setState(state: SubscriptionState): void {
    const previous = this.current;
    if (previous === state) return;
    this.current = state;
    this.emit('state', { state, previous });
  }
}

/**
 * handled marks a promise's rejection as handled, so that a caller that
 * does not await it (subscribe and forget) does not crash Node with an
 * unhandled rejection; a caller that awaits it still gets the error.
 */
export function handled<T>(p: Promise<T>): Promise<T> {
  p.catch(() => {});
  return p;
}
