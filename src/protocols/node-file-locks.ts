/**
 * QEMU's image locks, seen from Node (issue #16).
 *
 * QEMU's file-posix marks its use of an image with shared OFD locks on single
 * bytes: byte 100+i while it holds permission bit i, byte 200+i while it does
 * not share bit i. An opener that wants bit i must find byte 200+i free, and
 * one that does not share bit i must find byte 100+i free.
 *
 * Node has no fcntl, so DiskWorker cannot take these locks (QEMU never sees
 * DiskWorker's use of a file) nor test them with F_OFD_GETLK. On Linux,
 * /proc/locks lists every POSIX and OFD lock of the system, by device and
 * inode, which is enough for the test half: before taking new permissions,
 * a node-file looks for other holders of those bytes there and refuses with
 * QEMU's words. Without /proc/locks (not Linux, no procfs) the check is
 * skipped, as QEMU's locking=auto is off where OFD locks are missing.
 */
import type { Stats } from 'node:fs';
import { BlockError } from '../core/errors.js';
import { PERM_ALL, permNames, type PermMask } from '../core/permissions.js';

/** First byte of the "holds permission" range (QEMU's RAW_LOCK_PERM_BASE). */
export const LOCK_PERM_BASE = 100;
/** First byte of the "does not share permission" range (QEMU's RAW_LOCK_SHARED_BASE). */
export const LOCK_SHARED_BASE = 200;

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

/**
 * The text of the lock table, or undefined where there is none (not Linux,
 * procfs not mounted, unreadable): then nothing is checked.
 */
function readLockTable(): string | undefined {
  if (!fsSync) return undefined;
  try {
    return fsSync.readFileSync(procLocksPath, 'latin1');
  } catch {
    return undefined;
  }
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
export function heldRanges(table: string, key: string): LockRange[] {
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
  for (let bit = 1; bit & PERM_ALL; bit <<= 1) {
    const i = Math.log2(bit);
    if (perm & bit && isHeld(ranges, LOCK_SHARED_BASE + i)) {
      throw new BlockError('EAGAIN', `Failed to get "${permNames(bit)}" lock`, {}, { hint, detail: `byte ${LOCK_SHARED_BASE + i} of '${filename}' is locked` });
    }
  }
  for (let bit = 1; bit & PERM_ALL; bit <<= 1) {
    const i = Math.log2(bit);
    if (!(shared & bit) && isHeld(ranges, LOCK_PERM_BASE + i)) {
      throw new BlockError('EAGAIN', `Failed to get shared "${permNames(bit)}" lock`, {}, { hint, detail: `byte ${LOCK_PERM_BASE + i} of '${filename}' is locked` });
    }
  }
}

/**
 * The lock check of one open file (QEMU's raw_handle_perm_lock, test half):
 * remembers the permissions in force and checks the lock table only when an
 * update takes more or shares less, as QEMU only locks new bytes then.
 */
export class ImageLockCheck {
  private perm: PermMask = 0;
  private shared: PermMask = PERM_ALL;
  private readonly key: string;

  constructor(
    st: Pick<Stats, 'dev' | 'ino'>,
    private readonly filename: string,
  ) {
    this.key = lockKey(st.dev, st.ino);
  }

  /** Throws EAGAIN if another process's locks forbid `perm` / `shared`. */
  check(perm: PermMask, shared: PermMask): void {
    if ((this.perm | perm) === this.perm && (this.shared & shared) === this.shared) return;
    checkFileLocks(this.key, perm, shared, this.filename);
  }

  /** The update went through: these are the permissions now held. */
  commit(perm: PermMask, shared: PermMask): void {
    this.perm = perm;
    this.shared = shared;
  }
}

/** Reads the lock table once and checks file `key` (no table: nothing to check). */
export function checkFileLocks(key: string, perm: PermMask, shared: PermMask, filename: string): void {
  const table = readLockTable();
  if (table === undefined) return;
  checkLockRanges(heldRanges(table, key), perm, shared, filename);
}
