/**
 * A {@link DecompressPool} for deflate clusters in Node that needs no thread
 * of its own: node:zlib's asynchronous inflate runs on libuv's thread pool
 * (the one file I/O uses), so decoding spreads over the cores as with worker
 * threads, without a second JavaScript heap and WASM instance per thread
 * (about 10 MB of memory each; the converts' peak RSS goal is 64 MB).
 *
 * Semantics stay the WASM decoder's (QEMU's): window bits 12 and one inflate
 * call into an output of exactly one cluster, as QEMU's (so a back-reference
 * anywhere within the cluster's output is valid), input after the end of the
 * stream (sector padding) ignored, the cluster filled exactly. Only a task that node:zlib decodes into exactly one cluster is
 * answered from it; any other (corrupt, short, or longer than a cluster,
 * which QEMU accepts and truncates) is decoded again by the WASM decoder,
 * whose answer (the cluster, or its error) is the one given.
 */
import type { BlockError } from '../core/errors.js';
import type { ClusterCompression, DecompressPool, DecompressTask } from '../core/decompress-pool.js';
import { getClusterCodecSync, nodeZlib, type ClusterCodec } from './codec.js';

type NodeZlib = typeof import('node:zlib');

/** Whether {@link NodeZlibDecompressPool} can run here (Node). */
export function nodeZlibAvailable(): boolean {
  return nodeZlib() !== undefined;
}

/** Deflate clusters inflated by node:zlib on libuv's threads (see the file comment). */
export class NodeZlibDecompressPool implements DecompressPool {
  private closed = false;
  private readonly zlib: NodeZlib;
  /** The WASM decoder, made on the first task node:zlib did not decode. */
  private wasm: ClusterCodec | undefined;
  /**
   * Every cluster of a batch goes to libuv's threads: the caller's thread runs
   * the copy's reads, writes and bookkeeping, which kept it the busiest thread
   * while it inflated half of each batch in WASM. A 1 GiB zlib convert on 2
   * cores: 6.6-7.0 s against 7.9-8.1 s with half inline (qemu-img 5.6 s), the
   * same peak RSS (`DISKWORKER_DECOMPRESS_THREADS` 1 / 63, 2026-12-07).
   */
  readonly wholeBatches = true;

  /** `threads`: the share of a batch given here, as threads besides the caller's. */
  constructor(readonly threads: number) {
    const z = nodeZlib();
    if (!z) throw new Error('node:zlib is not available');
    this.zlib = z;
  }

  async decode(kind: ClusterCompression, tasks: readonly DecompressTask[]): Promise<Array<BlockError | null>> {
    if (this.closed) throw new Error('decompression pool is closed');
    if (kind !== 'zlib') throw new Error(`node:zlib cannot decode ${kind} clusters`);
    return Promise.all(tasks.map((t) => this.one(t)));
  }

  private one(t: DecompressTask): Promise<BlockError | null> {
    const want = t.out.byteLength;
    const z = this.zlib;
    return new Promise((resolve) => {
      z.inflateRaw(
        t.input,
        // Z_SYNC_FLUSH: a truncated stream gives its short output rather than an error (checked below).
        // One byte more than a cluster: node:zlib allocates a fresh output buffer whenever one
        // fills up, so an output of exactly a cluster left a second 64 KiB buffer unused each time
        // (garbage outside V8's heap until the next scavenge: at the peak of a 1 GiB convert, 4.0 MB of
        // ArrayBuffers instead of 1.0-1.7 MB).
        { windowBits: 12, chunkSize: Math.max(want + 1, 64), maxOutputLength: want, finishFlush: z.constants.Z_SYNC_FLUSH },
        (err, got) => {
          if (!err && got.byteLength === want) {
            t.out.set(got);
            resolve(null);
            return;
          }
          resolve(this.viaWasm(t));
        },
      );
    });
  }

  /** The WASM decoder's answer for a task node:zlib did not decode into exactly one cluster. */
  private viaWasm(t: DecompressTask): BlockError | null {
    try {
      this.wasm ??= getClusterCodecSync();
      this.wasm.inflateClusterSync!(t.input, t.out, t.context);
      return null;
    } catch (e) {
      return e as BlockError;
    }
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}
