/**
 * Errors while a snapshot operation frees clusters, against qemu-img 7.2 (the
 * case of QEMU's iotest 217 and its neighbours). blkdebug fails every request
 * after qcow2's first `cluster_free` event: QEMU's qcow2_free_clusters prints
 * the error and goes on (the clusters leak), the operation fails where its
 * next step needs the disk. Both tools run on copies of one image; the exit
 * code, the messages, the snapshot list and `qemu-img check` (leaks only)
 * must be the same.
 */
import { describe, expect, it } from 'vitest';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { hasQemu, normalize, ours, theirs } from '../../cli/harness.js';

function sh(cmd: string, args: string[], cwd: string): string {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8' });
  return `${r.status}\n${r.stdout}${r.stderr}`;
}

const list = (file: string, cwd: string) => sh('qemu-img', ['snapshot', '-l', file], cwd).replace(/\d{4}-\d\d-\d\d \d\d:\d\d:\d\d/g, 'DATE');

interface Case {
  name: string;
  /** Snapshots made (by qemu-img) before the failing command. */
  snapshots: string[];
  /** The failing `img snapshot` arguments (the image is appended). */
  args: string[];
  errno: number;
  /** Whether qemu-img meets the error (apply frees nothing through qcow2_free_clusters). */
  meetsError: boolean;
}

const CASES: Case[] = [
  // iotest 217: the old table's free is the first event (refcount block not read yet), then the walk's reads fail.
  { name: 'delete of the only snapshot, EIO', snapshots: ['foo'], args: ['-d', 'foo'], errno: 5, meetsError: true },
  { name: 'delete of one of two snapshots, EIO', snapshots: ['a', 'b'], args: ['-d', 'a'], errno: 5, meetsError: true },
  { name: 'delete, ENOSPC', snapshots: ['foo'], args: ['-d', 'foo'], errno: 28, meetsError: true },
  // The create succeeds; the close cannot write the caches (the old table's discard counted as a write).
  { name: 'create next to an existing snapshot, EIO', snapshots: ['a'], args: ['-c', 'b'], errno: 5, meetsError: true },
  { name: 'apply, EIO', snapshots: ['a', 'b'], args: ['-a', 'a'], errno: 5, meetsError: false },
];

describe.skipIf(!hasQemu())('snapshot operations when freeing clusters fails (qemu-img 7.2)', () => {
  for (const c of CASES) {
    it(c.name, async () => {
      const dir = mkdtempSync(join(tmpdir(), 'dw-snap-free-'));
      try {
        sh('qemu-img', ['create', '-q', '-f', 'qcow2', 'base.qcow2', '64M'], dir);
        sh('qemu-io', ['-c', 'write -P 0x11 0 64k', '-c', 'write -P 0x22 1M 64k', 'base.qcow2'], dir);
        for (const s of c.snapshots) {
          sh('qemu-img', ['snapshot', '-c', s, 'base.qcow2'], dir);
          sh('qemu-io', ['-c', `write -P 0x${(0x33 + s.length).toString(16)} 64k 64k`, 'base.qcow2'], dir);
        }
        writeFileSync(join(dir, 'bd.conf'), `[inject-error]\nevent = "cluster_free"\nerrno = "${c.errno}"\n`);
        copyFileSync(join(dir, 'base.qcow2'), join(dir, 'q.qcow2'));
        copyFileSync(join(dir, 'base.qcow2'), join(dir, 'o.qcow2'));
        const q = theirs('img', ['snapshot', ...c.args, 'blkdebug:bd.conf:q.qcow2'], dir);
        const o = await ours('img', ['snapshot', ...c.args, 'blkdebug:bd.conf:o.qcow2'], dir);
        expect({ code: o.code, stdout: o.stdout, stderr: normalize(o.stderr) }).toEqual({
          code: q.code,
          stdout: q.stdout,
          stderr: normalize(q.stderr),
        });
        // The case meets the error where QEMU meets it, or it tests nothing.
        expect(q.stderr !== '').toBe(c.meetsError);
        expect(list('o.qcow2', dir)).toBe(list('q.qcow2', dir));
        const check = (f: string) => sh('qemu-img', ['check', f], dir).replaceAll(f, 'IMG');
        expect(check('o.qcow2')).toBe(check('q.qcow2'));
        // Leaks at most (exit code 3 = leaks, 0 = clean).
        expect(check('o.qcow2')).toMatch(/^[03]\n/);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }
});

/**
 * pass-discard-snapshot (on by default): the clusters a snapshot delete frees
 * are discarded in the file, so the file's data extents after the delete are
 * qemu-img's; with the option off they stay allocated.
 */
describe.skipIf(!hasQemu())('pass-discard-snapshot (qemu-img 7.2)', () => {
  for (const pass of ['on', 'off']) {
    it(`delete with pass-discard-snapshot=${pass}: the file's extents are qemu-img's`, async () => {
      const dir = mkdtempSync(join(tmpdir(), 'dw-snap-discard-'));
      try {
        sh('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4096', 'base.qcow2', '4M'], dir);
        sh('qemu-io', ['-c', 'write -P 0x11 0 256k', 'base.qcow2'], dir);
        sh('qemu-img', ['snapshot', '-c', 's', 'base.qcow2'], dir);
        // Overwritten after the snapshot: the old clusters belong to the snapshot alone.
        sh('qemu-io', ['-c', 'write -P 0x22 0 128k', 'base.qcow2'], dir);
        copyFileSync(join(dir, 'base.qcow2'), join(dir, 'q.qcow2'));
        copyFileSync(join(dir, 'base.qcow2'), join(dir, 'o.qcow2'));
        const opts = (f: string) => `driver=qcow2,pass-discard-snapshot=${pass},file.driver=file,file.filename=${f}`;
        const q = theirs('img', ['snapshot', '--image-opts', '-d', 's', opts('q.qcow2')], dir);
        const o = await ours('img', ['snapshot', '--image-opts', '-d', 's', opts('o.qcow2')], dir);
        expect([o.code, o.stderr]).toEqual([q.code, q.stderr]);
        expect(q.code).toBe(0);
        const extents = (f: string) => sh('qemu-img', ['map', '-f', 'raw', '--output=json', f], dir);
        expect(extents('o.qcow2')).toBe(extents('q.qcow2'));
        const check = (f: string) => sh('qemu-img', ['check', f], dir).replaceAll(f, 'IMG');
        expect(check('o.qcow2')).toBe(check('q.qcow2'));
        // The option changes something, or this compares nothing.
        const holes = (JSON.parse(extents('q.qcow2').replace(/^\d+\n/, '')) as Array<{ data: boolean }>).filter((e) => !e.data).length;
        expect(holes > 1).toBe(pass === 'on');
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }
});
