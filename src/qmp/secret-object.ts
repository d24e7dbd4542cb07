/**
 * `--object secret,id=ID,data=...|file=...[,format=raw|base64]` as QEMU's
 * crypto/secret.c reads it: the property checks and their messages, then
 * the data loaded (`file` read whole, base64 decoded when asked). Secrets
 * encrypted with another secret (`keyid`, `iv`) are refused.
 */
import { BlockError, einval, systemErrorText } from '../core/errors.js';

export interface SecretProps {
  data?: string;
  file?: string;
  format: 'raw' | 'base64';
  keyid?: string;
  iv?: string;
}

/** The properties `secret,help` lists. */
export function secretHelp(): string {
  return 'secret options:\n  data=<string>\n  file=<string>\n  format=<QCryptoSecretFormat>\n  iv=<string>\n  keyid=<string>\n';
}

/** QEMU's visit of a secret's properties: types first, then unknown keys. */
export function visitSecret(props: Record<string, unknown>, keyval = false): SecretProps {
  const str = (key: string): string | undefined => {
    const v = props[key];
    if (v === undefined) return undefined;
    if (typeof v !== 'string') throw einval(`Invalid parameter type for '${key}', expected: string`);
    return v;
  };
  // QAPI's order (SecretCommonProperties, then SecretProperties): loaded, format, keyid, iv, data, file.
  const loaded = props['loaded'];
  // A boolean: JSON true/false, or (key=value text) a word QEMU reads as one.
  if (loaded !== undefined && typeof loaded !== 'boolean' && !(keyval && typeof loaded === 'string' && /^(on|off|yes|no|true|false)$/.test(loaded))) {
    throw einval("Invalid parameter type for 'loaded', expected: boolean");
  }
  const out: SecretProps = { format: 'raw' };
  const format = str('format');
  if (format !== undefined) {
    if (format !== 'raw' && format !== 'base64') throw einval(`Parameter 'format' does not accept value '${format}'`);
    out.format = format;
  }
  for (const key of ['keyid', 'iv', 'data', 'file'] as const) {
    const v = str(key);
    if (v !== undefined) out[key] = v;
  }
  const known = new Set(['data', 'file', 'format', 'keyid', 'iv', 'loaded']);
  const unknown = Object.keys(props).find((k) => !known.has(k));
  if (unknown !== undefined) throw einval(`Parameter '${unknown}' is unexpected`);
  // The property exists (deprecated) but may not be set.
  if (loaded !== undefined) throw einval("Property 'secret.loaded' is not writable");
  return out;
}

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

/** Base64 as glib decodes it: characters outside the alphabet are skipped, a partial group is dropped. */
function decodeBase64(text: string): Uint8Array {
  const out: number[] = [];
  let acc = 0;
  let bits = 0;
  for (const c of text) {
    if (c === '=') break;
    const v = B64.indexOf(c);
    if (v < 0) continue;
    acc = (acc << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push((acc >> bits) & 0xff);
    }
  }
  return Uint8Array.from(out);
}

/** Loads the secret's bytes (QEMU's complete step, with its messages). */
export function secretData(p: SecretProps): Uint8Array {
  let raw: Uint8Array;
  if (p.file !== undefined) {
    if (p.data !== undefined) throw einval("'file' and 'data' are mutually exclusive");
    const get = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process?.getBuiltinModule;
    if (typeof get !== 'function') throw new BlockError('ENOTSUP', `Unable to read ${p.file}: no file system here`);
    const fs = get('node:fs') as typeof import('node:fs');
    try {
      raw = new Uint8Array(fs.readFileSync(p.file));
    } catch (e) {
      throw einval(`Unable to read ${p.file}: Failed to open file \u201c${p.file}\u201d: ${systemErrorText(e)}`);
    }
  } else if (p.data !== undefined) {
    raw = new TextEncoder().encode(p.data);
  } else {
    throw einval("Either 'file' or 'data' must be provided");
  }
  if (p.keyid !== undefined) {
    raw.fill(0);
    throw new BlockError('ENOTSUP', `Secret encrypted with secret '${p.keyid}' (keyid, iv) is not supported by DiskWorker`);
  }
  if (p.format === 'base64') {
    const decoded = decodeBase64(new TextDecoder().decode(raw));
    raw.fill(0);
    return decoded;
  }
  return raw;
}
