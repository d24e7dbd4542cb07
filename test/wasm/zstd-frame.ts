/** Length of the zstd frame at the start of `buf` (the test needs it to know how much room a stored cluster has). */
export function zstdFrameLength(buf: Uint8Array): number {
  const bad = (why: string) => new Error(`invalid zstd frame: ${why}`);
  if (buf.length < 6) throw bad('too short');
  const magic = buf[0]! | (buf[1]! << 8) | (buf[2]! << 16) | (buf[3]! << 24);
  if (magic >>> 0 !== 0xfd2fb528) throw bad('bad magic');
  const fhd = buf[4]!;
  const fcsFlag = fhd >> 6;
  const single = (fhd >> 5) & 1;
  const checksum = (fhd >> 2) & 1;
  const did = [0, 1, 2, 4][fhd & 3]!;
  const fcs = [single ? 1 : 0, 2, 4, 8][fcsFlag]!;
  let pos = 5 + (single ? 0 : 1) + did + fcs;
  for (let guard = 0; guard < 1 << 20; guard++) {
    if (pos + 3 > buf.length) throw bad('truncated block header');
    const bh = buf[pos]! | (buf[pos + 1]! << 8) | (buf[pos + 2]! << 16);
    pos += 3;
    const last = bh & 1;
    const type = (bh >> 1) & 3;
    const size = bh >>> 3;
    if (type === 3) throw bad('reserved block type');
    pos += type === 1 ? 1 : size;
    if (pos > buf.length) throw bad('truncated block');
    if (last) break;
  }
  if (checksum) pos += 4;
  if (pos > buf.length) throw bad('truncated checksum');
  return pos;
}
