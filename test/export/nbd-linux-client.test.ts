/**
 * Linux's nbd-client (Debian's nbd-client 3.24) against our NBD servers and QEMU's:
 * the export list, a missing export, and an attach, whose negotiation (export size
 * and flags) must go through as against qemu-nbd / qemu-storage-daemon. Attaching a
 * /dev/nbdN needs the kernel's nbd module, which this machine does not have: the
 * attach then fails at the kernel step, after the whole handshake, with the same
 * words for either server; with the module loaded the attach case is skipped (it
 * would attach a device).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BIN, ensureBuiltBin, hasQemu } from '../cli/harness.js';

const NBD_CLIENT = '/usr/sbin/nbd-client';
const hasClient = existsSync(NBD_CLIENT);
const kernelNbd = existsSync('/sys/module/nbd');

/** nbd-client's answer, with the server's program name and the socket path masked. */
function client(args: string[], sock: string): string {
  const r = spawnSync(NBD_CLIENT, args, { encoding: 'utf8', timeout: 20_000 });
  return `rc ${r.status}\n${r.stdout}\n${r.stderr}`.split(sock).join('SOCK');
}

async function waitForSocket(sock: string, child: ChildProcess): Promise<void> {
  for (let i = 0; i < 800 && !existsSync(sock); i++) {
    if (child.exitCode !== null) throw new Error(`server exited (${child.exitCode})`);
    await new Promise((r) => setTimeout(r, 25));
  }
  if (!existsSync(sock)) throw new Error(`no socket at ${sock}`);
}

async function stop(child: ChildProcess): Promise<string> {
  let err = '';
  child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  if (child.exitCode === null) {
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  }
  return err;
}

describe.skipIf(!hasQemu() || !hasClient)("Linux's nbd-client against diskworker's NBD servers and QEMU's", () => {
  let dir: string;
  beforeAll(() => {
    ensureBuiltBin();
    dir = mkdtempSync(join(tmpdir(), 'dw-nbdlinux-'));
    expect(spawnSync('qemu-img', ['create', '-q', '-f', 'qcow2', join(dir, 'a.qcow2'), '64M']).status).toBe(0);
    expect(spawnSync('qemu-img', ['create', '-q', '-f', 'raw', join(dir, 'b.raw'), '3M']).status).toBe(0);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** The same nbd-client runs against a server started by `start(tag)` for QEMU's tool and ours. */
  async function both(start: (tool: 'qemu' | 'ours', sock: string) => ChildProcess, runs: (sock: string) => string[]): Promise<void> {
    const out: Record<string, string[]> = {};
    for (const tool of ['qemu', 'ours'] as const) {
      const sock = join(dir, `${tool}.sock`);
      rmSync(sock, { force: true });
      const child = start(tool, sock);
      try {
        await waitForSocket(sock, child);
        out[tool] = runs(sock);
      } finally {
        await stop(child);
      }
    }
    expect(out['ours']).toEqual(out['qemu']);
  }

  const cases = (sock: string): string[] => [
    client(['-l', '-unix', sock], sock),
    client(['-unix', sock, '-N', 'missing', '/dev/nbd15'], sock),
    ...(kernelNbd ? [] : [client(['-unix', sock, '-N', 'disk0', '/dev/nbd15'], sock)]),
  ];

  it('diskworker nbd as qemu-nbd: the list, a missing export, an attach', { timeout: 60_000 }, async () => {
    copyFileSync(join(dir, 'a.qcow2'), join(dir, 'a2.qcow2'));
    const args = ['-x', 'disk0', '-t', '-f', 'qcow2'];
    await both(
      (tool, sock) =>
        tool === 'qemu'
          ? spawn('qemu-nbd', ['-k', sock, ...args, join(dir, 'a.qcow2')], { stdio: ['ignore', 'ignore', 'pipe'] })
          : spawn(process.execPath, [BIN, 'nbd', '-k', sock, ...args, join(dir, 'a2.qcow2')], { stdio: ['ignore', 'ignore', 'pipe'] }),
      (sock) => {
        const got = cases(sock);
        expect(got[0]).toContain('disk0');
        if (!kernelNbd) expect(got[2]).toContain('size = 64MB');
        return got;
      },
    );
  });

  it('diskworker daemon as qemu-storage-daemon: two exports listed, each attachable', { timeout: 60_000 }, async () => {
    await both(
      (tool, sock) => {
        const args = [
          '--blockdev',
          `driver=file,filename=${join(dir, 'a.qcow2')},node-name=fa`,
          '--blockdev',
          'driver=qcow2,file=fa,node-name=qa,read-only=on',
          '--blockdev',
          `driver=file,filename=${join(dir, 'b.raw')},node-name=fb,read-only=on`,
          '--nbd-server',
          `addr.type=unix,addr.path=${sock}`,
          '--export',
          'type=nbd,id=e1,node-name=qa,name=disk0',
          '--export',
          'type=nbd,id=e2,node-name=fb,name=second',
        ];
        return tool === 'qemu'
          ? spawn('qemu-storage-daemon', args, { stdio: ['ignore', 'ignore', 'pipe'] })
          : spawn(process.execPath, [BIN, 'daemon', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
      },
      (sock) => {
        const got = [...cases(sock), ...(kernelNbd ? [] : [client(['-unix', sock, '-N', 'second', '/dev/nbd15'], sock)])];
        expect(got[0]).toMatch(/disk0[\s\S]*second|second[\s\S]*disk0/);
        if (!kernelNbd) expect(got[3]).toContain('size = 3MB');
        return got;
      },
    );
  });
});
