/**
 * QEMU's image locks seen by the daemon (issue #16), against
 * qemu-storage-daemon 7.2: a node opened read-only, then a qemu-io process
 * that opens the same image read-only (its locks forbid writers), then
 * blockdev-reopen to read-write and blockdev-add of a writer: both daemons
 * refuse with QEMU's lock error; with locking=off ours, like QEMU, does not
 * look. Needs `npm run build:ts` (the bundled bin) and Linux /proc/locks.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { both, hasQsd, run, stopAll, type Json, type Step } from './harness.js';
import { heldRanges, lockKey } from '../../src/protocols/node-file-locks.js';

const holders: ChildProcess[] = [];
afterAll(async () => {
  for (const p of holders) if (p.exitCode === null && p.signalCode === null) p.kill('SIGTERM');
  await stopAll();
});

const locksOn = (file: string): number => {
  const st = statSync(file);
  return heldRanges(readFileSync('/proc/locks', 'latin1'), lockKey(st.dev, st.ino)).length;
};

/** Starts `qemu-io -r file` (commands from a pipe kept open) and waits until its locks show. */
function holdReadOnly(dir: string, name: string): void {
  const file = join(dir, name);
  const before = locksOn(file);
  const p = spawn('qemu-io', ['-r', name], { cwd: dir, stdio: ['pipe', 'ignore', 'ignore'] });
  holders.push(p);
  const pause = new Int32Array(new SharedArrayBuffer(4));
  // A step of the script is synchronous: wait here (the test's timeout bounds it).
  while (locksOn(file) <= before && p.exitCode === null) Atomics.wait(pause, 0, 0, 20);
}

const cap: Step = { execute: 'qmp_capabilities' };
const reopen = (...options: Json[]): Step => ({ execute: 'blockdev-reopen', arguments: { options } });

describe.skipIf(!hasQsd() || !existsSync('/proc/locks'))('QEMU locks against qemu-storage-daemon 7.2', () => {
  it('a reopen to read-write and a new writer refused while another process reads; locking=off does not look', async () => {
    const r = await both(
      'locks-reopen',
      (dir) => {
        run('qemu-img', ['create', '-f', 'qcow2', 'a.qcow2', '1M'], dir);
        run('qemu-img', ['create', '-f', 'qcow2', 'n.qcow2', '1M'], dir);
      },
      ['--blockdev', JSON.stringify({ driver: 'qcow2', 'node-name': 'q', 'read-only': true, file: { driver: 'file', 'node-name': 'f', filename: '$DIR/a.qcow2' } })],
      [
        cap,
        { call: (dir: string) => holdReadOnly(dir, 'a.qcow2') },
        reopen({ driver: 'qcow2', 'node-name': 'q', 'read-only': false, file: 'f' }),
        { execute: 'blockdev-add', arguments: { driver: 'qcow2', 'node-name': 'w', file: { driver: 'file', filename: '$DIR/a.qcow2' } } },
        { execute: 'blockdev-add', arguments: { driver: 'qcow2', 'node-name': 'r', 'read-only': true, file: { driver: 'file', filename: '$DIR/a.qcow2' } } },
        { call: (dir: string) => holdReadOnly(dir, 'n.qcow2') },
        { execute: 'blockdev-add', arguments: { driver: 'qcow2', 'node-name': 'n', file: { driver: 'file', filename: '$DIR/n.qcow2', locking: 'off' } } },
        { execute: 'query-named-block-nodes', arguments: { flat: true } },
      ],
    );
    const errors = r.qemu.replies.slice(0, -1).filter((x) => JSON.stringify(x).includes('lock'));
    expect(errors.length).toBe(2);
    expect(JSON.stringify(errors[0])).toContain('Failed to get \\"write\\" lock');
    expect(r.ours.replies.slice(0, -1)).toEqual(r.qemu.replies.slice(0, -1));
    const names = (x: Json) => ((x as { return: Array<{ 'node-name': string }> }).return ?? []).map((n) => n['node-name']).filter((n) => !n.startsWith('#')).sort();
    expect(names(r.ours.replies.at(-1)!)).toEqual(names(r.qemu.replies.at(-1)!));
  }, 60_000);
});
