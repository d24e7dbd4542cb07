/**
 * Malformed VDI images, made by patching one qemu-img made: where QEMU
 * refuses a header, we refuse it with its message and exit code (img info,
 * with and without -f, and qemu-io); where QEMU opens it, we read and check
 * it as QEMU does. Beyond QEMU, a block map that lies past the end of the
 * file is refused at open (QEMU would read zeros: every block in slot 0,
 * after allocating up to 2 GiB), and writes that would overwrite the header,
 * the map or a block in use are refused with a BlockError naming the values
 * (QEMU performs them and damages the image).
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Fixture, hasQemu, ours, theirs, normalize } from '../../cli/harness.js';
import { BlockBackend, createNodeGraph } from '../../../src/node.js';
import { expectBlockError, memoryGraph } from '../../core/helpers.js';
import { vdiDriver } from '../../../src/formats/vdi/vdi.js';
import { both, F, ioLine, MiB } from './helpers.js';

type Edit = (b: Buffer) => Buffer | void;

/** Images QEMU refuses: we must refuse them alike. */
const REFUSED: Record<string, Edit> = {
  'bad-signature': (b) => void b.writeUInt32LE(0x12345678, F.signature),
  'version-1.0': (b) => void b.writeUInt32LE(0x00010000, F.version),
  'version-2.1': (b) => void b.writeUInt32LE(0x00020001, F.version),
  'unaligned-map': (b) => void b.writeUInt32LE(0x201, F.offsetBmap),
  'unaligned-data': (b) => void b.writeUInt32LE(0x601, F.offsetData),
  'sector-4096': (b) => void b.writeUInt32LE(4096, F.sectorSize),
  'block-2M': (b) => void b.writeUInt32LE(2 * MiB, F.blockSize),
  'block-0': (b) => void b.writeUInt32LE(0, F.blockSize),
  'disk-past-map': (b) => void b.writeBigUInt64LE(BigInt(3 * MiB + 1), F.diskSize),
  'disk-2^63': (b) => void b.writeBigUInt64LE(1n << 63n, F.diskSize),
  'disk-max+1': (b) => void b.writeBigUInt64LE(0x1fffff8000001n, F.diskSize),
  'link-uuid': (b) => void (b[F.uuidLink + 3] = 1),
  'parent-uuid': (b) => void (b[F.uuidParent + 15] = 0xff),
  'too-many-blocks': (b) => void b.writeUInt32LE(0x1fffff81, F.blocksInImage),
  'cut-300': (b) => b.subarray(0, 300),
  'cut-0': (b) => b.subarray(0, 0),
};

/** Images QEMU opens as they are: we read and check them as it does. */
const OPENED: Record<string, Edit> = {
  'odd-size': (b) => void b.writeBigUInt64LE(BigInt(3 * MiB - 777), F.diskSize),
  'size-0-of-3-blocks': (b) => void b.writeBigUInt64LE(0n, F.diskSize),
  'header-size-0': (b) => void b.writeUInt32LE(0, F.headerSize),
  'type-7': (b) => void b.writeUInt32LE(7, F.imageType),
  'shared-slot': (b) => {
    b.writeUInt32LE(0, 512 + 4 * 2);
    b.writeUInt32LE(2, F.blocksAllocated);
  },
  'slot-too-large': (b) => {
    b.writeUInt32LE(7, 512 + 4 * 2);
    b.writeUInt32LE(8, F.blocksAllocated);
  },
  'count-mismatch': (b) => void b.writeUInt32LE(5, F.blocksAllocated),
  'discarded-entry': (b) => void b.writeUInt32LE(0xfffffffe, 512 + 4 * 0),
  // The last slots before the two special entries: no run of slots continues into them.
  'slot-before-discarded': (b) => {
    b.writeUInt32LE(0xfffffffd, 512 + 4 * 0);
    b.writeUInt32LE(0xfffffffe, 512 + 4 * 1);
    b.writeUInt32LE(0xffffffff, 512 + 4 * 2);
  },
  'slot-past-eof': (b) => {
    b.writeUInt32LE(40, 512 + 4 * 2);
    b.writeUInt32LE(41, F.blocksAllocated);
  },
};

/** Images QEMU opens and would damage on the next new block: we read them alike, refuse writes. */
const UNWRITABLE: Record<string, { edit: Edit; why: RegExp }> = {
  'map-over-header': { edit: (b) => void b.writeUInt32LE(0, F.offsetBmap), why: /block map at offset 0x0 overlaps the 512-byte header/ },
  'data-over-map': { edit: (b) => void b.writeUInt32LE(0x200, F.offsetData), why: /data area at offset 0x200 does not start after the block map \(0x200 to 0x400\)/ },
  'slot-not-below-count': { edit: (b) => void b.writeUInt32LE(0, F.blocksAllocated), why: /block 1 is in slot 0, not below blocks_allocated 0/ },
};

/** Images QEMU opens that we refuse at open: the map is not in the file. */
const TRUNCATED: Record<string, { edit: Edit; why: RegExp }> = {
  'cut-after-header': { edit: (b) => b.subarray(0, 512), why: /VDI block map of 3 entries at offset 0x200 ends at 524, beyond the end of the file \(512 bytes\)/ },
  'map-past-eof': {
    edit: (b) => void b.writeUInt32LE(0x200000, F.offsetBmap),
    why: /VDI block map of 3 entries at offset 0x200000 ends at 2097164, beyond the end of the file \(1049600 bytes\)/,
  },
  'huge-map-small-file': {
    edit: (b) => {
      b.writeUInt32LE(0x1fffff80, F.blocksInImage);
      b.writeBigUInt64LE(BigInt(MiB), F.diskSize);
    },
    why: /VDI block map of 536870784 entries at offset 0x200 ends at 2147483648, beyond the end of the file/,
  },
};

function build(dir: string, sh: (cmd: string) => void): void {
  sh('qemu-img create -q -f vdi base.vdi 3M');
  sh(`qemu-io ${ioLine(['write -P 0x41 1M 4k'], 'base.vdi')} >/dev/null`);
  const all: Record<string, Edit> = { ...REFUSED, ...OPENED };
  for (const [k, v] of Object.entries(UNWRITABLE)) all[k] = v.edit;
  for (const [k, v] of Object.entries(TRUNCATED)) all[k] = v.edit;
  for (const [name, edit] of Object.entries(all)) {
    const b = readFileSync(join(dir, 'base.vdi'));
    writeFileSync(join(dir, `${name}.vdi`), edit(b) ?? b);
  }
}

it('compares against qemu-img 7.2', () => {
  expect(hasQemu()).toBe(true);
});

describe('malformed vdi images vs qemu-img 7.2', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture(build);
  }, 60_000);
  afterAll(() => fx.dispose());

  for (const name of Object.keys(REFUSED)) {
    const f = `${name}.vdi`;
    it(`${name}: refused with qemu-img's message and exit code`, async () => {
      for (const line of [`info -f vdi ${f}`, `info ${f}`, `check -f vdi ${f}`]) {
        const r = await both(fx, 'img', line);
        expect(r.ours, line).toEqual(r.theirs);
      }
      const r = await both(fx, 'io', ioLine(['read 0 512'], f));
      expect(r.ours).toEqual(r.theirs);
      expect(r.ours.code).toBe(1);
    });
  }

  for (const name of Object.keys(OPENED)) {
    const f = `${name}.vdi`;
    it(`${name}: opened, read and checked as qemu-img does`, async () => {
      for (const line of [`info ${f}`, `map --output=json ${f}`, `check ${f}`, `check --output=json ${f}`]) {
        const r = await both(fx, 'img', line);
        expect(r.ours, line).toEqual(r.theirs);
      }
      const r = await both(fx, 'io', ioLine(['read -v 1048576 32', 'read -P 0 0 4096', 'read -v 2097152 16', 'alloc 0 3M'], f));
      expect(r.ours).toEqual(r.theirs);
    });
  }

  for (const [name, { why }] of Object.entries(UNWRITABLE)) {
    const f = `${name}.vdi`;
    it(`${name}: read as qemu-img reads it, writes refused naming the values`, async () => {
      for (const line of [`info ${f}`, `check ${f}`]) {
        const r = await both(fx, 'img', line);
        expect(r.ours, line).toEqual(r.theirs);
      }
      const r = await both(fx, 'io', ioLine(['read -v 1048576 32', 'read -v 0 16'], f));
      expect(r.ours).toEqual(r.theirs);
      const d = fx.copy();
      const before = readFileSync(join(d, f));
      const o = await ours('io', ['-f', 'vdi', '-c', 'write -P 9 2M 4k', f], d);
      expect(normalize(o.stdout)).toBe('write failed: Input/output error\n');
      expect(readFileSync(join(d, f)).equals(before)).toBe(true);
      const graph = createNodeGraph();
      const bb = await BlockBackend.open(graph, join(d, f), { format: 'vdi' });
      try {
        await expectBlockError(bb.write(2 * MiB, new Uint8Array(512)), 'EIO', why);
      } finally {
        await bb.close();
      }
    });
  }

  for (const [name, { why }] of Object.entries(TRUNCATED)) {
    const f = `${name}.vdi`;
    it(`${name}: refused at open (the block map is not in the file)`, async () => {
      const d = fx.copy();
      const o = await ours('img', ['info', f], d);
      expect(o.code).toBe(1);
      expect(o.stderr).toMatch(why);
      expect(o.stderr).toMatch(new RegExp(`^diskworker img: Could not open '${f}': `));
      const graph = createNodeGraph();
      const err = await expectBlockError(BlockBackend.open(graph, join(d, f), { format: 'vdi', readOnly: true }), 'EINVAL', why);
      expect(err.context.offset).toBe(name === 'map-past-eof' ? 0x200000 : 512);
    });
  }
});

describe('vdi on the memory back end', () => {
  it('creates, writes and reads through the library API, refusing nothing QEMU allows', async () => {
    const { graph } = memoryGraph([vdiDriver]);
    await graph.getDriver('vdi').create!({
      graph,
      filename: 'memory:m.vdi',
      options: new (await import('../../../src/core/options.js')).OptionReader({ size: 5 * MiB + 1 }, "Block format 'vdi'"),
    });
    const bb = await BlockBackend.open(graph, 'memory:m.vdi', { format: 'vdi' });
    try {
      expect(bb.length).toBe(5 * MiB + 512);
      const data = new Uint8Array(3 * MiB).map((_, i) => (i * 7) & 0xff);
      // Two writes in flight over the same new blocks: each block gets one slot, the later data wins.
      await Promise.all([bb.write(MiB - 100, data), bb.write(2 * MiB, new Uint8Array(10).fill(0xee))]);
      const back = await bb.read(MiB - 100, 3 * MiB);
      const want = data.slice();
      want.fill(0xee, MiB + 100, MiB + 110);
      expect(Buffer.from(back).equals(Buffer.from(want))).toBe(true);
      expect(Buffer.from(await bb.read(0, 1000)).equals(Buffer.alloc(1000))).toBe(true);
      const img = bb.node.instance;
      const c = await img.check!({ leaks: false, errors: false });
      expect(c).toMatchObject({ corruptions: 0, messages: [] });
      await expectBlockError(img.check!({ leaks: true, errors: true }), 'ENOTSUP', /does not support checks/);
      await expectBlockError(bb.truncate(6 * MiB), 'ENOTSUP');
    } finally {
      await bb.close();
    }
  });

  it('the probe wants a whole header with the signature', () => {
    const h = new Uint8Array(512);
    new DataView(h.buffer).setUint32(64, 0xbeda107f, true);
    expect(vdiDriver.probe(h)).toBe(100);
    expect(vdiDriver.probe(h.subarray(0, 511))).toBe(0);
    h[64] = 0;
    expect(vdiDriver.probe(h)).toBe(0);
  });
});
