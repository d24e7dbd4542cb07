/**
 * The blklogwrites filter (QEMU 7.2's block/blklogwrites.c): every write,
 * zero write, discard and flush through it reaches its `file` node and is
 * then recorded on its `log` node in the format of Linux's dm-log-writes
 * target (src/filters/log-writes-format.ts), so a replay tool can rebuild
 * the disk as it was after any request. Reads pass through.
 *
 * Options: `log-sector-size` (the log's unit, a power of two from 32 bytes
 * to below 16 MiB, default 512; requests through the filter are aligned to
 * it), `log-append` (continue an existing log instead of starting over;
 * excludes log-sector-size, which then comes from the log),
 * `log-super-update-interval` (the superblock is rewritten after this many
 * entries, default 4096, and on every flush).
 */
import type { BlockDriver, DriverInstance } from '../core/driver.js';
import type { BlockNode } from '../core/node.js';
import type { BdrvChild } from '../core/child.js';
import { einval, toBlockError } from '../core/errors.js';
import type { OptionReader } from '../core/options.js';
import { ChildRole, ROLE_FILTERED_PRIMARY } from '../core/permissions.js';
import { optText, parseOptBool, parseOptNumber, parseOptSize } from './qemu-opt-value.js';
import { LogFlag, LOG_FLAG_MASK, LOG_MAGIC, LOG_VERSION, SUPER_SIZE, ENTRY_SIZE, encodeEntry, encodeSuper, readEntry, readSuper, validSectorSize } from './log-writes-format.js';

/** Default superblock update interval (entries). */
const DEFAULT_UPDATE_INTERVAL = 4096;

/** Where the log continues: its next free sector and its entry count. */
interface LogPosition {
  sector: number;
  entries: number;
}

/** The options as QemuOpts parses them (booleans and numbers in QEMU's syntax). */
function readOptions(options: OptionReader) {
  const text = (key: string) => optText(options.raw(key));
  const appendText = text('log-append');
  const append = appendText === undefined ? false : parseOptBool('log-append', appendText);
  const sizeText = text('log-sector-size');
  const sectorSize = sizeText === undefined ? undefined : parseOptSize('log-sector-size', sizeText);
  const intervalText = text('log-super-update-interval');
  const interval = intervalText === undefined ? BigInt(DEFAULT_UPDATE_INTERVAL) : parseOptNumber('log-super-update-interval', intervalText);
  return { append, sectorSize, interval };
}

/** Finds the end of an existing log by walking its `entries` entries (QEMU's blk_log_writes_find_cur_log_sector). */
async function findLogEnd(log: BdrvChild, sectorSize: number, entries: number): Promise<number> {
  let sector = 1;
  const buf = new Uint8Array(ENTRY_SIZE);
  for (let i = 0; i < entries; i++) {
    try {
      await log.read(sector * sectorSize, buf);
    } catch (e) {
      throw toBlockError(e).withPrefix(`Failed to read log entry ${i}`);
    }
    const entry = readEntry(buf);
    if (entry.flags & ~BigInt(LOG_FLAG_MASK)) {
      throw einval(`Invalid flags 0x${entry.flags.toString(16)} in log entry ${i}`);
    }
    sector++;
    // A discard's entry carries no data.
    if (!(entry.flags & BigInt(LogFlag.DISCARD))) sector += Number(entry.nrSectors);
  }
  return sector;
}

/** The log position and sector size `log-append` continues from. */
async function appendPosition(log: BdrvChild): Promise<{ sectorSize: number; pos: LogPosition }> {
  // An empty log is taken as a fresh one of 512-byte sectors.
  let sb = { magic: LOG_MAGIC, version: LOG_VERSION, entries: 0n, sectorSize: 512 };
  if (log.length !== 0) {
    const buf = new Uint8Array(SUPER_SIZE);
    try {
      await log.read(0, buf);
    } catch (e) {
      throw toBlockError(e).withPrefix('Could not read log superblock');
    }
    sb = readSuper(buf);
  }
  if (sb.magic !== LOG_MAGIC) throw einval('Invalid log superblock magic');
  if (sb.version !== LOG_VERSION) throw einval(`Unsupported log version ${sb.version}`);
  const pos: LogPosition = { sector: 1, entries: 0 };
  if (validSectorSize(sb.sectorSize)) {
    if (sb.entries > BigInt(Number.MAX_SAFE_INTEGER)) throw einval(`Log superblock counts ${sb.entries} entries, too many to walk`);
    pos.sector = await findLogEnd(log, sb.sectorSize, Number(sb.entries));
    pos.entries = Number(sb.entries);
  }
  return { sectorSize: sb.sectorSize, pos };
}

async function openBlkLogWrites(node: BlockNode, options: OptionReader): Promise<DriverInstance> {
  // QEMU parses the options before it opens either child.
  const opts = readOptions(options);
  const file = (await node.openChild(options, 'file', ROLE_FILTERED_PRIMARY))!;
  let log: BdrvChild | undefined;
  let sectorSize: number;
  let pos: LogPosition = { sector: 1, entries: 0 };
  let interval: number;
  try {
    log = (await node.openChild(options, 'log', ChildRole.METADATA))!;
    if (opts.append) {
      if (opts.sectorSize !== undefined) throw einval('log-append and log-sector-size are mutually exclusive');
      ({ sectorSize, pos } = await appendPosition(log));
    } else {
      sectorSize = opts.sectorSize ?? 512;
    }
    if (!validSectorSize(sectorSize)) throw einval(`Invalid log sector size ${sectorSize}`);
    if (opts.interval === 0n) throw einval('Invalid log superblock update interval 0');
    // Past 2^53 entries the interval is never reached, as with any larger one.
    interval = opts.interval > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(opts.interval);
  } catch (e) {
    if (log) await node.graph.detachChild(log);
    await node.graph.detachChild(file);
    throw e;
  }
  return logWritesInstance(file, log, sectorSize, pos, interval);
}

function logWritesInstance(file: BdrvChild, log: BdrvChild, sectorSize: number, pos: LogPosition, interval: number): DriverInstance {
  /** Appends one entry (and its data, or `zeroBytes` of zeros) to the log; the superblock follows on flushes and every `interval` entries. */
  async function record(offset: number, bytes: number, flags: number, data: Uint8Array | undefined, zeroBytes: number): Promise<void> {
    const at = pos.sector * sectorSize;
    const entrySector = new Uint8Array(sectorSize);
    entrySector.set(encodeEntry(offset / sectorSize, bytes / sectorSize, flags));
    const total = sectorSize + (data ? bytes : 0);
    // The position moves before the writes, so a concurrent request logs after this one.
    pos.entries++;
    pos.sector += Math.ceil(total / sectorSize);
    if (data) {
      const buf = new Uint8Array(total);
      buf.set(entrySector);
      buf.set(data.subarray(0, bytes), sectorSize);
      await log.write(at, buf);
    } else {
      await log.write(at, entrySector);
    }
    if (zeroBytes > 0) {
      const zat = pos.sector * sectorSize;
      pos.sector += Math.ceil(zeroBytes / sectorSize);
      await log.pwriteZeroes(zat, zeroBytes);
    }
    if (flags & LogFlag.FLUSH || pos.entries % interval === 0) {
      const sb = new Uint8Array(sectorSize);
      sb.set(encodeSuper(pos.entries, sectorSize));
      await log.write(0, sb);
      await log.flush();
    }
  }

  /** Runs the request on the file, then logs it whatever the file said; a log failure wins. */
  async function logged(fileOp: () => Promise<void> | void, offset: number, bytes: number, flags: number, data: Uint8Array | undefined, zero: boolean) {
    let fileError: unknown = null;
    try {
      await fileOp();
    } catch (e) {
      fileError = e;
    }
    await record(offset, bytes, flags, data, zero ? bytes : 0);
    if (fileError !== null) throw fileError;
  }

  return {
    getLength: () => file.length,
    preadv: (offset, bytes, buf, flags) => file.preadv(offset, bytes, buf, flags),
    pwritev: (offset, bytes, buf, flags) => logged(() => file.pwritev(offset, bytes, buf, flags), offset, bytes, 0, buf, false),
    pwriteZeroes: (offset, bytes, flags) => logged(() => file.pwriteZeroes(offset, bytes, flags), offset, bytes, 0, undefined, true),
    pdiscard: (offset, bytes) => logged(() => file.pdiscard(offset, bytes), offset, bytes, LogFlag.DISCARD, undefined, false),
    flushToDisk: () => logged(() => file.flush(), 0, 0, LogFlag.FLUSH, undefined, false),
    refreshLimits(l) {
      l.requestAlignment = sectorSize;
    },
  };
}

/** The blklogwrites filter driver. */
export const blkLogWritesDriver: BlockDriver = {
  name: 'blklogwrites',
  kind: 'filter',
  strongOptions: ['log-append', 'log-sector-size'],
  open: openBlkLogWrites,
};
