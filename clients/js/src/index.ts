// @wsgate/client: the wsgate client for browsers and Node 20+.
export { Client } from './client.js';
export type { ClientOptions, State, StateChange, Stats, WebSocketClass } from './client.js';
export { Subscription } from './subscription.js';
export type { Filters, Gap, SubscribeOptions, SubscriptionEvents, SubscriptionState } from './subscription.js';
export { ConnectionError, NotConnectedError, RefusedError, WsgateError } from './errors.js';
export { matches } from './order.js';
export type { WsgateEvent } from './order.js';
export { backoff } from './backoff.js';
export * as protocol from './protocol.js';
export type { ServerMessage } from './protocol.js';
