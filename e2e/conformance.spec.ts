/**
 * Protocol conformance in Chromium: the case list of test/protocols/conformance-cases.ts
 * (the one Vitest runs over memory, null-co, node-file and blob) over OPFS, IndexedDB,
 * read-only HTTP and blob, inside a real dedicated worker, once with the WASM hot
 * paths and once with the TypeScript ones.
 */
import { test, expect } from '@playwright/test';
import { openHarness } from './helpers.js';
import type { CaseResult } from '../test/protocols/conformance-cases.js';
import type { HotPathState } from '../test/protocols/hot-paths.js';

/** The combinations that cannot run, each with the reason its target documents. */
const NOT_APPLICABLE = [
  'opfs: injected EIO',
  'idb: injected ENOSPC',
  'idb: injected EIO',
  'http: injected ENOSPC',
  'http: injected EIO',
  'blob: injected ENOSPC',
  'blob: injected EIO',
];

for (const mode of ['wasm', 'typescript'] as const) {
  test(`OPFS, IndexedDB, HTTP and blob conform (${mode} hot paths)`, async ({ page }) => {
    await openHarness(page);
    const r = (await page.evaluate((mode) => window.harness.conformance(mode), mode)) as {
      hotPaths?: HotPathState;
      results?: CaseResult[];
      error?: string;
    };
    expect(r.error).toBeUndefined();
    const want = mode === 'wasm' ? { zero: 'wasm', l2: 'wasm', refcount: 'wasm' } : { zero: 'plain JS', l2: 'typescript', refcount: 'typescript' };
    expect(r.hotPaths).toEqual(want);
    const results = r.results!;
    for (const x of results) console.log(`[${mode}] ${x.target.padEnd(5)} ${x.outcome.padEnd(4)} ${String(x.ms).padStart(5)} ms  ${x.case}${x.detail ? ` — ${x.detail}` : ''}`);
    // 11 cases on each of the 4 back ends.
    expect(results.length).toBe(44);
    expect(results.filter((x) => x.outcome === 'fail').map((x) => `${x.target}: ${x.case}: ${x.detail}`)).toEqual([]);
    expect(results.filter((x) => x.outcome === 'n/a').map((x) => `${x.target}: ${x.case}`)).toEqual(NOT_APPLICABLE);
  });
}
