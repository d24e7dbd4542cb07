/**
 * Every fenced block of README.md is compiled and run, so the README cannot
 * drift from the code:
 * - ```ts blocks are type-checked with the TypeScript compiler against the
 *   sources ('diskworker', 'diskworker/node' mapped to src/ as package.json's
 *   "exports" map them to dist/); the ones that import 'diskworker/node' then
 *   run in a temporary directory. Browser blocks (importing 'diskworker') run
 *   in Chromium in e2e/readme.spec.ts.
 * - ```sh blocks: `npx diskworker img|io ...` lines run against qemu-img /
 *   qemu-io 7.2 on the same image (golden comparison); `npm start` / `npm
 *   test` (which would run this suite again) must name existing scripts.
 * Any other block, or a line no rule covers, fails the test: nothing is
 * skipped silently. The handling of each block is one test named after it.
 */
import { spawnSync } from 'node:child_process';
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import ts from 'typescript';
import { Fixture, golden, words } from './cli/harness.js';
import { PACKAGE_SOURCES, ROOT, importsOf, readmeBlocks, runtimeOf, shellLines, type ReadmeBlock } from './readme-blocks.js';

const blocks = readmeBlocks();
const tsBlocks = blocks.filter((b) => b.lang === 'ts');

/** Where block `b` lives for the compiler (inside the repo, so node_modules resolve). */
const virtualName = (b: ReadmeBlock) => join(ROOT, 'test', `readme-block-${b.index}.mts`);

/** Type-checks all TypeScript blocks in one program; diagnostics per block index. */
function typeCheck(list: ReadmeBlock[]): Map<number, string[]> {
  const parsed = ts.getParsedCommandLineOfConfigFile(join(ROOT, 'tsconfig.json'), {}, {
    ...ts.sys,
    onUnRecoverableConfigFileDiagnostic: (d) => {
      throw new Error(ts.flattenDiagnosticMessageText(d.messageText, '\n'));
    },
  });
  if (!parsed) throw new Error('tsconfig.json could not be read');
  const options: ts.CompilerOptions = {
    ...parsed.options,
    noEmit: true,
    baseUrl: ROOT,
    paths: Object.fromEntries(Object.entries(PACKAGE_SOURCES).map(([k, v]) => [k, [v]])),
  };
  const virtual = new Map(list.map((b) => [virtualName(b), b]));
  const host = ts.createCompilerHost(options);
  const { fileExists, readFile, getSourceFile } = host;
  host.fileExists = (f) => virtual.has(f) || fileExists.call(host, f);
  host.readFile = (f) => virtual.get(f)?.code ?? readFile.call(host, f);
  host.getSourceFile = (f, lang, ...rest) => {
    const b = virtual.get(f);
    return b ? ts.createSourceFile(f, b.code, lang, true) : getSourceFile.call(host, f, lang, ...rest);
  };
  const program = ts.createProgram([...virtual.keys()], options, host);
  const out = new Map<number, string[]>(list.map((b) => [b.index, []]));
  for (const d of ts.getPreEmitDiagnostics(program)) {
    const b = d.file ? virtual.get(d.file.fileName) : undefined;
    if (!b) continue;
    const { line } = d.file!.getLineAndCharacterOfPosition(d.start ?? 0);
    out.get(b.index)!.push(`README.md:${b.line + 1 + line}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`);
  }
  return out;
}

/** Runs a Node block as a module in `dir`, its package imports pointed at the sources. */
async function runNodeBlock(b: ReadmeBlock, dir: string): Promise<void> {
  let code = b.code;
  for (const spec of importsOf(b.code)) {
    const src = PACKAGE_SOURCES[spec];
    if (src) code = code.replaceAll(`'${spec}'`, JSON.stringify(join(ROOT, src)));
  }
  const file = join(dir, `readme-block-${b.index}.ts`);
  writeFileSync(file, code);
  const old = process.cwd();
  process.chdir(dir);
  try {
    await import(/* @vite-ignore */ pathToFileURL(file).href);
  } finally {
    process.chdir(old);
  }
}

describe('README.md code blocks', () => {
  it('has blocks, all of them ts or sh', () => {
    expect(tsBlocks.length).toBeGreaterThan(0);
    expect(blocks.filter((b) => b.lang !== 'ts' && b.lang !== 'sh').map((b) => `README.md:${b.line} (${b.lang || 'no language'})`)).toEqual([]);
  });

  describe('TypeScript', () => {
    let diagnostics: Map<number, string[]>;
    let dir: string;
    beforeAll(() => {
      diagnostics = typeCheck(tsBlocks);
      dir = mkdtempSync(join(tmpdir(), 'dw-readme-'));
    }, 120_000);
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    for (const b of tsBlocks) {
      const where = runtimeOf(b);
      const how = where === 'node' ? 'type-checks and runs in Node' : where === 'browser' ? 'type-checks (runs in Chromium: e2e/readme.spec.ts)' : 'imports no diskworker entry point (unhandled)';
      it(`README.md:${b.line} ${how}`, async () => {
        expect(where, 'a ts block must import diskworker or diskworker/node').not.toBeNull();
        expect(diagnostics.get(b.index)).toEqual([]);
        if (where === 'node') await runNodeBlock(b, dir);
      });
    }
  });

  describe('shell', () => {
    const scripts = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts;
    let fx: Fixture;
    beforeAll(() => {
      // The image the README's CLI lines name.
      fx = new Fixture((_dir, sh) => sh('qemu-img create -q -f qcow2 disk.qcow2 1G'));
    });
    afterAll(() => fx.dispose());

    for (const b of blocks.filter((x) => x.lang === 'sh')) {
      for (const line of shellLines(b)) {
        const npm = /^npm (start|test)$/.exec(line);
        const cli = /^npx diskworker (img|io) (.*)$/.exec(line);
        const fuzz = /^npm run fuzz -- (.*)$/.exec(line);
        const iotests = /^node scripts\/iotests\.mjs (.*)$/.exec(line);
        if (npm) {
          // Running them here would recurse into this suite (test) or serve forever (start).
          it(`README.md:${b.line} \`${line}\`: the script exists and its entry file too`, () => {
            const script = scripts[npm[1]!];
            expect(script).toBeDefined();
            const entry = /^node (\S+)/.exec(script!)?.[1];
            expect(entry && existsSync(join(ROOT, entry))).toBe(true);
          });
        } else if (cli) {
          it(`README.md:${b.line} \`${line}\` runs as ${cli[1] === 'img' ? 'qemu-img' : 'qemu-io'} does`, async () => {
            const g = await golden(fx, { tool: cli[1] as 'img' | 'io', args: words(cli[2]!), sameImages: ['disk.qcow2'] });
            expect(g.ours).toEqual(g.theirs);
            expect(g.ours.code).toBe(0);
            expect(g.imageDiffs).toEqual([]);
          });
        } else if (fuzz) {
          // The long run itself, cut to one case (through the script npm run fuzz calls after building).
          it(`README.md:${b.line} \`${line}\`: runs one case of the target`, () => {
            const args = fuzz[1]!.split(/\s+/).map((w, i, all) => (all[i - 1] === '--count' ? '1' : w));
            const r = spawnSync('node', ['scripts/fuzz.mjs', ...args], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
            expect(r.status, r.stdout + r.stderr).toBe(0);
            expect(r.stdout).toMatch(/1 passed/);
          }, 150_000);
        } else if (iotests) {
          // QEMU's iotests are not shipped: the runner must say what is missing and stop.
          it(`README.md:${b.line} \`${line}\`: the runner refuses a directory that is not QEMU's iotests, naming it`, () => {
            const r = spawnSync('node', ['scripts/iotests.mjs', ...words(iotests[1]!)], { cwd: ROOT, encoding: 'utf8' });
            expect(r.status).toBe(2);
            expect(r.stderr).toContain(`${words(iotests[1]!)[1]} has no common.rc`);
          });
        } else {
          it(`README.md:${b.line} \`${line}\` (no rule runs or checks this line)`, () => {
            expect.fail(`README.md:${b.line}: add a rule to test/readme.test.ts for: ${line}`);
          });
        }
      }
    }
  });
});
