/**
 * The fenced code blocks of README.md and what each one needs to be checked:
 * shared by test/readme.test.ts (type-check, Node runs, shell lines) and
 * e2e/readme.spec.ts (browser blocks run in Chromium).
 */
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root (this file is loaded by Vitest and by Playwright, which has no __dirname). */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** One fenced block: its language tag, first line number (1-based) and text. */
export interface ReadmeBlock {
  index: number;
  lang: string;
  line: number;
  code: string;
}

/** Where the package's entry points live in the sources (package.json "exports"). */
export const PACKAGE_SOURCES: Record<string, string> = {
  diskworker: 'src/client/index.ts',
  'diskworker/node': 'src/node.ts',
  'diskworker/worker': 'workers/block-worker.ts',
};

/** Every fenced block of README.md; throws on a fence that is never closed. */
export function readmeBlocks(file = join(ROOT, 'README.md')): ReadmeBlock[] {
  const lines = readFileSync(file, 'utf8').split('\n');
  const out: ReadmeBlock[] = [];
  let open: { lang: string; line: number; body: string[] } | null = null;
  lines.forEach((text, i) => {
    const fence = /^\s*```\s*([A-Za-z0-9_+-]*)\s*$/.exec(text);
    if (!fence) {
      open?.body.push(text);
      return;
    }
    if (open) {
      if (fence[1]) throw new Error(`README.md:${i + 1}: a fence opens (${fence[1]}) inside the block from line ${open.line}`);
      out.push({ index: out.length, lang: open.lang, line: open.line, code: open.body.join('\n') });
      open = null;
    } else {
      open = { lang: fence[1] ?? '', line: i + 1, body: [] };
    }
  });
  if (open) throw new Error(`README.md:${(open as { line: number }).line}: the block is never closed`);
  return out;
}

/** The module specifiers a TypeScript block imports. */
export function importsOf(code: string): string[] {
  return [...code.matchAll(/^\s*import\s[^'"]*['"]([^'"]+)['"]/gm)].map((m) => m[1]!);
}

/** Where a block runs: 'node' (imports diskworker/node), 'browser' (imports diskworker), or null. */
export function runtimeOf(block: ReadmeBlock): 'node' | 'browser' | null {
  const specs = importsOf(block.code);
  if (specs.includes('diskworker')) return 'browser';
  if (specs.includes('diskworker/node')) return 'node';
  return null;
}

/** Shell lines of an sh block: comments and blank lines dropped. */
export function shellLines(block: ReadmeBlock): string[] {
  return block.code
    .split('\n')
    .map((l) => l.replace(/\s+#.*$/, '').replace(/^#.*$/, '').trim())
    .filter((l) => l !== '');
}
