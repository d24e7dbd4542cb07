/**
 * The block graph: driver and node-name registries, opening nodes from
 * options, attaching / detaching / replacing children, reopen and close.
 *
 * One BlockGraph is one QEMU "block layer instance". The worker hosts one; the
 * CLI and tests make their own.
 */
import type { BlockDriver } from './driver.js';
import { BackingLoopError, chainKey, loopErrorFor } from './backing-loop.js';
import { mergeBackingOptions, namesItsFile } from './backing-options.js';
import { BdrvChild, parentName, type RootParent } from './child.js';
import { BlockNode, type DetectZeroes } from './node.js';
import { BlockError, einval, toBlockError } from './errors.js';
import { OptionReader, normalizeOptions, parseJsonFilename, type BlockOptions } from './options.js';
import { ROLE_BACKING, type ChildRoleMask, type PermMask } from './permissions.js';
import { preparePermUpdate, refreshPerms, topologicalOrder } from './perm-update.js';
import { defaultLimits, mergeLimits, validateLimits } from './limits.js';
import { flush } from './request-path.js';
import { releaseDirtyBitmaps } from './dirty-bitmap.js';
import { drainBegin, drainEnd } from './drain.js';
import { probeFormat } from './probe.js';
import { ChildRole } from './permissions.js';

/** How backing files named inside images may be opened. */
export interface BackingPolicy {
  /**
   * Protocols (driver names) a backing file may use even when the image lives
   * on another protocol, e.g. `['http']` for an OPFS overlay over a web image.
   */
  allowedProtocols: string[];
  /** Deepest backing chain accepted (a loop ends here). */
  maxDepth: number;
}

/** Options of {@link BlockGraph.open} beyond the blockdev options. */
export interface OpenFlags {
  /** Open read-only (default false). */
  readOnly?: boolean;
  /** Image format; when absent the format is probed. */
  format?: string;
  /** Do not open the backing file named in the image. */
  noBacking?: boolean;
}

interface OpenContext {
  inheritFrom?: BlockNode;
  readOnly?: boolean;
  relativeTo?: BlockNode;
  childKey?: string;
  depth?: number;
  /** {@link chainKey}s of the images above this one in the backing chain being opened. */
  chain?: string[];
  /** Set for the protocol layer opened below a probed format. */
  probing?: boolean;
}

const NODE_NAME_RE = /^[A-Za-z][A-Za-z0-9_.-]{0,30}$/;

/** A block layer instance. */
export class BlockGraph {
  private readonly drivers = new Map<string, BlockDriver>();
  private readonly nodes = new Map<string, BlockNode>();
  private nextGenerated = 0;
  /** Protocol used for plain filenames without a `proto:` prefix. */
  defaultProtocol: string;
  /** Rules for backing files named inside images. */
  backingPolicy: BackingPolicy = { allowedProtocols: [], maxDepth: 64 };
  /**
   * Where drivers' notices go: events a user should hear of that are not the
   * error of a request, such as qcow2 marking an image corrupt (QEMU prints
   * these on stderr). Default: dropped.
   */
  onNotice: ((text: string) => void) | null = null;

  /** Passes a driver's notice to {@link onNotice}. */
  notice(text: string): void {
    this.onNotice?.(text);
  }

  constructor(drivers: Iterable<BlockDriver>, defaultProtocol: string) {
    for (const d of drivers) this.registerDriver(d);
    this.defaultProtocol = defaultProtocol;
  }

  /** Adds a driver (its name must be new). */
  registerDriver(driver: BlockDriver): void {
    if (this.drivers.has(driver.name)) throw einval(`Driver '${driver.name}' is already registered`);
    this.drivers.set(driver.name, driver);
  }

  /** A driver by name; EINVAL "Unknown driver" when absent. */
  getDriver(name: string): BlockDriver {
    const d = this.drivers.get(name);
    if (!d) throw einval(`Unknown driver '${name}'`);
    if (d.isAvailable && !d.isAvailable()) {
      throw new BlockError('ENOTSUP', `Driver '${name}' is not available in this environment`);
    }
    return d;
  }

  /** Every registered driver. */
  listDrivers(): BlockDriver[] {
    return [...this.drivers.values()];
  }

  /** Every open node. */
  listNodes(): BlockNode[] {
    return [...this.nodes.values()];
  }

  /** A node by node-name (a child reference: QEMU looks it up as device and node name); ENOENT when absent. */
  findNode(name: string): BlockNode {
    const n = this.nodes.get(name);
    if (!n) throw new BlockError('ENOENT', `Cannot find device='${name}' nor node-name='${name}'`);
    return n;
  }

  /** Whether a node-name is taken. */
  hasNode(name: string): boolean {
    return this.nodes.has(name);
  }

  /**
   * Opens a node. `spec` is a filename (`disk.qcow2`, `opfs:/a.img`,
   * `json:{...}`) or blockdev-add options (nested or dotted keys). Without a
   * format (`driver` or `flags.format`) the format is probed. The caller owns
   * one reference: release it with `node.unref()`.
   */
  async open(spec: string | Record<string, unknown>, flags: OpenFlags = {}): Promise<BlockNode> {
    let options: BlockOptions;
    if (typeof spec === 'string') {
      options = spec.startsWith('json:') ? parseJsonFilename(spec) : { filename: spec };
    } else {
      options = normalizeOptions(spec);
    }
    if (flags.format) {
      if (options.driver !== undefined && options.driver !== flags.format) {
        throw einval(`Cannot use format '${flags.format}' with options that name driver '${String(options.driver)}'`);
      }
      options = { ...options, driver: flags.format };
    }
    if (flags.noBacking && options.backing === undefined) options = { ...options, backing: null };
    return this.openNode(options, { readOnly: flags.readOnly ?? false });
  }

  /**
   * QEMU's rule for a filename given as a plain string: a colon before any
   * slash names a protocol (`nbd:...`), and one no driver provides is an
   * error. Throws EINVAL "Unknown protocol 'x'"; `file:`, `json:` and the
   * drivers' prefixes pass. (Filenames inside options are never parsed.)
   */
  checkProtocolName(filename: string): void {
    const m = /^([^:/]*):/.exec(filename);
    if (!m || m[1] === 'json') return;
    for (const d of this.drivers.values()) {
      if (d.kind !== 'protocol') continue;
      if (d.name === m[1] || d.protocolPrefixes?.some((p) => p.split(':')[0] === m[1])) return;
    }
    throw new BlockError('EINVAL', `Unknown protocol '${m[1]}'`);
  }

  /** Finds the protocol driver for a filename (`proto:` prefix or the default). */
  protocolFor(filename: string): BlockDriver {
    for (const d of this.drivers.values()) {
      if (d.kind !== 'protocol' || !d.protocolPrefixes) continue;
      for (const p of d.protocolPrefixes) if (filename.startsWith(p)) return this.getDriver(d.name);
    }
    return this.getDriver(this.defaultProtocol);
  }

  /**
   * The protocol driver that opens a filename: its prefix's driver, else the
   * driver whose {@link BlockDriver.probeDevice} scores highest (a host
   * device), else the default protocol.
   */
  async protocolForOpen(filename: string): Promise<BlockDriver> {
    const byName = this.protocolFor(filename);
    if (byName.name !== this.defaultProtocol || filename.startsWith('file:')) return byName;
    let best: BlockDriver = byName;
    let bestScore = 0;
    for (const d of this.drivers.values()) {
      if (d.kind !== 'protocol' || !d.probeDevice || (d.isAvailable && !d.isAvailable())) continue;
      const score = await d.probeDevice(filename);
      if (score > bestScore) {
        best = d;
        bestScore = score;
      }
    }
    return best;
  }

  /** @internal Opens one node (and, through its driver, its children). */
  async openNode(input: BlockOptions, ctx: OpenContext = {}): Promise<BlockNode> {
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
      if (ctx.childKey === 'file' || ctx.childKey === 'data-file' || ctx.probing) {
        options.driver = (await this.protocolForOpen(String(options.filename ?? ''))).name;
      } else {
        const { filename, file, ...formatOpts } = options;
        const protoOpts: BlockOptions = { ...(fileObj ?? {}) };
        if (typeof filename === 'string') protoOpts.filename = filename;
        if (protoOpts.driver === undefined) protoOpts.driver = (await this.protocolForOpen(String(protoOpts.filename ?? ''))).name;
        void file;
        return this.openProbed(protoOpts, formatOpts, ctx);
      }
    }
    if (typeof options.driver !== 'string') throw einval(`Parameter 'driver' expects a string, got '${JSON.stringify(options.driver)}'`);
    const driver = this.getDriver(options.driver);
    if (driver.kind !== 'protocol' && typeof options.filename === 'string' && options.file === undefined) {
      options.file = { filename: options.filename };
      delete options.filename;
    }
    if (driver.kind === 'protocol' && typeof options.filename === 'string' && driver.parseFilename) {
      const { filename, ...rest } = options;
      options = normalizeOptions({ ...driver.parseFilename(filename), ...rest });
    }
    const owner = `Block ${driver.kind === 'protocol' ? 'protocol' : 'format'} '${driver.name}'`;
    const reader = new OptionReader(options, owner, ctx.childKey ? `${ctx.childKey}.` : '', '');
    reader.consume('driver');
    const nodeName = this.claimNodeName(reader.string('node-name'));
    const parent = ctx.inheritFrom;
    const readOnly = reader.bool('read-only') ?? ctx.readOnly ?? parent?.readOnly ?? false;
    reader.bool('auto-read-only');
    reader.bool('force-share');
    const discard = reader.choice('discard', ['ignore', 'off', 'unmap', 'on'] as const);
    const detect = reader.choice('detect-zeroes', ['off', 'on', 'unmap'] as const, 'off');
    const cacheRef = reader.child('cache');
    let noFlush = parent?.noFlush ?? false;
    if (cacheRef !== undefined && cacheRef !== null) {
      if (typeof cacheRef === 'string') throw einval(`Parameter 'cache' expects an object, got '${cacheRef}'`);
      const cache = new OptionReader(cacheRef, owner, `${reader.prefix}cache.`, 'cache.');
      cache.bool('direct');
      noFlush = cache.bool('no-flush', noFlush);
      cache.finish();
    }
    // backing=null ("no backing file", set by noBacking) is harmless for drivers without backing.
    if (!driver.supportsBacking && options.backing === null) reader.consume('backing');
    const backingRef = driver.supportsBacking ? reader.child('backing') : undefined;
    const filename = typeof options.filename === 'string' ? options.filename : typeof options.path === 'string' ? options.path : '';
    const node = new BlockNode(this, driver, nodeName, options, input, readOnly, filename);
    node.discardUnmap = discard ? discard === 'unmap' || discard === 'on' : (parent?.discardUnmap ?? false);
    node.detectZeroes = detect as DetectZeroes;
    node.noFlush = noFlush;
    this.nodes.set(nodeName, node);
    try {
      if (node.detectZeroes === 'unmap' && !node.discardUnmap) {
        throw einval("setting detect-zeroes to unmap is not allowed without setting discard operation to unmap");
      }
      node.instance = await driver.open(node, reader);
      node.isOpen = true;
      reader.finish();
      if (!node.filename && node.file) node.filename = node.file.node.filename;
      this.refreshLimits(node);
      await node.refreshLength();
      if (driver.supportsBacking) await this.openBacking(node, backingRef, ctx.depth ?? 0, ctx.chain ?? []);
      return node;
    } catch (e) {
      await this.discardNode(node);
      throw toBlockError(e, { node: nodeName });
    }
  }

  /** Opens an image without a format: the protocol first, then the probed format on top. */
  private async openProbed(protoOpts: BlockOptions, formatOpts: BlockOptions, ctx: OpenContext): Promise<BlockNode> {
    const readOnly = typeof formatOpts['read-only'] === 'boolean' ? formatOpts['read-only'] : ctx.readOnly;
    const proto = await this.openNode(protoOpts, { ...ctx, readOnly, probing: true, childKey: 'file' });
    try {
      // Like QEMU, a short file is probed as if padded with zeros to 512 bytes.
      const header = new Uint8Array(proto.length > 0 ? 512 : 0);
      if (header.length > 0) {
        const reader = await this.attachRoot({ kind: 'root', name: 'format probe' }, proto, 0, 0x1f);
        try {
          await reader.read(0, header.subarray(0, Math.min(512, proto.length)));
        } finally {
          await this.detachRoot(reader);
        }
      }
      const fmt = probeFormat(this, header, proto.filename);
      const node = await this.openNode(
        { ...formatOpts, driver: fmt.name, file: proto.nodeName },
        { ...ctx, readOnly, probing: false, childKey: undefined },
      );
      if (fmt.name === 'raw') node.probed = true;
      return node;
    } finally {
      // The format node holds its own reference now (or failed to open).
      await proto.unref();
    }
  }

  /** Opens the backing child of a format node. */
  private async openBacking(node: BlockNode, ref: BlockOptions | string | null | undefined, depth: number, chain: string[]) {
    if (ref === null) return;
    const key = chainKey(this.protocolNodeOf(node));
    // This image already sits above us: the parent that named it says which file loops.
    if (chain.includes(key)) throw new BackingLoopError('loop', false);
    if (typeof ref === 'string') {
      const b = this.findNode(ref);
      b.ref();
      try {
        await this.attachChild(node, b, 'backing', ROLE_BACKING);
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
        this.checkProtocolName(named.filename);
      } catch (e) {
        throw toBlockError(e).withPrefix('Could not open backing file');
      }
      options = mergeBackingOptions(this.resolveBacking(node, named.filename, named.format), ref ?? {}, (d) => this.drivers.get(d)?.kind === 'protocol');
    } else if (ref) {
      options = ref;
    } else {
      return;
    }
    if (depth + 1 >= this.backingPolicy.maxDepth) {
      throw new BackingLoopError(
        `Backing chain of node '${node.nodeName}' is deeper than ${this.backingPolicy.maxDepth} images (a loop in the chain?)`,
        true,
      );
    }
    let backing: BlockNode;
    try {
      backing = await this.openNode(options, {
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
      await this.attachChild(node, backing, 'backing', ROLE_BACKING);
    } catch (e) {
      await backing.unref();
      throw e;
    }
  }

  /** The protocol node at the bottom of a node's file chain. */
  protocolNodeOf(node: BlockNode): BlockNode {
    let n = node;
    for (let i = 0; i < 64 && n.driver.kind !== 'protocol'; i++) {
      const f = n.file;
      if (!f) break;
      n = f.node;
    }
    return n;
  }

  /**
   * Turns a backing file name stored in an image into open options, applying
   * the backing policy: relative names are joined to the image's directory on
   * the same protocol; another protocol must be allowed explicitly.
   */
  resolveBacking(image: BlockNode, name: string, format?: string): BlockOptions {
    const base = this.protocolNodeOf(image);
    const baseProto = base.driver.name;
    let options: BlockOptions;
    if (name.startsWith('json:')) {
      options = parseJsonFilename(name);
    } else {
      // A colon before any slash names a protocol, as for names given by the user.
      this.checkProtocolName(name);
      const proto = this.protocolFor(name);
      const explicitPrefix = proto.protocolPrefixes?.some((p) => name.startsWith(p)) ?? false;
      let filename = name;
      if (!explicitPrefix) filename = joinRelative(base.filename, name);
      // Without backing_fmt the driver stays unset and the format is probed, as QEMU does.
      // A local name may be a file or a host device: the protocol is probed when it opens.
      const fileDriver = explicitPrefix ? proto.name : this.isLocalProtocol(baseProto) ? undefined : baseProto;
      options = { driver: format, file: fileDriver === undefined ? { filename } : { driver: fileDriver, filename } };
    }
    const wanted = findProtocolName(options, this) ?? baseProto;
    const sameFamily = wanted === baseProto || (this.isLocalProtocol(wanted) && this.isLocalProtocol(baseProto));
    if (!sameFamily && !this.backingPolicy.allowedProtocols.includes(wanted)) {
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
  private isLocalProtocol(name: string): boolean {
    return name === this.defaultProtocol || !!this.drivers.get(name)?.probeDevice;
  }

  /** Applies the driver's limits merged with the children's. */
  refreshLimits(node: BlockNode): void {
    const l = defaultLimits();
    for (const c of node.children) {
      if (c.role & (ChildRole.PRIMARY | ChildRole.FILTERED | ChildRole.DATA)) mergeLimits(l, c.node.limits);
    }
    node.instance.refreshLimits?.(l);
    const problem = validateLimits(l, node.nodeName);
    if (problem) throw new BlockError('EINVAL', problem, { node: node.nodeName });
    node.limits = l;
  }

  private claimNodeName(requested: string | undefined): string {
    if (requested !== undefined) {
      if (!NODE_NAME_RE.test(requested)) {
        throw einval(
          `Invalid node-name: '${requested}' (must start with a letter, contain only letters, digits, '-', '.', '_' and be at most 31 characters)`,
        );
      }
      if (this.nodes.has(requested)) throw einval(`Duplicate nodes with node-name='${requested}'`);
      return requested;
    }
    let name: string;
    do name = `#block${String(this.nextGenerated++).padStart(3, '0')}`;
    while (this.nodes.has(name));
    return name;
  }

  /**
   * Attaches `child` under `parent` as `name` with `role`, taking the
   * permissions the parent's driver needs. The caller's reference to `child`
   * passes to the link. Refuses (EPERM) if permissions conflict, or if the
   * link would make a cycle.
   */
  async attachChild(parent: BlockNode, child: BlockNode, name: string, role: ChildRoleMask): Promise<BdrvChild> {
    if (child === parent || topologicalOrder([child]).includes(parent)) {
      throw einval(`Making node '${child.nodeName}' a child of node '${parent.nodeName}' would create a loop`);
    }
    if (parent.children.some((c) => c.name === name)) {
      throw einval(`Node '${parent.nodeName}' already has a child named '${name}'`);
    }
    const link = new BdrvChild(name, role, parent, child);
    parent.children.push(link);
    child.parents.push(link);
    try {
      refreshPerms([parent]);
    } catch (e) {
      parent.children.splice(parent.children.indexOf(link), 1);
      child.parents.splice(child.parents.indexOf(link), 1);
      throw e;
    }
    return link;
  }

  /**
   * Attaches a root user (BlockBackend, job) to `node` with the given
   * permissions. Takes a reference on the node.
   */
  async attachRoot(parent: RootParent, node: BlockNode, perm: PermMask, shared: PermMask): Promise<BdrvChild> {
    const link = new BdrvChild('root', ChildRole.PRIMARY, parent, node);
    link.perm = perm;
    link.shared = shared;
    node.parents.push(link);
    try {
      refreshPerms([node]);
    } catch (e) {
      node.parents.splice(node.parents.indexOf(link), 1);
      throw e;
    }
    node.ref();
    return link;
  }

  /** Detaches a root link made by {@link attachRoot} and drops its reference. */
  async detachRoot(link: BdrvChild): Promise<void> {
    link.assertNotFrozen('detach');
    const node = link.node;
    const i = node.parents.indexOf(link);
    if (i < 0) return;
    node.parents.splice(i, 1);
    refreshPerms([node]);
    await node.unref();
  }

  /** Changes the permissions of a link (two-phase: refused changes leave it as it was). */
  setLinkPerms(link: BdrvChild, perm: PermMask, shared: PermMask): void {
    const override = new Map([[link, { perm, shared }]]);
    refreshPerms([link.node], override);
  }

  /** Detaches a child link from its node parent and releases the child node. */
  async detachChild(link: BdrvChild): Promise<void> {
    link.assertNotFrozen('detach');
    const parent = link.parent;
    if (parent.kind === 'root') return this.detachRoot(link);
    const i = parent.children.indexOf(link);
    if (i < 0) return;
    parent.children.splice(i, 1);
    link.node.parents.splice(link.node.parents.indexOf(link), 1);
    refreshPerms([link.node]);
    await link.node.unref();
  }

  /**
   * Puts `to` in place of `from` under all of `from`'s parents (except `to`
   * itself and its own descendants, which would make a loop). Frozen links
   * refuse. Used by jobs when they complete (commit, mirror, stream).
   */
  async replaceNode(from: BlockNode, to: BlockNode): Promise<void> {
    const below = new Set(topologicalOrder([to]));
    const moving = from.parents.filter((l) => l.parent.kind === 'root' || !below.has(l.parent as BlockNode));
    for (const l of moving) l.assertNotFrozen('replace');
    for (const l of moving) {
      from.parents.splice(from.parents.indexOf(l), 1);
      l.node = to;
      to.parents.push(l);
    }
    try {
      refreshPerms([to, from]);
    } catch (e) {
      for (const l of moving) {
        to.parents.splice(to.parents.indexOf(l), 1);
        l.node = from;
        from.parents.push(l);
      }
      refreshPerms([from, to]);
      throw e;
    }
    to.refcnt += moving.length;
    for (let i = 0; i < moving.length; i++) await from.unref();
  }

  /**
   * Reopens nodes read-only or read-write (QEMU's bdrv_reopen_multiple),
   * handing each named node's driver the `options` to change. Each
   * node's `file`/`data-file` subtree follows; backing files keep their state.
   * Prepare runs for every node, then the permission check; any failure
   * aborts everything and leaves the graph as it was. Then each driver's
   * reopenCommitPost runs; its failure is thrown, but the reopen stays.
   */
  async reopen(entries: Array<{ node: BlockNode; readOnly: boolean; options?: Record<string, unknown> }>): Promise<void> {
    const wanted = new Map<BlockNode, boolean>();
    const addSubtree = (n: BlockNode, ro: boolean) => {
      if (wanted.has(n)) return;
      wanted.set(n, ro);
      for (const c of n.children) if (!(c.role & ChildRole.COW)) addSubtree(c.node, ro);
    };
    for (const e of entries) addSubtree(e.node, e.readOnly);
    // Driver options go to the named node only (its subtree keeps its own).
    const options = new Map(entries.map((e) => [e.node, e.options ?? {}]));
    const states = [...wanted].map(([node, readOnly]) => ({ node, readOnly, options: options.get(node) ?? {} }));
    // Data must be on disk before a node stops being writable.
    for (const s of states) if (s.readOnly && !s.node.readOnly) await flush(s.node);
    const prepared: typeof states = [];
    try {
      for (const s of states) {
        await s.node.instance.reopenPrepare?.(s);
        prepared.push(s);
      }
      const tx = preparePermUpdate(
        wanted.keys(),
        (n) => wanted.get(n) ?? n.readOnly,
      );
      for (const s of states) s.node.readOnly = s.readOnly;
      for (const s of states) s.node.instance.reopenCommit?.(s);
      tx.commit();
    } catch (e) {
      for (const s of prepared.reverse()) s.node.instance.reopenAbort?.(s);
      throw toBlockError(e);
    }
    // The reopen is done; what runs now cannot undo it, only report.
    let postError: unknown = null;
    for (const s of states) {
      try {
        await s.node.instance.reopenCommitPost?.(s);
      } catch (e) {
        postError ??= toBlockError(e, { node: s.node.nodeName });
      }
    }
    if (postError) throw postError;
  }

  /** @internal Closes a node whose last reference was dropped. */
  async closeNode(node: BlockNode): Promise<void> {
    if (!node.isOpen) {
      await this.discardNode(node);
      return;
    }
    const token = await drainBegin(node);
    let flushError: unknown = null;
    try {
      try {
        await flush(node);
      } catch (e) {
        flushError = e;
      }
      await node.instance.close?.();
    } finally {
      drainEnd(token);
      node.isOpen = false;
      releaseDirtyBitmaps(node);
      await this.discardNode(node);
    }
    if (flushError) throw toBlockError(flushError, { node: node.nodeName });
  }

  /** Releases the children of a node that failed to open or was closed, and its name. */
  private async discardNode(node: BlockNode): Promise<void> {
    if (node.isOpen) {
      node.isOpen = false;
      await node.instance?.close?.().catch(() => undefined);
    }
    releaseDirtyBitmaps(node);
    if (this.nodes.get(node.nodeName) === node) this.nodes.delete(node.nodeName);
    const children = [...node.children];
    node.children.length = 0;
    for (const c of children.reverse()) {
      const i = c.node.parents.indexOf(c);
      if (i >= 0) c.node.parents.splice(i, 1);
      refreshPerms([c.node]);
      await c.node.unref();
    }
  }

  /** Closes every node still open (used at shutdown and by tests). */
  async closeAll(): Promise<void> {
    const roots = this.listNodes().filter((n) => n.parents.every((p) => p.parent.kind === 'root'));
    for (const n of roots) {
      while (n.refcnt > 0 && n.isOpen) await n.unref();
    }
    for (const n of this.listNodes()) {
      if (n.isOpen) while (n.refcnt > 0) await n.unref();
    }
  }

  /** Describes a node for messages including its parents. */
  describeUsers(node: BlockNode): string {
    return node.parents.map((p) => `${parentName(p.parent)} as '${p.name}'`).join(', ');
  }
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

