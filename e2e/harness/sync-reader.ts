/**
 * A worker standing in for an emulator: reads and writes a disk synchronously
 * through the sync channel (SyncDiskClient, Atomics.wait).
 */
import { SyncDiskClient } from '../../src/channels/sync-client.js';

self.onmessage = (ev: MessageEvent<{ sab: SharedArrayBuffer; ops: Array<{ op: 'read' | 'write' | 'flush'; offset: number; length?: number; data?: Uint8Array }> }>) => {
  const client = new SyncDiskClient(ev.data.sab);
  const results: Array<{ data?: Uint8Array; error?: { code: string; message: string } }> = [];
  for (const op of ev.data.ops) {
    try {
      if (op.op === 'read') {
        const buf = new Uint8Array(op.length!);
        client.read(op.offset, buf);
        results.push({ data: buf });
      } else if (op.op === 'write') {
        client.write(op.offset, op.data!);
        results.push({});
      } else {
        client.flush();
        results.push({});
      }
    } catch (e) {
      const err = e as { code: string; message: string };
      results.push({ error: { code: err.code, message: err.message } });
    }
  }
  (self as unknown as Worker).postMessage(results);
};
