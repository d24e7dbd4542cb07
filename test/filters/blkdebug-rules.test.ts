/**
 * blkdebug's ways of being opened and driven, against qemu-io 7.2 (the cases
 * of iotests 071 and 089): rules as json:, as dotted options and in a config
 * file; set-state moving the state an inject-error rule waits for; iotype
 * and state matching; breakpoints with aio requests suspended and resumed;
 * limit options; and bad input with QEMU's messages. Every case runs the same
 * command lines through both tools and compares exit codes and output.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { Fixture, hasQemu, ours, theirs } from '../cli/harness.js';
import { runBoth, type Step } from './differential.js';

const io = (...args: string[]): Step => ({ tool: 'io', args });
const json = (o: unknown) => `json:${JSON.stringify(o)}`;
/** qcow2 over blkdebug over t.qcow2, with blkdebug's extra options. */
const overQcow2 = (blk: Record<string, unknown>) => json({ driver: 'qcow2', file: { driver: 'blkdebug', image: { driver: 'file', filename: 't.qcow2' }, ...blk } });

interface Case {
  name: string;
  steps: Step[];
  files?: Record<string, string>;
  /** A line some run's output must hold (so the case tests what it says). */
  expect: string;
}

const CASES: Case[] = [
  {
    name: 'inject-error on l2_load through json: fails the read (089)',
    steps: [io('-c', 'read -P 42 0x38000 512', json({ driver: 'qcow2', file: { driver: 'blkdebug', 'inject-error': [{ event: 'l2_load' }], 'image.filename': 't.qcow2' } }))],
    expect: 'read failed: Input/output error',
  },
  {
    name: 'inject-error through open -o with dotted options (071)',
    steps: [io('-c', 'open -o driver=qcow2,file.driver=blkdebug,file.inject-error.event=l2_load,file.image.filename=t.qcow2', '-c', 'read -P 42 0x38000 512')],
    expect: 'read failed: Input/output error',
  },
  {
    name: 'inject-error in the filename form with the driver probed (071)',
    steps: [io('-c', 'open -o file.driver=blkdebug,file.inject-error.event=l2_load t.qcow2', '-c', 'read -P 42 0x38000 512')],
    expect: 'read failed: Input/output error',
  },
  {
    name: 'set-state on write_aio arms an error for read_aio in state 42 (071)',
    steps: [io('-c', 'read 0 512', '-c', 'write 0 512', '-c', 'read 0 512', overQcow2({ 'inject-error': [{ event: 'read_aio', state: 42 }], 'set-state': [{ event: 'write_aio', new_state: 42 }] }))],
    expect: 'read failed: Input/output error',
  },
  {
    name: 'config file: set-state then a once error in the new state, errno 28',
    files: { 'bd.conf': '# states\n[set-state]\nevent = "write_aio"\nstate = "1"\nnew_state = "2"\n\n[inject-error]\nevent = "read_aio"\nstate = "2"\nerrno = "28"\nonce = "on"\n' },
    steps: [io('-c', 'read -P 42 0x38000 512', '-c', 'write -P 5 0 512', '-c', 'read -P 5 0 512', '-c', 'read -P 5 0 512', 'blkdebug:bd.conf:t.qcow2')],
    expect: 'read failed: No space left on device',
  },
  {
    name: 'iotype write leaves reads alone',
    steps: [io('-c', 'write -P 5 0 512', '-c', 'read -P 42 0x38000 512', '-c', 'write -P 6 0 512', overQcow2({ 'inject-error': [{ event: 'read_aio', iotype: 'write', errno: 5 }, { event: 'write_aio', iotype: 'write', errno: 5 }] }))],
    expect: 'write failed: Input/output error',
  },
  {
    name: 'flush errors from flush_to_disk rules (iotype flush)',
    steps: [io('-c', 'write -P 5 0 512', '-c', 'flush', '-c', 'read -P 5 0 512', overQcow2({ 'inject-error': [{ event: 'flush_to_disk', iotype: 'flush', errno: 28, once: true }] }))],
    expect: 'wrote 512/512 bytes at offset 0',
  },
  {
    name: 'a rule on the pwritev event of blkdebug itself (raw over blkdebug)',
    steps: [io('-f', 'raw', '-c', 'write -P 1 0 4k', '-c', 'write -P 2 4k 4k', 'blkdebug:bd.conf:r.raw')],
    files: { 'bd.conf': '[inject-error]\nevent = "pwritev"\nsector = "8"\nimmediately = "on"\n' },
    expect: 'write failed: Input/output error',
  },
  {
    name: 'raw announces read_aio / write_aio',
    steps: [io('-f', 'raw', '-c', 'write -P 1 0 512', '-c', 'read -P 1 0 512', 'blkdebug:bd.conf:r.raw')],
    files: { 'bd.conf': '[inject-error]\nevent = "read_aio"\nerrno = "5"\n' },
    expect: 'read failed: Input/output error',
  },
  {
    name: 'limits: align and max-transfer pass requests through',
    steps: [io('-c', 'write -P 7 1000 3000', '-c', 'read -P 7 1000 3000', '-c', 'read -P 42 0x38000 512', overQcow2({ align: 4096, 'max-transfer': 8192, 'opt-discard': 4096, 'max-discard': 8192, 'opt-write-zero': 4096, 'max-write-zero': 16384 }))],
    expect: 'read 3000/3000 bytes at offset 1000',
  },
  {
    name: 'break, wait_break, resume with an aio write (a breakpoint on write_aio)',
    steps: [io('-c', 'break write_aio A', '-c', 'aio_write -P 7 0 512', '-c', 'wait_break A', '-c', 'resume A', '-c', 'aio_flush', '-c', 'read -P 7 0 512', 'blkdebug::t.qcow2')],
    expect: "blkdebug: Resuming request 'A'",
  },
  {
    name: 'two breakpoints on one event suspend one request twice',
    steps: [io('-c', 'write -P 7 0 64k', '-c', 'break write_aio A', '-c', 'break write_aio B', '-c', 'aio_write -P 8 0 512', '-c', 'wait_break A', '-c', 'resume B', '-c', 'resume A', '-c', 'aio_flush', '-c', 'read -P 8 0 512', 'blkdebug::t.qcow2')],
    expect: "blkdebug: Suspended request 'B'",
  },
  {
    name: 'a breakpoint on pwritev_done of blkdebug itself; remove_break resumes it',
    steps: [io('-c', 'write -P 7 0 64k', '-c', 'break pwritev_done A', '-c', 'aio_write -P 8 0 512', '-c', 'wait_break A', '-c', 'remove_break A', '-c', 'aio_flush', '-c', 'read -P 8 0 512', 'blkdebug::t.qcow2')],
    expect: 'Could not remove breakpoint A: No such file or directory',
  },
  {
    name: 'breakpoint commands fail with unknown events and tags',
    steps: [io('-c', 'break nope X', '-c', 'remove_break X', '-c', 'resume X', '-c', 'break l2_load X', '-c', 'remove_break X', 'blkdebug::t.qcow2')],
    expect: 'Could not set breakpoint: No such file or directory',
  },
  {
    name: 'qemu-img info and check through blkdebug',
    steps: [{ tool: 'img', args: ['info', 'blkdebug::t.qcow2'] }, { tool: 'img', args: ['check', 'blkdebug::t.qcow2'] }],
    expect: 'image: blkdebug::t.qcow2',
  },
  {
    name: 'breakpoint commands without blkdebug',
    steps: [io('-c', 'break write_aio A', '-c', 'remove_break A', '-c', 'resume A', 't.qcow2')],
    expect: 'Could not set breakpoint: Operation not supported',
  },
];

/** Bad input: each opens a blkdebug node that QEMU refuses. */
const BAD: Array<{ name: string; files?: Record<string, string>; file: string }> = [
  { name: 'unknown event in a config file', files: { 'bd.conf': '[inject-error]\nevent = "nope"\n' }, file: 'blkdebug:bd.conf:t.qcow2' },
  { name: 'errno that is no number', files: { 'bd.conf': '[inject-error]\nevent = "l2_load"\nerrno = "abc"\n' }, file: 'blkdebug:bd.conf:t.qcow2' },
  { name: 'missing config file', file: 'blkdebug:missing.conf:t.qcow2' },
  { name: 'unknown section', files: { 'bd.conf': '[foo]\nevent = "l2_load"\n' }, file: 'blkdebug:bd.conf:t.qcow2' },
  { name: 'unknown key in a section', files: { 'bd.conf': '[set-state]\nevent = "l2_load"\nfoo = "1"\n' }, file: 'blkdebug:bd.conf:t.qcow2' },
  { name: 'a key before any section', files: { 'bd.conf': 'event = "l2_load"\n' }, file: 'blkdebug:bd.conf:t.qcow2' },
  { name: 'a line without spaces around =', files: { 'bd.conf': '[inject-error]\nevent="l2_load"\n' }, file: 'blkdebug:bd.conf:t.qcow2' },
  { name: 'rule without an event', files: { 'bd.conf': '[inject-error]\nerrno = "5"\n' }, file: 'blkdebug:bd.conf:t.qcow2' },
  { name: 'bad iotype', files: { 'bd.conf': '[inject-error]\nevent = "l2_load"\niotype = "bogus"\n' }, file: 'blkdebug:bd.conf:t.qcow2' },
  { name: 'bad once', files: { 'bd.conf': '[inject-error]\nevent = "l2_load"\nonce = "maybe"\n' }, file: 'blkdebug:bd.conf:t.qcow2' },
  { name: 'filename without an image', file: 'blkdebug:t.qcow2' },
  { name: 'unknown key in a json rule', file: overQcow2({ 'inject-error': [{ event: 'l2_load', foo: 1 }] }) },
  { name: 'unknown key in a single json rule', file: overQcow2({ 'inject-error': { event: 'l2_load', foo: 1 } }) },
  { name: 'json rule of unknown keys only', file: overQcow2({ 'set-state': { foo: 1 } }) },
  { name: 'json rule that is no object', file: overQcow2({ 'inject-error': [5] }) },
  { name: 'json errno that is no number', file: overQcow2({ 'inject-error': [{ event: 'read_aio', errno: 'x' }] }) },
  { name: 'align that is no power of two', file: overQcow2({ align: 3 }) },
  { name: 'max-transfer not a multiple of align', file: overQcow2({ align: 4096, 'max-transfer': 6144 }) },
  { name: 'max-discard not a multiple of opt-discard', file: overQcow2({ 'opt-discard': 8192, 'max-discard': 12288 }) },
  { name: 'unknown blkdebug option', file: overQcow2({ bogus: 1 }) },
  { name: 'no image', file: json({ driver: 'qcow2', file: { driver: 'blkdebug' } }) },
];

describe.skipIf(!hasQemu())('blkdebug rules, states and breakpoints vs qemu-io 7.2 (iotests 071, 089)', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture((_dir, sh) => {
      sh('qemu-img create -q -f qcow2 t.qcow2 64M');
      sh(`qemu-io -c 'write -P 42 0x38000 512' t.qcow2 >/dev/null`);
      sh('qemu-img create -q -f raw r.raw 1M');
    });
  });
  afterAll(() => fx.dispose());

  for (const c of CASES) {
    it(c.name, async () => {
      const r = await runBoth(fx, c.steps, { files: c.files ?? {}, check: ['t.qcow2'] });
      expect(r.ours).toEqual(r.theirs);
      expect(r.theirs.runs.map((x) => x.stdout + x.stderr).join('')).toContain(c.expect);
    }, 20_000);
  }

  // iotest 271: the later writes wait for the suspended one's cluster; the prompt must not. The two
  // waiting writes finish in either order in QEMU (the iotest filters their offsets; so does this).
  it('aio writes into the cluster a suspended write allocates wait for it and finish after resume', async () => {
    const steps = [
      io(
        '-c', 'break write_aio A', '-c', 'aio_write -P 10 30k 2k', '-c', 'wait_break A',
        '-c', 'aio_write -P 11 20k 2k', '-c', 'aio_write -P 12 40k 2k', '-c', 'resume A', '-c', 'aio_flush',
        '-c', 'read -P 10 30k 2k', '-c', 'read -P 11 20k 2k', '-c', 'read -P 12 40k 2k',
        'blkdebug::t.qcow2',
      ),
    ];
    const r = await runBoth(fx, steps, { files: {}, check: ['t.qcow2'] });
    const either = (x: typeof r.ours) => JSON.parse(JSON.stringify(x).replace(/wrote 2048\/2048 bytes at offset (20480|40960)/g, 'wrote 2048/2048 bytes at offset OFFSET')) as unknown;
    expect(either(r.ours)).toEqual(either(r.theirs));
    const out = r.theirs.runs.map((x) => x.stdout).join('');
    expect(out).toContain("blkdebug: Resuming request 'A'");
    expect(out).toContain('read 2048/2048 bytes at offset 40960');
  }, 20_000);

  // QEMU's qemu-io waits for ever in these two; ours ends the wait and finishes the held write.
  it('wait_break on a tag no running request can reach fails; closing releases held requests', async () => {
    const dir = fx.copy();
    const r = await ours('io', ['-c', 'break write_aio A', '-c', 'aio_write -P 7 0 512', '-c', 'wait_break B', 'blkdebug::t.qcow2'], dir);
    expect(r.stdout.split('\n').slice(0, 2)).toEqual(["blkdebug: Suspended request 'A'", 'Could not wait for breakpoint B: No such file or directory']);
    expect(r.stdout).toContain('wrote 512/512 bytes at offset 0');
    const after = theirs('io', ['-c', 'read -P 7 0 512', 't.qcow2'], dir);
    expect(after.stdout).toContain('read 512/512 bytes at offset 0');
  }, 20_000);

  for (const b of BAD) {
    it(`refuses: ${b.name}`, async () => {
      const r = await runBoth(fx, [io('-c', 'read 0 512', b.file)], { files: b.files ?? {} });
      expect(r.ours).toEqual(r.theirs);
      expect(r.theirs.runs[0]!.code).not.toBe(0);
    }, 20_000);
  }
});
