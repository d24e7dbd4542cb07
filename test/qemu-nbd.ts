/**
 * The dirty extents of a persistent bitmap as QEMU sees them: the image is
 * exported read-only by qemu-nbd with the bitmap, and `qemu-img map` in
 * x-dirty-bitmap mode reports dirty ranges as `data: false`. Shared by the
 * Vitest bitmap tests and the Playwright specs (no test framework imports).
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

/** Dirty extents of bitmap `name` in qcow2 image `file`, as [offset, length], adjacent ones merged. */
export async function qemuDirtyExtents(file: string, name: string, sock = `${file}.sock`): Promise<Array<[number, number]>> {
  // force-share: the image may be open for writing in this test (QEMU sees its locks).
  const opts = `driver=qcow2,force-share=on,file.filename=${file.replace(/,/g, ',,')}`;
  const nbd = spawn('qemu-nbd', ['-r', '-B', name, '--socket', sock, '--image-opts', opts], { stdio: 'ignore' });
  const exited = new Promise((r) => nbd.once('exit', r));
  try {
    for (let i = 0; i < 200 && !existsSync(sock) && nbd.exitCode === null; i++) await new Promise((r) => setTimeout(r, 25));
    const r = spawnSync(
      'qemu-img',
      ['map', '--output=json', '--image-opts', `driver=nbd,server.type=unix,server.path=${sock},x-dirty-bitmap=qemu:dirty-bitmap:${name}`],
      { encoding: 'utf8' },
    );
    if (r.status !== 0) throw new Error(`qemu-img map over nbd failed: ${r.stderr}`);
    const map = JSON.parse(r.stdout) as Array<{ start: number; length: number; data: boolean }>;
    const out: Array<[number, number]> = [];
    for (const e of map) {
      if (e.data) continue;
      const last = out[out.length - 1];
      if (last && last[0] + last[1] === e.start) last[1] += e.length;
      else out.push([e.start, e.length]);
    }
    return out;
  } finally {
    nbd.kill();
    await exited;
  }
}
