/**
 * Reads and writes of VHDX metadata at 64-bit file offsets taken from the
 * image, with QEMU's outcomes: EIO past its largest request end, zeros past
 * the end of the file (and past 2^53, where no file reaches).
 */
import type { BdrvChild } from '../../core/child.js';
import { BlockError, toBlockError } from '../../core/errors.js';

/** QEMU's BDRV_MAX_LENGTH: no request may end past it. */
const QEMU_MAX_LENGTH = 2n ** 63n - 2n ** 30n;
const SAFE_END = BigInt(Number.MAX_SAFE_INTEGER);

/** Reads `n` bytes at `offset`; `what` names the structure in errors. */
export async function readAt(file: BdrvChild, offset: bigint | number, n: number, what: string): Promise<Uint8Array> {
  const at = BigInt(offset);
  const buf = new Uint8Array(n);
  if (at > QEMU_MAX_LENGTH - BigInt(n)) throw new BlockError('EIO', 'Input/output error', {}, { detail: `${what} at offset ${at}` });
  if (at + BigInt(n) > SAFE_END) return buf;
  try {
    await file.preadv(Number(at), n, buf);
  } catch (e) {
    const err = toBlockError(e);
    throw new BlockError(err.code, err.text, { offset: Number(at) }, { cause: e, detail: `reading ${what} at offset ${at}` });
  }
  return buf;
}

/** Writes `data` at `offset` and flushes the file (QEMU's bdrv_pwrite_sync). */
export async function writeSync(file: BdrvChild, offset: number, data: Uint8Array): Promise<void> {
  await file.pwritev(offset, data.length, data);
  await file.flush();
}

/** A file offset from the image as a number, or EINVAL naming it when no file can reach it. */
export function fileOffset(v: bigint, what: string): number {
  if (v > SAFE_END) throw new BlockError('EINVAL', 'Invalid argument', {}, { detail: `${what} ${v} is past 2^53` });
  return Number(v);
}
