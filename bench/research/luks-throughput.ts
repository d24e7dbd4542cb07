/**
 * By hand: luks read / write throughput of `diskworker io` against qemu-io on
 * the same image (CPU time, user + sys of the child, interleaved, median;
 * start-up, `read 0 512`, subtracted), and AES sector throughput of
 * node:crypto against the WASM module in this process. Needs the CLI built
 * (npm run build:ts). Run from the repository root:
 *   npx tsx bench/research/luks-throughput.ts [reps] [dir] [MiB] [cipher options, ...]
 * e.g. for the ciphers other than AES (their sector throughput in this process too):
 *   npx tsx bench/research/luks-throughput.ts 5 /dev/shm/lb 64 \
 *     cipher-alg=twofish-256,cipher-mode=xts cipher-alg=serpent-128,cipher-mode=cbc,ivgen-alg=essiv
 * With DW_CLI_BASE=<another build's dist/cli/diskworker.js> that build runs
 * interleaved too (its figures after "base").
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { SectorCipher, useNodeAes, type CipherSpec } from '../../src/crypto/cipher.js';

const reps = Number(process.argv[2] ?? 5);
const dir = process.argv[3] ?? '/dev/shm/luks-bench';
/** The CLI under test (DW_CLI: another build, e.g. a copy of an older dist). */
const cli = process.env['DW_CLI'] ?? join(process.cwd(), 'dist/cli/diskworker.js');
/** DW_CLI_BASE: a second build run interleaved with the first (before / after a change). */
const base = process.env['DW_CLI_BASE'];
const SECRET = ['--object', 'secret,id=s,data=pw'];
const mib = Number(process.argv[4] ?? 256);
const DEFAULT_SPECS = ['cipher-alg=aes-256,cipher-mode=xts', 'cipher-alg=aes-128,cipher-mode=cbc,ivgen-alg=essiv', 'cipher-alg=aes-256,cipher-mode=cbc,ivgen-alg=essiv'];
const specs = process.argv.length > 5 ? process.argv.slice(5) : DEFAULT_SPECS;
const median = (a: number[]) => [...a].sort((x, y) => x - y)[a.length >> 1]!;

/** CPU seconds (user + sys) of one child process. */
function cpu(cmd: string, args: string[]): number {
  const r = spawnSync('/usr/bin/time', ['-f', '%U %S', cmd, ...args], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: exit ${r.status}: ${r.stderr.toString()}`);
  const out = r.stderr.toString();
  const [u, s] = out.trim().split('\n').pop()!.split(' ').map(Number);
  return u! + s!;
}

function cliRuns(): void {
  mkdirSync(dir, { recursive: true });
  for (const o of specs) {
    rmSync(join(dir, 'b.luks'), { force: true });
    for (let i = 0; ; i++) {
      // qemu-img's PBKDF2 timing fails now and then on a loaded machine.
      try {
        execFileSync('qemu-img', ['create', '-q', '-f', 'luks', ...SECRET, '-o', `key-secret=s,iter-time=10,${o}`, 'b.luks', `${mib}M`], { cwd: dir, stdio: 'ignore' });
        break;
      } catch (e) {
        if (i > 5) throw e;
      }
    }
    const img = ['--image-opts', 'driver=luks,key-secret=s,file.filename=b.luks'];
    const tools = base ? (['qemu', 'ours', 'base'] as const) : (['qemu', 'ours'] as const);
    const t: Record<string, Record<string, number[]>> = Object.fromEntries(tools.map((x) => [x, { write: [], read: [] }]));
    for (let r = 0; r < reps; r++) {
      for (const tool of tools) {
        const run = (c: string) => (tool === 'qemu' ? cpu('qemu-io', [...SECRET, '-c', c, ...img]) : cpu('node', [tool === 'base' ? base! : cli, 'io', ...SECRET, '-c', c, ...img]));
        const start = run('read 0 512');
        t[tool]!['write']!.push(run(`write -P 7 0 ${mib}M`) - start);
        t[tool]!['read']!.push(run(`read 0 ${mib}M`) - start);
      }
    }
    for (const op of ['write', 'read']) {
      const q = median(t['qemu']![op]!);
      const d = median(t['ours']![op]!);
      const b = base ? median(t['base']![op]!) : 0;
      const before = base ? `; base ${b.toFixed(3)} s, ratio ${(q / b).toFixed(2)}` : '';
      console.log(`${o} ${op}: qemu-io ${q.toFixed(3)} s ${(mib / q).toFixed(0)} MiB/s, ours ${d.toFixed(3)} s ${(mib / d).toFixed(0)} MiB/s, ratio ${(q / d).toFixed(2)}${before}`);
    }
  }
}

async function aesRuns(): Promise<void> {
  const data = new Uint8Array(randomBytes(32 << 20));
  const specs: Array<[CipherSpec, number]> = [
    [{ alg: 'aes-256', mode: 'xts', ivgen: 'plain64' }, 64],
    [{ alg: 'aes-128', mode: 'cbc', ivgen: 'essiv', ivgenHash: 'sha256' }, 16],
    [{ alg: 'aes-256', mode: 'cbc', ivgen: 'essiv', ivgenHash: 'sha256' }, 32],
    [{ alg: 'aes-256', mode: 'ctr', ivgen: 'plain64' }, 32],
  ];
  for (const [spec, klen] of specs) {
    const key = randomBytes(klen);
    const res: Record<string, number[]> = { 'node enc': [], 'node dec': [], 'wasm enc': [], 'wasm dec': [] };
    for (let r = 0; r < reps; r++) {
      for (const impl of ['node', 'wasm']) {
        useNodeAes(impl === 'node');
        const c = await SectorCipher.create(spec, key, 512);
        for (const dir of ['enc', 'dec']) {
          const t0 = process.cpuUsage();
          for (let off = 0; off < data.length; off += 1 << 20) {
            const piece = data.subarray(off, off + (1 << 20));
            if (dir === 'enc') c.encrypt(piece, off / 512);
            else c.decrypt(piece, off / 512);
          }
          const u = process.cpuUsage(t0);
          res[`${impl} ${dir}`]!.push(32 / ((u.user + u.system) / 1e6));
        }
        c.release();
      }
    }
    useNodeAes(true);
    const f = (k: string) => median(res[k]!).toFixed(0);
    console.log(`${spec.alg}-${spec.mode}-${spec.ivgen}: node:crypto enc ${f('node enc')} dec ${f('node dec')} MiB/s; WASM enc ${f('wasm enc')} dec ${f('wasm dec')} MiB/s`);
  }
}

console.log(`load average ${(await import('node:os')).loadavg().map((x) => x.toFixed(2)).join(' ')}`);
cliRuns();
if (specs === DEFAULT_SPECS) await aesRuns();
