#!/usr/bin/env node
// Long fuzz runs: `npm run fuzz -- [target...] [--seed N] [--count N]`.
// A target is a file name filter for test/**/*.fuzz.ts (e.g. `qemu-io`, `check`).
// Every failing case prints its seed; add it to the fixed seeds of the suite.
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const env = { ...process.env };
const targets = [];
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === '--seed' || a === '--count') {
    const v = args[++i];
    if (v === undefined || !/^[0-9]+$/.test(v)) {
      process.stderr.write(`fuzz: ${a} needs a non-negative integer, got '${v ?? ''}'\n`);
      process.exit(2);
    }
    env[a === '--seed' ? 'DW_FUZZ_SEED' : 'DW_FUZZ_COUNT'] = v;
  } else targets.push(a);
}
if (env.DW_FUZZ_SEED === undefined) env.DW_FUZZ_SEED = String(Date.now() % 1_000_000);
process.stdout.write(`[fuzz] seed ${env.DW_FUZZ_SEED}${env.DW_FUZZ_COUNT ? `, count ${env.DW_FUZZ_COUNT}` : ''}\n`);
const r = spawnSync('npx', ['vitest', 'run', '--config', 'vitest.fuzz.config.ts', ...targets], { cwd: root, stdio: 'inherit', env });
process.exit(r.status ?? 1);
