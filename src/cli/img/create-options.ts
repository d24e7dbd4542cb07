/**
 * The -o option lists of create and amend: help output, parsing and the "Formatting ..." line.
 */
import { type BlockDriver, type CreateOptionSpec } from '../../core/driver.js';
import { qemuOnlyDriver } from '../../core/qemu-drivers.js';
import { parseSizeQemu } from '../format.js';
import { checkOptionValue, isHexWithSuffix, OptsError, optionListHasHelp, parseNumberOption, parseOptionList } from '../qemu-opts.js';
import { CliExit } from '../common.js';
import { fail, Ctx } from './context.js';

// create and option help

function createOptionsFor(ctx: Ctx, fmt: string, filename?: string): { format: readonly CreateOptionSpec[]; proto: readonly CreateOptionSpec[] } {
  const drv = ctx.graph.getDriver(fmt);
  const proto = filename !== undefined ? ctx.graph.protocolFor(filename) : undefined;
  return { format: drv.createOptions ?? [], proto: proto && proto !== drv ? (proto.createOptions ?? []) : [] };
}

function typeLabel(t: CreateOptionSpec['type']): string {
  return t === 'size' ? 'size' : t === 'number' ? 'num' : t === 'bool' ? 'bool (on/off)' : 'str';
}

export function optionHelpList(list: readonly CreateOptionSpec[]): string {
  return [...list]
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    .map((d) => `  ${`${d.name}=<${typeLabel(d.type)}>`.padEnd(22)} - ${d.help}\n`)
    .join('');
}

/**
 * The driver an image of format `fmt` is created with, failing as qemu-img
 * does: an unknown name, or a driver without creation (also one of QEMU's
 * that we lack, see src/core/qemu-drivers.ts). `prefix` leads each message
 * (create names the file), `unknown` is the unknown-name message.
 */
export function creatableDriver(ctx: Ctx, fmt: string, prefix = '', unknown = `Unknown file format '${fmt}'`): BlockDriver {
  let drv: BlockDriver | undefined;
  try {
    drv = ctx.graph.getDriver(fmt);
  } catch {
    drv = undefined;
  }
  if (!drv || (drv.kind !== 'format' && drv.kind !== 'protocol')) {
    const theirs = qemuOnlyDriver(fmt);
    if (!theirs) fail(`${prefix}${unknown}`);
    if (!theirs.create) fail(`${prefix}Format driver '${fmt}' does not support image creation`);
    // QEMU would create it; we cannot.
    fail(`${prefix}Image format '${fmt}' is not supported`);
  }
  if (!drv.create) fail(`${prefix}Format driver '${fmt}' does not support image creation`);
  return drv;
}

export function printOptionHelp(ctx: Ctx, fmt: string, filename?: string): number {
  creatableDriver(ctx, fmt);
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

export function hasHelp(options: string | undefined): boolean {
  if (!options) return false;
  return optionListHasHelp(options);
}

/** The -o list as given plus qemu-img's own additions, validated against the drivers' option lists. */
export function buildCreateOpts(
  ctx: Ctx,
  fmt: string,
  filename: string,
  optionText: string[],
  /** The `size` option kept exactly up to 2^64 - 1, as decimal text (measure). */
  exactSize = false,
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
        values.set(k, checkOptionValue(spec, v, (w) => ctx.warn(w), exactSize));
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
export function formatOptsLine(specs: CreateOptionSpec[], values: Map<string, string>, numeric: Set<string>): string {
  const parts: string[] = [];
  for (const d of specs) {
    const given = values.get(d.name);
    const v = given ?? d.default;
    if (v === undefined) continue;
    if (given !== undefined && (d.type === 'size' || d.type === 'number')) {
      // Numeric values are decimal already (and may be past 2^53: printed as given).
      if (numeric.has(d.name)) {
        parts.push(`${d.name}=${given}`);
        continue;
      }
      if (d.type === 'number') {
        parts.push(`${d.name}=${parseNumberOption(d.name, given)}`);
        continue;
      }
      const n = parseSizeQemu(given);
      const num = n.ok ? n.value : NaN;
      parts.push(`${d.name}=${Number.isNaN(num) ? given : num}`);
    } else if (d.type === 'string') {
      parts.push(`${d.name}=${escapeOpt(v)}`);
    } else {
      parts.push(`${d.name}=${v}`);
    }
  }
  return parts.join(' ');
}

export function toCreateRecord(values: Map<string, string>): Record<string, string | number | boolean> {
  const o: Record<string, string | number | boolean> = {};
  for (const [k, v] of values) o[k] = v;
  return o;
}
