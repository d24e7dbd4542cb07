/**
 * Refcount entries and the loops over one refcount block: reading and writing
 * entries of every width (1..64 bits), the free-run search, incrementing a
 * range, comparing stored with counted refcounts, and the size of refcount
 * structures for a number of clusters. The long loops run in WASM where that
 * pays (src/wasm/refcount.ts), with the same results in TypeScript.
 */
import { loadRefcount, loadRefcountSync, RefcountTs, type CountsScan, type WasmRefcount } from '../../wasm/refcount.js';

// The WASM refcount module (src/wasm/refcount.ts) runs the loops over many entries of a
// block: the free-run search, incrementing ranges, and check's comparison of counted with
// stored refcounts. Each call copies only the entries it reads into module memory; short
// work stays in TypeScript, where that copy and the call cost more than they save.
// The thresholds come from bench/qcow2/refcount.ts (WASM / TypeScript rate in the same
// run; figures in README):
// - one entry (get / set): TypeScript always; a call into WASM loses even with the block
//   already in module memory;
// - free-run search: TypeScript for the first FIND_TS_ENTRIES entries (the usual case: the
//   hint is at a free cluster), then WASM in growing windows, which wins on long used runs
//   and loses when the run starts right after a short probe;
// - incrementing a range: WASM from ADD_WASM_ENTRIES (below it the call costs more);
// - comparing with counted references: WASM from COMPARE_WASM_ENTRIES.
// When the module cannot load, everything runs in TypeScript with the same results.

/** Entries the free-run search scans in TypeScript before it hands the block to WASM. */
const FIND_TS_ENTRIES = 512;
/** Entries the first WASM window of the free-run search covers (it doubles each time). */
const FIND_WASM_WINDOW = 4096;
/** Ranges of at least this many entries are added to in WASM. */
const ADD_WASM_ENTRIES = 256;
/** Ranges of at least this many entries are compared with counted references in WASM. */
const COMPARE_WASM_ENTRIES = 256;

/** undefined: not loaded yet; null: cannot load here (TypeScript only). */
let wasmModule: WasmRefcount | null | undefined;
let wasmLoading: Promise<WasmRefcount | null> | undefined;
let wasmEnabled = true;

/**
 * Loads the WASM refcount module once (synchronously where the loader can: Node, or bytes
 * given to setWasmSource; otherwise by fetch). Resolves to null when it cannot load, and
 * the driver keeps to TypeScript.
 */
export function initRefcountWasm(): Promise<WasmRefcount | null> {
  if (wasmModule !== undefined) return Promise.resolve(wasmModule);
  try {
    wasmModule = loadRefcountSync();
    return Promise.resolve(wasmModule);
  } catch {
    // No synchronous load here (a browser): fetch it.
  }
  wasmLoading ??= loadRefcount().then(
    (m) => (wasmModule = m),
    () => (wasmModule = null),
  );
  return wasmLoading;
}

/**
 * Switches the WASM refcount paths off (TypeScript only) or back on, for tests and
 * benchmarks that compare the two on the same image.
 */
export function setRefcountWasmEnabled(on: boolean): void {
  wasmEnabled = on;
}

/** Whether the long refcount loops run in WASM here ('not loaded' before the first use). */
export function refcountWasmState(): 'wasm' | 'typescript' | 'not loaded' {
  if (wasmModule === undefined) return 'not loaded';
  return refcountWasm() ? 'wasm' : 'typescript';
}

/** The module when it is loaded and enabled. */
function refcountWasm(): WasmRefcount | null {
  return wasmEnabled ? (wasmModule ?? null) : null;
}

/** Loads the module on first use (one await; later calls return at once). */
export async function readyRefcountWasm(): Promise<WasmRefcount | null> {
  if (wasmModule === undefined) await initRefcountWasm();
  return refcountWasm();
}

/** Reads entry `idx` of a refcount block with `order` (width 1 << order bits). */
export function getRefcount(buf: Uint8Array, idx: number, order: number): number {
  switch (order) {
    case 4:
      return (buf[idx * 2]! << 8) | buf[idx * 2 + 1]!;
    case 3:
      return buf[idx]!;
    case 5:
      return ((buf[idx * 4]! << 24) >>> 0) + ((buf[idx * 4 + 1]! << 16) | (buf[idx * 4 + 2]! << 8) | buf[idx * 4 + 3]!);
    case 6: {
      const o = idx * 8;
      const hi = ((buf[o]! << 24) >>> 0) + ((buf[o + 1]! << 16) | (buf[o + 2]! << 8) | buf[o + 3]!);
      const lo = ((buf[o + 4]! << 24) >>> 0) + ((buf[o + 5]! << 16) | (buf[o + 6]! << 8) | buf[o + 7]!);
      return hi * 4294967296 + lo;
    }
    default: {
      const bits = 1 << order;
      const bit = idx * bits;
      return (buf[bit >> 3]! >> (bit & 7)) & ((1 << bits) - 1);
    }
  }
}

/**
 * Entry `idx` exactly: a 64-bit refcount may exceed 2^53, where
 * {@link getRefcount}'s number is only close (messages and repairs need it exact).
 */
export function getRefcountExact(buf: Uint8Array, idx: number, order: number): bigint {
  if (order !== 6) return BigInt(getRefcount(buf, idx, order));
  return new DataView(buf.buffer, buf.byteOffset, buf.byteLength).getBigUint64(idx * 8);
}

/** Writes entry `idx` of a refcount block. */
export function setRefcount(buf: Uint8Array, idx: number, order: number, value: number): void {
  switch (order) {
    case 4:
      buf[idx * 2] = value >>> 8;
      buf[idx * 2 + 1] = value & 0xff;
      return;
    case 3:
      buf[idx] = value;
      return;
    case 5:
      // Byte by byte: a DataView per entry costs more than the write (walks over every cluster).
      buf[idx * 4] = value >>> 24;
      buf[idx * 4 + 1] = (value >>> 16) & 0xff;
      buf[idx * 4 + 2] = (value >>> 8) & 0xff;
      buf[idx * 4 + 3] = value & 0xff;
      return;
    case 6: {
      const dv = new DataView(buf.buffer, buf.byteOffset);
      dv.setUint32(idx * 8, Math.floor(value / 4294967296));
      dv.setUint32(idx * 8 + 4, value >>> 0);
      return;
    }
    default: {
      const bits = 1 << order;
      const bit = idx * bits;
      const mask = ((1 << bits) - 1) << (bit & 7);
      const b = bit >> 3;
      buf[b] = (buf[b]! & ~mask) | ((value << (bit & 7)) & mask);
    }
  }
}

/** Largest refcount of a width. */
export function maxRefcount(order: number): number {
  return order === 6 ? Number.MAX_SAFE_INTEGER : 2 ** (1 << order) - 1;
}

/** A free run in a block: its first entry and length (shorter than asked only when it reaches the block's end). */
export interface BlockRun {
  index: number;
  length: number;
}

/**
 * From entry `start` of a refcount block of `perBlock` entries, the first run of `n` free
 * entries, or the first free run reaching the end of the block; index perBlock when none.
 * WASM takes over after FIND_TS_ENTRIES entries.
 */
export function findFreeInBlock(buf: Uint8Array, order: number, perBlock: number, start: number, n: number): BlockRun {
  const w = refcountWasm();
  const tsEnd = w ? Math.min(perBlock, start + FIND_TS_ENTRIES) : perBlock;
  let run = 0;
  let runStart = start;
  let c = start;
  for (; c < tsEnd; c++) {
    if (getRefcount(buf, c, order) === 0) {
      if (run === 0) runStart = c;
      if (++run === n) return { index: runStart, length: n };
    } else {
      run = 0;
    }
  }
  if (c === perBlock) return run > 0 ? { index: runStart, length: run } : { index: perBlock, length: 0 };
  // WASM over growing windows: each call copies only the entries it may read, so a run
  // found soon after the probe does not pay for copying the rest of the block. A run in
  // progress is searched again from its start (none of its entries is used).
  let from = run > 0 ? runStart : c;
  for (let win = FIND_WASM_WINDOW; ; win *= 2) {
    const end = Math.min(perBlock, Math.ceil((from + win) / 64) * 64);
    const r = w!.findFree(buf, order, from, n, end);
    if (end === perBlock || r.length === n) return r;
    // Nothing free before `end`, or a run that reaches it: go on from there.
    from = r.length === 0 ? end : r.index;
  }
}

/**
 * Stored refcounts of entries [start, end) of a block against counted references
 * (`counts[k]` for entry start + k): the mismatching entries go to `out` (see
 * RefcountOps.compareCounts in src/wasm/refcount.ts). WASM for long ranges.
 */
export function compareBlockCounts(buf: Uint8Array, order: number, start: number, end: number, counts: Float64Array, out: Uint32Array): CountsScan {
  const w = end - start >= COMPARE_WASM_ENTRIES ? refcountWasm() : null;
  return (w ?? RefcountTs).compareCounts(buf, order, start, end, counts, out);
}

/**
 * Adds 1 to entries [start, start + count) of a block; nothing changes when one of them
 * is at the maximum already, and the index of the first such entry is returned (-1 when
 * all were incremented). WASM for long ranges.
 */
export function incrementRange(buf: Uint8Array, order: number, start: number, count: number): number {
  // 64-bit entries stay in TypeScript: its maximum is 2^53 - 1, the module's 2^64 - 1.
  const w = count >= ADD_WASM_ENTRIES && order < 6 ? refcountWasm() : null;
  if (w) return w.tryAddRange(buf, order, start, count, 1);
  const max = maxRefcount(order);
  const end = start + count;
  for (let i = start; i < end; i++) if (getRefcount(buf, i, order) >= max) return i;
  for (let i = start; i < end; i++) setRefcount(buf, i, order, getRefcount(buf, i, order) + 1);
  return -1;
}

/**
 * Refcount blocks needed to count `clusters` clusters plus the refcount
 * structures themselves (QEMU's qcow2_refcount_metadata_size: the fixed point);
 * `generous` leaves room for a table half again as large.
 */
export function refcountBlocksFor(clusters: number, cs: number, order: number, generous: boolean): number {
  const perTable = cs / 8;
  const perBlock = (cs * 8) >> order;
  let table = 0;
  let blocks = 0;
  let n = 0;
  let last: number;
  do {
    last = n;
    blocks = Math.ceil((clusters + table + blocks) / perBlock);
    table = Math.ceil(blocks / perTable);
    n = clusters + blocks + table;
    if (n === last && generous) {
      clusters += Math.ceil(table / 2);
      n = 0;
      generous = false;
    }
  } while (n !== last);
  return blocks;
}
