/**
 * A compressed cluster's descriptor holds 62 - (cluster_bits - 8) bits of
 * host offset: 49 bits with 2 MiB clusters (512 TiB). Compressed data the
 * allocator would place past that must fail with EFBIG, as QEMU's
 * alloc_clusters_noref refuses it (iotest 220: "write failed: File too
 * large"), instead of an L2 entry whose offset runs into its sector count
 * (data read back from somewhere else). Nothing is written then: the image
 * stays clean and reads as before.
 */
import { describe, it, expect, afterAll } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import { BlockError } from '../../../src/core/errors.js';
import { compressedInfo, makeCompressedEntry } from '../../../src/formats/qcow2/l2-entry.js';
import { compressedOffsetLimit } from '../../../src/formats/qcow2/refcount.js';
import type { Qcow2Image } from '../../../src/formats/qcow2/qcow2.js';
import { memGraph, openQcow2, qemuCheck, qemuImg, qemuIo, tempDir } from './helpers.js';

const t = tempDir();
afterAll(() => t.cleanup());

const MiB = 1024 * 1024;

describe('qcow2 compressed clusters: host offsets the descriptor can hold', () => {
  it('the limit follows the cluster size; descriptors round-trip up to it and refuse past it', () => {
    expect(compressedOffsetLimit(2 * MiB)).toBe(2 ** 49 - 1);
    expect(compressedOffsetLimit(1 * MiB)).toBe(2 ** 50 - 1);
    expect(compressedOffsetLimit(64 * 1024)).toBe(Number.MAX_SAFE_INTEGER);
    const last = 2 ** 49 - 2 * MiB;
    expect(compressedInfo(makeCompressedEntry(last, 4096, 21), 21)).toEqual({ offset: last, sectors: 8 });
    expect(() => makeCompressedEntry(2 ** 49, 4096, 21)).toThrow(BlockError);
    expect(() => makeCompressedEntry(2 ** 49 - 512, 4096, 21)).toThrow(/File too large/);
  });

  it('a compressed write whose new host cluster lies past 512 TiB fails with EFBIG and changes nothing', async () => {
    // On the sparse memory back end: a file system (ext4) would refuse the write at 512 TiB by itself.
    const file = t.path('big-clusters.qcow2');
    qemuImg('create', '-q', '-f', 'qcow2', '-o', 'cluster_size=2M', file, '64M');
    qemuIo(file, ['write -P 7 0 2M']);
    const before = readFileSync(file);
    const { graph, storage } = memGraph();
    storage.create('img', before.length).write(0, before);
    const bb = await openQcow2(graph, 'img');
    const img = bb.node.instance as Qcow2Image;
    // Where iotest 220 gets by filling refcount blocks: the next free cluster is the first past the limit.
    img.refs.freeHint = 2 ** 49 / (2 * MiB);
    const err = await bb.writeCompressed(4 * MiB, new Uint8Array(2 * MiB).fill(0x41)).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(BlockError);
    expect((err as BlockError).code).toBe('EFBIG');
    expect((err as BlockError).text).toBe('File too large');
    await bb.close();
    await graph.closeAll();
    const after = storage.get('img')!;
    expect(after.length).toBeLessThan(16 * MiB);
    writeFileSync(file, after.toBytes());
    expect(qemuCheck(file)['check-errors']).toBe(0);
    expect(qemuCheck(file).corruptions ?? 0).toBe(0);
    expect(qemuIo(file, ['read -P 7 0 2M', 'read -P 0 4M 2M'])).not.toMatch(/fail/i);
  });
});
