/**
 * The VM panel's Linux guest: Debian's i386 kernel with a busybox initramfs
 * that mounts the disk (ext4) on /mnt and runs a shell on the serial port,
 * built from Debian packages by scripts/build-linux-guest.mjs and copied to
 * demo/public/linux by scripts/build-demo-assets.mjs. Its disk is a qcow2
 * overlay in OPFS over the root image served next to the page: the guest's
 * writes stay in the browser, the base is shared.
 */
import { LINUX_CMDLINE } from '../../e2e/harness/linux-cmdline.js';

const BASE = import.meta.env.BASE_URL;

/** The guest's RAM (as e2e/harness/linux-guest.ts boots it): the kernel and the page cache of a dd. */
export const LINUX_MEMORY = 128 << 20;

/** The base image's URL (absolute: an overlay's backing file must name it fully). */
export function linuxBaseUrl(): string {
  return new URL(`${BASE}linux/root.qcow2`, location.href).href;
}

/** The guest's virtual disk size, from the build's manifest. */
export async function linuxDiskSize(): Promise<number> {
  const res = await fetch(`${BASE}linux/manifest.json`);
  if (!res.ok) throw new Error(`linux/manifest.json is missing (HTTP ${res.status}): run node scripts/build-linux-guest.mjs, then node scripts/build-demo-assets.mjs`);
  const m = (await res.json()) as { sizes: { 'root.raw': number } };
  return m.sizes['root.raw'];
}

/**
 * The initramfs as a plain cpio. The file is gzip'd and is gunzipped here
 * (native code: much faster than in the emulated kernel) unless the browser
 * already did: Vite's servers send a .gz file with Content-Encoding: gzip.
 */
export async function linuxInitrd(): Promise<ArrayBuffer> {
  const res = await fetch(`${BASE}linux/initramfs.gz`);
  if (!res.ok) throw new Error(`linux/initramfs.gz is missing (HTTP ${res.status}): run node scripts/build-demo-assets.mjs`);
  const bytes = await res.arrayBuffer();
  const head = new Uint8Array(bytes, 0, Math.min(2, bytes.byteLength));
  if (head[0] !== 0x1f || head[1] !== 0x8b) return bytes;
  return new Response(new Blob([bytes]).stream().pipeThrough(new DecompressionStream('gzip'))).arrayBuffer();
}

/** The v86 options that boot the Linux guest (on top of the VM panel's BIOS, screen and hda). */
export async function linuxBootOptions(): Promise<Record<string, unknown>> {
  return { bzimage: { url: `${BASE}linux/vmlinuz` }, initrd: { buffer: await linuxInitrd() }, cmdline: LINUX_CMDLINE, memory_size: LINUX_MEMORY };
}

/** What a key press sends on the serial line (a terminal's bytes), or null. */
export function serialBytes(e: KeyboardEvent): string | null {
  if (e.ctrlKey && e.key.length === 1 && /[a-z]/i.test(e.key)) return String.fromCharCode(e.key.toUpperCase().charCodeAt(0) - 64);
  if (e.metaKey || e.altKey) return null;
  switch (e.key) {
    case 'Enter': return '\r';
    case 'Backspace': return '\x7f';
    case 'Tab': return '\t';
    case 'Escape': return '\x1b';
    case 'ArrowUp': return '\x1b[A';
    case 'ArrowDown': return '\x1b[B';
    case 'ArrowRight': return '\x1b[C';
    case 'ArrowLeft': return '\x1b[D';
    default: return e.key.length === 1 ? e.key : null;
  }
}

/**
 * Appends serial output to what a <pre> shows: backspace removes a character
 * (the shell echoes "\b \b"), carriage returns and terminal escape sequences
 * (busybox asks for the cursor position) are dropped. Keeps the last `keep` characters.
 */
export function appendSerial(shown: string, bytes: string, keep = 64 * 1024): string {
  let out = shown;
  const clean = bytes.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '').replace(/\r/g, '');
  for (const c of clean) out = c === '\b' ? out.slice(0, -1) : out + c;
  return out.length > keep ? out.slice(out.length - keep) : out;
}

/** Whether an image is an overlay of the served Linux root image (the VM panel then picks the Linux guest). */
export function isLinuxOverlay(backingFile: string | undefined): boolean {
  return !!backingFile && /\/linux\/root\.qcow2$/.test(backingFile);
}
