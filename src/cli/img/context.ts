/**
 * The shared parts of `diskworker img`: the command context (graph, open images, messages),
 * option parsing, size parsing and the progress bar.
 */
import { BlockBackend } from '../../core/backend.js';
import type { BlockGraph } from '../../core/graph.js';
import type { DriverInstance } from '../../core/driver.js';
import type { BlockNode } from '../../core/node.js';
import { parseKeyValueList } from '../../core/options.js';
import { PERM_ALL } from '../../core/permissions.js';
import { createCliGraph } from '../node-graph.js';
import { getopt, type LongOption, type OptResult } from '../getopt.js';
import { addObject } from '../../qmp/objects.js';
import { cFixed, parseSizeExact, parseSizeQemu } from '../format.js';
import { CliExit, type CliIo, closeWithMessages, fatalExit, errHint, errText, probeWarnings, parseCacheMode } from '../common.js';

export const PROG = 'diskworker img';
export const IO_BUF_SIZE = 2 * 1024 * 1024;
const INT64_MAX = '9223372036854775807';

/** error_exit: message, the "Try --help" line, exit 1. */
export function errorExit(msg: string): never {
  throw new CliExit(1, msg, `Try '${PROG} --help' for more information\n`);
}

/** error_report + return 1. */
export function fail(msg: string, code = 1, hint = ''): never {
  throw new CliExit(code, msg, hint);
}

export class Ctx {
  readonly graph: BlockGraph = createCliGraph();
  /** --image-opts: image names are key=value option strings. */
  imageOpts = false;
  private readonly backends: BlockBackend[] = [];
  constructor(readonly io: CliIo) {
    // Drivers' notices (qcow2's corruption events) go to stderr as QEMU prints them.
    this.graph.onNotice = (text) => io.stderr(`${text}\n`);
    this.graph.onReport = (text) => this.report(text);
    // blkverify's mismatch ends qemu-img at once.
    this.graph.onFatal = fatalExit(io);
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
      /** Permissions to take (default: the BlockBackend's, with resize when read-write). */
      perm?: number;
      /** Open for check (QEMU's BDRV_O_CHECK): no repair of a dirty qcow2 image on open. */
      forCheck?: boolean;
      /** Open without data access (QEMU's BDRV_O_NO_IO, qemu-img info): encrypted images need no key. */
      noIo?: boolean;
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
    // QEMU's img_check always opens with BDRV_O_CHECK, read-only too.
    // Flags every node gets, read by the drivers they concern (so the image is opened once:
    // an NBD server started for one client serves no second connection).
    if (o.forCheck) spec['x-check'] = true;
    if (o.noIo) spec['x-no-io'] = true;
    // -t / -T: the node's cache options, and writethrough modes (writethrough, directsync) make
    // every write reach the disk before it completes (QEMU's BlockBackend without write cache).
    let writeThrough = false;
    if (o.cache) {
      const c = parseCacheMode(o.cache);
      if (c) {
        spec['cache.direct'] = c.direct;
        spec['cache.no-flush'] = c.noFlush;
        writeThrough = !c.writeback;
      }
    }
    let bb: BlockBackend;
    try {
      if (!this.imageOpts) this.graph.checkProtocolName(filename);
      bb = await BlockBackend.open(
        this.graph,
        spec,
        { readOnly: o.readOnly ?? true, ...(fmt ? { format: fmt } : {}), ...(o.noBacking ? { noBacking: true } : {}) },
        // qemu-img's BlockBackends share everything unless told otherwise (blk_new_open); what
        // they share decides which of another process's QEMU locks stop the open.
        { name: '', writeThrough, shared: o.shared ?? PERM_ALL, ...(o.perm !== undefined ? { perm: o.perm } : {}) },
      );
    } catch (e) {
      fail(`Could not open '${filename}': ${errText(e)}`, o.code ?? 1, errHint(e));
    }
    this.backends.push(bb);
    if (!(o.readOnly ?? true)) this.io.stderr(probeWarnings(bb.node, filename));
    // What the open repaired (a dirty lazy-refcounts image), as QEMU prints it.
    for (const line of bb.node.instance.openMessages?.() ?? []) this.io.stderr(`${line}\n`);
    return bb;
  }

  /** `--object`: creates the object in the graph; help text ends the command with 0, errors with 1. */
  addObject(text: string): void {
    let r: { help: string } | undefined;
    try {
      r = addObject(this.graph, text);
    } catch (e) {
      fail(errText(e), 1, errHint(e));
    }
    if (r) {
      this.out(r.help);
      throw new CliExit(0);
    }
  }

  async closeAll(): Promise<void> {
    for (const bb of this.backends.splice(0)) {
      for (const line of await closeWithMessages(bb)) this.io.stderr(`${PROG}: ${line}\n`);
    }
    await this.graph.closeAll().catch(() => undefined);
  }
}

/**
 * Parses options, turning getopt errors into qemu-img's messages. With
 * `ctx`, each `--object` is created in `ctx`'s graph as it comes (QEMU's
 * subcommands do that in their option loop; `bench` has no `--object`), up
 * to a `-h` that ends the command first.
 */
export function parseOpts(args: string[], spec: string, longs: LongOption[], ctx?: Ctx): { opts: Array<Extract<OptResult, { kind: 'opt' }>>; operands: string[] } {
  const r = getopt(args, spec, [...longs, { name: 'help', hasArg: 0, val: 'h' }]);
  const opts: Array<Extract<OptResult, { kind: 'opt' }>> = [];
  let helpSeen = false;
  for (const o of r.opts) {
    if (o.kind === 'unknown') errorExit(`unrecognized option '${o.written}'`);
    if (o.kind === 'missing') errorExit(`missing argument for option '${o.written}'`);
    if (o.kind === 'noarg') errorExit(`unrecognized option '${o.written}'`);
    if (o.kind !== 'opt') continue;
    opts.push(o);
    if (o.opt === 'h') helpSeen = true;
    if (o.opt === 'object' && ctx && !helpSeen) ctx.addObject(o.arg!);
  }
  return { opts, operands: r.operands };
}

/** qemu-img's cvtnum_full with its messages; throws CliExit on error. */
export function cvtnum(name: string, value: string, min = 0, max = Number.MAX_SAFE_INTEGER, maxText?: string): number {
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

/** {@link cvtnum} for values past 2^53: exact, from 0 to INT64_MAX, with the same messages. */
export function cvtnumExact(name: string, value: string): bigint {
  const r = parseSizeExact(value);
  if (!r.ok && r.reason === 'invalid') cvtnum(name, value);
  if (!r.ok || r.value > BigInt(INT64_MAX)) fail(`Invalid ${name} specified. Must be between 0 and ${INT64_MAX}.`);
  return r.value;
}

export function outputFormat(v: string): 'human' | 'json' {
  if (v === 'human' || v === 'json') return v;
  fail('--output must be used with human or json as argument.');
}

export const COMMON_LONGS: LongOption[] = [
  { name: 'object', hasArg: 1, val: 'object' },
  { name: 'image-opts', hasArg: 0, val: 'image-opts' },
  { name: 'force-share', hasArg: 0, val: 'U' },
];

// ---------------------------------------------------------------------------
// Progress bar (qemu-progress)

export class Progress {
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
      if (this.enabled) {
        this.ctx.out(`    (${cFixed(cur, 2)}/100%)\r`);
        this.ctx.io.flush?.();
      }
    }
  }
  end(): void {
    if (this.enabled) this.ctx.out('\n');
  }
}

// ---------------------------------------------------------------------------
// Helpers on nodes

export function imageFilename(ctx: Ctx, node: BlockNode, fallback: string): string {
  const p = ctx.graph.protocolNodeOf(node);
  return p.filename || fallback;
}
