/**
 * Convert's sparse detection against qemu-img 7.2: sources with zero and non-zero 512-byte
 * sectors in runs of every length around the alignment units, sectors that are zero except
 * for one byte, and data clusters that are partly zero, converted with several -S values
 * into targets whose map shows every sector (qcow2 with 512-byte clusters, extended L2 with
 * 512-byte subclusters) and into a default qcow2. The allocation map (`map --output=json`)
 * and the bytes must match qemu-img's, with the WASM zero check (read buffers in module
 * memory) and with it forced off (DISKWORKER_ZERO=js).
 */
import { describe, it, expect, beforeAll, afterAll, vi } from 'vitest';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Fixture, hasQemu, ours, theirs, words } from './harness.js';
import { prng } from '../prng.js';
import { WasmZero, loadZeroSync } from '../../src/wasm/zero.js';

const SECTOR = 512;

/** Sector layout: alternating data and zero runs of lengths around 1, 2, 4, 8 and 128 sectors. */
function pattern(seed: number, bytes: number): Uint8Array {
  const rnd = prng(seed);
  const out = new Uint8Array(bytes);
  const runs = [1, 2, 3, 4, 5, 7, 8, 9, 11, 12, 13, 15, 16, 17, 24, 31, 32, 33, 127, 128, 129, 260];
  let s = 0;
  let data = rnd() < 0.5;
  const sectors = bytes / SECTOR;
  while (s < sectors) {
    const n = Math.min(sectors - s, runs[Math.floor(rnd() * runs.length)]!);
    if (data) {
      for (let k = s; k < s + n; k++) {
        const at = k * SECTOR;
        const r = rnd();
        // Full sectors, sectors with only the first or only the last byte set, one byte in the middle.
        if (r < 0.4) for (let b = 0; b < SECTOR; b++) out[at + b] = 1 + ((k + b) % 251);
        else if (r < 0.6) out[at] = 0x5a;
        else if (r < 0.8) out[at + SECTOR - 1] = 0xa5;
        else out[at + 16 + Math.floor(rnd() * (SECTOR - 32))] = 0x3c;
      }
    }
    s += n;
    data = !data;
  }
  return out;
}

function build(dir: string, sh: (cmd: string) => void): void {
  // 3 MiB + 1.5 KiB: crosses convert's 2 MiB buffers and ends off the 4 KiB grid.
  writeFileSync(join(dir, 'mix.raw'), pattern(1, 3 * 1024 * 1024 + 3 * SECTOR));
  // Mostly zero, with isolated data sectors (long zero runs, odd alignment).
  const sparse = new Uint8Array(1024 * 1024);
  for (const off of [0, 4096 + 512, 12288 + 3584, 65536 - 1, 65536 + 7 * 512, 200000, 524288 + 1, 1048575]) sparse[off] = 7;
  writeFileSync(join(dir, 'sparse.raw'), sparse);
  // A qcow2 whose allocated 64 KiB clusters are partly zero (-S 0 keeps them allocated).
  sh('qemu-img convert -q -S 0 -f raw -O qcow2 mix.raw full.qcow2');
}

/**
 * The allocation map as runs of equal (present, zero, data), neighbours merged: where the
 * data sits in the file (which decides how qemu-img map splits extents) is the qcow2
 * driver's business, not sparse detection's.
 */
function allocation(path: string): string[] {
  const r = spawnSync('qemu-img', ['map', '-U', '--output=json', path], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`qemu-img map ${path}: ${r.stderr}`);
  const runs: Array<{ start: number; length: number; kind: string }> = [];
  for (const e of JSON.parse(r.stdout) as Array<{ start: number; length: number; present: boolean; zero: boolean; data: boolean }>) {
    const kind = `present=${e.present} zero=${e.zero} data=${e.data}`;
    const last = runs[runs.length - 1];
    if (last && last.kind === kind && last.start + last.length === e.start) last.length += e.length;
    else runs.push({ start: e.start, length: e.length, kind });
  }
  return runs.map((x) => `${x.start}+${x.length} ${x.kind}`);
}

const sparseValues = [undefined, '512', '1k', '1536', '4k', '6k', '64k', '0'];
const targets = ['-o cluster_size=512', '-o extended_l2=on,cluster_size=16k', ''];
const sources = ['-f raw mix.raw', '-f raw sparse.raw', '-f qcow2 full.qcow2'];

describe.skipIf(!hasQemu())('convert sparse detection vs qemu-img 7.2', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture(build);
  });
  afterAll(() => {
    fx?.dispose();
    delete process.env['DISKWORKER_ZERO'];
  });

  for (const path of ['wasm', 'js'] as const) {
    describe(`${path} zero check`, () => {
      for (const src of sources) {
        for (const S of sparseValues) {
          it(`convert ${S === undefined ? '' : `-S ${S} `}${src}`, async () => {
            if (path === 'js') process.env['DISKWORKER_ZERO'] = 'js';
            else delete process.env['DISKWORKER_ZERO'];
            const wasmRuns = vi.spyOn(WasmZero.prototype, 'runLength');
            try {
              for (const opts of targets) {
                const line = `convert ${S === undefined ? '' : `-S ${S} `}${src} -O qcow2 ${opts} out.qcow2`;
                const dq = fx.copy();
                const dd = fx.copy();
                const t = theirs('img', words(line), dq);
                const o = await ours('img', words(line), dd);
                expect(t.code, `${line}: qemu-img: ${t.stderr}`).toBe(0);
                expect(o, line).toEqual({ code: 0, stdout: '', stderr: '' });
                const cmp = spawnSync('qemu-img', ['compare', '-U', join(dq, 'out.qcow2'), join(dd, 'out.qcow2')], { encoding: 'utf8' });
                expect(cmp.status, `${line}: ${cmp.stdout}${cmp.stderr}`).toBe(0);
                expect(allocation(join(dd, 'out.qcow2')), line).toEqual(allocation(join(dq, 'out.qcow2')));
              }
              // The path under test really ran (sparse detection is off with -S 0).
              if (path === 'js' || S === '0') expect(wasmRuns).not.toHaveBeenCalled();
              else expect(wasmRuns).toHaveBeenCalled();
            } finally {
              wasmRuns.mockRestore();
            }
          });
        }
      }
    });
  }

  it('has the WASM module in this engine (else the wasm cases test nothing)', () => {
    delete process.env['DISKWORKER_ZERO'];
    expect(loadZeroSync()).toBeInstanceOf(WasmZero);
  });
});
