/**
 * How the tools name and follow protocols, against qemu-img / qemu-io 7.2:
 * the probed-raw warning names the file as its node names itself (`x.raw`
 * for `file:x.raw` and for a json: name), and a backing file on another
 * protocol than its image (`null-co://` under a file) opens, as in QEMU (the
 * library's own graphs keep a backing file on its image's protocol unless
 * told otherwise; the tools follow qemu-img).
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { Fixture, golden, words } from './harness.js';

describe('protocol names and backing files on other protocols vs qemu-img / qemu-io 7.2', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture((_dir, sh) => {
      sh('qemu-img create -q -f raw x.raw 1M');
      sh('qemu-img create -q -f qcow2 -b null-co:// -F raw over-null.qcow2 1M');
      sh('qemu-img create -q -f qcow2 -b \'json:{"driver":"raw","file":{"driver":"null-co","read-zeroes":true,"size":1048576}}\' -F raw over-json.qcow2 1M');
    });
  }, 60_000);
  afterAll(() => fx.dispose());

  const cases: Array<['img' | 'io', string, string[]?]> = [
    ['io', "-c 'read 0 1' file:x.raw"],
    ['io', `-c 'read 0 1' 'json:{"file":{"driver":"file","filename":"x.raw"}}'`],
    ['io', "-c 'read 0 1' ./x.raw"],
    ['io', "-c 'write -P 1 0 4k' -c 'read -P 0 64k 4k' -c map over-json.qcow2", ['over-json.qcow2']],
    ['io', "-c 'read -P 0 0 4k' over-null.qcow2"],
    ['img', 'info --backing-chain over-null.qcow2'],
    ['img', 'info --output=json --backing-chain over-json.qcow2'],
    ['img', 'create -f qcow2 -b null-co:// -F raw new.qcow2', ['new.qcow2']],
    ['img', 'map --output=json over-json.qcow2'],
  ];
  for (const [tool, line, same] of cases) {
    it(`${tool} ${line}`, async () => {
      const g = await golden(fx, { tool, args: words(line), ...(same ? { sameImages: same } : {}) });
      expect(g.ours).toEqual(g.theirs);
      expect(g.imageDiffs).toEqual([]);
    });
  }
});
