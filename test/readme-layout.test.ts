/**
 * The Layout table of README.md names only paths that exist, so a newcomer
 * who follows it never lands on a stale name. Every backticked path in the
 * table is checked: a token with a slash whose first folder is at the
 * repository root is taken from there; a bare name (`lookup.ts`, `qcow2/`,
 * `check*.ts`) must exist under a folder its row names. `*` must match at
 * least one entry, and a name ending in `/` must be a folder.
 */
import { describe, expect, it } from 'vitest';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { ROOT } from './readme-blocks.js';

/** One row of the table: its line in the file and the backticked tokens of each cell. */
interface LayoutRow {
  line: number;
  cells: string[][];
}

/** The rows of the table under `## Layout` (header and separator rows left out). */
function layoutRows(text: string): LayoutRow[] {
  const lines = text.split('\n');
  const start = lines.findIndex((l) => /^## Layout\s*$/.test(l));
  if (start < 0) throw new Error('README.md has no "## Layout" section');
  const rows: LayoutRow[] = [];
  for (let i = start + 1; i < lines.length && !/^## /.test(lines[i]!); i++) {
    const l = lines[i]!;
    if (!l.startsWith('|') || /^\|[-\s|]+\|$/.test(l) || /^\|\s*where\s*\|/.test(l)) continue;
    const cells = l.slice(1, l.trimEnd().length - 1).split('|');
    rows.push({ line: i + 1, cells: cells.map((c) => [...c.matchAll(/`([^`]+)`/g)].map((m) => m[1]!)) });
  }
  return rows;
}

/** Tokens that name files or folders (identifiers such as `Disk.write` and commands are not paths). */
function isPath(token: string): boolean {
  return !/\s/.test(token) && (token.includes('/') || /\.(ts|mts|js|mjs|json|md|html|css)$/.test(token));
}

/** Whether `token` (its first folder) starts at the repository root. */
function fromRoot(token: string): boolean {
  const first = token.split('/')[0]!;
  return token.includes('/') && first !== '' && existsSync(join(ROOT, first)) && statSync(join(ROOT, first)).isDirectory();
}

/** Entries matching `pattern` (path segments, `*` within one segment) from `dir`, down to `depth` folders. */
function matches(dir: string, pattern: string, depth = 4): string[] {
  const wantDir = pattern.endsWith('/');
  const segs = pattern.replace(/\/$/, '').split('/');
  const re = (s: string) => new RegExp(`^${s.split('*').map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('[^/]*')}$`);
  const out: string[] = [];
  const walk = (d: string, level: number) => {
    if (level > depth || !existsSync(d)) return;
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.name === 'node_modules' || e.name.startsWith('.')) continue;
      const full = join(d, e.name);
      const rel = full.slice(dir.length + 1).split('/');
      const tail = rel.slice(-segs.length);
      if (tail.length === segs.length && tail.every((s, i) => re(segs[i]!).test(s)) && (!wantDir || e.isDirectory())) out.push(full);
      if (e.isDirectory()) walk(full, level + 1);
    }
  };
  walk(dir, 0);
  return out;
}

/** The paths a table names that do not exist, as `README.md:line: token`. */
function missingPaths(text: string): string[] {
  const missing: string[] = [];
  for (const row of layoutRows(text)) {
    const tokens = row.cells.flat().filter(isPath);
    // Bare names are looked up under the root-level folders of the row and the folders of its files.
    const bases = new Set<string>();
    for (const t of tokens.filter(fromRoot)) bases.add(t.endsWith('/') ? resolve(ROOT, t) : dirname(resolve(ROOT, t)));
    for (const t of tokens) {
      const found = fromRoot(t)
        ? t.includes('*')
          ? matches(ROOT, t, t.split('/').length).length > 0
          : existsSync(join(ROOT, t)) && (!t.endsWith('/') || statSync(join(ROOT, t)).isDirectory())
        : [...bases].some((b) => matches(b, t).length > 0);
      if (!found) missing.push(`README.md:${row.line}: ${t}`);
    }
  }
  return missing;
}

const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');

describe('README.md Layout table', () => {
  it('names only paths that exist', () => {
    expect(layoutRows(readme).length).toBeGreaterThan(5);
    expect(missingPaths(readme)).toEqual([]);
  });

  it('reports a stale path, a bare name its row does not hold, a file named as a folder and a glob matching nothing', () => {
    const table = [
      '## Layout',
      '',
      '| where | what |',
      '|---|---|',
      '| `src/core/` | `driver.ts`, `no-such-file.ts`, `src/core/gone.ts`, `driver.ts/`, `nothing-*.ts`, `Disk.write` |',
      '',
      '## Next',
    ].join('\n');
    expect(missingPaths(table)).toEqual([
      'README.md:5: no-such-file.ts',
      'README.md:5: src/core/gone.ts',
      'README.md:5: driver.ts/',
      'README.md:5: nothing-*.ts',
    ]);
  });

  it('lets a newcomer find the driver contract, the qcow2 mapping walk and the request path', () => {
    const tokens = layoutRows(readme).flatMap((r) => r.cells.flat());
    for (const name of ['driver.ts', 'lookup.ts', 'request-path.ts']) expect(tokens).toContain(name);
  });

  it("traces a page's write to OPFS folder by folder, in order", () => {
    const row = layoutRows(readme).find((r) => r.cells[0]!.length === 0 && r.cells.flat().includes('src/protocols/opfs.ts'));
    expect(row, "a row tracing a page's write down to src/protocols/opfs.ts").toBeDefined();
    const paths = row!.cells.flat().filter(fromRoot);
    const order = ['src/client/', 'workers/', 'src/core/backend.ts', 'src/core/request-path.ts', 'src/formats/qcow2/', 'src/protocols/opfs.ts'];
    const at = order.map((p) => paths.findIndex((t) => t.startsWith(p)));
    expect(at.every((i) => i >= 0), `${order.join(' → ')} all named in ${paths.join(', ')}`).toBe(true);
    expect([...at].sort((a, b) => a - b)).toEqual(at);
  });
});
