/**
 * QMP from the page (`dw.qmp`): QEMU 7.2's block commands (src/qmp/) run by
 * the worker on the same graph the page's disks use, with QEMU's replies and
 * events.
 *
 * ```ts
 * const r = await dw.qmp.execute('query-named-block-nodes', { flat: true });
 * if ('error' in r) console.log(r.error.class, r.error.desc);
 * for await (const e of dw.qmp.events()) if (e.event === 'JOB_STATUS_CHANGE') break;
 * ```
 *
 * A reply is what QMP puts on the wire: `{ return }` or `{ error: { class, desc } }`.
 */
import { proxy, type Remote } from 'comlink';
import type { BlockWorkerApi } from './api.js';
import type { QmpEvent } from '../qmp/events.js';
import type { QmpReply } from '../qmp/dispatcher.js';

export type { QmpEvent, QmpReply };

/** The page's QMP monitor on the worker. */
export class DiskQmp {
  private readonly listeners = new Set<(e: QmpEvent) => void>();
  private subscribed: Promise<void> | undefined;

  /** @internal Made by DiskWorker. */
  constructor(private readonly remote: Remote<BlockWorkerApi>) {}

  /** Runs one command (`args` as QMP's "arguments"). */
  execute(name: string, args: Record<string, unknown> = {}): Promise<QmpReply> {
    return this.remote.qmpExecute(name, args);
  }

  /** Listens to every event from now on; returns the function that stops listening. */
  async on(listener: (e: QmpEvent) => void): Promise<() => void> {
    this.listeners.add(listener);
    await this.subscribe();
    return () => this.listeners.delete(listener);
  }

  /**
   * The events from the call on, in order, as an async iterator; leaving the
   * loop (break / return) stops listening.
   */
  async *events(): AsyncGenerator<QmpEvent, void, undefined> {
    const queue: QmpEvent[] = [];
    let wake: (() => void) | null = null;
    const stop = await this.on((e) => {
      queue.push(e);
      wake?.();
      wake = null;
    });
    try {
      for (;;) {
        while (queue.length > 0) yield queue.shift()!;
        await new Promise<void>((r) => (wake = r));
      }
    } finally {
      stop();
    }
  }

  private subscribe(): Promise<void> {
    this.subscribed ??= this.remote.qmpSubscribe(
      proxy((e: QmpEvent) => {
        for (const l of [...this.listeners]) l(e);
      }),
    );
    return this.subscribed;
  }
}
