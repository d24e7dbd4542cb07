/**
 * TCP service names as getaddrinfo resolves them for QEMU's sockets
 * (`addr.port=nbd` listens on 10809): looked up by name or alias in the
 * host's /etc/services. Outside Node, or where the file is missing, no name
 * resolves, and the caller refuses it as glibc does ("Servname not
 * supported for ai_socktype").
 */

type NodeFs = typeof import('node:fs');

/** node:fs when running in Node (the module is shared with the browser worker). */
function nodeFs(): NodeFs | undefined {
  const p = (globalThis as { process?: { versions?: { node?: string }; getBuiltinModule?: (id: string) => unknown } }).process;
  if (typeof p?.versions?.node !== 'string' || typeof p.getBuiltinModule !== 'function') return undefined;
  return p.getBuiltinModule('node:fs') as NodeFs;
}

/** The TCP port of service `name` (a name or alias in `servicesText`, /etc/services' format), or undefined. */
export function findTcpService(servicesText: string, name: string): number | undefined {
  for (const raw of servicesText.split('\n')) {
    // "name port/proto [aliases...] [# comment]"
    const fields = raw.replace(/#.*/, '').trim().split(/\s+/);
    if (fields.length < 2) continue;
    const m = /^(\d+)\/tcp$/.exec(fields[1]!);
    if (!m) continue;
    if (fields[0] === name || fields.slice(2).includes(name)) return Number(m[1]);
  }
  return undefined;
}

/** The TCP port /etc/services gives service `name`, or undefined. */
export function tcpServicePort(name: string, file = '/etc/services'): number | undefined {
  let text: string;
  try {
    const fs = nodeFs();
    if (!fs) return undefined;
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  return findTcpService(text, name);
}
