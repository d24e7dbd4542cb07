/**
 * QEMU iotests about zero writes, discard, resizing over a backing file,
 * empty images and rebase (154, 179, 292, 042, 252), rewritten as command
 * scripts: every step runs through qemu-img / qemu-io 7.2 in one directory and
 * through diskworker in another; each step's output and exit code, and the
 * images' allocation maps and checks at the end, must match.
 */
import { describe, it, expect } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { normalize, ours, theirs, words, type Tool } from './harness.js';

interface ScriptResult {
  /** First differing step, or null. */
  diff: string | null;
  steps: number;
}

/** Runs `steps` (qemu-img ... / qemu-io ... lines) through both tool sets; compares `images` at the end. */
async function runScript(steps: string[], images: string[]): Promise<ScriptResult> {
  const root = mkdtempSync(join(tmpdir(), 'dw-iot-'));
  const dq = join(root, 'q');
  const dd = join(root, 'd');
  mkdirSync(dq);
  mkdirSync(dd);
  try {
    for (const step of steps) {
      const [prog, ...args] = words(step);
      const tool: Tool = prog === 'qemu-img' ? 'img' : 'io';
      const t = theirs(tool, args, dq);
      const o = await ours(tool, args, dd);
      const a = `${t.code}\n${normalize(t.stdout)}\n${normalize(t.stderr)}`;
      const b = `${o.code}\n${normalize(o.stdout)}\n${normalize(o.stderr)}`;
      if (a !== b) return { diff: `step '${step}':\n--- qemu\n${a}\n--- diskworker\n${b}`, steps: steps.length };
    }
    for (const img of images) {
      for (const cmd of [['map', '--output=json'], ['check', '--output=json']]) {
        const q = spawnSync('qemu-img', [...cmd, '-U', img], { cwd: dq, encoding: 'utf8' });
        const d = spawnSync('qemu-img', [...cmd, '-U', img], { cwd: dd, encoding: 'utf8' });
        if (q.stdout !== d.stdout || q.status !== d.status) {
          return { diff: `qemu-img ${cmd[0]} ${img}:\n--- qemu\n${q.stdout}${q.stderr}\n--- diskworker\n${d.stdout}${d.stderr}`, steps: steps.length };
        }
      }
      const c = spawnSync('qemu-img', ['compare', '-U', join(dq, img), join(dd, img)], { encoding: 'utf8' });
      if (c.status !== 0) return { diff: `content of ${img}: ${c.stdout}${c.stderr}`, steps: steps.length };
    }
    return { diff: null, steps: steps.length };
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

const io = (img: string, ...cmds: string[]) => `qemu-io -f qcow2 ${cmds.map((c) => `-c '${c}'`).join(' ')} ${img}`;
const map = (img: string) => `qemu-img map --output=json ${img}`;
const SIZE = 128 * 1024 * 1024;
/** iotest 154's images: a 512-byte-cluster base and a 4 KiB-cluster overlay. */
const pair154 = (baseSize = SIZE, topSize?: number) => [
  `qemu-img create -q -f qcow2 -o cluster_size=512 t.base ${baseSize}`,
  `qemu-img create -q -f qcow2 -o cluster_size=4k -b t.base -F qcow2 t.qcow2${topSize ? ` ${topSize}` : ''}`,
];

describe('iotest 154: write -z over a backing file makes zero clusters', () => {
  it('partial clusters whose rest reads as zeros, in the backing file too', async () => {
    const r = await runScript(
      [...pair154(), io('t.qcow2', 'write -z 0 2k'), io('t.qcow2', 'write -z 10k 2k'), io('t.qcow2', 'write -z 17k 2k'), io('t.qcow2', 'write -z 27k 2k'), map('t.qcow2')],
      ['t.qcow2'],
    );
    expect(r.diff).toBeNull();
  });

  it('backing data before, after and under the request (data clusters where needed)', async () => {
    const r = await runScript(
      [
        ...pair154(),
        io('t.base', 'write -P 0x11 32k 1k', 'write -P 0x11 65k 1k', 'write -P 0x11 34k 1k'),
        io('t.qcow2', 'write -z 34k 1k', 'write -z 66k 1k'),
        io('t.qcow2', 'read -P 0x11 32k 1k', 'read -P 0 33k 1k', 'read -P 0x11 65k 1k', 'read -P 0 64k 1k', 'read -P 0 66k 2k'),
        io('t.base', 'write -P 0x11 5k 1k', 'write -P 0x11 14k 1k', 'write -P 0x11 21k 2k', 'write -P 0x11 30208 1k'),
        io('t.qcow2', 'write -z 5k 2k', 'write -z 13k 2k', 'write -z 21k 2k', 'write -z 29k 2k'),
        io('t.qcow2', 'read -P 0 4k 4k', 'read -P 0 12k 4k', 'read -P 0 20k 4k', 'read -P 0 28k 4k'),
        map('t.qcow2'),
      ],
      ['t.qcow2'],
    );
    expect(r.diff).toBeNull();
  });

  it('requests spanning two and more clusters', async () => {
    const r = await runScript(
      [
        ...pair154(),
        io('t.base', 'write -P 0x11 49k 1k', 'write -P 0x11 71k 1k', 'write -P 0x11 2k 4k', 'write -P 0x11 129k 10k'),
        io('t.qcow2', 'write -z 51k 2k', 'write -z 67k 2k', 'write -z 3k 2k', 'write -z 130k 7k', 'write -z 194k 7k'),
        io('t.qcow2', 'read -P 0 48k 1k', 'read -P 0x11 49k 1k', 'read -P 0 67k 4k', 'read -P 0x11 71k 1k', 'read -P 0 3k 2k', 'read -P 0 130k 7k'),
        map('t.qcow2'),
      ],
      ['t.qcow2'],
    );
    expect(r.diff).toBeNull();
  });

  it('the unaligned tail cluster of an image, with and without a backing file', async () => {
    const steps: string[] = [];
    for (const [off, len] of [[SIZE, 512], [SIZE + 1536, 512], [SIZE + 512, 1024], [SIZE, 2048]] as const) {
      steps.push(`qemu-img create -q -f qcow2 -o cluster_size=4k n${off}-${len}.qcow2 ${SIZE + 2048}`);
      steps.push(io(`n${off}-${len}.qcow2`, `write -z ${off} ${len}`, `alloc ${SIZE} 2048`, 'map'));
      steps.push(map(`n${off}-${len}.qcow2`));
    }
    steps.push(`qemu-img create -q -f qcow2 -o cluster_size=2048 t.base ${SIZE + 1024}`);
    for (const [off, len] of [[SIZE, 512], [SIZE + 1536, 512], [SIZE + 512, 1024], [SIZE, 2048]] as const) {
      steps.push(`qemu-img create -q -f qcow2 -o cluster_size=4k -b t.base -F qcow2 b${off}-${len}.qcow2 ${SIZE + 2048}`);
      steps.push(io(`b${off}-${len}.qcow2`, `write -z ${off} ${len}`, `alloc ${SIZE} 2048`));
      steps.push(map(`b${off}-${len}.qcow2`));
    }
    const r = await runScript(steps, [`n${SIZE + 512}-1024.qcow2`, `b${SIZE + 512}-1024.qcow2`, `b${SIZE}-512.qcow2`]);
    expect(r.diff).toBeNull();
  });
});

describe('iotest 179: write -z with and without unmap', () => {
  it('aligned and unaligned zero writes, over data, over zeros, over a backing file', async () => {
    const M = 1024 * 1024;
    const r = await runScript(
      [
        `qemu-img create -q -f qcow2 t.base ${64 * M}`,
        `qemu-img create -q -f qcow2 -b t.base -F qcow2 t.qcow2`,
        io('t.base', `write -z -u ${2 * M} ${2 * M}`, `write -z ${6 * M} ${2 * M}`, 'map'),
        io('t.base', `write -z -u 10485761 2097150`, `write -z 14680065 2097150`, 'map'),
        io('t.base', `write ${18 * M} ${14 * M}`, `write -z -u ${20 * M} ${2 * M}`, `write -z ${24 * M} ${6 * M}`, 'map'),
        io('t.base', `write -z -u ${26 * M} ${2 * M}`, `write -z ${28 * M} ${2 * M}`, 'map'),
        io('t.base', `write -z ${32 * M} ${8 * M}`, `write -z -u ${34 * M} ${2 * M}`, `write -z ${36 * M} ${2 * M}`, 'map'),
        io('t.base', `write -z ${40 * M} ${8 * M}`, `write ${48 * M} ${8 * M}`),
        io('t.qcow2', `write -z -u ${42 * M} ${2 * M}`, `write -z ${44 * M} ${2 * M}`, `write -z -u ${50 * M} ${2 * M}`),
        io('t.qcow2', `write -z ${52 * M} ${2 * M}`, `write -z -u ${58 * M} ${2 * M}`, `write -z ${60 * M} ${2 * M}`, 'map'),
        map('t.base'),
        map('t.qcow2'),
      ],
      ['t.base', 't.qcow2'],
    );
    expect(r.diff).toBeNull();
  });
});

describe('iotest 292: growing after shrinking over a backing file', () => {
  it('the regrown tail reads zeros, not the backing file', async () => {
    const r = await runScript(
      [
        'qemu-img create -q -f qcow2 t.base 1M',
        io('t.base', 'write -P 0x11 0 1M'),
        'qemu-img create -q -f qcow2 -b t.base -F qcow2 t.qcow2',
        io('t.qcow2', 'write -P 0x22 0 1M'),
        'qemu-img resize --shrink t.qcow2 520k',
        'qemu-img resize t.qcow2 567k',
        io('t.qcow2', 'read -P 0x22 0 520k', 'read -P 0 520k 47k'),
        io('t.qcow2', 'truncate 1M', 'read -P 0 520k 504k', 'map'),
        'qemu-img map t.qcow2',
      ],
      ['t.qcow2'],
    );
    expect(r.diff).toBeNull();
  });

  it('v2 images cannot zero the grown area and fail as QEMU does', async () => {
    const r = await runScript(
      [
        'qemu-img create -q -f qcow2 -o compat=0.10 t.base 1M',
        'qemu-img create -q -f qcow2 -o compat=0.10 -b t.base -F qcow2 t.qcow2 512k',
        'qemu-img resize t.qcow2 1M',
        io('t.qcow2', 'truncate 2M', 'length'),
        'qemu-img info t.qcow2',
      ],
      ['t.qcow2'],
    );
    expect(r.diff).toBeNull();
  });
});

describe('iotest 042: zero-size images', () => {
  it('create, convert, compressed convert and rebase leave no leaked cluster', async () => {
    const r = await runScript(
      [
        'qemu-img create -q -f qcow2 t.qcow2 0',
        'qemu-img check t.qcow2',
        'qemu-img convert -O qcow2 t.qcow2 t.conv',
        'qemu-img check t.conv',
        'qemu-img convert -c -O qcow2 t.qcow2 t.comp',
        'qemu-img check t.comp',
        'qemu-img rebase -u -b t.qcow2 -F qcow2 t.conv',
        'qemu-img rebase -b t.qcow2 -F qcow2 t.conv',
        'qemu-img check t.conv',
        'qemu-img resize t.qcow2 1M',
        io('t.qcow2', 'write -P 7 0 1M', 'read -P 7 0 1M'),
        'qemu-img check t.qcow2',
      ],
      ['t.qcow2', 't.conv'],
    );
    expect(r.diff).toBeNull();
  });
});

describe('iotest 252: rebase onto a backing file from none', () => {
  it('writes zero clusters only where the new backing file has data', async () => {
    const C = 65536;
    const r = await runScript(
      [
        `qemu-img create -q -f qcow2 t.qcow2 ${6 * C}`,
        `qemu-img create -q -f qcow2 t.base_new ${6 * C}`,
        io('t.qcow2', `write -P 0x22 0 ${2 * C}`, `write -P 0x11 ${2 * C} ${2 * C}`),
        io('t.base_new', `write -P 0x11 0 ${C}`, `write -P 0x11 ${2 * C} ${C}`, `write -P 0x11 ${4 * C} ${C}`),
        "qemu-img rebase -b '' t.qcow2",
        map('t.qcow2'),
        'qemu-img rebase -b t.base_new -F qcow2 t.qcow2',
        io('t.qcow2', `read -P 0x22 0 ${2 * C}`, `read -P 0x11 ${2 * C} ${2 * C}`, `read -P 0 ${4 * C} ${2 * C}`),
        map('t.qcow2'),
      ],
      ['t.qcow2'],
    );
    expect(r.diff).toBeNull();
  });

  it('a shorter old backing file: past its end the difference becomes zero writes', async () => {
    const C = 65536;
    const r = await runScript(
      [
        `qemu-img create -q -f qcow2 t.old ${2 * C}`,
        io('t.old', `write -P 0x33 0 ${2 * C}`),
        `qemu-img create -q -f qcow2 t.new ${6 * C}`,
        io('t.new', `write -P 0x44 ${C} ${4 * C}`, `write -P 0 ${3 * C} 4k`),
        `qemu-img create -q -f qcow2 -b t.old -F qcow2 t.qcow2 ${6 * C}`,
        'qemu-img rebase -b t.new -F qcow2 t.qcow2',
        map('t.qcow2'),
      ],
      ['t.qcow2'],
    );
    expect(r.diff).toBeNull();
  });
});

describe('iotest 313: commit of an overlay filled with zeros', () => {
  it('deallocates the base clusters (commit opens with discard=unmap, which the base inherits)', async () => {
    const C = 1024;
    const r = await runScript(
      [
        `qemu-img create -q -f qcow2 -o cluster_size=1k t.base ${256 * C}`,
        io('t.base', `write -P 1 0 ${256 * C}`),
        `qemu-img create -q -f qcow2 -o cluster_size=1k -b t.base -F qcow2 t.qcow2`,
        io('t.qcow2', `write -z 0 ${256 * C}`),
        'qemu-img commit t.qcow2',
        'qemu-img check t.base',
        map('t.base'),
      ],
      ['t.base'],
    );
    expect(r.diff).toBeNull();
  });
});
