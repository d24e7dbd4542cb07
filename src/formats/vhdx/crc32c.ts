/**
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of every
 * VHDX structure: headers, region tables and log entries. Slicing by 8 keeps
 * the log scan and the 64 KiB region tables cheap.
 */

const TABLES = ((): Uint32Array[] => {
  const t: Uint32Array[] = [];
  const t0 = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t0[i] = c >>> 0;
  }
  t.push(t0);
  for (let s = 1; s < 8; s++) {
    const prev = t[s - 1]!;
    const cur = new Uint32Array(256);
    for (let i = 0; i < 256; i++) cur[i] = (prev[i]! >>> 8) ^ t0[prev[i]! & 0xff]!;
    t.push(cur);
  }
  return t;
})();

/**
 * Runs the CRC register `crc` over `buf` without the customary final
 * inversion (as QEMU's crc32c(): callers start with 0xffffffff and invert).
 */
export function crc32cUpdate(crc: number, buf: Uint8Array): number {
  const [t0, t1, t2, t3, t4, t5, t6, t7] = TABLES as [Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array, Uint32Array];
  let c = crc >>> 0;
  let i = 0;
  const n = buf.length;
  for (; i + 8 <= n; i += 8) {
    const a = c ^ (buf[i]! | (buf[i + 1]! << 8) | (buf[i + 2]! << 16) | (buf[i + 3]! << 24));
    c =
      t7[a & 0xff]! ^
      t6[(a >>> 8) & 0xff]! ^
      t5[(a >>> 16) & 0xff]! ^
      t4[a >>> 24]! ^
      t3[buf[i + 4]!]! ^
      t2[buf[i + 5]!]! ^
      t1[buf[i + 6]!]! ^
      t0[buf[i + 7]!]!;
  }
  for (; i < n; i++) c = t0[(c ^ buf[i]!) & 0xff]! ^ (c >>> 8);
  return c >>> 0;
}

/** The VHDX checksum of `buf` with its 4-byte checksum field at `at` taken as zero. */
export function vhdxChecksum(buf: Uint8Array, at: number): number {
  let c = crc32cUpdate(0xffffffff, buf.subarray(0, at));
  c = crc32cUpdate(c, new Uint8Array(4));
  c = crc32cUpdate(c, buf.subarray(at + 4));
  return (c ^ 0xffffffff) >>> 0;
}

/** Stores the checksum of `buf` in its field at `at` (little-endian). */
export function setVhdxChecksum(buf: Uint8Array, at: number): void {
  new DataView(buf.buffer, buf.byteOffset, buf.byteLength).setUint32(at, vhdxChecksum(buf, at), true);
}
