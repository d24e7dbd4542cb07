/**
 * The worker side of the read port: a MessageChannel that serves reads
 * without Comlink's per-call work, for Disk.readInto (read-port-client.ts).
 *
 * A message is an array of reads `{ id, offset, buf }` (each buf transferred,
 * or a view of a SharedArrayBuffer the page shares); the worker serves them
 * and answers them all in one message, an array of `{ id, buf }` (the
 * buffer transferred back, filled), `{ id }` (shared: filled in place) or
 * `{ id, error }` (a serialised BlockError).
 *
 * Why batches: a 1 MiB read from OPFS's page cache takes the worker about
 * 0.1 ms, and each message it receives or posts costs about as much (posting
 * wakes the page, which on a busy 2-core machine takes the worker's core for a
 * while). With one message per read each way the messages cost more than the
 * reads. The page sends the reads submitted in one tick as one message (the
 * reads in flight of a sequential reader come back together, so they are
 * submitted again together). Measured with 4 reads of 1 MiB in flight, one
 * answer for all four beat answers in halves (which would keep the worker
 * reading while the page handles them) by a third on a busy machine: fewer
 * wake-ups win over overlap there.
 */
import type { BlockBackend } from '../core/backend.js';
import { toBlockError } from '../core/errors.js';
import { serializeBlockError, type SerializedBlockError } from '../client/transfer.js';

/** A read on the read port. */
export interface ReadPortRequest {
  id: number;
  offset: number;
  buf: Uint8Array;
}

/** An answer on the read port (the worker posts arrays of them). */
export interface ReadPortAnswer {
  id: number;
  buf?: Uint8Array;
  error?: SerializedBlockError;
}

/**
 * Serves reads of `backend` on a new channel; returns the page's end and a way
 * to close ours. The reads of one message all start at once (they overlap
 * where the backend waits: http, idb) and are answered together.
 */
export function serveReadPort(backend: BlockBackend): { port: MessagePort; close(): void } {
  const { port1, port2 } = new MessageChannel();
  const isShared = (b: Uint8Array) => typeof SharedArrayBuffer !== 'undefined' && b.buffer instanceof SharedArrayBuffer;
  const serve = async (reads: ReadPortRequest[]): Promise<void> => {
    const settled = await Promise.allSettled(reads.map(({ offset, buf }) => backend.pread(offset, buf)));
    const answers: ReadPortAnswer[] = [];
    const moving: ArrayBuffer[] = [];
    reads.forEach(({ id, buf }, i) => {
      const s = settled[i]!;
      if (s.status === 'rejected') answers.push({ id, error: serializeBlockError(toBlockError(s.reason)) });
      else if (isShared(buf)) answers.push({ id });
      else {
        answers.push({ id, buf });
        moving.push(buf.buffer as ArrayBuffer);
      }
    });
    port1.postMessage(answers, moving);
  };
  port1.onmessage = (ev: MessageEvent<ReadPortRequest[]>) => void serve(ev.data);
  return { port: port2, close: () => port1.close() };
}
