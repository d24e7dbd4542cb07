/**
 * Numbers in hexadecimal as C's `%#x` / `%#" PRIx64 "` print them, which
 * QEMU's messages use: `0x` before every value but zero, printed `0`.
 */
export function cHex(n: number | bigint): string {
  return n === 0 || n === 0n ? '0' : `0x${n.toString(16)}`;
}
