/**
 * qcow2 on-disk constants: every field offset, flag bit and limit the driver
 * uses, with what it means. All numbers in a qcow2 file are big endian.
 * Reference: qemu/qemu docs/interop/qcow2.txt.
 */

/** "QFI\xfb" at byte 0. */
export const QCOW2_MAGIC = 0x514649fb;

// ---------------------------------------------------------------------------
// Header fields (byte offsets)

export const HDR = {
  /** u32 magic. */
  MAGIC: 0,
  /** u32 version: 2 or 3. */
  VERSION: 4,
  /** u64 offset of the backing file name (not NUL terminated), 0 = none. */
  BACKING_FILE_OFFSET: 8,
  /** u32 length of the backing file name, at most 1023. */
  BACKING_FILE_SIZE: 16,
  /** u32 log2 of the cluster size, 9..21. */
  CLUSTER_BITS: 20,
  /** u64 virtual disk size in bytes. */
  SIZE: 24,
  /** u32 encryption: 0 none, 1 AES, 2 LUKS (we support 0 only). */
  CRYPT_METHOD: 32,
  /** u32 number of entries of the active L1 table. */
  L1_SIZE: 36,
  /** u64 offset of the active L1 table, cluster aligned. */
  L1_TABLE_OFFSET: 40,
  /** u64 offset of the refcount table, cluster aligned. */
  REFCOUNT_TABLE_OFFSET: 48,
  /** u32 clusters occupied by the refcount table. */
  REFCOUNT_TABLE_CLUSTERS: 56,
  /** u32 number of internal snapshots. */
  NB_SNAPSHOTS: 60,
  /** u64 offset of the snapshot table, cluster aligned. */
  SNAPSHOTS_OFFSET: 64,
  // Version 3 only:
  /** u64 incompatible feature bits ({@link INCOMPAT}). */
  INCOMPATIBLE_FEATURES: 72,
  /** u64 compatible feature bits ({@link COMPAT}). */
  COMPATIBLE_FEATURES: 80,
  /** u64 autoclear feature bits ({@link AUTOCLEAR}). */
  AUTOCLEAR_FEATURES: 88,
  /** u32 refcount_order: refcount width is 1 << order bits (0..6). v2: always 4. */
  REFCOUNT_ORDER: 96,
  /** u32 header length: v2 = 72, v3 >= 104 and a multiple of 8. */
  HEADER_LENGTH: 100,
  /** u8 compression type (0 zlib, 1 zstd), present when header_length > 104. */
  COMPRESSION_TYPE: 104,
} as const;

/** Length of a version 2 header. */
export const V2_HEADER_LENGTH = 72;
/** Shortest version 3 header (through header_length). */
export const V3_MIN_HEADER_LENGTH = 104;
/** Length of the version 3 header we write (with compression_type and padding). */
export const V3_HEADER_LENGTH = 112;

/** Incompatible feature bits: an unknown one refuses to open. */
export const INCOMPAT = {
  /** Refcounts may be inconsistent (lazy refcounts in use); rebuild before writing. */
  DIRTY: 1n << 0n,
  /** Some structure may be corrupt; no writes except to repair. */
  CORRUPT: 1n << 1n,
  /** Guest data lives in an external data file (not refcounted, offset = guest offset). */
  DATA_FILE: 1n << 2n,
  /** compression_type is present and non-zero. */
  COMPRESSION: 1n << 3n,
  /** L2 entries are 128 bits with 32 subclusters each. */
  EXTL2: 1n << 4n,
} as const;
export const INCOMPAT_KNOWN = INCOMPAT.DIRTY | INCOMPAT.CORRUPT | INCOMPAT.DATA_FILE | INCOMPAT.COMPRESSION | INCOMPAT.EXTL2;

/** Compatible feature bits: unknown ones are ignored (and kept). */
export const COMPAT = {
  /** Lazy refcounts: refcount updates may be postponed while the dirty bit is set. */
  LAZY_REFCOUNTS: 1n << 0n,
} as const;

/** Autoclear feature bits: a writer that does not know one clears it. */
export const AUTOCLEAR = {
  /** The bitmaps extension is consistent. */
  BITMAPS: 1n << 0n,
  /** The external data file is a consistent raw image on its own. */
  DATA_FILE_RAW: 1n << 1n,
} as const;
export const AUTOCLEAR_KNOWN = AUTOCLEAR.BITMAPS | AUTOCLEAR.DATA_FILE_RAW;

/** Compression types (header byte 104). */
export const COMPRESSION_TYPE = { ZLIB: 0, ZSTD: 1 } as const;
export const COMPRESSION_NAMES = ['zlib', 'zstd'] as const;

// ---------------------------------------------------------------------------
// Header extensions: u32 type, u32 length, data, padding to 8 bytes.

export const EXT = {
  /** End of the extension area. */
  END: 0x00000000,
  /** Backing file format name (string, not NUL terminated). */
  BACKING_FORMAT: 0xe2792aca,
  /** Feature name table: 48-byte entries {u8 type, u8 bit, char name[46]}. */
  FEATURE_TABLE: 0x6803f857,
  /** Bitmaps: u32 nb_bitmaps, u32 reserved, u64 directory size, u64 directory offset. */
  BITMAPS: 0x23852875,
  /** Full disk encryption header pointer (unsupported: encryption). */
  CRYPTO: 0x0537be77,
  /** External data file name (string). */
  DATA_FILE: 0x44415441,
} as const;

/** Size of one feature name table entry. */
export const FEATURE_ENTRY_SIZE = 48;
/** Feature types in the feature name table. */
export const FEATURE_TYPE = { INCOMPAT: 0, COMPAT: 1, AUTOCLEAR: 2 } as const;

/** Names we write in the feature name table (as QEMU does). */
export const FEATURE_NAMES: ReadonlyArray<[type: number, bit: number, name: string]> = [
  [0, 0, 'dirty bit'],
  [0, 1, 'corrupt bit'],
  [0, 2, 'external data file'],
  [0, 3, 'compression type'],
  [0, 4, 'extended L2 entries'],
  [1, 0, 'lazy refcounts'],
  [2, 0, 'bitmaps'],
  [2, 1, 'raw external data'],
];

// ---------------------------------------------------------------------------
// L1 / L2 entries

/** L1 entry bits 9..55: offset of the L2 table (cluster aligned). */
export const L1E_OFFSET_MASK = 0x00fffffffffffe00n;
/** Bits that must be zero in an L1 entry (1..8, 56..62; bit 0 is tolerated). */
export const L1E_RESERVED_MASK = 0x7f000000000001fen;
/** Entry bit 63: refcount is exactly 1, may be written in place (L1, L2). */
export const OFLAG_COPIED = 1n << 63n;
/** L2 entry bit 62: the cluster is compressed. */
export const OFLAG_COMPRESSED = 1n << 62n;
/** L2 entry bit 0 (standard L2 only, v3): the cluster reads as zeros. */
export const OFLAG_ZERO = 1n;
/** Standard L2 entry bits 9..55: host offset. */
export const L2E_OFFSET_MASK = 0x00fffffffffffe00n;
/** Reserved bits of a standard (uncompressed) L2 entry: 1..8 and 56..61. */
export const L2E_STD_RESERVED_MASK = 0x3f000000000001fen;

/** Number of subclusters per cluster with extended L2 entries. */
export const SUBCLUSTERS = 32;
/** Size in bytes of a standard / extended L2 entry. */
export const L2E_SIZE_NORMAL = 8;
export const L2E_SIZE_EXTENDED = 16;

/**
 * Compressed cluster descriptor (bits 0..61 of the L2 entry), with
 * x = 62 - (cluster_bits - 8): bits 0..x-1 host offset (byte granular),
 * bits x..61 number of additional 512-byte sectors of compressed data.
 */
export function compressedShift(clusterBits: number): number {
  return 62 - (clusterBits - 8);
}

// ---------------------------------------------------------------------------
// Refcount table entries: bits 9..63 offset of a refcount block, 0..8 reserved.

export const REFT_OFFSET_MASK = 0xfffffffffffffe00n;
export const REFT_RESERVED_MASK = 0x1ffn;

// ---------------------------------------------------------------------------
// Snapshot table entry (each padded to 8 bytes)

export const SNAP = {
  L1_TABLE_OFFSET: 0, // u64
  L1_SIZE: 8, // u32
  ID_STR_SIZE: 12, // u16
  NAME_SIZE: 14, // u16
  DATE_SEC: 16, // u32
  DATE_NSEC: 20, // u32
  VM_CLOCK_NSEC: 24, // u64
  VM_STATE_SIZE: 32, // u32
  EXTRA_DATA_SIZE: 36, // u32
  /** Fixed part; extra data, id string and name follow. */
  FIXED: 40,
  // Extra data fields:
  EXTRA_VM_STATE_SIZE_LARGE: 0, // u64
  EXTRA_DISK_SIZE: 8, // u64
  EXTRA_ICOUNT: 16, // i64, -1 = none
} as const;

// ---------------------------------------------------------------------------
// Bitmap directory entry (each padded to 8 bytes)

export const BME = {
  TABLE_OFFSET: 0, // u64
  TABLE_SIZE: 8, // u32 entries
  FLAGS: 12, // u32
  TYPE: 16, // u8 (1 = dirty tracking)
  GRANULARITY_BITS: 17, // u8
  NAME_SIZE: 18, // u16
  EXTRA_DATA_SIZE: 20, // u32
  FIXED: 24,
} as const;
/** Bitmap flags: in use (inconsistent), auto (tracks writes), extra data compatible. */
export const BME_FLAG_IN_USE = 1;
export const BME_FLAG_AUTO = 2;
export const BME_FLAG_EXTRA_DATA_COMPATIBLE = 4;
/** Bitmap table entry: bits 9..55 offset, bit 0 "all ones" when the offset is 0. */
export const BMT_OFFSET_MASK = 0x00fffffffffffe00n;

// ---------------------------------------------------------------------------
// Limits (QEMU's, to refuse hostile images before allocating)

export const MIN_CLUSTER_BITS = 9;
export const MAX_CLUSTER_BITS = 21;
/** Largest L1 table in bytes (QCOW_MAX_L1_SIZE). */
export const MAX_L1_BYTES = 32 * 1024 * 1024;
/** Largest refcount table in bytes (QCOW_MAX_REFTABLE_SIZE). */
export const MAX_REFTABLE_BYTES = 8 * 1024 * 1024;
/** Largest number of snapshots (QCOW_MAX_SNAPSHOTS). */
export const MAX_SNAPSHOTS = 65536;
/** Largest snapshot table in bytes. */
export const MAX_SNAPSHOTS_BYTES = 64 * 1024 * 1024;
/** Largest snapshot extra data. */
export const MAX_SNAPSHOT_EXTRA = 1024;
/** Longest backing file name. */
export const MAX_BACKING_NAME = 1023;
/** Largest number of bitmaps and their directory size. */
export const MAX_BITMAPS = 65535;
export const MAX_BITMAP_DIRECTORY = 1024 * MAX_BITMAPS;
/** Largest virtual size (QEMU's BDRV_MAX_LENGTH is about 2^63; we need safe integers). */
export const MAX_VIRTUAL_SIZE = 2 ** 53 - 2 ** 21;
/** Largest host offset an entry can name (bits 9..55). */
export const MAX_HOST_OFFSET = 2 ** 56;
