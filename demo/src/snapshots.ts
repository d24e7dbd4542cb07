/**
 * Reads a qcow2 image's internal snapshot table straight from its file (the
 * page API's info() does not carry snapshots): header fields nb_snapshots and
 * snapshots_offset, then each entry as the qcow2 spec lays it out.
 */
import type { DiskWorker } from '../../src/client/index.js';
import type { Snapshot } from './state.js';
import { storageOf } from './state.js';

const MAX_SNAPSHOTS = 1024;
const MAX_TABLE = 4 << 20;

export async function readSnapshots(dw: DiskWorker, path: string): Promise<Snapshot[]> {
  const proto = storageOf(path);
  const file = await dw.open({ path, readOnly: true, options: { driver: proto === 'http' ? 'http' : proto } });
  try {
    const hdr = await file.read(0, Math.min(104, file.length));
    const v = new DataView(hdr.buffer, hdr.byteOffset, hdr.byteLength);
    if (hdr.length < 72 || v.getUint32(0) !== 0x514649fb) return [];
    const count = v.getUint32(60);
    const offset = Number(v.getBigUint64(64));
    if (count === 0) return [];
    if (count > MAX_SNAPSHOTS) throw new Error(`the image claims ${count} snapshots (more than this page shows)`);
    const bytes = Math.min(MAX_TABLE, file.length - offset);
    if (!(offset > 0 && bytes > 0)) throw new Error(`the snapshot table offset ${offset} is outside the file`);
    const t = await file.read(offset, bytes);
    const d = new DataView(t.buffer, t.byteOffset, t.byteLength);
    const dec = new TextDecoder();
    const out: Snapshot[] = [];
    let p = 0;
    for (let i = 0; i < count; i++) {
      if (p + 40 > t.length) throw new Error('the snapshot table is truncated');
      const idSize = d.getUint16(p + 12);
      const nameSize = d.getUint16(p + 14);
      const dateSec = d.getUint32(p + 16);
      const dateNsec = d.getUint32(p + 20);
      const vmClockNsec = Number(d.getBigUint64(p + 24));
      let vmStateSize = d.getUint32(p + 32);
      const extra = d.getUint32(p + 36);
      let q = p + 40;
      if (extra >= 8) vmStateSize = Number(d.getBigUint64(q));
      let icount: number | undefined;
      if (extra >= 24) {
        const ic = d.getBigUint64(q + 16);
        if (ic !== 0xffffffffffffffffn) icount = Number(ic);
      }
      q += extra;
      if (q + idSize + nameSize > t.length) throw new Error('the snapshot table is truncated');
      const id = dec.decode(t.subarray(q, q + idSize));
      const name = dec.decode(t.subarray(q + idSize, q + idSize + nameSize));
      q += idSize + nameSize;
      p = (q + 7) & ~7;
      out.push({ id, name, vmStateSize, dateSec, dateNsec, vmClockNsec, ...(icount !== undefined ? { icount } : {}) });
    }
    return out;
  } finally {
    await file.close();
  }
}
