/**
 * The worker's convert / import / export targets (the block worker's service
 * run in Node on memory images): every format of IMAGE_FORMATS has a driver
 * that creates, a convert into each reads back what the source shows, and a
 * format the worker cannot create (luks without a key secret, read-only
 * formats, a multi-file vmdk export) fails with ENOTSUP naming it, before
 * anything is written. luks is a target with a key secret (test/workers/secrets.test.ts
 * has its other cases).
 */
import { describe, expect, it } from 'vitest';
import { BlockWorkerService } from '../../workers/service.js';
import { IMAGE_FORMATS, type ImageFormat } from '../../src/client/protocol.js';
import { BlockError } from '../../src/core/errors.js';

const MiB = 1 << 20;
/** A luks target's creation options: its key secret, and few PBKDF2 iterations. */
const LUKS_OPTIONS = { 'key-secret': 'sec0', 'iter-time': '10' };

/** Bytes that differ from offset to offset. */
function pattern(seed: number, n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 7 + seed * 13 + (i >>> 9)) & 0xff;
  return b;
}

async function source(svc: BlockWorkerService, name: string): Promise<{ path: string; expected: Uint8Array }> {
  const path = `memory:${name}.qcow2`;
  await svc.create({ path, format: 'qcow2', size: 4 * MiB });
  const disk = await svc.open({ path });
  const expected = new Uint8Array(4 * MiB);
  for (const [off, seed, n] of [[0, 1, 65536], [MiB + 1000, 2, 70_000], [4 * MiB - 4096, 3, 4096]] as const) {
    const data = pattern(seed, n);
    await disk.write(off, data.slice());
    expected.set(data, off);
  }
  await disk.close();
  return { path, expected };
}

async function readAll(svc: BlockWorkerService, path: string, format: string, options?: Record<string, unknown>): Promise<{ bytes: Uint8Array; driver: string }> {
  const disk = await svc.open({ path, format, readOnly: true, ...(options ? { options } : {}) });
  try {
    return { bytes: await disk.read(0, 4 * MiB), driver: disk.format() };
  } finally {
    await disk.close();
  }
}

async function refusal(p: Promise<unknown>): Promise<BlockError> {
  const e = await p.then(
    () => null,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(BlockError);
  return e as BlockError;
}

describe('worker image formats', () => {
  it('every format the worker names as creatable has a driver that creates', () => {
    const svc = new BlockWorkerService();
    for (const f of IMAGE_FORMATS) expect(typeof svc.graph.getDriver(f).create, f).toBe('function');
  });

  const targets: Array<[ImageFormat, Record<string, string>]> = [
    ...IMAGE_FORMATS.map((f): [ImageFormat, Record<string, string>] => [f, f === 'luks' ? LUKS_OPTIONS : {}]),
    ['vmdk', { subformat: 'streamOptimized' }],
    ['vpc', { subformat: 'fixed' }],
    ['vhdx', { subformat: 'fixed' }],
    ['vdi', { static: 'on' }],
  ];
  it.each(targets)('convert into %s %o reads back the source', async (format, options) => {
    const svc = new BlockWorkerService();
    svc.secretAdd('sec0', new TextEncoder().encode('a passphrase'));
    const { path, expected } = await source(svc, `conv-${format}-${Object.values(options).join('-')}`);
    const to = `memory:conv-${format}-${Object.values(options).join('-')}.out`;
    await svc.convert({ from: path, to, format, options });
    const { bytes, driver } = await readAll(svc, to, format, format === 'luks' ? { 'key-secret': 'sec0' } : undefined);
    expect(driver).toBe(format);
    // vpc rounds the size to a disk geometry; what the source holds must read back.
    expect(Buffer.from(bytes.subarray(0, expected.length)).equals(Buffer.from(expected))).toBe(true);
  });

  it('a Blob imports converted into a format of the list, probed', async () => {
    const svc = new BlockWorkerService();
    const { path, expected } = await source(svc, 'imp-src');
    await svc.convert({ from: path, to: 'memory:imp.vhdx', format: 'vhdx' });
    const file = await svc.open({ path: 'memory:imp.vhdx', format: 'raw', readOnly: true });
    const fileBytes = await file.read(0, file.length());
    await file.close();
    await svc.importBlob(new Blob([new Uint8Array(fileBytes)]), { to: 'memory:imp.vdi', format: 'vdi' });
    const { bytes, driver } = await readAll(svc, 'memory:imp.vdi', 'vdi');
    expect(driver).toBe('vdi');
    expect(Buffer.from(bytes).equals(Buffer.from(expected))).toBe(true);
  });

  it('formats the worker cannot create fail with ENOTSUP naming them, before anything is written', async () => {
    const svc = new BlockWorkerService();
    const { path } = await source(svc, 'refuse');
    const as = (f: string) => f as ImageFormat;
    const luks = await refusal(svc.exportStream(path, as('luks')));
    expect(luks.code).toBe('ENOTSUP');
    expect(luks.message).toBe("Cannot export to format 'luks' without a key secret: add one with dw.secrets.add() and name it in the options as 'key-secret'");
    const parallels = await refusal(svc.exportStream(path, as('parallels')));
    expect(parallels.code).toBe('ENOTSUP');
    expect(parallels.message).toBe(`Cannot export to format 'parallels': the block worker creates only ${IMAGE_FORMATS.join(', ')}`);
    const flat = await refusal(svc.exportStream(path, 'vmdk', undefined, false, { subformat: 'twoGbMaxExtentSparse' }));
    expect(flat.code).toBe('ENOTSUP');
    expect(flat.message).toContain("vmdk subformat 'twoGbMaxExtentSparse'");
    const conv = await refusal(svc.convert({ from: path, to: 'memory:refuse.dmg', format: as('dmg') }));
    expect(conv.code).toBe('ENOTSUP');
    expect(conv.message).toContain("Cannot convert to format 'dmg'");
    const imp = await refusal(svc.importBlob(new Blob([new Uint8Array(512)]), { to: 'memory:refuse.bochs', format: as('bochs') }));
    expect(imp.code).toBe('ENOTSUP');
    expect(imp.message).toContain("Cannot import as format 'bochs'");
    // Nothing was created.
    for (const p of ['memory:refuse.dmg', 'memory:refuse.bochs']) {
      const e = await refusal(svc.open({ path: p, readOnly: true }));
      expect(e.code).toBe('ENOENT');
    }
  });
});
