/**
 * The VMDK text descriptor, read the way QEMU 7.2 reads it: values are found
 * by searching the text for their name (the first occurrence wins, wherever
 * it is), extent lines are matched with scanf's rules, and the CID is
 * rewritten in place on the first write. Also the descriptor QEMU writes for
 * a new image, and the text probe.
 */
import { BlockError, einval } from '../../core/errors.js';

/** Bytes of the descriptor area QEMU reads for CIDs and the parent hint (20 sectors). */
export const DESC_SIZE = 20 * 512;
/** Most of a descriptor file QEMU reads at open (1 MiB - 1). */
export const DESC_READ_MAX = (1 << 20) - 1;

const decoder = new TextDecoder('latin1');

/** Bytes as text, one char per byte, up to the first NUL (C string semantics). */
export function cString(b: Uint8Array): string {
  const nul = b.indexOf(0);
  return decoder.decode(nul < 0 ? b : b.subarray(0, nul));
}

/** The text as bytes, one per char (latin1). */
export function latin1(s: string): Uint8Array {
  const b = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) b[i] = s.charCodeAt(i) & 0xff;
  return b;
}

/**
 * QEMU's vmdk_probe on text: comment lines and lines of spaces may come
 * first, then `version=1`, `2` or `3` on a line of its own (LF or CRLF).
 */
export function probeDescriptor(b: Uint8Array): boolean {
  const end = b.length;
  let p = 0;
  const at = (s: string): boolean => {
    if (end - p < s.length) return false;
    for (let i = 0; i < s.length; i++) if (b[p + i] !== s.charCodeAt(i)) return false;
    return true;
  };
  while (p < end) {
    if (b[p] === 0x23) {
      while (p < end && b[p] !== 0x0a) p++;
      p++;
      continue;
    }
    if (b[p] === 0x20) {
      while (p < end && b[p] === 0x20) p++;
      if (p < end && b[p] === 0x0d) p++;
      if (p === end || b[p] !== 0x0a) return false;
      p++;
      continue;
    }
    for (const v of ['1', '2', '3']) if (at(`version=${v}\n`) || at(`version=${v}\r\n`)) return true;
    return false;
  }
  return false;
}

/**
 * The value of `name="value"` (QEMU's vmdk_parse_description): the first
 * occurrence of the name anywhere, two characters skipped, up to the next
 * quote. undefined when there is none or the quote is missing.
 */
export function descriptionValue(text: string, name: string, maxLength: number): string | undefined {
  const at = text.indexOf(name);
  if (at < 0) return undefined;
  const from = at + name.length + 2;
  if (from >= text.length) return undefined;
  const close = text.indexOf('"', from);
  if (close < 0 || close - from + 1 > maxLength) return undefined;
  return text.slice(from, close);
}

/** A hex number as scanf's %x reads it (leading blanks, optional 0x), or undefined. */
function scanHex32(text: string, from: number): number | undefined {
  const m = /^[ \t\n\r\f\v]*([+-]?)(0[xX])?([0-9a-fA-F]+)/.exec(text.slice(from, from + 4096));
  if (!m) {
    // "0x" without digits reads as 0 in glibc.
    return /^[ \t\n\r\f\v]*[+-]?0[xX]/.test(text.slice(from, from + 64)) ? 0 : undefined;
  }
  let v = BigInt(`0x${m[3]}`);
  if (v > 0xffffffffn) v = 0xffffffffn;
  let n = Number(v);
  if (m[1] === '-') n = (-n) >>> 0;
  return n >>> 0;
}

/**
 * The CID (`parent` false) or parentCID from the descriptor area `area`
 * (DESC_SIZE bytes): the first "CID" / "parentCID" in the text, the
 * character after it skipped, then a hex number. EINVAL when missing.
 */
export function readCid(area: Uint8Array, parent: boolean): number {
  const text = cString(area.subarray(0, DESC_SIZE - 1));
  const name = parent ? 'parentCID' : 'CID';
  const at = text.indexOf(name);
  const v = at < 0 ? undefined : scanHex32(text, at + name.length + 1);
  if (v === undefined) {
    throw new BlockError('EINVAL', 'Invalid argument', {}, { detail: `no ${name} in the descriptor` });
  }
  return v;
}

/**
 * The descriptor area with a new CID, as QEMU's vmdk_write_cid makes it: the
 * text after the first "CID" and its separator replaced by the hex CID, a
 * newline and the text from "parentCID" on; the bytes after the new end
 * stay as they were. EINVAL when the text has no parentCID.
 */
export function withNewCid(area: Uint8Array, cid: number): Uint8Array {
  const out = area.slice(0, DESC_SIZE);
  out[DESC_SIZE - 1] = 0;
  const text = cString(out);
  const parentAt = text.indexOf('parentCID');
  if (parentAt < 0) throw new BlockError('EINVAL', 'Invalid argument', {}, { detail: 'no parentCID in the descriptor' });
  const tail = text.slice(parentAt);
  const cidAt = text.indexOf('CID');
  const start = cidAt + 4;
  let s = `${(cid >>> 0).toString(16)}\n`;
  // snprintf and pstrcat both stop one byte before the end of the area.
  s = (s + tail).slice(0, Math.max(0, DESC_SIZE - 1 - start));
  out.set(latin1(s), start);
  if (start + s.length < DESC_SIZE) out[start + s.length] = 0;
  return out;
}

/**
 * The parent hint (QEMU's vmdk_parent_open): the first "parentFileNameHint",
 * two characters skipped, up to the next quote. undefined when absent;
 * EINVAL (QEMU's bare "Invalid argument") when unterminated or too long.
 */
export function parentHint(area: Uint8Array): string | undefined {
  const text = cString(area.subarray(0, DESC_SIZE));
  const name = 'parentFileNameHint';
  const at = text.indexOf(name);
  if (at < 0) return undefined;
  const from = at + name.length + 2;
  const close = text.indexOf('"', from);
  if (close < 0) throw new BlockError('EINVAL', 'Invalid argument', {}, { detail: 'parentFileNameHint without a closing quote' });
  if (close - from > 4095) throw new BlockError('EINVAL', 'Invalid argument', {}, { detail: `parentFileNameHint of ${close - from} bytes` });
  return text.slice(Math.min(from, close), close);
}

/** One extent line as matched. */
export interface ExtentLine {
  access: string;
  sectors: number;
  type: string;
  filename: string;
  /** FLAT's start sector; -1 when the line has none. */
  flatOffset: number;
}

const isSpace = (c: string | undefined): boolean => c === ' ' || c === '\t' || c === '\n' || c === '\r' || c === '\f' || c === '\v';

/** A cursor over the text with scanf's conversions. */
class Scanner {
  constructor(
    private readonly s: string,
    public p: number,
  ) {}
  skipSpace(): void {
    while (isSpace(this.s[this.p])) this.p++;
  }
  /** %Ns: up to `max` non-blank characters after blanks. */
  word(max: number): string | undefined {
    this.skipSpace();
    const from = this.p;
    while (this.p < this.s.length && this.p - from < max && !isSpace(this.s[this.p])) this.p++;
    return this.p > from ? this.s.slice(from, this.p) : undefined;
  }
  /** %lld: a decimal number (saturating as strtoll). */
  int(): number | undefined {
    this.skipSpace();
    const m = /^[+-]?[0-9]+/.exec(this.s.slice(this.p, this.p + 400));
    if (!m) return undefined;
    this.p += m[0].length;
    let v = BigInt(m[0]);
    const max = 2n ** 63n - 1n;
    if (v > max) v = max;
    if (v < -max - 1n) v = -max - 1n;
    return Number(v);
  }
  /** A literal character (after blanks when `blanks`). */
  lit(c: string, blanks: boolean): boolean {
    if (blanks) this.skipSpace();
    if (this.s[this.p] !== c) return false;
    this.p++;
    return true;
  }
  /** %N[^\n\r"]. */
  name(max: number): string | undefined {
    const from = this.p;
    while (this.p < this.s.length && this.p - from < max && !'\n\r"'.includes(this.s[this.p]!)) this.p++;
    return this.p > from ? this.s.slice(from, this.p) : undefined;
  }
}

/**
 * Matches the text from `p` as QEMU's sscanf of an extent line:
 * `%10s %lld %10s "%511[^\n\r"]" %lld`. Returns how many conversions
 * matched and their values (scanf's blanks also cross line ends).
 */
export function scanExtentLine(text: string, p: number): { matches: number; line: ExtentLine } {
  const sc = new Scanner(text, p);
  const line: ExtentLine = { access: '', sectors: 0, type: '', filename: '', flatOffset: -1 };
  const access = sc.word(10);
  if (access === undefined) return { matches: 0, line };
  line.access = access;
  const sectors = sc.int();
  if (sectors === undefined) return { matches: 1, line };
  line.sectors = sectors;
  const type = sc.word(10);
  if (type === undefined) return { matches: 2, line };
  line.type = type;
  if (!sc.lit('"', true)) return { matches: 3, line };
  const name = sc.name(511);
  if (name === undefined) return { matches: 3, line };
  line.filename = name;
  if (!sc.lit('"', false)) return { matches: 4, line };
  const off = sc.int();
  if (off === undefined) return { matches: 4, line };
  line.flatOffset = off;
  return { matches: 5, line };
}

/** Extent types QEMU opens. */
export const EXTENT_TYPES = ['FLAT', 'SPARSE', 'VMFS', 'VMFSSPARSE', 'SESPARSE'] as const;

/**
 * The extent lines QEMU uses from descriptor `text`, in order: lines of RW
 * extents with a positive size and a known type. EINVAL "Invalid extent
 * line" (the line quoted) when one has the wrong number of fields.
 */
export function parseExtentLines(text: string): ExtentLine[] {
  const out: ExtentLine[] = [];
  let p = 0;
  while (p < text.length) {
    const nl = text.indexOf('\n', p);
    const next = nl < 0 ? text.length : nl + 1;
    const { matches, line } = scanExtentLine(text, p);
    if (matches >= 4 && line.access === 'RW') {
      let valid = true;
      if (line.type === 'FLAT') valid = matches === 5 && line.flatOffset >= 0;
      else if (line.type === 'VMFS') {
        valid = matches === 4;
        line.flatOffset = 0;
      } else valid = matches === 4;
      if (!valid) {
        const shown = text.slice(p, nl < 0 ? text.length : nl);
        throw einval(`Invalid extent line: ${shown}`);
      }
      if (line.sectors > 0 && (EXTENT_TYPES as readonly string[]).includes(line.type)) out.push(line);
    }
    p = next;
  }
  return out;
}

/** The create types QEMU opens from a descriptor file. */
export const DESCRIPTOR_CREATE_TYPES = ['monolithicFlat', 'vmfs', 'vmfsSparse', 'seSparse', 'twoGbMaxExtentSparse', 'twoGbMaxExtentFlat'];

/** What goes into a new image's descriptor (create). */
export interface NewDescriptor {
  cid: number;
  parentCid: number;
  createType: string;
  parentHint: string | undefined;
  extentLines: string[];
  hwVersion: string;
  cylinders: number;
  heads: number;
  adapterType: string;
  toolsVersion: string;
}

/** The descriptor text QEMU writes for a new image. */
export function descriptorText(d: NewDescriptor): string {
  const hex = (n: number) => (n >>> 0).toString(16);
  return (
    '# Disk DescriptorFile\n' +
    'version=1\n' +
    `CID=${hex(d.cid)}\n` +
    `parentCID=${hex(d.parentCid)}\n` +
    `createType="${d.createType}"\n` +
    (d.parentHint !== undefined ? `parentFileNameHint="${d.parentHint}"` : '') +
    '\n' +
    '# Extent description\n' +
    d.extentLines.join('') +
    '\n' +
    '# The Disk Data Base\n' +
    '#DDB\n' +
    '\n' +
    `ddb.virtualHWVersion = "${d.hwVersion}"\n` +
    `ddb.geometry.cylinders = "${d.cylinders}"\n` +
    `ddb.geometry.heads = "${d.heads}"\n` +
    'ddb.geometry.sectors = "63"\n' +
    `ddb.adapterType = "${d.adapterType}"\n` +
    `ddb.toolsVersion = "${d.toolsVersion}"\n`
  );
}
