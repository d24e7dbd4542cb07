/**
 * `img bitmap` against qemu-img 7.2: the same command lines on copies of the
 * same images give the same stdout, stderr (node names aside) and exit
 * code, and leave the same bitmaps (qemu-img info) with the same dirty
 * extents (qemu-nbd).
 */
import { describe, it, expect, afterAll } from 'vitest';
import { copyFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { normalize, ours, theirs, words } from './harness.js';
import { qemuImg, qemuIo, tempDir } from '../formats/qcow2/helpers.js';
import { infoBitmaps, qemuDirtyExtents } from '../formats/qcow2/bitmap-persist.js';

const t = tempDir();
afterAll(() => t.cleanup());
const base = join(t.dir, 'base');
mkdirSync(base);
const img = (n: string) => join(base, n);
qemuImg('create', '-q', '-f', 'qcow2', img('a.qcow2'), '10M');
qemuImg('bitmap', '--add', img('a.qcow2'), 'b0');
qemuImg('bitmap', '--add', '-g', '512', '--disable', img('a.qcow2'), 'small');
qemuIo(img('a.qcow2'), ['write 100k 10k', 'write 3M 1M']);
qemuImg('bitmap', '--add', img('a.qcow2'), 'later');
qemuIo(img('a.qcow2'), ['write 5M 70k']);
qemuImg('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4096', img('c.qcow2'), '10M');
qemuImg('bitmap', '--add', '-g', '8k', img('c.qcow2'), 'src');
qemuIo(img('c.qcow2'), ['write 9M 3k', 'write 0 1']);
qemuImg('create', '-q', '-f', 'qcow2', img('big.qcow2'), '20M');
qemuImg('bitmap', '--add', img('big.qcow2'), 'bb');
qemuImg('create', '-q', '-f', 'qcow2', '-o', 'compat=0.10', img('v2.qcow2'), '1M');
qemuImg('create', '-q', '-f', 'raw', img('r.img'), '1M');

let run = 0;
function copies(): [string, string] {
  run++;
  const d: [string, string] = [join(t.dir, `q${run}`), join(t.dir, `o${run}`)];
  for (const x of d) {
    mkdirSync(x);
    for (const f of ['a.qcow2', 'c.qcow2', 'big.qcow2', 'v2.qcow2', 'r.img']) copyFileSync(img(f), join(x, f));
  }
  return d;
}

const clean = (s: string) => normalize(s).replace(/#block\d+/g, '#block');

const CASES = [
  '--add a.qcow2 n1',
  '--add -g 4k a.qcow2 n1',
  '--add -g 2G a.qcow2 n1',
  '--add --disable -g 1M a.qcow2 n1',
  '--disable --add a.qcow2 n1',
  '--add a.qcow2 b0',
  '--add -g 1000 a.qcow2 n1',
  '--add -g 256 a.qcow2 n1',
  '--add -g 4G a.qcow2 n1',
  '--add -g abc a.qcow2 n1',
  '--add -g 0 a.qcow2 n1',
  '--add a.qcow2 ' + 'x'.repeat(1024),
  '--add v2.qcow2 x',
  '--add -f raw r.img x',
  '--remove a.qcow2 b0',
  '--remove a.qcow2 nope',
  '--clear a.qcow2 b0',
  '--clear a.qcow2 nope',
  '--enable a.qcow2 small',
  '--disable a.qcow2 b0',
  '--merge later a.qcow2 small',
  '--merge small a.qcow2 b0',
  '--merge nope a.qcow2 b0',
  '--merge b0 a.qcow2 nope',
  '--merge src -b c.qcow2 -F qcow2 a.qcow2 b0',
  '--merge src -b c.qcow2 a.qcow2 small',
  '--merge bb -b big.qcow2 -F qcow2 a.qcow2 b0',
  '--clear --merge later --disable a.qcow2 b0',
  '--add --merge b0 --disable a.qcow2 fresh',
  '--add --remove --add a.qcow2 n1',
  '--enable --remove a.qcow2 small',
  '--remove --clear a.qcow2 b0',
  'a.qcow2 b0',
  '-g 4096 --clear a.qcow2 b0',
  '-F qcow2 --clear a.qcow2 b0',
  '-b c.qcow2 --clear a.qcow2 b0',
  '--clear a.qcow2',
  '--clear a.qcow2 b0 extra',
  '--merge',
  '--bogus a.qcow2 b0',
  '--clear nonexist.qcow2 b0',
];

describe('img bitmap against qemu-img', () => {
  for (const line of CASES) {
    it(`img bitmap ${line.length > 80 ? line.slice(0, 60) + '...' : line}`, async () => {
      const [dq, dd] = copies();
      const args = ['bitmap', ...words(line)];
      const q = theirs('img', args, dq);
      const o = await ours('img', args, dd);
      expect({ code: o.code, stdout: clean(o.stdout), stderr: clean(o.stderr) }).toEqual({
        code: q.code,
        stdout: clean(q.stdout),
        stderr: clean(q.stderr),
      });
      const iq = infoBitmaps(join(dq, 'a.qcow2'));
      expect(infoBitmaps(join(dd, 'a.qcow2'))).toEqual(iq);
      for (const b of iq) {
        if (b.flags.includes('in-use')) continue;
        const a = join(dq, 'a.qcow2');
        const c = join(dd, 'a.qcow2');
        expect(await qemuDirtyExtents(c, b.name, `${c}.sock`), `extents of ${b.name}`).toEqual(await qemuDirtyExtents(a, b.name, `${a}.sock`));
      }
    }, 20_000);
  }
});
