// Opening a connection: the handshake with the token as a bearer
// subprotocol and, when it fails, the diagnosis that tells a refusal
// (typed: RefusedError) from a gateway that is not there.

import { ConnectionError, RefusedError } from './errors.js';
import { asMessage, parse } from './messages.js';
import * as P from './protocol.js';

/** A WebSocket constructor: the global one by default. */
export type WebSocketClass = new (url: string, protocols?: string[]) => WebSocket;

export interface Dialer {
  WS: WebSocketClass;
  /** The token for one attempt ('' for none), checked. */
  token: () => Promise<string>;
  /** Whether a token source is set at all. */
  hasToken: boolean;
  /** The URL, with the scope (and its since) when scoped. */
  url: (scoped: boolean) => string;
  scoped: boolean;
  replyTimeout: number;
  stopped: () => boolean;
}

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

/** dial opens a connection, or fails with a ConnectionError (retried) or a RefusedError. */
export async function dial(d: Dialer): Promise<WebSocket> {
  const token = await d.token();
  try {
    return await open(d.WS, d.url(true), token ? ['bearer.' + token] : []);
  } catch (e) {
    if (!d.hasToken || d.stopped()) throw e;
    return diagnose(d, e as ConnectionError);
  }
}

/** checkToken refuses a token outside the subprotocol's token characters, which would make the WebSocket constructor throw; JWTs and wsgate tickets never are. */
export function checkToken(t: string): string {
  if (t && !/^[\w.~+/=-]+$/.test(t)) throw new RefusedError(401, P.AuthInvalidToken, 'the token holds characters a Sec-WebSocket-Protocol entry cannot carry');
  return t;
}

/**
 * open resolves with an open socket, or rejects when it fails first: on
 * close, or on error alone (Node 20's WebSocket reports a refused
 * connection with an error and no close).
 */
function open(WS: WebSocketClass, url: string, protocols: string[]): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WS(url, protocols);
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

/**
 * diagnose follows a handshake that failed: a browser never shows a
 * refused handshake's HTTP status. It connects without a token, in
 * auth-message mode, and sends a fresh token in an auth message, which
 * the gateway answers with the reason (invalid_token, forbidden, ...):
 * the refusal, typed. When the token is accepted, that connection is
 * the session (unscoped); a scoped client closes it and retries.
 */
async function diagnose(d: Dialer, failed: ConnectionError): Promise<WebSocket> {
  let ws: WebSocket;
  try {
    ws = await open(d.WS, d.url(false), []);
  } catch {
    throw failed; // the gateway is not there, or auth-message mode is off
  }
  const answer = await new Promise<P.AuthResponseMessage | undefined>((resolve) => {
    const t = setTimeout(() => resolve(undefined), d.replyTimeout);
    ws.onmessage = (m) => {
      const f = parse(m.data);
      const msg = f && asMessage(f);
      if (msg?.type === P.TypeAuthResponse) {
        clearTimeout(t);
        resolve(msg);
      }
    };
    ws.onclose = () => resolve(undefined);
    d.token().then(
      (token) => ws.send(JSON.stringify({ type: P.TypeAuth, id: AUTH_ID, token })),
      () => resolve(undefined),
    );
  });
  if (answer?.success && !d.scoped) return ws;
  ws.close(1000, 'diagnosed');
  const reason = answer?.error ?? '';
  if (answer && !answer.success && REFUSALS[reason]) throw new RefusedError(REFUSALS[reason], reason, answer.message ?? '');
  throw failed;
}
