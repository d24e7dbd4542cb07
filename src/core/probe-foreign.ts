/**
 * Recognisers for image formats QEMU reads and we do not (yet): qcow (v1),
 * QED, parallels, bochs, cloop and dmg. Each scores
 * the first up to 512 bytes the way the QEMU driver's probe does, so that such
 * an image is refused by name instead of being opened as raw (which would
 * hand its metadata to the guest as data and let writes destroy it).
 */

/** A format we recognise but cannot open, with its probe. */
export interface ForeignFormat {
  /** The name qemu-img shows for it ("file format: vmdk"). */
  readonly name: string;
  /** 0 = not this format; the same scores QEMU's driver gives (100, or 2 for weak matches). */
  probe(buf: Uint8Array, filename?: string): number;
}

const ascii = (s: string): Uint8Array => Uint8Array.from(s, (c) => c.charCodeAt(0));

function startsWith(buf: Uint8Array, magic: Uint8Array, at = 0): boolean {
  if (buf.length < at + magic.length) return false;
  for (let i = 0; i < magic.length; i++) if (buf[at + i] !== magic[i]) return false;
  return true;
}

/** A NUL-terminated string at `at` equal to `s` (C strcmp on a fixed field). */
function cString(buf: Uint8Array, at: number, s: string): boolean {
  return startsWith(buf, ascii(s), at) && buf[at + s.length] === 0;
}

const u32be = (b: Uint8Array, at: number) => ((b[at]! << 24) | (b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!) >>> 0;
const u32le = (b: Uint8Array, at: number) => ((b[at + 3]! << 24) | (b[at + 2]! << 16) | (b[at + 1]! << 8) | b[at]!) >>> 0;

const QCOW_MAGIC = 0x514649fb;
/** sizeof(QCowHeader) of version 1. */
const QCOW1_HEADER = 48;
/** sizeof(QEDHeader). */
const QED_HEADER = 64;
const QED_MAGIC_LE = 0x00444551;
const PARALLELS_HEADER = 64;
const PARALLELS_MAGICS = [ascii('WithoutFreeSpace'), ascii('WithouFreSpacExt')];
const BOCHS_HEADER = 512;
const CLOOP_MAGIC = ascii('#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$0 && mount -r -t iso9660 /dev/cloop $1\n');

/** The formats, in QEMU's order of registration (ties keep the first). */
export const FOREIGN_FORMATS: readonly ForeignFormat[] = [
  { name: 'bochs', probe: (b) => (b.length >= BOCHS_HEADER && cString(b, 0, 'Bochs Virtual HD Image') && cString(b, 32, 'Redolog') && cString(b, 48, 'Growing') && (u32le(b, 64) === 0x20000 || u32le(b, 64) === 0x10000) ? 100 : 0) },
  {
    name: 'cloop',
    // QEMU compares only as many bytes as it was given: a short file that is a prefix matches.
    probe: (b) => (startsWith(b, CLOOP_MAGIC.subarray(0, Math.min(CLOOP_MAGIC.length, b.length))) ? 2 : 0),
  },
  { name: 'dmg', probe: (_b, filename) => (filename !== undefined && filename.length > 4 && filename.endsWith('.dmg') ? 2 : 0) },
  { name: 'parallels', probe: (b) => (b.length >= PARALLELS_HEADER && PARALLELS_MAGICS.some((m) => startsWith(b, m)) && u32le(b, 16) === 2 ? 100 : 0) },
  { name: 'qcow', probe: (b) => (b.length >= QCOW1_HEADER && u32be(b, 0) === QCOW_MAGIC && u32be(b, 4) === 1 ? 100 : 0) },
  { name: 'qed', probe: (b) => (b.length >= QED_HEADER && u32le(b, 0) === QED_MAGIC_LE ? 100 : 0) },
];
