/**
 * README.md's browser blocks (the ```ts blocks importing 'diskworker') run in
 * Chromium: test/readme.test.ts type-checks them, this spec runs them in the
 * harness page with the page API bound to the names they import. v86 is
 * replaced by a stand-in that keeps the options it gets, so the disk handed
 * to it as `hda` is read back through the adapter, and the events listened to.
 */
import { test, expect } from '@playwright/test';
import ts from 'typescript';
import { openHarness } from './helpers.js';
import { readmeBlocks, runtimeOf } from '../test/readme-blocks.js';

const browserBlocks = readmeBlocks().filter((b) => b.lang === 'ts' && runtimeOf(b) === 'browser');

/** The block as the body of an async function: imports dropped (their names become parameters), types stripped. */
function asFunctionBody(code: string): { names: string[]; js: string } {
  const names: string[] = [];
  const body = code.replace(/^\s*import\s*\{([^}]*)\}\s*from\s*['"][^'"]+['"];?\s*$/gm, (_m, list: string) => {
    names.push(...list.split(',').map((n) => n.trim()).filter((n) => n !== ''));
    return '';
  });
  if (/^\s*import\s/m.test(body)) throw new Error('a README browser block uses an import form this spec does not bind');
  const js = ts.transpileModule(`${body}\nexport {};`, { compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext } }).outputText;
  return { names, js: js.replace(/^export \{\};\s*$/m, '') };
}

test('README.md has browser blocks to run', () => {
  expect(browserBlocks.length).toBeGreaterThan(0);
});

for (const block of browserBlocks) {
  test(`README.md:${block.line} runs in Chromium`, async ({ page }) => {
    await openHarness(page);
    const { names, js } = asFunctionBody(block.code);
    const r = await page.evaluate(async ({ names, js }) => {
      const h = window.harness;
      let v86Options: { hda?: { byteLength: number; get(o: number, n: number, cb: (b: Uint8Array) => void): void } } | null = null;
      const listened: string[] = [];
      class V86StandIn {
        constructor(o: typeof v86Options) {
          v86Options = o;
        }
        // connectV86Flush waits for the emulator to load (a stand-in never does).
        add_listener(event: string) {
          listened.push(event);
        }
      }
      const bindings: Record<string, unknown> = { DiskWorker: h.DiskWorker, toV86Buffer: h.toV86Buffer, connectV86Flush: h.connectV86Flush, V86: V86StandIn };
      const missing = names.filter((n) => !(n in bindings));
      if (missing.length > 0) return { missing };
      const AsyncFunction = Object.getPrototypeOf(async () => undefined).constructor as new (...a: string[]) => (...v: unknown[]) => Promise<Record<string, unknown>>;
      // The block's own variables come back for checking.
      const run = new AsyncFunction(...names, `${js}\nreturn { dw, disk, data, buf };`);
      const out = await run(...names.map((n) => bindings[n]));
      const dw = out['dw'] as Awaited<ReturnType<typeof h.start>>;
      const disk = out['disk'] as Awaited<ReturnType<typeof dw.open>>;
      const data = out['data'] as Uint8Array;
      const buf = out['buf'] as Uint8Array;
      const hda = v86Options!.hda!;
      // Copied in the callback, as v86 does: the adapter reads into the buffer again afterwards.
      const sector = await new Promise<Uint8Array>((res) => hda.get(0, 512, (d) => res(d.slice())));
      const result = {
        missing,
        length: disk.length,
        hdaLength: hda.byteLength,
        dataAllAb: data.length === 4096 && data.every((v) => v === 0xab),
        bufLength: buf.length,
        bufHead: buf.subarray(0, 4096).every((v) => v === 0xab),
        bufTailZero: buf.subarray(4096).every((v) => v === 0),
        sectorAllAb: sector.every((v) => v === 0xab),
        listened,
      };
      await disk.close();
      await dw.remove(disk.path);
      dw.terminate();
      return result;
    }, { names, js });
    expect(r).toEqual({
      missing: [],
      length: 8 * 2 ** 30,
      hdaLength: 8 * 2 ** 30,
      dataAllAb: true,
      bufLength: 1 << 20,
      bufHead: true,
      bufTailZero: true,
      sectorAllAb: true,
      // The block connects the guest's flushes (connectV86Flush hooks the drive once v86 has loaded).
      listened: ['emulator-loaded'],
    });
  });
}
