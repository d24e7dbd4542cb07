/**
 * Keys never leave the worker, and nothing logs them: a session through the
 * block worker's service (what the page reaches over Comlink) with luks and
 * qcow2 `encrypt.format=luks` images — create, open, write, read, info,
 * check, map, QMP queries, a wrong password, a missing secret, convert —
 * records every value handed back and every error thrown, and every console
 * and stdout / stderr write. None of them holds the password, nor either
 * image's master key (found here from the stored header with the password,
 * as a second program would).
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { proxyMarker } from 'comlink';
import { BlockWorkerService } from '../../workers/service.js';
import { LuksVolume } from '../../src/crypto/luks.js';

const MiB = 1 << 20;
const PASSWORD = 'tr0ub4dor&3-never-shown';
const utf8 = (s: string) => new TextEncoder().encode(s);

/**
 * Every string and byte array reachable from a value as it crosses to the
 * page (errors: message, code, detail, stack). A Comlink-proxied object (an
 * open disk) stays in the worker: the page gets a handle, not its fields.
 */
function collect(v: unknown, out: Uint8Array[], seen = new Set<unknown>()): void {
  if (v === null || v === undefined) return;
  if (typeof v === 'string') return void out.push(utf8(v));
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return void out.push(utf8(String(v)));
  if (typeof v !== 'object' || seen.has(v) || (v as Record<symbol, unknown>)[proxyMarker]) return;
  seen.add(v);
  if (ArrayBuffer.isView(v)) return void out.push(new Uint8Array(v.buffer, v.byteOffset, v.byteLength).slice());
  if (v instanceof ArrayBuffer) return void out.push(new Uint8Array(v).slice());
  if (v instanceof Error) {
    out.push(utf8(`${v.message}\n${v.stack ?? ''}`));
    for (const k of Object.keys(v)) collect((v as unknown as Record<string, unknown>)[k], out, seen);
    collect(v.cause, out, seen);
    return;
  }
  for (const k of Object.keys(v)) {
    out.push(utf8(k));
    collect((v as Record<string, unknown>)[k], out, seen);
  }
}

function contains(hay: Uint8Array, needle: Uint8Array): boolean {
  outer: for (let i = 0; i + needle.length <= hay.length; i++) {
    for (let j = 0; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return true;
  }
  return false;
}

/** The master key of a LUKS header at `offset` of a stored file, unlocked with the password. */
async function masterKey(file: Uint8Array, offset: number): Promise<Uint8Array> {
  const read = async (off: number, len: number) => file.slice(offset + off, offset + off + len);
  const vol = await LuksVolume.open(read, undefined);
  return vol.findMasterKey(utf8(PASSWORD), read);
}

describe('secrets stay in the worker', () => {
  afterEach(() => vi.restoreAllMocks());

  it('no value, error or log line of a session holds the password or a master key', async () => {
    const seen: Uint8Array[] = [];
    const log = (...args: unknown[]) => collect(args, seen);
    for (const m of ['log', 'info', 'warn', 'error', 'debug', 'trace'] as const) vi.spyOn(console, m).mockImplementation(log);
    for (const s of [process.stdout, process.stderr]) {
      const write = s.write.bind(s);
      vi.spyOn(s, 'write').mockImplementation(((chunk: unknown, ...rest: unknown[]) => {
        collect(chunk, seen);
        return (write as (...a: unknown[]) => boolean)(chunk, ...rest);
      }) as typeof s.write);
    }
    // Every call's answer and every failure is what the page would receive.
    const call = async <T>(f: () => T | Promise<T>): Promise<T | undefined> => {
      try {
        const r = await f();
        collect(r, seen);
        return r;
      } catch (e) {
        collect(e, seen);
        return undefined;
      }
    };

    const svc = new BlockWorkerService();
    await call(() => svc.secretAdd('sec0', utf8(PASSWORD)));
    await call(() => svc.secretAdd('bad', utf8('wrong password')));
    await call(() => svc.secretAdd('sec0', utf8(PASSWORD)));
    const images: Array<{ path: string; format: 'luks' | 'qcow2'; key: string; create: Record<string, string | number> }> = [
      { path: 'memory:a.luks', format: 'luks', key: 'key-secret', create: { 'key-secret': 'sec0', 'iter-time': 10 } },
      { path: 'memory:b.qcow2', format: 'qcow2', key: 'encrypt.key-secret', create: { 'encrypt.format': 'luks', 'encrypt.key-secret': 'sec0', 'encrypt.iter-time': 10 } },
    ];
    for (const im of images) {
      await call(() => svc.create({ path: im.path, format: im.format, size: 2 * MiB, options: im.create }));
      const disk = await call(() => svc.open({ path: im.path, options: { [im.key]: 'sec0' } }));
      expect(disk).toBeDefined();
      await call(() => disk!.write(0, new Uint8Array(64 * 1024).fill(0x5a)));
      await call(() => disk!.read(0, 128 * 1024));
      await call(() => disk!.map());
      await call(() => disk!.blockStatus(0, MiB));
      await call(() => disk!.stats());
      await call(() => svc.qmpExecute('query-named-block-nodes', {}));
      await call(() => svc.qmpExecute('query-block', {}));
      await call(() => disk!.close());
      await call(() => svc.info(im.path));
      await call(() => svc.check(im.path));
      await call(() => svc.open({ path: im.path, options: { [im.key]: 'bad' } }));
      await call(() => svc.open({ path: im.path, options: { [im.key]: 'nosuch' } }));
      await call(() => svc.open({ path: im.path }));
      await call(() => svc.convert({ from: im.path, fromOptions: { [im.key]: 'sec0' }, to: `${im.path}.raw`, format: 'raw' }));
      await call(() => svc.list('memory'));
    }

    // The master keys, from the stored headers (the qcow2 one at its crypt header offset).
    const stored = async (p: string) => {
      const f = await svc.open({ path: p, format: 'raw', readOnly: true });
      try {
        return await f.read(0, f.length());
      } finally {
        await f.close();
      }
    };
    const luksFile = await stored('memory:a.luks');
    const qcowFile = await stored('memory:b.qcow2');
    const cryptOffset = findCryptHeader(qcowFile);
    expect(cryptOffset).toBeGreaterThan(0);
    const keys = [await masterKey(luksFile, 0), await masterKey(qcowFile, cryptOffset)];
    vi.restoreAllMocks();

    expect(seen.length).toBeGreaterThan(50);
    const all = new Uint8Array(seen.reduce((n, b) => n + b.length + 1, 0));
    let at = 0;
    for (const b of seen) {
      all.set(b, at);
      at += b.length + 1;
    }
    // The collection does see what it looks for: the written pattern and the error text.
    expect(contains(all, new Uint8Array(64).fill(0x5a))).toBe(true);
    expect(contains(all, utf8('Invalid password, cannot unlock any keyslot'))).toBe(true);
    expect(contains(all, utf8(PASSWORD)), 'the password').toBe(false);
    for (const [i, k] of keys.entries()) {
      expect(k.length).toBeGreaterThanOrEqual(32);
      expect(contains(all, k.subarray(0, 16)), `master key ${i}`).toBe(false);
    }
  }, 60_000);
});

/** The offset of the LUKS header in a qcow2 file, from its full disk encryption header extension (0x0537be77); -1 without one. */
function findCryptHeader(file: Uint8Array): number {
  const dv = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const version = dv.getUint32(4);
  let off = version >= 3 ? dv.getUint32(100) : 72;
  while (off + 8 <= 4096) {
    const type = dv.getUint32(off);
    const len = dv.getUint32(off + 4);
    if (type === 0) break;
    if (type === 0x0537be77) return Number(dv.getBigUint64(off + 8));
    off += 8 + Math.ceil(len / 8) * 8;
  }
  return -1;
}
