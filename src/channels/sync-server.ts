/**
 * The block-worker side of the synchronous channel (see sync-client.ts): waits
 * with Atomics.waitAsync for requests in a SharedArrayBuffer and serves them
 * from a BlockBackend, one at a time.
 */
import type { BlockBackend } from '../core/backend.js';
import { toBlockError } from '../core/errors.js';
import { encodeErrorText } from './error-text.js';
import { SYNC_HEADER_BYTES, SyncOp, SyncSlot, SyncState } from './sync-layout.js';

type WaitAsync = (a: Int32Array, i: number, v: number, t?: number) => { async: boolean; value: Promise<string> | string };

export class SyncServer {
  readonly buffer: SharedArrayBuffer;
  private readonly ctl: Int32Array;
  private readonly data: Uint8Array;
  private bounce: Uint8Array;
  private stopped = false;

  constructor(
    private readonly backend: BlockBackend,
    dataBytes: number,
  ) {
    if (typeof SharedArrayBuffer === 'undefined' || !(globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated) {
      throw toBlockError({
        code: 'ENOTSUP',
        message: 'The synchronous channel needs SharedArrayBuffer, which needs cross-origin isolation (COOP same-origin + COEP require-corp)',
      });
    }
    this.buffer = new SharedArrayBuffer(SYNC_HEADER_BYTES + dataBytes);
    this.ctl = new Int32Array(this.buffer, 0, SYNC_HEADER_BYTES / 4);
    this.data = new Uint8Array(this.buffer, SYNC_HEADER_BYTES, dataBytes);
    this.bounce = new Uint8Array(0);
  }

  start(): void {
    void this.loop();
  }

  stop(): void {
    this.stopped = true;
    Atomics.store(this.ctl, SyncSlot.STATE, SyncState.CLOSED);
    Atomics.notify(this.ctl, SyncSlot.STATE);
  }

  private async loop(): Promise<void> {
    const waitAsync = (Atomics as unknown as { waitAsync: WaitAsync }).waitAsync;
    while (!this.stopped) {
      const st = Atomics.load(this.ctl, SyncSlot.STATE);
      if (st === SyncState.CLOSED) return;
      if (st !== SyncState.REQUEST) {
        const r = waitAsync(this.ctl, SyncSlot.STATE, st);
        if (r.async) await r.value;
        continue;
      }
      await this.serve();
    }
  }

  private async serve(): Promise<void> {
    const c = this.ctl;
    const op = c[SyncSlot.OP]!;
    const len = c[SyncSlot.LENGTH]!;
    const offset = (c[SyncSlot.OFFSET_LO]! >>> 0) + c[SyncSlot.OFFSET_HI]! * 0x1_0000_0000;
    let result = 0;
    try {
      if (len < 0 || ((op === SyncOp.READ || op === SyncOp.WRITE) && len > this.data.length)) throw toBlockError({ code: 'EINVAL', message: `Sync request of ${len} bytes exceeds the channel's ${this.data.length}` });
      switch (op) {
        case SyncOp.READ:
          // Straight into shared memory: the client waits until DONE.
          await this.backend.pread(offset, this.data.subarray(0, len));
          break;
        case SyncOp.WRITE: {
          // A private copy: the block layer may keep the buffer past this request's
          // completion (write caches), and the client reuses the data area at once.
          if (this.bounce.length < len) this.bounce = new Uint8Array(this.data.length);
          const b = this.bounce.subarray(0, len);
          b.set(this.data.subarray(0, len));
          await this.backend.write(offset, b);
          break;
        }
        case SyncOp.WRITE_ZEROES:
          await this.backend.writeZeroes(offset, len);
          break;
        case SyncOp.FLUSH:
          await this.backend.flush();
          break;
        default:
          throw toBlockError({ code: 'EINVAL', message: `Unknown sync operation ${op}` });
      }
    } catch (e) {
      const err = toBlockError(e);
      result = -err.errno;
      const msg = new TextEncoder().encode(encodeErrorText(err)).subarray(0, this.data.length);
      this.data.set(msg);
      c[SyncSlot.MESSAGE_LENGTH] = msg.length;
    }
    Atomics.store(c, SyncSlot.RESULT, result);
    Atomics.store(c, SyncSlot.STATE, SyncState.DONE);
    Atomics.notify(c, SyncSlot.STATE);
  }
}
