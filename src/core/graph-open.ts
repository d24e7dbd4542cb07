/**
 * Opening nodes from options: the driver from the options (or the protocol
 * from the filename, or the probed format), the common node options
 * (node-name, read-only, discard, detect-zeroes, cache), the driver's open,
 * then limits, length and the backing child.
 */
import type { BlockGraph } from './graph.js';
import { BlockNode, type DetectZeroes } from './node.js';
import { einval, toBlockError } from './errors.js';
import { OptionReader, flatKeys, normalizeOptions, parseJsonFilename, type BlockOptions } from './options.js';
import { probeFormat } from './probe.js';
import { openBacking } from './backing-open.js';
import { refreshFilename } from './filename.js';
import { discardNode } from './graph-close.js';
import { ChildRole, type ChildRoleMask } from './permissions.js';

/** Where in an open a node is opened: below which image, as which child, how deep in a chain. */
export interface OpenContext {
  inheritFrom?: BlockNode;
  readOnly?: boolean;
  relativeTo?: BlockNode;
  childKey?: string;
  depth?: number;
  /** {@link chainKey}s of the images above this one in the backing chain being opened. */
  chain?: string[];
  /** Set for the protocol layer opened below a probed format. */
  probing?: boolean;
  /** The role of the child being opened (BdrvChildRole), when it is one. */
  role?: ChildRoleMask;
  /** `backing: null` comes from the opener's noBacking flag, not from the user's options. */
  noBackingFlag?: boolean;
  /**
   * Opened with QEMU's BDRV_O_NO_BACKING while the options name a backing
   * (qemu-img info, compare): nothing reads them, so they are refused as
   * unknown options, as QEMU's open refuses them.
   */
  backingOptionsUnread?: boolean;
}

/** Opens one node (and, through its driver, its children). */
export async function openNode(graph: BlockGraph, input: BlockOptions, ctx: OpenContext = {}): Promise<BlockNode> {
  let options: BlockOptions = { ...input };
  if (typeof options.filename === 'string' && options.filename.startsWith('json:')) {
    const fromJson = parseJsonFilename(options.filename);
    delete options.filename;
    options = normalizeOptions({ ...fromJson, ...options });
  }
  if (options.driver === undefined) {
    const fileObj = typeof options.file === 'object' && options.file !== null && !Array.isArray(options.file) ? (options.file as BlockOptions) : undefined;
    if (typeof options.filename !== 'string' && !fileObj) {
      throw einval(
        ctx.childKey
          ? `A block device must be specified for "${ctx.childKey}" (no driver and no filename given)`
          : 'Must specify either driver or file',
      );
    }
    // As QEMU's bdrv_inherited_options: metadata children (blklogwrites' log) are never probed,
    // nor is what a filter passes through (blkverify's `raw`): it inherits the filter's protocol flag.
    const inherited = ctx.role !== undefined && (ctx.role & (ChildRole.METADATA | ChildRole.FILTERED)) !== 0;
    if (ctx.childKey === 'file' || ctx.childKey === 'data-file' || ctx.childKey === 'image' || ctx.probing || inherited) {
      // A protocol is chosen by its file name alone (QEMU's bdrv_fill_options).
      if (typeof options.filename !== 'string') throw einval('Must specify either driver or file');
      options.driver = (await graph.protocolForOpen(options.filename)).name;
    } else {
      const { filename, file, ...formatOpts } = options;
      const protoOpts: BlockOptions = { ...(fileObj ?? {}) };
      if (typeof filename === 'string') protoOpts.filename = filename;
      if (protoOpts.driver === undefined) protoOpts.driver = (await graph.protocolForOpen(String(protoOpts.filename ?? ''))).name;
      void file;
      return openProbed(graph, protoOpts, formatOpts, ctx);
    }
  }
  if (typeof options.driver !== 'string') throw einval(`Parameter 'driver' expects a string, got '${JSON.stringify(options.driver)}'`);
  const driver = graph.getDriver(options.driver);
  // Protocols and filters with a prefix (blkdebug:) parse their filename into options.
  const parsesFilename = driver.kind === 'protocol' || driver.protocolPrefixes !== undefined;
  if (parsesFilename && typeof options.filename === 'string' && driver.parseFilename) {
    const { filename, ...rest } = options;
    options = normalizeOptions({ ...driver.parseFilename(filename, flatKeys(rest)), ...rest });
  }
  if (driver.kind !== 'protocol' && typeof options.filename === 'string') {
    // The filename names the file child, merged with the file.* options given beside it (QEMU's bdrv_open_inherit).
    const file = options.file;
    if (file === undefined) {
      options.file = { filename: options.filename };
      delete options.filename;
    } else if (typeof file === 'object' && file !== null && !Array.isArray(file) && (file as BlockOptions).filename === undefined) {
      options.file = { ...(file as BlockOptions), filename: options.filename };
      delete options.filename;
    }
  }
  const owner = `Block ${parsesFilename ? 'protocol' : 'format'} '${driver.name}'`;
  const reader = new OptionReader(options, owner, ctx.childKey ? `${ctx.childKey}.` : '', '');
  reader.consume('driver');
  // QEMU's bdrv_open_inherit looks up a format's file child before it checks the node-name:
  // with both wrong, the missing child is what it reports.
  if (driver.kind !== 'protocol' && typeof options.file === 'string') graph.findNode(options.file);
  const nodeName = graph.claimNodeName(reader.string('node-name'));
  const parent = ctx.inheritFrom;
  const readOnly = reader.bool('read-only') ?? ctx.readOnly ?? parent?.readOnly ?? false;
  reader.bool('auto-read-only');
  // QEMU's BDRV_O_NO_IO and BDRV_O_CHECK are open flags every driver gets: the drivers that
  // care read these options (qcow2, qcow, luks, vhdx, qed), the others ignore them.
  reader.consume('x-no-io', 'x-check');
  // As QEMU's bdrv_inherited_options: children (file, backing) take the parent's force-share by default.
  const forceShare = reader.bool('force-share') ?? parent?.forceShare ?? false;
  const discard = reader.choice('discard', ['ignore', 'off', 'unmap', 'on'] as const);
  const detect = reader.choice('detect-zeroes', ['off', 'on', 'unmap'] as const, 'off');
  const cacheRef = reader.child('cache');
  // As QEMU's bdrv_inherited_options: children of every role take cache.direct and cache.no-flush unless set.
  let noFlush = parent?.noFlush ?? false;
  let direct = parent?.direct ?? false;
  if (cacheRef !== undefined && cacheRef !== null) {
    if (typeof cacheRef === 'string') throw einval(`Parameter 'cache' expects an object, got '${cacheRef}'`);
    const cache = new OptionReader(cacheRef, owner, `${reader.prefix}cache.`, 'cache.');
    direct = cache.bool('direct', direct);
    noFlush = cache.bool('no-flush', noFlush);
    cache.finish();
  }
  // backing=null ("no backing file", set by noBacking) is harmless for drivers without backing.
  if (!driver.supportsBacking && options.backing === null) reader.consume('backing');
  const backingRef = ctx.backingOptionsUnread ? null : driver.supportsBacking ? reader.child('backing') : undefined;
  const filename = typeof options.filename === 'string' ? options.filename : typeof options.path === 'string' ? options.path : '';
  const node = new BlockNode(graph, driver, nodeName, options, input, readOnly, filename);
  // As QEMU's bdrv_inherited_options: a child defaults to discard=unmap whatever its parent
  // says (the parent's own policy already decides which discards reach it).
  node.discardUnmap = discard ? discard === 'unmap' || discard === 'on' : parent !== undefined || ctx.probing === true;
  node.detectZeroes = detect as DetectZeroes;
  node.noFlush = noFlush;
  node.direct = direct;
  node.forceShare = forceShare;
  graph.registerNode(node);
  try {
    if (node.detectZeroes === 'unmap' && !node.discardUnmap) {
      throw einval("setting detect-zeroes to unmap is not allowed without setting discard operation to unmap");
    }
    if (forceShare && !readOnly) throw einval('force-share=on can only be used with read-only images');
    node.instance = await driver.open(node, reader);
    node.isOpen = true;
    reader.finish();
    node.openFilename = node.filename;
    node.noBackingFlag = ctx.noBackingFlag === true && backingRef === null;
    graph.refreshLimits(node);
    await node.refreshLength();
    if (driver.supportsBacking) await openBacking(graph, node, backingRef, ctx.depth ?? 0, ctx.chain ?? []);
    refreshFilename(node);
    return node;
  } catch (e) {
    await discardNode(graph, node);
    throw toBlockError(e, { node: nodeName });
  }
}

/** Opens an image without a format: the protocol first, then the probed format on top. */
async function openProbed(graph: BlockGraph, protoOpts: BlockOptions, formatOpts: BlockOptions, ctx: OpenContext): Promise<BlockNode> {
  const readOnly = typeof formatOpts['read-only'] === 'boolean' ? formatOpts['read-only'] : ctx.readOnly;
  // The protocol is the format's file: it takes the format's force-share and cache options unless it has its own.
  const share = formatOpts['force-share'];
  const protoIn: BlockOptions = share !== undefined && protoOpts['force-share'] === undefined ? { ...protoOpts, 'force-share': share } : { ...protoOpts };
  const cacheOf = (o: BlockOptions): BlockOptions => (typeof o.cache === 'object' && o.cache !== null && !Array.isArray(o.cache) ? (o.cache as BlockOptions) : {});
  const cache = { ...cacheOf(formatOpts), ...cacheOf(protoOpts) };
  if (Object.keys(cache).length > 0) protoIn.cache = cache;
  const proto = await openNode(graph, protoIn, { ...ctx, readOnly, probing: true, childKey: 'file' });
  try {
    // Like QEMU, a short file is probed as if padded with zeros to 512 bytes.
    const header = new Uint8Array(proto.length > 0 ? 512 : 0);
    if (header.length > 0) {
      const reader = await graph.attachRoot({ kind: 'root', name: 'format probe' }, proto, 0, 0x1f);
      try {
        await reader.read(0, header.subarray(0, Math.min(512, proto.length)));
      } finally {
        await graph.detachRoot(reader);
      }
    }
    const fmt = probeFormat(graph, header, proto.filename);
    const node = await openNode(
      graph,
      { ...formatOpts, driver: fmt.name, file: proto.nodeName },
      { ...ctx, readOnly, probing: false, childKey: undefined },
    );
    if (fmt.name === 'raw') node.probed = true;
    // The protocol is the format's own child (QEMU opens it as such): reopens of the format carry over.
    proto.inheritsFrom = node;
    return node;
  } finally {
    // The format node holds its own reference now (or failed to open).
    await proto.unref();
  }
}
