/**
 * host_device / host_cdrom: block and character devices through Node's fs
 * (QEMU's file-posix device drivers). Node has no ioctl and no lseek, so:
 * - a block device's size is found by reading single bytes (a read at or past
 *   the end returns nothing); a character device has size 0, which is what
 *   lseek(SEEK_END) gives for /dev/null and /dev/zero;
 * - discard is a no-op (BLKDISCARD is advisory) and zero writes fall back to
 *   writing zero buffers (no BLKZEROOUT);
 * - host_cdrom cannot ask the drive whether a disc is in: a character device
 *   never holds one (the CD-ROM ioctl fails on it, so QEMU says "No medium
 *   found"), a block device is taken to hold one.
 * Plain filenames naming a device are opened with host_device (QEMU's
 * protocol probing by `probeDevice`).
 */
import type { BlockDriver, CreateContext, DriverInstance, PreallocMode } from '../core/driver.js';
import { BlockError, einval, toBlockError } from '../core/errors.js';
import type { BlockNode } from '../core/node.js';
import type { OptionReader } from '../core/options.js';
import type { FileHandle } from 'node:fs/promises';
import { NodeFileInstance, fs, openHostFile } from './node-file.js';

/** Largest device size searched for: 2^53 bytes in whole 512-byte sectors. */
const MAX_SECTORS = 2 ** 44;

/**
 * The size of a device in bytes, given `readable(offset)`: whether a byte can
 * be read at `offset`. Sizes are whole 512-byte sectors (as block devices
 * are); the search doubles, then bisects, so it takes about 2·log2(sectors)
 * reads.
 */
export async function findDeviceEnd(readable: (offset: number) => Promise<boolean>): Promise<number> {
  if (!(await readable(0))) return 0;
  // Invariant: sector lo is readable; sector hi is not (or hi is the search limit).
  let lo = 0;
  let hi = 1;
  while (hi < MAX_SECTORS && (await readable(hi * 512))) {
    lo = hi;
    hi = Math.min(hi * 2, MAX_SECTORS);
  }
  if (hi >= MAX_SECTORS && (await readable(hi * 512 - 512))) {
    throw new BlockError('EFBIG', `Device is larger than ${MAX_SECTORS * 512} bytes`);
  }
  while (hi - lo > 1) {
    const mid = lo + Math.floor((hi - lo) / 2);
    if (await readable(mid * 512)) lo = mid;
    else hi = mid;
  }
  return hi * 512;
}

class DeviceInstance extends NodeFileInstance {
  constructor(
    fh: FileHandle,
    size: number,
    filename: string,
    /** False when the drive holds no medium (host_cdrom on a character device). */
    private readonly inserted: boolean,
    private readonly hasInfo: boolean,
  ) {
    super(fh, size, filename);
  }

  isInserted(): boolean {
    return this.inserted;
  }

  /** Advisory on devices: nothing is promised about what the range reads afterwards. */
  override async pdiscard(): Promise<void> {}

  /** Devices keep the plain paths (no lseek holes or fallocate through the helper). */
  protected override usesFileOps(): boolean {
    return false;
  }

  /** A device cannot change size: shrinking is accepted (the end is not used), growing is refused. */
  override async truncate(offset: number, _exact: boolean, prealloc: PreallocMode): Promise<void> {
    if (prealloc !== 'off') {
      throw new BlockError('ENOTSUP', `Preallocation mode '${prealloc}' unsupported for this non-regular file`);
    }
    if (offset > this.size) throw einval('Cannot grow device files');
  }

  /** host_device answers (all zero); QEMU's host_cdrom driver has no bdrv_get_info. */
  getInfo(): undefined {
    if (!this.hasInfo) throw new BlockError('ENOTSUP', `Driver 'host_cdrom' has no image information for '${this.filename}'`);
    return undefined;
  }

  /** A device keeps whatever it held: it does not read as zeros after create. */
  override hasZeroInit(): boolean {
    return false;
  }
}

/**
 * Creating an image on a device (QEMU's simple create for drivers that
 * cannot make files): the device must already be large enough; its first
 * sector is zeroed so no old header is probed.
 */
async function createOnDevice(name: string, ctx: CreateContext): Promise<void> {
  const size = ctx.options.size('size', 0);
  const prealloc = ctx.options.string('preallocation', 'off');
  // QEMU's words for a value that is no preallocation mode at all.
  if (!['off', 'metadata', 'falloc', 'full'].includes(prealloc)) throw einval(`invalid parameter value: ${prealloc}`);
  if (prealloc !== 'off') throw einval(`Unsupported preallocation mode '${prealloc}'`);
  ctx.options.finish();
  const { BlockBackend } = await import('../core/backend.js');
  let bb: import('../core/backend.js').BlockBackend;
  try {
    bb = await BlockBackend.open(ctx.graph, { driver: name, filename: ctx.filename });
  } catch (e) {
    throw toBlockError(e).withPrefix('An error occurred during creation of the image file');
  }
  try {
    if (size > bb.length) throw einval('Cannot grow device files');
    const first = Math.min(bb.length, 512);
    if (first > 0) await bb.write(0, new Uint8Array(first));
  } finally {
    await bb.close();
  }
}

function deviceDriver(name: 'host_device' | 'host_cdrom'): BlockDriver {
  return {
    name,
    kind: 'protocol',
    parseFilename: (filename: string) => ({ filename }),
    isAvailable: () => typeof process !== 'undefined' && !!process.versions?.node,
    createOptions: [
      { name: 'size', type: 'size', help: 'Virtual disk size' },
      { name: 'preallocation', type: 'string', help: 'Preallocation mode (allowed values: off)' },
    ],
    create: (ctx: CreateContext) => createOnDevice(name, ctx),
    async probeDevice(filename: string): Promise<number> {
      const isCd = filename.startsWith('/dev/cd') || filename.startsWith('/dev/acd');
      // Without the CD-ROM ioctl, a CD-ROM name is all host_cdrom can go by; host_device yields to it.
      if (name === 'host_cdrom') return isCd && (await isDevice(filename)) ? 100 : 0;
      if (filename.startsWith('/dev/cdrom')) return 50;
      return (await isDevice(filename)) ? 100 : 0;
    },
    async open(node: BlockNode, options: OptionReader): Promise<DriverInstance> {
      return openHostFile(name, node, options, async (fh, st, filename) => {
        if (!st.isBlockDevice() && !st.isCharacterDevice()) {
          throw einval(`'${name}' driver requires '${filename}' to be either a character or block device`);
        }
        const probe = new Uint8Array(1);
        const size = st.isBlockDevice()
          ? await findDeviceEnd(async (offset) => (await fh.read(probe, 0, 1, offset)).bytesRead > 0)
          : 0;
        const inserted = name === 'host_device' || st.isBlockDevice();
        return new DeviceInstance(fh, size, filename, inserted, name === 'host_device');
      });
    },
  } satisfies BlockDriver;
}

async function isDevice(filename: string): Promise<boolean> {
  try {
    const st = await (await fs()).stat(filename);
    return st.isBlockDevice() || st.isCharacterDevice();
  } catch {
    return false;
  }
}

/** QEMU's host_device: a block or character device. */
export const hostDeviceDriver = deviceDriver('host_device');
/** QEMU's host_cdrom: a CD-ROM drive (see the module comment for what Node cannot ask). */
export const hostCdromDriver = deviceDriver('host_cdrom');
