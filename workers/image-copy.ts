/**
 * Image copies in the block worker: convert between images, import a Blob,
 * export an image as a stream. Each reports progress, can be cancelled, and
 * succeeds only once the copy is on storage (the target's close flushes).
 */
import { transfer } from 'comlink';
import { BlockBackend } from '../src/core/backend.js';
import { ReqFlag } from '../src/core/driver.js';
import { BlockError, toBlockError } from '../src/core/errors.js';
import type { BlockGraph } from '../src/core/graph.js';
import { Perm, PERM_ALL } from '../src/core/permissions.js';
import { listOpfs, removeOpfs } from '../src/protocols/opfs.js';
import { registerBlobSet } from '../src/protocols/blob.js';
import { zeroBufferPool } from '../src/wasm/hot-paths.js';
import { runCopy, type CopyProgress } from '../src/jobs/copy-engine.js';
import { CopyBuffers } from '../src/jobs/buffers.js';
import { statusExtents } from '../src/jobs/plan.js';
import { targetWriter } from '../src/jobs/target-writer.js';
import type { ZeroBufferPool } from '../src/wasm/zero.js';
import type { ProgressFn } from '../src/client/api.js';
import { IMAGE_FORMATS, type ConvertOptions, type CreateOptions, type ExportFormat, type ImageFormat, type ImportOptions, type OpenOptions } from '../src/client/protocol.js';
import type { DiskService } from './disk-service.js';
import { imageNodeOf } from './paths.js';

const COPY_CHUNK = 1 << 20;
/** Pieces read ahead and writes in flight of a worker copy (at most 4 buffers of up to 2 MiB). */
const READ_AHEAD = 2;
const WRITE_DEPTH = 2;
/** Zero runs in data left unwritten, as qemu-img convert's default -S 4k. */
const MIN_SPARSE = 4096;
/** Largest copy chunk: COPY_CHUNK, or one 2 MiB cluster when compressing. */
const MAX_COPY_CHUNK = 2 << 20;

let tmpCounter = 0;

/** File name extensions of converted exports that are not the format's name. */
const EXTENSIONS: Partial<Record<ImageFormat, string>> = { vpc: 'vhd' };

/**
 * The name of an export's temporary conversion: the source's base name with the
 * format's extension (a vmdk names its own file in its descriptor), in a
 * directory of its own.
 */
function exportTmpName(path: string, format: ImageFormat): { dir: string; file: string } {
  const last = path.replace(/^[a-z]+:/, '').split('/').filter(Boolean).pop() ?? 'image';
  const base = last.replace(/\.[^.]*$/, '') || 'image';
  const dir = `opfs:/.diskworker-tmp/export-${Date.now()}-${tmpCounter++}`;
  return { dir, file: `${dir}/${base}.${EXTENSIONS[format] ?? format}` };
}

/** The name an imported Blob is known by beside its companions: a File's own name, made a plain file name. */
function imageFileName(blob: Blob): string {
  const name = (blob as Partial<File>).name;
  const clean = typeof name === 'string' ? name.replace(/[/\\:\0]/g, '_') : '';
  return clean === '' || clean === '.' || clean === '..' ? 'image' : clean;
}

/** The path of file `name` in the directory of the image `path` (`opfs:/d/a.vmdk` -> `opfs:/d/name`, `idb:a` -> `idb:name`). */
export function siblingPath(path: string, name: string): string {
  const slash = path.lastIndexOf('/');
  return slash >= 0 ? path.slice(0, slash + 1) + name : path.slice(0, path.indexOf(':') + 1) + name;
}

/** vmdk subformats kept in one file (the others add extent files an export would leave out). */
const ONE_FILE_VMDK = ['monolithicSparse', 'streamOptimized'];

/**
 * `format` as a format the worker creates with `options`, or ENOTSUP naming
 * it: luks without a `key-secret` (checked before anything is written), or a
 * read-only format (no create).
 */
export function creatableFormat(format: string, action: string, options: Record<string, unknown> = {}): ImageFormat {
  if (format === 'luks' && options['key-secret'] === undefined) {
    throw new BlockError(
      'ENOTSUP',
      `Cannot ${action} format 'luks' without a key secret: add one with dw.secrets.add() and name it in the options as 'key-secret'`,
    );
  }
  if ((IMAGE_FORMATS as readonly string[]).includes(format)) return format as ImageFormat;
  throw new BlockError('ENOTSUP', `Cannot ${action} format '${format}': the block worker creates only ${IMAGE_FORMATS.join(', ')}`);
}

/**
 * The open options of a target made with creation `options`: the key secret
 * of an encrypted target (`key-secret` of luks, `encrypt.key-secret` of
 * qcow2 / qcow), which the copy needs to write through its cipher.
 */
export function targetOpenOptions(options: Record<string, unknown>): Record<string, unknown> | undefined {
  const out: Record<string, unknown> = {};
  for (const key of ['key-secret', 'encrypt.key-secret']) if (options[key] !== undefined) out[key] = options[key];
  return Object.keys(out).length > 0 ? out : undefined;
}

/** ENOTSUP for an export whose creation options make more than one file (a split or flat vmdk). */
export function checkOneFile(format: ImageFormat, options: Record<string, string | number | boolean>): void {
  const sub = options.subformat;
  if (format === 'vmdk' && sub !== undefined && !ONE_FILE_VMDK.includes(String(sub))) {
    throw new BlockError('ENOTSUP', `Cannot export vmdk subformat '${String(sub)}': it is more than one file (export ${ONE_FILE_VMDK.join(' or ')})`);
  }
}

/** What the copies need from the worker's service. */
export interface CopyHost {
  readonly graph: BlockGraph;
  openBackend(o: OpenOptions): Promise<BlockBackend>;
  create(o: CreateOptions): Promise<void>;
  /** Throws ECANCELED once the page has cancelled `jobId`. */
  checkCancel(jobId: number | undefined): void;
  /** The worker's open disk of `path`, if there is one. */
  openDisk(path: string): DiskService | undefined;
  /** Removes a stored image (a failed import's companion files). */
  remove(path: string): Promise<void>;
}

/** Convert, import and export for one worker. */
export class ImageCopier {
  /**
   * Copy buffers in the WASM zero module's memory (two: a convert and an
   * export at the same time), so the zero check of a copy reads them in
   * place; undefined when the module is not available.
   */
  private readonly pool: Promise<ZeroBufferPool | undefined> = zeroBufferPool(2, MAX_COPY_CHUNK);

  constructor(private readonly host: CopyHost) {}

  /**
   * Copies what `src` shows into `dst` (same size) on the copy engine: block
   * status plans it, zero ranges are not written when `dst` reads zeros
   * already. `compress` writes compressed clusters (pieces are then a whole
   * number of the target's clusters); a target that takes only compressed
   * data (a streamOptimized vmdk) is written compressed, as qemu-img does.
   */
  private async copyData(src: BlockBackend, dst: BlockBackend, dstZeroed: boolean, onProgress?: ProgressFn, jobId?: number, compressAsked = false) {
    const total = src.length;
    const node = imageNodeOf(dst.node);
    const info = node.instance.getInfo?.();
    const compress = compressAsked || info?.needsCompressedWrites === true;
    const clusterSize = info?.clusterSize ?? 65536;
    const chunk = compress ? Math.max(1, Math.round(COPY_CHUNK / clusterSize)) * clusterSize : COPY_CHUNK;
    // Compressed clusters are packed in write order, and vdi / vhdx / vmdk place new
    // blocks as writes arrive: one write at a time lays the image out as qemu-img's.
    const inOrder = compress || node.driver.placesInWriteOrder === true;
    const plan = { srcs: [src], sizes: [total], chunkSize: chunk, compressCluster: compress ? clusterSize : 0, fullyAllocate: false, targetHasBacking: false };
    const pool = await this.pool;
    await runCopy(
      {
        extents: () => statusExtents(plan),
        read: (offset, buf) => src.pread(offset, buf),
        // Zero runs of 4 KiB or more inside data are not written, as qemu-img convert (a
        // target with small clusters, qcow's 4 KiB, stays as sparse); the WASM module scans
        // buffers of its pool in place.
        write: targetWriter({
          target: dst,
          zeroDetect: 'sectors',
          minSparse: MIN_SPARSE,
          zeroInit: dstZeroed,
          compress,
          fullyAllocate: false,
          ...(pool ? { runLength: (b: Uint8Array, block: number, zero: boolean) => pool.zero.runLength(b, block, zero) } : {}),
        }),
        finish: async () => {
          // The end of compressed writing (qcow2 aligns its file end, vmdk pads to a sector).
          if (compress) await dst.write(0, new Uint8Array(0), ReqFlag.COMPRESSED);
          await dst.flush();
        },
      },
      { chunkSize: chunk, readAhead: READ_AHEAD, writeDepth: inOrder ? 1 : WRITE_DEPTH, buffers: await this.buffers(chunk), progressTotal: total, onProgress: this.reporter(total, onProgress, jobId) },
    );
  }

  /** Copy buffers: the WASM pool's first, then ordinary ones. */
  private async buffers(size: number): Promise<CopyBuffers> {
    const pool = await this.pool;
    return new CopyBuffers({ size, ...(pool ? { lender: { take: (n) => pool.take(n), give: (b) => pool.give(b), owns: (b) => pool.zero.owns(b) } } : {}) });
  }

  /**
   * The engine's progress hook: the page's cancel ends the copy (ECANCELED),
   * and the page hears of progress at most every 100 ms, and at the end.
   */
  private reporter(total: number, onProgress: ProgressFn | undefined, jobId: number | undefined): (p: CopyProgress) => Promise<void> {
    let lastReport = 0;
    return async ({ done }) => {
      this.host.checkCancel(jobId);
      const now = Date.now();
      if (onProgress && (now - lastReport > 100 || done >= total)) {
        lastReport = now;
        await onProgress({ done, total });
      }
    };
  }

  async convert(o: ConvertOptions, onProgress?: ProgressFn, jobId?: number): Promise<void> {
    const format = creatableFormat(o.format ?? 'qcow2', 'convert to', o.options);
    const src = await this.host.openBackend({
      path: o.from,
      readOnly: true,
      ...(o.fromFormat ? { format: o.fromFormat } : {}),
      ...(o.fromOptions ? { options: o.fromOptions } : {}),
      ...(o.allowBackingProtocols ? { allowBackingProtocols: o.allowBackingProtocols } : {}),
    });
    await closingAfter(src, () => this.convertFrom(src, o.to, format, o.options ?? {}, onProgress, jobId, o.compress ?? false));
  }

  private async convertFrom(
    src: BlockBackend,
    to: string,
    format: ImageFormat,
    options: Record<string, string | number | boolean>,
    onProgress?: ProgressFn,
    jobId?: number,
    compress = false,
  ): Promise<void> {
    if (compress && format !== 'qcow2') {
      throw new BlockError('EINVAL', `Compressed output needs the qcow2 format, not '${format}'`);
    }
    await this.host.create({ path: to, format, size: src.length, options });
    const openOptions = targetOpenOptions(options);
    const dst = await this.host.openBackend({ path: to, format, ...(openOptions ? { options: openOptions } : {}) });
    // The close flushes: a convert succeeds only once the copy is on storage.
    await closingAfter(dst, () => this.copyData(src, dst, dst.node.instance.hasZeroInit?.() ?? format === 'qcow2', onProgress, jobId, compress));
  }

  /**
   * Brings a Blob / File in: `copy` stores its bytes unchanged, an image
   * format converts what it holds (format probed: any format the worker
   * reads) into that format. Streams in 1 MiB pieces. The files of an image
   * of several files (`o.companions`: a vmdk's extents) are found by the
   * names the image gives them; `copy` stores each beside the target under
   * its own name, after checking that the image finds every file it names.
   */
  async importBlob(blob: Blob, o: ImportOptions, onProgress?: ProgressFn, jobId?: number): Promise<void> {
    const copy = !o.format || o.format === 'copy';
    const format = copy ? 'raw' : creatableFormat(o.format!, 'import as', o.options);
    const companions = (o.companions ?? []).map((f, i) => {
      if (typeof f.name !== 'string') throw new BlockError('EINVAL', `Companion file ${i} of the import has no file name: give File objects`);
      return { name: f.name, blob: f as Blob };
    });
    const set = registerBlobSet({ name: imageFileName(blob), blob }, companions);
    try {
      if (!copy) {
        const src = await this.host.openBackend({ path: set.filename, readOnly: true, ...(o.fromOptions ? { options: o.fromOptions } : {}) });
        await closingAfter(src, () => this.convertFrom(src, o.to, format, o.options ?? {}, onProgress, jobId));
        return;
      }
      await this.checkFilesFound(set.filename);
      const files = [{ from: set.filename, to: o.to, size: blob.size }, ...companions.map((c) => ({ from: `${set.filename.slice(0, set.filename.lastIndexOf('/') + 1)}${c.name}`, to: siblingPath(o.to, c.name), size: c.blob.size }))];
      const total = files.reduce((n, f) => n + f.size, 0);
      let before = 0;
      const written: string[] = [];
      try {
        for (const f of files) {
          const src = await this.host.openBackend({ path: f.from, readOnly: true, format: 'raw' });
          const base = before;
          const progress: ProgressFn | undefined = onProgress && ((p) => onProgress({ done: base + p.done, total }));
          written.push(f.to);
          await closingAfter(src, () => this.convertFrom(src, f.to, 'raw', {}, progress, jobId));
          before += f.size;
        }
      } catch (e) {
        // The target itself is the caller's to remove (as for one file); its companions are ours.
        for (const p of written.slice(1)) await this.host.remove(p).catch(() => undefined);
        throw e;
      }
    } finally {
      set.unregister();
    }
  }

  /**
   * Opens an image about to be stored as it is, without its backing file (and
   * without data access where the format allows it: an encrypted image needs
   * no key): ENOENT, a file it names that was not given with it (a vmdk
   * extent), fails the import. Other failures do not: the bytes are stored
   * and the image's open reports them, as before (a damaged image can be
   * repaired once stored).
   */
  private async checkFilesFound(filename: string): Promise<void> {
    const open = (spec: string | Record<string, unknown>) => BlockBackend.open(this.host.graph, spec, { readOnly: true, noBacking: true }, { name: filename, werror: 'report' });
    let bb: BlockBackend;
    try {
      bb = await open({ filename, 'x-no-io': true }).catch(() => open(filename));
    } catch (e) {
      if (toBlockError(e).code === 'ENOENT') throw e;
      return;
    }
    await bb.close();
  }

  /**
   * A stream of an image's bytes for download. `format` absent: the stored
   * file as it is (a qcow2 stays qcow2); `raw`: what the guest sees; another
   * format: converted first (with creation `options`) into a temporary OPFS
   * file. ENOTSUP for a format the worker cannot create or a vmdk subformat
   * of several files, before anything is written. `fromOptions` open the
   * source (its key secret) when the worker has no disk open on it.
   */
  async exportStream(
    path: string,
    format?: ExportFormat,
    jobId?: number,
    compress = false,
    options: Record<string, string | number | boolean> = {},
    fromOptions?: Record<string, unknown>,
  ): Promise<ReadableStream<Uint8Array>> {
    const target = format && format !== 'file' ? creatableFormat(format, 'export to', options) : undefined;
    if (target) checkOneFile(target, options);
    let src: BlockBackend;
    let cleanup: (() => Promise<void>) | null = null;
    const mine = this.host.openDisk(path);
    if (mine) await mine.flush();
    if (!format || format === 'file') {
      const proto = this.host.graph.protocolFor(path).name;
      if (mine) {
        const node = this.host.graph.protocolNodeOf(mine.backend.node);
        node.ref();
        try {
          src = await BlockBackend.attach(this.host.graph, node, { name: `export ${path}`, perm: Perm.CONSISTENT_READ, shared: PERM_ALL });
        } finally {
          await node.unref();
        }
      } else {
        src = await this.host.openBackend({ path, readOnly: true, options: { driver: proto } });
      }
    } else if (format === 'raw') {
      src = mine
        ? await BlockBackend.attach(this.host.graph, mine.backend.node, { name: `export ${path}`, perm: Perm.CONSISTENT_READ, shared: PERM_ALL })
        : await this.host.openBackend({ path, readOnly: true, ...(fromOptions ? { options: fromOptions } : {}) });
    } else {
      const tmp = exportTmpName(path, target!);
      try {
        await this.convert({ from: path, to: tmp.file, format: target!, options, compress: compress && format === 'qcow2', ...(fromOptions ? { fromOptions } : {}) });
      } catch (e) {
        // A failed convert (a full quota, say) must not leave its partial copy behind.
        await removeOpfs(tmp.dir).catch(() => undefined);
        throw e;
      }
      src = await this.host.openBackend({ path: tmp.file, readOnly: true, options: { driver: 'opfs' } });
      cleanup = () => removeOpfs(tmp.dir);
    }
    const stream = this.streamOf(src, cleanup, jobId);
    return transfer(stream, [stream as unknown as Transferable]);
  }

  /**
   * The files of a conversion of `path` into `format` (with creation
   * `options`), each a stream: one for most formats, the descriptor and its
   * extent files for the vmdk subformats of several files (twoGbMaxExtentSparse
   * / Flat, monolithicFlat). The image comes first; the files are named as the
   * image names them (the source's base name). The conversion waits in a
   * temporary OPFS directory until every stream has been read or cancelled.
   */
  async exportFiles(
    path: string,
    format: ExportFormat,
    jobId?: number,
    options: Record<string, string | number | boolean> = {},
    fromOptions?: Record<string, unknown>,
  ): Promise<Array<{ name: string; stream: ReadableStream<Uint8Array> }>> {
    const target = creatableFormat(format, 'export to', options);
    const mine = this.host.openDisk(path);
    if (mine) await mine.flush();
    const tmp = exportTmpName(path, target);
    const out: Array<{ name: string; stream: ReadableStream<Uint8Array> }> = [];
    const opened: Array<{ name: string; bb: BlockBackend }> = [];
    try {
      await this.convert({ from: path, to: tmp.file, format: target, options, ...(fromOptions ? { fromOptions } : {}) });
      const files = (await listOpfs(tmp.dir.slice('opfs:'.length))).map((f) => f.path);
      files.sort((a, b) => (a === tmp.file ? -1 : b === tmp.file ? 1 : a.localeCompare(b)));
      for (const p of files) opened.push({ name: p.slice(p.lastIndexOf('/') + 1), bb: await this.host.openBackend({ path: p, readOnly: true, options: { driver: 'opfs' } }) });
    } catch (e) {
      for (const { bb } of opened) await bb.close().catch(() => undefined);
      // A failed convert (a full quota, say) must not leave its partial copy behind.
      await removeOpfs(tmp.dir).catch(() => undefined);
      throw e;
    }
    // The directory goes once the last stream is done.
    let left = opened.length;
    const done = async () => {
      if (--left === 0) await removeOpfs(tmp.dir);
    };
    for (const { name, bb } of opened) out.push({ name, stream: this.streamOf(bb, done, jobId) });
    return transfer(out, out.map((o) => o.stream as unknown as Transferable));
  }

  /**
   * A stream of what `src` shows, in order, never more than a few pieces in
   * memory; `src` is closed and `cleanup` run once it ends, fails or is
   * cancelled. The page's cancel of `jobId` ends it with ECANCELED.
   */
  private streamOf(src: BlockBackend, cleanup: (() => Promise<void>) | null, jobId: number | undefined): ReadableStream<Uint8Array> {
    const total = src.length;
    const finish = async () => {
      await src.close().catch(() => undefined);
      if (cleanup) await cleanup().catch(() => undefined);
      cleanup = null;
    };
    // The engine pushes pieces in order; it waits while the stream's queue is full.
    const ac = new AbortController();
    let wake: (() => void) | null = null;
    const room = (c: ReadableStreamDefaultController<Uint8Array>) =>
      (c.desiredSize ?? 1) > 0 || ac.signal.aborted ? Promise.resolve() : new Promise<void>((r) => (wake = r));
    const poke = () => {
      const w = wake;
      wake = null;
      w?.();
    };
    const plan = { srcs: [src], sizes: [total], chunkSize: COPY_CHUNK, compressCluster: 0, fullyAllocate: true, targetHasBacking: false };
    const stream = new ReadableStream<Uint8Array>(
      {
        start: (controller) => {
          void runCopy(
            {
              extents: () => statusExtents(plan),
              read: (offset, buf) => src.pread(offset, buf),
              write: async (e, buf) => {
                if (ac.signal.aborted) return;
                // Enqueued chunks leave the worker: a copy of the reused buffer, zeros for holes.
                controller.enqueue(buf ? buf.slice() : new Uint8Array(e.length));
                await room(controller);
              },
            },
            { chunkSize: COPY_CHUNK, readAhead: 1, writeDepth: 1, signal: ac.signal, progressTotal: total, onProgress: () => this.host.checkCancel(jobId) },
          ).then(
            async () => {
              await finish();
              if (!ac.signal.aborted) controller.close();
            },
            async (e: unknown) => {
              await finish();
              if (!ac.signal.aborted) controller.error(toBlockError(e));
            },
          );
        },
        pull: poke,
        cancel: () => {
          ac.abort();
          poke();
        },
      },
      { highWaterMark: 2 },
    );
    return stream;
  }
}

/**
 * Runs `work`, then closes `bb` (which flushes). The first failure wins: a
 * failed close after a failed copy must not hide why the copy failed, and a
 * failed close after a good copy fails the whole operation.
 */
async function closingAfter(bb: BlockBackend, work: () => Promise<void>): Promise<void> {
  let failure: unknown = null;
  try {
    await work();
  } catch (e) {
    failure = e;
  }
  try {
    await bb.close();
  } catch (e) {
    failure ??= e;
  }
  if (failure !== null) throw failure;
}
