/**
 * The throttle filter and `--object throttle-group` against qemu-io and
 * qemu-img 7.2, for everything that does not depend on time: each bad
 * object property or throttle option gives QEMU's message and exit code,
 * and I/O through the filter (limits high enough that nothing waits) prints
 * the same lines (timings masked) and leaves the same image, checked with
 * `qemu-img map` and `qemu-img check`.
 *
 *   throttle(tg0) ──file──> qcow2 ──file──> t.qcow2
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { Fixture, hasQemu } from '../cli/harness.js';
import { runBoth, type Step } from './differential.js';

const TG = 'throttle-group,id=tg0';
const imageOpts = (file = 'file.driver=qcow2,file.file.filename=t.qcow2', group = 'tg0') => `driver=throttle,throttle-group=${group},${file}`;
const io = (object: string | string[], cmds: string[], opts = imageOpts()): Step => ({
  tool: 'io',
  args: [...[object].flat().flatMap((o) => ['--object', o]), ...cmds.flatMap((c) => ['-c', c]), '--image-opts', opts],
});
const map: Step = { tool: 'img', args: ['map', '--output=json', '-U', 't.qcow2'] };

/** Bad objects and options: each must fail as in QEMU, with the message given (a part of it). */
const BAD: Array<{ name: string; step: Step; message: string }> = [
  { name: 'negative x- property', step: io(`${TG},x-bps-total=-1`, ['read 0 4k']), message: 'Property values cannot be negative' },
  { name: 'burst rate without rate', step: io(`${TG},x-bps-total-max=100`, ['read 0 4k']), message: 'bps_max/iops_max require corresponding bps/iops values' },
  { name: 'burst rate below rate', step: io(`${TG},x-iops-write=100,x-iops-write-max=50`, ['read 0 4k']), message: 'bps_max/iops_max cannot be lower than bps/iops' },
  { name: 'total and read/write together', step: io(`${TG},x-bps-total=100,x-bps-read=5`, ['read 0 4k']), message: 'bps/iops/max total values and read/write values cannot be used at the same time' },
  { name: 'total and read/write bursts together', step: io(`${TG},limits.iops-total=9,limits.iops-total-max=10,limits.iops-write=1,limits.iops-write-max=2`, ['read 0 4k']), message: 'cannot be used at the same time' },
  { name: 'rate above the maximum', step: io(`${TG},x-bps-total=1000000000000001`, ['read 0 4k']), message: 'bps/iops/max values must be within [0, 1000000000000000]' },
  { name: 'negative limits. value', step: io(`${TG},limits.bps-write=-1`, ['read 0 4k']), message: 'bps/iops/max values must be within' },
  { name: 'burst length 0', step: io(`${TG},x-bps-total=100,x-bps-total-max-length=0`, ['read 0 4k']), message: 'the burst length cannot be 0' },
  { name: 'burst length without burst rate', step: io(`${TG},x-bps-total=100,x-bps-total-max-length=2`, ['read 0 4k']), message: 'burst length set without burst rate' },
  { name: 'burst length too high', step: io(`${TG},x-bps-total=100,x-bps-total-max=1000000000000000,x-bps-total-max-length=2`, ['read 0 4k']), message: 'burst length too high for this burst rate' },
  { name: 'limits. burst length above UINT_MAX', step: io(`${TG},limits.iops-read-max-length=5000000000`, ['read 0 4k']), message: 'iops-read-max-length value must be in the range [0, 4294967295]' },
  { name: 'x- burst length above UINT_MAX', step: io(`${TG},x-bps-write-max-length=5000000000`, ['read 0 4k']), message: 'x-bps-write-max-length value must be in therange [0, 4294967295]' },
  { name: 'negative limits. burst length', step: io(`${TG},limits.bps-total-max-length=-1`, ['read 0 4k']), message: 'burst length set without burst rate' },
  { name: 'several bad values: the first in the QDict order of QEMU', step: io(`${TG},x-iops-size=-1,x-bps-read-max-length=5000000000,x-iops-write-max-length=5000000000,x-bps-total-max-length=4294967296`, ['read 0 4k']), message: 'x-bps-total-max-length value must be in therange' },
  { name: 'iops-size without iops', step: io(`${TG},x-iops-size=4096`, ['read 0 4k']), message: 'iops size requires an iops value to be set' },
  { name: 'not an integer', step: io(`${TG},x-bps-total=1k`, ['read 0 4k']), message: "Parameter 'x-bps-total' expects integer" },
  { name: 'not an integer in limits', step: io(`${TG},limits.bps-total=abc`, ['read 0 4k']), message: "Parameter 'limits.bps-total' expects integer" },
  { name: 'limits not an object', step: io(`${TG},limits=5`, ['read 0 4k']), message: "Invalid parameter type for 'limits', expected: object" },
  { name: 'unknown property', step: io(`${TG},x-foo=5`, ['read 0 4k']), message: "Parameter 'x-foo' is unexpected" },
  { name: 'unknown limits. property', step: io(`${TG},limits.foo=5`, ['read 0 4k']), message: "Parameter 'limits.foo' is unexpected" },
  { name: 'no id', step: io('throttle-group,x-bps-total=5', ['read 0 4k']), message: "Parameter 'id' is missing" },
  { name: 'id not an identifier', step: io('throttle-group,id=1tg', ['read 0 4k']), message: "Parameter 'id' expects an identifier" },
  { name: 'unknown object type', step: io('throttle,id=tg0', ['read 0 4k']), message: "Parameter 'qom-type' does not accept value 'throttle'" },
  { name: 'no object type', step: io('id=tg0', ['read 0 4k']), message: "Parameter 'qom-type' is missing" },
  { name: 'duplicate id', step: io([TG, `${TG},x-bps-total=1`], ['read 0 4k']), message: "attempt to add duplicate property 'tg0' to object (type 'container')" },
  { name: 'key without value', step: io(`${TG},x-bps-total`, ['read 0 4k']), message: "Expected '=' after parameter 'x-bps-total'" },
  { name: 'bad key', step: io(`${TG},x!=1`, ['read 0 4k']), message: "Invalid parameter 'x!'" },
  { name: 'a key used as value and object', step: io(`${TG},limits=1,limits.bps-total=5`, ['read 0 4k']), message: "Parameters 'limits.*' used inconsistently" },
  { name: 'JSON with a string for an integer', step: io('{"qom-type": "throttle-group", "id": "tg0", "x-bps-total": "5"}', ['read 0 4k']), message: "Invalid parameter type for 'x-bps-total', expected: integer" },
  { name: 'JSON limits with total and read together', step: io('{"qom-type": "throttle-group", "id": "tg0", "limits": {"bps-total": 5, "bps-read": 1}}', ['read 0 4k']), message: 'cannot be used at the same time' },
  { name: 'group that does not exist', step: io(TG, ['read 0 4k'], imageOpts(undefined, 'tg1')), message: "can't open: Throttle group 'tg1' does not exist" },
  { name: 'no group', step: io(TG, ['read 0 4k'], 'driver=throttle,file.driver=qcow2,file.file.filename=t.qcow2'), message: 'Please specify a throttle group' },
  { name: 'bad file before a bad group', step: io(TG, ['read 0 4k'], imageOpts('file.driver=qcow2,file.file.filename=nope.qcow2', 'tg1')), message: "Could not open 'nope.qcow2'" },
  { name: 'no file', step: io(TG, ['read 0 4k'], 'driver=throttle,throttle-group=tg0'), message: 'A block device must be specified for "file"' },
  { name: 'unknown throttle option', step: io(TG, ['read 0 4k'], imageOpts('foo=1,file.driver=qcow2,file.file.filename=t.qcow2')), message: "Block format 'throttle' does not support the option 'foo'" },
  { name: 'qemu-img: bad object before the image', step: { tool: 'img', args: ['info', '--object', `${TG},x-bps-total=-1`, 't.qcow2'] }, message: 'Property values cannot be negative' },
  { name: 'qemu-img: no such group', step: { tool: 'img', args: ['info', '--image-opts', imageOpts()] }, message: "Throttle group 'tg0' does not exist" },
  { name: 'qemu-img create: bad object', step: { tool: 'img', args: ['create', '--object', `${TG},x-iops-size=5`, '-f', 'qcow2', 'o.qcow2', '1M'] }, message: 'iops size requires an iops value to be set' },
];

/** I/O through the filter with limits nothing reaches: the same lines and the same image. */
const HIGH = `${TG},x-bps-total=1073741824,x-iops-total=100000`;
const DATA: Array<{ name: string; object?: string; cmds: string[]; opts?: string }> = [
  { name: 'writes and reads', cmds: ['write -P 1 0 64k', 'read -P 1 0 64k', 'read -v 0 32', 'write -P 2 100k 3k', 'read -P 2 100k 3k', 'read -P 0 64k 36k'] },
  { name: 'zero writes, discards, compressed and FUA writes', cmds: ['write -P 3 0 256k', 'write -z 64k 64k', 'write -zu 128k 64k', 'discard 192k 64k', 'write -c 512k 64k', 'write -f 1M 64k', 'read -P 0 64k 192k', 'read -P 3 0 64k', 'flush'] },
  { name: 'vectored and aio requests', cmds: ['writev -P 4 0 4k 8k', 'readv -P 4 0 4k 8k', 'aio_write -P 5 64k 4k', 'aio_flush', 'aio_read -P 5 64k 4k', 'aio_flush', 'read -P 5 64k 4k'] },
  { name: 'info, map, alloc, length, truncate', cmds: ['write -P 7 0 64k', 'info', 'map', 'alloc 0 2M', 'length', 'truncate 3M', 'length', 'map'] },
  { name: 'separate read and write limits with bursts and iops-size', object: `${TG},limits.bps-read=1073741824,limits.bps-write=1073741824,limits.bps-write-max=2147483648,limits.bps-write-max-length=3,limits.iops-write=100000,limits.iops-size=4096`, cmds: ['write -P 8 0 128k', 'read -P 8 0 128k'] },
  { name: 'over a raw file', cmds: ['write -P 9 0 64k', 'read -P 9 0 64k', 'info'], opts: imageOpts('file.driver=file,file.filename=r.raw') },
  { name: 'hexadecimal and octal property values', object: `${TG},x-bps-total=0x40000000,x-bps-total-max=010000000000`, cmds: ['write -P 1 0 4k'] },
];

describe.skipIf(!hasQemu())('throttle filter vs qemu-io / qemu-img 7.2', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture((_dir, sh) => {
      sh('qemu-img create -q -f qcow2 t.qcow2 2M');
      sh('qemu-img create -q -f raw r.raw 1M');
    });
  });
  afterAll(() => fx.dispose());

  for (const c of BAD) {
    it(`refuses as QEMU: ${c.name}`, async () => {
      const r = await runBoth(fx, [c.step]);
      expect(r.ours).toEqual(r.theirs);
      expect(r.theirs.runs[0]!.code).not.toBe(0);
      expect(r.theirs.runs[0]!.stderr).toContain(c.message);
    }, 20_000);
  }

  for (const c of DATA) {
    it(`same output and image: ${c.name}`, async () => {
      const r = await runBoth(fx, [io(c.object ?? HIGH, c.cmds, c.opts), map], { check: ['t.qcow2'] });
      expect(r.ours).toEqual(r.theirs);
      expect(r.theirs.runs[0]!.code).toBe(0);
      expect(r.theirs.runs[0]!.stderr).toBe('');
    }, 20_000);
  }

  it('a group outlives a node: close, then open another image in it (qemu-io open)', async () => {
    const json = (file: Record<string, unknown>) => `json:${JSON.stringify({ driver: 'throttle', 'throttle-group': 'tg0', file })}`;
    const qcow2 = json({ driver: 'qcow2', file: { driver: 'file', filename: 't.qcow2' } });
    const raw = json({ driver: 'raw', file: { driver: 'file', filename: 'r.raw' } });
    const step: Step = { tool: 'io', args: ['--object', HIGH, '-c', 'write -P 1 0 64k', '-c', 'close', '-c', `open ${raw}`, '-c', 'write -P 2 0 4k', '-c', 'read -P 2 0 4k', qcow2] };
    const r = await runBoth(fx, [step, map, { tool: 'io', args: ['-c', 'read -P 2 0 4k', '-f', 'raw', 'r.raw'] }], { check: ['t.qcow2'] });
    expect(r.ours).toEqual(r.theirs);
    expect(r.theirs.runs.map((x) => x.code)).toEqual([0, 0, 0]);
  }, 20_000);

  it('open under --image-opts takes an option string, and refuses -o', async () => {
    const step = io(HIGH, ['write -P 1 0 64k', 'close', `open ${imageOpts('file.driver=raw,file.file.filename=r.raw')}`, 'write -P 2 0 4k', 'close', `open -o throttle-group=tg0 ${imageOpts()}`, 'read -P 1 0 64k']);
    const r = await runBoth(fx, [step, map]);
    expect(r.ours).toEqual(r.theirs);
    expect(r.theirs.runs[0]!.stdout).toContain("--image-opts and 'open -o' are mutually exclusive");
  }, 20_000);

  it('reopen moves the node to another group; a group that does not exist is refused', async () => {
    const step = io([HIGH, 'throttle-group,id=tg1,x-iops-total=100000'], ['reopen -o throttle-group=tg1', 'write -P 3 0 4k', 'reopen -o throttle-group=tg9', 'reopen -o throttle-group=', 'reopen -o throttle-group=tg0', 'read -P 3 0 4k']);
    const r = await runBoth(fx, [step, map]);
    expect(r.ours).toEqual(r.theirs);
    expect(r.theirs.runs[0]!.stderr).toContain("Throttle group 'tg9' does not exist");
  }, 20_000);

  it('help for the object type and for the list of types', async () => {
    const r = await runBoth(fx, [
      { tool: 'io', args: ['--object', 'throttle-group,help'] },
      { tool: 'io', args: ['--object', 'throttle-group,id=tg0,?'] },
      { tool: 'io', args: ['--object', 'help'] },
      { tool: 'img', args: ['info', '--object', 'throttle-group,help', 't.qcow2'] },
    ]);
    expect(r.ours).toEqual(r.theirs);
    expect(r.theirs.runs[0]!.stdout).toContain('x-bps-total-max-length=<int>');
  }, 20_000);

  it('qemu-img info names the filter (a json: filename of its options), check refuses it', async () => {
    const r = await runBoth(fx, [
      { tool: 'io', args: ['-c', 'write -P 5 0 64k', 't.qcow2'] },
      { tool: 'img', args: ['info', '--object', HIGH, '--image-opts', imageOpts()] },
      { tool: 'img', args: ['info', '--output=json', '--object', HIGH, '--image-opts', imageOpts('file.driver=qcow2,file.node-name=fmt,file.lazy-refcounts=on,file.file.filename=t.qcow2')] },
      { tool: 'img', args: ['info', '--object', HIGH, '--image-opts', imageOpts('file.driver=raw,file.offset=512,file.file.filename=t.qcow2')] },
      { tool: 'img', args: ['info', '--object', HIGH, '--image-opts', imageOpts('file.driver=file,file.filename=t.qcow2')] },
      { tool: 'img', args: ['check', '--object', HIGH, '--image-opts', imageOpts()] },
    ]);
    expect(r.ours).toEqual(r.theirs);
    expect(r.theirs.runs[1]!.stdout).toContain('image: json:{"throttle-group": "tg0", "driver": "throttle", "file": {"driver": "qcow2"');
    expect(r.theirs.runs[5]!.code).toBe(63);
  }, 20_000);

  it('qemu-img map and convert read through the filter', async () => {
    const write: Step = { tool: 'io', args: ['-c', 'write -P 5 64k 128k', 't.qcow2'] };
    const r = await runBoth(fx, [
      write,
      { tool: 'img', args: ['map', '--output=json', '--object', HIGH, '--image-opts', imageOpts()] },
      { tool: 'img', args: ['convert', '--object', HIGH, '--image-opts', imageOpts(), '-O', 'qcow2', 'out.qcow2'] },
      { tool: 'img', args: ['compare', '-U', 't.qcow2', 'out.qcow2'] },
    ]);
    expect(r.ours).toEqual(r.theirs);
    expect(r.theirs.runs.map((x) => x.code)).toEqual([0, 0, 0, 0]);
  }, 20_000);
});
