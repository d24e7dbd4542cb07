/**
 * Golden-test harness: runs one command line through the real qemu-img /
 * qemu-io 7.2 and through `diskworker img` / `diskworker io` (in-process), each
 * in its own copy of a fixture directory, and compares exit codes, stdout and
 * stderr after filtering timings, disk usage and the program-name prefix.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, copyFileSync, existsSync, mkdtempSync, openSync, rmSync, mkdirSync, readdirSync, statSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { main } from '../../src/cli/main.js';

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export type Tool = 'img' | 'io';

/** Writes big-endian `hex` (hex text, e.g. 'ffffffff') at `offset` of `file`: damages an image for a test. */
export function pokeHex(file: string, offset: number, hex: string): void {
  const fd = openSync(file, 'r+');
  try {
    writeSync(fd, Buffer.from(hex, 'hex'), 0, hex.length / 2, offset);
  } finally {
    closeSync(fd);
  }
}

export function hasQemu(): boolean {
  const r = spawnSync('qemu-img', ['--version'], { encoding: 'utf8' });
  return r.status === 0 && /version 7\.2/.test(r.stdout);
}

/** Runs the reference tool. */
export function theirs(tool: Tool, args: string[], cwd: string, input?: string): RunResult {
  const r = spawnSync(tool === 'img' ? 'qemu-img' : 'qemu-io', args, { cwd, encoding: 'utf8', input: input ?? '', timeout: 60_000 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** Runs diskworker in this process (cwd switched for the call). */
export async function ours(tool: Tool, args: string[], cwd: string, input?: string): Promise<RunResult> {
  let stdout = '';
  let stderr = '';
  const old = process.cwd();
  process.chdir(cwd);
  try {
    const lines = input !== undefined ? input.split('\n') : undefined;
    if (lines && lines[lines.length - 1] === '') lines.pop();
    const code = await main([tool, ...args], {
      stdout: (s) => void (stdout += s),
      stderr: (s) => void (stderr += s),
      ...(lines
        ? {
            stdin: async function* () {
              yield* lines;
            },
          }
        : {}),
    });
    return { code, stdout, stderr };
  } finally {
    process.chdir(old);
  }
}

/** Filters what legitimately differs: timings, disk usage, program names. */
export function normalize(text: string): string {
  return text
    .replace(/qemu-img: /g, 'diskworker img: ')
    .replace(/qemu-io: /g, 'diskworker io: ')
    .replace(/Try 'qemu-img --help'/g, "Try 'diskworker img --help'")
    .replace(/^[0-9.]+ (bytes|KiB|MiB|GiB|TiB), [0-9]+ ops; .*$/gm, '<timing>')
    .replace(/^[0-9]+,[0-9]+,[0-9]+:[0-9]{2}:[0-9]{2}\.[0-9]{2},[0-9.]+,[0-9.]+$/gm, '<timing -C>')
    .replace(/^Run completed in [0-9.]+ seconds\.$/gm, 'Run completed in <t> seconds.')
    .replace(/^disk size: .*$/gm, 'disk size: <n>')
    .replace(/"actual-size": [0-9]+/g, '"actual-size": <n>');
}

/**
 * Copies a fixture directory. Files are copied byte for byte, so a written
 * zero block stays allocated (a copy that punched them would change what
 * qemu-img map reports). Files that are mostly
 * holes (large empty images) are copied sparsely instead, or each run would
 * write gigabytes of zeros.
 */
function copyTree(from: string, to: string): void {
  mkdirSync(to, { recursive: true });
  for (const e of readdirSync(from, { withFileTypes: true })) {
    const src = join(from, e.name);
    const dst = join(to, e.name);
    if (e.isDirectory()) {
      copyTree(src, dst);
      continue;
    }
    const st = statSync(src);
    if (st.size > 64 << 20 && st.blocks * 512 < st.size / 4) {
      const r = spawnSync('cp', ['--sparse=always', src, dst], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`copying ${src} failed: ${r.stderr}`);
    } else {
      copyFileSync(src, dst);
    }
  }
}

/** A directory of images made by `build` (with the reference tools), copied per run. */
export class Fixture {
  readonly root: string;
  private readonly template: string;
  private n = 0;
  constructor(build: (dir: string, sh: (cmd: string) => void) => void) {
    this.root = mkdtempSync(join(tmpdir(), 'dw-cli-'));
    this.template = join(this.root, 'template');
    mkdirSync(this.template);
    const sh = (cmd: string) => {
      const r = spawnSync('sh', ['-c', cmd], { cwd: this.template, encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`fixture command failed: ${cmd}\n${r.stderr}`);
    };
    build(this.template, sh);
  }
  /** A fresh copy of the fixture. */
  copy(): string {
    const d = join(this.root, `run${this.n++}`);
    copyTree(this.template, d);
    return d;
  }
  dispose(): void {
    rmSync(this.root, { recursive: true, force: true });
  }
}

export interface GoldenCase {
  tool: Tool;
  args: string[];
  /** Text for the interactive prompt. */
  input?: string;
  /** After the run, these images must read the same in both directories. */
  sameImages?: string[];
  /**
   * Compare the images' allocation maps too (default true). Off where QEMU's
   * own layout varies from run to run (a mirror's parallel writes).
   */
  sameMaps?: boolean;
}

export interface GoldenOutcome {
  theirs: RunResult;
  ours: RunResult;
  /** Image comparison failures (qemu-img compare between the two runs' files). */
  imageDiffs: string[];
}

/** Runs both tools on fresh copies and returns normalized results. */
export async function golden(fx: Fixture, c: GoldenCase): Promise<GoldenOutcome> {
  const dq = fx.copy();
  const dd = fx.copy();
  const t = theirs(c.tool, c.args, dq, c.input);
  const o = await ours(c.tool, c.args, dd, c.input);
  const imageDiffs: string[] = [];
  for (const img of c.sameImages ?? []) {
    const r = spawnSync('qemu-img', ['compare', '-U', join(dq, img), join(dd, img)], { encoding: 'utf8' });
    if (r.status !== 0) imageDiffs.push(`${img}: ${r.stdout}${r.stderr}`);
    // Raw files: Node can neither punch holes nor see them, so only contents count.
    if (img.endsWith('.raw') || c.sameMaps === false) continue;
    const mq = spawnSync('qemu-img', ['map', '-U', '--output=json', join(dq, img)], { encoding: 'utf8' }).stdout.replace(/, "offset": [0-9]+/g, '');
    const md = spawnSync('qemu-img', ['map', '-U', '--output=json', join(dd, img)], { encoding: 'utf8' }).stdout.replace(/, "offset": [0-9]+/g, '');
    if (mq !== md) imageDiffs.push(`${img}: allocation map differs\n${mq}\n${md}`);
  }
  return {
    theirs: { code: t.code, stdout: normalize(t.stdout), stderr: normalize(t.stderr) },
    ours: { code: o.code, stdout: normalize(o.stdout), stderr: normalize(o.stderr) },
    imageDiffs,
  };
}

/** Splits a command line written as in a shell (single quotes group words). */
export function words(line: string): string[] {
  const out: string[] = [];
  const re = /'([^']*)'|(\S+)/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(line))) out.push(m[1] ?? m[2]!);
  return out;
}

/** The repository root and the built `diskworker` bin (dist/, made by `npm run build`). */
export const ROOT = resolve(__dirname, '../..');
export const BIN = join(ROOT, 'dist/cli/diskworker.js');

function newestMtime(dir: string): number {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newestMtime(p) : statSync(p).mtimeMs);
  }
  return t;
}

/** Builds dist/ when the bin is missing or older than src/ (tests of the real process). */
export function ensureBuiltBin(): void {
  if (!existsSync(BIN) || statSync(BIN).mtimeMs < newestMtime(join(ROOT, 'src'))) {
    // Other parts of the tree may not type-check yet; tsc still emits.
    spawnSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: ROOT, encoding: 'utf8' });
    spawnSync('node', ['scripts/copy-wasm.mjs'], { cwd: ROOT, encoding: 'utf8' });
    spawnSync('node', ['scripts/bundle-cli.mjs'], { cwd: ROOT, encoding: 'utf8' });
  }
}
