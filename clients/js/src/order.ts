// Per-topic ordering: the client's position in each topic, the events held
// behind a hole, and the rules that hand each event to the application
// once, in sequence order. Pure logic, no timers and no socket, so the unit
// tests drive it directly; the same rules as clients/go's order.go.

/** One event, as delivered to the application. */
export interface WsgateEvent<T = unknown> {
  topic: string;
  /** The topic's sequence number: events of a topic arrive in this order. */
  seq: number;
  id: string;
  /** When it was published, when the publisher said (else EventBridge's time). */
  time?: Date;
  /** The payload as published (JSON); undefined for a binary payload. */
  data?: T;
  /** The payload of a `payload_base64` event. */
  binary?: Uint8Array;
  /** Who published it, `<ptype>:<sub>`, when a client did (the publish command). */
  from?: string;
}

/** The client's position in one topic. */
export class TopicState {
  /** The last sequence number delivered (or known to be behind us). */
  last = 0;
  /** last is a position the gateway or the caller gave, or an event set. */
  known = false;
  /** Received past a hole or during a resume, by seq. */
  held: WsgateEvent[] = [];
  /** A resume is in flight, or waits for its subscription. */
  resuming = false;
  /**
   * The resume is not sent yet: it goes once the subscription covering the
   * topic is confirmed on this connection. API Gateway runs a connection's
   * frames at once; a resume answered before the subscription was written
   * would miss the events numbered in between.
   */
  waiting = false;
  /** Where this connection's subscription started (subscribed.seqs): the resume after a reconnect asks only up to it. */
  until = 0;
  /** A resume must be asked again (cut short by the replay cap, or refused for now). */
  owed = false;
  /**
   * The topic's start is not known (a wildcard subscription gives none):
   * its first events wait gapWait for earlier-numbered ones, since
   * parallel fan-outs overtake each other; then the lowest starts it.
   */
  settling = false;
  /** Since when the first hole (or owed resume) has waited, ms; 0: none. */
  gapSince = 0;

  constructor(last = 0) {
    if (last > 0) {
      this.last = last;
      this.known = true;
    }
  }

  /**
   * receive takes one event off the wire and returns what it releases;
   * undefined when the event is a repeat. gapWait < 0 releases at once,
   * holes and all.
   */
  receive(e: WsgateEvent, now: number, gapWait: number): WsgateEvent[] | undefined {
    if (e.seq <= this.last || this.held.some((h) => h.seq === e.seq)) return undefined;
    if (!this.known && !this.resuming && gapWait >= 0) this.settling = true;
    if (!this.known && gapWait < 0) {
      this.last = e.seq - 1;
      this.known = true;
    }
    let i = this.held.findIndex((h) => h.seq > e.seq);
    if (i < 0) i = this.held.length;
    this.held.splice(i, 0, e);
    if (!this.gapSince) this.gapSince = now;
    if (this.settling) return [];
    return gapWait < 0 ? this.flush(now) : this.release(now);
  }

  /** settle ends the wait of a topic without a start: the lowest event held starts it. */
  settle(now: number): WsgateEvent[] {
    this.settling = false;
    this.known = true;
    this.last = this.held.length ? this.held[0].seq - 1 : this.last;
    return this.release(now);
  }

  /** subscribed takes a subscription's starting number for this topic, and returns what that releases. */
  subscribed(seq: number, now: number): WsgateEvent[] {
    if (this.waiting) this.until = seq;
    if (this.known || this.resuming) return [];
    // Events after this number are ours: a hole before the first one, or
    // a drop, resumes from here. Events held already are ours too,
    // whatever their number.
    this.last = this.held.length ? Math.min(seq, this.held[0].seq - 1) : seq;
    this.known = true;
    this.settling = false;
    return this.release(now);
  }

  /**
   * resumed ends a resume: the gateway sent everything up to seq meant for
   * this connection, so held events up to there are complete (numbers not
   * replayed were filtered away from us).
   */
  resumed(seq: number, now: number): WsgateEvent[] {
    this.resuming = false;
    const out: WsgateEvent[] = [];
    while (this.held.length && this.held[0].seq <= seq) {
      const e = this.held.shift()!;
      out.push(e);
      this.last = e.seq;
    }
    this.last = Math.max(this.last, seq);
    this.known = true;
    this.settling = false;
    return out.concat(this.release(now));
  }

  /** lost ends a resume history could not serve: what is held goes out, holes and all. */
  lost(now: number): WsgateEvent[] {
    this.resuming = false;
    this.settling = false;
    return this.flush(now);
  }

  /** The resume range to ask for; only the first resume after subscribing is bounded. */
  resumeRange(): { since: number; until?: number } {
    const since = this.last;
    const until = this.until;
    this.until = 0;
    return until >= since && until > 0 ? { since, until } : { since };
  }

  /** Whether a hole (or an owed resume, or a start) has waited gapWait: ask for it (settle it) now. */
  due(now: number, gapWait: number): boolean {
    return gapWait >= 0 && (this.held.length > 0 || this.owed) && !this.resuming && now - this.gapSince >= gapWait;
  }

  /** release takes the held events that follow the position without a hole. */
  release(now: number): WsgateEvent[] {
    return this.take(now, (seq) => seq === this.last + 1);
  }

  /** flush takes every held event, for when what is missing will not come. */
  flush(now: number): WsgateEvent[] {
    return this.take(now, () => true);
  }

  private take(now: number, next: (seq: number) => boolean): WsgateEvent[] {
    if (this.resuming) return [];
    const out: WsgateEvent[] = [];
    while (this.held.length && next(this.held[0].seq)) {
      const e = this.held.shift()!;
      out.push(e);
      this.last = e.seq;
    }
    if (!this.held.length) this.gapSince = 0;
    else if (out.length) this.gapSince = now; // a new hole starts waiting now
    return out;
  }
}

/**
 * matches reports whether a topic pattern (`*` one segment, `>` as the last
 * segment one or more) matches a topic, as the gateway's topic.Pattern.Match.
 */
export function matches(pattern: string, topic: string): boolean {
  const p = pattern.split('.');
  const t = topic.split('.');
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '>') return t.length > i;
    if (i >= t.length || (p[i] !== '*' && p[i] !== t[i])) return false;
  }
  return p.length === t.length;
}
