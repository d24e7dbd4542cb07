import { readFileSync } from 'node:fs';

/** 64 KiB clusters of real binary data (executables on this machine), deterministic. */
export function realClusters(count: number, size = 65536): Uint8Array[] {
  const candidates = ['/usr/bin/qemu-img', '/usr/bin/gdb', '/usr/bin/zstd', process.execPath];
  const res: Uint8Array[] = [];
  for (const f of candidates) {
    let data: Uint8Array;
    try {
      data = readFileSync(f);
    } catch {
      continue;
    }
    for (let off = 0; off + size <= data.byteLength && res.length < count; off += size * 3) {
      res.push(data.subarray(off, off + size));
    }
    if (res.length >= count) break;
  }
  return res;
}
