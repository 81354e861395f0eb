// Reading frames off the socket: a frame is one of the gateway's own
// messages (protocol.ts's ServerMessage, checked against the fields the Go
// structs declare) or something else: a stored state frame, a raw payload,
// API Gateway's answer to a failed invocation.

import * as P from './protocol.js';
import { MessageFields, type ServerMessage } from './protocol.js';

/** A frame that is a JSON object but none of the gateway's messages. */
export type Frame = Record<string, unknown>;

/** API Gateway's whole answer to a frame whose invocation failed. */
const INTEGRATION_ERROR = 'Internal server error';

/** parse reads a text frame as a JSON object; undefined for anything else. */
export function parse(data: unknown): Frame | undefined {
  if (typeof data !== 'string') return undefined;
  try {
    const m = JSON.parse(data);
    return m && typeof m === 'object' && !Array.isArray(m) ? m : undefined;
  } catch {
    return undefined;
  }
}

/**
 * asMessage returns the frame as a ServerMessage when its type is one the
 * gateway sends and every field has the kind the protocol gives it;
 * undefined otherwise (a stored state frame may carry any type).
 */
export function asMessage(f: Frame): ServerMessage | undefined {
  const fields = Object.hasOwn(MessageFields, String(f.type)) ? MessageFields[f.type as ServerMessage['type']] : undefined;
  if (!fields) return undefined;
  for (const [name, kind] of Object.entries(fields)) if (!fits(f[name], kind)) return undefined;
  return f as unknown as ServerMessage;
}

function fits(v: unknown, kind: string): boolean {
  if (kind.startsWith('?')) {
    if (v === undefined) return true;
    kind = kind.slice(1);
  }
  return kind.split('|').some((k) => {
    switch (k) {
      case 'unknown':
        return v !== undefined;
      case 'null':
        return v === null;
      case 'array':
        return Array.isArray(v);
      case 'object':
        return typeof v === 'object' && v !== null && !Array.isArray(v);
      default:
        return typeof v === k;
    }
  });
}

/** isIntegrationError: API Gateway's answer to a frame whose invocation failed, which names no command. */
export function isIntegrationError(f: Frame): boolean {
  return f.type === undefined && f.message === INTEGRATION_ERROR;
}

/** The id of the command a reply answers, as the client writes ids (strings); '' for none (events, joins and leaves carry their own id). */
export function replyID(m: ServerMessage): string {
  switch (m.type) {
    case P.TypeEvent:
    case P.TypeJoin:
    case P.TypeLeave:
      return '';
    default:
      return typeof m.id === 'string' ? m.id : '';
  }
}

/** unreachable is the default of an exhaustive switch over a union. */
export function unreachable(v: never): never {
  throw new Error(`wsgate: unhandled message ${JSON.stringify(v)}`);
}
