/**
 * Secrets in the block worker's service (run in Node on memory images), as
 * the page's `dw.secrets` reaches them: QEMU's checks and messages for ids,
 * encrypted images (luks, qcow2 with `encrypt.format=luks`) created,
 * opened, converted and imported through the existing options with a key
 * secret, and the luks file the worker writes checked against qemu-img
 * with the same password.
 */
import { describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BlockWorkerService } from '../../workers/service.js';
import { BlockError } from '../../src/core/errors.js';

const MiB = 1 << 20;
const SIZE = 4 * MiB;
const PASSWORD = 'correct horse battery staple';
const utf8 = (s: string) => new TextEncoder().encode(s);

async function failure(p: Promise<unknown> | (() => unknown)): Promise<BlockError> {
  let e: unknown = null;
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (err) {
    e = err;
  }
  expect(e).toBeInstanceOf(BlockError);
  return e as BlockError;
}

/** Bytes that differ from offset to offset. */
function pattern(seed: number, n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 11 + seed * 29 + (i >>> 10)) & 0xff;
  return b;
}

/**
 * Writes the whole disk with a pattern and returns it: what a fresh luks
 * payload reads before any write is its zeros decrypted, not zeros (as in QEMU).
 */
async function fill(svc: BlockWorkerService, path: string, options: Record<string, unknown>): Promise<Uint8Array> {
  const disk = await svc.open({ path, options });
  const expected = pattern(1, SIZE);
  for (let off = 0; off < SIZE; off += MiB) await disk.write(off, expected.slice(off, off + MiB));
  await disk.close();
  return expected;
}

async function readAll(svc: BlockWorkerService, path: string, options?: Record<string, unknown>): Promise<{ bytes: Uint8Array; format: string }> {
  const disk = await svc.open({ path, readOnly: true, ...(options ? { options } : {}) });
  try {
    return { bytes: await disk.read(0, disk.length()), format: disk.format() };
  } finally {
    await disk.close();
  }
}

/** The stored file of an image (no format driver over it). */
async function fileBytes(svc: BlockWorkerService, path: string): Promise<Uint8Array> {
  const f = await svc.open({ path, format: 'raw', readOnly: true });
  try {
    return await f.read(0, f.length());
  } finally {
    await f.close();
  }
}

const same = (a: Uint8Array, b: Uint8Array) => Buffer.from(a).equals(Buffer.from(b));

describe('worker secrets', () => {
  it('add and remove check ids as QEMU, and the given bytes are wiped', async () => {
    const svc = new BlockWorkerService();
    const data = utf8(PASSWORD);
    svc.secretAdd('sec0', data);
    expect(data.every((b) => b === 0)).toBe(true);
    const dup = await failure(() => svc.secretAdd('sec0', utf8('other')));
    expect([dup.code, dup.message]).toEqual(['EEXIST', "attempt to add duplicate property 'sec0' to object (type 'container')"]);
    const bad = await failure(() => svc.secretAdd('0sec', utf8('x')));
    expect([bad.code, bad.message]).toEqual(['EINVAL', "Parameter 'id' expects an identifier"]);
    svc.secretRemove('sec0');
    const gone = await failure(() => svc.secretRemove('sec0'));
    expect([gone.code, gone.message]).toEqual(['ENOENT', "object 'sec0' not found"]);
    // The id is free again.
    svc.secretAdd('sec0', utf8('again'));
  });

  it('luks and encrypted qcow2: create, open, wrong password, missing secret', async () => {
    const svc = new BlockWorkerService();
    svc.secretAdd('sec0', utf8(PASSWORD));
    svc.secretAdd('wrong', utf8('not the password'));
    const noSecret = await failure(svc.create({ path: 'memory:n.luks', format: 'luks', size: SIZE }));
    expect([noSecret.code, noSecret.message]).toEqual(['EINVAL', "Parameter 'key-secret' is required for cipher"]);
    const unknown = await failure(svc.create({ path: 'memory:n.luks', format: 'luks', size: SIZE, options: { 'key-secret': 'nope' } }));
    expect([unknown.code, unknown.message]).toEqual(['EINVAL', "No secret with id 'nope'"]);

    await svc.create({ path: 'memory:a.luks', format: 'luks', size: SIZE, options: { 'key-secret': 'sec0', 'iter-time': 10 } });
    await svc.create({
      path: 'memory:b.qcow2',
      format: 'qcow2',
      size: SIZE,
      options: { 'encrypt.format': 'luks', 'encrypt.key-secret': 'sec0', 'encrypt.iter-time': 10 },
    });
    for (const [p, key] of [['memory:a.luks', 'key-secret'], ['memory:b.qcow2', 'encrypt.key-secret']] as const) {
      const expected = await fill(svc, p, { [key]: 'sec0' });
      const { bytes, format } = await readAll(svc, p, { [key]: 'sec0' });
      expect(format).toBe(p.endsWith('luks') ? 'luks' : 'qcow2');
      expect(same(bytes, expected)).toBe(true);
      const wrong = await failure(svc.open({ path: p, readOnly: true, options: { [key]: 'wrong' } }));
      expect([wrong.code, wrong.message]).toEqual(['EPERM', 'Invalid password, cannot unlock any keyslot']);
      const missing = await failure(svc.open({ path: p, readOnly: true }));
      expect([missing.code, missing.message]).toEqual(['EINVAL', `Parameter '${key}' is required for cipher`]);
    }
    // info opens without the key, as qemu-img info.
    expect((await svc.info('memory:a.luks')).format).toBe('luks');
    const qinfo = await svc.info('memory:b.qcow2');
    expect([qinfo.format, (qinfo.specific?.data as { encrypt?: { format?: string } }).encrypt?.format]).toEqual(['qcow2', 'luks']);
    // A removed secret no longer opens anything.
    svc.secretRemove('sec0');
    const removed = await failure(svc.open({ path: 'memory:a.luks', readOnly: true, options: { 'key-secret': 'sec0' } }));
    expect([removed.code, removed.message]).toEqual(['EINVAL', "No secret with id 'sec0'"]);
  });

  it('an open luks disk keeps working after its secret is removed', async () => {
    const svc = new BlockWorkerService();
    svc.secretAdd('sec0', utf8(PASSWORD));
    await svc.create({ path: 'memory:k.luks', format: 'luks', size: SIZE, options: { 'key-secret': 'sec0', 'iter-time': 10 } });
    const disk = await svc.open({ path: 'memory:k.luks', options: { 'key-secret': 'sec0' } });
    svc.secretRemove('sec0');
    const data = pattern(7, 4096);
    await disk.write(8192, data.slice());
    expect(same(await disk.read(8192, 4096), data)).toBe(true);
    await disk.close();
  });

  it('convert and import from an encrypted source (fromOptions) and into luks; qemu-img opens the luks file with the password', async () => {
    const svc = new BlockWorkerService();
    svc.secretAdd('sec0', utf8(PASSWORD));
    await svc.create({ path: 'memory:src.luks', format: 'luks', size: SIZE, options: { 'key-secret': 'sec0', 'iter-time': 10 } });
    const expected = await fill(svc, 'memory:src.luks', { 'key-secret': 'sec0' });

    // luks -> unencrypted qcow2, with the source's key secret.
    const noKey = await failure(svc.convert({ from: 'memory:src.luks', to: 'memory:plain.qcow2' }));
    expect(noKey.message).toBe("Parameter 'key-secret' is required for cipher");
    await svc.convert({ from: 'memory:src.luks', fromOptions: { 'key-secret': 'sec0' }, to: 'memory:plain.qcow2' });
    expect(same((await readAll(svc, 'memory:plain.qcow2')).bytes, expected)).toBe(true);

    // A picked luks file: as it is, and converted to qcow2 (probed as luks, opened with fromOptions).
    const file = await fileBytes(svc, 'memory:src.luks');
    await svc.importBlob(new Blob([new Uint8Array(file)]), { to: 'memory:copy.luks' });
    expect(same((await readAll(svc, 'memory:copy.luks', { 'key-secret': 'sec0' })).bytes, expected)).toBe(true);
    await svc.importBlob(new Blob([new Uint8Array(file)]), { to: 'memory:imp.qcow2', format: 'qcow2', fromOptions: { 'key-secret': 'sec0' } });
    expect(same((await readAll(svc, 'memory:imp.qcow2')).bytes, expected)).toBe(true);

    // qcow2 -> encrypted qcow2 and -> luks: the targets are opened with their key secret for the copy.
    await svc.convert({ from: 'memory:plain.qcow2', to: 'memory:enc.qcow2', options: { 'encrypt.format': 'luks', 'encrypt.key-secret': 'sec0', 'encrypt.iter-time': 10 } });
    expect(same((await readAll(svc, 'memory:enc.qcow2', { 'encrypt.key-secret': 'sec0' })).bytes, expected)).toBe(true);
    const refused = await failure(svc.convert({ from: 'memory:plain.qcow2', to: 'memory:out.luks', format: 'luks' }));
    expect(refused.code).toBe('ENOTSUP');
    expect(refused.message).toContain("'key-secret'");
    await svc.convert({ from: 'memory:plain.qcow2', to: 'memory:out.luks', format: 'luks', options: { 'key-secret': 'sec0', 'iter-time': 10 } });

    // The luks file the worker wrote, checked by qemu-img with the same password.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dw-secrets-'));
    try {
      const out = path.join(dir, 'out.luks');
      const raw = path.join(dir, 'expected.raw');
      fs.writeFileSync(out, await fileBytes(svc, 'memory:out.luks'));
      fs.writeFileSync(raw, expected);
      const secret = `secret,id=sec0,data=${PASSWORD}`;
      const info = JSON.parse(execFileSync('qemu-img', ['info', '--output=json', out], { encoding: 'utf8' })) as {
        format: string;
        encrypted: boolean;
        'virtual-size': number;
        'format-specific': { type: string; data: Record<string, unknown> };
      };
      expect([info.format, info.encrypted]).toEqual(['luks', true]);
      // The worker's info needs no key secret either (a no-I/O open, as qemu-img info).
      const ours = await svc.info('memory:out.luks');
      expect([ours.format, ours.virtualSize, ours.specific]).toEqual(['luks', info['virtual-size'], info['format-specific']]);
      const cmp = spawnSync('qemu-img', ['compare', '--object', secret, '--image-opts', `driver=luks,key-secret=sec0,file.filename=${out}`, `driver=raw,file.filename=${raw}`], { encoding: 'utf8' });
      expect([cmp.status, cmp.stdout.trim(), cmp.stderr]).toEqual([0, 'Images are identical.', '']);
      const wrong = spawnSync('qemu-img', ['compare', '--object', 'secret,id=sec0,data=nope', '--image-opts', `driver=luks,key-secret=sec0,file.filename=${out}`, `driver=raw,file.filename=${raw}`], { encoding: 'utf8' });
      expect(wrong.status).toBe(2);
      expect(wrong.stderr).toContain('Invalid password, cannot unlock any keyslot');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
