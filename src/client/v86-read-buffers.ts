/**
 * Read buffers the v86 adapter hands round again (issue #18).
 *
 * A fresh ArrayBuffer for every guest read costs the worker a page fault per
 * 4 KiB it writes into (on this kind of machine 10–25 µs each: a 1 MiB read
 * took 5–7 ms through `Disk.read`, 0.3–0.7 ms through `Disk.readInto` with a
 * buffer used before). v86 copies what a read returns before its callback
 * returns (into the IDE data buffer or, for DMA, into guest memory), so the
 * adapter takes the buffer back then and sends it with a later read.
 */

/** Free buffers by length, bounded in bytes. */
export class ReadBufferPool {
  private readonly free = new Map<number, Uint8Array<ArrayBuffer>[]>();
  private held = 0;

  /** @param maxBytes bound of the bytes kept free. */
  constructor(private readonly maxBytes = 16 << 20) {}

  /** Bytes kept free now (for tests). */
  get bytes(): number {
    return this.held;
  }

  /** A buffer of `len` bytes: one given back earlier, or a new one. */
  take(len: number): Uint8Array<ArrayBuffer> {
    const list = this.free.get(len);
    const buf = list?.pop();
    if (buf) {
      this.held -= len;
      return buf;
    }
    return new Uint8Array(len);
  }

  /**
   * Keeps `buf` for a later {@link take}: only a whole, attached buffer (a
   * view into a larger one, or one transferred away, is left alone), and
   * only within the bound.
   */
  give(buf: Uint8Array): void {
    const len = buf.length;
    if (len === 0 || buf.byteOffset !== 0 || !(buf.buffer instanceof ArrayBuffer) || buf.buffer.byteLength !== len) return;
    if (this.held + len > this.maxBytes) return;
    let list = this.free.get(len);
    if (!list) this.free.set(len, (list = []));
    list.push(buf as Uint8Array<ArrayBuffer>);
    this.held += len;
  }
}
