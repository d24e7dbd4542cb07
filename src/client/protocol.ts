/**
 * Wire types shared by the page client and the block worker (types and
 * `as const` objects only: both sides import this file).
 */
import type { IoStats } from '../core/node.js';

/** Storage back ends an image can live on. */
export const StorageKind = {
  OPFS: 'opfs',
  IDB: 'idb',
  MEMORY: 'memory',
  HTTP: 'http',
  BLOB: 'blob',
} as const;
export type StorageKind = (typeof StorageKind)[keyof typeof StorageKind];

/**
 * Image formats the block worker creates: targets of `create`, `convert`,
 * `importFile` and `exportStream`. luks needs a key secret (`dw.secrets.add`)
 * named in the creation options as `key-secret`; the read-only formats are
 * not targets.
 */
export const IMAGE_FORMATS = ['qcow2', 'raw', 'vmdk', 'vpc', 'vhdx', 'vdi', 'qed', 'qcow', 'luks'] as const;
export type ImageFormat = (typeof IMAGE_FORMATS)[number];

/** What `exportStream` writes: the stored file (`file`), the guest view (`raw`) or a converted copy. */
export type ExportFormat = ImageFormat | 'file';

/** Options of `create`. `path` is `opfs:/dir/a.qcow2`, `idb:name` or `memory:name`. */
export interface CreateOptions {
  path: string;
  /** Image format. Default qcow2. */
  format?: ImageFormat;
  /** Virtual size in bytes. Required unless a backing file gives it. */
  size?: number;
  /** Backing file name stored in the image (qcow2), e.g. an http(s) URL. */
  backingFile?: string;
  /** Format of the backing file. */
  backingFormat?: string;
  /** Further creation options (qemu-img -o keys: cluster_size, compat, ...). */
  options?: Record<string, string | number | boolean>;
}

/** Options of `open`. */
export interface OpenOptions {
  path: string;
  /** Image format; probed when absent. */
  format?: string;
  readOnly?: boolean;
  /**
   * Protocols a backing file named in the image may use when it is not on the
   * image's own protocol (e.g. `['http']` for an OPFS overlay over a web image).
   */
  allowBackingProtocols?: string[];
  /**
   * Extra blockdev options merged into the open options, e.g. the key secret
   * of an encrypted image (added with `dw.secrets.add`): `{ 'key-secret': 'sec0' }`
   * for luks, `{ 'encrypt.key-secret': 'sec0' }` for a qcow2 or qcow.
   */
  options?: Record<string, unknown>;
  /**
   * What a failed write does (QEMU werror). Default `report`: the request
   * fails with its BlockError (ENOSPC included). `stop` / `enospc` pause the
   * disk until DiskHandle.resume().
   */
  werror?: 'report' | 'ignore' | 'stop' | 'enospc';
  /** What a failed read does (QEMU rerror). Default `report`. */
  rerror?: 'report' | 'ignore' | 'stop';
}

/** One image found by `list`. */
export interface ImageEntry {
  path: string;
  size: number;
}

/** The answer of `info` (the fields of `qemu-img info --output=json` that matter here). */
export interface ImageInfo {
  path: string;
  format: string;
  virtualSize: number;
  actualSize: number;
  clusterSize?: number;
  dirty?: boolean;
  backingFile?: string;
  backingFormat?: string;
  specific?: { type: string; data: Record<string, unknown> };
}

/** The answer of `check`. */
export interface CheckReport {
  corruptions: number;
  leaks: number;
  checkErrors: number;
  corruptionsFixed: number;
  leaksFixed: number;
  imageEndOffset: number;
  messages: string[];
}

/** Options of `convert` (qemu-img convert). */
export interface ConvertOptions {
  /** Source image (any path or protocol, opened read-only). */
  from: string;
  /** Source format; probed when absent. */
  fromFormat?: string;
  /**
   * Blockdev options of the source, as {@link OpenOptions.options} (e.g. its
   * key secret: `{ 'key-secret': 'sec0' }` for luks).
   */
  fromOptions?: Record<string, unknown>;
  /** Target path; created (replaced) with `format` and the source's size. */
  to: string;
  /** Target format. Default qcow2. */
  format?: ImageFormat;
  /**
   * Creation options of the target (qemu-img -o keys); an encrypted target
   * names its key secret here (`key-secret` for luks, `encrypt.key-secret`
   * with `encrypt.format: 'luks'` for qcow2), and is opened with it for the copy.
   */
  options?: Record<string, string | number | boolean>;
  /**
   * Write the qcow2 target's clusters compressed (qemu-img convert -c), with the
   * image's compression type (zlib unless `options.compression_type` says zstd).
   */
  compress?: boolean;
  /** Protocols the source's backing chain may use. */
  allowBackingProtocols?: string[];
}

/** How a file is brought in by `importFile`. */
export interface ImportOptions {
  /** Target path (`opfs:/...` or `idb:...`). */
  to: string;
  /**
   * `copy`: store the file's bytes unchanged (keeps qcow2 with its backing
   * file name); an image format: convert what the file holds (format probed:
   * vmdk, vpc, vhdx, vdi, qed, qcow, qcow2 or raw) into that format. Default `copy`.
   */
  format?: 'copy' | ImageFormat;
  /** Creation options of a converted target (qemu-img -o keys, a key secret included). */
  options?: Record<string, string | number | boolean>;
  /**
   * Blockdev options the file is opened with for a conversion, as
   * {@link ConvertOptions.fromOptions}: the key secret of an encrypted file
   * (`{ 'key-secret': 'sec0' }` for luks). Not used by `copy`.
   */
  fromOptions?: Record<string, unknown>;
  /**
   * The other files of an image of several files, picked or dropped with it:
   * a vmdk descriptor's extents (twoGbMaxExtentSparse / Flat, monolithicFlat),
   * found by the names the image gives them relative to itself, as on a file
   * system (each File's `name`). A file the image names but that is not here
   * fails with ENOENT naming it. `copy` stores each beside the target, under
   * its own name.
   */
  companions?: File[];
}

/** Progress of a long operation. */
export interface Progress {
  done: number;
  total: number;
}

/** One extent of `map`. */
export interface MapExtent {
  offset: number;
  length: number;
  /** Reads return data (not known zeros). */
  data: boolean;
  /** Reads return zeros. */
  zero: boolean;
  /** Allocated in the top image (not from backing). */
  allocated: boolean;
  compressed: boolean;
}

/** Storage usage and the persistence answer. */
export interface StorageReport {
  usage?: number;
  quota?: number;
  /** navigator.storage.persist()'s answer (asked by the page on the first create), or persisted(). */
  persisted?: boolean;
}

/**
 * Which implementation each hot path uses in the worker (README, "Which implementation
 * runs where"): WASM where it measured faster, else the named alternative.
 */
export interface Implementations {
  /** Inflate of zlib compressed clusters. */
  inflate: string;
  /** Deflate when writing compressed clusters. */
  deflate: string;
  /** zstd compressed clusters ('wasm', or 'unavailable' when the module does not load). */
  zstd: 'wasm' | 'unavailable';
  /** Counting long runs of qcow2 L2 entries. */
  l2: 'wasm' | 'typescript' | 'not loaded';
  /** Long loops over qcow2 refcount blocks (free-run search, increments, check). */
  refcount: 'wasm' | 'typescript' | 'not loaded';
  /** Zero checks of convert / import / export copies. */
  copyZeroCheck: 'wasm' | 'plain JS';
  /** detect-zeroes on write requests. */
  detectZeroes: 'wasm' | 'plain JS' | 'custom';
  /** The dirty-bitmap engine. */
  bitmap: 'wasm' | 'typescript';
  /** AES of encrypted images (luks, qcow2 with encryption). */
  aes: 'wasm' | 'typescript' | 'not loaded';
  /** Serpent of encrypted luks images. */
  serpent: 'wasm' | 'typescript' | 'not loaded';
  /** Twofish of encrypted luks images. */
  twofish: 'wasm' | 'typescript' | 'not loaded';
  /** CAST5 of encrypted luks images. */
  cast5: 'wasm' | 'typescript' | 'not loaded';
}

/** Options of `disk.bitmaps.add` (QEMU's block-dirty-bitmap-add). */
export interface AddBitmapOptions {
  /** Bytes per bit, a power of two from 512 B to 2 GiB; default: the cluster size clamped to 4..64 KiB. */
  granularity?: number;
  /** Stored in the image when the disk closes (qcow2 v3 only); default false. */
  persistent?: boolean;
  /** Added disabled: guest writes do not mark it until enabled; default false. */
  disabled?: boolean;
}

/** One bitmap of a disk, as QEMU's query-block lists it under dirty-bitmaps. */
export interface BitmapInfo {
  name: string;
  granularity: number;
  /** Dirty bytes. */
  count: number;
  /** Whether guest writes mark it (enabled). */
  recording: boolean;
  /** In use by an operation: everything but listing fails with EBUSY. */
  busy: boolean;
  /** Stored in the image on close. */
  persistent: boolean;
  /** Found in use when the image was opened (not stored after its last use): only removal works. */
  inconsistent: boolean;
}

/** A page of dirty extents; `next` is where the following page starts, -1 at the end. */
export interface BitmapExtentsPage {
  extents: Array<[offset: number, length: number]>;
  next: number;
}

/** Disk statistics (the backend's I/O accounting). */
export type DiskStats = IoStats;

/** One internal snapshot of a disk (`disk.snapshots.list()`), as `qemu-img snapshot -l` lists it. */
export interface SnapshotEntry {
  /** Id the image assigned ("1", "2", ...). */
  id: string;
  name: string;
  /** Bytes of VM state kept with it (0: disk only). */
  vmStateSize: number;
  /** Creation time, milliseconds since the epoch. */
  date: number;
  /** The guest clock at creation, nanoseconds (0 from the page). */
  vmClockNsec: number;
  /** The disk size it holds. */
  diskSize?: number;
  /** The guest's instruction count at creation (absent when the image stores none: QEMU's -1). */
  icount?: number;
}
