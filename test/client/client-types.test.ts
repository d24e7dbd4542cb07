/**
 * Type-level checks of the page-facing API (what a caller sees through the
 * Comlink proxy stays typed): checked by tsc and by vitest's expectTypeOf.
 */
import { describe, it, expectTypeOf } from 'vitest';
import type { Disk, DiskWorker, ImageInfo, MapExtent, StorageReport, CheckReport, V86DiskBuffer, BitmapInfo } from '../../src/client/index.js';
import { toV86Buffer } from '../../src/client/index.js';

describe('page API types', () => {
  it('DiskWorker methods return typed promises', () => {
    expectTypeOf<DiskWorker['open']>().returns.toEqualTypeOf<Promise<Disk>>();
    expectTypeOf<DiskWorker['info']>().returns.toEqualTypeOf<Promise<ImageInfo>>();
    expectTypeOf<DiskWorker['check']>().returns.toEqualTypeOf<Promise<CheckReport>>();
    expectTypeOf<DiskWorker['storage']>().returns.toEqualTypeOf<Promise<StorageReport>>();
    expectTypeOf<DiskWorker['exportStream']>().returns.toEqualTypeOf<Promise<ReadableStream<Uint8Array>>>();
    expectTypeOf<DiskWorker['create']>().parameter(0).toHaveProperty('path').toEqualTypeOf<string>();
  });

  it('Disk reads and writes bytes', () => {
    expectTypeOf<Disk['read']>().parameters.toEqualTypeOf<[number, number]>();
    expectTypeOf<Disk['read']>().returns.toEqualTypeOf<Promise<Uint8Array>>();
    expectTypeOf<Disk['map']>().returns.toEqualTypeOf<Promise<MapExtent[]>>();
    expectTypeOf<Disk['length']>().toEqualTypeOf<number>();
  });

  it('disk.bitmaps lists typed infos and iterates extents as [offset, length]', () => {
    type B = Disk['bitmaps'];
    expectTypeOf<B['list']>().returns.toEqualTypeOf<Promise<BitmapInfo[]>>();
    expectTypeOf<B['dirtyExtents']>().returns.toEqualTypeOf<AsyncGenerator<[number, number]>>();
    expectTypeOf<B['add']>().parameter(1).toEqualTypeOf<{ granularity?: number; persistent?: boolean; disabled?: boolean } | undefined>();
    expectTypeOf<BitmapInfo>().toEqualTypeOf<{ name: string; granularity: number; count: number; recording: boolean; busy: boolean; persistent: boolean; inconsistent: boolean }>();
  });

  it('readInto gives back the type it was given', () => {
    type ReadInto = Disk['readInto'];
    // The README's `buf = await disk.readInto(0, buf)` with a plain new Uint8Array (TypeScript 5.9).
    const reuse = async (disk: Disk) => {
      let buf = new Uint8Array(4096);
      buf = await disk.readInto(0, buf);
      return buf;
    };
    expectTypeOf(reuse).returns.toEqualTypeOf<Promise<Uint8Array<ArrayBuffer>>>();
    const shared = (disk: Disk, b: Uint8Array<SharedArrayBuffer>) => disk.readInto(0, b);
    expectTypeOf(shared).returns.toEqualTypeOf<Promise<Uint8Array<SharedArrayBuffer>>>();
    const anyKind = (disk: Disk, b: Uint8Array) => disk.readInto(0, b);
    expectTypeOf(anyKind).returns.toEqualTypeOf<Promise<Uint8Array<ArrayBufferLike>>>();
    expectTypeOf<ReadInto>().parameter(0).toEqualTypeOf<number>();
  });

  it('toV86Buffer accepts a Disk', () => {
    const acceptsDisk = (d: Disk) => toV86Buffer(d);
    expectTypeOf(acceptsDisk).returns.toEqualTypeOf<V86DiskBuffer>();
    expectTypeOf(toV86Buffer).returns.toEqualTypeOf<V86DiskBuffer>();
  });
});
