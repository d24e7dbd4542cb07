/**
 * object-add and object-del against qemu-storage-daemon 7.2: throttle groups
 * (made, used by a throttle node, refused while in use, deleted after),
 * secrets (one opens a luks image qemu-img made), iothreads, and every
 * error QEMU gives for a bad type, id, property or value; also objects made
 * with the daemon's `--object` and deleted over QMP. The same replies on
 * both sides. Needs `npm run build:ts` (the bundled bin).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { both, hasQsd, run, stopAll, x, type Step } from './harness.js';

afterAll(stopAll);

const add = (args: Record<string, unknown>): Step => x('object-add', args as never);
const del = (id: string): Step => x('object-del', { id });

/** qemu-img's luks creation, repeated when its PBKDF2 timing fails on a busy machine. */
function luksCreate(dir: string): void {
  for (let attempt = 1; ; attempt++) {
    const r = spawnSync('qemu-img', ['create', '-q', '--object', 'secret,id=k,data=pw', '-f', 'luks', '-o', 'key-secret=k,iter-time=10', 'a.luks', '1M'], { cwd: dir, encoding: 'utf8' });
    if (r.status === 0) return;
    if (attempt >= 12 || !r.stderr.includes('Unable to get accurate CPU usage')) throw new Error(r.stderr);
  }
}

describe.skipIf(!hasQsd())('object-add / object-del against qemu-storage-daemon 7.2', () => {
  it('throttle groups, secrets and iothreads: made, used, deleted, and every error as QEMU gives it', async () => {
    const steps: Step[] = [
      x('qmp_capabilities'),
      add({ 'qom-type': 'throttle-group', id: 'tg1', limits: { 'bps-total': 1000000 } }),
      add({ 'qom-type': 'throttle-group', id: 'tg1' }),
      add({ 'qom-type': 'throttle-group', id: 'tg2', 'x-bps-total': -1 }),
      add({ 'qom-type': 'throttle-group', id: 'tg2', limits: { 'bps-total': 'x' } }),
      add({ 'qom-type': 'throttle-group', id: 'tg2', limits: 5 }),
      add({ 'qom-type': 'throttle-group', id: 'tg2', limits: { 'bps-total': 10, 'bps-read': 5 } }),
      add({ 'qom-type': 'throttle-group', id: 'tg2', 'x-iops-size': 4096 }),
      add({ 'qom-type': 'throttle-group', id: 'tg2', bogus: 1 }),
      add({ 'qom-type': 'nope', id: 'tg3' }),
      add({ 'qom-type': 7, id: 'tg3' }),
      add({ 'qom-type': 'throttle-group', id: 7 }),
      add({ 'qom-type': 'throttle-group', id: '1x' }),
      add({ id: 'q' }),
      add({ 'qom-type': 'throttle-group' }),
      add({ 'qom-type': 'secret', id: 's1', data: 'abc' }),
      add({ 'qom-type': 'secret', id: 's2' }),
      add({ 'qom-type': 'secret', id: 's2', data: 5 }),
      add({ 'qom-type': 'secret', id: 's2', data: 'a', format: 'hex' }),
      add({ 'qom-type': 'secret', id: 'tg1', data: 'a' }),
      add({ 'qom-type': 'iothread', id: 'io1', 'poll-max-ns': 10 }),
      add({ 'qom-type': 'iothread', id: 'io2', 'poll-max-ns': 'x' }),
      add({ 'qom-type': 'iothread', id: 'io2', bogus: 1 }),
      add({ 'qom-type': 'throttle-group', id: 'io1' }),
      // A throttle node in the group; the group cannot go while it is there.
      x('blockdev-add', { driver: 'file', 'node-name': 'f', filename: '$DIR/a.raw' }),
      x('blockdev-add', { driver: 'throttle', 'node-name': 't', 'throttle-group': 'tg1', file: 'f' }),
      x('blockdev-add', { driver: 'throttle', 'node-name': 't2', 'throttle-group': 'nope', file: 'f' }),
      del('tg1'),
      del('s1'),
      del('s1'),
      del('io1'),
      del('cli0'),
      del('cli1'),
      x('object-del', {}),
      x('object-del', { id: 5 }),
      x('blockdev-del', { 'node-name': 't' }),
      del('tg1'),
      x('blockdev-add', { driver: 'throttle', 'node-name': 't', 'throttle-group': 'tg1', file: 'f' }),
      // A secret added over QMP unlocks a luks image.
      add({ 'qom-type': 'secret', id: 'key', data: 'pw' }),
      x('blockdev-add', { driver: 'luks', 'node-name': 'l', 'key-secret': 'key', file: { driver: 'file', filename: '$DIR/a.luks' } }),
      x('blockdev-add', { driver: 'luks', 'node-name': 'l2', 'key-secret': 'nokey', file: { driver: 'file', filename: '$DIR/a.luks', locking: 'off' } }),
    ];
    const r = await both(
      'objects',
      (dir) => {
        run('truncate', ['-s', '1M', 'a.raw'], dir);
        luksCreate(dir);
      },
      ['--object', 'throttle-group,id=cli0,x-iops-total=100', '--object', 'iothread,id=cli1'],
      steps,
    );
    expect(r.ours.replies).toEqual(r.qemu.replies);
    // Both the refusals and the successes are there (a sanity check of the script itself).
    const errors = r.ours.replies.filter((x) => typeof x === 'object' && x !== null && 'error' in x).length;
    expect(errors).toBeGreaterThan(15);
    expect(r.ours.replies.length - errors).toBeGreaterThan(10);
  }, 60_000);
});
