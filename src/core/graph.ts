/**
 * The block graph: driver and node-name registries and the choice of protocol
 * for a filename. Opening (graph-open.ts, backing-open.ts), the links between
 * nodes (graph-links.ts), reopen (graph-reopen.ts) and closing
 * (graph-close.ts) live in their own files; BlockGraph is their one entry.
 *
 * One BlockGraph is one QEMU "block layer instance". The worker hosts one; the
 * CLI and tests make their own.
 */
import type { BlockDriver } from './driver.js';
import { parentName, type BdrvChild, type RootParent } from './child.js';
import type { BlockNode } from './node.js';
import { BlockError, einval, type ErrorContext } from './errors.js';
import { normalizeOptions, parseJsonFilename, type BlockOptions } from './options.js';
import { ChildRole, type ChildRoleMask, type PermMask } from './permissions.js';
import { defaultLimits, mergeLimits, validateLimits } from './limits.js';
import { openNode, type OpenContext } from './graph-open.js';
import { protocolNodeOf, resolveBacking } from './backing-open.js';
import * as links from './graph-links.js';
import { reopen, type GraphChanges } from './graph-reopen.js';
import { closeNode } from './graph-close.js';
import { topologicalOrder } from './perm-update.js';

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

const NODE_NAME_RE = /^[A-Za-z][A-Za-z0-9_.-]*$/;

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

  /**
   * Where drivers' error reports go: a failure reported on the way while the
   * operation goes on or fails with another error (QEMU's error_report from a
   * driver; the tools print it after their name). Default: {@link onNotice}.
   */
  onReport: ((text: string) => void) | null = null;

  /** Passes a driver's error report to {@link onReport}. */
  report(text: string): void {
    if (this.onReport) this.onReport(text);
    else this.notice(text);
  }

  /**
   * Where a driver's fatal verdict goes: a finding after which QEMU ends the
   * whole process (blkverify's and quorum's blkverify mode's mismatch lines:
   * printed on stderr, then exit status 1). The command-line tools print the
   * line and exit as QEMU does; left unset (a worker, a page, a test), nothing
   * ends and the request fails with the EIO error {@link fatal} returns.
   */
  onFatal: ((text: string) => void) | null = null;

  /**
   * Hands a fatal finding to {@link onFatal} (which may not return) and gives
   * back the error the request then fails with: EIO with `text` as its
   * message. The caller throws it.
   */
  fatal(text: string, context: ErrorContext = {}): BlockError {
    this.onFatal?.(text);
    return new BlockError('EIO', text, context);
  }

  /**
   * Listeners of the block layer's events, named and shaped as QEMU's QAPI
   * events (BLOCK_IMAGE_CORRUPTED from a format driver, BLOCK_IO_ERROR from a
   * device's backend); a QMP monitor passes them to its clients.
   */
  readonly eventListeners = new Set<(event: string, data: Record<string, unknown>) => void>();

  /** Hands an event to every listener. */
  emitEvent(event: string, data: Record<string, unknown>): void {
    for (const l of [...this.eventListeners]) l(event, data);
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


  /** @internal A registered driver by name, or undefined (no availability check). */
  lookupDriver(name: string): BlockDriver | undefined {
    return this.drivers.get(name);
  }

  /**
   * @internal Records a node being opened under its node-name; `again`
   * moves it to the end of the list (QEMU's node order, see BlockNode.openChild).
   */
  registerNode(node: BlockNode, again = false): void {
    if (again && this.nodes.get(node.nodeName) !== node) return;
    if (again) this.nodes.delete(node.nodeName);
    this.nodes.set(node.nodeName, node);
  }

  /** @internal Releases a node's name if it still belongs to that node. */
  forgetNode(node: BlockNode): void {
    if (this.nodes.get(node.nodeName) === node) this.nodes.delete(node.nodeName);
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
    // A backing named in a json: filename counts as given (the node's options merge it in);
    // its backing=null says no more than the flag.
    if (flags.noBacking === true && options.backing === undefined && typeof options.filename === 'string' && options.filename.startsWith('json:')) {
      const inJson = parseJsonFilename(options.filename).backing;
      if (inJson !== undefined && inJson !== null) options = { ...options, backing: inJson };
    }
    // backing="" is QEMU's deprecated spelling of the noBacking flag (the option goes, the flag stays).
    let noBacking = flags.noBacking === true;
    if (options.backing === '') {
      const { backing: _, ...rest } = options;
      options = rest;
      noBacking = true;
    }
    const noBackingFlag = noBacking && options.backing === undefined;
    if (noBackingFlag) options = { ...options, backing: null };
    // A backing given beside the flag is left unread: refused as an unknown option (QEMU's BDRV_O_NO_BACKING).
    const backingOptionsUnread = flags.noBacking === true && options.backing !== undefined && options.backing !== null;
    return this.openNode(options, { readOnly: flags.readOnly ?? false, noBackingFlag, ...(backingOptionsUnread ? { backingOptionsUnread } : {}) });
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
      if (d.kind !== 'protocol' && !d.protocolPrefixes) continue;
      if (d.name === m[1] || d.protocolPrefixes?.some((p) => p.split(':')[0] === m[1])) return;
    }
    throw new BlockError('EINVAL', `Unknown protocol '${m[1]}'`);
  }

  /** Finds the protocol driver for a filename (`proto:` prefix or the default). */
  protocolFor(filename: string): BlockDriver {
    for (const d of this.drivers.values()) {
      // Protocols, and filters opened by prefix (blkdebug:).
      if (!d.protocolPrefixes) continue;
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
  openNode(input: BlockOptions, ctx: OpenContext = {}): Promise<BlockNode> {
    return openNode(this, input, ctx);
  }

  /** The protocol node at the bottom of a node's file chain. */
  protocolNodeOf(node: BlockNode): BlockNode {
    return protocolNodeOf(node);
  }

  /**
   * Turns a backing file name stored in an image into open options, applying
   * the backing policy: relative names are joined to the image's directory on
   * the same protocol; another protocol must be allowed explicitly.
   */
  resolveBacking(image: BlockNode, name: string, format?: string): BlockOptions {
    return resolveBacking(this, image, name, format);
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

  /** @internal A node-name for a new node: the requested one, checked, or a generated one. */
  claimNodeName(requested: string | undefined): string {
    if (requested !== undefined) {
      // QEMU's bdrv_assign_node_name: the form, then a duplicate, then the length.
      if (!NODE_NAME_RE.test(requested)) {
        throw einval(`Invalid node-name: '${requested}'`, {}, "must start with a letter and contain only letters, digits, '-', '.', '_'");
      }
      if (this.nodes.has(requested)) throw einval(`Duplicate nodes with node-name='${requested}'`);
      if (requested.length > 31) throw einval('Node name too long', {}, `'${requested}' has ${requested.length} characters, at most 31`);
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
  attachChild(parent: BlockNode, child: BlockNode, name: string, role: ChildRoleMask): Promise<BdrvChild> {
    return links.attachChild(parent, child, name, role);
  }

  /**
   * Attaches a root user (BlockBackend, job) to `node` with the given
   * permissions. Takes a reference on the node.
   */
  attachRoot(parent: RootParent, node: BlockNode, perm: PermMask, shared: PermMask): Promise<BdrvChild> {
    return links.attachRoot(parent, node, perm, shared);
  }

  /**
   * A root link under the name `name`, made at once (a job's own link to a
   * node, QEMU's block_job_add_bdrv: job factories check everything before
   * they return). Refuses (EPERM) if permissions conflict.
   */
  attachRootNow(parent: RootParent, node: BlockNode, perm: PermMask, shared: PermMask, name: string): BdrvChild {
    return links.attachRootNow(parent, node, perm, shared, name);
  }

  /** Detaches a root link made by {@link attachRoot} and drops its reference. */
  detachRoot(link: BdrvChild): Promise<void> {
    return links.detachRoot(link);
  }

  /** Changes the permissions of a link (two-phase: refused changes leave it as it was). */
  setLinkPerms(link: BdrvChild, perm: PermMask, shared: PermMask): void {
    links.setLinkPerms(link, perm, shared);
  }

  /** Detaches a child link from its node parent and releases the child node. */
  detachChild(link: BdrvChild): Promise<void> {
    return links.detachChild(link);
  }

  /**
   * Puts `to` in place of `from` under all of `from`'s parents (except `to`
   * itself and its own descendants, which would make a loop). Frozen links
   * refuse. Used by jobs when they complete (commit, mirror, stream).
   */
  replaceNode(from: BlockNode, to: BlockNode): Promise<void> {
    return links.replaceNode(from, to);
  }

  /** Points the link `link` at `to` (the parent keeps its link object); see graph-links.ts. */
  replaceChildNode(link: BdrvChild, to: BlockNode): Promise<void> {
    return links.replaceChildNode(link, to);
  }

  /**
   * Reopens nodes read-only or read-write (QEMU's bdrv_reopen_multiple),
   * handing each named node's driver the `options` to change. Each
   * node's `file`/`data-file` subtree follows; backing files keep their state.
   * Prepare runs for every node, then the permission check; any failure
   * aborts everything and leaves the graph as it was. Then each driver's
   * reopenCommitPost runs; its failure is thrown, but the reopen stays.
   * `links`: graph changes made and undone with the reopen (see graph-reopen.ts).
   */
  reopen(
    entries: Array<{ node: BlockNode; readOnly: boolean; options?: Record<string, unknown>; direct?: boolean }>,
    subtree = true,
    check?: { before?: (node: BlockNode) => void; after?: (node: BlockNode) => void },
    links?: GraphChanges,
  ): Promise<void> {
    return reopen(entries, subtree, check, links);
  }

  /** @internal Closes a node whose last reference was dropped. */
  closeNode(node: BlockNode): Promise<void> {
    return closeNode(this, node);
  }

  /** Closes every node still open (used at shutdown and by tests). */
  async closeAll(): Promise<void> {
    const roots = this.listNodes().filter((n) => n.parents.every((p) => p.parent.kind === 'root'));
    for (const n of roots) {
      while (n.refcnt > 0 && n.isOpen) await n.unref();
    }
    // Users before what they use: a node closing drops its references to its children.
    for (const n of topologicalOrder(this.listNodes())) {
      if (n.isOpen) while (n.refcnt > 0) await n.unref();
    }
  }

  /** Describes a node for messages including its parents. */
  describeUsers(node: BlockNode): string {
    return node.parents.map((p) => `${parentName(p.parent)} as '${p.name}'`).join(', ');
  }
}
