/**
 * `diskworker nbd` against qemu-nbd 7.2: both serve copies of the same qcow2
 * image on Unix sockets, the same qemu-img / qemu-io commands run against
 * each, and every output line, exit code and the images afterwards must match.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hasQemu } from '../cli/harness.js';
import { maskTimings, nbdUri, run, startOurs, startQemuNbd, type ServerHandle } from './nbd-harness.js';



describe.skipIf(!hasQemu())('diskworker nbd vs qemu-nbd 7.2', () => {
  let dir: string;
  const servers: ServerHandle[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'dw-nbd-'));
    const img = join(dir, 'base.qcow2');
    const steps: string[][] = [
      ['create', '-q', '-f', 'qcow2', img, '4M'],
      ['bitmap', '--add', img, 'b0'],
    ];
    for (const s of steps) expect((await run('qemu-img', s)).code).toBe(0);
    // Whole clusters: a partly written cluster leaves file blocks whose state (a hole, an
    // unwritten extent) depends on the file system, and the image can then pass QEMU's guess
    // of metadata preallocation or not; QEMU asks SEEK_DATA there, node-file reads zeros.
    const io = await run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x11 0 64k', '-c', 'write -z 1M 64k', '-c', 'write -P 0x22 2M 64k', '-c', 'write -P 0x44 3M 64k', img]);
    expect(io.code).toBe(0);
    // A backing chain for allocation depth: the overlay holds only part of the data.
    const top = join(dir, 'top.qcow2');
    expect((await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', img, '-F', 'qcow2', top])).code).toBe(0);
    expect((await run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x55 64k 64k', top])).code).toBe(0);
  }, 60_000);

  afterAll(async () => {
    for (const s of servers) await s.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Copies of base.qcow2 served by both, with the same options. */
  async function pair(tag: string, args: string[], image = 'base.qcow2'): Promise<{ theirs: ServerHandle; ours: ServerHandle; a: string; b: string }> {
    const a = join(dir, `${tag}-q.qcow2`);
    const b = join(dir, `${tag}-d.qcow2`);
    copyFileSync(join(dir, image), a);
    copyFileSync(join(dir, image), b);
    const theirs = await startQemuNbd([...args, a], join(dir, `${tag}-q.sock`));
    const ours = await startOurs([...args, b], join(dir, `${tag}-d.sock`));
    servers.push(theirs, ours);
    return { theirs, ours, a, b };
  }

  /** Runs a client against both servers; outputs with the socket paths and timings masked. */
  async function both(p: { theirs: ServerHandle; ours: ServerHandle }, cmd: string, args: (sock: string) => string[]): Promise<[string, string]> {
    const out: string[] = [];
    for (const s of [p.theirs, p.ours]) {
      const r = await run(cmd, args(s.sock));
      out.push(maskTimings(`${r.code}\n${r.stdout}\n${r.stderr}`).split(s.sock).join('SOCK'));
    }
    return [out[0]!, out[1]!];
  }

  it('info, map, reads, writes, zero writes, discard and convert match; images match afterwards', async () => {
    const p = await pair('rw', ['-t', '-f', 'qcow2', '--discard=unmap']);
    let [q, d] = await both(p, 'qemu-img', (s) => ['info', '--output=json', nbdUri(s)]);
    expect(d).toBe(q);
    [q, d] = await both(p, 'qemu-img', (s) => ['map', '--output=json', nbdUri(s)]);
    expect(d).toBe(q);
    expect(q).toContain('"zero": true');
    const cmds = [
      'read -P 0x11 0 64k', 'read -P 0 64k 64k', 'read -P 0x22 2M 4k', 'read -v 3M 16',
      'write -P 0x33 3M 8k', 'write -z 3M 4k', 'write -z -u 2M 4k', 'discard 0 64k', 'write -f -P 0x66 512k 4k',
      'flush', 'map', 'read -P 0 3M 4k', 'read -P 0x33 3149824 4k', 'read 4M 512', 'write -P 1 4193792 1k', 'read -P 0x66 512k 4k',
    ];
    [q, d] = await both(p, 'qemu-io', (s) => ['-f', 'raw', ...cmds.flatMap((c) => ['-c', c]), nbdUri(s)]);
    expect(d).toBe(q);
    expect(q).not.toContain('Pattern verification failed');
    expect(q).toContain('wrote 4096/4096 bytes at offset 524288');
    [q, d] = await both(p, 'qemu-img', (s) => ['map', '--output=json', nbdUri(s)]);
    expect(d).toBe(q);
    const rawQ = join(dir, 'rw-q.raw');
    const rawD = join(dir, 'rw-d.raw');
    expect((await run('qemu-img', ['convert', '-O', 'raw', nbdUri(p.theirs.sock), rawQ])).code).toBe(0);
    expect((await run('qemu-img', ['convert', '-O', 'raw', nbdUri(p.ours.sock), rawD])).code).toBe(0);
    expect(readFileSync(rawD).equals(readFileSync(rawQ))).toBe(true);
    await p.theirs.stop();
    await p.ours.stop();
    expect(await p.ours.exited).toBe(0);
    const cmp = await run('qemu-img', ['compare', '-f', 'qcow2', '-F', 'qcow2', p.a, p.b]);
    expect(cmp.stdout).toBe('Images are identical.\n');
    const chk = await run('qemu-img', ['check', p.b]);
    expect(chk.code).toBe(0);
    expect(chk.stdout).toContain('No errors were found on the image.');
  }, 60_000);

  it('qemu-img convert -n into the exports (writes and zero writes over NBD) leaves equal images', async () => {
    const p = await pair('conv', ['-t', '-f', 'qcow2', '--discard=unmap', '--detect-zeroes=unmap']);
    const src = join(dir, 'conv-src.qcow2');
    expect((await run('qemu-img', ['create', '-q', '-f', 'qcow2', src, '4M'])).code).toBe(0);
    expect((await run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x9 512k 192k', '-c', 'write -P 0 1M 64k', src])).code).toBe(0);
    let [q, d] = await both(p, 'qemu-img', (s) => ['convert', '-n', '-f', 'qcow2', '-O', 'raw', src, nbdUri(s)]);
    expect(d).toBe(q);
    [q, d] = await both(p, 'qemu-img', (s) => ['map', '--output=json', nbdUri(s)]);
    expect(d).toBe(q);
    [q, d] = await both(p, 'qemu-img', (s) => ['compare', '-f', 'qcow2', '-F', 'raw', src, nbdUri(s)]);
    expect(d).toBe(q);
    expect(q).toContain('Images are identical.');
    await p.theirs.stop();
    await p.ours.stop();
    const cmp = await run('qemu-img', ['compare', '-f', 'qcow2', '-F', 'qcow2', p.a, p.b]);
    expect(cmp.stdout).toBe('Images are identical.\n');
    const [ma, mb] = [await run('qemu-img', ['map', '--output=json', p.a]), await run('qemu-img', ['map', '--output=json', p.b])];
    expect(mb.stdout).toBe(ma.stdout);
    expect((await run('qemu-img', ['check', p.b])).code).toBe(0);
  }, 60_000);

  it('-o exports the image from an offset', async () => {
    const p = await pair('off', ['-t', '-f', 'qcow2', '-o', '65536']);
    for (const args of [
      (s: string) => ['info', '--output=json', nbdUri(s)],
      (s: string) => ['map', '--output=json', nbdUri(s)],
    ]) {
      const [q, d] = await both(p, 'qemu-img', args);
      expect(d).toBe(q);
    }
    const [q, d] = await both(p, 'qemu-io', (s) => ['-f', 'raw', '-c', 'read -P 0 0 4k', '-c', 'read -P 0x22 2031616 4k', '-c', 'write -P 0x5 0 4k', nbdUri(s)]);
    expect(d).toBe(q);
    expect(q).not.toContain('Pattern verification failed');
  }, 60_000);

  it('a read-only export refuses writes the same way', async () => {
    const p = await pair('ro', ['-t', '-r', '-f', 'qcow2']);
    const [q, d] = await both(p, 'qemu-io', (s) => ['-f', 'raw', '-c', 'read -P 0x11 0 4k', '-c', 'write 0 4k', '-c', 'write -z 0 4k', '-c', 'discard 0 4k', nbdUri(s)]);
    expect(d).toBe(q);
    const [q2, d2] = await both(p, 'qemu-img', (s) => ['info', '--output=json', nbdUri(s)]);
    expect(d2).toBe(q2);
  }, 60_000);

  it('exports a dirty bitmap (-B) and the allocation depth (-A)', async () => {
    const p = await pair('bm', ['-t', '-r', '-f', 'qcow2', '-B', 'b0', '-A']);
    for (const ctx of ['qemu:dirty-bitmap:b0', 'qemu:allocation-depth']) {
      const [q, d] = await both(p, 'qemu-img', (s) => ['map', '--output=json', '--image-opts', `driver=nbd,server.type=unix,server.path=${s},x-dirty-bitmap=${ctx}`]);
      expect(d).toBe(q);
      expect(q.startsWith('0\n')).toBe(true);
      // Dirty or allocated ranges show as data: false in this mode.
      expect(q).toContain('"data": false');
    }
    const [q, d] = await both(p, 'qemu-nbd', (s) => ['-L', '-k', s]);
    expect(d).toBe(q);
    expect(q).toContain('qemu:dirty-bitmap:b0');
  }, 60_000);

  it('reports the allocation depth of a backing chain', async () => {
    const p = await pair('chain', ['-t', '-r', '-A'], 'top.qcow2');
    // The copies keep pointing at base.qcow2 (a relative backing name in the same directory).
    const [q, d] = await both(p, 'qemu-img', (s) => ['map', '--output=json', '--image-opts', `driver=nbd,server.type=unix,server.path=${s},x-dirty-bitmap=qemu:allocation-depth`]);
    expect(d).toBe(q);
    const [q2, d2] = await both(p, 'qemu-img', (s) => ['map', '--output=json', nbdUri(s)]);
    expect(d2).toBe(q2);
  }, 60_000);

  it('export names: listing, descriptions, and a name that is not exported', async () => {
    const p = await pair('names', ['-t', '-f', 'qcow2', '-x', 'disk0', '-D', 'the test disk', '-e', '2']);
    let [q, d] = await both(p, 'qemu-nbd', (s) => ['-L', '-k', s]);
    expect(d).toBe(q);
    expect(q).toContain('description: the test disk');
    [q, d] = await both(p, 'qemu-img', (s) => ['info', '--output=json', nbdUri(s, 'nosuch')]);
    expect(d).toBe(q);
    expect(q).toContain("export 'nosuch' not present");
    [q, d] = await both(p, 'qemu-io', (s) => ['-r', '-f', 'raw', '-c', 'read -P 0x11 0 64k', nbdUri(s, 'disk0')]);
    expect(d).toBe(q);
  }, 60_000);

  it('without -t the server exits after its client, with status 0', async () => {
    const p = await pair('once', ['-f', 'qcow2']);
    const [q, d] = await both(p, 'qemu-io', (s) => ['-f', 'raw', '-c', 'read -P 0x22 2M 4k', nbdUri(s)]);
    expect(d).toBe(q);
    expect(await p.theirs.exited).toBe(0);
    expect(await p.ours.exited).toBe(0);
  }, 60_000);

  it('-s keeps writes in a temporary overlay', async () => {
    const p = await pair('snap', ['-t', '-s', '-f', 'qcow2']);
    const [q, d] = await both(p, 'qemu-io', (s) => ['-f', 'raw', '-c', 'write -P 0x77 0 4k', '-c', 'read -P 0x77 0 4k', nbdUri(s)]);
    expect(d).toBe(q);
    await p.theirs.stop();
    await p.ours.stop();
    const cmp = await run('qemu-img', ['compare', '-f', 'qcow2', '-F', 'qcow2', p.b, join(dir, 'base.qcow2')]);
    expect(cmp.stdout).toBe('Images are identical.\n');
  }, 60_000);

});
