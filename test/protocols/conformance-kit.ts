/**
 * The pieces the protocol conformance cases are built from: what a back end
 * declares about itself (a {@link Target}), a byte model of what an image
 * should hold, and assertions that work without a test framework (the cases
 * run under Vitest in Node and inside a browser worker).
 */
import { BlockBackend } from '../../src/core/backend.js';
import { BlockError } from '../../src/core/errors.js';
import type { BlockGraph } from '../../src/core/graph.js';

/** An image a case works on. */
export interface Image {
  /** blockdev-add style options that open the protocol node. */
  spec: Record<string, unknown>;
  /** Its length in bytes. */
  size: number;
  /** Its content when the case starts (zeros for new images, the fixture for read-only ones). */
  initial: Uint8Array;
}

/** A qcow2 image for the format workload over a back end. */
export interface Qcow2Place {
  /**
   * Writable back ends: the filename to create the image at. Read-only ones: the
   * filename of a fixture image and its guest content.
   */
  filename: string;
  fixture?: { size: number; content: Uint8Array };
}

/** Arms an injected failure of the next modifying request on an image. */
export interface FaultInjector {
  /** Which request the fault hits: any write, or only one that grows the image (a quota). */
  hits: 'write' | 'grow';
  arm(img: Image): void | Promise<void>;
  disarm(img: Image): void | Promise<void>;
}

/**
 * A back end under test and its documented behaviour. Where a case cannot hold as
 * written, the target says what holds instead (and why) rather than skipping it.
 */
export interface Target {
  name: string;
  graph: BlockGraph;
  /** 'stores' keeps what is written; 'drops' (null-co) reads zeros whatever was written; 'read-only' refuses writes. */
  data: 'stores' | 'drops' | 'read-only';
  /**
   * true: a second read-write open gets EBUSY. An object: it gets this errno
   * and message words instead (node-file: QEMU's lock error). A string: why
   * it does not lock.
   */
  locks: true | { code: string; words: string[] } | string;
  /** Whether block status reports zeroed / discarded ranges as ZERO (holes); otherwise every byte is DATA. */
  sparse: boolean;
  /** true: block status says DATA where data was written. A string: why it reports no data (null-co, as QEMU's). */
  reportsData?: true | string;
  /** true: truncate grows and shrinks. A string: why it cannot (truncate then fails with ENOTSUP). */
  resizes?: true | string;
  /** getAllocatedFileSize: counts stored bytes ('grows'), returns the length ('logical'), always 0 ('zero', null-co as qemu-img info shows it), or is missing ('none'). */
  allocated: 'grows' | 'logical' | 'zero' | 'none';
  /** How ENOSPC / EIO are injected, or why they cannot be. */
  faults: { ENOSPC: FaultInjector | string; EIO: FaultInjector | string };
  /**
   * The length counts in whole 512-byte sectors, as QEMU's block layer counts
   * it: an image of odd length shows rounded up, the tail reading as zeros
   * (node-file, as file-posix under QEMU).
   */
  sectorLength?: boolean;
  /** A new image for one case (writable: zero-filled, `IMAGE_SIZE` bytes; read-only: the fixture). */
  fresh(id: string): Promise<Image>;
  /** Where the qcow2 workload puts its image (or, read-only, which fixture it reads). */
  qcow2(id: string): Promise<Qcow2Place>;
}

/** Length of new images: not a multiple of 512, so the tail is unaligned. */
export const IMAGE_SIZE = 512 * 1024 + 1000;

/** Options every image is opened with: discard reaches the driver, zero buffers become zero writes. */
export const NODE_OPTIONS = { discard: 'unmap', 'detect-zeroes': 'unmap' } as const;

/** Deterministic bytes (never all zero for length > 1). */
export function pattern(seed: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff || 1;
  }
  return out;
}

/** What an image should hold, following the target's data behaviour. */
export class Model {
  bytes: Uint8Array;
  constructor(
    initial: Uint8Array,
    private readonly drops: boolean,
    /** See {@link Target.sectorLength}. */
    readonly sectorLength = false,
  ) {
    this.bytes = drops ? new Uint8Array(initial.length) : initial.slice();
  }
  /** The length the image should show. */
  get length(): number {
    return this.sectorLength ? Math.ceil(this.bytes.length / 512) * 512 : this.bytes.length;
  }
  write(offset: number, data: Uint8Array): void {
    if (!this.drops) this.bytes.set(data, offset);
  }
  zero(offset: number, bytes: number): void {
    this.bytes.fill(0, offset, offset + bytes);
  }
  truncate(size: number): void {
    const next = new Uint8Array(size);
    if (!this.drops) next.set(this.bytes.subarray(0, Math.min(size, this.bytes.length)));
    this.bytes = next;
  }
}

/** The length an image of `bytes` shows on the target (see {@link Target.sectorLength}). */
export function shownLength(t: Target, bytes: number): number {
  return t.sectorLength ? Math.ceil(bytes / 512) * 512 : bytes;
}

/** A failed expectation. */
export class CaseFailure extends Error {}

export function check(cond: boolean, what: string): asserts cond {
  if (!cond) throw new CaseFailure(what);
}

/** Throws unless `bb` reads exactly `model` in `[offset, offset+length)`. */
export async function expectContent(bb: BlockBackend, model: Model, offset = 0, length = model.bytes.length - offset): Promise<void> {
  check(bb.length === model.length, `length is ${bb.length}, expected ${model.length}`);
  const step = 256 * 1024;
  for (let pos = offset; pos < offset + length; pos += step) {
    const n = Math.min(step, offset + length - pos);
    const got = await bb.read(pos, n);
    const want = model.bytes.subarray(pos, pos + n);
    for (let i = 0; i < n; i++) {
      if (got[i] !== want[i]) throw new CaseFailure(`byte at offset ${pos + i} is ${got[i]}, expected ${want[i]}`);
    }
  }
}

/**
 * Runs `fn`, which must fail with a BlockError whose code is one of `codes`, and whose
 * message contains every string of `mentions`. Returns the error.
 */
export async function expectError(fn: () => Promise<unknown>, codes: readonly string[], mentions: readonly string[], what: string): Promise<BlockError> {
  let err: unknown;
  try {
    await fn();
  } catch (e) {
    err = e;
  }
  if (err === undefined) throw new CaseFailure(`${what}: succeeded, expected ${codes.join(' / ')}`);
  if (!(err instanceof BlockError)) throw new CaseFailure(`${what}: threw ${String(err)}, not a BlockError`);
  check(codes.includes(err.code), `${what}: code ${err.code} (${err.message}), expected ${codes.join(' / ')}`);
  for (const m of mentions) check(err.message.includes(m), `${what}: message '${err.message}' does not name '${m}'`);
  return err;
}

/** Codes a refused write on a read-only image may carry (QEMU: EACCES from the permission check, EROFS / EPERM from drivers). */
export const READ_ONLY_CODES = ['EACCES', 'EPERM', 'EROFS'] as const;

/** Opens an image read-write (or read-only) through a BlockBackend. */
export function openImage(t: Target, img: Image, readOnly = t.data === 'read-only'): Promise<BlockBackend> {
  return BlockBackend.open(t.graph, { ...img.spec, ...NODE_OPTIONS }, { readOnly });
}

/** Closes, ignoring a second close. */
export async function closeAll(...bbs: Array<BlockBackend | undefined>): Promise<void> {
  for (const bb of bbs) await bb?.close();
}
