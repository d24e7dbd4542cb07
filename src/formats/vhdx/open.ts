/**
 * Opening a VHDX image as QEMU 7.2's vhdx_open: the signature, the current
 * header, the log (replayed, or a read-only open refused), the region table,
 * the metadata, the BAT and (unless opened for check) the BAT's entries
 * against the file and the other regions.
 *
 * QEMU gives most failures no message of its own: its generic open failure
 * then reads "Could not open '<file>': <strerror>", which is our text, with
 * the offending value as the detail.
 */
import type { BdrvChild } from '../../core/child.js';
import { BlockError, STRERROR, toBlockError, type ErrorCode } from '../../core/errors.js';
import { Bat, batGeometry, type BatGeometry } from './bat.js';
import { checkBatEntries, Regions } from './check.js';
import {
  BAT_GUID,
  FILE_SIGNATURE,
  HEADER1_OFFSET,
  HEADER2_OFFSET,
  HEADER_CRC_SIZE,
  HEADER_BLOCK_SIZE,
  METADATA_GUID,
  MiB,
  REGION_REQUIRED,
  REGION_TABLE_OFFSET,
  decodeHeader,
  decodeRegionTable,
  guidEq,
  isZeroGuid,
  pickHeader,
  sameHeaderBytes,
  validHeader,
  type RegionEntry,
  type VhdxHeader,
} from './header.js';
import { fileOffset, readAt } from './io.js';
import { replayLog, searchLog, type LogHost, type LogState } from './log.js';
import {
  BLOCK_SIZE_MAX,
  BLOCK_SIZE_MIN,
  Item,
  METADATA_TABLE_SIZE,
  PARAMS_HAS_PARENT,
  decodeMetadataTable,
  isRefusal,
} from './metadata.js';

/** The two headers (both kept, as QEMU updates the other one in place) and which is current. */
export interface Headers {
  h: [VhdxHeader, VhdxHeader];
  current: number;
}

/** Everything open learns. */
export interface VhdxLayout {
  headers: Headers;
  log: LogState;
  logReplayed: boolean;
  regions: Regions;
  geometry: BatGeometry;
  bat: Bat;
  batOffset: number;
  /** Virtual disk size in bytes. */
  size: number;
  blockSize: number;
  fileParams: number;
  logicalSectorSize: number;
  physicalSectorSize: number;
}

/** An errno failure in QEMU's generic words for the open of `file`, with `detail` naming the value. */
export function openFailure(file: BdrvChild, code: ErrorCode, detail: string): BlockError {
  return new BlockError(code, `Could not open '${file.node.filename}': ${STRERROR[code]}`, {}, { detail });
}

/** What the caller of {@link openLayout} provides: how to update headers and write while the log is replayed. */
export interface OpenHost extends LogHost {
  /** Set once the headers are read (the host's header updates work on them). */
  setHeaders(h: Headers): void;
}

const isPow2 = (x: number): boolean => x > 0 && (x & (x - 1)) === 0;

async function readHeaders(file: BdrvChild): Promise<Headers> {
  const b1 = await readAt(file, HEADER1_OFFSET, HEADER_CRC_SIZE, 'header 1');
  const b2 = await readAt(file, HEADER2_OFFSET, HEADER_CRC_SIZE, 'header 2');
  const v1 = validHeader(b1);
  const v2 = validHeader(b2);
  const current = pickHeader(v1, v2, sameHeaderBytes(b1, b2));
  if (current < 0) {
    const s1 = v1 ? `sequence ${v1.sequenceNumber}` : 'invalid';
    const s2 = v2 ? `sequence ${v2.sequenceNumber}` : 'invalid';
    throw new BlockError('EINVAL', 'No valid VHDX header found', {}, { detail: `header 1 ${s1}, header 2 ${s2}` });
  }
  // An invalid header is kept as read: QEMU rewrites it from these values.
  return { h: [decodeHeader(b1), decodeHeader(b2)], current };
}

/** The log's place, checked as QEMU's vhdx_parse_log; null when there is no log to look at. */
function logPlace(file: BdrvChild, h: VhdxHeader): { log: LogState; present: boolean } {
  const log: LogState = { offset: 0, length: h.logLength, read: 0, write: 0, sequence: 0n, tail: 0 };
  if (h.logOffset < BigInt(MiB) || h.logOffset % BigInt(MiB) !== 0n) throw openFailure(file, 'EINVAL', `log offset ${h.logOffset}`);
  log.offset = fileOffset(h.logOffset, 'log offset');
  if (h.logVersion !== 0) throw openFailure(file, 'EINVAL', `log version ${h.logVersion}`);
  if (isZeroGuid(h.logGuid) || h.logLength === 0) return { log, present: false };
  if (h.logLength % MiB !== 0) throw openFailure(file, 'EINVAL', `log length ${h.logLength}`);
  return { log, present: true };
}

/** The BAT and metadata regions from the region table at 192 KiB. */
async function readRegions(file: BdrvChild, regions: Regions): Promise<{ bat: RegionEntry; metadata: RegionEntry }> {
  const t = decodeRegionTable(await readAt(file, REGION_TABLE_OFFSET, HEADER_BLOCK_SIZE, 'region table'));
  if (!t.ok) throw openFailure(file, 'EINVAL', t.why);
  let bat: RegionEntry | undefined;
  let metadata: RegionEntry | undefined;
  for (const [i, e] of t.entries.entries()) {
    const overlap = regions.overlap(e.fileOffset, BigInt(e.length));
    if (overlap) {
      file.node.graph.report(overlap);
      throw openFailure(file, 'EINVAL', `region table entry ${i}`);
    }
    regions.add(e.fileOffset, BigInt(e.length));
    if (guidEq(e.guid, BAT_GUID)) {
      if (bat) throw openFailure(file, 'EINVAL', `region table entry ${i} is a second BAT`);
      bat = e;
    } else if (guidEq(e.guid, METADATA_GUID)) {
      if (metadata) throw openFailure(file, 'EINVAL', `region table entry ${i} is a second metadata region`);
      metadata = e;
    } else if (e.dataBits & REGION_REQUIRED) {
      throw openFailure(file, 'ENOTSUP', `region table entry ${i} is required but unknown`);
    }
  }
  if (!bat || !metadata) throw openFailure(file, 'EINVAL', `the region table has no ${bat ? 'metadata region' : 'BAT'}`);
  return { bat, metadata };
}

interface Metadata {
  blockSize: number;
  fileParams: number;
  size: bigint;
  logicalSectorSize: number;
  physicalSectorSize: number;
}

async function readMetadata(file: BdrvChild, region: RegionEntry): Promise<Metadata> {
  const table = decodeMetadataTable(await readAt(file, region.fileOffset, METADATA_TABLE_SIZE, 'metadata table'));
  if (isRefusal(table)) throw openFailure(file, table.code, table.why);
  const item = async (k: number, n: number, what: string): Promise<DataView> => {
    const b = await readAt(file, region.fileOffset + BigInt(table.offsets[k]!), n, what);
    return new DataView(b.buffer);
  };
  const params = await item(Item.FILE_PARAMS, 8, 'file parameters');
  const blockSize = params.getUint32(0, true);
  const fileParams = params.getUint32(4, true);
  if (fileParams & PARAMS_HAS_PARENT) {
    // QEMU 7.2 reads no differencing image; one without a parent locator is invalid.
    if (table.offsets[Item.PARENT_LOCATOR] !== undefined) throw openFailure(file, 'ENOTSUP', 'a differencing image (has a parent)');
    throw openFailure(file, 'EINVAL', 'the file parameters say it has a parent, but there is no parent locator');
  }
  const size = (await item(Item.VIRTUAL_SIZE, 8, 'virtual disk size')).getBigUint64(0, true);
  const logicalSectorSize = (await item(Item.LOGICAL_SECTOR, 4, 'logical sector size')).getUint32(0, true);
  const physicalSectorSize = (await item(Item.PHYSICAL_SECTOR, 4, 'physical sector size')).getUint32(0, true);
  if (blockSize < BLOCK_SIZE_MIN || blockSize > BLOCK_SIZE_MAX) throw openFailure(file, 'EINVAL', `block size ${blockSize}`);
  if (logicalSectorSize !== 512) throw openFailure(file, 'ENOTSUP', `logical sector size ${logicalSectorSize}`);
  if (!isPow2(blockSize)) throw openFailure(file, 'EINVAL', `block size ${blockSize} is not a power of two`);
  return { blockSize, fileParams, size, logicalSectorSize, physicalSectorSize };
}

/** Largest guest size we serve: offsets must stay exact numbers (QEMU's own limit is 2^63). */
const MAX_LENGTH = 2 ** 53 - 512;

/** Reads and checks the image in `file`. */
export async function openLayout(file: BdrvChild, host: OpenHost, opts: { readOnly: boolean; forCheck: boolean }): Promise<VhdxLayout> {
  const sig = await readAt(file, 0, 8, 'file identifier');
  if (String.fromCharCode(...sig) !== FILE_SIGNATURE) throw openFailure(file, 'EINVAL', 'no "vhdxfile" signature at offset 0');
  const headers = await readHeaders(file);
  host.setHeaders(headers);
  const cur = headers.h[headers.current];
  const regions = new Regions();
  regions.add(cur.logOffset, BigInt(cur.logLength));

  const { log, present } = logPlace(file, cur);
  let logReplayed = false;
  if (present) {
    // QEMU's log code sets no message: the failure reads as its errno.
    const asOpenFailure = (e: unknown): never => {
      const err = toBlockError(e);
      throw openFailure(file, err.code, err.detail ?? err.text);
    };
    const seq = await searchLog(host, log).catch(asOpenFailure);
    if (seq) {
      if (opts.readOnly) {
        const name = file.node.filename;
        throw new BlockError('EPERM', `VHDX image file '${name}' opened read-only, but contains a log that needs to be replayed`, {}, {
          hint: `To replay the log, run:\nqemu-img check -r all '${name}'\n`,
        });
      }
      await replayLog(host, log, seq).catch(asOpenFailure);
      logReplayed = true;
    }
  }

  const { bat: batRegion, metadata } = await readRegions(file, regions);
  const md = await readMetadata(file, metadata);
  const geometry = batGeometry(md.size, md.blockSize, md.logicalSectorSize);
  if (geometry.entries > Math.floor(batRegion.length / 8)) {
    throw openFailure(file, 'EINVAL', `${geometry.entries} BAT entries do not fit in the BAT region of ${batRegion.length} bytes`);
  }
  // QEMU goes on up to 2^63; offsets past 2^53 are not exact numbers here.
  if (md.size > BigInt(MAX_LENGTH)) throw openFailure(file, 'EFBIG', `virtual disk size ${md.size}`);
  // Whole logical sectors (QEMU keeps the size in sectors).
  const size = Number(md.size) - (Number(md.size) % md.logicalSectorSize);
  // Only the part of the BAT inside the file is held; the rest reads as zeros anyway.
  const batOffset = fileOffset(batRegion.fileOffset, 'BAT offset');
  // Whole entries: one the file ends in is read with zeros past the end, as QEMU reads it.
  const held = Math.max(0, Math.min(geometry.entries * 8, Math.ceil((file.length - batOffset) / 8) * 8));
  const bat = new Bat(geometry.entries, await readAt(file, batOffset, held, 'BAT'));

  const layout: VhdxLayout = {
    headers,
    log,
    logReplayed,
    regions,
    geometry,
    bat,
    batOffset,
    size,
    blockSize: md.blockSize,
    fileParams: md.fileParams,
    logicalSectorSize: md.logicalSectorSize,
    physicalSectorSize: md.physicalSectorSize,
  };
  if (!opts.forCheck) {
    const problems = checkBatEntries(layout, file.length, true);
    if (problems.length > 0) {
      file.node.graph.report(problems[0]!);
      throw openFailure(file, 'EINVAL', problems[0]!);
    }
  }
  return layout;
}
