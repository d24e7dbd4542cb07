/**
 * QEMU's image locks, seen from Node (issue #16).
 *
 * QEMU's file-posix marks its use of an image with shared OFD locks on single
 * bytes: byte 100+i while it holds permission bit i, byte 200+i while it does
 * not share bit i. An opener that wants bit i must find byte 200+i free, and
 * one that does not share bit i must find byte 100+i free.
 *
 * Node has no fcntl. The take half runs in a Perl helper process
 * (node-file-lock-holder.ts), so QEMU sees DiskWorker's use of a file. For
 * the test half, /proc/locks lists every POSIX and OFD lock of the system,
 * by device and inode: before taking new permissions, a node-file looks for
 * other holders of those bytes there (the helper's own locks left out) and
 * refuses with QEMU's words. Without /proc/locks (not Linux, no procfs) the
 * check is skipped, as QEMU's locking=auto is off where OFD locks are missing.
 *
 * QEMU's locks are OFD locks: they belong to one open of the file, so two
 * nodes of one QEMU process on one file refuse each other as two processes
 * do. Ours are held by one helper for the whole process (the union of what
 * every node locks), so /proc/locks cannot tell our nodes apart: each locking
 * open of this process is kept in a registry by file, with the bytes it
 * locks, and a check looks at the other opens of the same file there too.
 */
import type { Stats } from 'node:fs';
import { BlockError } from '../core/errors.js';
import { Perm, PERM_ALL, permNames, type PermMask } from '../core/permissions.js';
import type { LockHolder } from './node-file-lock-holder.js';

/** First byte of the "holds permission" range (QEMU's RAW_LOCK_PERM_BASE). */
export const LOCK_PERM_BASE = 100;
/** First byte of the "does not share permission" range (QEMU's RAW_LOCK_SHARED_BASE). */
export const LOCK_SHARED_BASE = 200;

/** The permissions QEMU 7.2 has a lock byte for (its BLK_PERM_ALL; our GRAPH_MOD has none). */
const LOCKED_PERMS: PermMask = Perm.CONSISTENT_READ | Perm.WRITE | Perm.WRITE_UNCHANGED | Perm.RESIZE;

/** One locked range of one file: bytes start..end inclusive (end Infinity: to EOF). */
export interface LockRange {
  start: number;
  end: number;
}

type FsSync = typeof import('node:fs');
let fsSync: FsSync | null = null;

/** Loads node:fs for the synchronous read of /proc/locks (permission checks are synchronous). */
export async function loadLockFs(): Promise<void> {
  fsSync ??= await import('node:fs');
}

/** Where the table is read from (tests point it elsewhere with {@link setProcLocksPath}). */
let procLocksPath = '/proc/locks';
/** For tests: reads the lock table from `path` instead of /proc/locks. */
export function setProcLocksPath(path: string): void {
  procLocksPath = path;
}

/** Bytes of the lock table read at a time. */
const TABLE_CHUNK = 64 * 1024;

/**
 * The lines of the lock table that name inode `ino` (what {@link heldRanges}
 * looks at), or undefined where there is no table (not Linux, procfs not
 * mounted, unreadable): then nothing is checked. Read in pieces and filtered
 * as it comes: a busy host lists tens of thousands of locks (megabytes),
 * which must not become a string of that size on every open.
 */
function readLockTable(ino: string): string | undefined {
  if (!fsSync) return undefined;
  let fd: number;
  try {
    fd = fsSync.openSync(procLocksPath, 'r');
  } catch {
    return undefined;
  }
  const needle = `:${ino} `;
  const buf = new Uint8Array(TABLE_CHUNK);
  const kept: string[] = [];
  let rest = '';
  try {
    for (;;) {
      const n = fsSync.readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      const text = rest + Buffer.from(buf.buffer, 0, n).toString('latin1');
      const end = text.lastIndexOf('\n');
      const whole = end < 0 ? '' : text.slice(0, end + 1);
      rest = end < 0 ? text : text.slice(end + 1);
      if (whole.includes(needle)) for (const line of whole.split('\n')) if (line.includes(needle)) kept.push(line);
    }
    if (rest.includes(needle)) kept.push(rest);
  } catch {
    return undefined;
  } finally {
    fsSync.closeSync(fd);
  }
  return kept.join('\n');
}

/**
 * The "MM:mm:inode" key /proc/locks prints for a file: major and minor in
 * hex, from the glibc encoding of st_dev (minor in bits 0-7 and 20-31+, major
 * in bits 8-19 and 32+).
 */
export function lockKey(dev: number, ino: number): string {
  const lo = dev % 2 ** 32;
  const hi = Math.floor(dev / 2 ** 32);
  const major = (((lo >>> 8) & 0xfff) | (hi & ~0xfff)) >>> 0;
  const minor = ((lo & 0xff) | ((lo >>> 12) & 0xfff00) | ((hi & 0xfff) << 20)) >>> 0;
  return `${major.toString(16)}:${minor.toString(16)}:${ino}`;
}

/** Parses "fe:00:1234" into a comparable key ("fe:0:1234": hex digits without leading zeros). */
function normaliseKey(field: string): string | undefined {
  const m = /^([0-9a-f]+):([0-9a-f]+):(\d+)$/i.exec(field);
  if (!m) return undefined;
  return `${parseInt(m[1]!, 16).toString(16)}:${parseInt(m[2]!, 16).toString(16)}:${m[3]}`;
}

/**
 * The byte ranges held on file `key` by POSIX and OFD locks in `table` (the
 * text of /proc/locks). Waiters ("->" lines) hold nothing; flock locks and
 * leases do not conflict with fcntl locks, so they are left out.
 */
export function heldRanges(table: string, key: string, exceptPid?: number): LockRange[] {
  const out: LockRange[] = [];
  // Only lines naming the inode are split (a busy host lists thousands of locks).
  const needle = `:${key.slice(key.lastIndexOf(':') + 1)} `;
  for (let at = table.indexOf(needle); at >= 0; at = table.indexOf(needle, at + 1)) {
    const from = table.lastIndexOf('\n', at) + 1;
    const to = table.indexOf('\n', at);
    const line = table.slice(from, to < 0 ? table.length : to);
    // "12: OFDLCK  ADVISORY  READ  -1 fe:00:2237168 100 101"
    const f = line.trim().split(/\s+/);
    if (f.length < 8 || f[1] === '->') continue;
    if (f[1] !== 'OFDLCK' && f[1] !== 'POSIX') continue;
    if (exceptPid !== undefined && f[1] === 'POSIX' && Number(f[4]) === exceptPid) continue;
    if (normaliseKey(f[5]!) !== key) continue;
    const start = Number(f[6]);
    const end = f[7] === 'EOF' ? Infinity : Number(f[7]);
    if (Number.isFinite(start)) out.push({ start, end });
  }
  return out;
}

function isHeld(ranges: readonly LockRange[], byte: number): boolean {
  return ranges.some((r) => r.start <= byte && byte <= r.end);
}

/**
 * Checks one file's locks before it takes `perm` and shares only `shared`
 * (QEMU's raw_check_lock_bytes, in its order: first the permissions wanted,
 * then the ones not shared). Throws EAGAIN with QEMU's message and hint.
 */
export function checkLockRanges(ranges: readonly LockRange[], perm: PermMask, shared: PermMask, filename: string): void {
  const hint = `Is another process using the image [${filename}]?\n`;
  for (let bit = 1; bit & LOCKED_PERMS; bit <<= 1) {
    const i = Math.log2(bit);
    if (perm & bit && isHeld(ranges, LOCK_SHARED_BASE + i)) {
      throw new BlockError('EAGAIN', `Failed to get "${permNames(bit)}" lock`, {}, { hint, detail: `byte ${LOCK_SHARED_BASE + i} of '${filename}' is locked` });
    }
  }
  for (let bit = 1; bit & LOCKED_PERMS; bit <<= 1) {
    const i = Math.log2(bit);
    if (!(shared & bit) && isHeld(ranges, LOCK_PERM_BASE + i)) {
      throw new BlockError('EAGAIN', `Failed to get shared "${permNames(bit)}" lock`, {}, { hint, detail: `byte ${LOCK_PERM_BASE + i} of '${filename}' is locked` });
    }
  }
}

/** The bytes QEMU locks for `perm` held and `shared` shared (raw_apply_lock_bytes). */
export function lockBytes(perm: PermMask, shared: PermMask): Set<number> {
  const out = new Set<number>();
  for (let bit = 1; bit & LOCKED_PERMS; bit <<= 1) {
    const i = Math.log2(bit);
    if (perm & bit) out.add(LOCK_PERM_BASE + i);
    if (!(shared & bit)) out.add(LOCK_SHARED_BASE + i);
  }
  return out;
}

/**
 * The locking opens of this process, by file key, each with the bytes it
 * locks now (see the module comment): what QEMU's lock test would find held
 * by other open file descriptions of its own process.
 */
const ownOpens = new Map<string, Set<ImageLockCheck>>();

/**
 * Whether QEMU would have OFD locks here (Linux). Elsewhere it falls back to
 * POSIX locks, which never conflict inside one process, or (locking=auto)
 * takes none: the opens of this process then do not refuse each other.
 */
const ofdLocks = typeof process !== 'undefined' && process.platform === 'linux';

/** The bytes the opens of this process other than `self` lock on file `key`. */
function ownRanges(key: string, self?: ImageLockCheck): LockRange[] {
  const out: LockRange[] = [];
  if (!ofdLocks) return out;
  for (const open of ownOpens.get(key) ?? []) {
    if (open === self) continue;
    for (const b of open.lockedBytes) out.push({ start: b, end: b });
  }
  return out;
}

function sameBytes(a: ReadonlySet<number>, b: ReadonlySet<number>): boolean {
  if (a.size !== b.size) return false;
  for (const x of a) if (!b.has(x)) return false;
  return true;
}

/**
 * The locks of one open file (QEMU's raw_handle_perm_lock): an update that
 * takes more or shares less first locks the bytes of both the old and the
 * new permissions, then tests for other holders (other processes through the
 * lock table, other opens of this process through the registry); the commit
 * keeps the new bytes only, an abort the old ones. The holder locks whatever
 * is locked here, so other processes see it.
 */
export class ImageLockCheck {
  private perm: PermMask = 0;
  private shared: PermMask = PERM_ALL;
  private locked: ReadonlySet<number> = new Set();
  private readonly key: string;
  /** The holder's answer to the last change of the locked bytes. */
  private last: Promise<void> = Promise.resolve();

  /**
   * `path` names the open file for the holder (for example an absolute
   * path); `holder` is null where locks cannot be taken for other processes
   * (the opens of this process still see each other).
   */
  constructor(
    st: Pick<Stats, 'dev' | 'ino'>,
    private readonly filename: string,
    private readonly holder: LockHolder | null = null,
    private readonly path = filename,
  ) {
    this.key = lockKey(st.dev, st.ino);
  }

  /** The bytes this open locks now (between a check and its commit or abort: old and new). */
  get lockedBytes(): ReadonlySet<number> {
    return this.locked;
  }

  /**
   * Phase one of a permission update: throws EAGAIN with QEMU's words if
   * another process, or another open of this file in this process, holds a
   * byte `perm` / `shared` forbid. On success the bytes stay locked until
   * {@link commit} or {@link abort}, so later checks in the same update see
   * them (as QEMU's do).
   */
  check(perm: PermMask, shared: PermMask): void {
    if ((this.perm | perm) === this.perm && (this.shared & shared) === this.shared) return;
    this.lock(lockBytes(this.perm | perm, this.shared & shared));
    try {
      checkFileLocks(this.key, perm, shared, this.filename, this.holder?.pid, this);
    } catch (e) {
      this.abort();
      throw e;
    }
  }

  /** The update went through: these are the permissions now held, and locked. */
  commit(perm: PermMask, shared: PermMask): void {
    this.perm = perm;
    this.shared = shared;
    this.lock(lockBytes(perm, shared));
  }

  /** The update was given up: back to the bytes of the permissions held before it. */
  abort(): void {
    this.lock(lockBytes(this.perm, this.shared));
  }

  /** Resolves once the locks of the last update are taken (or could not be). */
  settled(): Promise<void> {
    return this.last;
  }

  /** The file is being closed: its locks go. */
  release(): Promise<void> {
    this.perm = 0;
    this.shared = PERM_ALL;
    this.lock(new Set());
    return this.last;
  }

  /** Makes the locked bytes `bytes`, in the registry and through the holder. */
  private lock(bytes: ReadonlySet<number>): void {
    if (sameBytes(bytes, this.locked)) return;
    this.locked = bytes;
    let opens = ownOpens.get(this.key);
    if (bytes.size) {
      if (!opens) ownOpens.set(this.key, (opens = new Set()));
      opens.add(this);
    } else if (opens) {
      opens.delete(this);
      if (!opens.size) ownOpens.delete(this.key);
    }
    // A lock that cannot be taken leaves the image usable, only unseen by QEMU (locking=auto).
    if (this.holder) this.last = this.holder.set(this.key, this.path, this, bytes).catch(() => undefined);
  }
}

/**
 * Checks file `key` before `perm` is taken and only `shared` shared: the
 * lock table (where there is one; `exceptPid`'s locks are ours) and the
 * opens of this process other than `self`.
 */
export function checkFileLocks(key: string, perm: PermMask, shared: PermMask, filename: string, exceptPid?: number, self?: ImageLockCheck): void {
  const table = readLockTable(key.slice(key.lastIndexOf(':') + 1));
  const ranges = table === undefined ? [] : heldRanges(table, key, exceptPid);
  ranges.push(...ownRanges(key, self));
  checkLockRanges(ranges, perm, shared, filename);
}
