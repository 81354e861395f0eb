// A small typed event emitter: on(name, listener) returns the function
// that removes the listener.

export class Emitter<Events> {
  private readonly listeners = new Map<keyof Events, Set<(v: never) => void>>();

  /** on adds a listener for the named event; the function it returns removes it. */
  on<K extends keyof Events>(name: K, listener: (v: Events[K]) => void): () => void {
    let set = this.listeners.get(name);
    if (!set) this.listeners.set(name, (set = new Set()));
    set.add(listener as (v: never) => void);
    return () => this.off(name, listener);
  }

  /** off removes a listener on added. */
  off<K extends keyof Events>(name: K, listener: (v: Events[K]) => void): void {
    this.listeners.get(name)?.delete(listener as (v: never) => void);
  }

  /** emit calls the event's listeners, in the order they were added. */
  protected emit<K extends keyof Events>(name: K, v: Events[K]): void {
    for (const l of [...(this.listeners.get(name) ?? [])]) (l as (v: Events[K]) => void)(v);
  }
}
