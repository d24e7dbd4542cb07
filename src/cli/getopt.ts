/**
 * Option parsing with the behaviour of glibc's getopt_long, which qemu-img and
 * qemu-io rely on: short option clusters (`-rU`), attached or separate
 * arguments (`-fraw`, `-f raw`), long options with `--opt=value` or
 * `--opt value` and unambiguous prefixes, `--` to end options, and
 * permutation (options may follow operands) unless the option string starts
 * with `+`.
 */

export interface LongOption {
  name: string;
  /** 0: no argument, 1: required, 2: optional (only as `--opt=value`). */
  hasArg: 0 | 1 | 2;
  /** The value returned for it (a short option letter or any tag). */
  val: string;
}

export type OptResult =
  | { kind: 'opt'; opt: string; arg?: string; /** As written (`-f`, `--output`). */ written: string }
  | { kind: 'unknown'; written: string; /** The bad letter for short options. */ letter?: string }
  | { kind: 'missing'; written: string; letter?: string }
  | { kind: 'noarg'; written: string };

/** Everything getopt found: options in order, then the operands. */
export interface ParsedArgs {
  opts: OptResult[];
  operands: string[];
}

interface ShortSpec {
  hasArg: 0 | 1 | 2;
}

function parseShort(spec: string): Map<string, ShortSpec> {
  const m = new Map<string, ShortSpec>();
  for (let i = 0; i < spec.length; i++) {
    const c = spec[i]!;
    if (c === ':' || c === '+' || c === '-') continue;
    let hasArg: 0 | 1 | 2 = 0;
    if (spec[i + 1] === ':') {
      hasArg = 1;
      i++;
      if (spec[i + 1] === ':') {
        hasArg = 2;
        i++;
      }
    }
    m.set(c, { hasArg });
  }
  return m;
}

/**
 * Parses `args` (without the program / command name). Never throws: errors
 * come back as `unknown` / `missing` / `noarg` entries, in order, so the
 * caller can word them like the tool it imitates.
 */
export function getopt(args: readonly string[], shortSpec: string, longOpts: readonly LongOption[] = []): ParsedArgs {
  const shorts = parseShort(shortSpec);
  const noPermute = shortSpec.startsWith('+');
  const opts: OptResult[] = [];
  const operands: string[] = [];
  let i = 0;
  while (i < args.length) {
    const a = args[i]!;
    if (a === '--') {
      operands.push(...args.slice(i + 1));
      break;
    }
    if (a.startsWith('--')) {
      const body = a.slice(2);
      const eq = body.indexOf('=');
      const name = eq < 0 ? body : body.slice(0, eq);
      const value = eq < 0 ? undefined : body.slice(eq + 1);
      let match = longOpts.find((o) => o.name === name);
      if (!match) {
        const cands = longOpts.filter((o) => o.name.startsWith(name));
        if (cands.length === 1 || (cands.length > 1 && cands.every((c) => c.val === cands[0]!.val))) match = cands[0];
      }
      i++;
      if (!match) {
        opts.push({ kind: 'unknown', written: eq < 0 ? a : `--${name}` });
        continue;
      }
      const written = `--${match.name}`;
      if (match.hasArg === 0) {
        if (value !== undefined) opts.push({ kind: 'noarg', written });
        else opts.push({ kind: 'opt', opt: match.val, written });
      } else if (match.hasArg === 2) {
        opts.push(value !== undefined ? { kind: 'opt', opt: match.val, arg: value, written } : { kind: 'opt', opt: match.val, written });
      } else if (value !== undefined) {
        opts.push({ kind: 'opt', opt: match.val, arg: value, written });
      } else if (i < args.length) {
        opts.push({ kind: 'opt', opt: match.val, arg: args[i]!, written });
        i++;
      } else {
        opts.push({ kind: 'missing', written });
      }
      continue;
    }
    if (a.startsWith('-') && a.length > 1) {
      i++;
      for (let j = 1; j < a.length; j++) {
        const c = a[j]!;
        const s = shorts.get(c);
        if (!s) {
          opts.push({ kind: 'unknown', written: `-${c}`, letter: c });
          continue;
        }
        if (s.hasArg === 0) {
          opts.push({ kind: 'opt', opt: c, written: `-${c}` });
          continue;
        }
        const rest = a.slice(j + 1);
        if (rest !== '') {
          opts.push({ kind: 'opt', opt: c, arg: rest, written: `-${c}` });
        } else if (s.hasArg === 2) {
          opts.push({ kind: 'opt', opt: c, written: `-${c}` });
        } else if (i < args.length) {
          opts.push({ kind: 'opt', opt: c, arg: args[i]!, written: `-${c}` });
          i++;
        } else {
          opts.push({ kind: 'missing', written: `-${c}`, letter: c });
        }
        break;
      }
      continue;
    }
    if (noPermute) {
      operands.push(...args.slice(i));
      break;
    }
    operands.push(a);
    i++;
  }
  return { opts, operands };
}
