/**
 * What `img bitmap` leaves in the file, against qemu-img 7.2 on copies of the
 * same images: removing bitmaps frees their data clusters, tables and the old
 * directory at close, so `qemu-img check` (leaks, allocated clusters) is the
 * same as after qemu-img's removal and the file no longer; and
 * a persistent bitmap added to an empty (0-byte) image is lost at close with
 * QEMU's message, leaving the same bytes.
 */
import { describe, it, expect, afterAll } from 'vitest';
import { copyFileSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { normalize, ours, theirs, words } from './harness.js';
import { qemuImg, qemuImgTry, qemuIo, tempDir } from '../formats/qcow2/helpers.js';
import { infoBitmaps } from '../formats/qcow2/bitmap-persist.js';

const t = tempDir();
afterAll(() => t.cleanup());
const base = join(t.dir, 'base');
mkdirSync(base);
const img = (n: string) => join(base, n);
// 4 KiB clusters and 512-byte granules over 64 MiB: 16 KiB of bits, a table of 4 clusters.
qemuImg('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4096', img('s.qcow2'), '64M');
qemuImg('bitmap', '--add', '-g', '512', img('s.qcow2'), 'a');
qemuImg('bitmap', '--add', img('s.qcow2'), 'b');
qemuIo(img('s.qcow2'), ['write 0 1M', 'write 10M 3M', 'write 40M 64k']);
qemuImg('bitmap', '--add', '-g', '1k', '--disable', img('s.qcow2'), 'c');
qemuImg('create', '-q', '-f', 'qcow2', img('l.qcow2'), '256M');
qemuImg('bitmap', '--add', '-g', '512', img('l.qcow2'), 'big');
qemuIo(img('l.qcow2'), ['write 0 200M']);
qemuImg('create', '-q', '-f', 'qcow2', img('z.qcow2'), '0');

let run = 0;
function copies(): [string, string] {
  run++;
  const d: [string, string] = [join(t.dir, `q${run}`), join(t.dir, `o${run}`)];
  for (const x of d) {
    mkdirSync(x);
    for (const f of ['s.qcow2', 'l.qcow2', 'z.qcow2']) copyFileSync(img(f), join(x, f));
  }
  return d;
}

const clean = (s: string) => normalize(s).replace(/#block\d+/g, '#block');

/** qemu-img check's JSON without the file name. */
function checkJson(file: string): unknown {
  const r = qemuImgTry('check', '--output=json', file);
  const j = JSON.parse(r.out.slice(r.out.indexOf('{'), r.out.lastIndexOf('}') + 1)) as Record<string, unknown>;
  delete j['filename'];
  return j;
}

/** Command lines run one after the other on the same copy. */
const CASES: Array<{ file: string; lines: string[] }> = [
  { file: 's.qcow2', lines: ['--remove s.qcow2 a'] },
  { file: 's.qcow2', lines: ['--remove s.qcow2 b', '--remove s.qcow2 c', '--remove s.qcow2 a'] },
  { file: 's.qcow2', lines: ['--add -g 512 s.qcow2 n', '--remove s.qcow2 n'] },
  { file: 's.qcow2', lines: ['--add s.qcow2 n --remove'] },
  { file: 's.qcow2', lines: ['--remove s.qcow2 a', '--add -g 512 s.qcow2 a'] },
  { file: 'l.qcow2', lines: ['--remove l.qcow2 big'] },
  { file: 'l.qcow2', lines: ['--clear l.qcow2 big', '--remove l.qcow2 big'] },
  { file: 'z.qcow2', lines: ['--add z.qcow2 b'] },
  { file: 'z.qcow2', lines: ['--add z.qcow2 b', '--add -g 512 z.qcow2 c'] },
];

describe('img bitmap: what stays in the file, against qemu-img', () => {
  for (const c of CASES) {
    it(c.lines.join(' ; '), async () => {
      const [dq, dd] = copies();
      for (const line of c.lines) {
        const args = ['bitmap', ...words(line)];
        const q = theirs('img', args, dq);
        const o = await ours('img', args, dd);
        expect({ line, code: o.code, stdout: clean(o.stdout), stderr: clean(o.stderr) }).toEqual({ line, code: q.code, stdout: clean(q.stdout), stderr: clean(q.stderr) });
      }
      const fq = join(dq, c.file);
      const fo = join(dd, c.file);
      expect(infoBitmaps(fo)).toEqual(infoBitmaps(fq));
      // The same clusters in use and no leaks. Where they are differs: qemu-img rewrites
      // every bitmap at close (into the space the removal freed), we keep the clusters
      // of bitmaps whose bits did not change; neither file reaches past the other's end
      // and the original's.
      const [jo, jq] = [checkJson(fo) as Record<string, number>, checkJson(fq) as Record<string, number>];
      const endOf = (j: Record<string, number>) => j['image-end-offset']!;
      const limit = Math.max(endOf(jq), endOf(checkJson(img(c.file)) as Record<string, number>));
      expect(endOf(jo)).toBeLessThanOrEqual(limit);
      expect(statSync(fo).size).toBeLessThanOrEqual(Math.max(statSync(fq).size, statSync(img(c.file)).size));
      delete jo['image-end-offset'];
      delete jq['image-end-offset'];
      expect(jo).toEqual(jq);
      if (c.file === 'z.qcow2') {
        // Lost as in QEMU: the bytes are the same, no bitmap.
        expect(Buffer.compare(readFileSync(fo), readFileSync(fq))).toBe(0);
        expect(infoBitmaps(fo)).toEqual([]);
      }
    }, 30_000);
  }

  it('the lost-bitmap message is the one qemu-img prints', () => {
    const [dq] = copies();
    const q = theirs('img', ['bitmap', '--add', 'z.qcow2', 'b'], dq);
    expect(q.code).toBe(0);
    expect(q.stderr).toMatch(/^qemu-img: Lost persistent bitmaps during inactivation of node '#block\d+': No memory\n$/);
  });
});
