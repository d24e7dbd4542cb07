/**
 * The decompression pool in the browser (src/wasm/decompress-workers.ts: Web
 * Workers started from a Blob URL inside the block worker): a zlib-compressed
 * qcow2 made by `qemu-img convert -c`, large enough that the pool starts,
 * imported as it is and read in 1 MiB pieces (16 compressed clusters each), reads
 * byte-identical to what qemu-img reads; the pool's worker shows up beside
 * the block worker.
 */
import { test, expect } from '@playwright/test';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openHarness, pickFiles, sh } from './helpers.js';

test('a zlib-compressed qcow2 decodes through the pool byte-identical to qemu-img', async ({ page }) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dw-pool-'));
  try {
    // 64 MiB of compressible data that differs from cluster to cluster: 1024 compressed clusters.
    const raw = Buffer.alloc(64 << 20);
    for (let c = 0; c < raw.length / 65536; c++) {
      const line = Buffer.from(`cluster ${c} of the pool test, ${'x'.repeat(c % 50)}\n`);
      for (let o = c * 65536; o < (c + 1) * 65536; o += line.length) line.copy(raw, o, 0, Math.min(line.length, (c + 1) * 65536 - o));
    }
    fs.writeFileSync(path.join(dir, 'src.raw'), raw);
    sh('qemu-img', ['convert', '-c', '-O', 'qcow2', '-o', 'compression_type=zlib', path.join(dir, 'src.raw'), path.join(dir, 'z.qcow2')]);
    const want = createHash('sha256').update(raw).digest('hex');
    await openHarness(page);
    await pickFiles(page, [path.join(dir, 'z.qcow2')]);
    const got = await page.evaluate(async () => {
      const h = window.harness;
      const dw = await h.start();
      const file = (document.querySelector('#picker') as HTMLInputElement).files![0]!;
      // Kept as it is: each 1 MiB read decodes a batch of 16 compressed clusters.
      await dw.importFile(file, { to: 'opfs:/pool/z.qcow2' });
      const disk = await dw.open({ path: 'opfs:/pool/z.qcow2', readOnly: true });
      const bytes = new Uint8Array(disk.length);
      for (let off = 0; off < disk.length; off += 1 << 20) bytes.set(await disk.read(off, 1 << 20), off);
      await disk.close();
      return Array.from(new Uint8Array(await crypto.subtle.digest('SHA-256', bytes)), (b) => b.toString(16).padStart(2, '0')).join('');
    });
    expect(got).toBe(want);
    // A decompression worker (started from a Blob URL after 32 batches) beside the block worker.
    expect(page.workers().some((w) => w.url().startsWith('blob:'))).toBe(true);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
