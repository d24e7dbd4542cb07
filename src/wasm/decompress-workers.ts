/**
 * The default {@link DecompressPool}: worker threads (Node's worker_threads,
 * Web Workers in browsers) that decode compressed clusters with their own
 * instances of the WASM deflate and zstd modules, compiled once here and
 * handed to them.
 *
 * One thread fewer than the cores (at most 4; none on one core), started
 * once a reader has decoded a few batches inline (so short reads never start
 * them). A batch goes to a thread in one message:
 * the compressed bytes and an output area in two transferred buffers, which
 * come back with the results and are kept for the next batch (no copies
 * beyond the module's own, no garbage per cluster). In Node the threads do
 * not keep the process alive while idle, and every thread ends after a
 * second without work. A thread that fails (it cannot start, it dies) fails
 * its batches and the pool: the caller decodes inline from then on.
 *
 * DISKWORKER_DECOMPRESS_THREADS (Node) sets the thread count; 0 decodes inline.
 * In Node, deflate clusters go to node:zlib on libuv's threads instead
 * (src/wasm/decompress-node-zlib.ts: no heap and instance per thread).
 * The default pool takes deflate clusters; zstd clusters only when that
 * variable is set (see {@link decompressPoolFor}).
 */
import { BlockError } from '../core/errors.js';
import { chosenDecompressPool, type ClusterCompression, type DecompressPool, type DecompressTask } from '../core/decompress-pool.js';
import { loadedWasm, statusError, trapError } from './loader.js';
import { NodeZlibDecompressPool, nodeZlibAvailable } from './decompress-node-zlib.js';

/**
 * The thread's program (plain JavaScript: Node runs it with `eval`, browsers from
 * a Blob URL). Messages: `{ init, mod }` instantiates codec `init` (0 deflate,
 * 1 zstd); a batch `{ id, kind, inBuf, outBuf, lens, outLen }` decodes each
 * input (`lens` bytes after the previous) into `outLen` bytes of `outBuf` and
 * answers `{ id, inBuf, outBuf, res, at, traps }`: per input the module's result,
 * the error offset of a failure, or a trap's message.
 */
const WORKER_SOURCE = `"use strict";
const wt = typeof require === "function" ? require("node:worker_threads") : null;
const port = wt ? wt.parentPort : self;
const codecs = [null, null];
function room(c, inLen, outLen) {
  if (inLen > c.inS) { c.inS = Math.ceil(Math.max(inLen, 65536) / 65536) * 65536; c.inP = c.x.alloc(c.inS + 64) >>> 0; }
  if (outLen > c.outS) { c.outS = Math.ceil(Math.max(outLen, 65536) / 65536) * 65536; c.outP = c.x.alloc(c.outS + 64) >>> 0; }
  if (!c.inP || !c.outP) throw new Error("cannot allocate module memory");
}
function onMessage(m) {
  if (m.init !== undefined) {
    const x = new WebAssembly.Instance(m.mod, { env: { abort() { throw new Error("abort"); } } }).exports;
    codecs[m.init] = { x, inS: 0, inP: 0, outS: 0, outP: 0 };
    return;
  }
  const c = codecs[m.kind];
  const src = new Uint8Array(m.inBuf);
  const dst = new Uint8Array(m.outBuf);
  const n = m.lens.length;
  const res = new Array(n), at = new Array(n), traps = new Array(n);
  for (let i = 0, off = 0; i < n; off += m.lens[i], i++) {
    const len = m.lens[i];
    at[i] = -1;
    try {
      room(c, len, m.outLen);
      new Uint8Array(c.x.memory.buffer).set(src.subarray(off, off + len), c.inP);
      const r = m.kind === 0 ? c.x.inflate(c.inP, len, c.outP, m.outLen, 1) : c.x.decompress(c.inP, len, c.outP, m.outLen, 1);
      res[i] = r;
      if (r < 0) at[i] = c.x.errorOffset();
      else dst.set(new Uint8Array(c.x.memory.buffer, c.outP, r), i * m.outLen);
    } catch (e) {
      res[i] = null;
      traps[i] = String((e && e.message) || e);
    }
  }
  port.postMessage({ id: m.id, inBuf: m.inBuf, outBuf: m.outBuf, res, at, traps }, [m.inBuf, m.outBuf]);
}
if (wt) port.on("message", onMessage); else self.onmessage = (e) => onMessage(e.data);
`;

/** Most threads a pool starts. */
const MAX_THREADS = 4;
/** A thread without work for this long ends (it is started again when needed). */
const IDLE_MS = 1000;

/** A thread's answer to a batch (see {@link WORKER_SOURCE}). */
export interface Reply {
  id: number;
  inBuf: ArrayBuffer;
  outBuf: ArrayBuffer;
  res: Array<number | null>;
  at: number[];
  traps: Array<string | undefined>;
}

/** A started thread, as the pool sees it. */
export interface ThreadPort {
  post(msg: unknown, transfer: Transferable[]): void;
  /** Whether an idle thread keeps the process alive (Node). */
  hold(busy: boolean): void;
  terminate(): void;
}

/** Starts a thread running the decoder's program; `onFail` when it cannot start or dies. */
export type Spawn = (onReply: (r: Reply) => void, onFail: (e: unknown) => void) => ThreadPort;

type NodeWorkerThreads = typeof import('node:worker_threads');

function nodeBuiltin<T>(id: string): T | undefined {
  const p = (globalThis as { process?: { versions?: { node?: string }; getBuiltinModule?: (id: string) => unknown } }).process;
  if (typeof p?.versions?.node !== 'string' || typeof p.getBuiltinModule !== 'function') return undefined;
  try {
    return p.getBuiltinModule(id) as T;
  } catch {
    return undefined;
  }
}

/** Threads of node:worker_threads (undefined outside Node). */
export function nodeThreadSpawn(): Spawn | undefined {
  const wt = nodeBuiltin<NodeWorkerThreads>('node:worker_threads');
  if (!wt) return undefined;
  return (onReply, onFail) => {
    // Small heaps: a thread holds a few buffers (off its heap) and a WASM instance.
    const w = new wt.Worker(WORKER_SOURCE, { eval: true, resourceLimits: { maxYoungGenerationSizeMb: 1, maxOldGenerationSizeMb: 16 } });
    w.on('message', onReply);
    w.on('error', onFail);
    w.on('exit', (code) => onFail(new Error(`decompression thread exited (${code})`)));
    w.unref();
    return {
      post: (msg, transfer) => w.postMessage(msg, transfer as never),
      hold: (busy) => (busy ? w.ref() : w.unref()),
      terminate: () => void w.terminate(),
    };
  };
}

/** Web Workers started from a Blob URL (undefined where there are none). */
export function webWorkerSpawn(): Spawn | undefined {
  const g = globalThis as { Worker?: typeof Worker; Blob?: typeof Blob; URL?: typeof URL };
  if (typeof g.Worker !== 'function' || typeof g.Blob !== 'function' || typeof g.URL?.createObjectURL !== 'function') return undefined;
  let url: string | undefined;
  return (onReply, onFail) => {
    url ??= URL.createObjectURL(new Blob([WORKER_SOURCE], { type: 'text/javascript' }));
    const w = new Worker(url);
    w.onmessage = (e: MessageEvent<Reply>) => onReply(e.data);
    // A refused Blob URL (a content security policy) or a crash arrives here.
    w.onerror = (e) => onFail(new Error(`decompression worker failed: ${e.message}`));
    w.onmessageerror = () => onFail(new Error('decompression worker: a message could not be read'));
    return { post: (msg, transfer) => w.postMessage(msg, transfer), hold: () => undefined, terminate: () => w.terminate() };
  };
}

const KIND_INDEX: Record<ClusterCompression, number> = { zlib: 0, zstd: 1 };
const MODULE_OF: Record<ClusterCompression, 'deflate' | 'zstd'> = { zlib: 'deflate', zstd: 'zstd' };

interface Batch {
  tasks: readonly DecompressTask[];
  kind: ClusterCompression;
  resolve(r: Array<BlockError | null>): void;
  reject(e: unknown): void;
}

/** One thread of the pool. */
class Thread {
  private port: ThreadPort | undefined;
  private readonly inited = new Set<ClusterCompression>();
  private readonly batches = new Map<number, Batch>();
  private readonly spare: ArrayBuffer[] = [];
  private idle: ReturnType<typeof setTimeout> | undefined;
  private nextId = 1;

  constructor(
    private readonly spawn: Spawn,
    private readonly onFail: (e: unknown) => void,
  ) {}

  get load(): number {
    return this.batches.size;
  }

  private buffer(bytes: number): ArrayBuffer {
    const i = this.spare.findIndex((b) => b.byteLength >= bytes);
    if (i >= 0) return this.spare.splice(i, 1)[0]!;
    return new ArrayBuffer(2 ** Math.ceil(Math.log2(Math.max(bytes, 65536))));
  }

  run(kind: ClusterCompression, tasks: readonly DecompressTask[], mod: WebAssembly.Module): Promise<Array<BlockError | null>> {
    if (this.idle !== undefined) clearTimeout(this.idle);
    this.idle = undefined;
    if (!this.port) {
      // Events of a thread that was stopped (its exit) must not touch its successor.
      const port: ThreadPort = this.spawn(
        (r) => this.reply(r),
        (e) => {
          if (this.port === port) this.fail(e);
        },
      );
      this.port = port;
    }
    if (!this.inited.has(kind)) {
      this.port.post({ init: KIND_INDEX[kind], mod }, []);
      this.inited.add(kind);
    }
    const outLen = tasks[0]!.out.byteLength;
    const lens = tasks.map((t) => t.input.byteLength);
    const inBuf = this.buffer(lens.reduce((a, b) => a + b, 0));
    const outBuf = this.buffer(outLen * tasks.length);
    const src = new Uint8Array(inBuf);
    for (let i = 0, off = 0; i < tasks.length; off += lens[i]!, i++) src.set(tasks[i]!.input, off);
    const id = this.nextId++;
    const done = new Promise<Array<BlockError | null>>((resolve, reject) => this.batches.set(id, { tasks, kind, resolve, reject }));
    this.port.hold(true);
    this.port.post({ id, kind: KIND_INDEX[kind], inBuf, outBuf, lens, outLen }, [inBuf, outBuf]);
    return done;
  }

  private reply(r: Reply): void {
    const b = this.batches.get(r.id);
    if (!b) return;
    this.batches.delete(r.id);
    const out = new Uint8Array(r.outBuf);
    const what = b.kind === 'zlib' ? 'inflate' : 'zstd decompress';
    const answers = b.tasks.map((t, i): BlockError | null => {
      const n = r.res[i];
      const want = t.out.byteLength;
      if (n === null || n === undefined) return trapError(new Error(r.traps[i] ?? 'unknown failure'), what, t.context);
      if (n < 0) return statusError(n, what, t.context, r.at[i]);
      if (n !== want) {
        const text = b.kind === 'zlib' ? `compressed cluster inflates to ${n} bytes, expected ${want}` : `zstd compressed cluster decodes to ${n} bytes, expected ${want}`;
        return new BlockError('EIO', text, { ...t.context, expected: `${want} bytes` });
      }
      t.out.set(out.subarray(i * want, (i + 1) * want));
      return null;
    });
    // Two of each are enough for the batches a reader keeps in flight.
    for (const buf of [r.inBuf, r.outBuf]) if (this.spare.length < 4) this.spare.push(buf);
    if (this.batches.size === 0) {
      this.port?.hold(false);
      this.idle = setTimeout(() => this.stop(), IDLE_MS);
      (this.idle as { unref?: () => void }).unref?.();
    }
    b.resolve(answers);
  }

  private fail(e: unknown): void {
    this.stop();
    this.onFail(e);
  }

  /** Ends the thread; its batches in flight reject. */
  stop(): void {
    if (this.idle !== undefined) clearTimeout(this.idle);
    this.idle = undefined;
    const port = this.port;
    this.port = undefined;
    this.inited.clear();
    this.spare.length = 0;
    const pending = [...this.batches.values()];
    this.batches.clear();
    if (port) {
      port.hold(false);
      port.terminate();
    }
    for (const b of pending) b.reject(new BlockError('EIO', 'decompression thread stopped'));
  }
}

/** Worker threads decoding with the WASM codecs (see the file comment). */
export class WorkerDecompressPool implements DecompressPool {
  readonly threads: number;
  private readonly pool: Thread[];
  private failure: unknown;

  /** `threads` workers started by `spawn` when first needed. */
  constructor(threads: number, spawn: Spawn) {
    this.threads = threads;
    this.pool = Array.from({ length: threads }, () => new Thread(spawn, (e) => this.broken(e)));
  }

  /** Whether a thread has failed (the pool decodes nothing more). */
  get failed(): boolean {
    return this.failure !== undefined;
  }

  private broken(e: unknown): void {
    if (this.failure !== undefined) return;
    this.failure = e ?? new Error('decompression thread failed');
    for (const t of this.pool) t.stop();
  }

  async decode(kind: ClusterCompression, tasks: readonly DecompressTask[]): Promise<Array<BlockError | null>> {
    if (this.failure !== undefined) throw new BlockError('EIO', 'decompression pool has failed', {}, { cause: this.failure });
    const mod = loadedWasm(MODULE_OF[kind])?.compiled;
    if (!mod) throw new BlockError('ENOTSUP', `decompression pool: the ${MODULE_OF[kind]} module is not loaded`);
    if (tasks.length === 0) return [];
    // Equal shares, the least busy threads first.
    const order = [...this.pool].sort((a, b) => a.load - b.load);
    const parts = Math.min(order.length, tasks.length);
    const per = Math.ceil(tasks.length / parts);
    const runs: Array<Promise<Array<BlockError | null>>> = [];
    for (let i = 0; i < parts; i++) {
      const slice = tasks.slice(i * per, (i + 1) * per);
      if (slice.length) runs.push(order[i]!.run(kind, slice, mod));
    }
    return (await Promise.all(runs)).flat();
  }

  async close(): Promise<void> {
    this.broken(new BlockError('EIO', 'decompression pool is closed'));
  }
}

/** Threads a default pool gets here: one fewer than the cores, at most {@link MAX_THREADS}. */
function threadsFromEnv(): number | undefined {
  const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.['DISKWORKER_DECOMPRESS_THREADS'];
  return env !== undefined && /^[0-9]+$/.test(env) ? Math.min(Number(env), 16) : undefined;
}

function defaultThreads(): number {
  const env = threadsFromEnv();
  if (env !== undefined) return env;
  const os = nodeBuiltin<typeof import('node:os')>('node:os');
  const cores = os ? os.availableParallelism() : ((globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator?.hardwareConcurrency ?? 1);
  return Math.max(0, Math.min(MAX_THREADS, cores - 1));
}

let defaultPool: WorkerDecompressPool | null | undefined;
/** Node's default pool for deflate clusters (src/wasm/decompress-node-zlib.ts). */
let nativePool: NodeZlibDecompressPool | null | undefined;
/**
 * Batches the default pool leaves inline before its threads start: a short
 * read of compressed data (an `img info`, a small convert) never pays a
 * thread's start-up (tens of ms of CPU, about 10 MB of memory in Node).
 */
const INLINE_BATCHES_FIRST = 32;
let batchesSeen = 0;

function makeDefault(): WorkerDecompressPool | null {
  const threads = defaultThreads();
  if (threads < 1) return null;
  const spawn = nodeThreadSpawn() ?? webWorkerSpawn();
  return spawn ? new WorkerDecompressPool(threads, spawn) : null;
}

/**
 * The pool compressed reads of `kind` use now: the one set with
 * setDecompressPool, else this environment's default (made on first use);
 * undefined when decoding is inline only (no threads, a failed pool, or a
 * codec that is not the WASM module).
 */
export function decompressPoolFor(kind: ClusterCompression): DecompressPool | undefined {
  const chosen = chosenDecompressPool();
  if (chosen !== undefined) return chosen ?? undefined;
  if (!loadedWasm(MODULE_OF[kind])?.compiled) return undefined;
  // zstd decodes a cluster in about 160 µs here (deflate: 370 µs): the hand-over costs a larger
  // share of it, and measured on the shared 2-core machine the pool cost zstd converts up to 30 %
  // more CPU for no gain in time. Pooled only when the thread count is set explicitly.
  if (kind === 'zstd' && threadsFromEnv() === undefined) return undefined;
  // Node inflates on libuv's threads (no thread of ours to start: no wait for the first batches).
  if (kind === 'zlib' && nodeZlibAvailable()) {
    if (nativePool === undefined) {
      const threads = defaultThreads();
      nativePool = threads < 1 ? null : new NodeZlibDecompressPool(threads);
    }
    return nativePool ?? undefined;
  }
  if (defaultPool === undefined) {
    if (++batchesSeen <= INLINE_BATCHES_FIRST) return undefined;
    defaultPool = makeDefault();
  }
  return defaultPool && !defaultPool.failed ? defaultPool : undefined;
}

/** Ends the default pool's threads (a later read starts a new pool). */
export async function closeDefaultDecompressPool(): Promise<void> {
  const p = defaultPool;
  defaultPool = undefined;
  nativePool = undefined;
  batchesSeen = 0;
  await p?.close();
}
