/**
 * The demo bundles the qemu-io interpreter's core: nothing it imports, at any
 * depth, may statically import a Node module or the Node entry (src/node.ts),
 * and no file of it may touch `process`. Dynamic imports of Node modules are
 * allowed only where they sit behind a runtime check or in a function the core
 * never calls (the WASM loader, common.ts's readHostFile).
 */
import { describe, it, expect } from 'vitest';
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';

const ROOT = resolve(__dirname, '../..');
const ENTRIES = ['src/cli/io/session.ts', 'src/cli/io/commands/index.ts', 'src/cli/io/page-disk.ts', 'demo/src/console.ts'];

/** Every file reachable by relative imports from `entry` (type-only imports included). */
function closure(entry: string): { files: Set<string>; bare: Map<string, string>; dynamic: Map<string, string> } {
  const files = new Set<string>();
  const bare = new Map<string, string>();
  const dynamic = new Map<string, string>();
  const todo = [resolve(ROOT, entry)];
  while (todo.length) {
    const file = todo.pop()!;
    if (files.has(file)) continue;
    files.add(file);
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/(?:import|export)[^'"(]*?from\s+'([^']+)'|import\((?:\/\*[^*]*\*\/\s*)?'([^']+)'/g)) {
      const spec = (m[1] ?? m[2])!;
      if (!spec.startsWith('.')) {
        (m[1] ? bare : dynamic).set(spec, file.slice(ROOT.length + 1));
        continue;
      }
      todo.push(resolve(dirname(file), spec.replace(/\.js$/, '.ts')));
    }
  }
  return { files, bare, dynamic };
}

describe('the qemu-io core is page-safe', () => {
  for (const entry of ENTRIES) {
    it(entry, () => {
      const { files, bare, dynamic } = closure(entry);
      expect(files.size).toBeGreaterThan(3);
      const nodeModules = [...bare].filter(([spec]) => spec.startsWith('node:') || ['fs', 'path', 'os', 'child_process'].includes(spec));
      expect(nodeModules).toEqual([]);
      const dynamicNode = [...dynamic].filter(([spec]) => spec.startsWith('node:')).map(([, file]) => file);
      expect(dynamicNode.filter((f) => f !== 'src/wasm/loader.ts' && f !== 'src/cli/common.ts')).toEqual([]);
      const rel = [...files].map((f) => f.slice(ROOT.length + 1));
      expect(rel).not.toContain('src/node.ts');
      expect(rel).not.toContain('src/cli/io/node-session.ts');
      const usesProcess = rel.filter((f) => /\bprocess\.(kill|abort|exit|pid|env)\b/.test(readFileSync(resolve(ROOT, f), 'utf8')));
      expect(usesProcess).toEqual([]);
    });
  }
  it('sees the Node parts of the CLI entry (the check can fail)', () => {
    const { files, bare } = closure('src/cli/io/main.ts');
    expect([...bare.keys()]).toContain('node:fs/promises');
    expect([...files].map((f) => f.slice(ROOT.length + 1))).toContain('src/cli/io/commands/process.ts');
  });
});
