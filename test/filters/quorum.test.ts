/**
 * The quorum driver against qemu-io / qemu-img 7.2: the same json:{...} (or
 * --image-opts) quorum over three raw children runs through both tools, and
 * the printed lines, the exit codes and the children's bytes afterwards must
 * agree. The children differ on purpose (written one by one with qemu-io):
 *
 *   quorum ─children.0→ raw → c0.raw   0-64k: 1  64k: 2  128k: 4  192k: 7
 *          ─children.1→ raw → c1.raw   0-64k: 1  64k: 2  128k: 5  192k: 8
 *          ─children.2→ raw → c2.raw   0-64k: 1  64k: 3  128k: 6  192k: 8
 *
 * so at 64k and 192k two children outvote the third, and at 128k all three
 * differ. Failing children are raw over blkdebug (raw announces read_aio /
 * write_aio to it). The events (no QEMU tool prints them) are checked
 * through the library at the end.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Fixture, hasQemu, normalize, ours, theirs, type RunResult, type Tool } from '../cli/harness.js';
import { BlockBackend, BlockError, BlockGraph, MemoryStorage, createMemoryDriver, rawDriver } from '../../src/node.js';
import { blkdebugDriver } from '../../src/filters/blkdebug.js';
import { quorumDriver, quorumEvents, type QuorumInstance } from '../../src/filters/quorum.js';
import type { QuorumEvent } from '../../src/filters/quorum-events.js';

type Spec = Record<string, unknown>;
const raw = (f: string): Spec => ({ driver: 'raw', file: { driver: 'file', filename: f } });
/** A raw child whose requests fail with `errno` once `event` (read_aio / write_aio) happened. */
const failing = (f: string, event: string, errno: number): Spec => ({
  driver: 'raw',
  file: { driver: 'blkdebug', 'inject-error': [{ event, errno }], image: { driver: 'file', filename: f } },
});
const CHILDREN = [raw('c0.raw'), raw('c1.raw'), raw('c2.raw')];
const quorum = (opts: Spec, children: unknown = CHILDREN) => `json:${JSON.stringify({ driver: 'quorum', ...opts, children })}`;

interface Side {
  runs: RunResult[];
  /** The bytes of each compared file after the runs. */
  files: Buffer[];
}

/** Runs the same steps with each tool, each on its own copy of the fixture. */
async function both(fx: Fixture, steps: Array<{ tool: Tool; args: string[] }>, files: string[] = []): Promise<{ theirs: Side; ours: Side }> {
  const side = async (run: (tool: Tool, args: string[], dir: string) => RunResult | Promise<RunResult>): Promise<Side> => {
    const dir = fx.copy();
    const runs: RunResult[] = [];
    for (const s of steps) {
      const r = await run(s.tool, s.args, dir);
      runs.push({ code: r.code, stdout: normalize(r.stdout), stderr: normalize(r.stderr) });
    }
    return { runs, files: files.map((f) => readFileSync(join(dir, f))) };
  };
  return { theirs: await side(theirs), ours: await side(ours) };
}

const io = (spec: string, ...cmds: string[]) => ({ tool: 'io' as Tool, args: [...cmds.flatMap((c) => ['-c', c]), spec] });
const RAWS = ['c0.raw', 'c1.raw', 'c2.raw'];

const SAME_OUTPUT: Array<{ name: string; steps: Array<{ tool: Tool; args: string[] }>; files?: string[]; failing?: boolean }> = [
  {
    name: 'votes: two equal children outvote the third, unaligned reads too',
    steps: [io(quorum({ 'vote-threshold': 2 }), 'read -P 1 0 64k', 'read -P 2 64k 64k', 'read -P 8 192k 64k', 'read -P 2 70000 1000', 'read -P 0 256k 64k')],
  },
  {
    name: 'threshold not reached: three versions at 128k, threshold 2',
    steps: [io(quorum({ 'vote-threshold': 2 }), 'read 128k 64k', 'read -P 1 0 4k')],
    failing: true,
  },
  {
    name: 'threshold not reached: two votes of three needed',
    steps: [io(quorum({ 'vote-threshold': 3 }), 'read -P 2 64k 64k', 'read -P 1 0 64k')],
    failing: true,
  },
  {
    name: 'a tie with threshold 1 goes to the version first seen last (children.2)',
    steps: [io(quorum({ 'vote-threshold': 1 }), 'read -P 6 128k 64k', 'read -P 2 64k 64k')],
  },
  {
    name: 'fifo reads the first child only',
    steps: [io(quorum({ 'vote-threshold': 3, 'read-pattern': 'fifo' }), 'read -P 4 128k 64k', 'read -P 7 192k 64k')],
  },
  {
    name: 'fifo skips a failing child',
    steps: [io(quorum({ 'vote-threshold': 1, 'read-pattern': 'fifo' }, [failing('c0.raw', 'read_aio', 5), raw('c1.raw'), raw('c2.raw')]), 'read -P 5 128k 64k')],
  },
  {
    name: 'fifo with every child failing returns the last error',
    steps: [
      io(
        quorum({ 'vote-threshold': 1, 'read-pattern': 'fifo' }, [failing('c0.raw', 'read_aio', 5), failing('c1.raw', 'read_aio', 5), failing('c2.raw', 'read_aio', 28)]),
        'read 0 4k',
      ),
    ],
    failing: true,
  },
  {
    name: 'a failed read does not vote; the other two still reach threshold 2',
    steps: [io(quorum({ 'vote-threshold': 2 }, [raw('c0.raw'), failing('c1.raw', 'read_aio', 5), raw('c2.raw')]), 'read -P 1 0 64k', 'read 192k 64k')],
    failing: true,
  },
  {
    name: 'too many failed reads: the most common error wins',
    steps: [
      io(
        quorum({ 'vote-threshold': 2 }, [failing('c0.raw', 'read_aio', 28), failing('c1.raw', 'read_aio', 28), failing('c2.raw', 'read_aio', 5)]),
        'read 0 4k',
      ),
      io(
        quorum({ 'vote-threshold': 3 }, [failing('c0.raw', 'read_aio', 5), failing('c1.raw', 'read_aio', 28), raw('c2.raw')]),
        'read 0 4k',
      ),
    ],
    failing: true,
  },
  {
    name: 'writes, zero writes and flushes reach every child; discard does nothing',
    steps: [
      io(quorum({ 'vote-threshold': 2 }), 'write -P 9 32k 64k', 'read -P 9 32k 64k', 'write -z 160k 8k', 'read -P 0 160k 8k', 'discard 192k 64k', 'read -P 8 192k 64k', 'flush'),
    ],
    files: RAWS,
  },
  {
    name: 'a write that fails on one child succeeds with threshold 2',
    steps: [io(quorum({ 'vote-threshold': 2 }, [failing('c0.raw', 'write_aio', 28), raw('c1.raw'), raw('c2.raw')]), 'write -P 9 0 4k', 'read -P 9 0 4k')],
    files: RAWS,
  },
  {
    name: 'a write that fails on one child fails with threshold 3, the others are written',
    steps: [io(quorum({ 'vote-threshold': 3 }, [raw('c0.raw'), failing('c1.raw', 'write_aio', 28), raw('c2.raw')]), 'write -P 9 0 4k', 'write -z 4k 4k')],
    files: RAWS,
    failing: true,
  },
  {
    name: 'flush counts successes as writes do (a failing flush prints nothing, qemu-io exits 1)',
    steps: [
      io(quorum({ 'vote-threshold': 3 }, [failing('c0.raw', 'write_aio', 28), raw('c1.raw'), raw('c2.raw')]), 'write -P 9 0 4k', 'flush', 'write 4k 4k'),
      io(quorum({ 'vote-threshold': 2 }, [failing('c0.raw', 'write_aio', 28), raw('c1.raw'), raw('c2.raw')]), 'write -P 9 0 4k', 'flush'),
      { tool: 'io', args: ['-t', 'writeback', '-c', 'write 0 4k', '-c', 'flush', quorum({ 'vote-threshold': 3 }, [failing('c0.raw', 'write_aio', 28), raw('c1.raw'), raw('c2.raw')])] },
    ],
    files: RAWS,
    failing: true,
  },
  {
    name: 'what QEMU 7.2 quorum does not do: resize, reopen, image info, compressed writes',
    steps: [
      io(
        quorum({ 'node-name': 'q', 'vote-threshold': 2 }),
        'truncate 2M',
        'info',
        'alloc 0 64k',
        'length',
        'reopen -r',
        'write -c 0 64k',
        'write -f -P 3 0 4k',
        'write -u -z 64k 64k',
        'map',
      ),
    ],
    files: RAWS,
    failing: true,
  },
  {
    name: 'rewrite-corrupted repairs the children that lost the vote',
    steps: [io(quorum({ 'vote-threshold': 2, 'rewrite-corrupted': true }), 'read -P 2 64k 64k', 'read -P 8 192k 60000', 'read -P 1 0 64k', 'read 128k 64k')],
    files: RAWS,
    failing: true,
  },
  {
    name: 'rewrite-corrupted, unaligned read',
    steps: [io(quorum({ 'vote-threshold': 2, 'rewrite-corrupted': 'on' }), 'read -P 2 65537 999'), io(quorum({ 'vote-threshold': 3 }), 'read -P 2 65537 999', 'read 65536 1')],
    files: RAWS,
    failing: true,
  },
  {
    name: 'blkverify with equal children reads normally',
    steps: [io(quorum({ 'vote-threshold': 2, blkverify: true }, [raw('c0.raw'), raw('c1.raw')]), 'read -P 1 0 64k', 'read -P 2 64k 64k', 'write -P 3 0 4k', 'read -P 3 0 4k')],
    files: RAWS,
  },
  {
    name: 'a qcow2 over a quorum of two copies: the copies stay byte-identical to QEMU\'s',
    steps: [
      io(
        `json:{'driver':'qcow2','file':{'driver':'quorum','vote-threshold':2,'children':[{'driver':'file','filename':'w.qcow2'},{'driver':'file','filename':'w.qcow2.copy'}]}}`,
        'write -P 7 100k 300k',
        'write -z 1M 64k',
        'read -P 7 100k 300k',
        'map',
      ),
      { tool: 'img', args: ['check', 'w.qcow2'] },
      { tool: 'img', args: ['check', 'w.qcow2.copy'] },
    ],
    files: ['w.qcow2', 'w.qcow2.copy'],
  },
  {
    name: 'dotted --image-opts keys',
    steps: [
      {
        tool: 'io',
        args: [
          '--image-opts',
          '-c',
          'read -P 2 64k 64k',
          '-c',
          'read -P 4 128k 64k',
          'driver=quorum,vote-threshold=2,read-pattern=quorum,children.0.driver=raw,children.0.file.filename=c0.raw,children.1.driver=raw,children.1.file.filename=c1.raw,children.2.driver=raw,children.2.file.filename=c2.raw',
        ],
      },
    ],
    failing: true,
  },
  {
    name: 'QemuOpts number syntax of vote-threshold (hex, leading blanks, 32-bit wrap)',
    steps: [io(quorum({ 'vote-threshold': '0x2' }), 'read -P 2 64k 64k'), io(quorum({ 'vote-threshold': ' 3' }), 'read 64k 64k'), io(quorum({ 'vote-threshold': 4294967298 }), 'read -P 8 192k 4k')],
    failing: true,
  },
];

/** Each bad option and the child list errors: the message must be qemu-io's. */
const OPTION_ERRORS: Array<{ name: string; spec: string; args?: string[] }> = [
  { name: 'no vote-threshold', spec: quorum({}) },
  { name: 'vote-threshold 0', spec: quorum({ 'vote-threshold': 0 }) },
  { name: 'negative vote-threshold', spec: quorum({ 'vote-threshold': -1 }) },
  { name: 'vote-threshold above the children count', spec: quorum({ 'vote-threshold': 4 }) },
  { name: 'vote-threshold not a number', spec: quorum({ 'vote-threshold': '2x' }) },
  { name: 'vote-threshold a boolean', spec: quorum({ 'vote-threshold': true }) },
  { name: 'vote-threshold a fraction', spec: quorum({ 'vote-threshold': 1.5 }) },
  { name: 'blkverify with three children', spec: quorum({ 'vote-threshold': 2, blkverify: true }) },
  { name: 'blkverify with threshold 1', spec: quorum({ 'vote-threshold': 1, blkverify: true }, CHILDREN.slice(0, 2)) },
  { name: 'blkverify not a boolean', spec: quorum({ 'vote-threshold': 2, blkverify: 'x' }) },
  { name: 'rewrite-corrupted with blkverify', spec: quorum({ 'vote-threshold': 2, blkverify: true, 'rewrite-corrupted': true }, CHILDREN.slice(0, 2)) },
  { name: 'rewrite-corrupted not a boolean, even in fifo mode', spec: quorum({ 'vote-threshold': 2, 'rewrite-corrupted': 'x', 'read-pattern': 'fifo' }) },
  { name: 'unknown read-pattern', spec: quorum({ 'vote-threshold': 2, 'read-pattern': 'random' }) },
  { name: 'unknown option', spec: quorum({ 'vote-threshold': 2, foo: 1 }) },
  { name: 'empty children list', spec: quorum({ 'vote-threshold': 1 }, []) },
  { name: 'no children', spec: `json:${JSON.stringify({ driver: 'quorum', 'vote-threshold': 1 })}` },
  { name: 'children with a gap', spec: quorum({ 'vote-threshold': 1 }, { 0: raw('c0.raw'), 2: raw('c1.raw') }) },
  { name: 'a child naming a node that does not exist', spec: quorum({ 'vote-threshold': 1 }, ['c0.raw']) },
  { name: 'children of different lengths', spec: quorum({ 'vote-threshold': 2 }, [raw('c0.raw'), raw('short.raw'), raw('c2.raw')]) },
  { name: 'rewrite-corrupted on a read-only quorum', spec: quorum({ 'vote-threshold': 2, 'rewrite-corrupted': true }), args: ['-r'] },
  { name: 'rewrite-corrupted in fifo mode is ignored (opens)', spec: quorum({ 'vote-threshold': 2, 'rewrite-corrupted': true, 'read-pattern': 'fifo' }), args: ['-r'] },
];

describe.skipIf(!hasQemu())('quorum vs qemu-io / qemu-img 7.2', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture((_dir, sh) => {
      for (const c of RAWS) sh(`qemu-img create -q -f raw ${c} 1M && qemu-io -f raw -c 'write -P 1 0 64k' ${c} >/dev/null`);
      const put = (file: string, pattern: number, offset: string) => sh(`qemu-io -f raw -c 'write -P ${pattern} ${offset} 64k' ${file} >/dev/null`);
      put('c0.raw', 2, '64k');
      put('c1.raw', 2, '64k');
      put('c2.raw', 3, '64k');
      put('c0.raw', 4, '128k');
      put('c1.raw', 5, '128k');
      put('c2.raw', 6, '128k');
      put('c0.raw', 7, '192k');
      put('c1.raw', 8, '192k');
      put('c2.raw', 8, '192k');
      sh('qemu-img create -q -f raw short.raw 512k');
      for (const q of ['q0', 'q1', 'q2']) sh(`qemu-img create -q -f qcow2 ${q}.qcow2 1M && qemu-io -c 'write -P 1 0 64k' ${q}.qcow2 >/dev/null`);
      sh(`qemu-io -c 'write -P 3 128k 64k' q2.qcow2 >/dev/null`);
      sh(`qemu-io -c 'write -z 128k 64k' q0.qcow2 >/dev/null`);
      sh('qemu-img create -q -f qcow2 w.qcow2 4M && cp w.qcow2 w.qcow2.copy');
      // iotest 110's last case: a qcow2 with a relative backing name, and a copy of it.
      sh('qemu-img create -q -f qcow2 t.qcow2.base 64M && qemu-img create -q -f qcow2 -b t.qcow2.base -F qcow2 t.qcow2 && cp t.qcow2 t.qcow2.copy');
    });
  });
  afterAll(() => fx.dispose());

  for (const c of SAME_OUTPUT) {
    it(c.name, async () => {
      const r = await both(fx, c.steps, c.files);
      expect(r.ours.runs).toEqual(r.theirs.runs);
      c.files?.forEach((f, i) => expect(r.ours.files[i]!.equals(r.theirs.files[i]!), `${f} differs from QEMU's`).toBe(true));
      // The case shows what it claims: reads that should fail do, in QEMU too.
      expect(r.theirs.runs.some((x) => x.code !== 0 || /failed/.test(x.stdout))).toBe(c.failing ?? false);
    }, 30_000);
  }

  it('rewrite-corrupted: the repaired children equal the winners, as in QEMU', async () => {
    const spec = quorum({ 'vote-threshold': 2, 'rewrite-corrupted': true });
    const r = await both(fx, [io(spec, 'read 0 128k', 'read 128k 128k', 'read 192k 64k')], RAWS);
    expect(r.ours.runs).toEqual(r.theirs.runs);
    expect(r.theirs.runs[0]!.stdout).toContain('read failed: Input/output error\n');
    const [c0, c1, c2] = r.ours.files;
    // 0-128k: c2 got the 2s; 192k-256k: c0 got the 8s; 128k-256k as one read had no winner and changed nothing.
    expect(c2!.subarray(65536, 131072).every((b) => b === 2)).toBe(true);
    expect(c0!.subarray(196608, 262144).every((b) => b === 8)).toBe(true);
    expect(c1!.subarray(131072, 196608).every((b) => b === 5)).toBe(true);
    RAWS.forEach((f, i) => expect(r.ours.files[i]!.equals(r.theirs.files[i]!), f).toBe(true));
  }, 30_000);

  it("iotest 081's qemu-io steps: write through raw over quorum, repair, break, blkverify", async () => {
    const children = (n: number) =>
      Array.from({ length: n }, (_, i) => `file.children.${i}.driver=raw,file.children.${i}.file.filename=c${i}.raw`).join(',');
    const q = `driver=raw,file.driver=quorum,file.vote-threshold=2,${children(3)}`;
    const verify = `driver=raw,file.driver=quorum,file.vote-threshold=2,file.blkverify=on,${children(2)}`;
    const plain = (file: string, cmd: string) => ({ tool: 'io' as Tool, args: ['-f', 'raw', '-c', cmd, file] });
    const steps = [
      { tool: 'io' as Tool, args: ['-c', `open -o ${q}`, '-c', 'write -P 0x32 0 1M'] },
      ...RAWS.map((f) => plain(f, 'read -P 0x32 0 1M')),
      plain('c1.raw', 'write -P 0x42 0 1M'),
      { tool: 'io' as Tool, args: ['-c', `open -o ${q}`, '-c', 'read -P 0x32 0 1M'] },
      { tool: 'io' as Tool, args: ['-c', `open -o ${q},file.rewrite-corrupted=on`, '-c', 'read -P 0x32 0 1M'] },
      plain('c1.raw', 'read -P 0x32 0 1M'),
      plain('c0.raw', 'write -P 0x41 0 1M'),
      plain('c1.raw', 'write -P 0x42 0 1M'),
      { tool: 'io' as Tool, args: ['-c', `open -o ${q}`, '-c', 'read -P 0x32 0 1M'] },
      { tool: 'io' as Tool, args: ['-c', `open -o ${verify},file.children.2.driver=raw,file.children.2.file.filename=c2.raw`, '-c', 'read -P 0x32 0 1M'] },
      plain('c0.raw', 'write -P 0x32 0 1M'),
      plain('c1.raw', 'write -P 0x32 0 1M'),
      { tool: 'io' as Tool, args: ['-c', `open -o ${verify}`, '-c', 'read -P 0x32 0 1M'] },
      plain('c0.raw', 'write -P 0x41 0 512'),
      { tool: 'io' as Tool, args: ['-c', `open -o ${verify}`, '-c', 'read -P 0x32 0 1M'] },
    ];
    const r = await both(fx, steps, RAWS);
    const last = steps.length - 1;
    expect(r.ours.runs.slice(0, last)).toEqual(r.theirs.runs.slice(0, last));
    expect(r.theirs.runs[10]!.stdout).toBe('read failed: Input/output error\n');
    expect(r.theirs.runs[11]!.stderr).toContain('blkverify=on can only be set if there are exactly two files and vote-threshold is 2');
    // The broken blkverify read: QEMU prints the mismatch and exits; the library fails the read.
    const [t, o] = [r.theirs.runs[last]!, r.ours.runs[last]!];
    expect(t).toEqual({ code: 1, stdout: '', stderr: 'quorum: offset=0 bytes=1048576 contents mismatch at offset 0\n' });
    expect(o).toEqual({ ...t, stdout: 'read failed: Input/output error\n' });
    RAWS.forEach((f, i) => expect(r.ours.files[i]!.equals(r.theirs.files[i]!), f).toBe(true));
  }, 60_000);

  it('blkverify: the first difference is reported as QEMU prints it', async () => {
    const spec = quorum({ 'vote-threshold': 2, blkverify: true }, [raw('c0.raw'), raw('c2.raw')]);
    const r = await both(fx, [io(spec, 'read -P 1 0 64k', 'read 66000 4k')]);
    const [t, o] = [r.theirs.runs[0]!, r.ours.runs[0]!];
    expect(t.stderr).toBe('quorum: offset=66000 bytes=4096 contents mismatch at offset 66000\n');
    expect(o.stderr).toBe(t.stderr);
    expect(o.code).toBe(t.code);
    // QEMU exits the process at once; the library fails the read with EIO instead.
    expect(t.stdout).toBe('read 65536/65536 bytes at offset 0\n<timing>\n');
    expect(o.stdout).toBe(`${t.stdout}read failed: Input/output error\n`);
  }, 30_000);

  for (const c of OPTION_ERRORS) {
    it(`option error: ${c.name}`, async () => {
      const r = await both(fx, [{ tool: 'io', args: [...(c.args ?? []), '-c', 'read 0 512', c.spec] }]);
      expect(r.ours.runs).toEqual(r.theirs.runs);
    }, 30_000);
  }

  it('qemu-img map over qcow2 children: zeros only where every child has zeros', async () => {
    const spec = quorum({ 'vote-threshold': 2 }, ['q0', 'q1', 'q2'].map((q) => ({ driver: 'qcow2', file: { driver: 'file', filename: `${q}.qcow2` } })));
    const r = await both(fx, [
      { tool: 'img', args: ['map', '--output=json', spec] },
      io(spec, 'read -P 1 0 64k', 'read -P 0 128k 64k'),
    ]);
    expect(r.ours.runs).toEqual(r.theirs.runs);
    expect(r.theirs.runs[0]!.code).toBe(0);
  }, 30_000);

  it('qemu-img info on a quorum (QEMU rebuilds the json:{} name from the options)', async () => {
    const r = await both(fx, [{ tool: 'img', args: ['info', quorum({ 'vote-threshold': 2 })] }, { tool: 'img', args: ['info', '--output=json', quorum({ 'vote-threshold': 2 })] }]);
    const dropName = (x: RunResult) => ({ ...x, stdout: x.stdout.replace(/^image: json:.*$/m, 'image: <json>').replace(/"filename": "json:.*",$/m, '"filename": <json>,') });
    expect(r.ours.runs.map(dropName)).toEqual(r.theirs.runs.map(dropName));
    expect(r.theirs.runs[0]!.stdout).toContain('file format: quorum\n');
  }, 30_000);

  it("qemu-img info on a qcow2 whose file is a quorum of two copies (iotest 110's last case)", async () => {
    const spec = `json:{'driver':'qcow2','file':{'driver':'quorum','vote-threshold':1,'children':[{'driver':'file','filename':'t.qcow2'},{'driver':'file','filename':'t.qcow2.copy'}]}}`;
    const r = await both(fx, [{ tool: 'img', args: ['info', spec] }]);
    const [t, o] = [r.theirs.runs[0]!, r.ours.runs[0]!];
    // QEMU prints a json:{} name rebuilt from the options (iotest 110 filters it) and, having
    // no directory for a quorum, no actual path of the backing file.
    const lines = (text: string) => text.split('\n').filter((l) => !/^(image|backing file): /.test(l));
    expect(o.code).toBe(t.code);
    expect(t.code).toBe(0);
    expect(lines(o.stdout)).toEqual(lines(t.stdout));
    expect(o.stderr).toBe(t.stderr);
    expect(t.stdout).toContain('backing file: t.qcow2.base (cannot determine actual path)\n');
    expect(o.stdout).toMatch(/^backing file: t\.qcow2\.base/m);
    expect(o.stdout).toContain('file format: qcow2\n');
    // The disk size counts both copies, as QEMU sums the children of a quorum.
    const dir = fx.copy();
    const size = async (run: typeof theirs | typeof ours) => JSON.parse((await run('img', ['info', '--output=json', spec], dir)).stdout)['actual-size'] as number;
    const [mine, qemus] = [await size(ours), await size(theirs)];
    expect(mine).toBe(qemus);
    expect(mine).toBeGreaterThan(statSync(join(dir, 't.qcow2')).blocks * 512);
  }, 30_000);
});

describe('quorum through the library', () => {
  const MiB = 1 << 20;
  /** A graph whose memory images m0..m2 hold `fill(i)` at 0-4k (the children of the quorum). */
  async function setup(fill: (i: number) => number, extra: Spec = {}, children?: Spec[]) {
    const storage = new MemoryStorage();
    const g = new BlockGraph([createMemoryDriver(storage), rawDriver, blkdebugDriver, quorumDriver], 'memory');
    for (let i = 0; i < 3; i++) {
      const bb = await BlockBackend.open(g, { driver: 'raw', file: { driver: 'memory', filename: `m${i}`, size: MiB } });
      await bb.write(0, new Uint8Array(4096).fill(fill(i)));
      await bb.close();
    }
    const kids = children ?? [0, 1, 2].map((i) => ({ driver: 'raw', 'node-name': `c${i}`, file: { driver: 'memory', filename: `m${i}` } }));
    const bb = await BlockBackend.open(g, { driver: 'quorum', 'node-name': 'q', 'vote-threshold': 2, ...extra, children: kids });
    const events: QuorumEvent[] = [];
    quorumEvents(bb.node)!.listener = (e) => events.push(e);
    return { g, bb, events };
  }

  async function failure(p: Promise<unknown>): Promise<BlockError> {
    try {
      await p;
    } catch (e) {
      if (e instanceof BlockError) return e;
      throw e;
    }
    throw new Error('expected the request to fail');
  }

  it('reports the child whose data lost the vote, in sectors', async () => {
    const { bb, events } = await setup((i) => (i === 1 ? 9 : 1));
    expect((await bb.read(1000, 2000))[0]).toBe(1);
    expect(events).toEqual([{ event: 'QUORUM_REPORT_BAD', data: { type: 'read', 'node-name': 'c1', 'sector-num': 1, 'sectors-count': 5 } }]);
    await bb.close();
  });

  it('reports QUORUM_FAILURE and fails with EIO when no version reaches the threshold', async () => {
    const { bb, events } = await setup((i) => i + 1);
    const e = await failure(bb.read(0, 4096));
    expect(e.code).toBe('EIO');
    expect(events).toEqual([{ event: 'QUORUM_FAILURE', data: { reference: 'q', 'sector-num': 0, 'sectors-count': 8 } }]);
    await bb.close();
  });

  it('reports each failed write with its error; enough successes make the write succeed', async () => {
    const kids = [0, 1, 2].map((i) => ({
      driver: 'raw',
      'node-name': `c${i}`,
      file: i === 0 ? { driver: 'blkdebug', 'inject-error': [{ event: 'write_aio', errno: 28, once: true }], image: { driver: 'memory', filename: 'm0' } } : { driver: 'memory', filename: `m${i}` },
    }));
    const { bb, events } = await setup(() => 1, {}, kids);
    await bb.write(512, new Uint8Array(512).fill(7));
    expect(events).toEqual([{ event: 'QUORUM_REPORT_BAD', data: { type: 'write', error: 'No space left on device', 'node-name': 'c0', 'sector-num': 1, 'sectors-count': 1 } }]);
    // Children 1 and 2 agree on the new data and outvote child 0, which still has the old.
    expect((await bb.read(512, 512))[0]).toBe(7);
    await bb.close();
  });

  it('a failed flush of one child is reported; two successes of three make the flush succeed', async () => {
    const kids = [0, 1, 2].map((i) => ({
      driver: 'raw',
      'node-name': `c${i}`,
      file:
        i === 1
          ? { driver: 'blkdebug', 'inject-error': [{ event: 'write_aio', errno: 5, iotype: 'flush', once: true }], image: { driver: 'memory', filename: 'm1' } }
          : { driver: 'memory', filename: `m${i}` },
    }));
    const { bb, events } = await setup(() => 1, {}, kids);
    await bb.write(0, new Uint8Array(512).fill(3));
    await bb.flush();
    expect(events).toEqual([{ event: 'QUORUM_REPORT_BAD', data: { type: 'flush', error: 'Input/output error', 'node-name': 'c1', 'sector-num': 0, 'sectors-count': 0 } }]);
    await bb.close();
  });

  it('rewrite-corrupted writes the winning bytes back to the loser', async () => {
    const { g, bb } = await setup((i) => (i === 2 ? 5 : 1), { 'rewrite-corrupted': true });
    await bb.read(0, 4096);
    const c2 = g.findNode('c2');
    const copy = new Uint8Array(4096);
    await c2.parents[0]!.preadv(0, 4096, copy);
    expect(copy.every((b) => b === 1)).toBe(true);
    await bb.close();
  });

  it('a read-only quorum over writable existing nodes still repairs them (iotest 081)', async () => {
    const storage = new MemoryStorage();
    const g = new BlockGraph([createMemoryDriver(storage), rawDriver, quorumDriver], 'memory');
    const nodes = [];
    for (let i = 0; i < 3; i++) {
      const n = await g.open({ driver: 'raw', 'node-name': `f${i}`, file: { driver: 'memory', filename: `m${i}`, size: MiB } });
      const link = await g.attachRoot({ kind: 'root', name: `writer${i}` }, n, 0x03, 0x1f);
      await link.write(0, new Uint8Array(4096).fill(i === 1 ? 0x42 : 0x32));
      await g.detachRoot(link);
      nodes.push(n);
    }
    const bb = await BlockBackend.open(g, { driver: 'quorum', 'vote-threshold': 2, 'rewrite-corrupted': true, children: ['f0', 'f1', 'f2'] }, { readOnly: true });
    expect((await bb.read(0, 4096)).every((b) => b === 0x32)).toBe(true);
    const copy = new Uint8Array(4096);
    await nodes[1]!.parents[0]!.preadv(0, 4096, copy);
    expect(copy.every((b) => b === 0x32)).toBe(true);
    await bb.close();
    // Children opened read-only with the quorum cannot be repaired: refused as QEMU refuses it.
    const e = await failure(BlockBackend.open(g, { driver: 'quorum', 'vote-threshold': 1, 'rewrite-corrupted': true, children: [{ driver: 'raw', file: { driver: 'memory', filename: 'm0' } }] }, { readOnly: true }).then(() => undefined));
    expect([e.code, e.text]).toEqual(['EPERM', 'Block node is read-only']);
    for (const n of nodes) await n.unref();
  });

  it('has no base directory, and other nodes have no quorum events', async () => {
    const { g, bb } = await setup(() => 1);
    expect(() => (bb.node.instance as QuorumInstance).dirname()).toThrowError('Cannot generate a base directory for quorum nodes');
    expect(quorumEvents(g.findNode('c0'))).toBeUndefined();
    expect((bb.node.instance as QuorumInstance).settings).toEqual({ threshold: 2, blkverify: false, rewriteCorrupted: false, readPattern: 'quorum' });
    await bb.close();
  });
});
