/**
 * Format probing against qemu-img 7.2: for files of every format QEMU knows
 * (made by qemu-img where it can create them, else by hand) and for qcow2
 * files with odd versions or truncated headers, the format qemu-img chooses
 * must be the one we choose. Formats we do not read (all but raw, qcow2 and vpc) are refused by name
 * (ENOTSUP), never opened as raw; qcow2 files we refuse give qemu-img's message.
 * VDI files (which we read) are opened, or refused, as vdi.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Fixture, hasQemu, ours, normalize } from '../cli/harness.js';
import { FOREIGN_FORMATS } from '../../src/core/probe-foreign.js';

/** The formats we read; the rest are QEMU's that we refuse by name. */
const READ = ['raw', 'qcow2', 'vdi', 'vpc', 'vmdk', 'vhdx', 'qed', 'qcow', 'luks'];
const FORMATS = [...READ, ...FOREIGN_FORMATS.map((f) => f.name)];

function bytes(s: string): Buffer {
  return Buffer.from(s, 'latin1');
}

/** A qcow2 file of 1 MiB with `version` written over its version field. */
function qcow2Version(dir: string, sh: (cmd: string) => void, name: string, version: number): void {
  sh(`qemu-img create -q -f qcow2 ${name} 1M`);
  const b = readFileSync(join(dir, name));
  b.writeUInt32BE(version, 4);
  writeFileSync(join(dir, name), b);
}

function build(dir: string, sh: (cmd: string) => void): void {
  for (const f of ['qcow', 'qed', 'vmdk', 'vhdx', 'vdi', 'vpc', 'parallels']) sh(`qemu-img create -q -f ${f} img.${f} 1M`);
  sh('qemu-img create -q -f vmdk -o subformat=monolithicFlat flat.vmdk 1M');
  // A fixed VHD has its footer only at the end: QEMU probes it as raw.
  sh('qemu-img create -q -f vpc -o subformat=fixed fixed.vpc 1M');
  // Descriptor variants: comments and blank lines of spaces before version=, CRLF.
  writeFileSync(join(dir, 'desc-crlf.txt'), '# Disk DescriptorFile\r\n   \r\nversion=2\r\nCID=fffffffe\r\n');
  writeFileSync(join(dir, 'desc-empty-line.txt'), '# Disk DescriptorFile\n\nversion=1\n');
  writeFileSync(join(dir, 'desc-v4.txt'), '# Disk DescriptorFile\nversion=4\n');
  const bochs = Buffer.alloc(1024);
  bochs.write('Bochs Virtual HD Image', 0, 'latin1');
  bochs.write('Redolog', 32, 'latin1');
  bochs.write('Growing', 48, 'latin1');
  bochs.writeUInt32LE(0x20000, 64);
  writeFileSync(join(dir, 'img.bochs'), bochs);
  const bochsUndoable = Buffer.from(bochs);
  bochsUndoable.write('Undoable', 48, 'latin1');
  writeFileSync(join(dir, 'undoable.bochs'), bochsUndoable);
  const cloop = bytes('#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n');
  writeFileSync(join(dir, 'img.cloop'), Buffer.concat([cloop, Buffer.alloc(1024)]));
  // A prefix of the cloop magic: QEMU compares what it read, zeros included, so no match.
  writeFileSync(join(dir, 'short.cloop'), cloop.subarray(0, 20));
  writeFileSync(join(dir, 'img.dmg'), Buffer.alloc(2048));
  writeFileSync(join(dir, 'img.luks'), Buffer.concat([Buffer.from([0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe, 0, 1]), Buffer.alloc(4088)]));
  writeFileSync(join(dir, 'v2.luks'), Buffer.concat([Buffer.from([0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe, 0, 2]), Buffer.alloc(4088)]));
  for (const v of [0, 1, 4, 0x80000000, 0xfffffe00]) qcow2Version(dir, sh, `v${v}.qcow2`, v);
  for (const n of [8, 20, 71, 72, 104, 112]) sh(`qemu-img create -q -f qcow2 cut${n}.qcow2 1M && truncate -s ${n} cut${n}.qcow2`);
  // VDI files vdi refuses: a header cut short (QEMU reads zeros past the end), a bad version.
  sh('qemu-img create -q -f vdi cut.vdi 1M && truncate -s 300 cut.vdi');
  sh('qemu-img create -q -f vdi v2.vdi 1M && printf "\\001\\000\\002\\000" | dd of=v2.vdi bs=1 seek=68 conv=notrunc status=none');
  sh('head -c 3000 /dev/zero > zeros.raw');
  sh(': > empty.raw');
}

interface Probe {
  /** The format qemu-img opened the file as, or null when no -f reproduces its answer. */
  format: string | null;
  code: number;
  text: string;
}

function qemuInfo(dir: string, file: string, fmt?: string): { code: number; text: string } {
  const args = ['info', ...(fmt ? ['-f', fmt] : []), file];
  const r = spawnSync('qemu-img', args, { cwd: dir, encoding: 'utf8' });
  // Debian's qemu-img names block modules it lacks on stderr: not part of the answer.
  const stderr = r.stderr.replace(/^qemu: module .*$\n?/gm, '');
  return { code: r.status ?? -1, text: r.stdout + stderr };
}

/** What qemu-img chose: the format shown on success, else the -f that gives the same answer. */
function qemuProbe(dir: string, file: string): Probe {
  const probed = qemuInfo(dir, file);
  const shown = /^file format: (\S+)$/m.exec(probed.text);
  if (probed.code === 0 && shown) return { format: shown[1]!, ...probed };
  for (const f of FORMATS) {
    const forced = qemuInfo(dir, file, f);
    if (forced.code === probed.code && forced.text === probed.text) return { format: f, ...probed };
  }
  return { format: null, ...probed };
}

const FILES = [
  'img.qcow', 'img.qed', 'img.vmdk', 'flat.vmdk', 'img.vhdx', 'img.vdi', 'img.vpc', 'fixed.vpc', 'img.parallels',
  'desc-crlf.txt', 'desc-empty-line.txt', 'desc-v4.txt', 'img.bochs', 'undoable.bochs',
  'img.cloop', 'short.cloop', 'img.dmg', 'img.luks', 'v2.luks', 'cut.vdi', 'v2.vdi',
  'v0.qcow2', 'v1.qcow2', 'v4.qcow2', 'v2147483648.qcow2', 'v4294966784.qcow2',
  'cut8.qcow2', 'cut20.qcow2', 'cut71.qcow2', 'cut72.qcow2', 'cut104.qcow2', 'cut112.qcow2',
  'zeros.raw', 'empty.raw',
];

it('compares against qemu-img 7.2', () => {
  expect(hasQemu()).toBe(true);
});

describe('format probing vs qemu-img 7.2', () => {
  let fx: Fixture;
  let dir: string;
  beforeAll(() => {
    fx = new Fixture(build);
    dir = fx.copy();
  }, 60_000);
  afterAll(() => fx.dispose());

  for (const file of FILES) {
    it(`${file}: same format as qemu-img, refused by name if we do not read it`, async () => {
      const q = qemuProbe(dir, file);
      expect(q.format, `qemu-img's format for ${file}: ${q.text}`).not.toBeNull();
      const o = await ours('img', ['info', file], dir);
      const text = normalize(o.stdout + o.stderr);
      if (READ.includes(q.format!)) {
        if (q.code === 0) {
          expect(o.code, text).toBe(0);
          expect(text).toContain(`file format: ${q.format}\n`);
        } else {
          // Files qemu-img refuses: the same message, the same exit code.
          expect({ code: o.code, text }).toEqual({ code: q.code, text: normalize(q.text) });
        }
      } else {
        expect({ code: o.code, text }).toEqual({
          code: 1,
          text: `diskworker img: Could not open '${file}': Image format '${q.format}' is not supported\n`,
        });
      }
    });
  }

  it('a refused format is never written to: qemu-io -c write on a parallels fails and leaves it unchanged', async () => {
    const before = spawnSync('sha256sum', ['img.parallels'], { cwd: dir, encoding: 'utf8' }).stdout;
    const o = await ours('io', ['-c', 'write 0 512', 'img.parallels'], dir);
    expect(o.code).toBe(1);
    expect(o.stderr).toContain("Image format 'parallels' is not supported");
    expect(spawnSync('sha256sum', ['img.parallels'], { cwd: dir, encoding: 'utf8' }).stdout).toBe(before);
  });
});
