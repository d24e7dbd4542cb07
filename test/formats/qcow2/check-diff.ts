/**
 * Differential fuzzing of check and open against qemu-img / qemu-io 7.2.
 *
 * A case is a seed: it makes a qcow2 image with qemu-img / qemu-io (varied
 * cluster size, refcount width, compat level, compressed / zero / discarded
 * clusters, snapshots, bitmaps), mutates one structure (a header field, a
 * header extension, an L1 / L2 entry, the refcount table or a refcount block,
 * the snapshot table, the bitmap directory, or truncates the file), then runs
 * the same commands through QEMU's tools and ours and lists every difference:
 * `check` (exit code, human output, `--output=json` counters), `check -r
 * leaks` / `-r all` (output, and the repaired files: qemu-img check and
 * compare of both), `info` (read-only open), `qemu-io -r -c read` and a
 * read-write open that writes. Shared by check-diff.test.ts (fixed seeds) and
 * check-diff.fuzz.ts (long runs).
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { prng } from '../../prng.js';
import { normalize, ours, theirs, type RunResult } from '../../cli/harness.js';

type Rnd = () => number;
const pick = <T>(r: Rnd, a: readonly T[]): T => a[Math.floor(r() * a.length)]!;
const int = (r: Rnd, n: number) => Math.floor(r() * n);

function sh(dir: string, cmd: string): void {
  const r = spawnSync('sh', ['-c', cmd], { cwd: dir, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`case setup failed: ${cmd}\n${r.stderr}`);
}

/** What a case made, for the report. */
export interface CaseInfo {
  seed: number;
  options: string;
  mutation: string;
}

/** Builds the base image `a.qcow2` in `dir`; returns its creation options. */
function buildImage(dir: string, r: Rnd): string {
  const cbits = pick(r, [9, 12, 12, 16, 16]);
  const cs = 2 ** cbits;
  const compat = pick(r, ['1.1', '1.1', '0.10']);
  const opts = [`cluster_size=${cs}`, `compat=${compat}`];
  if (compat === '1.1') {
    opts.push(`refcount_bits=${pick(r, [1, 4, 16, 16, 64])}`);
    if (r() < 0.2) opts.push('lazy_refcounts=on');
    if (cbits >= 14 && r() < 0.3) opts.push('extended_l2=on');
  }
  const size = pick(r, [1, 2, 4]) * 1024 * 1024;
  sh(dir, `qemu-img create -q -f qcow2 -o ${opts.join(',')} a.qcow2 ${size}`);
  const cmds: string[] = [];
  const n = 1 + int(r, 8);
  for (let i = 0; i < n; i++) {
    const off = int(r, size / cs) * cs;
    const len = Math.min(size - off, cs * (1 + int(r, 4)));
    const kind = r();
    if (kind < 0.45) cmds.push(`write -P ${1 + int(r, 250)} ${off + int(r, 2) * 512} ${Math.max(512, len - 512)}`);
    else if (kind < 0.7) cmds.push(`write -c -P ${1 + int(r, 250)} ${off} ${cs}`);
    else if (kind < 0.85) cmds.push(`write -z ${off} ${len}`);
    else cmds.push(`discard ${off} ${len}`);
  }
  // A compressed write over an allocated cluster fails in QEMU: the rest still runs.
  sh(dir, `qemu-io -f qcow2 ${cmds.map((c) => `-c '${c}'`).join(' ')} a.qcow2 >/dev/null 2>&1 || true`);
  // One-bit refcounts cannot count a cluster shared with a snapshot.
  const snap = r() < 0.3 && !opts.includes('refcount_bits=1');
  if (snap) {
    sh(dir, 'qemu-img snapshot -c s1 a.qcow2');
    sh(dir, `qemu-io -f qcow2 -c 'write -P 9 0 ${cs}' a.qcow2 >/dev/null`);
  }
  const bitmap = compat === '1.1' && r() < 0.2;
  if (bitmap) sh(dir, 'qemu-img bitmap --add a.qcow2 b0');
  return `${opts.join(',')} size=${size} io=[${cmds.join('; ')}]${snap ? ' +snapshot' : ''}${bitmap ? ' +bitmap' : ''}`;
}

interface Layout {
  cs: number;
  l1Off: number;
  l1Size: number;
  rtOff: number;
  rtClusters: number;
  nbSnap: number;
  snapOff: number;
  hdrLen: number;
  version: number;
}

function layout(b: Buffer): Layout {
  const version = b.readUInt32BE(4);
  return {
    cs: 2 ** b.readUInt32BE(20),
    l1Size: b.readUInt32BE(36),
    l1Off: Number(b.readBigUInt64BE(40)),
    rtOff: Number(b.readBigUInt64BE(48)),
    rtClusters: b.readUInt32BE(56),
    nbSnap: b.readUInt32BE(60),
    snapOff: Number(b.readBigUInt64BE(64)),
    hdrLen: version >= 3 ? b.readUInt32BE(100) : 72,
    version,
  };
}

/** Header fields: [offset, bytes, name]. */
const FIELDS: Array<[number, 4 | 8, string]> = [
  [4, 4, 'version'], [8, 8, 'backing_file_offset'], [16, 4, 'backing_file_size'], [20, 4, 'cluster_bits'],
  [24, 8, 'size'], [32, 4, 'crypt_method'], [36, 4, 'l1_size'], [40, 8, 'l1_table_offset'],
  [48, 8, 'refcount_table_offset'], [56, 4, 'refcount_table_clusters'], [60, 4, 'nb_snapshots'],
  [64, 8, 'snapshots_offset'], [72, 8, 'incompatible_features'], [80, 8, 'compatible_features'],
  [88, 8, 'autoclear_features'], [96, 4, 'refcount_order'], [100, 4, 'header_length'],
];

function entryAt(b: Buffer, off: number): bigint {
  return off + 8 <= b.length ? b.readBigUInt64BE(off) : 0n;
}

/** A value near the old one or at an edge. */
function fieldValue(r: Rnd, old: bigint, bytes: 4 | 8, cs: number): bigint {
  const max = bytes === 4 ? 0xffffffffn : 0xffffffffffffffffn;
  const k = r();
  if (k < 0.2) return 0n;
  if (k < 0.3) return max;
  if (k < 0.5) return (old + BigInt(pick(r, [1, -1, 8, -8, 512, cs, -cs, 2 * cs]))) & max;
  if (k < 0.7) return old ^ (1n << BigInt(int(r, bytes * 8)));
  if (k < 0.85) return BigInt(int(r, 64) * cs) & max;
  return BigInt(int(r, 0x100000)) & max;
}

/** Applies one mutation to `file`; returns its description. */
function mutate(file: string, r: Rnd): string {
  const b = readFileSync(file);
  const L = layout(b);
  const kinds = ['header', 'l1', 'l2', 'reftable', 'refblock', 'truncate', 'extension'];
  if (L.nbSnap > 0) kinds.push('snapshot');
  const kind = pick(r, kinds);
  let what = kind;
  const set64 = (off: number, v: bigint) => {
    if (off + 8 <= b.length) b.writeBigUInt64BE(v & 0xffffffffffffffffn, off);
  };
  switch (kind) {
    case 'header': {
      const [off, bytes, name] = pick(r, L.version >= 3 ? FIELDS : FIELDS.slice(0, 12));
      const old = bytes === 4 ? BigInt(b.readUInt32BE(off)) : b.readBigUInt64BE(off);
      const v = fieldValue(r, old, bytes, L.cs);
      if (bytes === 4) b.writeUInt32BE(Number(v), off);
      else b.writeBigUInt64BE(v, off);
      what = `${name}: ${old} -> ${v}`;
      break;
    }
    case 'l1':
    case 'l2': {
      const i = int(r, Math.max(1, L.l1Size));
      let at = L.l1Off + i * 8;
      if (kind === 'l2') {
        const l2 = Number(entryAt(b, at) & 0x00fffffffffffe00n);
        if (!l2 || l2 + L.cs > b.length) return mutate(file, r);
        at = l2 + int(r, L.cs / 8) * 8;
      }
      const old = entryAt(b, at);
      const bit = pick(r, [0, 1, 8, 9, 10, 16, 30, 40, 55, 56, 61, 62, 63, int(r, 64)]);
      const v = r() < 0.8 ? old ^ (1n << BigInt(bit)) : fieldValue(r, old, 8, L.cs);
      set64(at, v);
      what = `${kind} entry at 0x${at.toString(16)}: 0x${old.toString(16)} -> 0x${v.toString(16)}`;
      break;
    }
    case 'reftable': {
      const at = L.rtOff + int(r, Math.min(8, (L.rtClusters * L.cs) / 8)) * 8;
      const old = entryAt(b, at);
      const v = fieldValue(r, old, 8, L.cs);
      set64(at, v);
      what = `reftable entry at 0x${at.toString(16)}: 0x${old.toString(16)} -> 0x${v.toString(16)}`;
      break;
    }
    case 'refblock': {
      const rb = Number(entryAt(b, L.rtOff));
      if (!rb || rb + L.cs > b.length) return mutate(file, r);
      const at = rb + int(r, Math.min(L.cs, Math.ceil(b.length / L.cs) + 8));
      const old = b[at]!;
      b[at] = r() < 0.5 ? old ^ (1 << int(r, 8)) : int(r, 256);
      what = `refblock byte at 0x${at.toString(16)}: ${old} -> ${b[at]}`;
      break;
    }
    case 'snapshot': {
      const at = L.snapOff + pick(r, [0, 8, 12, 14, 16, 20, 24, 32, 36, 40, int(r, 64)]);
      if (at >= b.length) return mutate(file, r);
      const old = b[at]!;
      b[at] = old ^ (1 << int(r, 8));
      what = `snapshot table byte at 0x${at.toString(16)}: ${old} -> ${b[at]}`;
      break;
    }
    case 'extension': {
      const at = L.hdrLen + int(r, 48);
      const old = b[at]!;
      b[at] = old ^ (1 << int(r, 8));
      what = `header extension byte at 0x${at.toString(16)}: ${old} -> ${b[at]}`;
      break;
    }
    case 'truncate': {
      const len = pick(r, [int(r, b.length), Math.floor(b.length / L.cs) * L.cs - L.cs, b.length - int(r, L.cs) - 1, int(r, b.length / 512) * 512]);
      const n = Math.max(0, len);
      writeFileSync(file, b.subarray(0, n));
      return `truncate to ${n} of ${b.length}`;
    }
  }
  writeFileSync(file, b);
  return what;
}

class QemuTimeout extends Error {}

/** One difference between QEMU's answer and ours. */
export interface Difference {
  what: string;
  theirs: string;
  ours: string;
}

const show = (r: RunResult) => `exit ${r.code}\n${normalize(r.stdout)}${normalize(r.stderr)}`;

/** QEMU's messages are a prefix of ours: we may add the offending value in parentheses. */
function sameMessage(q: string, o: string): boolean {
  if (q === o) return true;
  const ql = q.split('\n');
  const ol = o.split('\n');
  if (ql.length !== ol.length) return false;
  return ql.every((l, i) => l === ol[i] || (ol[i]!.startsWith(l) && ol[i]!.slice(l.length).startsWith(' (')));
}

function compareRuns(diffs: Difference[], what: string, q: RunResult, o: RunResult, messages = true): void {
  const qs = show(q);
  const os = show(o);
  if (q.code !== o.code || (messages && !sameMessage(qs, os))) diffs.push({ what, theirs: qs, ours: os });
}

/** What a read-only open and a full read leave: success, or the error line. */
function readOutcome(r: RunResult): string {
  const lines = normalize(r.stdout + r.stderr).split('\n').filter((l) => l && !l.startsWith('<timing'));
  return `exit ${r.code}: ${lines.join(' | ')}`;
}

/** Same exit code and lines, timings aside, our messages possibly naming the value. */
function sameOutcome(q: RunResult, o: RunResult): boolean {
  return q.code === o.code && sameMessage(readOutcome(q).replace(/ \| /g, '\n'), readOutcome(o).replace(/ \| /g, '\n'));
}

/** Options of {@link runCase}. */
export interface CaseOptions {
  /** Also compare repairs (-r leaks, -r all). Default true. */
  repairs?: boolean;
  /** Also compare opens (info, read, write). Default true. */
  opens?: boolean;
}

/** Runs case `seed`; returns its description and every difference found. */
export async function runCase(seed: number, opt: CaseOptions = {}): Promise<{ info: CaseInfo; diffs: Difference[] }> {
  const r = prng(seed);
  const root = mkdtempSync(join(tmpdir(), 'dw-checkdiff-'));
  const diffs: Difference[] = [];
  try {
    const options = buildImage(root, r);
    const mutation = mutate(join(root, 'a.qcow2'), r);
    const info: CaseInfo = { seed, options, mutation };
    // Each side works on its own copy, under the same name.
    const qd = join(root, 'q');
    const od = join(root, 'o');
    mkdirSync(qd);
    mkdirSync(od);
    const fresh = () => {
      copyFileSync(join(root, 'a.qcow2'), join(qd, 'i.qcow2'));
      copyFileSync(join(root, 'a.qcow2'), join(od, 'i.qcow2'));
    };
    const both = async (tool: 'img' | 'io', args: string[]) => {
      fresh();
      const q = theirs(tool, args, qd);
      // QEMU took over a minute (e.g. tens of thousands of broken snapshot entries): no answer to compare.
      if (q.code === -1) throw new QemuTimeout();
      return { q, o: await ours(tool, args, od) };
    };
    let x = await both('img', ['check', 'i.qcow2']);
    compareRuns(diffs, 'check', x.q, x.o);
    x = await both('img', ['check', '--output=json', 'i.qcow2']);
    compareRuns(diffs, 'check --output=json', x.q, x.o);
    if (opt.repairs ?? true) {
      for (const mode of ['leaks', 'all']) {
        x = await both('img', ['check', '-r', mode, 'i.qcow2']);
        compareRuns(diffs, `check -r ${mode}`, x.q, x.o);
        if (x.q.code === x.o.code && x.q.code !== 1) compareRepaired(diffs, qd, od, mode);
      }
    }
    if (opt.opens ?? true) {
      const size = Number(readFileSync(join(root, 'a.qcow2')).readBigUInt64BE(24));
      x = await both('img', ['info', 'i.qcow2']);
      if (x.q.code !== x.o.code || (x.q.code !== 0 && !sameMessage(show(x.q), show(x.o)))) diffs.push({ what: 'info', theirs: show(x.q), ours: show(x.o) });
      if (x.q.code === 0 && size > 0 && size <= 64 * 1024 * 1024) {
        x = await both('io', ['-r', '-c', `read 0 ${size}`, 'i.qcow2']);
        if (!sameOutcome(x.q, x.o)) diffs.push({ what: `io -r read 0 ${size}`, theirs: readOutcome(x.q), ours: readOutcome(x.o) });
      }
      x = await both('io', ['-c', 'write 0 512', 'i.qcow2']);
      if (!sameOutcome(x.q, x.o)) diffs.push({ what: 'io write 0 512', theirs: readOutcome(x.q), ours: readOutcome(x.o) });
    }
    return { info, diffs };
  } catch (e) {
    if (e instanceof QemuTimeout) return { info: { seed, options: '', mutation: 'skipped: QEMU timed out' }, diffs: [] };
    throw e;
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

/** After a repair: qemu-img check of both results and their guest contents must agree. */
function compareRepaired(diffs: Difference[], qd: string, od: string, mode: string): void {
  const q = spawnSync('qemu-img', ['check', '--output=json', 'i.qcow2'], { cwd: qd, encoding: 'utf8' });
  const o = spawnSync('qemu-img', ['check', '--output=json', 'i.qcow2'], { cwd: od, encoding: 'utf8' });
  if (q.status !== o.status || q.stdout !== o.stdout) {
    diffs.push({ what: `qemu-img check after -r ${mode}`, theirs: `exit ${q.status}\n${q.stdout}${q.stderr}`, ours: `exit ${o.status}\n${o.stdout}${o.stderr}` });
  }
  const c = spawnSync('qemu-img', ['compare', '-U', join(qd, 'i.qcow2'), join(od, 'i.qcow2')], { encoding: 'utf8' });
  // Exit 1: contents differ; 2: a read failed (then qemu-img check has told the difference, if any).
  if (c.status === 1) diffs.push({ what: `contents after -r ${mode}`, theirs: '', ours: c.stdout + c.stderr });
}

/** A readable report of a case's differences. */
export function report(info: CaseInfo, diffs: Difference[]): string {
  return [`seed ${info.seed}: ${info.options}`, `  mutation: ${info.mutation}`, ...diffs.map((d) => `  ${d.what}:\n    qemu: ${d.theirs.replace(/\n/g, '\n          ')}\n    ours: ${d.ours.replace(/\n/g, '\n          ')}`)].join('\n');
}
