/**
 * Loads the AssemblyScript modules (src/wasm/bin/<name>.wasm) — the same .wasm files in
 * Node and in the browser worker — and turns their integer status codes into BlockErrors.
 *
 * - Node: the bytes are read with node:fs, imported dynamically (or obtained through
 *   `process.getBuiltinModule` for the synchronous path) so a browser bundle never pulls it.
 * - Browsers: `fetch` + `WebAssembly.instantiateStreaming` (falling back to
 *   `instantiate` when the server does not send `application/wasm`).
 *
 * Instances are cached per module (and per variant). Each module owns its memory; the
 * typed wrappers keep their working buffers there and view them without copying.
 */
import { BlockError, type ErrorContext } from '../core/errors.js';

/** The AssemblyScript modules that exist. */
export type WasmModuleName = 'zero' | 'l2' | 'refcount' | 'bitmap' | 'deflate' | 'zstd' | 'aes' | 'serpent' | 'twofish' | 'cast5';

/** Release (optimised, no asserts) or debug (asserts, names, abort reported). */
export type WasmVariant = 'release' | 'debug';

/**
 * Status codes shared by every module (assembly/shared/common.ts keeps the same numbers).
 * Non-negative results are successes (a count, a length, an index).
 */
export const WasmStatus = {
  /** Bad arguments from the caller (a bug on our side or a bad request). */
  EINVAL: -1,
  /** The input is corrupt (a bad stream, an invalid entry). */
  CORRUPT: -2,
  /** The output would exceed the declared size. */
  OVERFLOW: -3,
  /** The input ended before the stream did. */
  TRUNCATED: -4,
  /** A value does not fit (refcount overflow / underflow). */
  RANGE: -5,
  /** The module could not get memory. */
  NOMEM: -6,
  /** A feature of the input is not supported (e.g. a zstd dictionary). */
  NOTSUP: -7,
  /** A checksum in the input does not match. */
  CHECKSUM: -8,
} as const;

const STATUS_TEXT: Record<number, string> = {
  [-1]: 'invalid argument',
  [-2]: 'corrupt data',
  [-3]: 'output larger than the declared size',
  [-4]: 'truncated data',
  [-5]: 'value out of range',
  [-6]: 'out of memory',
  [-7]: 'unsupported feature',
  [-8]: 'checksum mismatch',
};

/** Text of a status code. */
export function statusText(status: number): string {
  return STATUS_TEXT[status] ?? `unknown status ${status}`;
}

/**
 * Turns a negative status into a BlockError: EINVAL for bad arguments, ENOTSUP for
 * unsupported features, EIO for everything the data is to blame for.
 * `what` names the operation ("inflate of compressed cluster"), `at` the offending offset.
 */
export function statusError(status: number, what: string, context: ErrorContext = {}, at?: number): BlockError {
  const code = status === WasmStatus.EINVAL ? 'EINVAL' : status === WasmStatus.NOTSUP ? 'ENOTSUP' : 'EIO';
  const where = at !== undefined && at >= 0 ? ` at offset ${at} (0x${at.toString(16)})` : '';
  const off = context.offset !== undefined ? ` (data at 0x${context.offset.toString(16)})` : '';
  return new BlockError(code, `${what}: ${statusText(status)}${where}${off}`, context);
}

/** Wraps a trap (RuntimeError) or any other exception thrown by a WASM call. */
export function trapError(e: unknown, what: string, context: ErrorContext = {}): BlockError {
  if (e instanceof BlockError) return e;
  const msg = e instanceof Error ? e.message : String(e);
  return new BlockError('EIO', `${what}: WASM module failed: ${msg}`, context, { cause: e });
}

/** Exports every module has. */
export interface WasmBaseExports {
  memory: WebAssembly.Memory;
  alloc(size: number): number;
}

/** A module instance together with its memory. */
export class WasmModule<E extends WasmBaseExports = WasmBaseExports> {
  readonly name: WasmModuleName;
  readonly exports: E;
  readonly memory: WebAssembly.Memory;
  /** The compiled module, when known (worker threads instantiate their own copy from it). */
  readonly compiled: WebAssembly.Module | undefined;
  private buf: ArrayBuffer;
  private u8view: Uint8Array;

  constructor(name: WasmModuleName, instance: WebAssembly.Instance, compiled?: WebAssembly.Module) {
    this.name = name;
    this.compiled = compiled;
    this.exports = instance.exports as unknown as E;
    this.memory = this.exports.memory;
    this.buf = this.memory.buffer;
    this.u8view = new Uint8Array(this.buf);
  }

  /** A byte view of the whole memory, refreshed when the memory has grown. */
  get u8(): Uint8Array {
    if (this.buf !== this.memory.buffer) {
      this.buf = this.memory.buffer;
      this.u8view = new Uint8Array(this.buf);
    }
    return this.u8view;
  }

  /** A view of `len` bytes at `ptr` (valid until the memory grows). */
  bytes(ptr: number, len: number): Uint8Array {
    return new Uint8Array(this.memory.buffer, ptr, len);
  }

  /** Allocates `size` bytes of module memory; throws ENOSPC-free EIO when it cannot. */
  alloc(size: number): number {
    const p = this.exports.alloc(size) >>> 0;
    if (p === 0) throw new BlockError('EIO', `WASM module ${this.name}: cannot allocate ${size} bytes`);
    return p;
  }
}

/** Where the .wasm bytes of a module come from, when the default URL does not work. */
export type WasmSource = URL | string | ArrayBuffer | Uint8Array | WebAssembly.Module;

const sources = new Map<string, WasmSource>();
const instances = new Map<string, Promise<WasmModule<any>>>();
const syncInstances = new Map<string, WasmModule<any>>();

/**
 * Overrides where a module is loaded from (a URL for bundlers that rename assets, or the
 * bytes themselves). Call before the first load of that module.
 */
export function setWasmSource(name: WasmModuleName, source: WasmSource, variant: WasmVariant = 'release'): void {
  sources.set(key(name, variant), source);
}

function key(name: WasmModuleName, variant: WasmVariant): string {
  return variant === 'debug' ? `${name}.debug` : name;
}

/** The default location of a module: next to this file, in bin/. */
export function wasmUrl(name: WasmModuleName, variant: WasmVariant = 'release'): URL {
  return new URL(`./bin/${key(name, variant)}.wasm`, import.meta.url);
}

function imports(getModule: () => WasmModule | undefined): WebAssembly.Imports {
  return {
    env: {
      // Only debug builds import abort (release builds compile it out and trap instead).
      abort(msgPtr: number, filePtr: number, line: number, column: number): never {
        const m = getModule();
        const read = (p: number): string => {
          if (!m || !p) return '?';
          const u8 = m.u8;
          const len = new Uint32Array(u8.buffer, p - 4, 1)[0]! >>> 1;
          let s = '';
          const u16 = new Uint16Array(u8.buffer, p, len);
          for (let i = 0; i < len; i++) s += String.fromCharCode(u16[i]!);
          return s;
        };
        throw new BlockError('EIO', `WASM abort: ${read(msgPtr)} at ${read(filePtr)}:${line}:${column}`);
      },
    },
  };
}

function isNode(): boolean {
  const p = (globalThis as { process?: { versions?: { node?: string } } }).process;
  return typeof p?.versions?.node === 'string';
}

async function readBytes(url: URL): Promise<Uint8Array> {
  if (url.protocol === 'file:' && isNode()) {
    const fs = await import(/* @vite-ignore */ 'node:fs/promises' as string) as typeof import('node:fs/promises');
    const { fileURLToPath } = await import(/* @vite-ignore */ 'node:url' as string) as typeof import('node:url');
    return new Uint8Array(await fs.readFile(fileURLToPath(url)));
  }
  const res = await fetch(url);
  if (!res.ok) throw new BlockError('ENOENT', `cannot load WASM module ${url.href}: HTTP ${res.status}`);
  return new Uint8Array(await res.arrayBuffer());
}

async function instantiate(name: WasmModuleName, variant: WasmVariant): Promise<WasmModule<any>> {
  const src = sources.get(key(name, variant)) ?? wasmUrl(name, variant);
  let mod: WasmModule | undefined;
  const imp = imports(() => mod);
  let instance: WebAssembly.Instance;
  let compiled: WebAssembly.Module | undefined;
  if (src instanceof WebAssembly.Module) {
    compiled = src;
    instance = await WebAssembly.instantiate(src, imp);
  } else if (src instanceof ArrayBuffer || src instanceof Uint8Array) {
    ({ instance, module: compiled } = await WebAssembly.instantiate(src as BufferSource, imp));
  } else {
    const url = typeof src === 'string' ? new URL(src, import.meta.url) : src;
    if (url.protocol !== 'file:' && typeof WebAssembly.instantiateStreaming === 'function') {
      const res = await fetch(url);
      if (!res.ok) throw new BlockError('ENOENT', `cannot load WASM module ${url.href}: HTTP ${res.status}`);
      try {
        ({ instance, module: compiled } = await WebAssembly.instantiateStreaming(res.clone(), imp));
      } catch {
        // Wrong MIME type or a streaming failure: compile from the bytes instead.
        ({ instance, module: compiled } = await WebAssembly.instantiate(await res.arrayBuffer(), imp));
      }
    } else {
      ({ instance, module: compiled } = await WebAssembly.instantiate(await readBytes(url) as BufferSource, imp));
    }
  }
  mod = new WasmModule(name, instance, compiled);
  return mod;
}

/**
 * Loads (once) and returns a module. Failures reject with a BlockError (ENOENT when the
 * file is missing, EIO otherwise); a failed load is not cached, so it can be retried.
 */
export function loadWasm<E extends WasmBaseExports>(name: WasmModuleName, variant: WasmVariant = 'release'): Promise<WasmModule<E>> {
  const k = key(name, variant);
  const done = syncInstances.get(k);
  if (done) return Promise.resolve(done as WasmModule<E>);
  let p = instances.get(k);
  if (!p) {
    p = instantiate(name, variant).then(
      (m) => {
        syncInstances.set(k, m);
        return m;
      },
      (e: unknown) => {
        instances.delete(k);
        throw e instanceof BlockError ? e : new BlockError('EIO', `cannot load WASM module ${k}: ${e instanceof Error ? e.message : String(e)}`, {}, { cause: e });
      },
    );
    instances.set(k, p);
  }
  return p as Promise<WasmModule<E>>;
}

/** The module if it has been loaded already, else undefined (never loads). */
export function loadedWasm<E extends WasmBaseExports>(name: WasmModuleName, variant: WasmVariant = 'release'): WasmModule<E> | undefined {
  return syncInstances.get(key(name, variant)) as WasmModule<E> | undefined;
}

/**
 * Loads a module synchronously. Works in Node (reads the file with node:fs obtained via
 * `process.getBuiltinModule`) and anywhere the source was given as bytes or a compiled
 * module through {@link setWasmSource}. Throws a BlockError elsewhere.
 */
export function loadWasmSync<E extends WasmBaseExports>(name: WasmModuleName, variant: WasmVariant = 'release'): WasmModule<E> {
  const k = key(name, variant);
  const done = syncInstances.get(k);
  if (done) return done as WasmModule<E>;
  const src = sources.get(k) ?? wasmUrl(name, variant);
  let compiled: WebAssembly.Module;
  try {
    if (src instanceof WebAssembly.Module) compiled = src;
    else if (src instanceof ArrayBuffer || src instanceof Uint8Array) compiled = new WebAssembly.Module(src as BufferSource);
    else {
      const url = typeof src === 'string' ? new URL(src, import.meta.url) : src;
      const getBuiltin = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process?.getBuiltinModule;
      if (url.protocol !== 'file:' || typeof getBuiltin !== 'function') {
        throw new BlockError('ENOTSUP', `synchronous load of WASM module ${k} needs Node or setWasmSource() bytes`);
      }
      const fs = getBuiltin('node:fs') as typeof import('node:fs');
      const nodeUrl = getBuiltin('node:url') as typeof import('node:url');
      compiled = new WebAssembly.Module(fs.readFileSync(nodeUrl.fileURLToPath(url)) as BufferSource);
    }
  } catch (e) {
    if (e instanceof BlockError) throw e;
    const code = (e as { code?: string }).code === 'ENOENT' ? 'ENOENT' : 'EIO';
    throw new BlockError(code, `cannot load WASM module ${k}: ${e instanceof Error ? e.message : String(e)}`, {}, { cause: e });
  }
  let mod: WasmModule | undefined;
  const instance = new WebAssembly.Instance(compiled, imports(() => mod));
  mod = new WasmModule(name, instance, compiled);
  syncInstances.set(k, mod);
  instances.set(k, Promise.resolve(mod));
  return mod as WasmModule<E>;
}

/** Is WebAssembly SIMD available in this engine? */
export function hasSimd(): boolean {
  // (module (func (result v128) v128.const i32x4 0 0 0 0))
  const bytes = new Uint8Array([
    0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 22, 1, 20, 0, 253, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 11,
  ]);
  try {
    return WebAssembly.validate(bytes);
  } catch {
    return false;
  }
}
