/**
 * Snapshot ids and names are C strings in QEMU: a NUL byte inside the stored
 * bytes ends them, for listings, lookups and the lengths written when the
 * table is rewritten (iotest 261's entries of 65535 NUL bytes list as empty).
 * Compared with qemu-img 7.2 on copies of the same poked image.
 */
import { describe, expect, it } from 'vitest';
import { copyFileSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hasQemu, normalize, ours, theirs } from '../../cli/harness.js';

interface Entry {
  id: Buffer;
  name: Buffer;
  /** Offset of the entry's name in the file. */
  nameAt: number;
}

/** The snapshot table's entries as stored (raw id and name bytes). */
function entries(file: string): Entry[] {
  const b = readFileSync(file);
  const count = b.readUInt32BE(60);
  let pos = Number(b.readBigUInt64BE(64));
  const out: Entry[] = [];
  for (let i = 0; i < count; i++) {
    const idLen = b.readUInt16BE(pos + 12);
    const nameLen = b.readUInt16BE(pos + 14);
    const extra = b.readUInt32BE(pos + 36);
    const idAt = pos + 40 + extra;
    out.push({ id: b.subarray(idAt, idAt + idLen), name: b.subarray(idAt + idLen, idAt + idLen + nameLen), nameAt: idAt + idLen });
    pos = Math.ceil((idAt + idLen + nameLen) / 8) * 8;
  }
  return out;
}

/** Dates and clocks differ between runs. */
const undated = (s: string) => s.replace(/\d{4}-\d\d-\d\d \d\d:\d\d:\d\d/g, '<date>').replace(/\d\d\d:\d\d:\d\d\.\d{3}/g, '<clock>').replace(/"date-(sec|nsec)": \d+/g, '"date-$1": <n>');

describe.skipIf(!hasQemu())('qcow2 snapshot ids and names end at a NUL byte, as in QEMU', () => {
  it('lists, finds and rewrites them like qemu-img', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dw-sncstr-'));
    try {
      const base = join(dir, 'base.qcow2');
      theirs('img', ['create', '-q', '-f', 'qcow2', base, '1M'], dir);
      theirs('img', ['snapshot', '-c', 'abXcd', base], dir);
      theirs('img', ['snapshot', '-c', 'second', base], dir);
      // "abXcd" becomes "ab\0cd": stored 5 bytes, a C string of 2.
      const first = entries(base)[0]!;
      expect(first.name.toString()).toBe('abXcd');
      const fd = openSync(base, 'r+');
      writeSync(fd, Buffer.from([0]), 0, 1, first.nameAt + 2);
      closeSync(fd);
      for (const args of [['snapshot', '-l'], ['info'], ['info', '--output=json'], ['check']]) {
        const q = theirs('img', [...args, base], dir);
        const o = await ours('img', [...args, base], dir);
        expect(undated(normalize(o.stdout)), args.join(' ')).toBe(undated(normalize(q.stdout)));
        expect(normalize(o.stderr), args.join(' ')).toBe(normalize(q.stderr));
        expect(o.code, args.join(' ')).toBe(q.code);
      }
      // A lookup by the C string finds it; one by the stored bytes does not.
      for (const [name, file] of [['ab', 'a'], ['abXcd', 'b']] as const) {
        const qf = join(dir, `q-${file}.qcow2`);
        const of = join(dir, `o-${file}.qcow2`);
        copyFileSync(base, qf);
        copyFileSync(base, of);
        const q = theirs('img', ['snapshot', '-a', name, qf], dir);
        const o = await ours('img', ['snapshot', '-a', name, of], dir);
        expect(normalize(o.stderr), `-a ${name}`).toBe(normalize(q.stderr));
        expect(o.code, `-a ${name}`).toBe(q.code);
      }
      // A rewrite of the table (a new snapshot) stores the C strings' lengths, as QEMU.
      const qf = join(dir, 'q.qcow2');
      const of = join(dir, 'o.qcow2');
      copyFileSync(base, qf);
      copyFileSync(base, of);
      expect(theirs('img', ['snapshot', '-c', 'third', qf], dir).code).toBe(0);
      expect((await ours('img', ['snapshot', '-c', 'third', of], dir)).code).toBe(0);
      const names = (f: string) => entries(f).map((e) => [e.id.toString('hex'), e.name.toString('hex')]);
      expect(names(of)).toEqual(names(qf));
      expect(names(of)[0]).toEqual([Buffer.from('1').toString('hex'), Buffer.from('ab').toString('hex')]);
      expect(undated(theirs('img', ['snapshot', '-l', of], dir).stdout)).toBe(undated(theirs('img', ['snapshot', '-l', qf], dir).stdout));
      expect(theirs('img', ['check', of], dir).code).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
