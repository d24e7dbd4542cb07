/**
 * The VHDX log: a ring of 4 KiB sectors (at the header's log offset, of its
 * log length) holding entries that describe metadata writes, so that a write
 * interrupted half-way is finished at the next open ("replayed").
 *
 * An entry is a 64-byte header and 32-byte descriptors (in as many sectors as
 * they need), then one data sector per data descriptor. A data sector keeps
 * bytes 8..4091 of the 4 KiB to write; bytes 0..7 and 4092..4095 ride in its
 * descriptor, and the sector's first and last 4 bytes hold the sequence
 * number. A zero descriptor zeroes a range. The CRC-32C covers the whole
 * entry, with its own field taken as zero.
 *
 * What QEMU 7.2 does, which we do alike: at open it finds the valid sequence
 * of entries with the highest sequence number, replays it (or refuses a
 * read-only open), and empties the log; each BAT update it makes is one entry
 * (one descriptor, one data sector) written, flushed, replayed at once and
 * dropped again.
 */
import type { BdrvChild } from '../../core/child.js';
import { BlockError } from '../../core/errors.js';
import { crc32cUpdate, setVhdxChecksum } from './crc32c.js';
import { guidEq, isZeroGuid, randomGuid, type VhdxHeader, MiB } from './header.js';
import { fileOffset, readAt, writeSync } from './io.js';

export const LOG_SECTOR = 4096;
const LOG_HEADER_SIZE = 64;
const DESC_SIZE = 32;
const LOG_SIGNATURE = 0x65676f6c; // "loge"
const DESC_SIGNATURE = 0x63736564; // "desc"
const ZERO_SIGNATURE = 0x6f72657a; // "zero"
const DATA_SIGNATURE = 0x61746164; // "data"
/** Zero descriptors are written in pieces of this size. */
const ZERO_CHUNK = MiB;

/** Where the log is and where the driver stands in it (QEMU's VHDXLogEntries). */
export interface LogState {
  offset: number;
  length: number;
  read: number;
  write: number;
  sequence: bigint;
  tail: number;
}

/** What the log code needs from the open image. */
export interface LogHost {
  readonly file: BdrvChild;
  /** The current header. */
  header(): VhdxHeader;
  /** Two header updates, with a new data write GUID and / or log GUID. */
  updateHeaders(newDataGuid: boolean, logGuid?: Uint8Array): Promise<void>;
  /** The header updates of the first guest-visible write, once. */
  userVisibleWrite(): Promise<void>;
}

interface EntryHeader {
  signature: number;
  checksum: number;
  entryLength: number;
  tail: number;
  sequence: bigint;
  descriptorCount: number;
  logGuid: Uint8Array;
  flushedFileOffset: bigint;
  lastFileOffset: bigint;
}

interface Descriptor {
  signature: number;
  trailing: Uint8Array;
  leading: Uint8Array;
  zeroLength: bigint;
  fileOffset: bigint;
  sequence: bigint;
}

function decodeEntryHeader(b: Uint8Array): EntryHeader {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return {
    signature: v.getUint32(0, true),
    checksum: v.getUint32(4, true),
    entryLength: v.getUint32(8, true),
    tail: v.getUint32(12, true),
    sequence: v.getBigUint64(16, true),
    descriptorCount: v.getUint32(24, true),
    logGuid: b.slice(32, 48),
    flushedFileOffset: v.getBigUint64(48, true),
    lastFileOffset: v.getBigUint64(56, true),
  };
}

function decodeDescriptor(b: Uint8Array): Descriptor {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return {
    signature: v.getUint32(0, true),
    trailing: b.slice(4, 8),
    leading: b.slice(8, 16),
    zeroLength: v.getBigUint64(8, true),
    fileOffset: v.getBigUint64(16, true),
    sequence: v.getBigUint64(24, true),
  };
}

/** Sectors the header and `count` descriptors take (the header counts as two descriptors). */
function descSectors(count: number): number {
  return Math.ceil((count + 2) / (LOG_SECTOR / DESC_SIZE));
}

const nextIndex = (idx: number, length: number): number => (idx + LOG_SECTOR >= length ? 0 : idx + LOG_SECTOR);

/** A read position in the ring that stops at `write` (QEMU's read / write indexes). */
interface Cursor {
  read: number;
  write: number;
}

/** The entry header at the cursor (at 0 when it would not fit before the end); EINVAL when the ring is empty. */
async function peekHeader(file: BdrvChild, log: LogState, c: Cursor): Promise<EntryHeader> {
  const read = c.read + LOG_HEADER_SIZE > log.length ? 0 : c.read;
  if (read === c.write) throw new BlockError('EINVAL', 'Invalid argument', {}, { detail: `the log is empty at ${read}` });
  return decodeEntryHeader(await readAt(file, BigInt(log.offset) + BigInt(read), LOG_HEADER_SIZE, 'log entry header'));
}

/** Reads up to `n` sectors at the cursor, moving it; returns those read (fewer when the ring ends). */
async function readSectors(file: BdrvChild, log: LogState, c: Cursor, n: number, each: (s: Uint8Array) => void): Promise<number> {
  let done = 0;
  while (done < n && c.read !== c.write) {
    const s = await readAt(file, BigInt(log.offset) + BigInt(c.read), LOG_SECTOR, 'log sector');
    c.read = nextIndex(c.read, log.length);
    done++;
    each(s);
  }
  return done;
}

function headerIsValid(log: LogState, h: EntryHeader, current: VhdxHeader): boolean {
  return (
    h.signature === LOG_SIGNATURE &&
    h.entryLength <= log.length &&
    h.entryLength % LOG_SECTOR === 0 &&
    h.sequence !== 0n &&
    guidEq(h.logGuid, current.logGuid) &&
    h.descriptorCount * DESC_SIZE <= h.entryLength
  );
}

function descriptorIsValid(d: Descriptor, h: EntryHeader): boolean {
  if (d.sequence !== h.sequence || d.fileOffset % BigInt(LOG_SECTOR) !== 0n) return false;
  if (d.signature === ZERO_SIGNATURE) return d.zeroLength % BigInt(LOG_SECTOR) === 0n;
  return d.signature === DESC_SIGNATURE;
}

/**
 * Reads an entry's header and descriptor sectors at the cursor (moving it)
 * and checks them: EINVAL for an invalid header or descriptor, or a ring
 * that ends first. `sum` hears every descriptor sector as read.
 */
async function readDescriptors(host: LogHost, log: LogState, c: Cursor, sum?: (s: Uint8Array) => void): Promise<{ h: EntryHeader; descs: Descriptor[] }> {
  const h = await peekHeader(host.file, log, c);
  if (!headerIsValid(log, h, host.header())) {
    throw new BlockError('EINVAL', 'Invalid argument', {}, { detail: `invalid log entry header at log offset ${c.read}` });
  }
  const want = descSectors(h.descriptorCount);
  const descs: Descriptor[] = [];
  let bad: number | undefined;
  let sector = 0;
  const got = await readSectors(host.file, log, c, want, (s) => {
    sum?.(s);
    // The header takes the first two slots of the first sector.
    for (let slot = sector === 0 ? 2 : 0; slot < LOG_SECTOR / DESC_SIZE && bad === undefined; slot++) {
      const i = sector * (LOG_SECTOR / DESC_SIZE) + slot - 2;
      if (i >= h.descriptorCount) break;
      const d = decodeDescriptor(s.subarray(slot * DESC_SIZE, (slot + 1) * DESC_SIZE));
      if (!descriptorIsValid(d, h)) bad = i;
      else descs.push(d);
    }
    sector++;
  });
  if (got !== want) throw new BlockError('EINVAL', 'Invalid argument', {}, { detail: `log entry of sequence ${h.sequence} ends past the log` });
  if (bad !== undefined) throw new BlockError('EINVAL', 'Invalid argument', {}, { detail: `log descriptor ${bad} of sequence ${h.sequence} is invalid` });
  return { h, descs };
}

/**
 * Checks the entry at the cursor as QEMU's vhdx_validate_log_entry: a bad
 * header moves one sector on; a good one is read whole and its checksum
 * decides. `prev` (when not 0) is the sequence number it must follow.
 */
async function validateEntry(host: LogHost, log: LogState, c: Cursor, prev: bigint): Promise<EntryHeader | null> {
  const h = await peekHeader(host.file, log, c);
  if (!headerIsValid(log, h, host.header()) || (prev > 0n && h.sequence !== prev + 1n)) {
    c.read = nextIndex(c.read, log.length);
    return null;
  }
  let crc = 0xffffffff;
  let first = true;
  await readDescriptors(host, log, c, (s) => {
    if (first) {
      // The checksum field counts as zero.
      crc = crc32cUpdate(crc, s.subarray(0, 4));
      crc = crc32cUpdate(crc, new Uint8Array(4));
      crc = crc32cUpdate(crc, s.subarray(8));
      first = false;
    } else {
      crc = crc32cUpdate(crc, s);
    }
  });
  const dataSectors = h.entryLength / LOG_SECTOR - descSectors(h.descriptorCount);
  for (let i = 0; i < dataSectors; i++) {
    if ((await readSectors(host.file, log, c, 1, (s) => (crc = crc32cUpdate(crc, s)))) !== 1) return null;
  }
  return ((crc ^ 0xffffffff) >>> 0) === h.checksum ? h : null;
}

/** A run of valid entries: where it starts and ends in the ring, how many, the last header. */
export interface LogSequence {
  read: number;
  write: number;
  count: number;
  last: EntryHeader;
}

/** Finds the valid sequence with the highest sequence number anywhere in the ring (QEMU's vhdx_log_search). */
export async function searchLog(host: LogHost, log: LogState): Promise<LogSequence | null> {
  const c: Cursor = { read: 0, write: log.length };
  let best: LogSequence | null = null;
  for (;;) {
    const start = c.read;
    let h = await validateEntry(host, log, c, 0n);
    if (h) {
      const cur: LogSequence = { read: start, write: c.read, count: 1, last: h };
      // QEMU checks the second entry against 0 too, then each against the one before.
      let prev = 0n;
      while ((h = await validateEntry(host, log, c, prev))) {
        cur.write = c.read;
        cur.count++;
        cur.last = h;
        prev = h.sequence;
      }
      if (!best || cur.last.sequence > best.last.sequence) best = cur;
    }
    if (c.read < start) break;
  }
  if (best) log.sequence = best.last.sequence + 1n;
  return best;
}

/** Writes `n` bytes of zeros at `offset` (a zero descriptor). */
async function writeZeros(file: BdrvChild, offset: number, n: number): Promise<void> {
  const zeros = new Uint8Array(Math.min(n, ZERO_CHUNK));
  for (let done = 0; done < n; done += zeros.length) {
    const len = Math.min(zeros.length, n - done);
    await writeSync(file, offset + done, zeros.subarray(0, len));
  }
}

/** Applies one descriptor (and its data sector). */
async function applyDescriptor(file: BdrvChild, d: Descriptor, data: Uint8Array | undefined): Promise<void> {
  const at = fileOffset(d.fileOffset, 'log descriptor file offset');
  if (d.signature === ZERO_SIGNATURE) {
    const n = fileOffset(d.zeroLength, 'log zero descriptor length');
    fileOffset(d.fileOffset + d.zeroLength, 'log zero descriptor end');
    await writeZeros(file, at, n);
    return;
  }
  const v = new DataView(data!.buffer, data!.byteOffset, data!.byteLength);
  const seq = (BigInt(v.getUint32(4, true)) << 32n) | BigInt(v.getUint32(LOG_SECTOR - 4, true));
  if (seq !== d.sequence) {
    throw new BlockError('EINVAL', 'Invalid argument', {}, { detail: `log data sector has sequence ${seq}, its descriptor ${d.sequence}` });
  }
  const sector = new Uint8Array(LOG_SECTOR);
  sector.set(d.leading, 0);
  sector.set(data!.subarray(8, LOG_SECTOR - 4), 8);
  sector.set(d.trailing, LOG_SECTOR - 4);
  await writeSync(file, at, sector);
}

/**
 * Replays `seq` (QEMU's vhdx_log_flush): every descriptor's write, the file
 * grown to an entry's last file offset when that is not a whole MiB (QEMU
 * leaves a whole-MiB one alone), then the log emptied (log GUID zero).
 */
export async function replayLog(host: LogHost, log: LogState, seq: LogSequence): Promise<void> {
  const file = host.file;
  await host.userVisibleWrite();
  const c: Cursor = { read: seq.read, write: seq.write };
  for (let n = 0; n < seq.count; n++) {
    const peek = await peekHeader(file, log, c);
    const fileLength = file.length;
    if (peek.flushedFileOffset > BigInt(fileLength)) {
      throw new BlockError('EINVAL', 'Invalid argument', {}, { detail: `log flushed file offset ${peek.flushedFileOffset} is past the end of the file (${fileLength})` });
    }
    const { h, descs } = await readDescriptors(host, log, c);
    for (const d of descs) {
      let data: Uint8Array | undefined;
      if (d.signature === DESC_SIGNATURE) {
        if ((await readSectors(file, log, c, 1, (s) => (data = s))) !== 1) {
          throw new BlockError('EINVAL', 'Invalid argument', {}, { detail: `log data sector of sequence ${h.sequence} is missing` });
        }
      }
      await applyDescriptor(file, d, data);
    }
    if (BigInt(fileLength) < h.lastFileOffset && h.lastFileOffset % BigInt(MiB) !== 0n) {
      const size = (h.lastFileOffset + BigInt(MiB) - 1n) / BigInt(MiB) * BigInt(MiB);
      await file.truncate(fileOffset(size, 'log last file offset'), false, 'off', 0);
    }
  }
  await file.flush();
  log.read = log.write = 0;
  await host.updateHeaders(false, new Uint8Array(16));
  // What the caller keeps of the ring: the position past the replayed entries.
  seq.read = c.read;
  seq.write = c.write;
}

/**
 * Journals the write of `data` (within one 4 KiB sector) at `offset` and
 * carries it out, as QEMU's vhdx_log_write_and_flush: flush, one entry
 * written under a new log GUID, flush, the entry replayed, the log emptied.
 */
export async function loggedWrite(host: LogHost, log: LogState, data: Uint8Array, offset: number): Promise<void> {
  const file = host.file;
  await file.flush();
  if (data.length > host.header().logLength) {
    throw new BlockError('EINVAL', 'Invalid argument', {}, { detail: `log of ${host.header().logLength} bytes cannot hold ${data.length}` });
  }
  if (!isZeroGuid(host.header().logGuid)) {
    throw new BlockError('ENOTSUP', 'Operation not supported', {}, { detail: 'the log holds an entry already' });
  }
  await host.updateHeaders(false, randomGuid());
  if (log.sequence === 0n) log.sequence = 1n;
  const at = offset % LOG_SECTOR;
  const sectorOffset = offset - at;
  const entry = new Uint8Array(2 * LOG_SECTOR);
  const v = new DataView(entry.buffer);
  const fileLength = BigInt(file.length);
  v.setUint32(0, LOG_SIGNATURE, true);
  v.setUint32(8, entry.length, true);
  v.setUint32(12, log.tail, true);
  v.setBigUint64(16, log.sequence, true);
  v.setUint32(24, 1, true);
  entry.set(host.header().logGuid, 32);
  v.setBigUint64(48, fileLength, true);
  v.setBigUint64(56, fileLength, true);
  // The whole sector as it will be: the file's bytes with the data over them.
  const merged = await readAt(file, sectorOffset, LOG_SECTOR, 'sector to journal');
  merged.set(data, at);
  v.setUint32(64, DESC_SIGNATURE, true);
  entry.set(merged.subarray(LOG_SECTOR - 4), 64 + 4);
  entry.set(merged.subarray(0, 8), 64 + 8);
  v.setBigUint64(64 + 16, BigInt(sectorOffset), true);
  v.setBigUint64(64 + 24, log.sequence, true);
  v.setUint32(LOG_SECTOR, DATA_SIGNATURE, true);
  v.setUint32(LOG_SECTOR + 4, Number(log.sequence >> 32n), true);
  entry.set(merged.subarray(8, LOG_SECTOR - 4), LOG_SECTOR + 8);
  v.setUint32(2 * LOG_SECTOR - 4, Number(log.sequence & 0xffffffffn), true);
  setVhdxChecksum(entry, 4);

  await host.userVisibleWrite();
  let written = 0;
  for (let s = 0; s < 2; s++) {
    const pos = log.write;
    const next = nextIndex(pos, log.length);
    if (next === log.read) break;
    await file.pwritev(log.offset + pos, LOG_SECTOR, entry.subarray(s * LOG_SECTOR, (s + 1) * LOG_SECTOR));
    log.write = next;
    written++;
  }
  if (written !== 2) throw new BlockError('EINVAL', 'Invalid argument', {}, { detail: `the log is full at ${log.write}` });
  log.sequence++;
  log.tail = log.write;

  await file.flush();
  const seq: LogSequence = { read: log.read, write: log.write, count: 1, last: decodeEntryHeader(entry) };
  await replayLog(host, log, seq);
  log.read = seq.read;
  log.write = seq.write;
}
