/**
 * Images made by qemu-img / qemu-io 7.2 in many variants: DiskWorker reads
 * every byte as `qemu-img convert -O raw` does and its map matches
 * `qemu-img map --output=json`.
 */
import { describe, it, expect, afterAll } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import { blockStatusAbove, Status, type BlockNode } from '../../../src/node.js';
import { tempDir, qemuImg, qemuIo, fileGraph, memGraph, openQcow2, qemuMap, pattern, type MapEntry } from './helpers.js';

const t = tempDir();
afterAll(() => t.cleanup());

/** Our map in qemu-img map's shape (core's blockStatusAbove walks the layers as qemu-img does). */
async function ourMap(top: BlockNode): Promise<MapEntry[]> {
  return normalize(await ourMapExact(top));
}

/** Our map, entries merged as qemu-img merges them but otherwise as answered. */
async function ourMapExact(top: BlockNode): Promise<MapEntry[]> {
  const out: MapEntry[] = [];
  let off = 0;
  const len = top.length;
  while (off < len) {
    const st = await blockStatusAbove(top, undefined, true, off, len - off);
    const e: MapEntry = {
      start: off,
      length: st.pnum,
      depth: st.depth,
      present: (st.status & Status.ALLOCATED) !== 0,
      zero: (st.status & Status.ZERO) !== 0,
      data: (st.status & Status.DATA) !== 0,
    };
    if (st.status & Status.OFFSET_VALID && st.map !== undefined) e.offset = st.map;
    out.push(e);
    off += st.pnum;
  }
  return merge(out);
}

/**
 * For node-file images: node-file cannot see holes in the host file, where
 * QEMU reports data clusters of metadata-preallocated images as zero too, so
 * the zero flag of data is dropped on both sides. The memory back end sees
 * holes; the metadata preallocation test below compares without this.
 */
function normalize(list: MapEntry[]): MapEntry[] {
  return merge(list.map((raw) => ({ ...raw, zero: raw.data ? false : raw.zero })));
}

/** Joins neighbours that qemu-img map would print as one entry. */
function merge(list: MapEntry[]): MapEntry[] {
  const out: MapEntry[] = [];
  for (const raw of list) {
    const e = { ...raw };
    const prev = out[out.length - 1];
    if (
      prev &&
      prev.depth === e.depth &&
      prev.present === e.present &&
      prev.zero === e.zero &&
      prev.data === e.data &&
      (prev.offset === undefined) === (e.offset === undefined) &&
      (prev.offset === undefined || prev.offset + prev.length === e.offset)
    ) {
      prev.length += e.length;
    } else {
      out.push(e);
    }
  }
  return out.map((e) => (e.offset === undefined ? { start: e.start, length: e.length, depth: e.depth, present: e.present, zero: e.zero, data: e.data } : e));
}

async function compareWithQemu(file: string) {
  const raw = t.path(`out-${Math.random().toString(36).slice(2)}.raw`);
  qemuImg('convert', '-O', 'raw', file, raw);
  const want = new Uint8Array(readFileSync(raw));
  const g = fileGraph();
  const bb = await openQcow2(g, file, true);
  try {
    expect(bb.length).toBe(want.length);
    const got = await bb.read(0, want.length);
    let firstDiff = -1;
    for (let i = 0; i < want.length; i++) {
      if (got[i] !== want[i]) {
        firstDiff = i;
        break;
      }
    }
    expect(firstDiff).toBe(-1);
    expect(await ourMap(bb.node)).toEqual(normalize(qemuMap(file)));
  } finally {
    await bb.close();
  }
}

const WORKLOAD = (cs: number) => [
  `write -P 0x11 0 ${cs * 3}`,
  `write -P 0x22 ${cs * 5 + 512} 1536`,
  `write -z ${cs * 8} ${cs * 2}`,
  `write -P 0x33 ${cs * 12} ${cs}`,
  `discard ${cs * 12} ${cs}`,
  `write -P 0x44 ${cs * 20 - 4096} 8192`,
  `write -z ${cs * 2} 4096`,
];

describe('qcow2 images made by qemu-img', () => {
  const variants: Array<[string, string, number]> = [
    ['v3 64k', 'cluster_size=64k', 65536],
    ['v3 512', 'cluster_size=512', 512],
    ['v3 4k refcount 1', 'cluster_size=4k,refcount_bits=1', 4096],
    ['v3 2M refcount 64', 'cluster_size=2M,refcount_bits=64', 2 << 20],
    ['v2', 'compat=0.10', 65536],
    ['extended L2 64k', 'extended_l2=on', 65536],
    ['extended L2 32k', 'extended_l2=on,cluster_size=32k', 32768],
    ['lazy refcounts', 'lazy_refcounts=on', 65536],
    ['metadata preallocation', 'preallocation=metadata,cluster_size=4k', 4096],
  ];
  for (const [name, opts, cs] of variants) {
    it(`reads ${name}`, async () => {
      const f = t.path(`${name.replace(/\W/g, '_')}.qcow2`);
      qemuImg('create', '-q', '-f', 'qcow2', '-o', opts, f, String(cs * 32));
      qemuIo(f, WORKLOAD(cs));
      await compareWithQemu(f);
    });
  }

  it('reads compressed clusters (zlib and zstd)', async () => {
    const src = t.path('src.raw');
    const data = new Uint8Array(1 << 20);
    data.set(pattern(100000, 3), 0);
    for (let i = 300000; i < 700000; i++) data[i] = (i * 7) & 0xff;
    writeFileSync(src, data);
    for (const ct of ['zlib', 'zstd']) {
      for (const cs of ['4k', '64k', '2M']) {
        const f = t.path(`c-${ct}-${cs}.qcow2`);
        qemuImg('convert', '-c', '-O', 'qcow2', '-o', `compression_type=${ct},cluster_size=${cs}`, src, f);
        await compareWithQemu(f);
      }
    }
  });

  it('reads a three-deep chain with raw at the bottom and an overlay larger than its backing', async () => {
    const base = t.path('chain-base.raw');
    writeFileSync(base, pattern(1 << 20, 9));
    const mid = t.path('chain-mid.qcow2');
    const top = t.path('chain-top.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', '-b', 'chain-base.raw', '-F', 'raw', mid, '2M');
    qemuIo(mid, ['write -P 0x55 65536 65536', 'write -z 262144 65536', 'write -P 0x56 1100000 5000']);
    qemuImg('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4k', '-b', 'chain-mid.qcow2', '-F', 'qcow2', top, '3M');
    qemuIo(top, ['write -P 0x66 4096 4096', 'discard 65536 4096', 'write -P 0x67 2500000 10000']);
    await compareWithQemu(top);
  });

  it('reads an external data file image (data_file and data_file_raw)', async () => {
    for (const raw of ['off', 'on']) {
      const f = t.path(`df-${raw}.qcow2`);
      qemuImg('create', '-q', '-f', 'qcow2', '-o', `data_file=${t.path(`df-${raw}.data`)},data_file_raw=${raw}`, f, '2M');
      qemuIo(f, ['write -P 0x77 0 100000', 'write -z 200000 65536', 'write -P 0x78 1000000 4096']);
      await compareWithQemu(f);
    }
  });

  it('lists snapshots and reads an image with snapshots and bitmaps', async () => {
    const f = t.path('snap.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', f, '4M');
    qemuIo(f, ['write -P 0x10 0 131072']);
    qemuImg('snapshot', '-c', 'first', f);
    qemuIo(f, ['write -P 0x20 65536 131072']);
    qemuImg('snapshot', '-c', 'second', f);
    qemuImg('bitmap', '--add', f, 'bm0');
    qemuIo(f, ['write -P 0x30 1000000 5000']);
    await compareWithQemu(f);
    const info = JSON.parse(qemuImg('info', '--output=json', f)) as { snapshots: Array<Record<string, unknown>> };
    const g = fileGraph();
    const bb = await openQcow2(g, f, true);
    try {
      const list = bb.node.instance.snapshotList!();
      expect(list.map((s) => [s.id, s.name, s.vmStateSize, s.dateSec, s.dateNsec, s.vmClockNsec])).toEqual(
        info.snapshots.map((s) => [s['id'], s['name'], s['vm-state-size'], s['date-sec'], s['date-nsec'], (s['vm-clock-sec'] as number) * 1e9 + (s['vm-clock-nsec'] as number)]),
      );
      const spec = bb.node.instance.getSpecificInfo!()!;
      expect((spec.data['bitmaps'] as Array<{ name: string }>)[0]!.name).toBe('bm0');
    } finally {
      await bb.close();
    }
  });

  it('maps a metadata-preallocated image as qemu-img does, unwritten clusters as zero (memory back end with the host file holes)', async () => {
    const cs = 65536;
    const f = t.path('prealloc-exact.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', '-o', `preallocation=metadata,cluster_size=${cs}`, f, String(cs * 32));
    // Whole-cluster writes only: the host file's holes then fall on cluster
    // (and memory chunk, 64 KiB) boundaries, so the memory copy has the same holes.
    qemuIo(f, [`write -P 0x11 0 ${cs * 3}`, `write -z ${cs * 8} ${cs * 2}`, `write -P 0x33 ${cs * 12} ${cs}`, `discard ${cs * 12} ${cs}`, `write -P 0x44 ${cs * 20} ${cs * 2}`]);
    const expected = qemuMap(f);
    // The host file's data extents, as QEMU's file driver sees them (SEEK_DATA).
    const extents = JSON.parse(qemuImg('map', '-f', 'raw', '--output=json', f)) as MapEntry[];
    const bytes = readFileSync(f);
    const firstDataCluster = Math.min(...expected.filter((e) => e.offset !== undefined).map((e) => e.offset!));
    const { graph, storage } = memGraph();
    const file = storage.create('prealloc', bytes.length);
    for (const e of extents) {
      if (!e.data) continue;
      // Only metadata (before the first data cluster) may be allocated in pieces smaller than a chunk.
      if (e.start % cs !== 0 || (e.start + e.length) % cs !== 0) {
        expect(e.start + e.length <= firstDataCluster || e.start + e.length === bytes.length).toBe(true);
      }
      const s = Math.floor(e.start / cs) * cs;
      const end = Math.min(bytes.length, Math.ceil((e.start + e.length) / cs) * cs);
      file.writeRaw(s, bytes.subarray(s, end));
    }
    expect(file.length).toBe(bytes.length);
    const bb = await openQcow2(graph, 'memory:prealloc', true);
    try {
      const got = await ourMapExact(bb.node);
      expect(got).toEqual(expected);
      // The honest part: unwritten preallocated clusters are zero, written ones are not.
      expect(got.some((e) => e.data && e.zero && e.offset !== undefined)).toBe(true);
      expect(got.some((e) => e.data && !e.zero && e.offset !== undefined)).toBe(true);
    } finally {
      await bb.close();
    }
  });

  it('does not take an image that is not preallocated for a preallocated one', async () => {
    const cs = 65536;
    const f = t.path('not-prealloc.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', '-o', `cluster_size=${cs}`, f, String(cs * 32));
    qemuIo(f, [`write -P 0x11 0 ${cs * 3}`, `write -P 0x44 ${cs * 20} ${cs * 2}`]);
    const { graph, storage } = memGraph();
    storage.create('plain', 0).writeRaw(0, readFileSync(f));
    const bb = await openQcow2(graph, 'memory:plain', true);
    try {
      const got = await ourMapExact(bb.node);
      expect(got).toEqual(qemuMap(f));
      expect(got.some((e) => e.data && e.zero)).toBe(false);
    } finally {
      await bb.close();
    }
  });
});
