/**
 * Runs the benchmarks: every `bench/<group>/<name>.ts` that exports `run()`.
 * Results go to bench/results/<group>.json and a table on stdout.
 *
 *   npm run bench                 # everything
 *   npm run bench -- core qcow2   # only these groups
 */
import { readdirSync, writeFileSync, mkdirSync, statSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import os from 'node:os';
import type { BenchModule, BenchResult } from './types.js';

const here = dirname(fileURLToPath(import.meta.url));
const only = process.argv.slice(2);

const groups = readdirSync(here).filter((g) => {
  // results/ holds the output; research/ holds scripts run by hand (they are not benchmarks).
  if (g === 'results' || g === 'research') return false;
  if (!statSync(join(here, g)).isDirectory()) return false;
  return only.length === 0 || only.includes(g);
});

let failures = 0;
mkdirSync(join(here, 'results'), { recursive: true });
for (const group of groups) {
  const results: Array<BenchResult & { module: string }> = [];
  const files = readdirSync(join(here, group)).filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'));
  for (const file of files) {
    const mod = (await import(pathToFileURL(join(here, group, file)).href)) as Partial<BenchModule>;
    if (typeof mod.run !== 'function') continue;
    process.stdout.write(`\n== ${group}/${file}\n`);
    try {
      for (const r of await mod.run()) {
        results.push({ ...r, module: `${group}/${file}` });
        const verdict = r.target === undefined ? '' : r.ratio >= r.target ? ' ok' : ` BELOW TARGET ${r.target}`;
        process.stdout.write(
          `${r.name}: ${r.value.toFixed(1)} ${r.unit} vs ${r.baseline} ${r.baselineValue.toFixed(1)} ${r.unit} → ${r.ratio.toFixed(2)}×${verdict}\n`,
        );
      }
    } catch (e) {
      failures++;
      process.stdout.write(`FAILED: ${(e as Error).stack ?? String(e)}\n`);
    }
  }
  const out = {
    group,
    date: new Date().toISOString(),
    machine: { cpus: os.cpus().length, cpu: os.cpus()[0]?.model ?? '', node: process.version, platform: process.platform },
    results,
  };
  writeFileSync(join(here, 'results', `${group}.json`), JSON.stringify(out, null, 2) + '\n');
}
process.exit(failures > 0 ? 1 : 0);
