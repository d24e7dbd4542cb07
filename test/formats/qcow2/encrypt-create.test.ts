/**
 * qcow2 encryption cases of QEMU's iotests 134, 188, 198 and 263 vs qemu-img /
 * qemu-io 7.2: legacy AES images created through ours (encryption=on) read
 * in qemu-io and the other way round, with the same create errors; convert
 * to a LUKS target with metadata preallocation compares identical (the new
 * target opens with its key secret, and is not taken as zero-initialised);
 * an overlay over an encrypted backing file is created without its key;
 * commit keeps the overlay's LUKS header; info names a keyed image json:{...}.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { Fixture, hasQemu, normalize, ours, theirs, type RunResult } from '../../cli/harness.js';

function steady(tool: 'img' | 'io', args: string[], dir: string): RunResult {
  let r = theirs(tool, args, dir);
  for (let i = 0; i < 12 && /Unable to get accurate CPU usage/.test(r.stderr); i++) r = theirs(tool, args, dir);
  return r;
}
const S0 = ['--object', 'secret,id=sec0,data=astrochicken'];
const S1 = ['--object', 'secret,id=sec1,data=furby'];
const spec = (f: string, s = 'sec0') => `driver=qcow2,file.filename=${f},encrypt.key-secret=${s}`;
const both = (r: RunResult) => ({ code: r.code, out: normalize(r.stdout + r.stderr) });

it('compares against qemu-img 7.2', () => {
  expect(hasQemu()).toBe(true);
});

describe('qcow2 encryption creation vs qemu-img', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture(() => undefined);
  });
  afterAll(() => fx.dispose());

  it('legacy AES: created either side, written, read on the other', async () => {
    const dir = fx.copy();
    const create = (f: string) => ['create', '-f', 'qcow2', ...S0, '-o', 'encryption=on,encrypt.key-secret=sec0', f, '1M'];
    const a = await ours('img', create('ours.qcow2'), dir);
    const b = steady('img', create('theirs.qcow2'), dir);
    expect(both(a).out.replace('ours', 'X')).toBe(both(b).out.replace('theirs', 'X'));
    const w = (f: string) => [...S0, '-c', 'write -P 0x42 512 1024', '-c', 'write -P 0x43 65024 1024', '--image-opts', spec(f)];
    const r = (f: string) => [...S0, '-c', 'read -P 0x42 512 1024', '-c', 'read -P 0x43 65024 1024', '-c', 'read -P 0 1536 1024', '--image-opts', spec(f)];
    expect((await ours('io', w('ours.qcow2'), dir)).code).toBe(0);
    expect(theirs('io', w('theirs.qcow2'), dir).code).toBe(0);
    expect(both(theirs('io', r('ours.qcow2'), dir))).toEqual(both(theirs('io', r('theirs.qcow2'), dir)));
    expect(both(await ours('io', r('theirs.qcow2'), dir))).toEqual(both(theirs('io', r('theirs.qcow2'), dir)));
    expect(theirs('io', r('ours.qcow2'), dir).stdout).not.toMatch(/verification failed/);
    const errors = [
      ['create', '-f', 'qcow2', ...S0, '-o', 'encrypt.format=aes,encrypt.key-secret=sec0,encrypt.cipher-alg=aes-128', 'e.qcow2', '1M'],
      ['create', '-f', 'qcow2', '-o', 'encrypt.format=aes', 'e.qcow2', '1M'],
      ['create', '-f', 'qcow2', '-o', 'encryption=on,encrypt.format=luks', 'e.qcow2', '1M'],
      ['measure', '-O', 'qcow2', '-o', 'encryption=on', '--size', '1M'],
    ];
    for (const args of errors) expect(both(await ours('img', args, dir))).toEqual(both(steady('img', args, dir)));
  });

  it('convert to LUKS with preallocation=metadata compares identical; info names the keyed image json:', async () => {
    const dir = fx.copy();
    theirs('img', ['create', '-q', '-f', 'qcow2', 'src.qcow2', '4M'], dir);
    theirs('io', ['-c', 'write -P 0x11 64k 64k', 'src.qcow2'], dir);
    const conv = ['convert', '-O', 'qcow2', ...S0, '-o', 'encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10,preallocation=metadata', 'src.qcow2', 'dst.qcow2'];
    expect(both(await ours('img', conv, dir))).toEqual({ code: 0, out: '' });
    const cmp = ['compare', ...S0, '--image-opts', `${spec('src.qcow2')}`, spec('dst.qcow2')];
    expect(both(theirs('img', cmp, dir))).toEqual({ code: 0, out: 'Images are identical.\n' });
    const info = ['info', ...S0, '--image-opts', spec('dst.qcow2')];
    const first = (r: RunResult) => r.stdout.split('\n')[0];
    expect(first(await ours('img', info, dir))).toBe(first(steady('img', info, dir)));
  });

  it('overlay over an encrypted base: created without the base key, commit keeps its header', async () => {
    const dir = fx.copy();
    steady('img', ['create', '-q', '-f', 'qcow2', ...S0, '-o', 'encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10', 'base.qcow2', '1M'], dir);
    const overlay = ['create', '-f', 'qcow2', ...S1, '-o', 'encrypt.format=luks,encrypt.key-secret=sec1,encrypt.iter-time=10', '-b', 'base.qcow2', '-F', 'qcow2', 'top.qcow2'];
    const made = await ours('img', overlay, dir);
    expect(made.code).toBe(0);
    expect(made.stdout).toMatch(/size=1048576 backing_file=base.qcow2/);
    const chain = `${spec('top.qcow2', 'sec1')},backing.driver=qcow2,backing.file.filename=base.qcow2,backing.encrypt.key-secret=sec0`;
    expect((await ours('io', [...S0, ...S1, '-c', 'write -P 0x9 0 1M', '--image-opts', chain], dir)).code).toBe(0);
    expect(both(await ours('img', ['commit', ...S0, ...S1, '--image-opts', chain], dir))).toEqual({ code: 0, out: 'Image committed.\n' });
    const read = [...S0, ...S1, '-c', 'read -P 0x9 0 1M', '--image-opts', chain];
    const r = theirs('io', read, dir);
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/^read 1048576\/1048576/);
    expect(theirs('io', [...S0, '-c', 'read -P 0x9 0 1M', '--image-opts', spec('base.qcow2')], dir).stdout).not.toMatch(/verification failed/);
  });

  it('measure of a qcow2 source with backing_file=x or LUKS encryption as qemu-img (iotest 178)', async () => {
    const dir = fx.copy();
    theirs('img', ['create', '-q', '-f', 'qcow2', 'm.qcow2', '1G'], dir);
    theirs('io', ['-c', 'write 0 64k', '-c', 'write 128M 63k', 'm.qcow2'], dir);
    for (const o of [['-o', 'backing_file=x'], [...S0, '-o', 'encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10'], []]) {
      const args = ['measure', '--output=json', ...o, '-f', 'qcow2', '-O', 'qcow2', 'm.qcow2'];
      expect(both(await ours('img', args, dir))).toEqual(both(steady('img', args, dir)));
    }
  });
});
