/**
 * Where an NBD client connects: the filenames and options QEMU's nbd driver
 * takes (block/nbd.c), turned into one server address and export name.
 *
 * Filenames: `nbd://host[:port]/[export]` (also `nbd+tcp://`),
 * `nbd+unix:///[export]?socket=path`, and the older `nbd:host:port[:exportname=name]`
 * / `nbd:unix:path[:exportname=name]`. Options: `server.type` (inet | unix) with
 * `server.host` / `server.port` or `server.path`, the legacy `host` / `port` / `path`,
 * and `export`. The default port is 10809.
 */
import { einval } from '../core/errors.js';
import type { OptionReader } from '../core/options.js';

/** The NBD port IANA assigned. */
export const NBD_DEFAULT_PORT = 10809;

/** A server address: a Unix socket or a TCP host and port. */
export type NbdServerAddress = { type: 'unix'; path: string } | { type: 'inet'; host: string; port: string };

const NO_URL = 'No valid URL specified';

/** The options of an `nbd://`, `nbd+tcp://` or `nbd+unix://` URL, as QEMU's nbd_parse_uri reads them. */
function parseUri(filename: string): Record<string, string> {
  const m = /^([a-z+]+):\/\/([^/?#]*)([^?#]*)(?:\?([^#]*))?$/.exec(filename);
  if (!m) throw einval(NO_URL);
  const [, scheme, authority, path, query] = m as unknown as [string, string, string, string, string | undefined];
  const isUnix = scheme === 'nbd+unix';
  if (!isUnix && scheme !== 'nbd' && scheme !== 'nbd+tcp') throw einval(NO_URL);
  const out: Record<string, string> = {};
  const exportName = decodeURIComponent(path.startsWith('/') ? path.slice(1) : path);
  if (exportName) out.export = exportName;
  const params = query ? query.split(/[&;]/).filter((p) => p !== '') : [];
  if (params.length > 1 || (isUnix && params.length === 0) || (!isUnix && params.length > 0)) throw einval(NO_URL);
  if (isUnix) {
    const eq = params[0]!.indexOf('=');
    const name = eq < 0 ? params[0]! : params[0]!.slice(0, eq);
    if (authority !== '' || name !== 'socket') throw einval(NO_URL);
    out['server.type'] = 'unix';
    out['server.path'] = eq < 0 ? '' : decodeURIComponent(params[0]!.slice(eq + 1));
    return out;
  }
  // host, [v6 literal], optional :port; a user part is not a server.
  const hp = /^(?:[^@]*@)?(\[[^\]]*\]|[^:]*)(?::(\d*))?$/.exec(authority);
  if (!hp || hp[1] === '') throw einval(NO_URL);
  const host = hp[1]!.startsWith('[') ? hp[1]!.slice(1, -1) : decodeURIComponent(hp[1]!);
  const port = hp[2] ? Number(hp[2]) : 0;
  out['server.type'] = 'inet';
  out['server.host'] = host;
  out['server.port'] = String(port || NBD_DEFAULT_PORT);
  return out;
}

/** `host:port` as QEMU's inet_parse splits it (a `[v6]` literal keeps its colons). */
function parseHostPort(spec: string): { host: string; port: string } {
  const v6 = /^\[([^\]]*)\]:(.*)$/.exec(spec);
  if (v6) return { host: v6[1]!, port: v6[2]! };
  const colon = spec.indexOf(':');
  if (colon < 0) throw einval(`error parsing address '${spec}'`);
  return { host: spec.slice(0, colon), port: spec.slice(colon + 1) };
}

/**
 * The options a filename names (QEMU's nbd_parse_filename). Refused beside
 * explicit address or export options.
 */
export function parseNbdFilename(filename: string, explicit: readonly string[] = []): Record<string, string> {
  for (const k of explicit) {
    if (k === 'host' || k === 'port' || k === 'path' || k === 'export' || k.startsWith('server.')) {
      throw einval(`Option '${k}' cannot be used with a file name`);
    }
  }
  if (filename.includes('://')) return parseUri(filename);
  const out: Record<string, string> = {};
  let file = filename;
  const en = file.indexOf(':exportname=');
  if (en >= 0) {
    // QEMU ignores a filename ending in an empty ':exportname=' altogether.
    if (en + ':exportname='.length === file.length) return out;
    out.export = file.slice(en + ':exportname='.length);
    file = file.slice(0, en);
  }
  if (!file.startsWith('nbd:')) throw einval("File name string for NBD must start with 'nbd:'");
  const spec = file.slice(4);
  if (spec === '') return out;
  if (spec.startsWith('unix:')) {
    out['server.type'] = 'unix';
    out['server.path'] = spec.slice(5);
  } else {
    const { host, port } = parseHostPort(spec);
    out['server.type'] = 'inet';
    out['server.host'] = host;
    out['server.port'] = port;
  }
  return out;
}

/**
 * The server address of the open options: `server.*`, or the legacy
 * `host` / `port` / `path` (QEMU's nbd_process_legacy_socket_options and
 * nbd_config, with their messages).
 */
export function readNbdServer(options: OptionReader): NbdServerAddress {
  const path = options.string('path');
  const host = options.string('host');
  const port = options.string('port');
  const given = options.child('server');
  if (typeof given === 'string') throw einval("Parameter 'server' expects an object", {}, `got '${given}'`);
  const server: Record<string, unknown> = { ...(given ?? {}) };
  if (path !== undefined || host !== undefined || port !== undefined) {
    if (Object.keys(server).length) throw einval("Cannot use 'server' and path/host/port at the same time");
    if (path !== undefined && host !== undefined) throw einval('path and host may not be used at the same time');
    if (path !== undefined) {
      if (port !== undefined) throw einval('port may not be used without host');
      server.type = 'unix';
      server.path = path;
    } else if (host !== undefined) {
      server.type = 'inet';
      server.host = host;
      server.port = port ?? String(NBD_DEFAULT_PORT);
    }
  }
  if (Object.keys(server).length === 0) throw einval('NBD server address missing');
  const text = (k: string): string | undefined => {
    const v = server[k];
    if (v === undefined) return undefined;
    if (typeof v === 'string' || typeof v === 'number') return String(v);
    throw einval(`Parameter '${k}' expects a string`);
  };
  const type = text('type');
  if (type === undefined) throw einval("Parameter 'type' is missing");
  const allowed: Record<string, readonly string[]> = { unix: ['type', 'path', 'abstract', 'tight'], inet: ['type', 'host', 'port', 'numeric', 'to', 'ipv4', 'ipv6', 'keep-alive'] };
  const members = allowed[type];
  if (!members) throw einval(`Parameter 'type' does not accept value '${type}'`);
  for (const k of Object.keys(server)) {
    if (!members.includes(k)) throw einval(`Parameter '${k}' is unexpected`);
  }
  if (type === 'unix') {
    const p = text('path');
    if (p === undefined) throw einval("Parameter 'path' is missing");
    return { type, path: p };
  }
  const h = text('host');
  const pt = text('port');
  if (h === undefined) throw einval("Parameter 'host' is missing");
  if (pt === undefined) throw einval("Parameter 'port' is missing");
  return { type: 'inet', host: h, port: pt };
}

/** The name QEMU's nbd_refresh_filename gives the node. */
export function nbdFilename(addr: NbdServerAddress, exportName: string | undefined): string {
  if (addr.type === 'unix') return exportName !== undefined ? `nbd+unix:///${exportName}?socket=${addr.path}` : `nbd+unix://?socket=${addr.path}`;
  return exportName !== undefined ? `nbd://${addr.host}:${addr.port}/${exportName}` : `nbd://${addr.host}:${addr.port}`;
}

/** How QEMU names the address in "Failed to connect to '...'". */
export function describeNbdServer(addr: NbdServerAddress): string {
  return addr.type === 'unix' ? addr.path : `${addr.host}:${addr.port}`;
}
