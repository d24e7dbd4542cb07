/**
 * Differential qemu-io fuzzing: a seed makes an image (with qemu-img, of one
 * of many kinds) and a random qemu-io session over it; the session runs
 * through the real qemu-io 7.2 and through `diskworker io` on identical
 * copies, and every printed line, the exit code, the final guest content and
 * `qemu-img map` / `qemu-img check` of the results must match.
 *
 * Shared by the fixed-seed sample (qemu-io-diff.test.ts) and the long run
 * (qemu-io-diff.fuzz.ts).
 */
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { prng } from '../prng.js';
import { normalize, ours, theirs } from '../cli/harness.js';
import type { MapEntry } from '../formats/qcow2/helpers.js';

/** What image a session runs on. */
export interface ImageKind {
  clusterBits: number;
  /** qcow2 version: 2 (compat=0.10) or 3. */
  version: 2 | 3;
  extendedL2: boolean;
  lazyRefcounts: boolean;
  refcountBits: number;
  /** External data file (none, plain, or data_file_raw=on). */
  dataFile: 'none' | 'plain' | 'raw';
  /** Backing file: none, a qcow2 image (v2/v3/extended L2) or a raw file. */
  backing: 'none' | 'qcow2' | 'qcow2-v2' | 'qcow2-ext' | 'raw';
  /** Guest size of the top image. */
  size: number;
  /** Guest size of the backing file (may be shorter than the top). */
  backingSize: number;
}

/** One generated session. */
export interface Session {
  seed: number;
  kind: ImageKind;
  /** Shell commands (run in the fixture directory) that make the images. */
  setup: string[];
  /** qemu-io commands, each passed with -c. */
  commands: string[];
}

/** The top image of every session. */
export const TOP = 'top.qcow2';

type Rand = () => number;

function int(r: Rand, lo: number, hi: number): number {
  return lo + Math.floor(r() * (hi - lo + 1));
}
function pick<T>(r: Rand, xs: readonly T[]): T {
  return xs[Math.floor(r() * xs.length)]!;
}

/** Picks an image kind; `r` decides every feature. */
export function pickKind(r: Rand): ImageKind {
  const clusterBits = pick(r, [9, 9, 10, 12, 12, 14, 16, 16, 16, 17, 18, 20, 21]);
  const cs = 2 ** clusterBits;
  const version: 2 | 3 = r() < 0.25 ? 2 : 3;
  const extendedL2 = version === 3 && clusterBits >= 14 && r() < 0.35;
  const lazyRefcounts = version === 3 && r() < 0.2;
  const refcountBits = version === 2 ? 16 : pick(r, [1, 2, 4, 8, 16, 16, 16, 32, 64]);
  let dataFile: ImageKind['dataFile'] = version === 3 && r() < 0.15 ? (r() < 0.5 ? 'plain' : 'raw') : 'none';
  const backing = pick(r, ['none', 'none', 'qcow2', 'qcow2', 'qcow2-v2', 'qcow2-ext', 'raw'] as const);
  // QEMU refuses data_file_raw with a backing file.
  if (backing !== 'none' && dataFile === 'raw') dataFile = 'plain';
  // Few clusters: the interesting cases are at cluster and L2 boundaries, not in bulk.
  const clusters = cs >= 1 << 20 ? int(r, 1, 4) : int(r, 2, clusterBits <= 10 ? 300 : 24);
  const tail = r() < 0.3 ? int(r, 1, Math.max(1, cs / 512 - 1)) * 512 : 0;
  const size = Math.max(512, clusters * cs + (tail < cs ? tail : 0));
  let backingSize = size;
  if (backing !== 'none' && r() < 0.3) backingSize = Math.max(512, Math.floor((size * r()) / 512) * 512);
  return { clusterBits, version, extendedL2, lazyRefcounts, refcountBits, dataFile, backing, size, backingSize };
}

/** An offset/length pair inside [0, size): aligned to bytes, sectors, subclusters or clusters. */
function range(r: Rand, size: number, cs: number, sub: number, maxLen: number): [number, number] {
  const unit = pick(r, [1, 512, 512, sub, cs, cs]);
  const slots = Math.max(1, Math.floor(size / unit));
  const off = Math.min(size - 1, int(r, 0, slots - 1) * unit + (r() < 0.15 ? int(r, 0, 511) : 0));
  const lunit = pick(r, [1, 512, sub, cs, cs]);
  let len = int(r, 1, Math.max(1, Math.floor(maxLen / lunit))) * lunit + (r() < 0.1 ? int(r, 1, 700) : 0);
  if (r() < 0.05) len = 0;
  len = Math.min(len, size - off);
  return [off, len];
}

function qemuImgOpts(k: ImageKind): string {
  const o = [`cluster_size=${2 ** k.clusterBits}`, `compat=${k.version === 2 ? '0.10' : '1.1'}`];
  if (k.version === 3) o.push(`refcount_bits=${k.refcountBits}`);
  if (k.extendedL2) o.push('extended_l2=on');
  if (k.lazyRefcounts) o.push('lazy_refcounts=on');
  if (k.dataFile !== 'none') o.push('data_file=top.data');
  if (k.dataFile === 'raw') o.push('data_file_raw=on');
  return o.join(',');
}

/** Random data writes (as setup commands) to give an image some content. */
function fill(r: Rand, size: number, cs: number, n: number, compressed: boolean): string[] {
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    if (compressed && r() < 0.3 && size >= cs) {
      const c = int(r, 0, Math.floor(size / cs) - 1);
      out.push(`write -c -P ${int(r, 1, 255)} ${c * cs} ${cs}`);
    } else if (r() < 0.15) {
      const [o, l] = range(r, size, cs, cs, cs * 3);
      if (l > 0) out.push(`write -z ${o} ${l}`);
    } else {
      const [o, l] = range(r, size, cs, cs, cs * 3);
      if (l > 0) out.push(`write -P ${int(r, 1, 255)} ${o} ${l}`);
    }
  }
  return out;
}

function ioSetup(file: string, cmds: string[], fmt: string): string {
  if (cmds.length === 0) return '';
  // A failing setup command (say, a compressed write the image refuses) is part of the case.
  return `qemu-io -f ${fmt} ${cmds.map((c) => `-c '${c}'`).join(' ')} ${file} >/dev/null 2>&1 || true`;
}

/** Generates the session of `seed`. */
export function generateSession(seed: number): Session {
  const r = prng(seed);
  const kind = pickKind(r);
  const cs = 2 ** kind.clusterBits;
  const sub = kind.extendedL2 ? cs / 32 : cs;
  const setup: string[] = [];
  let backingOpt = '';
  if (kind.backing === 'raw') {
    setup.push(`qemu-img create -q -f raw base.raw ${kind.backingSize}`);
    setup.push(ioSetup('base.raw', fill(r, kind.backingSize, cs, int(r, 0, 5), false), 'raw'));
    backingOpt = '-b base.raw -F raw';
  } else if (kind.backing !== 'none') {
    const bcs = pick(r, [cs, cs, 512, 4096, 65536]);
    const bo = [`cluster_size=${kind.backing === 'qcow2-ext' ? Math.max(bcs, 16384) : bcs}`];
    if (kind.backing === 'qcow2-v2') bo.push('compat=0.10');
    if (kind.backing === 'qcow2-ext') bo.push('extended_l2=on');
    setup.push(`qemu-img create -q -f qcow2 -o ${bo.join(',')} base.qcow2 ${kind.backingSize}`);
    setup.push(ioSetup('base.qcow2', fill(r, kind.backingSize, bcs, int(r, 0, 6), true), 'qcow2'));
    backingOpt = '-b base.qcow2 -F qcow2';
  }
  setup.push(`qemu-img create -q -f qcow2 -o ${qemuImgOpts(kind)} ${backingOpt} ${TOP} ${kind.size}`);
  setup.push(ioSetup(TOP, fill(r, kind.size, cs, int(r, 0, 4), kind.dataFile === 'none'), 'qcow2'));

  const commands: string[] = [];
  let size = kind.size;
  const n = int(r, 3, 14);
  for (let i = 0; i < n; i++) {
    const x = r();
    const maxLen = pick(r, [sub, cs, cs * 2, cs * 5]);
    const [off, len] = range(r, size, cs, sub, maxLen);
    const p = int(r, 0, 255);
    if (x < 0.18) commands.push(`write -P ${p} ${off} ${len}`);
    else if (x < 0.34) commands.push(`write -z${r() < 0.5 ? ' -u' : ''} ${off} ${len}`);
    else if (x < 0.5) commands.push(`discard ${off} ${len}`);
    else if (x < 0.6) commands.push(`read -P ${pick(r, [0, 0, p])} ${off} ${len}`);
    else if (x < 0.64) {
      const a = Math.floor(len / 2);
      if (a > 0) commands.push(`readv -P 0 ${off} ${a} ${len - a}`);
      else commands.push(`readv ${off} ${Math.max(1, len)}`);
    } else if (x < 0.68) {
      const a = Math.floor(len / 3);
      if (a > 0) commands.push(`writev -P ${p} ${off} ${a} ${len - a}`);
    } else if (x < 0.72) {
      commands.push(`aio_write ${r() < 0.3 ? '-z' : `-P ${p}`} ${off} ${Math.max(1, len)}`);
      commands.push('aio_flush');
    } else if (x < 0.76) {
      const c = int(r, 0, Math.max(0, Math.floor(size / cs) - 1));
      const l = r() < 0.85 ? Math.min(cs, size - c * cs) : len;
      commands.push(`write -c -P ${p} ${r() < 0.85 ? c * cs : off} ${l}`);
    } else if (x < 0.82) commands.push('map');
    else if (x < 0.88) commands.push(`alloc ${off} ${Math.max(1, len)}`);
    else if (x < 0.91) commands.push('flush');
    else if (x < 0.96) {
      // Shrink or grow, mostly to sector multiples (qcow2 refuses others).
      const to = r() < 0.5 ? Math.max(512, Math.floor((size * r()) / 512) * 512) : size + int(r, 1, 3 * cs);
      const t = r() < 0.9 ? Math.ceil(to / 512) * 512 : to;
      commands.push(`truncate ${t}`);
      if (t % 512 === 0) size = t;
    } else commands.push(`write -P ${p} ${off} ${len}`);
  }
  commands.push('map');
  return { seed, kind, setup: setup.filter((s) => s !== ''), commands };
}

/** The shell line that reproduces a session with the real tools. */
export function reproduction(s: Session): string {
  return [...s.setup, `qemu-io -f qcow2 ${s.commands.map((c) => `-c '${c}'`).join(' ')} ${TOP}`].join('\n');
}

function sh(cmd: string, cwd: string): { code: number; out: string } {
  const r = spawnSync('sh', ['-c', cmd], { cwd, encoding: 'utf8', timeout: 60_000 });
  return { code: r.status ?? -1, out: (r.stdout ?? '') + (r.stderr ?? '') };
}

function qemuImg(args: string[], cwd: string): { code: number; out: string } {
  const r = spawnSync('qemu-img', args, { cwd, encoding: 'utf8', timeout: 60_000 });
  return { code: r.status ?? -1, out: (r.stdout ?? '') + (r.stderr ?? '') };
}

function mapOf(dir: string): string {
  return qemuImg(['map', '-U', '-f', 'qcow2', '--output=json', TOP], dir).out;
}

function checkOf(dir: string): string {
  return qemuImg(['check', '-U', '-f', 'qcow2', '--output=json', TOP], dir).out.replace(/"filename": "[^"]*"/, '"filename": "<f>"');
}

/**
 * Where host clusters land. QEMU hands a freed cluster out again at once,
 * while diskworker frees only once the L2 update that dropped it is on disk
 * (crash safety), so after a free the two may place later clusters
 * differently. That is compared apart from the rest (see SessionResult.layout).
 */
function maskLayout(text: string): string {
  try {
    // qemu-img leaves out fragmented-clusters when it is 0.
    const o = JSON.parse(text) as Record<string, unknown>;
    delete o['image-end-offset'];
    delete o['fragmented-clusters'];
    return JSON.stringify(o);
  } catch {
    return text;
  }
}


/**
 * A map without host layout: no host offsets (only whether there is one),
 * and data clusters never "zero". qemu-img says zero for data clusters whose
 * host range is a hole in the file (seen through its metadata preallocation
 * guess); Node cannot punch holes, so diskworker's files have none. Runs that
 * then agree are merged.
 */
function semanticMap(text: string): string {
  let entries: MapEntry[];
  try {
    entries = JSON.parse(text) as MapEntry[];
  } catch {
    return text;
  }
  const out: MapEntry[] = [];
  for (const e of entries) {
    const x: MapEntry = { start: e.start, length: e.length, depth: e.depth, present: e.present, zero: e.data ? false : e.zero, data: e.data };
    if (e.offset !== undefined) x.offset = -1;
    const last = out[out.length - 1];
    if (last && last.depth === x.depth && last.present === x.present && last.zero === x.zero && last.data === x.data && last.offset === x.offset) {
      last.length += x.length;
    } else out.push(x);
  }
  return out.map((e) => JSON.stringify(e)).join('\n');
}

/** What differed in one session. */
export interface SessionResult {
  /** Output, exit code, guest content, allocation (map without host offsets), check. */
  diffs: string[];
  /** Host offsets (and holes) in the map, image end offset and fragmentation only. */
  layout: string[];
}

/** Raw guest content of the top image (via qemu-img convert). */
function contentOf(dir: string): Buffer | string {
  const r = qemuImg(['convert', '-U', '-f', 'qcow2', '-O', 'raw', TOP, 'content.raw'], dir);
  if (r.code !== 0) return `convert failed: ${r.out}`;
  const b = readFileSync(join(dir, 'content.raw'));
  rmSync(join(dir, 'content.raw'));
  return b;
}

function firstDiff(a: Buffer, b: Buffer): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return n;
}

/** Runs a session through both tools; returns its discrepancies (empty when all matches). */
export async function runSession(s: Session): Promise<SessionResult> {
  const root = mkdtempSync(join(tmpdir(), 'dw-qio-'));
  try {
    const tpl = join(root, 'tpl');
    mkdirSync(tpl);
    const r = sh(s.setup.join(' && '), tpl);
    if (r.code !== 0) throw new Error(`setup failed (seed ${s.seed}):\n${s.setup.join('\n')}\n${r.out}`);
    const dq = join(root, 'q');
    const dd = join(root, 'd');
    cpSync(tpl, dq, { recursive: true });
    cpSync(tpl, dd, { recursive: true });
    const args = ['-f', 'qcow2', ...s.commands.flatMap((c) => ['-c', c]), TOP];
    const t = theirs('io', args, dq);
    const o = await ours('io', args, dd);
    const diffs: string[] = [];
    if (t.code !== o.code) diffs.push(`exit code: qemu-io ${t.code}, ours ${o.code}`);
    const lines = (x: string) => normalize(x).split('\n');
    const tl = lines(t.stdout);
    const ol = lines(o.stdout);
    for (let i = 0; i < Math.max(tl.length, ol.length); i++) {
      if (tl[i] !== ol[i]) {
        diffs.push(`stdout line ${i + 1}: qemu-io '${tl[i] ?? '<none>'}', ours '${ol[i] ?? '<none>'}'`);
        break;
      }
    }
    if (normalize(t.stderr) !== normalize(o.stderr)) diffs.push(`stderr: qemu-io '${normalize(t.stderr)}', ours '${normalize(o.stderr)}'`);
    if (s.kind.dataFile === 'none') {
      // Both images open from one directory: their backing and data file names are relative to them.
      const c = qemuImg(['compare', '-U', '-f', 'qcow2', '-F', 'qcow2', join(dq, TOP), join(dd, TOP)], root);
      if (c.code !== 0) diffs.push(`content: ${c.out.trim()}`);
    } else {
      // An external data file is found relative to the working directory: convert in each.
      const cq = contentOf(dq);
      const cd = contentOf(dd);
      if (typeof cq === 'string' || typeof cd === 'string') {
        if (cq !== cd) diffs.push(`content: qemu-io ${typeof cq === 'string' ? cq : 'ok'}, ours ${typeof cd === 'string' ? cd : 'ok'}`);
      } else if (cq.length !== cd.length || !cq.equals(cd)) {
        diffs.push(`content differs at ${firstDiff(cq, cd)} (sizes ${cq.length}, ${cd.length})`);
      }
    }
    const layout: string[] = [];
    const mq = mapOf(dq);
    const md = mapOf(dd);
    if (semanticMap(mq) !== semanticMap(md)) diffs.push(`map:\n--- qemu-io\n${mq}--- ours\n${md}`);
    else if (mq !== md) layout.push(`map host offsets:\n--- qemu-io\n${mq}--- ours\n${md}`);
    const kq = checkOf(dq);
    const kd = checkOf(dd);
    if (maskLayout(kq) !== maskLayout(kd)) diffs.push(`check:\n--- qemu-io\n${kq}--- ours\n${kd}`);
    else if (kq !== kd) layout.push(`check layout:\n--- qemu-io\n${kq}--- ours\n${kd}`);
    return { diffs, layout };
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

/** Outcome of a run of seeds: one report per failing seed, and the seeds whose host layout alone differed. */
export interface SeedsReport {
  failures: string[];
  layoutOnly: number[];
}

/** Runs the sessions of `seeds`; with `strictLayout`, host layout differences fail too. */
export async function runSeeds(seeds: number[], strictLayout = false): Promise<SeedsReport> {
  const failures: string[] = [];
  const layoutOnly: number[] = [];
  for (const seed of seeds) {
    const s = generateSession(seed);
    const r = await runSession(s);
    const bad = strictLayout ? [...r.diffs, ...r.layout] : r.diffs;
    if (bad.length > 0) failures.push(`seed ${seed}:\n${reproduction(s)}\n${bad.join('\n')}`);
    else if (r.layout.length > 0) layoutOnly.push(seed);
  }
  return { failures, layoutOnly };
}
