/**
 * QMP events: stamped with the wall-clock time as QEMU stamps them
 * (`{"seconds", "microseconds"}`), queued for whoever reads them and handed
 * to the live listeners (the daemon's clients in command mode).
 */

/** An event as it goes on the wire. */
export interface QmpEvent {
  event: string;
  data?: unknown;
  timestamp: { seconds: number; microseconds: number };
}

/** The events of one QMP instance. */
export class QmpEvents {
  private readonly listeners = new Set<(e: QmpEvent) => void>();
  /** Events not yet taken with {@link drain} (bounded: the oldest go first). */
  private readonly queue: QmpEvent[] = [];

  constructor(private readonly maxQueued = 1024) {}

  /** Stamps and delivers an event. */
  emit(event: string, data?: unknown): QmpEvent {
    const us = Math.floor((performance.timeOrigin + performance.now()) * 1000);
    const e: QmpEvent = { event, ...(data !== undefined ? { data } : {}), timestamp: { seconds: Math.floor(us / 1e6), microseconds: us % 1e6 } };
    this.queue.push(e);
    if (this.queue.length > this.maxQueued) this.queue.shift();
    for (const l of [...this.listeners]) l(e);
    return e;
  }

  /** Listens to every event; returns the function that stops listening. */
  on(listener: (e: QmpEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Takes the queued events (for users without a listener, such as the worker). */
  drain(): QmpEvent[] {
    return this.queue.splice(0);
  }
}
