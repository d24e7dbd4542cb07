/**
 * Backing chains that loop (a → b → a, an image backed by itself, a → b → c
 * → a) and chains deeper than the policy allows. qemu-img 7.2 reports a loop
 * only in `info --backing-chain`; its map, check, convert and `qemu-io -r`
 * spin on such a chain, so for those commands the reference is the same
 * sentence said once. An image opened for writing whose chain comes back to
 * it fails on its own lock before any loop (the second open of the file does
 * not share writes), as QEMU's does: there the reference is QEMU.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { Fixture, golden, ours, words } from './harness.js';
import { BlockGraph, MemoryStorage, createMemoryDriver, qcow2Driver, rawDriver } from '../../src/node.js';
import { expectBlockError } from '../core/helpers.js';
import { readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

function build(_dir: string, sh: (cmd: string) => void): void {
  sh('qemu-img create -q -f qcow2 a.qcow2 1M');
  sh('qemu-img create -q -f qcow2 -b a.qcow2 -F qcow2 b.qcow2');
  sh('qemu-img rebase -u -b b.qcow2 -F qcow2 a.qcow2');
  sh('qemu-img create -q -f qcow2 self.qcow2 1M');
  sh('qemu-img rebase -u -b self.qcow2 -F qcow2 self.qcow2');
  sh('qemu-img create -q -f qcow2 x.qcow2 1M');
  sh('qemu-img create -q -f qcow2 -b x.qcow2 -F qcow2 y.qcow2');
  sh('qemu-img create -q -f qcow2 -b y.qcow2 -F qcow2 z.qcow2');
  sh('qemu-img rebase -u -b z.qcow2 -F qcow2 x.qcow2');
}

describe('backing chain loops', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture(build);
  });
  afterAll(() => fx.dispose());

  describe('as qemu-img says them', () => {
    for (const line of [
      'info --backing-chain a.qcow2',
      'info --backing-chain self.qcow2',
      'info --backing-chain y.qcow2',
      'info --backing-chain --output=json x.qcow2',
      'info a.qcow2',
    ]) {
      it(`img ${line}`, async () => {
        const g = await golden(fx, { tool: 'img', args: words(line) });
        expect(g.ours).toEqual(g.theirs);
      });
    }
    for (const [tool, line] of [
      ['io', "-c 'write 0 1' a.qcow2"],
      ['io', "-c 'read 0 1' self.qcow2"],
      ['img', 'commit y.qcow2'],
    ] as const) {
      it(`${tool} ${line}`, async () => {
        const g = await golden(fx, { tool, args: words(line) });
        expect(g.ours.stderr).toContain('Failed to get shared "write" lock');
        expect(g.ours).toEqual(g.theirs);
      });
    }
  });

  describe('said once where qemu-img spins', () => {
    // compare exits with 2 on errors, as qemu-img compare does.
    const cases: Array<[tool: 'img' | 'io', line: string, message: string, code?: number]> = [
      ['img', 'map a.qcow2', "diskworker img: Could not open 'a.qcow2': Backing file 'a.qcow2' creates an infinite loop"],
      ['img', 'check b.qcow2', "diskworker img: Could not open 'b.qcow2': Backing file 'b.qcow2' creates an infinite loop"],
      ['img', 'convert -O raw x.qcow2 out.raw', "diskworker img: Could not open 'x.qcow2': Backing file 'x.qcow2' creates an infinite loop"],
      ['img', 'compare self.qcow2 a.qcow2', "diskworker img: Could not open 'self.qcow2': Backing file 'self.qcow2' creates an infinite loop", 2],
      ['io', "-r -c 'read 0 1' y.qcow2", "diskworker io: can't open device y.qcow2: Backing file 'y.qcow2' creates an infinite loop"],
    ];
    for (const [tool, line, message, code = 1] of cases) {
      it(`${tool} ${line}`, async () => {
        const r = await ours(tool, words(line), fx.copy());
        expect(r).toEqual({ code, stdout: '', stderr: `${message}\n` });
      });
    }
  });

  /*
   *   top(qcow2) → m1 → m2 → ... → m7 (distinct images, no loop)
   *   maxDepth 4: one message naming the node where the limit was hit.
   */
  it('a chain deeper than the policy allows is one message, not one prefix per level', async () => {
    const storage = new MemoryStorage();
    const graph = new BlockGraph([createMemoryDriver(storage), rawDriver, qcow2Driver], 'memory');
    graph.backingPolicy = { ...graph.backingPolicy, maxDepth: 4 };
    // Build the chain with qemu-img in the fixture directory, then load it into memory.
    const dir = fx.copy();
    const sh = (c: string) => expect(spawnSync('sh', ['-c', c], { cwd: dir }).status).toBe(0);
    sh('qemu-img create -q -f qcow2 m7 1M');
    for (let i = 6; i >= 0; i--) sh(`qemu-img create -q -f qcow2 -b m${i + 1} -F qcow2 m${i} 1M`);
    for (let i = 0; i <= 7; i++) storage.create(`m${i}`).writeRaw(0, readFileSync(join(dir, `m${i}`)));
    const e = await expectBlockError(graph.open('memory:m0', { format: 'qcow2' }), 'EINVAL', /is deeper than 4 images/);
    expect(e.message).not.toContain('Could not open backing file');
    graph.backingPolicy = { ...graph.backingPolicy, maxDepth: 64 };
    const ok = await graph.open('memory:m0', { format: 'qcow2', readOnly: true });
    await ok.unref();
  });
});
