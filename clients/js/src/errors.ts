// The errors the client reports: a refused handshake, an error reply, a
// connection that ended.

/** An `error` reply of the gateway, by its code (protocol.Code*). */
export class WsgateError extends Error {
  constructor(
    /** bad_request, forbidden, not_found, rate_limited, too_large, history_expired, unavailable, token_expired, revoked. */
    readonly code: string,
    message: string,
    /** The id of the command it answers, if any. */
    readonly id?: unknown,
  ) {
    super(message);
    this.name = 'WsgateError';
  }
}

/**
 * A handshake the gateway refused: 401 no or bad token (or a ticket used
 * twice), 403 not allowed, 404 the scope has no state, 429 too many
 * connections. In a browser (and Node's WebSocket) the HTTP status of a
 * refused handshake cannot be read; the client then finds it by asking the
 * gateway in an auth message (see README), and `reason` holds the
 * gateway's auth failure (invalid_token, token_expired, ticket_used, forbidden, revoked,
 * too_many_connections).
 */
export class RefusedError extends Error {
  constructor(
    readonly status: number,
    readonly reason: string,
    message?: string,
  ) {
    super(`wsgate: connect refused: HTTP ${status} (${reason})${message ? ': ' + message : ''}`);
    this.name = 'RefusedError';
  }
}

/** A connection that could not be opened, or ended; the client reconnects. */
export class ConnectionError extends Error {
  constructor(
    message: string,
    /** The WebSocket close code (1006: the network, or a refused handshake). */
    readonly closeCode = 1006,
    readonly closeReason = '',
  ) {
    super(message);
    this.name = 'ConnectionError';
  }
}

/** send() or a command while no connection is open. */
export class NotConnectedError extends Error {
  constructor() {
    super('wsgate: not connected');
    this.name = 'NotConnectedError';
  }
}
