// @wsgate/client: the wsgate client for browsers and Node 22+.
export { Client } from './client.js';
export type { ClientOptions, Filters, Gap, State, StateChange, Stats, SubscribeOptions, WebSocketClass } from './client.js';
export { ConnectionError, NotConnectedError, RefusedError, WsgateError } from './errors.js';
export { matches } from './order.js';
export type { WsgateEvent } from './order.js';
export { backoff } from './backoff.js';
export * as protocol from './protocol.js';
