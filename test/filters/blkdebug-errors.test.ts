/**
 * Errors injected by blkdebug while qcow2 writes (the cases of QEMU's iotest
 * 026): a config file injects errno 5 or 28 after one of qcow2's debug
 * events, once or for good; qemu-io 7.2 and diskworker run the same write
 * through `blkdebug:CONFIG:IMAGE` (guest writes, and VM state writes with
 * `write -b`) and must fail at the same request (same
 * lines, same exit code) and leave images that `qemu-img check` judges the
 * same (leaks aside, as the iotest ignores them).
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { Fixture, hasQemu } from '../cli/harness.js';
import { runBoth, type Step } from './differential.js';

const conf = (event: string, errno: number, once: boolean) =>
  `[inject-error]\nevent = "${event}"\nerrno = "${errno}"\nimmediately = "off"\nonce ="${once ? 'on' : 'off'}"\n`;

const BLK = 'blkdebug:blkdebug.conf:t.qcow2';

/** The writes of one case: l2_update needs an L2 table first; l2_load a second write and a read. */
function steps(event: string, vmstate = ''): Step[] {
  const out: Step[] = [];
  const w = vmstate ? `write ${vmstate}` : 'write';
  if (event === 'l2_update') out.push({ tool: 'io', args: ['-c', `${w} 0 512`, 't.qcow2'] });
  out.push({ tool: 'io', args: ['-c', `${w} 0 128k`, BLK] });
  if (event === 'l2_load') {
    out.push({ tool: 'io', args: ['-c', `${w} 0 128k`, BLK] });
    out.push({ tool: 'io', args: ['-c', `read ${vmstate ? `${vmstate} ` : ''}0 128k`, BLK] });
  }
  return out;
}

const EVENTS = ['l1_update', 'l2_load', 'l2_update', 'l2_alloc_write', 'write_aio', 'refblock_load', 'refblock_update_part', 'refblock_alloc', 'cluster_alloc'];

describe.skipIf(!hasQemu())('blkdebug error injection into qcow2 writes, vs qemu-io 7.2 (iotest 026 cases)', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture((_dir, sh) => sh('qemu-img create -q -f qcow2 -o cluster_size=1024 t.qcow2 1G'));
  });
  afterAll(() => fx.dispose());

  for (const event of EVENTS) {
    for (const errno of [5, 28]) {
      for (const once of [true, false]) {
        it(`${event}, errno ${errno}, once ${once ? 'on' : 'off'}`, async () => {
          const r = await runBoth(fx, steps(event), { files: { 'blkdebug.conf': conf(event, errno, once) }, check: ['t.qcow2'], ignoreLeaks: true });
          expect(r.ours.runs).toEqual(r.theirs.runs);
          expect(r.ours.checks).toEqual(r.theirs.checks);
          // The error really hit: some run failed (once=off fails the write, or its close).
          expect(r.theirs.runs.some((x) => x.code !== 0 || x.stderr !== '')).toBe(true);
        }, 20_000);
      }
    }
  }

  // The VM state area (write -b): qemu-io flushes after it without a write cache, as after guest writes.
  for (const event of EVENTS) {
    for (const once of [true, false]) {
      it(`${event}, errno 5, once ${once ? 'on' : 'off'}, VM state writes (-b)`, async () => {
        const r = await runBoth(fx, steps(event, '-b'), { files: { 'blkdebug.conf': conf(event, 5, once) }, check: ['t.qcow2'], ignoreLeaks: true });
        expect(r.ours.runs).toEqual(r.theirs.runs);
        expect(r.ours.checks).toEqual(r.theirs.checks);
        expect(r.theirs.runs.some((x) => x.code !== 0 || x.stderr !== '')).toBe(true);
      }, 20_000);
    }
  }

  it('a failed first write leaves no leak once the second write succeeds (write_aio, once)', async () => {
    const r = await runBoth(fx, [{ tool: 'io', args: ['-c', 'write 0 1M', '-c', 'write 0 1M', BLK] }], {
      files: { 'blkdebug.conf': '[inject-error]\nevent = "write_aio"\nerrno = "5"\nonce = "on"\n' },
      check: ['t.qcow2'],
    });
    expect(r.ours).toEqual(r.theirs);
    expect(r.theirs.runs[0]!.stdout).toContain('write failed: Input/output error');
  }, 20_000);

  it('overwriting a preallocated zero cluster fails without freeing it (write_aio, once)', async () => {
    const r = await runBoth(
      fx,
      [
        { tool: 'io', args: ['-c', 'write 0 1024', '-c', 'write -z 0 1024', 't.qcow2'] },
        { tool: 'io', args: ['-c', 'write 0 1024', BLK] },
      ],
      { files: { 'blkdebug.conf': '[inject-error]\nevent = "write_aio"\nerrno = "5"\nonce = "on"\n' }, check: ['t.qcow2'] },
    );
    expect(r.ours).toEqual(r.theirs);
  }, 20_000);

  // The data of guest [0, 128k) lies at host 0x11000 in this image: sector 300 is in the second 64k.
  it('an error injected at one sector fails only the request covering it', async () => {
    const cfg = '[inject-error]\nevent = "read_aio"\nsector = "300"\nerrno = "28"\n';
    const r = await runBoth(
      fx,
      [
        { tool: 'io', args: ['-c', 'write -P 3 0 128k', 't.qcow2'] },
        { tool: 'io', args: ['-c', 'read -P 3 0 64k', '-c', 'read -P 3 64k 64k', '-c', 'read -P 3 0 512', BLK] },
      ],
      { files: { 'blkdebug.conf': cfg }, check: ['t.qcow2'] },
    );
    expect(r.ours).toEqual(r.theirs);
    expect(r.theirs.runs[1]!.stdout).toContain('read failed: No space left on device');
  }, 20_000);
});
