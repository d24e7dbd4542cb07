/**
 * The VM state area of a qcow2 image (QEMU's qcow2_save_vmstate /
 * qcow2_load_vmstate): guest address space past the disk, from the first L1
 * entry the disk does not use, written and read through the normal guest
 * paths (clusters are allocated as for guest writes, the L1 table grows as
 * needed) but never visible to the guest, whose requests stop at the disk
 * size. A snapshot created with a VM state size keeps what was written there;
 * the active table then drops it (see {@link discardVmState}).
 */
import { BlockError } from '../../core/errors.js';
import { growL1 } from './cow.js';
import type { Qcow2Image } from './qcow2.js';
import { discardRange } from './zero-discard.js';

/** Largest guest offset we can address exactly (offsets are plain numbers). */
const MAX_OFFSET = Number.MAX_SAFE_INTEGER;

/**
 * Where the VM state starts: the disk size (`size`, default the image's)
 * rounded up to what one L2 table maps (QEMU's qcow2_vm_state_offset).
 */
export function vmStateOffset(img: Qcow2Image, size = img.header.size): number {
  const span = img.clusterSize * img.l2Entries;
  return Math.ceil(size / span) * span;
}

/**
 * The guest offset of VM state bytes [pos, pos + bytes) of a disk of `size`
 * bytes (QEMU's qcow2_check_vmstate_request).
 */
export function vmStateRequest(img: Qcow2Image, pos: number, bytes: number, size = img.header.size): number {
  if (!Number.isSafeInteger(pos) || pos < 0) throw new BlockError('EINVAL', `VM state position must be a non-negative integer, got ${pos}`);
  const base = vmStateOffset(img, size);
  if (base + pos + bytes > MAX_OFFSET) {
    throw new BlockError('EIO', `VM state request of ${bytes} bytes at ${pos} ends past the largest offset ${MAX_OFFSET}`);
  }
  return base + pos;
}

/** Writes `buf` at VM state position `pos` (allocating as a guest write). */
export async function saveVmState(img: Qcow2Image, pos: number, buf: Uint8Array): Promise<void> {
  const off = vmStateRequest(img, pos, buf.length);
  if (buf.length > 0) await img.pwritev(off, buf.length, buf, 0);
}

/** Reads VM state position `pos` into `buf` (what was never written reads as zeros). */
export async function loadVmState(img: Qcow2Image, pos: number, buf: Uint8Array): Promise<void> {
  const off = vmStateRequest(img, pos, buf.length);
  if (buf.length > 0) await img.preadv(off, buf.length, buf);
}

/**
 * After a snapshot took the VM state (QEMU's qcow2_snapshot_create): the
 * active table no longer needs it, and keeping it would make the next
 * snapshot copy it on write. Discards the first `vmStateSize` bytes rounded
 * up to clusters, as a QCOW2_DISCARD_NEVER discard (no discard reaches the
 * file, and discard-no-unref does not apply, as in QEMU). Under the image
 * lock.
 */
export async function discardVmState(img: Qcow2Image, vmStateSize: number): Promise<void> {
  if (vmStateSize <= 0) return;
  const cs = img.clusterSize;
  const start = vmStateOffset(img);
  const bytes = Math.ceil(vmStateSize / cs) * cs;
  const span = cs * img.l2Entries;
  const noUnref = img.discardNoUnref;
  img.discardNoUnref = false;
  try {
    // One L2 table's span at a time, growing the L1 table (by QEMU's rule) as QEMU's
    // discard reaches each index; a missing L2 table is allocated, as QEMU does.
    for (let pos = start; pos < start + bytes; pos = Math.floor(pos / span) * span + span) {
      await growL1(img, Math.floor(pos / span) + 1, false);
      await discardRange(img, pos, Math.min(start + bytes, Math.floor(pos / span) * span + span) - pos, false, false);
    }
  } finally {
    img.discardNoUnref = noUnref;
  }
}
