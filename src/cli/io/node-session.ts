/**
 * The CLI's qemu-io session: the interpreter over a BlockBackend in a Node
 * block graph, with open/close/reopen and `write -s` reading a host file.
 */
import { open as openFile } from 'node:fs/promises';
import { BlockBackend } from '../../core/backend.js';
import { BlockError } from '../../core/errors.js';
import type { BlockGraph } from '../../core/graph.js';
import type { DriverInstance } from '../../core/driver.js';
import { parseKeyValueList } from '../../core/options.js';
import { Perm, PERM_ALL } from '../../core/permissions.js';
import { createCliGraph } from '../node-graph.js';
import { openWithTemporaryOverlay } from '../temp-overlay.js';
import { type CliIo, closeWithMessages, fatalExit, errHint, errText, parseCacheMode, probeWarnings, strerror } from '../common.js';
import { BackendDisk } from './backend-disk.js';
import { IoSession } from './session.js';
import { type Cmd, type OpenOpts, EINVAL, PROG } from './types.js';

export class NodeIoSession extends IoSession {
  readonly graph: BlockGraph = createCliGraph();
  private blk: BlockBackend | null = null;
  /** `--image-opts` was given: `open` takes an option string as its argument, and no `-o`. */
  imageOpts = false;

  constructor(io: CliIo, commands: Cmd[]) {
    super(io, commands);
    // Drivers' notices (qcow2's corruption events) go to stderr as QEMU prints them.
    this.graph.onNotice = (text) => io.stderr(`${text}\n`);
    this.graph.onReport = (text) => io.stderr(`${PROG}: ${text}\n`);
    // blkverify's mismatch ends qemu-io at once.
    this.graph.onFatal = fatalExit(io);
  }

  /** The open BlockBackend; setting it sets the disk the commands use. */
  get bb(): BlockBackend | null {
    return this.blk;
  }
  set bb(bb: BlockBackend | null) {
    this.blk = bb;
    this.disk = bb ? new BackendDisk(bb) : null;
  }

  async open(file: string, o: OpenOpts): Promise<boolean> {
    if (this.bb) {
      this.err(`${PROG}: file open already, try 'help close'\n`);
      return false;
    }
    let spec: Record<string, unknown>;
    if (o.forceShare && !o.readOnly) {
      this.err(`${PROG}: can't open${o.imageOpts ? '' : ` device ${file}`}: force-share=on can only be used with read-only images\n`);
      return false;
    }
    try {
      if (o.imageOpts) {
        spec = parseKeyValueList(file, 'file');
        if (o.format) {
          this.err(`${PROG}: --image-opts and 'format' is invalid\n`);
          return false;
        }
      } else {
        // `open -o file.filename=x` names no file: the options say it all.
        if (file !== '') this.graph.checkProtocolName(file);
        spec = file === '' ? {} : { filename: file };
      }
      Object.assign(spec, o.extra ?? {});
      // qemu-io's defaults: discard=unmap and a disabled write cache (writethrough).
      const cache = parseCacheMode(o.cache ?? 'writethrough')!;
      spec['cache.direct'] ??= cache.direct;
      spec['cache.no-flush'] ??= cache.noFlush;
      spec['discard'] ??= o.discard === 'off' || o.discard === 'ignore' ? 'ignore' : 'unmap';
      if (o.forceShare) spec['force-share'] = true;
      const flags = { readOnly: o.readOnly, ...(o.format ? { format: o.format } : {}) };
      if (o.snapshot && !o.readOnly) this.bb = await openWithTemporaryOverlay(this.graph, spec, flags, !cache.writeback, 'qemu-io');
      // qemu-io's BlockBackend shares everything (blk_new_open): only the formats' own needs stop other users.
      // It holds consistent-read and (unless -r) write, not resize: truncate takes that when it runs.
      // Not even for a moment: two opens of one file in the graph (blkverify) would see it in the locks.
      else {
        const perm = o.readOnly ? Perm.CONSISTENT_READ : Perm.CONSISTENT_READ | Perm.WRITE;
        this.bb = await BlockBackend.open(this.graph, spec, flags, { name: '', writeThrough: !cache.writeback, perm, shared: PERM_ALL });
        await this.bb.settled();
      }
      if (o.copyOnRead && this.bb.node.readOnly) {
        // QEMU checks this when it opens the format node, after its file: a missing file fails first.
        const bb = this.bb;
        this.bb = null;
        await bb.close().catch(() => undefined);
        throw corOnReadOnly();
      }
      if (!o.readOnly && this.bb.node.readOnly) {
        // qemu-io's BlockBackend takes WRITE unless -r: a node opened read-only (read-only=on) refuses it.
        const bb = this.bb;
        this.bb = null;
        await bb.close().catch(() => undefined);
        throw new BlockError('EACCES', 'Block node is read-only');
      }
    } catch (caught) {
      let e = caught;
      // With -C QEMU refuses a read-only node as it opens it, before any user asks to write to it.
      if (o.copyOnRead && e instanceof BlockError && e.code === 'EACCES' && e.message.startsWith('Block node is read-only')) e = corOnReadOnly();
      const shown = o.imageOpts || file === '' ? '' : ` device ${file}`;
      this.err(`${PROG}: can't open${shown}: ${errText(e)}\n${errHint(e)}`);
      return false;
    }
    const warnings = probeWarnings(this.bb.node, file);
    if (warnings) this.err(warnings);
    for (const line of this.bb.node.instance.openMessages?.() ?? []) this.err(`${line}\n`);
    if (o.copyOnRead) this.bb.node.copyOnRead++;
    return true;
  }

  override async close(): Promise<void> {
    this.releaseSuspended();
    await this.drainAio();
    const bb = this.bb;
    this.bb = null;
    if (!bb) return;
    for (const line of await closeWithMessages(bb)) this.err(`${PROG}: ${line}\n`);
  }

  override async loadSource(source: string, count: number): Promise<Uint8Array | number> {
    let fh;
    try {
      fh = await openFile(source, 'r');
    } catch (e) {
      this.err(`${source}: ${strerror(e)}\n`);
      return -2;
    }
    try {
      const buf = new Uint8Array(count);
      const { bytesRead } = await fh.read(buf, 0, count, 0);
      if (bytesRead < count) {
        this.err(`${PROG}: Failed to read all bytes from ${source}\n`);
        return EINVAL;
      }
      return buf;
    } finally {
      await fh.close();
    }
  }
}

/** QEMU's refusal of copy-on-read (qemu-io -C) on a node opened read-only. */
function corOnReadOnly(): BlockError {
  return new BlockError('EINVAL', "Can't use copy-on-read on read-only device");
}
