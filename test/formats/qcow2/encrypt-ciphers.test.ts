/**
 * qcow2 with encrypt.format=luks and ciphers other than AES vs qemu-img /
 * qemu-io 7.2: a Twofish image we create and write reads in qemu-io, gets
 * the same qemu-img check report as QEMU's own after the same writes, and
 * qemu-img info names the same cipher; Serpent and CAST5 images qemu-img
 * creates and qemu-io writes convert to raw byte-identical through ours
 * (qcow2's LUKS numbers its sectors by host offset: this crosses the
 * cluster mapping), and what ours writes into them reads in qemu-io.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Fixture, hasQemu, normalize, ours, theirs, type RunResult } from '../../cli/harness.js';

function steady(tool: 'img' | 'io', args: string[], dir: string): RunResult {
  let r = theirs(tool, args, dir);
  for (let i = 0; i < 12 && /Unable to get accurate CPU usage/.test(r.stderr); i++) r = theirs(tool, args, dir);
  return r;
}
const S0 = ['--object', 'secret,id=sec0,data=serpentine'];
const spec = (f: string) => `driver=qcow2,file.filename=${f},encrypt.key-secret=sec0`;
const both = (r: RunResult) => ({ code: r.code, out: normalize(r.stdout + r.stderr) });
const cmds = (list: string[]) => list.flatMap((c) => ['-c', c]);
const WRITES = ['write -P 0x42 512 1024', 'write -P 0x43 65024 1024', 'write -P 0x44 300k 70k'];
const READS = [...WRITES.map((w) => w.replace('write', 'read')), 'read -P 0 1536 1024'];
const encryptionLines = (text: string) =>
  normalize(text)
    .split('\n')
    .filter((l) => /cipher|ivgen|hash alg|format: luks/.test(l))
    .join('\n');

it('compares against qemu-img 7.2', () => {
  expect(hasQemu()).toBe(true);
});

describe('qcow2 encrypt.format=luks with Twofish, Serpent, CAST5', () => {
  const THEIRS = [
    { name: 'serpent', o: 'encrypt.cipher-alg=serpent-128,encrypt.cipher-mode=cbc,encrypt.ivgen-alg=essiv,encrypt.ivgen-hash-alg=md5' },
    { name: 'cast5', o: 'encrypt.cipher-alg=cast5-128,encrypt.cipher-mode=cbc,encrypt.ivgen-alg=plain64' },
  ];
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture((_dir, sh) => {
      for (const c of THEIRS) {
        const create = `qemu-img create -q -f qcow2 ${S0.join(' ')} -o encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10,${c.o} ${c.name}.qcow2 1M`;
        sh(Array(12).fill(create).join(' || '));
        sh(`qemu-io ${S0.join(' ')} ${WRITES.map((w) => `-c '${w}'`).join(' ')} --image-opts ${spec(`${c.name}.qcow2`)}`);
      }
    });
  });
  afterAll(() => fx.dispose());

  it('twofish-256 xts: created and written through ours, read in qemu-io, checked by qemu-img', async () => {
    const dir = fx.copy();
    const create = (f: string) => ['create', '-q', '-f', 'qcow2', ...S0, '-o', 'encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10,encrypt.cipher-alg=twofish-256', f, '1M'];
    expect(both(await ours('img', create('ours.qcow2'), dir))).toEqual({ code: 0, out: '' });
    expect(steady('img', create('theirs.qcow2'), dir).code).toBe(0);
    expect((await ours('io', [...S0, ...cmds(WRITES), '--image-opts', spec('ours.qcow2')], dir)).code).toBe(0);
    const r = theirs('io', [...S0, ...cmds(READS.slice(0, 3)), '--image-opts', spec('ours.qcow2')], dir);
    expect(r.stderr).toBe('');
    expect(r.stdout).not.toMatch(/verification failed/);
    expect(r.stdout.match(/^read /gm)).toHaveLength(3);
    // The same writes through qemu-io into QEMU's image: qemu-img check says the same of both.
    expect(theirs('io', [...S0, ...cmds(WRITES), '--image-opts', spec('theirs.qcow2')], dir).code).toBe(0);
    const check = (f: string) => both(steady('img', ['check', ...S0, '--image-opts', spec(f)], dir));
    expect(check('ours.qcow2')).toEqual(check('theirs.qcow2'));
    expect(check('ours.qcow2').out).toMatch(/^No errors were found on the image\.$/m);
    const info = (f: string) => encryptionLines(steady('img', ['info', f], dir).stdout);
    expect(info('ours.qcow2')).toBe(info('theirs.qcow2'));
    expect(info('ours.qcow2')).toMatch(/cipher alg: twofish-256/);
  });

  for (const c of THEIRS) {
    it(`${c.name}: QEMU's image converts to raw byte-identical through ours, reads the same`, async () => {
      const dir = fx.copy();
      const convert = (out: string) => ['convert', ...S0, '-O', 'raw', '--image-opts', spec(`${c.name}.qcow2`), out];
      expect(steady('img', convert('theirs.raw'), dir).code).toBe(0);
      expect(await ours('img', convert('ours.raw'), dir)).toEqual({ code: 0, stdout: '', stderr: '' });
      expect(readFileSync(join(dir, 'ours.raw')).equals(readFileSync(join(dir, 'theirs.raw')))).toBe(true);
      const read = [...S0, ...cmds(READS), '--image-opts', spec(`${c.name}.qcow2`)];
      expect(both(await ours('io', read, dir))).toEqual(both(theirs('io', read, dir)));
      // Written by ours into QEMU's image, read back in qemu-io.
      expect((await ours('io', [...S0, '-c', 'write -P 0x55 128k 4k', '--image-opts', spec(`${c.name}.qcow2`)], dir)).code).toBe(0);
      const back = theirs('io', [...S0, '-c', 'read -P 0x55 128k 4k', '-c', 'read -P 0x42 512 1024', '--image-opts', spec(`${c.name}.qcow2`)], dir);
      expect(back.stdout).not.toMatch(/verification failed/);
      expect(back.stdout.match(/^read /gm)).toHaveLength(2);
    });
  }
});
