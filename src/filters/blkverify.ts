/**
 * The blkverify filter (QEMU 7.2's block/blkverify.c): a node over an image
 * under test (`test`, any format) and a raw copy of what it should hold
 * (`raw`), for checking a format driver.
 *
 * - Reads go to both children at once; the test image's bytes are returned.
 *   When one child fails and the other does not, or the bytes differ, the
 *   node reports the finding through the graph's fatal hook
 *   (BlockGraph.fatal): QEMU prints the line and exits the process with
 *   status 1, the tools here do the same, a library host gets EIO.
 * - Writes go to both children at once, with the same check of their results.
 *   Zero writes become writes of a zero buffer (QEMU 7.2 trips an assertion
 *   here, see README); discards do nothing; flush reaches the test image only.
 * - The length is the test image's; truncate, block status and generic info
 *   pass to `raw`, the filtered child (QEMU's is_filter with `raw` as the
 *   filtered, primary child).
 * - Opened with the options `raw` and `test`, or as
 *   `blkverify:RAW_PATH:TEST_PATH` (the test image's format probed), which is
 *   also the plain name it shows while both children have one.
 *
 *   blkverify ─raw (filtered, primary)→ protocol node
 *             ─test (data)→ image under test (probed format)
 */
import type { BlockDriver, DriverInstance, ReqFlags } from '../core/driver.js';
import { ReqFlag } from '../core/driver.js';
import type { BlockNode } from '../core/node.js';
import type { BdrvChild } from '../core/child.js';
import { BlockError, STRERROR, einval, toBlockError } from '../core/errors.js';
import { OptionReader, type BlockOptions } from '../core/options.js';
import { ChildRole, PERM_ALL, Perm, ROLE_FILTERED_PRIMARY, type PermMask } from '../core/permissions.js';
import { firstDifference } from './quorum-vote.js';

/** Permissions that pass through to a child (QEMU's DEFAULT_PERM_PASSTHROUGH). */
const PASSTHROUGH = Perm.CONSISTENT_READ | Perm.WRITE | Perm.WRITE_UNCHANGED | Perm.RESIZE;
/** Permissions nobody above cares about (QEMU's DEFAULT_PERM_UNCHANGED). */
const UNCHANGED = PERM_ALL & ~PASSTHROUGH;

/** `blkverify:RAW:TEST` into x-raw / x-image; a name without the prefix names the test image. */
function parseBlkverifyFilename(filename: string): Record<string, unknown> {
  const prefix = 'blkverify:';
  if (!filename.startsWith(prefix)) return { 'x-image': filename };
  const rest = filename.slice(prefix.length);
  const colon = rest.indexOf(':');
  if (colon < 0) throw einval('blkverify requires raw copy and original image path', {}, filename);
  return { 'x-raw': rest.slice(0, colon), 'x-image': rest.slice(colon + 1) };
}

/**
 * The options of one child: its own `key.*` options, with a file name from
 * blkverify:RAW:TEST added as QEMU's open of a child with a file name adds it.
 */
function childRef(options: OptionReader, key: string, filename: string | undefined, protocol: boolean): BlockOptions | string | undefined {
  const ref = options.child(key) ?? undefined;
  if (filename === undefined) {
    // A format child named by `test.filename` alone has nothing to probe (QEMU opens `file`).
    if (!protocol && typeof ref === 'object' && ref.driver === undefined && ref.file === undefined && ref.filename !== undefined) {
      throw einval('Must specify either driver or file');
    }
    return ref;
  }
  if (typeof ref === 'string') throw einval('Cannot reference an existing block device with additional options or a new filename', {}, `${key}=${ref}`);
  if (protocol && ref?.filename !== undefined) throw einval("Can't specify 'file' and 'filename' options at the same time");
  return { ...(ref ?? {}), filename };
}

/**
 * What the node needs on `test` (QEMU's bdrv_default_perms for a data child):
 * the parents' use passed down, nobody else may resize the image, and an
 * unchanged write is a real write on it.
 */
function testChildPerm(perm: PermMask, shared: PermMask): { perm: PermMask; shared: PermMask } {
  let p = perm & PASSTHROUGH;
  const s = ((shared & PASSTHROUGH) | UNCHANGED) & ~Perm.RESIZE;
  if (p & Perm.WRITE_UNCHANGED) p |= Perm.WRITE;
  if (p & Perm.WRITE) p |= Perm.RESIZE;
  return { perm: p, shared: s };
}

/** A request's result as QEMU compares them: 0, or the negative errno. */
function resultValue(e: BlockError | undefined): number {
  return e ? -e.errno : 0;
}

async function openBlkverify(node: BlockNode, options: OptionReader): Promise<DriverInstance> {
  const xRaw = options.string('x-raw');
  const xImage = options.string('x-image');
  // QEMU names a missing child by its own key ("raw", "test"), whatever the path to this node.
  const only = (key: string, ref: BlockOptions | string | undefined) => new OptionReader(ref === undefined ? {} : { [key]: ref }, options.owner);
  const rawRef = childRef(options, 'raw', xRaw, true);
  const raw = (await node.openChild(only('raw', rawRef), 'raw', ROLE_FILTERED_PRIMARY))!;
  let test: BdrvChild;
  try {
    const testRef = childRef(options, 'test', xImage, false);
    test = (await node.openChild(only('test', testRef), 'test', ChildRole.DATA))!;
  } catch (e) {
    await node.graph.detachChild(raw);
    throw e;
  }

  /** Reports a disagreement of the two children: QEMU's line, then the fatal hook. */
  function disagree(op: 'read' | 'write', offset: number, bytes: number, finding: string): never {
    throw node.graph.fatal(`blkverify: ${op} offset=${offset} bytes=${bytes} ${finding}`, { node: node.nodeName, offset });
  }

  /**
   * Runs the request on both children at once (the test image's first, as
   * QEMU starts them) and checks that both ended alike; the test image's
   * error, if both failed alike.
   */
  async function both(op: 'read' | 'write', offset: number, bytes: number, onTest: () => unknown, onRaw: () => unknown): Promise<BlockError | undefined> {
    const [t, r] = await Promise.allSettled([(async () => onTest())(), (async () => onRaw())()]);
    const testErr = t.status === 'rejected' ? toBlockError(t.reason) : undefined;
    const rawErr = r.status === 'rejected' ? toBlockError(r.reason) : undefined;
    const [tv, rv] = [resultValue(testErr), resultValue(rawErr)];
    if (tv !== rv) disagree(op, offset, bytes, `return value mismatch ${tv} != ${rv}`);
    return testErr;
  }

  return {
    getLength: () => test.length,
    // Only WRITE_UNCHANGED passes on; FUA is emulated by the generic layer with a flush.
    supportedWriteFlags: ReqFlag.WRITE_UNCHANGED,
    supportedZeroFlags: ReqFlag.WRITE_UNCHANGED,
    async preadv(offset, bytes, buf, flags) {
      const copy = new Uint8Array(bytes);
      const err = await both(
        'read',
        offset,
        bytes,
        () => test.preadv(offset, bytes, buf, flags),
        () => raw.preadv(offset, bytes, copy, flags),
      );
      // Compared even when both failed alike, as QEMU does: the caller's buffer as the failed
      // read left it against a fresh one (QEMU's is uninitialised), which mostly differ.
      const at = firstDifference(buf, copy);
      if (at >= 0) disagree('read', offset, bytes, `contents mismatch at offset ${offset + at}`);
      if (err) throw err;
    },
    async pwritev(offset, bytes, buf, flags: ReqFlags) {
      const err = await both(
        'write',
        offset,
        bytes,
        () => test.pwritev(offset, bytes, buf, flags),
        () => raw.pwritev(offset, bytes, buf, flags),
      );
      if (err) throw err;
    },
    // No zero write of its own: the generic layer writes zero buffers through pwritev, to both.
    async pwriteZeroes() {
      throw new BlockError('ENOTSUP', STRERROR.ENOTSUP, { node: node.nodeName });
    },
    // QEMU's blkverify has no discard: the request succeeds and reaches neither child.
    async pdiscard() {},
    // The raw copy's durability does not matter: only the test image is flushed.
    flush: () => test.flush(),
    // QEMU looks through no driver that opens by file name (blkverify: has one): "disk size: unavailable".
    async getAllocatedFileSize(): Promise<number> {
      throw new BlockError('ENOTSUP', STRERROR.ENOTSUP);
    },
    async reopenPrepare() {},
  };
}

/** The blkverify driver. */
export const blkverifyDriver: BlockDriver = {
  name: 'blkverify',
  kind: 'filter',
  protocolPrefixes: ['blkverify:'],
  noBaseDirectory: true,
  parseFilename: parseBlkverifyFilename,
  // blkverify:RAW:TEST while both children have a plain name (QEMU checks no options here).
  refreshFilename(node) {
    const raw = node.children.find((c) => c.name === 'raw')?.node;
    const test = node.children.find((c) => c.name === 'test')?.node;
    if (!raw || !test || raw.exactFilename === '' || test.exactFilename === '') return '';
    return `blkverify:${raw.exactFilename}:${test.exactFilename}`;
  },
  // A driver-level hook: it must hold while open attaches the children, parents or not.
  childPerm(_node, child, role, perm, shared) {
    if ((child?.role ?? role) & ChildRole.FILTERED) return { perm: perm & PASSTHROUGH, shared: (shared & PASSTHROUGH) | UNCHANGED };
    return testChildPerm(perm, shared);
  },
  open: openBlkverify,
};
