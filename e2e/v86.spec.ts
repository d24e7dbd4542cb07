/**
 * v86 boots a small boot program (e2e/fixtures/boot.asm, assembled with nasm
 * by the test server) from hda through toV86Buffer over an image in OPFS; the
 * guest reads and writes the disk, and the image holds its writes afterwards.
 */
import { test, expect } from '@playwright/test';
import { openHarness, imageFormat } from './helpers.js';

test('v86 boots from an OPFS image through the adapter and its writes persist', async ({ page }) => {
  test.setTimeout(120_000);
  await openHarness(page);
  const format = await imageFormat(page);
  const r = await page.evaluate(async (format) => {
    const h = window.harness;
    const dw = await h.start();
    const path = `opfs:/v86/hda.${format}`;
    // qcow2 gets a 4 GiB disk (past 2 GiB); raw stays small (its file has the full size).
    const size = format === 'qcow2' ? 4 * 1024 ** 3 : 8 << 20;
    await dw.create({ path, format: format as 'qcow2' | 'raw', size });
    const disk = await dw.open({ path });
    const boot = new Uint8Array(await (await fetch('/fixtures/boot.bin')).arrayBuffer());
    await disk.write(0, boot);
    const sector1 = h.pattern(77, 512);
    sector1.set(new TextEncoder().encode('SECTOR ONE DATA!'), 0);
    await disk.write(512, sector1.slice());
    await disk.flush();

    const hda = h.toV86Buffer(disk);
    // A far offset through the adapter itself (v86 works in 256-byte blocks).
    const far = size - 4096;
    await new Promise<void>((res) => hda.set(far, h.pattern(5, 512), () => res()));
    // Copied in the callback, as v86 does: the adapter reads into the buffer again afterwards.
    const farBack = await new Promise<Uint8Array>((res) => hda.get(far, 512, (d) => res(d.slice())));

    // What v86 asked of the adapter, in order, for the failure message.
    const trace: string[] = [];
    const t0 = performance.now();
    const stamp = () => (performance.now() - t0).toFixed(1);
    const get = hda.get.bind(hda);
    const set = hda.set.bind(hda);
    hda.get = (start, len, fn, o) => {
      trace.push(`${stamp()} get ${start}+${len} pending=${hda.pendingWrites}`);
      get(start, len, (data) => {
        trace.push(`${stamp()} got ${start}+${len} [${Array.from(data.subarray(0, 4)).join(',')}]`);
        fn(data);
      }, o);
    };
    hda.set = (start, data, fn) => {
      trace.push(`${stamp()} set ${start}+${data.length} [${Array.from(data.subarray(0, 4)).join(',')}]`);
      set(start, data, fn);
    };

    let serial = '';
    const emulator = new h.V86({
      wasm_path: h.v86WasmUrl,
      bios: { url: '/seabios/bios-256k.bin' },
      vga_bios: { url: '/seabios/vgabios-stdvga.bin' },
      hda: hda as never,
      memory_size: 32 << 20,
      vga_memory_size: 2 << 20,
      autostart: true,
      disable_keyboard: true,
      disable_mouse: true,
      disable_speaker: true,
    } as never);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`guest did not finish; serial so far: ${JSON.stringify(serial)}`)), 60_000);
      emulator.add_listener('serial0-output-byte', (byte: number) => {
        serial += String.fromCharCode(byte);
        if (serial.includes('DONE\n') || /FAIL[^\n]*\n/.test(serial)) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    emulator.stop();
    await hda.flush();
    await emulator.destroy?.();
    await disk.close();

    const again = await dw.open({ path });
    const sector2 = await again.read(1024, 512);
    const farAgain = await again.read(far, 512);
    await again.close();
    const expected = new Uint8Array(512);
    expected.set(new TextEncoder().encode('GUEST WROTE THIS'), 0);
    for (let i = 16; i < 512; i++) expected[i] = (sector1[i]! + 1) & 0xff;
    return {
      serial,
      sector2Diff: h.diff(sector2, expected),
      farOk: h.diff(farBack, h.pattern(5, 512)) === -1 && h.diff(farAgain, h.pattern(5, 512)) === -1,
      writeError: hda.writeError ? String(hda.writeError) : null,
      trace: trace.slice(-40).join('\n'),
    };
  }, format);
  expect(r.serial).toContain('BOOT OK');
  expect(r.serial).toContain('SECTOR1: SECTOR ONE DATA!');
  expect(r.serial, `adapter calls (last 40):\n${r.trace}`).toContain('DONE');
  expect(r.sector2Diff).toBe(-1);
  expect(r.farOk).toBe(true);
  expect(r.writeError).toBeNull();
});
