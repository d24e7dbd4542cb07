/**
 * The CLI's qemu-io session: the interpreter over a BlockBackend in a Node
 * block graph, with open/close/reopen and `write -s` reading a host file.
 */
import { open as openFile } from 'node:fs/promises';
import { BlockBackend } from '../../core/backend.js';
import type { BlockGraph } from '../../core/graph.js';
import type { DriverInstance } from '../../core/driver.js';
import { parseKeyValueList } from '../../core/options.js';
import { createNodeGraph } from '../../node.js';
import { createImage } from '../../core/create.js';
import { ROLE_BACKING } from '../../core/permissions.js';

/** Temporary overlays of -s made by this process. */
let overlayCounter = 0;
import { type CliIo, closeWithMessages, errHint, errText, needsProbeWarning, parseCacheMode, probedRawWarning, strerror } from '../common.js';
import { BackendDisk } from './backend-disk.js';
import { IoSession } from './session.js';
import { type Cmd, type OpenOpts, EINVAL, PROG } from './types.js';

export class NodeIoSession extends IoSession {
  readonly graph: BlockGraph = createNodeGraph();
  private blk: BlockBackend | null = null;
  /** `--image-opts` was given: `open` takes an option string as its argument, and no `-o`. */
  imageOpts = false;

  constructor(io: CliIo, commands: Cmd[]) {
    super(io, commands);
    // Drivers' notices (qcow2's corruption events) go to stderr as QEMU prints them.
    this.graph.onNotice = (text) => io.stderr(`${text}\n`);
    this.graph.onReport = (text) => io.stderr(`${PROG}: ${text}\n`);
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
      if (o.snapshot && !o.readOnly) this.bb = await this.openWithTemporaryOverlay(spec, flags, !cache.writeback);
      else this.bb = await BlockBackend.open(this.graph, spec, flags, { name: '', writeThrough: !cache.writeback });
    } catch (e) {
      const shown = o.imageOpts || file === '' ? '' : ` device ${file}`;
      this.err(`${PROG}: can't open${shown}: ${errText(e)}\n${errHint(e)}`);
      return false;
    }
    if (needsProbeWarning(this.bb.node)) this.err(probedRawWarning(file));
    for (const line of this.bb.node.instance.openMessages?.() ?? []) this.err(`${line}\n`);
    if (o.copyOnRead) this.bb.node.copyOnRead++;
    return true;
  }

  /**
   * qemu-io -s (QEMU's bdrv_append_temp_snapshot): the image opens read-only as
   * the backing node of a new qcow2 overlay of its size, kept in memory instead
   * of a temporary file; the guest's writes land there and are gone at close.
   */
  private async openWithTemporaryOverlay(spec: Record<string, unknown>, flags: { readOnly: boolean; format?: string }, writeThrough: boolean): Promise<BlockBackend> {
    const base = await this.graph.open(spec, { ...flags, readOnly: true });
    try {
      const name = `qemu-io-snapshot-${process.pid}-${++overlayCounter}`;
      await createImage(this.graph, 'qcow2', `memory:${name}`, { size: base.length });
      const overlay = await this.graph.open({ driver: 'qcow2', file: { driver: 'memory', filename: name }, discard: spec['discard'] }, { noBacking: true });
      try {
        base.ref();
        await this.graph.attachChild(overlay, base, 'backing', ROLE_BACKING);
        return await BlockBackend.attach(this.graph, overlay, { name: '', writeThrough });
      } finally {
        await overlay.unref();
      }
    } finally {
      await base.unref();
    }
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
