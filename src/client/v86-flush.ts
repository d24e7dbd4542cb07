/**
 * Guest flushes for v86's IDE disks. v86 0.5 completes FLUSH CACHE (0xE7)
 * and FLUSH CACHE EXT (0xEA) at once without telling the disk buffer, so a
 * guest's `sync` or file system journal commit never reaches the image: the
 * guest's writes wait in the adapter's queue and the qcow2 metadata (L2
 * tables, refcount blocks) in the worker's write-back caches, and a closed
 * page loses every cluster allocated since the last flush — data the guest
 * was told is on disk, and its journal's ordering with it.
 *
 * Nor does v86's IDENTIFY DEVICE report a write cache, so Linux sends no
 * flush at all and takes a completed write as stored, which it is not: the
 * adapter acknowledges a write before it is stored.
 *
 * {@link connectV86Flush} reports the write cache the drive has (supported
 * and enabled, as QEMU's IDE disk does with cache=writeback) and makes the
 * two flush commands wait for the buffer's flush() (the guest's writes so
 * far, then the disk's flush), as QEMU's IDE device waits for bdrv_flush:
 * the drive shows BSY meanwhile, and a failed flush ends the command with
 * ERR / ABRT so the guest hears of it.
 *
 * ```ts
 * const hda = toV86Buffer(disk);
 * const emulator = new V86({ hda, ... });
 * connectV86Flush(emulator, hda);
 * ```
 */
import { BlockError } from '../core/errors.js';
import type { V86DiskBuffer } from './v86.js';

const ATA_FLUSH_CACHE = 0xe7;
const ATA_FLUSH_CACHE_EXT = 0xea;
/** Status register bits (ATA): busy, drive ready, seek complete, error. */
const BSY = 0x80;
const DRDY = 0x40;
const DSC = 0x10;
const ERR = 0x01;
/** Error register: command aborted. */
const ABRT = 0x04;
/** IDENTIFY DEVICE words 82 (supported) and 85 (enabled), bit 5: volatile write cache. */
const WORD_WCACHE_SUPPORTED = 82;
const WORD_WCACHE_ENABLED = 85;
const WCACHE_BIT = 1 << 5;

/** The parts of v86's IDE interface (one drive) this uses. */
interface IdeDrive {
  buffer?: unknown;
  status_reg: number;
  error_reg: number;
  current_command: number;
  is_atapi: boolean;
  data: Uint8Array;
  ata_command(cmd: number): void;
  create_identify_packet(): void;
  push_irq(): void;
}

interface IdeChannel {
  master?: IdeDrive;
  slave?: IdeDrive;
}

/** What connectV86Flush needs from a V86 instance (v86 0.5.x's internals). */
export interface V86WithIde {
  add_listener(event: 'emulator-loaded', fn: () => void): void;
  v86?: { cpu?: { devices?: { ide?: { primary?: IdeChannel; secondary?: IdeChannel } } } };
}

function findDrive(emulator: V86WithIde, buffer: V86DiskBuffer): IdeDrive | null {
  const ide = emulator.v86?.cpu?.devices?.ide;
  for (const channel of [ide?.primary, ide?.secondary]) {
    for (const drive of [channel?.master, channel?.slave]) {
      if (drive && drive.buffer === buffer) return drive;
    }
  }
  return null;
}

/** The buffers whose drives' flushes wait for them. */
const connected = new WeakSet<object>();
/** The drive prototypes whose ata_command is wrapped (once each). */
const wrapped = new WeakSet<object>();

/**
 * Wraps ata_command and create_identify_packet on the drive's prototype: v86
 * seals its drive objects, so an own property cannot be added. The wrappers
 * act on connected drives only (by their buffer) and pass the rest on.
 */
function hook(drive: IdeDrive): void {
  const proto = Object.getPrototypeOf(drive) as IdeDrive;
  if (wrapped.has(proto)) return;
  wrapped.add(proto);
  const identify = proto.create_identify_packet;
  proto.create_identify_packet = function (this: IdeDrive) {
    identify.call(this);
    if (this.is_atapi || !this.buffer || !connected.has(this.buffer)) return;
    // Little-endian words: bit 5 is in the low byte.
    const d = this.data;
    d[WORD_WCACHE_SUPPORTED * 2] = (d[WORD_WCACHE_SUPPORTED * 2] ?? 0) | WCACHE_BIT;
    d[WORD_WCACHE_ENABLED * 2] = (d[WORD_WCACHE_ENABLED * 2] ?? 0) | WCACHE_BIT;
  };
  const original = proto.ata_command;
  proto.ata_command = function (this: IdeDrive, cmd: number) {
    const buffer = this.buffer as V86DiskBuffer | undefined;
    if ((cmd !== ATA_FLUSH_CACHE && cmd !== ATA_FLUSH_CACHE_EXT) || !buffer || !connected.has(buffer)) return original.call(this, cmd);
    this.current_command = cmd;
    this.error_reg = 0;
    this.status_reg = BSY;
    const done = (ok: boolean) => {
      // A reset or another command since then owns the registers now.
      if (this.current_command !== cmd || (this.status_reg & BSY) === 0) return;
      this.error_reg = ok ? 0 : ABRT;
      this.status_reg = ok ? DRDY | DSC : DRDY | ERR;
      this.push_irq();
    };
    buffer.flush().then(
      () => done(true),
      () => done(false),
    );
  };
}

/**
 * Makes the guest's FLUSH CACHE commands on the IDE drive whose buffer is
 * `buffer` wait for `buffer.flush()`. Call it right after `new V86(...)`: the
 * drive is hooked when the emulator has loaded (or at once if it has).
 * Throws EINVAL (or reports it on the emulator's load) when no IDE drive of
 * the emulator uses `buffer`.
 */
export function connectV86Flush(emulator: V86WithIde, buffer: V86DiskBuffer): void {
  const attach = () => {
    const drive = findDrive(emulator, buffer);
    if (!drive) throw new BlockError('EINVAL', 'connectV86Flush: no IDE drive of this emulator uses the given disk buffer (pass the hda / hdb given to new V86)');
    connected.add(buffer);
    hook(drive);
  };
  if (emulator.v86?.cpu?.devices?.ide) {
    attach();
    return;
  }
  emulator.add_listener('emulator-loaded', () => {
    try {
      attach();
    } catch (e) {
      console.error('diskworker:', e);
    }
  });
}
