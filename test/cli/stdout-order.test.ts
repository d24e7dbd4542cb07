/**
 * The order of stdout and stderr lines when both go to one pipe (`2>&1`, as
 * QEMU's iotests and most scripts read the tools): qemu-io's and qemu-img's
 * stdout is block-buffered there (4 KiB blocks) while stderr is not, and they
 * flush at a few fixed points (qemu-io's prompt and sigraise, qemu-img's
 * "Formatting" line and progress). The built bin runs as a process beside the
 * real tools; the combined output must be the same, byte for byte.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BIN, ensureBuiltBin } from './harness.js';
import { BlockBufferedOutput } from '../../src/cli/common.js';

const mask = (s: string) =>
  s
    .replace(/\([^()]*\/sec[^()]*\)/g, '(RATE)')
    .replace(/\d\d:\d\d:\d\d\.\d+|\d\d\.\d\d sec/g, 'TIME')
    .replace(/diskworker (img|io): /g, 'qemu-$1: ');

describe('stdout and stderr interleave as in QEMU 7.2 tools', () => {
  let dir: string;
  beforeAll(() => {
    ensureBuiltBin();
    dir = mkdtempSync(join(tmpdir(), 'dw-order-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** Runs `cmd` with `TOOL` replaced by the reference and by our bin, both through `sh -c ... 2>&1`. */
  function both(cmd: (tool: string) => string, tool: 'img' | 'io', setup: string) {
    const run = (which: 'q' | 'd') => {
      const d = join(dir, `${which}-${Math.random().toString(36).slice(2)}`);
      spawnSync('sh', ['-c', `mkdir -p ${d} && cd ${d} && ${setup}`]);
      const t = which === 'q' ? `qemu-${tool}` : `node ${BIN} ${tool}`;
      const r = spawnSync('sh', ['-c', `cd ${d} && ${cmd(t)} 2>&1; echo "exit=$?"`], { encoding: 'utf8' });
      return mask(r.stdout);
    };
    return { theirs: run('q'), ours: run('d') };
  }

  it('an error after less than a block of output comes first', () => {
    const r = both((t) => `${t} -c 'write -P 1 0 4k' -c 'read -P 1 0 4k' -c 'open nosuchfile' a.qcow2`, 'io', 'qemu-img create -q -f qcow2 a.qcow2 1M');
    expect(r.ours).toBe(r.theirs);
    expect(r.theirs.indexOf('file open already')).toBeGreaterThanOrEqual(0);
    expect(r.theirs.indexOf('file open already')).toBeLessThan(r.theirs.indexOf('wrote'));
  });

  it('an error after more than a block of output comes after the first whole blocks', () => {
    // alloc lines have no timings: the block boundary falls at the same byte in both.
    const cmds = Array.from({ length: 160 }, (_, i) => `-c 'alloc ${(i % 64) * 4096} 4k'`).join(' ');
    const r = both((t) => `${t} ${cmds} -c 'open nosuchfile' a.qcow2`, 'io', "qemu-img create -q -f qcow2 a.qcow2 1M && qemu-io -c 'write 0 128k' a.qcow2 >/dev/null");
    expect(r.ours).toBe(r.theirs);
    const at = r.theirs.indexOf('file open already');
    expect(at).toBeGreaterThan(4096);
    expect(at).toBeLessThan(r.theirs.lastIndexOf('allocated at offset'));
  });

  it('qemu-io flushes at each prompt when commands come from stdin', () => {
    const r = both((t) => `printf 'write 0 4k\\nopen nosuchfile\\nread 0 4k\\n' | ${t} a.qcow2`, 'io', 'qemu-img create -q -f qcow2 a.qcow2 1M');
    expect(r.ours).toBe(r.theirs);
  });

  it('sigraise writes out what stdout holds first', () => {
    const r = both((t) => `${t} -c 'write 0 4k' -c 'sigraise 9' a.qcow2`, 'io', 'qemu-img create -q -f qcow2 a.qcow2 1M');
    expect(r.ours).toBe(r.theirs);
    expect(r.theirs).toContain('wrote 4096/4096');
  });

  it("qemu-img create's Formatting line precedes the create's error", () => {
    const r = both((t) => `${t} create -f qcow2 -o refcount_bits=3 b.qcow2 1M`, 'img', 'true');
    expect(r.ours).toBe(r.theirs);
    expect(r.theirs.indexOf('Formatting')).toBeLessThan(r.theirs.indexOf('Refcount width'));
  });

  it('BlockBufferedOutput writes whole blocks and the rest on flush', () => {
    const writes: string[] = [];
    const out = new BlockBufferedOutput((b) => writes.push(b.toString()), 8);
    out.add('abc');
    expect(writes).toEqual([]);
    out.add('defghijklmnopqrs');
    expect(writes).toEqual(['abcdefghijklmnop']);
    out.add('t');
    out.flush();
    expect(writes).toEqual(['abcdefghijklmnop', 'qrst']);
    out.flush();
    expect(writes.length).toBe(2);
  });
});
