/**
 * The NBD client driver (src/protocols/nbd.ts), differentially: the same
 * command lines through qemu-img / qemu-io 7.2 and `diskworker img` / `io`,
 * against the same server (qemu-nbd 7.2, and `diskworker nbd`), over Unix
 * sockets and TCP. Every output line and exit code must match; seeded
 * qemu-io sessions that write through the client must leave identical images
 * (each tool writes its own copy, served by its own qemu-nbd).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BIN, hasQemu, normalize, ours, theirs, type RunResult, type Tool } from '../cli/harness.js';
import { prng } from '../prng.js';
import { nbdUri, run, startQemuNbd, type ServerHandle } from '../export/nbd-harness.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const SIZE = 4 * MiB;

let dir = '';
const servers: ServerHandle[] = [];

/**
 * A server on `sock`: qemu-nbd, or `diskworker nbd` in its own process (the
 * reference tools run synchronously here, so a server in this process could not answer them).
 */
async function serve(kind: 'qemu' | 'ours', args: string[], sock: string): Promise<ServerHandle> {
  const s = kind === 'qemu' ? await startQemuNbd(args, sock) : await startProcess(process.execPath, [BIN, 'nbd', '-k', sock, ...args], () => existsSync(sock));
  servers.push(s);
  return s;
}

/** A server process; resolves once `ready` holds. */
async function startProcess(cmd: string, args: string[], ready: () => boolean | Promise<boolean>): Promise<ServerHandle> {
  const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number>((r) => child.once('exit', (code) => r(code ?? 1)));
  for (let i = 0; !(await ready()); i++) {
    if (child.exitCode !== null) throw new Error(`${cmd} ${args.join(' ')} exited: ${err}`);
    if (i > 800) throw new Error(`${cmd} ${args.join(' ')} did not start`);
    await new Promise((r) => setTimeout(r, 25));
  }
  return {
    sock: '',
    exited,
    stderr: () => err,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

/** Both tools' answers to one command line, normalised (timings, program names). */
async function both(tool: Tool, args: string[]): Promise<{ qemu: RunResult; ours: RunResult }> {
  const q = theirs(tool, args, dir);
  const o = await ours(tool, args, dir);
  const n = (r: RunResult): RunResult => ({ code: r.code, stdout: normalize(r.stdout), stderr: normalize(r.stderr) });
  return { qemu: n(q), ours: n(o) };
}

async function expectSame(tool: Tool, args: string[]): Promise<RunResult> {
  const r = await both(tool, args);
  expect(r.ours, `${tool} ${args.join(' ')}`).toEqual(r.qemu);
  return r.qemu;
}

/** A TCP port nobody listens on right now. */
async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

/** qemu-io commands of one seeded session over an export of SIZE bytes. */
function session(seed: number, count: number): string[] {
  const r = prng(seed);
  const int = (n: number): number => Math.floor(r() * n);
  const cmds: string[] = [];
  for (let i = 0; i < count; i++) {
    const k = r();
    const off = int(SIZE / 512 - 300) * 512;
    const len = (1 + int(256)) * 512;
    if (k < 0.3) cmds.push(`read -v ${off} ${1 + int(2000)}`);
    else if (k < 0.5) cmds.push(`write -P ${1 + int(250)} ${off} ${len}`);
    else if (k < 0.58) cmds.push(`write -z ${off} ${len}`);
    else if (k < 0.64) cmds.push(`write -z -u ${off} ${len}`);
    else if (k < 0.7) cmds.push(`discard ${off} ${len}`);
    else if (k < 0.74) cmds.push('flush');
    else if (k < 0.8) cmds.push(`writev -P ${1 + int(250)} ${off} 4k ${len}`);
    else if (k < 0.86) cmds.push(`aio_write -P ${1 + int(250)} ${off} ${len}`, 'aio_flush');
    else if (k < 0.9) cmds.push(`write -f -P ${1 + int(250)} ${off} ${len}`);
    else if (k < 0.95) cmds.push(`map`);
    else cmds.push(`alloc ${off} ${len}`);
  }
  return cmds;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'dw-nbd-client-'));
  const img = join(dir, 'a.qcow2');
  expect((await run('qemu-img', ['create', '-q', '-f', 'qcow2', img, `${SIZE}`])).code).toBe(0);
  const r = prng(7);
  const cmds: string[] = [];
  for (let i = 0; i < 24; i++) {
    const off = Math.floor(r() * (SIZE / 512 - 200)) * 512;
    const len = (1 + Math.floor(r() * 150)) * 512;
    cmds.push('-c', i % 4 === 3 ? `write -z ${off} ${len}` : `write -P ${1 + Math.floor(r() * 250)} ${off} ${len}`);
  }
  expect((await run('qemu-io', ['-f', 'qcow2', ...cmds, img])).code).toBe(0);
}, 60_000);

afterEach(async () => {
  for (const s of servers.splice(0)) await s.stop();
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(!hasQemu())('the NBD client: the same answers as qemu-img and qemu-io 7.2', () => {
  for (const kind of ['qemu', 'ours'] as const) {
    it(`info, map, compare and convert of a read-only export (${kind === 'qemu' ? 'qemu-nbd' : 'diskworker nbd'} serving)`, { timeout: 120_000 }, async () => {
      const sock = join(dir, `ro-${kind}.sock`);
      await serve(kind, ['-r', '-t', '-x', 'e1', '-f', 'qcow2', join(dir, 'a.qcow2')], sock);
      const uri = nbdUri(sock, 'e1');
      for (const args of [
        ['info', uri],
        ['info', '--output=json', uri],
        ['info', '-f', 'raw', uri],
        ['info', `nbd:unix:${sock}:exportname=e1`],
        ['info', `json:{"driver":"nbd","server":{"type":"unix","path":"${sock}"},"export":"e1"}`],
        ['info', '--image-opts', `driver=nbd,path=${sock},export=e1`],
        ['info', '--image-opts', `driver=raw,file.driver=nbd,file.server.type=unix,file.server.path=${sock},file.export=e1`],
        ['map', uri],
        ['map', '--output=json', uri],
        ['map', '--output=json', '-f', 'raw', '--start-offset', '12345', '--max-length', '1000000', uri],
        ['compare', '-f', 'qcow2', '-F', 'raw', join(dir, 'a.qcow2'), uri],
        ['check', uri],
        ['measure', '-O', 'qcow2', uri],
      ]) {
        await expectSame('img', args);
      }
      expect((await ours('img', ['convert', '-O', 'raw', uri, 'ours.raw'], dir)).code).toBe(0);
      expect(theirs('img', ['convert', '-O', 'raw', uri, 'theirs.raw'], dir).code).toBe(0);
      expect(readFileSync(join(dir, 'ours.raw')).equals(readFileSync(join(dir, 'theirs.raw')))).toBe(true);
      // Reads of every byte kind, byte-exact offsets, and a write the read-only export refuses.
      await expectSame('io', ['-r', '-f', 'raw', '-c', 'read -v 0 1000', '-c', `read -v ${SIZE - 777} 777`, '-c', 'map', '-c', `alloc 0 ${SIZE}`, uri]);
      await expectSame('io', ['-f', 'raw', '-c', 'read 0 512', uri]);
      await expectSame('io', ['-f', 'raw', '-c', 'read 0 512', '--image-opts', `driver=raw,file.driver=nbd,file.path=${sock},file.export=e1,file.auto-read-only=on`]);
    });
  }

  it('refuses what qemu-img refuses, with its messages: no server, a missing export, bad names and options', { timeout: 120_000 }, async () => {
    const sock = join(dir, 'err.sock');
    await serve('qemu', ['-t', '-x', 'e1', '-f', 'qcow2', join(dir, 'a.qcow2')], sock);
    const port = await freePort();
    writeFileSync(join(dir, 'not-a-socket'), '');
    for (const name of [
      nbdUri(sock, 'e2'),
      nbdUri(join(dir, 'missing.sock')),
      nbdUri(join(dir, 'not-a-socket')),
      `nbd://127.0.0.1:${port}/e1`,
      `nbd+tcp://127.0.0.1:${port}`,
      `nbd:127.0.0.1:${port}:exportname=e1`,
      'nbd+unix://?socket=/x&a=b',
      'nbd+unix://host/?socket=/x',
      'nbd+unix:///e1',
      'nbd://127.0.0.1/e1?socket=/x',
      'nbd:///e1',
      'nbd+ssh://host/e1',
      'nbd:',
      'nbd:nohostport',
      `json:{"driver":"nbd"}`,
      `json:{"driver":"nbd","path":"${sock}","host":"localhost"}`,
      `json:{"driver":"nbd","path":"${sock}","port":"1"}`,
      `json:{"driver":"nbd","path":"${sock}","server":{"type":"unix","path":"${sock}"}}`,
      `json:{"driver":"nbd","server":{"type":"unix"}}`,
      `json:{"driver":"nbd","server":{"type":"inet","host":"127.0.0.1"}}`,
      `json:{"driver":"nbd","server":{"type":"unix","path":"${sock}","host":"x"}}`,
      `json:{"driver":"nbd","server":{"path":"${sock}"}}`,
      `json:{"driver":"nbd","server":{"type":"unix","path":"${sock}"},"export":"e1","x-dirty-bitmap":"qemu:dirty-bitmap:none"}`,
    ]) {
      await expectSame('img', ['info', name]);
    }
    // A writable open of a read-only export, and truncation (NBD nodes keep their size).
    const ro = join(dir, 'ro.sock');
    await serve('qemu', ['-r', '-t', '-x', 'e1', '-f', 'qcow2', join(dir, 'a.qcow2')], ro);
    await expectSame('io', ['-f', 'raw', '-c', 'read 0 512', nbdUri(ro, 'e1')]);
    await expectSame('img', ['resize', '-f', 'raw', nbdUri(ro, 'e1'), '8M']);
  });

  it('a server for one client (qemu-nbd --fork without -t) answers info and check: the image is opened once', { timeout: 60_000 }, async () => {
    const seen: Record<string, string[]> = {};
    for (const tool of ['qemu', 'ours'] as const) {
      seen[tool] = [];
      for (const cmd of [['info'], ['info', '--output=json'], ['check']]) {
        const sock = join(dir, `once-${tool}.sock`);
        expect((await run('qemu-nbd', ['-k', sock, '-f', 'raw', '--fork', 'null-co://'])).code).toBe(0);
        const args = [...cmd, nbdUri(sock)];
        const r = tool === 'qemu' ? theirs('img', args, dir) : await ours('img', args, dir);
        seen[tool]!.push(`${r.code} ${normalize(r.stdout)}${normalize(r.stderr)}`.replaceAll(`once-${tool}`, 'once'));
      }
    }
    expect(seen.ours).toEqual(seen.qemu);
    expect(seen.qemu![0]).toMatch(/^0 image: nbd\+unix:\/\/\?socket=/);
  });

  for (const [seed, transport] of [[1, 'unix'], [2, 'tcp'], [3, 'unix']] as const) {
    it(`seed ${seed}: a qemu-io session writing over NBD (${transport}) prints what qemu-io prints and leaves the same image`, { timeout: 180_000 }, async () => {
      const cmds = session(seed, 60);
      const results: Record<string, string> = {};
      for (const tool of ['qemu', 'ours'] as const) {
        const img = join(dir, `s${seed}-${tool}.qcow2`);
        copyFileSync(join(dir, 'a.qcow2'), img);
        const sock = join(dir, `s${seed}-${tool}.sock`);
        let uri = nbdUri(sock);
        if (transport === 'tcp') {
          const port = await freePort();
          await serveTcp(['-t', '-p', String(port), '-b', '127.0.0.1', '-f', 'qcow2', img], port);
          uri = `nbd://127.0.0.1:${port}`;
        } else {
          await serve('qemu', ['-t', '-f', 'qcow2', img], sock);
        }
        const args = ['-f', 'raw', ...cmds.flatMap((c) => ['-c', c]), uri];
        const r = tool === 'qemu' ? theirs('io', args, dir) : await ours('io', args, dir);
        results[tool] = `${r.code}\n${normalize(r.stdout).replaceAll(String(uri), 'URI')}${normalize(r.stderr).replaceAll(String(uri), 'URI')}`;
        for (const s of servers.splice(0)) await s.stop();
        expect((await run('qemu-img', ['check', img])).code).toBe(0);
      }
      expect(results.ours).toEqual(results.qemu);
      const cmp = await run('qemu-img', ['compare', '-f', 'qcow2', '-F', 'qcow2', join(dir, `s${seed}-qemu.qcow2`), join(dir, `s${seed}-ours.qcow2`)]);
      expect(cmp.stdout).toBe('Images are identical.\n');
      // The same allocation too (zero writes with and without unmap, discards reach the qcow2).
      const map = async (f: string) => (await run('qemu-img', ['map', '--output=json', f])).stdout;
      expect(await map(join(dir, `s${seed}-ours.qcow2`))).toBe(await map(join(dir, `s${seed}-qemu.qcow2`)));
    });
  }

  it('convert into an export, and a qcow2 overlay whose backing file is an export', { timeout: 120_000 }, async () => {
    const outputs: Record<string, string[]> = {};
    for (const tool of ['qemu', 'ours'] as const) {
      const target = join(dir, `t-${tool}.raw`);
      expect((await run('qemu-img', ['create', '-q', '-f', 'raw', target, `${SIZE}`])).code).toBe(0);
      const sock = join(dir, `t-${tool}.sock`);
      await serve('qemu', ['-t', '-f', 'raw', target], sock);
      const lines: string[] = [];
      const call = async (t: Tool, args: string[]): Promise<void> => {
        const r = tool === 'qemu' ? theirs(t, args, dir) : await ours(t, args, dir);
        lines.push(`${r.code} ${normalize(r.stdout)}${normalize(r.stderr)}`.replaceAll(dir, 'DIR').replaceAll(`-${tool}.`, '-X.'));
      };
      await call('img', ['convert', '-n', '-f', 'qcow2', '-O', 'raw', join(dir, 'a.qcow2'), nbdUri(sock)]);
      await call('img', ['compare', '-f', 'qcow2', '-F', 'raw', join(dir, 'a.qcow2'), nbdUri(sock)]);
      const overlay = join(dir, `o-${tool}.qcow2`);
      await call('img', ['create', '-f', 'qcow2', '-b', nbdUri(sock), '-F', 'raw', overlay]);
      await call('io', ['-c', 'write -P 0x5a 1M 64k', '-c', 'read -P 0x5a 1M 64k', '-c', 'map', overlay]);
      await call('img', ['info', '--backing-chain', overlay]);
      await call('img', ['map', '--output=json', overlay]);
      outputs[tool] = lines;
      for (const s of servers.splice(0)) await s.stop();
    }
    expect(outputs.ours).toEqual(outputs.qemu);
    expect(readFileSync(join(dir, 't-ours.raw')).equals(readFileSync(join(dir, 't-qemu.raw')))).toBe(true);
  });
});

/** qemu-nbd on a TCP port; resolves once it accepts connections. */
async function serveTcp(args: string[], port: number): Promise<void> {
  servers.push(await startProcess('qemu-nbd', args, () => portOpen(port)));
}

/** Whether something accepts connections on the port. */
async function portOpen(port: number): Promise<boolean> {
  return new Promise<boolean>((res) => {
    const s = connect({ host: '127.0.0.1', port }, () => {
      s.destroy();
      res(true);
    });
    s.on('error', () => res(false));
  });
}
