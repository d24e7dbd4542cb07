/**
 * The NBD wire protocol byte for byte: a scripted raw client talks to
 * qemu-nbd 7.2 and to `diskworker nbd` on copies of one image, and the two
 * transcripts (option replies, reply headers, chunks, error numbers and
 * messages, when the connection drops) must be equal. Also: a client that
 * disconnects in the middle of a write leaves the server running and the
 * image untouched.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hasQemu } from '../cli/harness.js';
import { RawNbd, goPayload, metaPayload, nbdUri, run, startOurs, startQemuNbd, type ServerHandle } from './nbd-harness.js';

const OPT = { EXPORT_NAME: 1, ABORT: 2, LIST: 3, STARTTLS: 5, INFO: 6, GO: 7, SR: 8, LIST_META: 9, SET_META: 10 };
const CMD = { READ: 0, WRITE: 1, DISC: 2, FLUSH: 3, TRIM: 4, CACHE: 5, WZ: 6, BS: 7 };

type Script = (c: RawNbd, log: (s: string) => void) => Promise<void>;

describe.skipIf(!hasQemu())('NBD protocol transcripts: diskworker nbd vs qemu-nbd 7.2', () => {
  let dir: string;
  const servers: ServerHandle[] = [];
  const pairs: Record<string, [ServerHandle, ServerHandle]> = {};

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'dw-nbdp-'));
    const img = join(dir, 'base.qcow2');
    expect((await run('qemu-img', ['create', '-q', '-f', 'qcow2', img, '4M'])).code).toBe(0);
    expect((await run('qemu-img', ['bitmap', '--add', img, 'b0'])).code).toBe(0);
    const io = await run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x11 0 64k', '-c', 'write -z 1M 64k', '-c', 'write -P 0x22 2M 4k', img]);
    expect(io.code).toBe(0);
    // Error injection (blkdebug) for the error numbers: each errno on writes, EIO on reads.
    const failing = (event: string, errno: number) => (f: string) => [
      '-t',
      '--image-opts',
      `driver=qcow2,file.driver=blkdebug,file.image.filename=${f},file.inject-error.0.event=${event},file.inject-error.0.errno=${errno}`,
    ];
    const setups: Record<string, (f: string) => string[]> = {
      rw: (f) => ['-t', '-f', 'qcow2', '--discard=unmap', '-A', '-x', 'e1', '-D', 'desc', f],
      ro: (f) => ['-t', '-r', '-f', 'qcow2', '-B', 'b0', f],
      enospc: failing('write_aio', 28),
      eperm: failing('write_aio', 1),
      enotsup: failing('write_aio', 95),
      eio: failing('read_aio', 5),
    };
    for (const [tag, args] of Object.entries(setups)) {
      const a = join(dir, `${tag}-q.qcow2`);
      const b = join(dir, `${tag}-d.qcow2`);
      copyFileSync(img, a);
      copyFileSync(img, b);
      const t = await startQemuNbd(args(a), join(dir, `${tag}-q.sock`));
      const o = await startOurs(args(b), join(dir, `${tag}-d.sock`));
      servers.push(t, o);
      pairs[tag] = [t, o];
    }
  }, 60_000);

  afterAll(async () => {
    for (const s of servers) await s.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Runs the script against both servers of `tag`; returns [theirs, ours] transcripts. */
  async function transcripts(tag: string, script: Script): Promise<[string, string]> {
    const out: string[] = [];
    for (const s of pairs[tag]!) {
      const lines: string[] = [];
      const c = await RawNbd.open(s.sock);
      try {
        await script(c, (l) => lines.push(l));
      } finally {
        c.end();
      }
      out.push(lines.join('\n'));
    }
    return [out[0]!, out[1]!];
  }

  /** What each server of `tag` printed on stderr so far (program names masked). */
  const printed = (tag: string): [string, string] => {
    const [t, o] = pairs[tag]!;
    return [t.stderr().replaceAll('qemu-nbd: ', 'PROG: '), o.stderr().replaceAll('diskworker nbd: ', 'PROG: ')];
  };

  /** Runs the script on both; transcripts and the servers' new stderr lines must match. */
  async function same(tag: string, script: Script, compareStderr = true): Promise<string> {
    const before = printed(tag);
    const [q, d] = await transcripts(tag, script);
    expect(d).toBe(q);
    // qemu-nbd prints when it drops a client; give its message time to arrive.
    await new Promise((r) => setTimeout(r, 200));
    const after = printed(tag);
    if (compareStderr) expect(after[1].slice(before[1].length)).toBe(after[0].slice(before[0].length));
    return q;
  }

  it('option replies: list, starttls, unknown options, info, structured reply, meta contexts', async () => {
    const q = await same('rw', async (c, log) => {
      log(await c.greet());
      log((await c.option(OPT.LIST)).join(' '));
      log((await c.option(OPT.LIST, Buffer.from('x'))).join(' '));
      log((await c.option(OPT.STARTTLS)).join(' '));
      log((await c.option(99, Buffer.from('abc'))).join(' '));
      log((await c.option(OPT.SET_META, metaPayload('e1', ['base:allocation']))).join(' '));
      log((await c.option(OPT.INFO, goPayload('e1'))).join(' '));
      log((await c.option(OPT.INFO, goPayload('e1', [1, 3, 2, 77]))).join(' '));
      log((await c.option(OPT.INFO, goPayload('nosuch'))).join(' '));
      log((await c.option(OPT.INFO, goPayload('x'.repeat(100)))).join(' '));
      log((await c.option(OPT.INFO, goPayload('e1').subarray(0, 5))).join(' '));
      log((await c.option(OPT.INFO, Buffer.concat([goPayload('e1'), Buffer.from([0])]))).join(' '));
      log((await c.option(OPT.INFO, Buffer.from([0, 0, 0x20, 0]))).join(' '));
      log((await c.option(OPT.INFO, Buffer.from([0, 0, 0, 2, 0x61, 0, 0, 0]))).join(' '));
      log((await c.option(OPT.SR)).join(' '));
      log((await c.option(OPT.SR)).join(' '));
      log((await c.option(OPT.SR, Buffer.from('z'))).join(' '));
      log((await c.option(OPT.LIST_META, metaPayload('e1', []))).join(' '));
      log((await c.option(OPT.LIST_META, metaPayload('e1', ['base:', 'qemu:', 'qemu:dirty-bitmap:', 'nope:x', 'qemu:allocation-depth', 'base:allocation']))).join(' '));
      log((await c.option(OPT.LIST_META, metaPayload('nosuch', []))).join(' '));
      log((await c.option(OPT.SET_META, metaPayload('e1', ['base:', 'qemu:', 'qemu:allocation-depth']))).join(' '));
      log((await c.option(OPT.ABORT)).join(' '));
      log(String(await c.serverClosed()));
    });
    expect(q).toContain('80000006'); // ERR_UNKNOWN for 'nosuch'
  }, 60_000);

  it('EXPORT_NAME: reply with and without zero padding, unknown name drops the connection', async () => {
    for (const flags of [1, 3]) {
      await same('rw', async (c, log) => {
        log(await c.greet(flags));
        const h = Buffer.alloc(16);
        h.writeBigUInt64BE(0x49484156454f5054n, 0);
        h.writeUInt32BE(OPT.EXPORT_NAME, 8);
        h.writeUInt32BE(2, 12);
        c.write(Buffer.concat([h, Buffer.from('e1')]));
        log((await c.read(flags === 3 ? 10 : 134))?.toString('hex') ?? 'closed');
        c.request(CMD.READ, 0, 1, 0, 16);
        log(await c.reply(false, 16));
      });
    }
    await same('rw', async (c, log) => {
      log(await c.greet());
      const h = Buffer.alloc(16);
      h.writeBigUInt64BE(0x49484156454f5054n, 0);
      h.writeUInt32BE(OPT.EXPORT_NAME, 8);
      h.writeUInt32BE(3, 12);
      c.write(Buffer.concat([h, Buffer.from('bad')]));
      log(String(await c.serverClosed()));
    });
    // Unknown client flags and a bad option magic end the handshake.
    await same('rw', async (c, log) => {
      log(await c.greet(0x10));
      log(String(await c.serverClosed()));
    });
  }, 60_000);

  it('structured replies: sparse reads, DF, errors, zero writes, trim, cache, block status', async () => {
    const q = await same('rw', async (c, log) => {
      await c.greet();
      log((await c.option(OPT.SR)).join(' '));
      log((await c.option(OPT.SET_META, metaPayload('e1', ['base:allocation', 'qemu:allocation-depth']))).join(' '));
      log((await c.option(OPT.GO, goPayload('e1', [3]))).join(' '));
      const step = async (type: number, flags: number, off: number, len: number, payload?: Buffer): Promise<void> => {
        c.request(type, flags, 7, off, len, payload);
        log(`${type}/${flags}/${off}/${len}: ${await c.reply(true)}`);
      };
      await step(CMD.READ, 0, 0, 2 * 1024 * 1024 + 8192);
      await step(CMD.READ, 4, 0, 128 * 1024);
      await step(CMD.READ, 0, 1024 * 1024, 4096);
      await step(CMD.READ, 0, 0, 0);
      await step(CMD.READ, 0, 4 * 1024 * 1024 - 512, 1024);
      await step(CMD.READ, 1, 0, 512);
      await step(CMD.READ, 8, 0, 512);
      await step(CMD.READ, 0, 0, 33 * 1024 * 1024);
      await step(CMD.WRITE, 0, 8192, 4096, Buffer.alloc(4096, 0x5a));
      await step(CMD.WRITE, 1, 12288, 512, Buffer.alloc(512, 0x5b));
      await step(CMD.WRITE, 2, 0, 512, Buffer.alloc(512, 0x5c));
      await step(CMD.WRITE, 0, 4 * 1024 * 1024, 512, Buffer.alloc(512, 0x5c));
      await step(CMD.WZ, 0, 2 * 1024 * 1024, 4096);
      await step(CMD.WZ, 2, 3 * 1024 * 1024, 65536);
      await step(CMD.WZ, 16, 3 * 1024 * 1024 + 65536, 65536);
      await step(CMD.WZ, 4, 0, 512);
      await step(CMD.WZ, 0, 4 * 1024 * 1024, 512);
      await step(CMD.TRIM, 0, 0, 65536);
      await step(CMD.TRIM, 1, 65536, 65536);
      await step(CMD.FLUSH, 0, 0, 0);
      await step(CMD.CACHE, 0, 0, 65536);
      await step(CMD.BS, 0, 0, 4 * 1024 * 1024);
      await step(CMD.BS, 8, 0, 4 * 1024 * 1024);
      await step(CMD.BS, 0, 0, 0);
      await step(CMD.BS, 0, 4 * 1024 * 1024, 1);
      await step(CMD.READ, 0, 0, 16384);
      await step(99, 0, 0, 0);
      c.request(CMD.DISC, 0, 8, 0, 0);
      log(String(await c.serverClosed()));
    });
    if (process.env.NBD_SHOW) console.log(q);
    expect(q).toContain('type=2'); // a hole chunk
    expect(q).toContain('type=5'); // block status
  }, 60_000);

  it('simple replies, block status without negotiation, and a read-only export', async () => {
    await same('ro', async (c, log) => {
      await c.greet();
      log((await c.option(OPT.LIST_META, metaPayload('', []))).join(' '));
      log((await c.option(OPT.GO, goPayload(''))).join(' '));
      const step = async (type: number, flags: number, off: number, len: number, payload?: Buffer, dataLen = 0): Promise<void> => {
        c.request(type, flags, 9, off, len, payload);
        log(`${type}/${flags}/${off}/${len}: ${await c.reply(false, dataLen)}`);
      };
      await step(CMD.READ, 0, 0, 4096, undefined, 4096);
      await step(CMD.READ, 4, 0, 4096, undefined, 4096);
      await step(CMD.WRITE, 0, 0, 512, Buffer.alloc(512, 1));
      await step(CMD.WZ, 0, 0, 512);
      await step(CMD.TRIM, 0, 0, 512);
      await step(CMD.BS, 0, 0, 512);
      await step(CMD.FLUSH, 0, 0, 0);
      await step(CMD.READ, 0, 8 * 1024 * 1024, 512);
    });
    const q = await same('ro', async (c, log) => {
      await c.greet();
      log((await c.option(OPT.SR)).join(' '));
      log((await c.option(OPT.SET_META, metaPayload('', ['qemu:dirty-bitmap:b0', 'base:allocation']))).join(' '));
      log((await c.option(OPT.GO, goPayload(''))).join(' '));
      c.request(CMD.BS, 0, 3, 0, 4 * 1024 * 1024);
      log(await c.reply(true));
      c.request(CMD.WRITE, 0, 4, 0, 512, Buffer.alloc(512, 1));
      log(await c.reply(true));
    });
    expect(q).toContain('qemu:dirty-bitmap:b0'.length ? '71656d753a64697274792d6269746d61703a6230' : '');
  }, 60_000);

  it('a client that disconnects in the middle of a write leaves the server serving and the image unchanged', async () => {
    await same('rw', async (c, log) => {
      await c.greet();
      log((await c.option(OPT.GO, goPayload('e1'))).join(' '));
      c.request(CMD.WRITE, 0, 5, 1024 * 1024 * 3, 65536, Buffer.alloc(1000, 0xee));
      await new Promise((r) => setTimeout(r, 100));
    });
    // Gone before the reply of a large read, and in the middle of a request header.
    await same('rw', async (c, log) => {
      await c.greet();
      log((await c.option(OPT.SR)).join(' '));
      log((await c.option(OPT.GO, goPayload('e1'))).join(' '));
      c.request(CMD.READ, 0, 6, 0, 4 * 1024 * 1024);
      // Whether the reply's write fails (and how) depends on timing: stderr is not compared.
    }, false);
    await same('rw', async (c, log) => {
      await c.greet();
      log((await c.option(OPT.GO, goPayload('e1'))).join(' '));
      c.write(Buffer.from([0x25, 0x60, 0x95, 0x13, 0, 0]));
      await new Promise((r) => setTimeout(r, 100));
    });
    // A request with a bad magic is answered, then the connection ends.
    await same('rw', async (c, log) => {
      await c.greet();
      log((await c.option(OPT.SR)).join(' '));
      log((await c.option(OPT.GO, goPayload('e1'))).join(' '));
      const bad = Buffer.alloc(28);
      bad.writeUInt32BE(0x12345678, 0);
      bad.writeBigUInt64BE(77n, 8);
      c.write(bad);
      log(await c.reply(true));
      log(String(await c.serverClosed()));
    });
    for (const s of pairs['rw']!) {
      const r = await run('qemu-io', ['-r', '-f', 'raw', '-c', 'read -P 0 3M 64k', nbdUri(s.sock, 'e1')]);
      expect(r.stdout).toContain('read 65536/65536 bytes at offset 3145728');
      expect(r.stdout).not.toContain('Pattern verification failed');
    }
  }, 60_000);

  it('block-layer errors map to the same NBD error numbers and messages', async () => {
    for (const tag of ['enospc', 'eperm', 'enotsup']) {
      for (const structured of [false, true]) {
        const q = await same(tag, async (c, log) => {
          await c.greet();
          if (structured) log((await c.option(OPT.SR)).join(' '));
          log((await c.option(OPT.GO, goPayload(''))).join(' '));
          c.request(CMD.WRITE, 0, 1, 2 * 1024 * 1024, 4096, Buffer.alloc(4096, 0x31));
          log(await c.reply(structured));
          c.request(CMD.WZ, 2, 2, 3 * 1024 * 1024, 4096);
          log(await c.reply(structured));
          c.request(CMD.READ, 0, 3, 0, 512);
          log(await c.reply(structured, 512));
        });
        expect(q).toMatch(new RegExp(`err=${{ enospc: 28, eperm: 1, enotsup: 95 }[tag]!}\\b`));
      }
    }
    // A failed read: an error reply with DF, a dropped connection in a sparse read (chunks may have gone out).
    for (const flags of [4, 0]) {
      const q = await same('eio', async (c, log) => {
        await c.greet();
        log((await c.option(OPT.SR)).join(' '));
        log((await c.option(OPT.GO, goPayload(''))).join(' '));
        c.request(CMD.READ, flags, 1, 0, 4096);
        log(await c.reply(true));
        log(String(await c.serverClosed()));
      });
      expect(q).toContain(flags ? 'err=5 msg=reading from file failed' : 'closed');
    }
  }, 60_000);
});
