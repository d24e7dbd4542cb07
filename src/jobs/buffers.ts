/**
 * The copy engine's buffers: reused between pieces (no zero-filling of every
 * piece), optionally lent by a pool in WASM memory first (the zero module's
 * buffers, checked in place), and counted so a copy can show how many it had
 * in flight at most.
 */

/** A pool that lends buffers and may run out (the zero module's pool is one). */
export interface BufferLender {
  /** A buffer of `bytes`, or undefined when none is free. */
  take(bytes: number): Uint8Array | undefined;
  /** Gives back a buffer from {@link take}. */
  give(buf: Uint8Array): void;
  /** Whether `buf` came from this lender. */
  owns(buf: Uint8Array): boolean;
}

/** Options of {@link CopyBuffers}. */
export interface CopyBuffersOptions {
  /** Size of the engine's own buffers (the largest piece). */
  size: number;
  /** Asked first. */
  lender?: BufferLender;
  /** Makes an own buffer; `new Uint8Array` by default (Node may pass Buffer.allocUnsafeSlow). */
  alloc?: (bytes: number) => Uint8Array;
}

/** Buffers of one copy. */
export class CopyBuffers {
  private readonly free: Uint8Array[] = [];
  private readonly size: number;
  private readonly alloc: (bytes: number) => Uint8Array;
  /** Buffers taken and not given back. */
  inFlight = 0;
  /** Most buffers taken at once. */
  maxInFlight = 0;

  constructor(private readonly o: CopyBuffersOptions) {
    this.size = o.size;
    this.alloc = o.alloc ?? ((n) => new Uint8Array(n));
  }

  /** A buffer of exactly `bytes` (its content is undefined). */
  take(bytes: number): Uint8Array {
    this.inFlight++;
    if (this.inFlight > this.maxInFlight) this.maxInFlight = this.inFlight;
    const lent = this.o.lender?.take(bytes);
    if (lent) return lent;
    const b = this.free.pop() ?? this.alloc(this.size);
    return b.length >= bytes ? b.subarray(0, bytes) : this.alloc(bytes);
  }

  /** Gives back a buffer from {@link take}, once nothing reads or writes it any more. */
  give(buf: Uint8Array): void {
    this.inFlight--;
    if (this.o.lender?.owns(buf)) this.o.lender.give(buf);
    else if (buf.byteOffset === 0 && buf.buffer.byteLength >= this.size) this.free.push(new Uint8Array(buf.buffer, 0, buf.buffer.byteLength));
  }
}
