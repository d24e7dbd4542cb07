/**
 * `img measure` against qemu-img measure 7.2, line for line (human and JSON),
 * on the cases of QEMU's iotest 178 and around them: sizes far past 2^53
 * (QEMU computes in uint64, wraps at 2^64 and prints JSON as int64), its
 * errors for sizes beyond its limits, and sparse raw sources (holes seen
 * without SEEK_DATA, src/protocols/node-file-holes.ts). measure only reads,
 * so both tools run on the same files.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hasQemu, normalize, ours, theirs, words } from './harness.js';

const run = hasQemu() ? describe : describe.skip;

let dir = '';
function sh(cmd: string): void {
  const r = spawnSync('sh', ['-c', cmd], { cwd: dir, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd}: ${r.stderr}`);
}

/** Runs `measure <line>` through both tools; returns both, normalized. */
async function both(line: string): Promise<{ q: string; o: string }> {
  const args = ['measure', ...words(line)];
  let t = theirs('img', args, dir);
  // qemu-img times its PBKDF2 iterations for a LUKS header and, on a busy machine, can fail to
  // measure them ("Unable to get accurate CPU usage"): QEMU's flake, not an answer to compare.
  for (let i = 0; i < 5 && t.stderr.includes('Unable to get accurate CPU usage'); i++) t = theirs('img', args, dir);
  const d = await ours('img', args, dir);
  return { q: `${t.code}\n${normalize(t.stdout)}${normalize(t.stderr)}`, o: `${d.code}\n${normalize(d.stdout)}${normalize(d.stderr)}` };
}

async function same(lines: string[]): Promise<void> {
  for (const line of lines) {
    const { q, o } = await both(line);
    expect(o, line).toBe(q);
  }
}

const SECRET = '--object secret,id=sec0,data=base';
const LUKS = `${SECRET} -o encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10`;

run('img measure as qemu-img measure (iotest 178)', () => {
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'dw-measure-'));
    // iotest 178's images: an empty 1 GiB raw file (sparse; qemu-img writes its first block),
    // the same with data in three places, and a fully allocated 8 MiB one.
    sh('qemu-img create -q -f raw empty.raw 1G');
    sh('qemu-img create -q -f raw data.raw 1G');
    sh(`qemu-io -f raw -c 'write 512 512' -c 'write 64K 64K' -c 'write 128M 63K' data.raw >/dev/null`);
    sh('qemu-img create -q -f raw full.raw 8M');
    sh(`qemu-io -f raw -c 'write 0 8M' full.raw >/dev/null`);
    sh('qemu-img create -q -f raw zero0.raw 0');
    sh('qemu-img create -q -f qcow2 data.qcow2 1G');
    sh(`qemu-io -c 'write 512 512' -c 'write 64K 64K' data.qcow2 >/dev/null`);
    sh('qemu-img snapshot -c snapshot1 data.qcow2');
    sh(`qemu-io -c 'write 128M 63K' data.qcow2 >/dev/null`);
    // Sparse, with data that ends inside a file-system block and a tail that is no whole block.
    sh('qemu-img create -q -f raw odd.raw 3000k');
    sh(`qemu-io -f raw -c 'write -P 7 1000k 5k' -c 'write -P 9 2999k 1k' odd.raw >/dev/null`);
  }, 60_000);
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('input validation', async () => {
    await same([
      '',
      '--size 2G empty.raw',
      'empty.raw a',
      '--object secret,id=sec0,data=MTIzNDU2,format=base64',
      '--image-opts',
      '-f qcow2',
      '-l snap1',
      '-o ,',
      '-l snapshot.foo=bar',
      '--output foo',
      '--size -1',
      '-O foo empty.raw',
    ]);
  });

  it('sizes for a new file, up to and past qemu-img limits', async () => {
    const sizes = ['0', '2G', '64G', '256G', '1T', '2P', '7E', '8E', '16E', '9223372036854775807', '9007199254740993', '0x7fffffffffffffff', '1.5E'];
    const lines: string[] = [];
    for (const out of ['human', 'json']) {
      for (const size of sizes) {
        lines.push(`--output=${out} -O qcow2 --size ${size}`, `--output=${out} -O raw --size ${size}`);
      }
    }
    await same(lines);
  });

  it('qcow2 targets past 2^53: large clusters, extended L2, refcount widths, preallocation, v2, LUKS', async () => {
    await same([
      '-O qcow2 -o cluster_size=2M --size 2E',
      '--output=json -O qcow2 -o cluster_size=2M --size 2E',
      '-O qcow2 -o cluster_size=2M --size 3E',
      '-O qcow2 -o cluster_size=2M --size 9007199254740993',
      '-O qcow2 -o cluster_size=2M,extended_l2=on --size 1E',
      '-O qcow2 -o cluster_size=2M,extended_l2=on --size 2E',
      '-O qcow2 -o cluster_size=2M,refcount_bits=1 --size 2305843009213693951',
      '-O qcow2 -o cluster_size=2M,refcount_bits=64 --size 2305843009213693951',
      '-O qcow2 -o cluster_size=2M,preallocation=full --size 2E',
      '-O qcow2 -o cluster_size=2M,compat=0.10 --size 2E',
      '-O qcow2 -o cluster_size=512 --size 1T',
      '-O qcow2 -o cluster_size=512 --size 4T',
      '-O qcow2 --size 2251799813685248',
      '-O qcow2 --size 2251799813685249',
      `-O qcow2 -o cluster_size=2M ${LUKS} --size 2E`,
      `-O luks ${SECRET} -o key-secret=sec0,iter-time=10 --size 7E`,
      `--output=json -O luks ${SECRET} -o key-secret=sec0,iter-time=10 --size 9223372036854775807`,
    ]);
  });

  it('a size option beside a source: checked by qcow2, ignored by raw and luks, refused past 2^64', async () => {
    await same([
      '-O qcow2 -o size=9E -f raw full.raw',
      '-O qcow2 -o size=18446744073709551615 -f raw full.raw',
      '-O qcow2 -o size=1P -f raw full.raw',
      '-O raw -o size=9E -f raw full.raw',
      `-O luks ${SECRET} -o key-secret=sec0,iter-time=10,size=9E -f raw full.raw`,
      '-O qcow2 -o size=20E -f raw full.raw',
      '-O raw -o size=16E --size 1G',
      '-O qcow2 -o size=abc --size 1G',
      '-O qcow2 -o foo=1 --size 1G',
      '-O raw -o size=9E',
    ]);
  });

  it("qcow2 measure's own option checks (fewer than create's), LUKS options and secrets", async () => {
    await same([
      '-O qcow2 -o backing_file=x,preallocation=full --size 1G',
      '-O qcow2 -o compat=0.10,lazy_refcounts=on --size 1G',
      '-O qcow2 -o data_file_raw=on --size 1G',
      '-O qcow2 -o compat=foo --size 1G',
      '-O qcow2 -o compat=v3 --size 1G',
      '-O qcow2 -o cluster_size=4k,extended_l2=on --size 1G',
      '-O qcow2 -o cluster_size=3k --size 1G',
      '-O qcow2 -o refcount_bits=3 --size 1G',
      '-O qcow2 -o compat=0.10,refcount_bits=8 --size 1G',
      '-O qcow2 -o preallocation=foo --size 1G',
      '-O qcow2 -o compat=0.10,extended_l2=on --size 1G',
      '-O qcow2 -o compression_type=zstd,compat=0.10 --size 1G',
      '-O qcow2 -o backing_fmt=raw --size 1G',
      '-O qcow2 -o encryption=on --size 1G',
      '-O qcow2 -o encrypt.key-secret=x --size 1G',
      '-O qcow2 -o encrypt.format=luks --size 1G',
      '-O qcow2 -o encrypt.format=luks,encrypt.key-secret=nope --size 1G',
      `-O qcow2 ${SECRET} -o encrypt.format=luks,encrypt.key-secret=sec0,encrypt.cipher-alg=foo --size 1G`,
      '-O luks -o key-secret=nope --size 1G',
      `-O luks ${SECRET} -o key-secret=sec0,cipher-alg=foo --size 1G`,
    ]);
  });

  it('sparse and fully allocated raw sources, and qcow2 sources (the 178 cases)', async () => {
    const lines: string[] = [];
    for (const out of ['human', 'json']) {
      for (const [fmt, file] of [['raw', 'zero0.raw'], ['raw', 'empty.raw'], ['raw', 'data.raw'], ['raw', 'full.raw'], ['raw', 'odd.raw'], ['qcow2', 'data.qcow2']] as const) {
        lines.push(`--output=${out} -f ${fmt} -O qcow2 ${file}`);
        lines.push(`--output=${out} -f ${fmt} -O raw ${file}`);
      }
      lines.push(`--output=${out} -f raw -O qcow2 -o backing_file=x data.raw`);
      lines.push(`--output=${out} -f raw -O qcow2 -o preallocation=full data.raw`);
      lines.push(`--output=${out} -f qcow2 -l snapshot1 -O qcow2 data.qcow2`);
    }
    lines.push(`--output=json ${LUKS} -f raw -O qcow2 data.raw`);
    lines.push('-f raw -O qcow2 -o cluster_size=4k odd.raw');
    lines.push('-f raw -O qcow2 -o cluster_size=512 odd.raw');
    await same(lines);
  }, 60_000);

  it('map of a sparse raw file shows its holes as qemu-img does; a fully allocated file stays all data', async () => {
    for (const f of ['data.raw', 'odd.raw', 'full.raw']) {
      for (const out of ['human', 'json']) {
        const args = ['map', `--output=${out}`, '-f', 'raw', f];
        const t = theirs('img', args, dir);
        const o = await ours('img', args, dir);
        expect([o.code, o.stdout], f).toEqual([t.code, t.stdout]);
      }
    }
    // Written zeros in a fully allocated file: data for both (no scan happens there).
    writeFileSync(join(dir, 'zeros.raw'), new Uint8Array(1 << 20));
    expect(statSync(join(dir, 'zeros.raw')).blocks * 512).toBeGreaterThanOrEqual(1 << 20);
    const args = ['map', '--output=json', '-f', 'raw', 'zeros.raw'];
    expect((await ours('img', args, dir)).stdout).toBe(theirs('img', args, dir).stdout);
  });

  it('zeros written into a sparse file are data, as QEMU sees them through SEEK_DATA', async () => {
    // A read cannot tell the allocated block from a hole: the file-ops helper's lseek can.
    sh('qemu-img create -q -f raw wz.raw 1M');
    sh(`qemu-io -f raw -c 'write -P 0 256k 64k' -c 'write -P 1 768k 4k' wz.raw >/dev/null`);
    const args = ['measure', '--output=json', '-f', 'raw', '-O', 'qcow2', 'wz.raw'];
    const q = JSON.parse(theirs('img', args, dir).stdout) as { required: number };
    const o = JSON.parse((await ours('img', args, dir)).stdout) as { required: number };
    expect(o.required).toBe(q.required);
  });
});
