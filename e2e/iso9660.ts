/**
 * A tiny ISO 9660 writer for the CD-ROM spec: one volume with files in the
 * root directory (primary volume descriptor, terminator, both path tables,
 * the root directory, the files' data), 2048-byte sectors.
 */

const SECTOR = 2048;

function both32(buf: Uint8Array, at: number, v: number): void {
  const dv = new DataView(buf.buffer, buf.byteOffset);
  dv.setUint32(at, v, true);
  dv.setUint32(at + 4, v, false);
}

function both16(buf: Uint8Array, at: number, v: number): void {
  const dv = new DataView(buf.buffer, buf.byteOffset);
  dv.setUint16(at, v, true);
  dv.setUint16(at + 2, v, false);
}

function text(buf: Uint8Array, at: number, s: string, len: number): void {
  for (let i = 0; i < len; i++) buf[at + i] = i < s.length ? s.charCodeAt(i) : 0x20;
}

/** One directory record (ECMA-119 9.1). */
function dirRecord(id: Uint8Array, lba: number, size: number, dir: boolean): Uint8Array {
  const len = 33 + id.length + (id.length % 2 === 0 ? 1 : 0);
  const r = new Uint8Array(len);
  r[0] = len;
  both32(r, 2, lba);
  both32(r, 10, size);
  r.set([126, 1, 1, 0, 0, 0, 0], 18); // 2026-01-01 00:00:00 GMT
  r[25] = dir ? 2 : 0;
  both16(r, 28, 1);
  r[32] = id.length;
  r.set(id, 33);
  return r;
}

/** The image of a volume named `volume` holding `files` (names in 8.3 upper case). */
export function makeIso(volume: string, files: Record<string, Uint8Array>): Uint8Array {
  const names = Object.keys(files);
  const ROOT = 20;
  let next = ROOT + 1;
  const placed = names.map((n) => {
    const lba = next;
    next += Math.max(1, Math.ceil(files[n]!.length / SECTOR));
    return { n, lba };
  });
  const total = next;
  const img = new Uint8Array(total * SECTOR);
  // The root directory: ".", "..", then the files.
  const records = [dirRecord(new Uint8Array([0]), ROOT, SECTOR, true), dirRecord(new Uint8Array([1]), ROOT, SECTOR, true)];
  for (const { n, lba } of placed) records.push(dirRecord(new TextEncoder().encode(`${n};1`), lba, files[n]!.length, false));
  let at = ROOT * SECTOR;
  for (const r of records) {
    img.set(r, at);
    at += r.length;
  }
  for (const { n, lba } of placed) img.set(files[n]!, lba * SECTOR);
  // Path tables (one entry: the root), little-endian at 18, big-endian at 19.
  for (const [sector, le] of [[18, true], [19, false]] as const) {
    const p = img.subarray(sector * SECTOR);
    p[0] = 1;
    new DataView(p.buffer, p.byteOffset).setUint32(2, ROOT, le);
    new DataView(p.buffer, p.byteOffset).setUint16(6, 1, le);
  }
  // Primary volume descriptor.
  const pvd = img.subarray(16 * SECTOR, 17 * SECTOR);
  pvd[0] = 1;
  text(pvd, 1, 'CD001', 5);
  pvd[6] = 1;
  text(pvd, 8, '', 32);
  text(pvd, 40, volume, 32);
  both32(pvd, 80, total);
  both16(pvd, 120, 1);
  both16(pvd, 124, 1);
  both16(pvd, 128, SECTOR);
  both32(pvd, 132, 10);
  new DataView(pvd.buffer, pvd.byteOffset).setUint32(140, 18, true);
  new DataView(pvd.buffer, pvd.byteOffset).setUint32(148, 19, false);
  pvd.set(dirRecord(new Uint8Array([0]), ROOT, SECTOR, true), 156);
  pvd[881] = 1;
  // Set terminator.
  const term = img.subarray(17 * SECTOR, 18 * SECTOR);
  term[0] = 255;
  text(term, 1, 'CD001', 5);
  term[6] = 1;
  return img;
}
