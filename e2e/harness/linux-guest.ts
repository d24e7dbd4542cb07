/**
 * Boots the Linux guest of scripts/build-linux-guest.mjs (served at /linux/)
 * in v86 with a given hda, and talks to its shell on the serial console.
 * Used by e2e/linux-guest.spec.ts and the browser bench.
 */
import { V86 } from 'v86';
import v86WasmUrl from 'v86/build/v86.wasm?url';

import { connectV86Flush, type V86DiskBuffer } from '../../src/client/index.js';
import { LINUX_CMDLINE } from './linux-cmdline.js';

export { LINUX_CMDLINE };

/**
 * The initramfs as a plain cpio: the file is gzip'd, and gunzipping it here
 * (native code) instead of in the emulated kernel saves tens of seconds of boot.
 */
async function initramfs(url: string): Promise<ArrayBuffer> {
  const res = await fetch(url);
  if (!res.ok || !res.body) throw new Error(`${url}: HTTP ${res.status}`);
  return new Response(res.body.pipeThrough(new DecompressionStream('gzip'))).arrayBuffer();
}

/** A running guest: its serial output so far, and a way to type commands. */
export interface LinuxGuest {
  /** Everything the guest wrote to ttyS0. */
  readonly serial: () => string;
  /** Milliseconds from start to the first shell prompt. */
  readonly bootMs: number;
  /** Types `cmd`, waits for its end, returns what it printed (between the markers) and its exit status. */
  run(cmd: string, timeoutMs?: number): Promise<{ out: string; status: number }>;
  /** Waits until the serial output (after `from`) contains `text`. */
  waitFor(text: string, timeoutMs: number, from?: number): Promise<void>;
  /** Types raw text on the serial line. */
  send(text: string): void;
  stop(): Promise<void>;
  /** The running emulator (for a V86Cdrom's attach). */
  readonly emulator: unknown;
}

export interface LinuxGuestOptions {
  /** What v86 gets as hda: toV86Buffer(disk), or { buffer: ArrayBuffer }. */
  hda: unknown;
  /**
   * Whether the guest's FLUSH CACHE waits for the toV86Buffer hda's flush()
   * (connectV86Flush; default true): without it a guest's sync stops at v86.
   */
  guestFlush?: boolean;
  memoryMiB?: number;
  cmdline?: string;
  /** Milliseconds to wait for the first prompt. */
  bootTimeoutMs?: number;
  /** What v86 gets as cdrom (a V86Cdrom's buffer): the guest sees /dev/sr0. */
  cdrom?: unknown;
}

let commandCount = 0;

/** Starts v86 on the guest's kernel and initramfs and waits for its shell prompt. */
export async function bootLinux(opts: LinuxGuestOptions): Promise<LinuxGuest> {
  let serial = '';
  const waiters = new Set<() => void>();
  const t0 = performance.now();
  const initrd = await initramfs('/linux/initramfs.gz');
  const emulator = new V86({
    wasm_path: v86WasmUrl,
    bios: { url: '/seabios/bios-256k.bin' },
    vga_bios: { url: '/seabios/vgabios-stdvga.bin' },
    bzimage: { url: '/linux/vmlinuz' },
    initrd: { buffer: initrd },
    cmdline: opts.cmdline ?? LINUX_CMDLINE,
    hda: opts.hda,
    ...(opts.cdrom !== undefined ? { cdrom: opts.cdrom } : {}),
    memory_size: (opts.memoryMiB ?? 128) << 20,
    vga_memory_size: 2 << 20,
    autostart: true,
    disable_keyboard: true,
    disable_mouse: true,
    disable_speaker: true,
  } as never);
  const hda = opts.hda as Partial<V86DiskBuffer>;
  if ((opts.guestFlush ?? true) && typeof hda.flush === 'function' && 'pendingWrites' in hda) connectV86Flush(emulator as never, hda as V86DiskBuffer);
  emulator.add_listener('serial0-output-byte', (byte: number) => {
    serial += String.fromCharCode(byte);
    for (const w of [...waiters]) w();
  });

  const waitFor = (text: string, timeoutMs: number, from = 0) =>
    new Promise<void>((resolve, reject) => {
      const check = () => {
        if (serial.indexOf(text, from) >= 0) {
          waiters.delete(check);
          clearTimeout(timer);
          resolve();
        }
      };
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`guest did not print ${JSON.stringify(text)} in ${timeoutMs} ms; serial tail: ${JSON.stringify(serial.slice(-1500))}`));
      }, timeoutMs);
      waiters.add(check);
      check();
    });

  await waitFor('LINUX-GUEST-READY', opts.bootTimeoutMs ?? 120_000);
  await waitFor('guest:', 30_000, serial.indexOf('LINUX-GUEST-READY'));
  const bootMs = performance.now() - t0;

  const send = (text: string) => emulator.serial0_send(text);
  return {
    serial: () => serial,
    bootMs,
    emulator,
    waitFor,
    send,
    async run(cmd, timeoutMs = 60_000) {
      // Markers built from pieces so the echoed command line does not match them.
      const n = ++commandCount;
      const from = serial.length;
      send(`echo "@@B""${n}@@"; ${cmd}; echo "@@E""${n} $?@@"\n`);
      await waitFor(`@@E${n} `, timeoutMs, from);
      const start = serial.indexOf(`@@B${n}@@`, from);
      const endAt = serial.indexOf(`@@E${n} `, from);
      const status = Number(/^@@E\d+ (\d+)@@/.exec(serial.slice(endAt))?.[1] ?? -1);
      const out = serial.slice(start + `@@B${n}@@`.length, endAt).replace(/\r/g, '').replace(/^\n/, '');
      return { out, status };
    },
    async stop() {
      emulator.stop();
      await emulator.destroy?.();
    },
  };
}
