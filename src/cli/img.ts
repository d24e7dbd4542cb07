/**
 * `diskworker img`: qemu-img's subcommands with its options, messages, output
 * and exit codes, over the DiskWorker block layer in Node.
 */
import { Buffer } from 'node:buffer';
import { BlockBackend } from '../core/backend.js';
import { BlockError } from '../core/errors.js';
import type { BlockGraph } from '../core/graph.js';
import { joinRelative } from '../core/graph.js';
import type { BlockNode } from '../core/node.js';
import { ReqFlag, Status, type CreateOptionSpec, type MeasureInfo, type PreallocMode } from '../core/driver.js';
import { blockStatus } from '../core/io.js';
import { blockStatusAbove, cowChild, isAllocatedAbove } from '../core/block-status.js';
import { OptionReader, parseKeyValueList } from '../core/options.js';
import { createImage } from '../core/create.js';
import { isZeroBuffer, setZeroDetector, zeroRunLength } from '../core/zero-detect.js';
import { loadZeroSync, ZeroBufferPool, type WasmZero } from '../wasm/zero.js';
import { Perm } from '../core/permissions.js';
import { createNodeGraph } from '../node.js';
import { getopt, type LongOption, type OptResult } from './getopt.js';
import { cFixed, hexAlt, parseSizeQemu, toQemuJson, type JsonValue } from './format.js';
import { boolValue, checkOptionValue, isHexWithSuffix, isValidOptionList, OptsError, parseOptionList } from './qemu-opts.js';
import { CliExit, type CliIo, errText, formatNode, needsProbeWarning, probedRawWarning, strerror, parseCacheMode, supportsCompressed } from './common.js';
import { convertTasks, readSources, type ConvertTask } from './convert-tasks.js';
import { dumpImageInfo, dumpSnapshots, type ImageInfo, type SnapshotJson } from './info-dump.js';

const PROG = 'diskworker img';
const IO_BUF_SIZE = 2 * 1024 * 1024;
const INT64_MAX = '9223372036854775807';
/** Convert's read buffers in flight at most: WINDOW reads queued + WRITE_DEPTH writes + one. */
const CONVERT_BUFFERS = 8 + 4 + 1;

/** The WASM zero module with convert's read buffers in its memory (made once per process). */
interface ZeroState {
  zero: WasmZero;
  detect: (buf: Uint8Array) => boolean;
  pool?: ZeroBufferPool;
}
let zeroState: ZeroState | undefined;

/**
 * The WASM zero module for this command, or undefined for the plain-JS path (no SIMD, the
 * module does not load, or DISKWORKER_ZERO=js). Installs its detector for isZeroBuffer
 * (3-8x the JS loop in Node, even with the copy into module memory: bench/wasm/zero.ts);
 * with `pool`, also allocates convert's read buffers in module memory, once, so the sparse
 * check reads them in place (bench/cli/convert-zero.ts).
 */
function useWasmZero(pool: boolean): ZeroState | undefined {
  let z: WasmZero | undefined;
  try {
    z = loadZeroSync();
  } catch {
    z = undefined;
  }
  if (!z) {
    setZeroDetector(undefined);
    return undefined;
  }
  zeroState ??= { zero: z, detect: z.detector() };
  if (pool) zeroState.pool ??= new ZeroBufferPool(z, CONVERT_BUFFERS, IO_BUF_SIZE);
  setZeroDetector(zeroState.detect);
  return zeroState;
}

/** error_exit: message, the "Try --help" line, exit 1. */
function errorExit(msg: string): never {
  throw new CliExit(1, msg, `Try '${PROG} --help' for more information\n`);
}

/** error_report + return 1. */
function fail(msg: string, code = 1, hint = ''): never {
  throw new CliExit(code, msg, hint);
}

class Ctx {
  readonly graph: BlockGraph = createNodeGraph();
  /** --image-opts: image names are key=value option strings. */
  imageOpts = false;
  private readonly backends: BlockBackend[] = [];
  constructor(readonly io: CliIo) {
    // Drivers' notices (qcow2's corruption events) go to stderr as QEMU prints them.
    this.graph.onNotice = (text) => io.stderr(`${text}\n`);
  }
  out(s: string): void {
    this.io.stdout(s);
  }
  /** error_report without ending the command. */
  report(msg: string): void {
    this.io.stderr(`${PROG}: ${msg}\n`);
  }
  warn(msg: string): void {
    this.io.stderr(`${PROG}: warning: ${msg}\n`);
  }

  /** img_open: opens an image, "Could not open '...': ..." on failure. */
  async open(
    filename: string,
    fmt: string | undefined,
    o: {
      readOnly?: boolean;
      noBacking?: boolean;
      forceShare?: boolean;
      cache?: string;
      code?: number;
      extra?: Record<string, unknown>;
      shared?: number;
      /** Open for check (QEMU's BDRV_O_CHECK): no repair of a dirty qcow2 image on open. */
      forCheck?: boolean;
    } = {},
  ): Promise<BlockBackend> {
    let spec: Record<string, unknown> = { filename, ...(o.extra ?? {}) };
    if (this.imageOpts) {
      if (fmt) fail('--image-opts and --format are mutually exclusive');
      try {
        spec = { ...parseKeyValueList(filename), ...(o.extra ?? {}) };
      } catch (e) {
        fail(errText(e));
      }
    }
    if (o.forceShare) spec['force-share'] = true;
    if (o.forCheck && !(o.readOnly ?? true) && (await this.formatOf(spec, fmt)) === 'qcow2') spec['x-check'] = true;
    if (o.cache) {
      const c = parseCacheMode(o.cache);
      if (c) {
        spec['cache.direct'] = c.direct;
        spec['cache.no-flush'] = c.noFlush;
      }
    }
    let bb: BlockBackend;
    try {
      if (!this.imageOpts) this.graph.checkProtocolName(filename);
      bb = await BlockBackend.open(
        this.graph,
        spec,
        { readOnly: o.readOnly ?? true, ...(fmt ? { format: fmt } : {}), ...(o.noBacking ? { noBacking: true } : {}) },
        { name: '', ...(o.shared !== undefined ? { shared: o.shared } : {}) },
      );
    } catch (e) {
      fail(`Could not open '${filename}': ${errText(e)}`, o.code ?? 1);
    }
    this.backends.push(bb);
    if (!(o.readOnly ?? true) && needsProbeWarning(bb.node)) this.io.stderr(probedRawWarning(filename));
    // What the open repaired (a dirty lazy-refcounts image), as QEMU prints it.
    for (const line of bb.node.instance.openMessages?.() ?? []) this.io.stderr(`${line}\n`);
    return bb;
  }

  /**
   * The format an open would use: the given one, else the probed one
   * (undefined if the image cannot be opened; the real open reports that).
   */
  private async formatOf(spec: Record<string, unknown>, fmt: string | undefined): Promise<string | undefined> {
    if (fmt) return fmt;
    if (typeof spec['driver'] === 'string') return spec['driver'];
    try {
      const node = await this.graph.open({ ...spec, 'force-share': true }, { readOnly: true, noBacking: true });
      const name = node.driver.name;
      await node.unref();
      return name;
    } catch {
      return undefined;
    }
  }

  async closeAll(): Promise<void> {
    for (const bb of this.backends.splice(0)) await bb.close().catch(() => undefined);
    await this.graph.closeAll().catch(() => undefined);
  }
}

/** Parses options, turning getopt errors into qemu-img's messages. */
function parseOpts(args: string[], spec: string, longs: LongOption[]): { opts: Array<Extract<OptResult, { kind: 'opt' }>>; operands: string[] } {
  const r = getopt(args, spec, [...longs, { name: 'help', hasArg: 0, val: 'h' }]);
  const opts: Array<Extract<OptResult, { kind: 'opt' }>> = [];
  for (const o of r.opts) {
    if (o.kind === 'unknown') errorExit(`unrecognized option '${o.written}'`);
    if (o.kind === 'missing') errorExit(`missing argument for option '${o.written}'`);
    if (o.kind === 'noarg') errorExit(`unrecognized option '${o.written}'`);
    if (o.kind === 'opt') opts.push(o);
  }
  return { opts, operands: r.operands };
}

/** qemu-img's cvtnum_full with its messages; throws CliExit on error. */
function cvtnum(name: string, value: string, min = 0, max = Number.MAX_SAFE_INTEGER, maxText?: string): number {
  const r = parseSizeQemu(value);
  if (!r.ok && r.reason === 'invalid') {
    fail(
      `Invalid ${name} specified. You may use k, M, G, T, P or E suffixes for`,
      1,
      `${PROG}: kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.\n`,
    );
  }
  if (!r.ok || r.value > max || r.value < min) {
    fail(`Invalid ${name} specified. Must be between ${min} and ${maxText ?? (max === Number.MAX_SAFE_INTEGER ? INT64_MAX : max)}.`);
  }
  return r.value;
}

function outputFormat(v: string): 'human' | 'json' {
  if (v === 'human' || v === 'json') return v;
  fail('--output must be used with human or json as argument.');
}

const COMMON_LONGS: LongOption[] = [
  { name: 'object', hasArg: 1, val: 'object' },
  { name: 'image-opts', hasArg: 0, val: 'image-opts' },
  { name: 'force-share', hasArg: 0, val: 'U' },
];

// ---------------------------------------------------------------------------
// Progress bar (qemu-progress)

class Progress {
  private current = 0;
  private last = 0;
  constructor(
    private readonly ctx: Ctx,
    private readonly enabled: boolean,
    private readonly minSkip = 1,
  ) {}
  /** max 0: set to `delta`; otherwise advance by delta% of max. */
  print(delta: number, max: number): void {
    let cur = max === 0 ? delta : this.current + (delta / 100) * max;
    if (cur > 100) cur = 100;
    this.current = cur;
    if (cur > this.last + this.minSkip || cur < this.last - this.minSkip || cur === 0 || cur === 100) {
      this.last = cur;
      if (this.enabled) this.ctx.out(`    (${cFixed(cur, 2)}/100%)\r`);
    }
  }
  end(): void {
    if (this.enabled) this.ctx.out('\n');
  }
}

// ---------------------------------------------------------------------------
// Helpers on nodes

function imageFilename(ctx: Ctx, node: BlockNode, fallback: string): string {
  const p = ctx.graph.protocolNodeOf(node);
  return p.filename || fallback;
}

async function allocatedSize(node: BlockNode): Promise<number | undefined> {
  if (node.instance.getAllocatedFileSize) {
    try {
      return await node.instance.getAllocatedFileSize();
    } catch {
      return undefined;
    }
  }
  let sum = 0;
  let any = false;
  for (const c of node.children) {
    if (c.name === 'backing') continue;
    const s = await allocatedSize(c.node);
    if (s !== undefined) {
      sum += s;
      any = true;
    }
  }
  return any ? sum : undefined;
}

async function imageInfo(ctx: Ctx, bb: BlockBackend, filename: string): Promise<ImageInfo> {
  const node = formatNode(bb.node);
  const inst = node.instance;
  const name = imageFilename(ctx, node, filename);
  const info: ImageInfo = { 'virtual-size': node.length, filename: name, format: node.driver.name };
  const gi = inst.getInfo?.();
  if (gi?.clusterSize) info['cluster-size'] = gi.clusterSize;
  const actual = await allocatedSize(node);
  if (actual !== undefined) info['actual-size'] = actual;
  info['dirty-flag'] = gi?.dirty ?? false;
  const bf = inst.backingFile?.();
  if (bf) {
    info['backing-filename'] = bf.filename;
    info['full-backing-filename'] = /^[a-zA-Z][a-zA-Z0-9+.-]*:/.test(bf.filename) || bf.filename.startsWith('json:') ? bf.filename : joinRelative(name, bf.filename);
    if (bf.format) info['backing-filename-format'] = bf.format;
  }
  const snaps = inst.snapshotList?.() ?? [];
  if (snaps.length > 0) {
    info.snapshots = snaps.map(snapshotJson);
  }
  const spec = inst.getSpecificInfo?.();
  if (spec) info['format-specific'] = { type: spec.type, data: spec.data };
  return info;
}

function snapshotJson(s: { id: string; name: string; vmStateSize: number; dateSec: number; dateNsec: number; vmClockNsec: number; icount?: number }): SnapshotJson {
  const j: SnapshotJson = {
    id: s.id,
    name: s.name,
    'vm-state-size': s.vmStateSize,
    'date-sec': s.dateSec,
    'date-nsec': s.dateNsec,
    'vm-clock-sec': Math.floor(s.vmClockNsec / 1e9),
    'vm-clock-nsec': s.vmClockNsec % 1e9,
  };
  if (s.icount !== undefined) j.icount = s.icount;
  return j;
}

/** Orders ImageInfo keys as QEMU's QAPI visitor inserts them, for JSON. */
function infoJson(info: ImageInfo): JsonValue {
  const order = ['filename', 'format', 'dirty-flag', 'actual-size', 'virtual-size', 'cluster-size', 'encrypted', 'compressed', 'backing-filename', 'full-backing-filename', 'backing-filename-format', 'snapshots', 'backing-image', 'format-specific'];
  const o: Record<string, JsonValue> = {};
  for (const k of order) {
    const v = (info as unknown as Record<string, JsonValue | undefined>)[k];
    if (v !== undefined) o[k] = v;
  }
  return o;
}

// ---------------------------------------------------------------------------
// info

async function cmdInfo(ctx: Ctx, args: string[]): Promise<number> {
  const { opts, operands } = parseOpts(args, 'f:hU', [
    { name: 'format', hasArg: 1, val: 'f' },
    { name: 'output', hasArg: 1, val: 'output' },
    { name: 'backing-chain', hasArg: 0, val: 'chain' },
    ...COMMON_LONGS,
  ]);
  let fmt: string | undefined;
  let output = 'human';
  let chain = false;
  let forceShare = false;
  for (const o of opts) {
    if (o.opt === 'h') return help(ctx);
    if (o.opt === 'f') fmt = o.arg;
    else if (o.opt === 'output') output = o.arg!;
    else if (o.opt === 'chain') chain = true;
    else if (o.opt === 'U') forceShare = true;
  }
  if (operands.length !== 1) errorExit('Expecting one image file name');
  const of = outputFormat(output);
  const list: ImageInfo[] = [];
  const seen = new Set<string>();
  let filename: string | undefined = operands[0]!;
  const imageOpts = ctx.imageOpts;
  try {
    while (filename !== undefined) {
      if (seen.has(filename)) fail(`Backing file '${filename}' creates an infinite loop.`);
      seen.add(filename);
      const bb = await ctx.open(filename, fmt, { readOnly: true, noBacking: true, forceShare });
      const info = await imageInfo(ctx, bb, filename);
      list.push(info);
      await bb.close();
      if (!chain) break;
      filename = info['full-backing-filename'];
      fmt = info['backing-filename-format'];
      // Only the first image is an option string; backing files are plain names.
      ctx.imageOpts = false;
    }
  } finally {
    ctx.imageOpts = imageOpts;
  }
  if (of === 'json') {
    ctx.out(toQemuJson(chain ? list.map(infoJson) : infoJson(list[0]!)) + '\n');
  } else {
    ctx.out(list.map(dumpImageInfo).join('\n'));
  }
  return 0;
}

// ---------------------------------------------------------------------------
// create and option help

function createOptionsFor(ctx: Ctx, fmt: string, filename?: string): { format: readonly CreateOptionSpec[]; proto: readonly CreateOptionSpec[] } {
  const drv = ctx.graph.getDriver(fmt);
  const proto = filename !== undefined ? ctx.graph.protocolFor(filename) : undefined;
  return { format: drv.createOptions ?? [], proto: proto && proto !== drv ? (proto.createOptions ?? []) : [] };
}

function typeLabel(t: CreateOptionSpec['type']): string {
  return t === 'size' ? 'size' : t === 'number' ? 'num' : t === 'bool' ? 'bool (on/off)' : 'str';
}

function optionHelpList(list: readonly CreateOptionSpec[]): string {
  return [...list]
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    .map((d) => `  ${`${d.name}=<${typeLabel(d.type)}>`.padEnd(22)} - ${d.help}\n`)
    .join('');
}

function printOptionHelp(ctx: Ctx, fmt: string, filename?: string): number {
  let drv;
  try {
    drv = ctx.graph.getDriver(fmt);
  } catch {
    fail(`Unknown file format '${fmt}'`);
  }
  if (!drv.create) fail(`Format driver '${fmt}' does not support image creation`);
  const { format, proto } = createOptionsFor(ctx, fmt, filename);
  if (filename !== undefined) {
    const merged = [...format];
    for (const p of proto) if (!merged.some((m) => m.name === p.name)) merged.push(p);
    ctx.out('Supported options:\n' + optionHelpList(merged));
  } else {
    ctx.out(`Supported ${fmt} options:\n`);
    ctx.out(optionHelpList(format));
    ctx.out('\nThe protocol level may support further options.\nSpecify the target filename to include those options.\n');
  }
  return 0;
}

function hasHelp(options: string | undefined): boolean {
  if (!options) return false;
  return options.split(',').some((p) => p === 'help' || p === '?');
}

/** The -o list as given plus qemu-img's own additions, validated against the drivers' option lists. */
function buildCreateOpts(
  ctx: Ctx,
  fmt: string,
  filename: string,
  optionText: string[],
): { specs: CreateOptionSpec[]; values: Map<string, string>; rereadWarnings: string[] } {
  const { format, proto } = createOptionsFor(ctx, fmt, filename);
  const specs = [...format];
  for (const p of proto) if (!specs.some((s) => s.name === p.name)) specs.push(p);
  const values = new Map<string, string>();
  const given = new Map<string, string>();
  for (const text of optionText) {
    // QemuOpts: bare keys are booleans, values are checked while parsing.
    for (const [k, v] of parseOptionList(text)) {
      const spec = specs.find((s) => s.name === k);
      if (!spec) throw new CliExit(1, `Invalid parameter '${k}'`);
      given.set(k, v);
      try {
        values.set(k, checkOptionValue(spec, v, (w) => ctx.warn(w)));
      } catch (e) {
        if (e instanceof OptsError) throw new CliExit(1, `${filename}: ${e.message}`, e.extra);
        throw e;
      }
    }
  }
  // QEMU reads size options again when the driver creates the image, and warns again.
  const rereadWarnings = [...given].filter(([k, v]) => specs.find((s) => s.name === k)?.type === 'size' && isHexWithSuffix(v))
    .map(([, v]) => `Using a multiplier suffix on hex numbers is deprecated: ${v}`);
  return { specs, values, rereadWarnings };
}

function escapeOpt(v: string): string {
  return v.replace(/,/g, ',,');
}

/** qemu_opts_print: the options line of "Formatting ...". */
function formatOptsLine(specs: CreateOptionSpec[], values: Map<string, string>, numeric: Set<string>): string {
  const parts: string[] = [];
  for (const d of specs) {
    const given = values.get(d.name);
    const v = given ?? d.default;
    if (v === undefined) continue;
    if (given !== undefined && (d.type === 'size' || d.type === 'number')) {
      const n = numeric.has(d.name) ? Number(given) : d.type === 'size' ? parseSizeQemu(given) : { ok: true as const, value: Number(given) };
      const num = typeof n === 'number' ? n : n.ok ? n.value : NaN;
      parts.push(`${d.name}=${Number.isNaN(num) ? given : num}`);
    } else if (d.type === 'string') {
      parts.push(`${d.name}=${escapeOpt(v)}`);
    } else {
      parts.push(`${d.name}=${v}`);
    }
  }
  return parts.join(' ');
}

function toCreateRecord(values: Map<string, string>): Record<string, string | number | boolean> {
  const o: Record<string, string | number | boolean> = {};
  for (const [k, v] of values) o[k] = v;
  return o;
}

async function cmdCreate(ctx: Ctx, args: string[]): Promise<number> {
  const { opts, operands } = parseOpts(args, 'F:b:f:ho:qu', [...COMMON_LONGS]);
  let fmt = 'raw';
  let base: string | undefined;
  let baseFmt: string | undefined;
  const options: string[] = [];
  let quiet = false;
  let unsafe = false;
  for (const o of opts) {
    switch (o.opt) {
      case 'h': return help(ctx);
      case 'F': baseFmt = o.arg; break;
      case 'b': base = o.arg; break;
      case 'f': fmt = o.arg!; break;
      case 'o':
        if (!isValidOptionList(o.arg!)) fail(`Invalid option list: ${o.arg}`);
        options.push(o.arg!);
        break;
      case 'q': quiet = true; break;
      case 'u': unsafe = true; break;
      default: break;
    }
  }
  if (operands.length < 1) {
    if (options.some((t) => hasHelp(t))) return printOptionHelp(ctx, fmt);
    errorExit('Expecting image file name');
  }
  const filename = operands[0]!;
  let imgSize: number | undefined;
  if (operands.length >= 2) {
    const r = parseSizeQemu(operands[1]!);
    if (!r.ok) {
      // QEMU 7.2's cvtnum range message (sizes past 2^53 cannot be held exactly here either).
      if (r.reason === 'range') fail('Invalid image size specified. Must be between 0 and 9223372036854775807.');
      fail(
        'Invalid image size specified. You may use k, M, G, T, P or E suffixes for',
        1,
        `${PROG}: kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.\n`,
      );
    }
    imgSize = r.value;
  }
  if (operands.length > 2) errorExit(`Unexpected argument: ${operands[2]}`);
  if (options.some((t) => hasHelp(t))) return printOptionHelp(ctx, fmt, filename);

  const prefix = `${filename}: `;
  let drv;
  try {
    drv = ctx.graph.getDriver(fmt);
  } catch {
    fail(`${prefix}Unknown file format '${fmt}'`);
  }
  if (drv.kind !== 'format' && drv.kind !== 'protocol') fail(`${prefix}Unknown file format '${fmt}'`);
  if (!drv.create) fail(`${prefix}Format driver '${fmt}' does not support image creation`);
  let built;
  try {
    built = buildCreateOpts(ctx, fmt, filename, options);
  } catch (e) {
    if (e instanceof CliExit) fail(`${prefix}${e.message.startsWith(prefix) ? e.message.slice(prefix.length) : e.message}`, e.exitCode, e.hint);
    throw e;
  }
  const { specs, values } = built;
  const numeric = new Set<string>();
  if (imgSize !== undefined && values.has('size')) fail(`${prefix}The image size must be specified only once`);
  if (imgSize !== undefined) {
    values.set('size', String(imgSize));
    numeric.add('size');
  }
  if (base !== undefined) {
    if (!specs.some((s) => s.name === 'backing_file')) fail(`${prefix}Backing file not supported for file format '${fmt}'`);
    values.set('backing_file', base);
  }
  if (baseFmt !== undefined) {
    if (!specs.some((s) => s.name === 'backing_fmt')) fail(`${prefix}Backing file format not supported for file format '${fmt}'`);
    values.set('backing_fmt', baseFmt);
  }
  const backingFile = values.get('backing_file');
  const backingFmt = values.get('backing_fmt');
  if (backingFile !== undefined) {
    if (backingFile === filename) fail(`${prefix}Error: Trying to create an image with the same filename as the backing file`);
    if (backingFile === '') fail(`${prefix}Expected backing file name, got empty string`);
  }
  let size: number | undefined;
  if (values.has('size')) {
    const r = parseSizeQemu(values.get('size')!);
    if (!r.ok) {
      fail(
        `${prefix}Parameter 'size' expects a non-negative number below 2^64`,
        1,
        'Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\nand exabytes, respectively.\n',
      );
    }
    size = r.value;
  }
  if (backingFile !== undefined && !unsafe) {
    const full = /^[a-zA-Z][a-zA-Z0-9+.-]*:/.test(backingFile) ? backingFile : joinRelative(filename, backingFile);
    let bb: BlockBackend;
    try {
      bb = await BlockBackend.open(ctx.graph, { filename: full, 'force-share': true }, { readOnly: true, ...(backingFmt ? { format: backingFmt } : {}) }, { name: '' });
    } catch (e) {
      fail(`${prefix}${errText(e)}`, 1, 'Could not open backing image.\n');
    }
    const detected = formatNode(bb.node).driver.name;
    const blen = bb.length;
    await bb.close();
    if (!backingFmt) fail(`${prefix}Backing file specified without backing format`, 1, `Detected format of ${detected}.`);
    if (size === undefined) {
      size = blen;
      values.set('size', String(blen));
      numeric.add('size');
    }
  } else if (backingFile !== undefined && !backingFmt) {
    fail(`${prefix}Backing file specified without backing format`);
  }
  if (size === undefined) fail(`${prefix}Image creation needs a size parameter`);
  if (!quiet) {
    ctx.out(`Formatting '${filename}', fmt=${fmt} ${formatOptsLine(specs, values, numeric)}\n`);
  }
  for (const w of built.rereadWarnings) ctx.warn(w);
  const record = toCreateRecord(values);
  record['size'] = size;
  // Booleans in QEMU's other spellings (yes, true, y, ...) reach the driver as on / off.
  for (const spec of specs) {
    const v = values.get(spec.name);
    if (spec.type === 'bool' && v !== undefined) record[spec.name] = boolValue(v) ?? v;
  }
  try {
    await createImage(ctx.graph, fmt, filename, record);
  } catch (e) {
    const err = e as { code?: string };
    if (err.code === 'EFBIG') {
      fail(`${prefix}The image size is too large for file format '${fmt}'${values.has('cluster_size') ? ' (try using a larger cluster size)' : ''}`);
    }
    fail(`${prefix}${errText(e)}`);
  }
  return 0;
}

function parseKeyValueListSafe(text: string): boolean {
  try {
    parseKeyValueList(text);
    return true;
  } catch {
    return hasHelp(text);
  }
}

// ---------------------------------------------------------------------------
// check

async function cmdCheck(ctx: Ctx, args: string[]): Promise<number> {
  const { opts, operands } = parseOpts(args, 'hf:r:T:qU', [
    { name: 'format', hasArg: 1, val: 'f' },
    { name: 'repair', hasArg: 1, val: 'r' },
    { name: 'output', hasArg: 1, val: 'output' },
    ...COMMON_LONGS,
  ]);
  let fmt: string | undefined;
  let output = 'human';
  let fixLeaks = false;
  let fixErrors = false;
  let quiet = false;
  let forceShare = false;
  let cache: string | undefined;
  for (const o of opts) {
    switch (o.opt) {
      case 'h': return help(ctx);
      case 'f': fmt = o.arg; break;
      case 'r':
        if (o.arg === 'leaks') fixLeaks = true;
        else if (o.arg === 'all') fixLeaks = fixErrors = true;
        else errorExit(`Unknown option value for -r (expecting 'leaks' or 'all'): ${o.arg}`);
        break;
      case 'output': output = o.arg!; break;
      case 'T': cache = o.arg; break;
      case 'q': quiet = true; break;
      case 'U': forceShare = true; break;
      default: break;
    }
  }
  if (operands.length !== 1) errorExit('Expecting one image file name');
  const of = outputFormat(output);
  if (cache && !parseCacheMode(cache)) fail(`Invalid source cache option: ${cache}`);
  const filename = operands[0]!;
  const fix = fixLeaks || fixErrors;
  const bb = await ctx.open(filename, fmt, { readOnly: !fix, forceShare, forCheck: true });
  const node = formatNode(bb.node);
  if (!node.instance.check) fail('This image format does not support checks', 63);
  const printLines = (lines: readonly string[]) => {
    for (const m of lines) ctx.io.stderr(m.endsWith('\n') ? m : m + '\n');
  };
  const run = async (doFix: boolean) => {
    let r;
    try {
      r = await node.instance.check!({ leaks: doFix && fixLeaks, errors: doFix && fixErrors });
    } catch (e) {
      // A check that stopped early still reports what it found.
      const lines = (e as { messages?: unknown }).messages;
      if (Array.isArray(lines)) printLines(lines as string[]);
      const reports = (e as { reports?: unknown }).reports;
      if (Array.isArray(reports)) for (const m of reports as string[]) ctx.report(m);
      throw e;
    }
    printLines(r.messages);
    return r;
  };
  let r;
  let ret = 0;
  try {
    r = await run(fix);
  } catch (e) {
    ret = -1;
    r = undefined;
    ctx.report(`Check failed: ${strerror(e)}`);
    return 1;
  }
  let leaksFixed = r.leaksFixed;
  let corruptionsFixed = r.corruptionsFixed;
  if (r.corruptionsFixed || r.leaksFixed) {
    if (of === 'human' && !quiet) {
      ctx.out(
        `The following inconsistencies were found and repaired:\n\n    ${r.leaksFixed} leaked clusters\n    ${r.corruptionsFixed} corruptions\n\nDouble checking the fixed image now...\n`,
      );
    }
    leaksFixed = r.leaksFixed;
    corruptionsFixed = r.corruptionsFixed;
    r = await run(false);
  }
  const fname = imageFilename(ctx, node, filename);
  if (ret === 0) {
    if (of === 'human') {
      if (!quiet) {
        let s = '';
        if (r.corruptions === 0 && r.leaks === 0 && r.checkErrors === 0) s += 'No errors were found on the image.\n';
        else {
          if (r.corruptions) s += `\n${r.corruptions} errors were found on the image.\nData may be corrupted, or further writes to the image may corrupt it.\n`;
          if (r.leaks) s += `\n${r.leaks} leaked clusters were found on the image.\nThis means waste of disk space, but no harm to data.\n`;
          if (r.checkErrors) s += `\n${r.checkErrors} internal errors have occurred during the check.\n`;
        }
        const total = r.totalClusters ?? 0;
        const alloc = r.allocatedClusters ?? 0;
        if (total !== 0 && alloc !== 0) {
          s += `${alloc}/${total} = ${cFixed((alloc * 100) / total, 2)}% allocated, ${cFixed(((r.fragmentedClusters ?? 0) * 100) / alloc, 2)}% fragmented, ${cFixed(((r.compressedClusters ?? 0) * 100) / alloc, 2)}% compressed clusters\n`;
        }
        if (r.imageEndOffset) s += `Image end offset: ${r.imageEndOffset}\n`;
        ctx.out(s);
      }
    } else {
      const j: Record<string, JsonValue> = { filename: fname, format: node.driver.name, 'check-errors': r.checkErrors };
      if (r.imageEndOffset) j['image-end-offset'] = r.imageEndOffset;
      if (r.corruptions) j['corruptions'] = r.corruptions;
      if (r.leaks) j['leaks'] = r.leaks;
      if (corruptionsFixed) j['corruptions-fixed'] = corruptionsFixed;
      if (leaksFixed) j['leaks-fixed'] = leaksFixed;
      if (r.totalClusters) j['total-clusters'] = r.totalClusters;
      if (r.allocatedClusters) j['allocated-clusters'] = r.allocatedClusters;
      if (r.fragmentedClusters) j['fragmented-clusters'] = r.fragmentedClusters;
      if (r.compressedClusters) j['compressed-clusters'] = r.compressedClusters;
      if (!quiet) ctx.out(toQemuJson(j) + '\n');
    }
  }
  if (r.checkErrors) {
    ctx.report('Check failed');
    return 1;
  }
  if (r.corruptions) return 2;
  if (r.leaks) return 3;
  return 0;
}

// ---------------------------------------------------------------------------
// map

interface MapEntry {
  start: number;
  length: number;
  data: boolean;
  zero: boolean;
  depth: number;
  present: boolean;
  offset?: number;
  filename?: string;
}

async function mapStatus(top: BlockNode, offset: number, bytes: number): Promise<MapEntry> {
  let n: BlockNode | undefined = top;
  let depth = 0;
  let st = { status: 0, pnum: bytes } as { status: number; pnum: number; map?: number; file?: BlockNode };
  for (;;) {
    while (n.driver.kind === 'filter' && n.filtered) n = n.filtered.node;
    st = await blockStatus(n, true, offset, bytes);
    bytes = st.pnum;
    if (st.status & (Status.ZERO | Status.DATA)) break;
    const next = cowChild(n);
    if (!next) {
      st = { ...st, status: 0 };
      break;
    }
    n = next;
    depth++;
  }
  const hasOffset = !!(st.status & Status.OFFSET_VALID) && st.map !== undefined;
  const e: MapEntry = {
    start: offset,
    length: st.pnum,
    data: !!(st.status & Status.DATA),
    zero: !!(st.status & Status.ZERO),
    depth,
    present: !!(st.status & Status.ALLOCATED),
  };
  if (hasOffset) {
    e.offset = st.map!;
    if (st.file) e.filename = st.file.filename;
  }
  return e;
}

function mergeable(c: MapEntry, n: MapEntry): boolean {
  if (c.length === 0) return false;
  if (c.zero !== n.zero || c.data !== n.data || c.depth !== n.depth || c.present !== n.present) return false;
  if ((c.filename !== undefined) !== (n.filename !== undefined) || (c.offset !== undefined) !== (n.offset !== undefined)) return false;
  if (c.filename !== undefined && c.filename !== n.filename) return false;
  if (c.offset !== undefined && c.offset + c.length !== n.offset) return false;
  return true;
}

async function cmdMap(ctx: Ctx, args: string[]): Promise<number> {
  const { opts, operands } = parseOpts(args, 'f:hU', [
    { name: 'format', hasArg: 1, val: 'f' },
    { name: 'output', hasArg: 1, val: 'output' },
    { name: 'start-offset', hasArg: 1, val: 's' },
    { name: 'max-length', hasArg: 1, val: 'l' },
    ...COMMON_LONGS,
  ]);
  let fmt: string | undefined;
  let output = 'human';
  let start = 0;
  let maxLen = -1;
  let forceShare = false;
  for (const o of opts) {
    switch (o.opt) {
      case 'h': return help(ctx);
      case 'f': fmt = o.arg; break;
      case 'output': output = o.arg!; break;
      case 's': start = cvtnum('start offset', o.arg!); break;
      case 'l': maxLen = cvtnum('max length', o.arg!); break;
      case 'U': forceShare = true; break;
      default: break;
    }
  }
  if (operands.length !== 1) errorExit('Expecting one image file name');
  const of = outputFormat(output);
  const filename = operands[0]!;
  const bb = await ctx.open(filename, fmt, { readOnly: true, forceShare });
  const top = bb.node;
  let length = bb.length;
  if (maxLen !== -1) length = Math.min(start + maxLen, length);
  let out = of === 'human' ? `${'Offset'.padEnd(16)}${'Length'.padEnd(16)}${'Mapped to'.padEnd(16)}File\n` : '[';
  const flushOut = () => {
    if (out.length > 65536) {
      ctx.out(out);
      out = '';
    }
  };
  const dump = (e: MapEntry, next: MapEntry | null) => {
    if (of === 'human') {
      if (e.data && e.offset === undefined) {
        ctx.out(out);
        out = '';
        fail('File contains external, encrypted or compressed clusters.');
      }
      if (e.data && !e.zero) {
        out += `${hexAlt(e.start).padEnd(16)}${hexAlt(e.length).padEnd(16)}${hexAlt(e.offset ?? 0).padEnd(16)}${e.filename ?? ''}\n`;
      }
      if (next && (!next.data || next.zero)) {
        next.data = false;
        next.zero = true;
      }
    } else {
      out += `{ "start": ${e.start}, "length": ${e.length}, "depth": ${e.depth}, "present": ${e.present}, "zero": ${e.zero}, "data": ${e.data}`;
      if (e.offset !== undefined) out += `, "offset": ${e.offset}`;
      out += '}';
      if (next) out += ',\n';
    }
    flushOut();
  };
  let curr: MapEntry = { start, length: 0, data: false, zero: false, depth: 0, present: false };
  while (curr.start + curr.length < length) {
    const offset = curr.start + curr.length;
    let next: MapEntry;
    try {
      next = await mapStatus(top, offset, length - offset);
    } catch (e) {
      ctx.out(out);
      fail(`Could not read file metadata: ${strerror(e)}`);
    }
    if (mergeable(curr, next)) {
      curr.length += next.length;
      continue;
    }
    if (curr.length > 0) dump(curr, next);
    curr = next;
  }
  dump(curr, null);
  if (of === 'json') out += ']\n';
  ctx.out(out);
  return 0;
}

// ---------------------------------------------------------------------------
// compare

const CMP_MASK = Status.DATA | Status.ZERO | Status.OFFSET_VALID | Status.ALLOCATED | Status.COMPRESSED;

function compareBuffers(a: Uint8Array, b: Uint8Array, bytes: number): { diff: boolean; pnum: number } {
  const sectEq = (i: number, len: number) => {
    for (let k = i; k < i + len; k++) if (a[k] !== b[k]) return false;
    return true;
  };
  let i = Math.min(bytes, 512);
  const res = !sectEq(0, i);
  while (i < bytes) {
    const len = Math.min(bytes - i, 512);
    if (!sectEq(i, len) !== res) break;
    i += len;
  }
  return { diff: res, pnum: i };
}

function findNonzero(buf: Uint8Array, n: number): number {
  for (let i = 0; i < n; i += 512) {
    if (!isZeroBuffer(buf.subarray(i, Math.min(n, i + 512)))) return i;
  }
  return -1;
}

async function cmdCompare(ctx: Ctx, args: string[]): Promise<number> {
  const { opts, operands } = parseOpts(args, 'hf:F:T:pqsU', [...COMMON_LONGS]);
  let fmt1: string | undefined;
  let fmt2: string | undefined;
  let progress = false;
  let quiet = false;
  let strict = false;
  let forceShare = false;
  let cache: string | undefined;
  for (const o of opts) {
    switch (o.opt) {
      case 'h': return help(ctx);
      case 'f': fmt1 = o.arg; break;
      case 'F': fmt2 = o.arg; break;
      case 'T': cache = o.arg; break;
      case 'p': progress = true; break;
      case 'q': quiet = true; break;
      case 's': strict = true; break;
      case 'U': forceShare = true; break;
      default: break;
    }
  }
  if (quiet) progress = false;
  if (operands.length !== 2) errorExit('Expecting two image file names');
  if (cache && !parseCacheMode(cache)) fail(`Invalid source cache option: ${cache}`, 2);
  const [f1, f2] = operands as [string, string];
  const qp = (s: string) => {
    if (!quiet) ctx.out(s);
  };
  const prog = new Progress(ctx, progress, 2.0);
  const bb1 = await ctx.open(f1, fmt1, { readOnly: true, forceShare, code: 2 });
  const bb2 = await ctx.open(f2, fmt2, { readOnly: true, forceShare, code: 2 });
  const n1 = bb1.node;
  const n2 = bb2.node;
  const size1 = bb1.length;
  const size2 = bb2.length;
  const total = Math.min(size1, size2);
  const progressBase = Math.max(size1, size2);
  const done = (code: number) => {
    prog.end();
    return code;
  };
  prog.print(0, 100);
  if (strict && size1 !== size2) {
    qp('Strict mode: Image size mismatch!\n');
    return done(1);
  }
  const checkEmpty = async (bb: BlockBackend, off: number, n: number, name: string): Promise<number> => {
    let buf: Uint8Array;
    try {
      buf = await bb.read(off, n);
    } catch (e) {
      ctx.report(`Error while reading offset ${off} of ${name}: ${strerror(e)}`);
      return 4;
    }
    const idx = findNonzero(buf, n);
    if (idx >= 0) {
      qp(`Content mismatch at offset ${off + idx}!\n`);
      return 1;
    }
    return 0;
  };
  let offset = 0;
  while (offset < total) {
    let s1, s2;
    try {
      s1 = await blockStatusAbove(n1, undefined, true, offset, size1 - offset);
    } catch {
      ctx.report(`Sector allocation test failed for ${f1}`);
      return done(3);
    }
    try {
      s2 = await blockStatusAbove(n2, undefined, true, offset, size2 - offset);
    } catch {
      ctx.report(`Sector allocation test failed for ${f2}`);
      return done(3);
    }
    const a1 = !!(s1.status & Status.ALLOCATED);
    const a2 = !!(s2.status & Status.ALLOCATED);
    let chunk = Math.min(s1.pnum, s2.pnum, total - offset);
    if (strict && (s1.status & CMP_MASK) !== (s2.status & CMP_MASK)) {
      qp(`Strict mode: Offset ${offset} block status mismatch!\n`);
      return done(1);
    }
    if (s1.status & Status.ZERO && s2.status & Status.ZERO) {
      // both zero
    } else if (a1 === a2) {
      if (a1) {
        chunk = Math.min(chunk, IO_BUF_SIZE);
        let b1: Uint8Array, b2: Uint8Array;
        try {
          b1 = await bb1.read(offset, chunk);
        } catch (e) {
          ctx.report(`Error while reading offset ${offset} of ${f1}: ${strerror(e)}`);
          return done(4);
        }
        try {
          b2 = await bb2.read(offset, chunk);
        } catch (e) {
          ctx.report(`Error while reading offset ${offset} of ${f2}: ${strerror(e)}`);
          return done(4);
        }
        const c = compareBuffers(b1, b2, chunk);
        if (c.diff || c.pnum !== chunk) {
          qp(`Content mismatch at offset ${offset + (c.diff ? 0 : c.pnum)}!\n`);
          return done(1);
        }
      }
    } else {
      chunk = Math.min(chunk, IO_BUF_SIZE);
      const r = a1 ? await checkEmpty(bb1, offset, chunk, f1) : await checkEmpty(bb2, offset, chunk, f2);
      if (r) return done(r);
    }
    offset += chunk;
    prog.print((chunk / progressBase) * 100, 100);
  }
  if (size1 !== size2) {
    qp('Warning: Image size mismatch!\n');
    const [bbOver, nOver, fOver] = size1 > size2 ? [bb1, n1, f1] : [bb2, n2, f2];
    while (offset < progressBase) {
      let st;
      try {
        st = await blockStatusAbove(nOver, undefined, true, offset, progressBase - offset);
      } catch {
        ctx.report(`Sector allocation test failed for ${fOver}`);
        return done(3);
      }
      let chunk = st.pnum;
      if (st.status & Status.ALLOCATED && !(st.status & Status.ZERO)) {
        chunk = Math.min(chunk, IO_BUF_SIZE);
        const r = await checkEmpty(bbOver, offset, chunk, fOver);
        if (r) return done(r);
      }
      offset += chunk;
      prog.print((chunk / progressBase) * 100, 100);
    }
  }
  qp('Images are identical.\n');
  return done(0);
}

// ---------------------------------------------------------------------------
// convert

const CONCAT_BACKING = 'Having a backing file for the target makes no sense when concatenating multiple input images';

async function cmdConvert(ctx: Ctx, args: string[]): Promise<number> {
  const { opts, operands } = parseOpts(args, 'hf:O:B:CcF:o:l:S:pt:T:qnm:WUr:', [
    { name: 'target-image-opts', hasArg: 0, val: 'tio' },
    { name: 'salvage', hasArg: 0, val: 'salvage' },
    { name: 'target-is-zero', hasArg: 0, val: 'tiz' },
    { name: 'bitmaps', hasArg: 0, val: 'bitmaps' },
    { name: 'skip-broken-bitmaps', hasArg: 0, val: 'skipbb' },
    ...COMMON_LONGS,
  ]);
  let fmt: string | undefined;
  let outFmt: string | undefined;
  let outBase: string | undefined;
  let backingFmt: string | undefined;
  let compress = false;
  const options: string[] = [];
  let minSparse = 8 * 512;
  let progress = false;
  let quiet = false;
  let skipCreate = false;
  let targetIsZero = false;
  let forceShare = false;
  // qemu-img convert writes with cache=unsafe unless told otherwise (no flushes).
  let targetCache = 'unsafe';
  for (const o of opts) {
    switch (o.opt) {
      case 'h': return help(ctx);
      case 'f': fmt = o.arg; break;
      case 'O': outFmt = o.arg; break;
      case 'B': outBase = o.arg; break;
      case 'F': backingFmt = o.arg; break;
      case 'c': compress = true; break;
      case 'o':
        if (!isValidOptionList(o.arg!)) fail(`Invalid option list: ${o.arg}`);
        options.push(o.arg!);
        break;
      case 'l': fail('Snapshots are not supported yet');
      case 'S': {
        const v = cvtnum('buffer size for sparse output', o.arg!);
        if (v % 512 || v / 512 > 32768) {
          fail('Invalid buffer size for sparse output specified. Valid sizes are multiples of 512 up to 16777216. Select 0 to disable sparse detection (fully allocates output).');
        }
        minSparse = v;
        break;
      }
      case 'p': progress = true; break;
      case 'q': quiet = true; break;
      case 'n': skipCreate = true; break;
      case 'm': {
        const n = Number(o.arg);
        if (!/^[0-9]+$/.test(o.arg!) || n < 1 || n > 16) fail('Invalid number of coroutines. Allowed number of coroutines is between 1 and 16');
        break;
      }
      case 'r': cvtnum('rate limit', o.arg!); break;
      case 't':
        if (!parseCacheMode(o.arg!)) fail(`Invalid cache option: ${o.arg}`);
        targetCache = o.arg!;
        break;
      case 'T':
        if (!parseCacheMode(o.arg!)) fail(`Invalid source cache option: ${o.arg}`);
        break;
      case 'U': forceShare = true; break;
      case 'tiz': targetIsZero = true; break;
      case 'bitmaps': fail('Converting bitmaps is not supported yet');
      default: break;
    }
  }
  if (quiet) progress = false;
  const wz = useWasmZero(true);
  if (targetIsZero && !skipCreate) fail('--target-is-zero requires use of -n flag');
  const srcNames = operands.slice(0, -1);
  const outFilename = operands.length >= 2 ? operands[operands.length - 1]! : undefined;
  if (options.some(hasHelp)) return printOptionHelp(ctx, outFmt ?? 'raw', outFilename);
  if (!outFilename) fail('Must specify image file name');
  if (skipCreate && options.length > 0) fail('-o has no effect when skipping image creation');
  const prog = new Progress(ctx, progress, 1.0);

  const srcs: BlockBackend[] = [];
  for (const name of srcNames) srcs.push(await ctx.open(name, fmt, { readOnly: true, forceShare }));
  const sizes = srcs.map((b) => b.length);
  const total = sizes.reduce((a, b) => a + b, 0);

  const targetFmt = outFmt ?? 'raw';
  if (!skipCreate) {
    let drv;
    try {
      drv = ctx.graph.getDriver(targetFmt);
    } catch {
      fail(`Unknown file format '${targetFmt}'`);
    }
    if (!drv.create) fail(`Format driver '${targetFmt}' does not support image creation`);
    let built;
    try {
      built = buildCreateOpts(ctx, targetFmt, outFilename, options);
    } catch (e) {
      // convert prints option errors without the file name (create prefixes it).
      const lead = `${outFilename}: `;
      if (e instanceof CliExit && e.message.startsWith(lead)) fail(e.message.slice(lead.length), e.exitCode, e.hint);
      throw e;
    }
    const { specs, values } = built;
    values.set('size', String(total));
    if (outBase !== undefined) {
      if (!specs.some((s) => s.name === 'backing_file')) fail(`Backing file not supported for file format '${targetFmt}'`);
      values.set('backing_file', outBase);
      if (backingFmt) values.set('backing_fmt', backingFmt);
    }
    if (srcs.length > 1 && values.has('backing_file')) fail(CONCAT_BACKING);
    // -B or -o backing_file: the format must be given too (-F or -o backing_fmt), as in QEMU 7.2.
    if (values.has('backing_file') && !values.has('backing_fmt')) fail('Use of backing file requires explicit backing format');
    if (values.has('backing_file') && outBase === undefined) {
      outBase = values.get('backing_file');
    }
    const rec = toCreateRecord(values);
    rec['size'] = total;
    try {
      await createImage(ctx.graph, targetFmt, outFilename, rec);
    } catch (e) {
      fail(`${outFilename}: error while converting ${targetFmt}: ${errText(e)}`);
    }
  }
  if (skipCreate && srcs.length > 1 && outBase !== undefined) fail(CONCAT_BACKING);
  const target = await ctx.open(outFilename, skipCreate ? outFmt : targetFmt, { readOnly: false, cache: targetCache });
  const tnode = formatNode(target.node);
  if (compress && !supportsCompressed(tnode)) {
    fail('Compression not supported for this file format');
  }
  if (skipCreate && target.length < total) {
    fail(`Image is too small for the given data (${target.length} < ${total})`);
  }
  // As in QEMU, only -B / -o backing_file count: a -n target's own backing file does not.
  const targetHasBacking = outBase !== undefined;
  const zeroInit = targetIsZero || (minSparse !== 0 && !skipCreate && !targetHasBacking && (tnode.instance.hasZeroInit?.() ?? false));
  const clusterSize = tnode.instance.getInfo?.()?.clusterSize ?? 0;
  const chunkSize = compress && clusterSize ? clusterSize : IO_BUF_SIZE;

  const tasks = () => convertTasks({ srcs, sizes, chunkSize, compressCluster: compress ? clusterSize : 0, fullyAllocate: minSparse === 0, targetHasBacking });
  // Progress counts the bytes that will be copied as data (QEMU's allocated_sectors).
  let allocatedTotal = 0;
  if (progress) {
    for await (const t of tasks()) if (t.kind === 'data' || (minSparse === 0 && t.kind === 'zero')) allocatedTotal += t.length;
  }

  let done = 0;
  prog.print(0, 100);
  const writeRange = async (t: ConvertTask, buf: Uint8Array | null) => {
    if (t.kind === 'backing') return;
    if (t.kind === 'zero') {
      // -S 0 asks for a fully allocated target: zeros are written as data (compressed with -c).
      if (minSparse === 0) await target.write(t.dstOffset, new Uint8Array(t.length), compress ? ReqFlag.COMPRESSED : 0);
      else if (!zeroInit) await target.writeZeroes(t.dstOffset, t.length, ReqFlag.MAY_UNMAP);
      return;
    }
    if (compress) {
      // The installed detector checks buffers in the module's memory in place.
      // -S 0 writes zero clusters compressed too.
      if (minSparse !== 0 && isZeroBuffer(buf!)) {
        if (!zeroInit) await target.writeZeroes(t.dstOffset, t.length, ReqFlag.MAY_UNMAP);
        return;
      }
      await target.write(t.dstOffset, buf!, ReqFlag.COMPRESSED);
      return;
    }
    if (minSparse === 0) {
      await target.write(t.dstOffset, buf!);
      return;
    }
    // Split like qemu's is_allocated_sectors_min: runs of zero sectors of at least
    // minSparse bytes are not written, shorter ones inside data are.
    const b = buf!;
    const len = t.length;
    let pos = 0;
    while (pos < len) {
      const [n, data] = allocatedRunMin(b, pos, t.dstOffset + pos);
      if (data) await target.write(t.dstOffset + pos, b.subarray(pos, pos + n));
      else if (!zeroInit) await target.writeZeroes(t.dstOffset + pos, n, ReqFlag.MAY_UNMAP);
      pos += n;
    }
  };

  // Sparse detection works in 512-byte sectors. Runs are found by the WASM module when the
  // buffer lives in its memory (no copy), else by the plain-JS scan.
  const SECTOR = 512;
  const minSectors = minSparse / SECTOR;
  // qemu: MAX(pow2floor(min_sparse), request_alignment in sectors); a file target's
  // request_alignment is 1 byte, so this is pow2floor(min_sparse).
  const alignSectors = minSectors > 0 ? 2 ** Math.floor(Math.log2(minSectors)) : 1;
  const sectorRun = (b: Uint8Array, from: number, zero: boolean): number => {
    const rest = b.subarray(from);
    return wz?.zero.owns(rest) ? wz.zero.runLength(rest, SECTOR, zero) : zeroRunLength(rest, SECTOR, zero);
  };
  const sectors = (bytes: number): number => Math.ceil(bytes / SECTOR);
  /** qemu's is_allocated_sectors: [bytes, is data] of the run at `from`, end aligned. */
  const allocatedRun = (b: Uint8Array, from: number, dstOffset: number): [number, boolean] => {
    const left = b.length - from;
    let i = sectorRun(b, from, true);
    let zero = i > 0;
    if (!zero) i = sectorRun(b, from, false);
    // The whole rest is the same: no reason to split it.
    if (i >= left) return [left, !zero];
    let iSec = i / SECTOR;
    const tail = (Math.floor(dstOffset / SECTOR) + iSec) % alignSectors;
    if (tail) {
      // A zero run that is only the tail of an alignment unit is written as data.
      if (zero && iSec <= tail) zero = false;
      if (!zero) iSec = Math.min(iSec + alignSectors - tail, sectors(left));
      else iSec -= tail;
    }
    return [Math.min(left, iSec * SECTOR), !zero];
  };
  /** qemu's is_allocated_sectors_min: zero runs shorter than minSparse after data are data. */
  const allocatedRunMin = (b: Uint8Array, from: number, dstOffset: number): [number, boolean] => {
    const min = Math.min(minSectors, sectors(b.length - from));
    const [first, data] = allocatedRun(b, from, dstOffset);
    if (!data) return [first, false];
    let used = first;
    let checked = first;
    while (from + checked < b.length) {
      const [n, d] = allocatedRun(b, from + checked, dstOffset + checked);
      checked += n;
      if (d) used = checked;
      else if (sectors(n) >= min) break;
    }
    return [used, true];
  };

  const WINDOW = 8;
  // Reused read buffers (no zero-filling of every chunk): in WASM memory while the pool
  // there has one free, else ordinary ones.
  const pool: Uint8Array[] = [];
  const takeBuffer = (n: number): Uint8Array => {
    const w = wz?.pool?.take(n);
    if (w) return w;
    const b = pool.pop() ?? Buffer.allocUnsafeSlow(Math.max(chunkSize, IO_BUF_SIZE));
    return b.length >= n ? b.subarray(0, n) : Buffer.allocUnsafeSlow(n);
  };
  const giveBuffer = (buf: Uint8Array): void => {
    if (wz?.zero.owns(buf)) wz.pool?.give(buf);
    else if (buf.byteOffset === 0 && buf.buffer.byteLength >= chunkSize) pool.push(new Uint8Array(buf.buffer, 0, buf.buffer.byteLength));
  };
  const readTask = async (t: ConvertTask): Promise<Uint8Array> => {
    const buf = takeBuffer(t.length);
    await readSources(srcs, sizes, t.dstOffset, buf);
    // A view into WASM memory is detached if that memory grew meanwhile: never let that
    // pass as a read of nothing.
    if (buf.byteLength !== t.length) throw new BlockError('EIO', `read buffer for ${t.length} bytes at ${t.dstOffset} was detached (WASM memory grew)`);
    return buf;
  };
  const queue: Array<{ t: ConvertTask; p: Promise<Uint8Array | null> }> = [];
  // Writes are issued in order; a few may be in flight at once.
  const WRITE_DEPTH = 4;
  const writing: Promise<void>[] = [];
  const drainOne = async () => {
    const { t, p } = queue.shift()!;
    let buf: Uint8Array | null;
    try {
      buf = await p;
    } catch (e) {
      fail(`error while reading at byte ${t.dstOffset}: ${strerror(e)}`);
    }
    const w = writeRange(t, buf).then(
      () => {
        // Only after a successful write: on failures a buffer may still be in use, and the
        // pool then lends one fewer (the command exits anyway).
        if (buf) giveBuffer(buf);
        if (t.kind === 'data' || (minSparse === 0 && t.kind === 'zero')) {
          done += t.length;
          prog.print(allocatedTotal ? (100 * done) / allocatedTotal : 100, 0);
        }
      },
      (e: unknown) => fail(`error while writing at byte ${t.dstOffset}: ${strerror(e)}`),
    );
    w.catch(() => undefined);
    writing.push(w);
    if (writing.length >= WRITE_DEPTH) await writing.shift();
  };
  try {
    for await (const t of tasks()) {
      const p = t.kind === 'data' ? readTask(t) : Promise.resolve(null);
      p.catch(() => undefined);
      queue.push({ t, p });
      if (queue.length >= WINDOW) await drainOne();
    }
    while (queue.length) await drainOne();
    while (writing.length) await writing.shift();
    // Tells the format compressed writing is done (qcow2 aligns its file end).
    if (compress) await target.write(0, new Uint8Array(0), ReqFlag.COMPRESSED);
    await target.flush();
  } catch (e) {
    if (e instanceof CliExit) throw e;
    fail(`error while converting: ${errText(e)}`);
  }
  prog.print(100, 0);
  prog.end();
  return 0;
}

// ---------------------------------------------------------------------------
// resize

async function cmdResize(ctx: Ctx, args0: string[]): Promise<number> {
  if (args0.length < 2) errorExit('Not enough arguments');
  const args = args0.slice(0, -1);
  let sizeText = args0[args0.length - 1]!;
  const { opts, operands } = parseOpts(args, 'f:hq', [
    { name: 'preallocation', hasArg: 1, val: 'prealloc' },
    { name: 'shrink', hasArg: 0, val: 'shrink' },
    ...COMMON_LONGS,
  ]);
  let fmt: string | undefined;
  let quiet = false;
  let shrink = false;
  let prealloc: PreallocMode = 'off';
  for (const o of opts) {
    switch (o.opt) {
      case 'h': return help(ctx);
      case 'f': fmt = o.arg; break;
      case 'q': quiet = true; break;
      case 'shrink': shrink = true; break;
      case 'prealloc':
        if (!['off', 'metadata', 'falloc', 'full'].includes(o.arg!)) fail(`Invalid preallocation mode '${o.arg}'`);
        prealloc = o.arg as PreallocMode;
        break;
      default: break;
    }
  }
  if (operands.length !== 1) errorExit('Expecting image file name and size');
  const filename = operands[0]!;
  let relative = 0;
  if (sizeText.startsWith('+')) {
    relative = 1;
    sizeText = sizeText.slice(1);
  } else if (sizeText.startsWith('-')) {
    relative = -1;
    sizeText = sizeText.slice(1);
  }
  const r = parseSizeQemu(sizeText);
  if (!r.ok) {
    fail(
      "Parameter 'size' expects a non-negative number below 2^64",
      1,
      'Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\nand exabytes, respectively.\n',
    );
  }
  const bb = await ctx.open(filename, fmt, { readOnly: false });
  const current = bb.length;
  const totalSize = relative ? current + r.value * relative : r.value;
  if (totalSize <= 0) fail('New image size must be positive');
  if (totalSize <= current && prealloc !== 'off') fail('Preallocation can only be used for growing images');
  if (totalSize < current && !shrink) {
    ctx.report('Use the --shrink option to perform a shrink operation.');
    ctx.warn("Shrinking an image will delete all data beyond the shrunken image's end. Before performing such an operation, make sure there is no important data there.");
    return 1;
  }
  try {
    await bb.truncate(totalSize, { exact: true, prealloc });
  } catch (e) {
    fail(errText(e));
  }
  if (!quiet) ctx.out('Image resized.\n');
  return 0;
}

// ---------------------------------------------------------------------------
// measure

async function cmdMeasure(ctx: Ctx, args: string[]): Promise<number> {
  const { opts, operands } = parseOpts(args, 'hf:o:l:O:U', [
    { name: 'size', hasArg: 1, val: 'size' },
    { name: 'output', hasArg: 1, val: 'output' },
    ...COMMON_LONGS,
  ]);
  let fmt: string | undefined;
  let outFmt = 'raw';
  let output = 'human';
  let size: number | undefined;
  const options: string[] = [];
  let forceShare = false;
  for (const o of opts) {
    switch (o.opt) {
      case 'h': return help(ctx);
      case 'f': fmt = o.arg; break;
      case 'O': outFmt = o.arg!; break;
      case 'o':
        if (!parseKeyValueListSafe(o.arg!)) fail(`Invalid option list: ${o.arg}`);
        options.push(o.arg!);
        break;
      case 'l': fail('Snapshots are not supported yet');
      case 'size': size = cvtnum('image size', o.arg!); break;
      case 'output': output = o.arg!; break;
      case 'U': forceShare = true; break;
      default: break;
    }
  }
  const of = outputFormat(output);
  if (operands.length > 1) fail('At most one filename argument is allowed.');
  const filename = operands[0];
  if (filename !== undefined && size !== undefined) fail('--size N cannot be used together with a filename.');
  if (filename === undefined && size === undefined) fail('Either --size N or one filename must be specified.');
  let src: BlockBackend | undefined;
  if (filename !== undefined) src = await ctx.open(filename, fmt, { readOnly: true, forceShare });
  let drv;
  try {
    drv = ctx.graph.getDriver(outFmt);
  } catch {
    fail(`Unknown file format '${outFmt}'`);
  }
  if (!drv.create) fail(`Format driver '${outFmt}' does not support image creation`);
  if (options.some(hasHelp)) return printOptionHelp(ctx, outFmt);
  const { values } = buildCreateOpts(ctx, outFmt, filename ?? '', options);
  if (size !== undefined) values.set('size', String(size));
  let info: MeasureInfo;
  try {
    const reader = new OptionReader({ ...toCreateRecord(values) }, `Block format '${outFmt}'`);
    if (drv.measure) {
      info = await drv.measure(reader, src?.node);
    } else if (drv.name !== 'raw') {
      info = await measureViaInstance(ctx, outFmt, reader, src?.node);
    } else if (drv.name === 'raw') {
      const sz = src ? src.length : (size ?? 0);
      const v = values.has('size') ? (parseSizeQemu(values.get('size')!) as { value: number }).value : sz;
      info = { required: v, fullyAllocated: v };
    } else {
      fail(`Format driver '${outFmt}' does not support size measurement`);
    }
  } catch (e) {
    if (e instanceof CliExit) throw e;
    fail(errText(e));
  }
  if (of === 'human') {
    let s = `required size: ${info.required}\nfully allocated size: ${info.fullyAllocated}\n`;
    if (info.bitmaps !== undefined) s += `bitmaps size: ${info.bitmaps}\n`;
    ctx.out(s);
  } else {
    const j: Record<string, JsonValue> = { required: info.required, 'fully-allocated': info.fullyAllocated };
    if (info.bitmaps !== undefined) j['bitmaps'] = info.bitmaps;
    ctx.out(toQemuJson(j) + '\n');
  }
  return 0;
}

/**
 * Drivers that only measure on an open node: make a scratch image of the
 * format in memory and ask its instance.
 */
async function measureViaInstance(ctx: Ctx, fmt: string, options: OptionReader, source?: BlockNode): Promise<MeasureInfo> {
  const name = `memory:measure-${process.pid}-${Date.now()}`;
  await createImage(ctx.graph, fmt, name, { size: 65536 });
  const bb = await BlockBackend.open(ctx.graph, name, { format: fmt, readOnly: true }, { name: '' });
  try {
    const inst = formatNode(bb.node).instance;
    if (!inst.measure) fail(`Format driver '${fmt}' does not support size measurement`);
    return await inst.measure(options, source);
  } finally {
    await bb.close();
  }
}

// ---------------------------------------------------------------------------
// amend

async function cmdAmend(ctx: Ctx, args: string[]): Promise<number> {
  const { opts, operands } = parseOpts(args, 'ho:f:t:pqU', [{ name: 'force', hasArg: 0, val: 'force' }, ...COMMON_LONGS]);
  let fmt: string | undefined;
  const options: string[] = [];
  let force = false;
  let progress = false;
  let quiet = false;
  for (const o of opts) {
    switch (o.opt) {
      case 'h': return help(ctx);
      case 'o': options.push(o.arg!); break;
      case 'f': fmt = o.arg; break;
      case 'p': progress = true; break;
      case 'q': quiet = true; break;
      case 'force': force = true; break;
      default: break;
    }
  }
  if (options.length === 0) errorExit('Must specify options (-o)');
  if (quiet) progress = false;
  const optText = options.join(',');
  if (fmt && hasHelp(optText)) return printAmendHelp(ctx, fmt);
  if (operands.length !== 1) fail('Expecting one image file name');
  const bb = await ctx.open(operands[0]!, fmt, { readOnly: false });
  const node = formatNode(bb.node);
  if (hasHelp(optText)) return printAmendHelp(ctx, node.driver.name);
  if (!node.instance.amend) fail(`Format driver '${node.driver.name}' does not support option amendment`);
  let kv: Record<string, string>;
  try {
    kv = parseKeyValueList(optText);
  } catch (e) {
    fail(errText(e));
  }
  const prog = new Progress(ctx, progress, 1.0);
  prog.print(0, 0);
  try {
    await node.instance.amend(new OptionReader({ ...kv }, `Block format '${node.driver.name}'`), force);
  } catch (e) {
    prog.end();
    const m = /does not support the option '([^']+)'/.exec(errText(e));
    fail(m ? `Invalid parameter '${m[1]}'` : errText(e));
  }
  prog.print(100, 0);
  prog.end();
  return 0;
}

function printAmendHelp(ctx: Ctx, fmt: string): number {
  let drv;
  try {
    drv = ctx.graph.getDriver(fmt);
  } catch {
    fail(`Unknown file format '${fmt}'`);
  }
  const list = (drv as { amendOptions?: readonly CreateOptionSpec[] }).amendOptions;
  if (!list) fail(`Format driver '${fmt}' does not support option amendment`);
  ctx.out(`Amend options for ${fmt}:\n` + optionHelpList(list));
  return 0;
}

// ---------------------------------------------------------------------------
// commit

function findInChain(ctx: Ctx, top: BlockNode, name: string): BlockNode | undefined {
  for (let n = cowChild(top); n; n = cowChild(n)) {
    const f = ctx.graph.protocolNodeOf(n).filename;
    if (f === name || f.endsWith('/' + name) || name.endsWith('/' + f)) return n;
  }
  return undefined;
}

async function cmdCommit(ctx: Ctx, args: string[]): Promise<number> {
  const { opts, operands } = parseOpts(args, 'f:ht:b:dpqr:', [...COMMON_LONGS]);
  let fmt: string | undefined;
  let base: string | undefined;
  let drop = false;
  let progress = false;
  let quiet = false;
  for (const o of opts) {
    switch (o.opt) {
      case 'h': return help(ctx);
      case 'f': fmt = o.arg; break;
      case 'b': base = o.arg; drop = true; break;
      case 'd': drop = true; break;
      case 'p': progress = true; break;
      case 'q': quiet = true; break;
      case 'r': cvtnum('rate limit', o.arg!); break;
      case 't': if (!parseCacheMode(o.arg!)) fail(`Invalid cache option: ${o.arg}`); break;
      default: break;
    }
  }
  if (quiet) progress = false;
  if (operands.length !== 1) errorExit('Expecting one image file name');
  const filename = operands[0]!;
  // Like the commit job, let the chain below change while we hold the top.
  // qemu-img commit opens with discard=unmap (BDRV_O_UNMAP), which the backing chain inherits.
  const bb = await ctx.open(filename, fmt, {
    readOnly: false,
    shared: Perm.CONSISTENT_READ | Perm.WRITE | Perm.WRITE_UNCHANGED | Perm.RESIZE | Perm.GRAPH_MOD,
    extra: { discard: 'unmap' },
  });
  const top = formatNode(bb.node);
  const prog = new Progress(ctx, progress, 1.0);
  prog.print(0, 100);
  let baseNode: BlockNode | undefined;
  if (base !== undefined) {
    baseNode = findInChain(ctx, top, base);
    if (!baseNode) {
      prog.end();
      fail(`Did not find '${base}' in the backing chain of '${filename}'`);
    }
  } else {
    baseNode = cowChild(top);
    if (!baseNode) {
      prog.end();
      fail('Image does not have a backing file');
    }
  }
  try {
    await ctx.graph.reopen([{ node: baseNode, readOnly: false }]);
    const baseBb = await BlockBackend.attach(ctx.graph, baseNode, { name: '', perm: Perm.CONSISTENT_READ | Perm.WRITE | Perm.RESIZE });
    // The copy is QEMU's commit job: a failure in it, or in the flush and
    // close that put its data on storage, is "Block job failed".
    let jobError: unknown = null;
    try {
      const len = bb.length;
      if (baseBb.length < len) await baseBb.truncate(len);
      let off = 0;
      while (off < len) {
        const r = await isAllocatedAbove(top, baseNode, false, off, len - off);
        const n = r.pnum || len - off;
        if (r.allocated) {
          for (let p = off; p < off + n; p += IO_BUF_SIZE) {
            const c = Math.min(IO_BUF_SIZE, off + n - p);
            const buf = await bb.read(p, c);
            // qemu-img commit runs QEMU's mirror with unmap: zeros may deallocate in the base.
            if (isZeroBuffer(buf)) await baseBb.writeZeroes(p, c, ReqFlag.MAY_UNMAP);
            else await baseBb.write(p, buf);
          }
        }
        off += n;
        prog.print((100 * off) / len, 0);
      }
      await baseBb.flush();
    } catch (e) {
      jobError = e;
    }
    await baseBb.close().catch((e: unknown) => void (jobError ??= e));
    if (jobError !== null) fail(`Block job failed: ${strerror(jobError)}`);
    if (!drop && top.instance.makeEmpty) {
      try {
        await top.instance.makeEmpty();
      } catch (e) {
        throw new CliExit(1, `Could not empty ${filename}: ${strerror(e)}`);
      }
    }
  } catch (e) {
    prog.end();
    if (e instanceof CliExit) throw e;
    fail(errText(e));
  }
  prog.print(100, 0);
  prog.end();
  if (!quiet) ctx.out('Image committed.\n');
  return 0;
}

// ---------------------------------------------------------------------------
// rebase

function cowWriteFailed(e: unknown): never {
  fail(`Error while writing to COW image: ${strerror(e)}`);
}

async function cmdRebase(ctx: Ctx, args: string[]): Promise<number> {
  const { opts, operands } = parseOpts(args, 'hf:F:b:upt:T:qU', [...COMMON_LONGS]);
  let fmt: string | undefined;
  let outBase: string | undefined;
  let outBaseFmt: string | undefined;
  let unsafe = false;
  let progress = false;
  let quiet = false;
  let forceShare = false;
  for (const o of opts) {
    switch (o.opt) {
      case 'h': return help(ctx);
      case 'f': fmt = o.arg; break;
      case 'F': outBaseFmt = o.arg; break;
      case 'b': outBase = o.arg; break;
      case 'u': unsafe = true; break;
      case 'p': progress = true; break;
      case 'q': quiet = true; break;
      case 'U': forceShare = true; break;
      case 't':
      case 'T':
        if (!parseCacheMode(o.arg!)) fail(o.opt === 't' ? `Invalid cache option: ${o.arg}` : `Invalid source cache option: ${o.arg}`);
        break;
      default: break;
    }
  }
  if (quiet) progress = false;
  if (operands.length !== 1) errorExit('Expecting one image file name');
  if (!unsafe && outBase === undefined) errorExit('Must specify backing file (-b) or use unsafe mode (-u)');
  const filename = operands[0]!;
  const bb = await ctx.open(filename, fmt, { readOnly: false, noBacking: unsafe, forceShare });
  const top = formatNode(bb.node);
  if (outBase === '') outBase = undefined;
  const prog = new Progress(ctx, progress, 1.0);
  prog.print(0, 100);
  if (!unsafe) {
    let newBb: BlockBackend | undefined;
    if (outBase !== undefined) {
      const full = /^[a-zA-Z][a-zA-Z0-9+.-]*:/.test(outBase) ? outBase : joinRelative(imageFilename(ctx, top, filename), outBase);
      try {
        newBb = await BlockBackend.open(ctx.graph, { filename: full, 'force-share': true }, { readOnly: true, ...(outBaseFmt ? { format: outBaseFmt } : {}) }, { name: '' });
      } catch (e) {
        prog.end();
        fail(`Could not open new backing file '${full}': ${errText(e)}`);
      }
    }
    try {
      const len = bb.length;
      const oldBacking = cowChild(top);
      const oldLen = oldBacking ? oldBacking.length : 0;
      const newLen = newBb ? newBb.length : 0;
      let off = 0;
      while (off < len) {
        const n0 = Math.min(IO_BUF_SIZE, len - off);
        const r = await isAllocatedAbove(top, oldBacking, false, off, n0);
        let n = r.pnum || n0;
        if (!r.allocated) {
          // As qemu-img: past the old backing's end the old side is zeros, and the
          // ranges that differ from the new backing become zero writes, not data.
          const oldZero = off >= oldLen;
          if (!oldZero) n = Math.min(n, oldLen - off);
          if (newBb && off < newLen) n = Math.min(n, newLen - off);
          const oldBuf = oldZero ? new Uint8Array(n) : await bb.read(off, n);
          const newBuf = newBb && off < newLen ? await newBb.read(off, n) : new Uint8Array(n);
          let w = 0;
          while (w < n) {
            const c = compareBuffers(oldBuf.subarray(w), newBuf.subarray(w), n - w);
            if (c.diff) {
              if (oldZero) await bb.writeZeroes(off + w, c.pnum).catch(cowWriteFailed);
              else await bb.write(off + w, oldBuf.subarray(w, w + c.pnum)).catch(cowWriteFailed);
            }
            w += c.pnum;
          }
        }
        off += n;
        prog.print((100 * off) / len, 0);
      }
    } catch (e) {
      prog.end();
      if (e instanceof CliExit) throw e;
      fail(errText(e));
    } finally {
      await newBb?.close();
    }
  }
  if (!top.instance.changeBackingFile) {
    prog.end();
    fail(`Could not change the backing file to '${outBase ?? ''}': Operation not supported`);
  }
  if (outBase !== undefined && !outBaseFmt) {
    prog.end();
    fail(`Could not change the backing file to '${outBase}': backing format must be specified`);
  }
  try {
    await top.instance.changeBackingFile(outBase, outBase !== undefined ? outBaseFmt : undefined);
  } catch (e) {
    prog.end();
    fail(`Could not change the backing file to '${outBase ?? ''}': ${strerror(e)}`);
  }
  prog.print(100, 0);
  prog.end();
  return 0;
}

// ---------------------------------------------------------------------------
// dd

async function cmdDd(ctx: Ctx, args: string[]): Promise<number> {
  const { opts, operands } = parseOpts(args, 'hf:O:U', [...COMMON_LONGS]);
  let fmt: string | undefined;
  let outFmt = 'raw';
  let forceShare = false;
  for (const o of opts) {
    switch (o.opt) {
      case 'h': return help(ctx);
      case 'f': fmt = o.arg; break;
      case 'O': outFmt = o.arg!; break;
      case 'U': forceShare = true; break;
      default: break;
    }
  }
  let bsz = 512;
  let count: number | undefined;
  let skip: number | undefined;
  let inFile: string | undefined;
  let outFile: string | undefined;
  for (const arg of operands) {
    const eq = arg.indexOf('=');
    if (eq < 0) fail(`unrecognized operand ${arg}`);
    const key = arg.slice(0, eq);
    const val = arg.slice(eq + 1);
    switch (key) {
      case 'bs': bsz = cvtnum('bs', val, 1, 2147483647, '2147483647'); break;
      case 'count': count = cvtnum('count', val); break;
      case 'if': inFile = val; break;
      case 'of': outFile = val; break;
      case 'skip': skip = cvtnum('skip', val); break;
      default: fail(`unrecognized operand ${key}`);
    }
  }
  if (inFile === undefined || outFile === undefined) fail('Must specify both input and output files');
  const src = await ctx.open(inFile, fmt, { readOnly: true, forceShare });
  let drv;
  try {
    drv = ctx.graph.getDriver(outFmt);
  } catch {
    fail('Unknown file format');
  }
  if (!drv.create) fail(`Format driver '${outFmt}' does not support image creation`);
  let size = src.length;
  if (count !== undefined && count * bsz < size) size = count * bsz;
  const skipBytes = skip !== undefined ? skip * bsz : 0;
  const beyond = skip !== undefined && size < skipBytes;
  try {
    await createImage(ctx.graph, outFmt, outFile, { size: beyond ? 0 : size - skipBytes });
  } catch (e) {
    fail(`${outFile}: error while creating output image: ${errText(e)}`);
  }
  const dst = await ctx.open(outFile, outFmt, { readOnly: false });
  let inPos = skipBytes;
  if (beyond) {
    ctx.report(`${inFile}: cannot skip to specified offset`);
    inPos = size;
  }
  let outPos = 0;
  // Copy in blocks of bs, batched so small block sizes stay fast.
  const batch = Math.max(bsz, Math.floor(IO_BUF_SIZE / bsz) * bsz);
  while (inPos < size) {
    const bytes = Math.min(batch, size - inPos);
    let buf: Uint8Array;
    try {
      buf = await src.read(inPos, bytes);
    } catch (e) {
      fail(`error while reading from input image file: ${strerror(e)}`);
    }
    inPos += bytes;
    try {
      await dst.write(outPos, buf);
    } catch (e) {
      fail(`error while writing to output image file: ${strerror(e)}`);
    }
    outPos += bytes;
  }
  return 0;
}

// ---------------------------------------------------------------------------
// bench

async function cmdBench(ctx: Ctx, args: string[]): Promise<number> {
  const { opts, operands } = parseOpts(args, 'hc:d:f:ni:o:qs:S:t:wU', [
    { name: 'flush-interval', hasArg: 1, val: 'flush' },
    { name: 'pattern', hasArg: 1, val: 'pattern' },
    { name: 'no-drain', hasArg: 0, val: 'nodrain' },
    ...COMMON_LONGS,
  ]);
  let fmt: string | undefined;
  let count = 75000;
  let depth = 64;
  let offset = 0;
  let bufsize = 4096;
  let step = 0;
  let write = false;
  let pattern = 0;
  let flushInterval = 0;
  let quiet = false;
  let forceShare = false;
  let cache: string | undefined;
  const uint = (s: string) => (/^\s*[0-9]+$/.test(s) ? Number(s) : /^\s*0[xX][0-9a-fA-F]+$/.test(s) ? parseInt(s, 16) : NaN);
  for (const o of opts) {
    switch (o.opt) {
      case 'h': return help(ctx);
      case 'c': {
        const v = uint(o.arg!);
        if (!(v >= 0) || v > 0x7fffffff) fail('Invalid request count specified');
        count = v;
        break;
      }
      case 'd': {
        const v = uint(o.arg!);
        if (!(v >= 0) || v > 0x7fffffff) fail('Invalid queue depth specified');
        depth = v;
        break;
      }
      case 'f': fmt = o.arg; break;
      case 'n': break;
      case 'i':
        if (!['threads', 'native', 'io_uring'].includes(o.arg!)) fail(`Invalid aio option: ${o.arg}`);
        break;
      case 'o': offset = cvtnum('offset', o.arg!); break;
      case 'q': quiet = true; break;
      case 's': bufsize = cvtnum('buffer size', o.arg!, 0, 2147483647, '2147483647'); break;
      case 'S': step = cvtnum('step_size', o.arg!, 0, 2147483647, '2147483647'); break;
      case 't':
        if (!parseCacheMode(o.arg!)) fail(`Invalid cache mode: ${o.arg}`);
        cache = o.arg;
        break;
      case 'w': write = true; break;
      case 'U': forceShare = true; break;
      case 'pattern': {
        const v = uint(o.arg!);
        if (!(v >= 0) || v > 0xff) fail('Invalid pattern byte specified');
        pattern = v;
        break;
      }
      case 'flush': {
        const v = uint(o.arg!);
        if (!(v >= 0) || v > 0x7fffffff) fail('Invalid flush interval specified');
        flushInterval = v;
        break;
      }
      default: break;
    }
  }
  if (operands.length !== 1) errorExit('Expecting one image file name');
  if (flushInterval && !write) fail('--flush-interval is only available in write tests');
  if (flushInterval && flushInterval < depth) fail('Flush interval can\'t be smaller than depth');
  if (depth === 0) fail('Invalid queue depth specified');
  const bb = await ctx.open(operands[0]!, fmt, { readOnly: !write, forceShare, ...(cache ? { cache } : {}) });
  const imageSize = bb.length;
  const st = step || bufsize;
  void quiet; // qemu-img bench prints its report even with -q
  const qp = (s: string) => ctx.out(s);
  qp(`Sending ${count} ${write ? 'write' : 'read'} requests, ${bufsize} bytes each, ${depth} in parallel (starting at offset ${offset}, step size ${st})\n`);
  if (flushInterval) qp(`Sending flush every ${flushInterval} requests\n`);
  const bufs = Array.from({ length: depth }, () => new Uint8Array(bufsize).fill(pattern));
  const t0 = performance.now();
  let next = offset;
  let issued = 0;
  let failed: unknown = null;
  const worker = async (slot: number) => {
    while (issued < count && !failed) {
      const off = next;
      issued++;
      next += st;
      if (imageSize <= bufsize) next = 0;
      else next %= imageSize - bufsize;
      try {
        if (write) {
          await bb.write(off, bufs[slot]!);
          if (flushInterval && issued % flushInterval === 0) await bb.flush();
        } else {
          await bb.pread(off, bufs[slot]!);
        }
      } catch (e) {
        failed = e;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(depth, Math.max(count, 1)) }, (_, i) => worker(i)));
  if (failed) fail(`Failed request: ${strerror(failed)}`);
  const secs = (performance.now() - t0) / 1000;
  qp(`Run completed in ${cFixed(secs, 3)} seconds.\n`);
  return 0;
}

// ---------------------------------------------------------------------------
// snapshot / bitmap (not yet)

async function cmdNotYet(ctx: Ctx, name: string, args: string[]): Promise<number> {
  void ctx;
  void args;
  fail(`'${name}' is not supported yet`);
}

// ---------------------------------------------------------------------------

const HELP = `${PROG} version 0.1.0 (qemu-img 7.2 compatible)
usage: ${PROG} [standard options] command [command options]
QEMU disk image utility, rebuilt on the DiskWorker block layer

    '-h', '--help'       display this help and exit
    '-V', '--version'    output version information and exit

Command syntax:
  amend [-f fmt] [-p] [-q] -o options [--force] filename
  bench [-c count] [-d depth] [-f fmt] [-o offset] [-q] [-s buffer_size] [-S step_size] [-t cache] [-w] [-U] [--pattern=pattern] [--flush-interval=flush_interval] filename
  check [-q] [-f fmt] [--output=ofmt] [-r [leaks | all]] [-U] filename
  commit [-q] [-f fmt] [-t cache] [-b base] [-r rate_limit] [-d] [-p] filename
  compare [-f fmt] [-F fmt] [-T src_cache] [-p] [-q] [-s] [-U] filename1 filename2
  convert [-c] [-f fmt] [-n] [-O output_fmt] [-B backing_file [-F backing_fmt]] [-o options] [-S sparse_size] [-p] [-q] [--target-is-zero] [-U] filename [filename2 [...]] output_filename
  create [-q] [-f fmt] [-b backing_file [-F backing_fmt]] [-u] [-o options] filename [size]
  dd [-f fmt] [-O output_fmt] [-U] [bs=block_size] [count=blocks] [skip=blocks] if=input of=output
  info [-f fmt] [--output=ofmt] [--backing-chain] [-U] filename
  map [-f fmt] [--output=ofmt] [--start-offset=offset] [--max-length=len] [-U] filename
  measure [--output=ofmt] [-O output_fmt] [-o options] [--size N | [-f fmt] filename]
  rebase [-f fmt] [-t cache] [-T src_cache] [-p] [-q] [-u] [-U] -b backing_file [-F backing_fmt] filename
  resize [-f fmt] [--preallocation=prealloc] [-q] [--shrink] filename [+ | -]size
  snapshot, bitmap: not supported yet

Sizes take the suffixes k, M, G, T, P, E (powers of 1024).
`;

function help(ctx: Ctx): number {
  ctx.out(HELP);
  return 0;
}

type Handler = (ctx: Ctx, args: string[]) => Promise<number>;
const COMMANDS: Record<string, Handler> = {
  amend: cmdAmend,
  bench: cmdBench,
  bitmap: (c, a) => cmdNotYet(c, 'bitmap', a),
  check: cmdCheck,
  commit: cmdCommit,
  compare: cmdCompare,
  convert: cmdConvert,
  create: cmdCreate,
  dd: cmdDd,
  info: cmdInfo,
  map: cmdMap,
  measure: cmdMeasure,
  rebase: cmdRebase,
  resize: cmdResize,
  snapshot: (c, a) => cmdNotYet(c, 'snapshot', a),
};

/** `diskworker img ...`: returns the exit code. */
export async function imgMain(args: string[], io: CliIo): Promise<number> {
  const ctx = new Ctx(io);
  // Global options before the command (qemu-img uses "+" getopt here).
  const g = getopt(args, '+:hVT:', [
    { name: 'help', hasArg: 0, val: 'h' },
    { name: 'version', hasArg: 0, val: 'V' },
    { name: 'trace', hasArg: 1, val: 'T' },
  ]);
  try {
    for (const o of g.opts) {
      if (o.kind === 'unknown') errorExit(`unrecognized option '${o.written}'`);
      if (o.kind === 'missing') errorExit(`missing argument for option '${o.written}'`);
      if (o.kind === 'noarg') errorExit(`unrecognized option '${o.written}'`);
      if (o.opt === 'h') return help(ctx);
      if (o.opt === 'V') {
        io.stdout(`${PROG} version 0.1.0 (qemu-img 7.2 compatible)\n`);
        return 0;
      }
    }
    if (g.operands.length < 1) errorExit('Not enough arguments');
    const [name, ...rest] = g.operands as [string, ...string[]];
    const dashdash = rest.indexOf('--');
    ctx.imageOpts = (dashdash < 0 ? rest : rest.slice(0, dashdash)).includes('--image-opts');
    const handler = Object.prototype.hasOwnProperty.call(COMMANDS, name) ? COMMANDS[name] : undefined;
    if (!handler) errorExit(`Command not found: ${name}`);
    return await handler(ctx, rest);
  } catch (e) {
    if (e instanceof CliExit) {
      if (e.message) io.stderr(`${PROG}: ${e.message}\n`);
      if (e.hint) io.stderr(e.hint);
      return e.exitCode;
    }
    io.stderr(`${PROG}: ${errText(e)}\n`);
    return 1;
  } finally {
    await ctx.closeAll();
  }
}
