/**
 * Opening the backing child of a format node: the file the image names (or
 * the node or options given), resolved against the image's location under
 * the graph's backing policy, with loop and depth checks.
 */
import type { BlockGraph } from './graph.js';
import type { BlockNode } from './node.js';
import { BackingLoopError, chainKey, loopErrorFor } from './backing-loop.js';
import { mergeBackingOptions, namesItsFile } from './backing-options.js';
import { BlockError, einval, toBlockError } from './errors.js';
import { parseJsonFilename, type BlockOptions } from './options.js';
import { ChildRole, ROLE_BACKING } from './permissions.js';

/** Opens the backing child of a format node. */
export async function openBacking(
  graph: BlockGraph,
  node: BlockNode,
  ref: BlockOptions | string | null | undefined,
  depth: number,
  chain: string[],
) {
  if (ref === null) return;
  const key = chainKey(protocolNodeOf(node));
  // This image already sits above us: the parent that named it says which file loops.
  if (chain.includes(key)) throw new BackingLoopError('loop', false);
  if (typeof ref === 'string') {
    const b = graph.findNode(ref);
    b.ref();
    try {
      await graph.attachChild(node, b, 'backing', ROLE_BACKING);
    } catch (e) {
      await b.unref();
      throw e;
    }
    return;
  }
  let options: BlockOptions;
  let backingName: string | undefined;
  const named = node.instance.backingFile?.();
  if (ref && namesItsFile(ref)) {
    options = ref;
  } else if (named && named.filename !== '') {
    // As QEMU: options given for the backing child still open the file the image names.
    backingName = named.filename;
    try {
      graph.checkProtocolName(named.filename);
    } catch (e) {
      throw toBlockError(e).withPrefix('Could not open backing file');
    }
    options = mergeBackingOptions(resolveBacking(graph, node, named.filename, named.format), ref ?? {}, (d) => graph.lookupDriver(d)?.kind === 'protocol');
  } else if (ref) {
    options = ref;
  } else {
    return;
  }
  if (depth + 1 >= graph.backingPolicy.maxDepth) {
    throw new BackingLoopError(
      `Backing chain of node '${node.nodeName}' is deeper than ${graph.backingPolicy.maxDepth} images (a loop in the chain?)`,
      true,
    );
  }
  let backing: BlockNode;
  try {
    backing = await graph.openNode(options, {
      readOnly: true,
      relativeTo: node,
      childKey: undefined,
      depth: depth + 1,
      chain: [...chain, key],
      // As QEMU's backing files, inherit discard and cache.no-flush (read-only is set above).
      inheritFrom: node,
    });
  } catch (e) {
    // QEMU's wording (bdrv_open_backing_file), which qemu-img / qemu-io users see.
    throw loopErrorFor(e, backingName, node.nodeName) ?? toBlockError(e).withPrefix('Could not open backing file');
  }
  try {
    await graph.attachChild(node, backing, 'backing', ROLE_BACKING);
  } catch (e) {
    await backing.unref();
    throw e;
  }
  // Opened from the image's name alone: that node's name is the one the image stands for (QEMU's auto_backing_file).
  if (backingName !== undefined && (ref === undefined || Object.keys(ref).length === 0)) {
    node.implicitBacking = { named: backingName, filename: backing.filename };
  }
}

/** The protocol node at the bottom of a node's file chain. */
export function protocolNodeOf(node: BlockNode): BlockNode {
  let n = node;
  for (let i = 0; i < 64 && n.driver.kind !== 'protocol'; i++) {
    const f = n.file;
    if (!f) break;
    n = f.node;
  }
  return n;
}

/**
 * The directory relative names of `node`'s image are taken from (QEMU's
 * bdrv_dirname), ending in '/' or empty: that of the primary child where
 * there is one (a format's file, a filter's filtered node), else that of the
 * node's own plain filename. EINVAL for a node no plain name describes
 * (a quorum, a json: name): relative names cannot be resolved there.
 */
export function nodeDirname(node: BlockNode): string {
  let n = node;
  for (let depth = 0; depth < 64; depth++) {
    if (n.driver.noBaseDirectory) {
      throw new BlockError('EINVAL', `Cannot generate a base directory for ${n.driver.name} nodes`, { node: n.nodeName });
    }
    const primary = n.children.find((c) => c.role & ChildRole.PRIMARY);
    if (!primary) break;
    n = primary.node;
  }
  const name = n.filename;
  if (!name || name.startsWith('json:')) {
    throw new BlockError('EINVAL', `Cannot generate a base directory for ${n.driver.name} nodes`, { node: n.nodeName });
  }
  if (/^[a-zA-Z][a-zA-Z0-9+.-]*:\/\//.test(name)) {
    try {
      return new URL('.', name).toString();
    } catch {
      throw einval(`Cannot generate a base directory for '${name}'`);
    }
  }
  return name.slice(0, name.lastIndexOf('/') + 1);
}

/**
 * Turns a backing file name stored in an image into open options, applying
 * the backing policy: relative names are joined to the image's directory on
 * the same protocol; another protocol must be allowed explicitly.
 */
export function resolveBacking(graph: BlockGraph, image: BlockNode, name: string, format?: string): BlockOptions {
  // The storage the image lives on: down its primary children (through a blkdebug filter's `image` too).
  let base = image;
  for (let i = 0; i < 64 && base.driver.kind !== 'protocol'; i++) {
    const p = base.file ?? base.children.find((c) => c.role & ChildRole.PRIMARY);
    if (!p) break;
    base = p.node;
  }
  const baseProto = base.driver.name;
  let options: BlockOptions;
  if (name.startsWith('json:')) {
    options = parseJsonFilename(name);
  } else {
    // A colon before any slash names a protocol, as for names given by the user.
    graph.checkProtocolName(name);
    // A name without a prefix lives on the image's own storage (the default protocol need not exist here).
    const prefixed = graph.listDrivers().find((d) => d.protocolPrefixes?.some((p) => name.startsWith(p)));
    const explicitPrefix = prefixed !== undefined;
    let filename = name;
    if (!explicitPrefix && !name.startsWith('/')) filename = joinRelative(nodeDirname(image), name);
    // Without backing_fmt the driver stays unset and the format is probed, as QEMU does.
    // A local name may be a file or a host device: the protocol is probed when it opens.
    const fileDriver = prefixed ? prefixed.name : isLocalProtocol(graph, baseProto) ? undefined : baseProto;
    options = { driver: format, file: fileDriver === undefined ? { filename } : { driver: fileDriver, filename } };
  }
  const wanted = findProtocolName(options, graph) ?? baseProto;
  const sameFamily = wanted === baseProto || (isLocalProtocol(graph, wanted) && isLocalProtocol(graph, baseProto));
  if (!sameFamily && !graph.backingPolicy.allowedProtocols.includes(wanted)) {
    throw new BlockError(
      'EACCES',
      `Backing file '${name}' of node '${image.nodeName}' is on protocol '${wanted}' while the image is on ` +
        `'${baseProto}'; allow it with backingPolicy.allowedProtocols or pass backing options explicitly`,
      { node: image.nodeName },
    );
  }
  return options;
}

/** The default protocol and the device protocols probed in its place share one namespace. */
function isLocalProtocol(graph: BlockGraph, name: string): boolean {
  return name === graph.defaultProtocol || !!graph.lookupDriver(name)?.probeDevice;
}

/** Resolves `rel` against the directory of `base` (paths or URLs). */
export function joinRelative(base: string, rel: string): string {
  if (rel.startsWith('/') || /^[a-zA-Z][a-zA-Z0-9+.-]*:\/\//.test(rel)) return rel;
  if (/^[a-zA-Z][a-zA-Z0-9+.-]*:\/\//.test(base)) {
    try {
      return new URL(rel, base).toString();
    } catch {
      throw einval(`Cannot resolve backing file '${rel}' relative to '${base}'`);
    }
  }
  const slash = base.lastIndexOf('/');
  return slash < 0 ? rel : base.slice(0, slash + 1) + rel;
}

function findProtocolName(options: BlockOptions, graph: BlockGraph): string | undefined {
  let o: BlockOptions | undefined = options;
  for (let i = 0; i < 16 && o; i++) {
    const d = typeof o.driver === 'string' ? o.driver : undefined;
    if (d) {
      // An unknown driver is reported as such when the node opens, not taken for a protocol.
      if (graph.listDrivers().some((x) => x.name === d && x.kind === 'protocol')) return d;
    }
    const f: unknown = o.file;
    if (typeof f === 'object' && f !== null && !Array.isArray(f)) o = f as BlockOptions;
    else if (typeof o.filename === 'string') return graph.protocolFor(o.filename).name;
    else return undefined;
  }
  return undefined;
}
