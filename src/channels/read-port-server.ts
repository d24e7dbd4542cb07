/**
 * The worker side of the read port: a MessageChannel that serves reads
 * without Comlink's per-call work, for Disk.readInto (read-port-client.ts).
 *
 * Messages `{ id, offset, buf }` (buf transferred, or a view of a
 * SharedArrayBuffer the page shares) are answered `{ id, buf }` (the buffer
 * transferred back, filled), `{ id }` (shared: filled in place) or
 * `{ id, error }` (a serialised BlockError).
 */
import type { BlockBackend } from '../core/backend.js';
import { toBlockError } from '../core/errors.js';
import { serializeBlockError, type SerializedBlockError } from '../client/transfer.js';

/** A request on the read port. */
export interface ReadPortRequest {
  id: number;
  offset: number;
  buf: Uint8Array;
}

/** An answer on the read port. */
export interface ReadPortAnswer {
  id: number;
  buf?: Uint8Array;
  error?: SerializedBlockError;
}

/** Serves reads of `backend` on a new channel; returns the page's end and a way to close ours. */
export function serveReadPort(backend: BlockBackend): { port: MessagePort; close(): void } {
  const { port1, port2 } = new MessageChannel();
  port1.onmessage = (ev: MessageEvent<ReadPortRequest>) => {
    const { id, offset, buf } = ev.data;
    const shared = typeof SharedArrayBuffer !== 'undefined' && buf.buffer instanceof SharedArrayBuffer;
    backend.pread(offset, buf).then(
      () => (shared ? port1.postMessage({ id } satisfies ReadPortAnswer) : port1.postMessage({ id, buf } satisfies ReadPortAnswer, [buf.buffer as ArrayBuffer])),
      (e: unknown) => {
        port1.postMessage({ id, error: serializeBlockError(toBlockError(e)) } satisfies ReadPortAnswer);
      },
    );
  };
  return { port: port2, close: () => port1.close() };
}
