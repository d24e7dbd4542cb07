/**
 * Files count in whole 512-byte sectors, as in QEMU's block layer: an
 * odd-sized raw file shows its length rounded up (info, map with the tail as
 * a trailing hole, qemu-io's length and reads), create -f raw makes whole
 * sectors, and resize starts from the rounded length. Golden: same lines,
 * same exit code, same files (bytes and length).
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Fixture, golden, theirs, ours, words } from './harness.js';

describe('sector-rounded file lengths vs qemu-img / qemu-io 7.2', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture((_dir, sh) => {
      sh('head -c 777 /dev/urandom > odd.raw');
      sh('head -c 1537 /dev/urandom > odd2.raw');
      sh('head -c 512 /dev/urandom > even.raw');
      sh('qemu-img create -q -f qcow2 -b odd.raw -F raw top.qcow2');
    });
  });
  afterAll(() => fx.dispose());

  const img = [
    'info odd.raw',
    'info --output=json -f raw odd.raw',
    'info --output=json -f file odd2.raw',
    'map --output=json -f raw odd.raw',
    'map --output=json odd2.raw',
    'map odd.raw',
    'map --output=json top.qcow2',
    'info --backing-chain top.qcow2',
    'compare -f raw -F raw odd.raw even.raw',
    'check -f raw odd.raw',
    'measure -O qcow2 odd.raw',
  ];
  for (const line of img) {
    it(`img ${line}`, async () => {
      const g = await golden(fx, { tool: 'img', args: words(line) });
      expect(g.ours).toEqual(g.theirs);
    });
  }

  const io = [
    "-f raw -c length -c 'read -v 768 256' odd.raw",
    "-f raw -c 'read 0 1024' -c 'read 1024 1' odd2.raw",
    "-f raw -c 'write -P 7 1000 24' -c 'read -P 7 1000 24' odd.raw",
    "-c 'read -P 0 777 247' top.qcow2",
  ];
  for (const line of io) {
    it(`io ${line}`, async () => {
      const g = await golden(fx, { tool: 'io', args: words(line) });
      expect(g.ours).toEqual(g.theirs);
    });
  }

  // Commands that write files: the files must come out the same, length included.
  const writing: Array<[string, string]> = [
    ['create -f raw n.raw 1000', 'n.raw'],
    ['create -f raw n.raw 1', 'n.raw'],
    ['create -f file n.raw 513', 'n.raw'],
    ['resize -f raw odd.raw +1000', 'odd.raw'],
    ['resize -f raw odd2.raw 2000', 'odd2.raw'],
    ['convert -O raw odd.raw n.raw', 'n.raw'],
  ];
  for (const [line, file] of writing) {
    it(`img ${line} writes the same file`, async () => {
      const dq = fx.copy();
      const dd = fx.copy();
      const t = theirs('img', words(line), dq);
      const o = await ours('img', words(line), dd);
      expect({ code: o.code, stdout: o.stdout }).toEqual({ code: t.code, stdout: t.stdout });
      expect(readFileSync(join(dd, file))).toEqual(readFileSync(join(dq, file)));
    });
  }
});
