/**
 * The checks of the BAT against the file, shared by open (first problem
 * fails it) and `qemu-img check` (every problem counts as a corruption), as
 * QEMU 7.2's vhdx_check_bat_entries; and the regions of the file (log, BAT,
 * metadata) that payload blocks must not overlap.
 *
 * The messages are QEMU's error_report lines.
 */
import { CHECK_REPORT_LINE, type CheckResult } from '../../core/driver.js';
import { PayloadState } from './bat.js';
import type { VhdxLayout } from './open.js';

const INT64_MAX = 2n ** 63n - 1n;

/** The file's regions, newest first as QEMU lists them. */
export class Regions {
  private readonly list: Array<{ start: bigint; end: bigint }> = [];

  add(start: bigint, length: bigint): void {
    this.list.unshift({ start, end: BigInt.asUintN(64, start + length) });
  }

  /** QEMU's overlap report for [start, start + length), or undefined. */
  overlap(start: bigint, length: bigint): string | undefined {
    const end = BigInt.asUintN(64, start + length);
    for (const r of this.list) {
      if (!(start >= r.end || end <= r.start)) {
        // QEMU's format has a "%." there: an end of 0 prints as nothing.
        return `VHDX region ${start}-${end} overlaps with region ${r.start}-${r.end === 0n ? '' : r.end}`;
      }
    }
    return undefined;
  }
}

/**
 * The problems of the fully present entries: offsets that overflow, blocks
 * past the end of the file (the last one may end early), payload blocks
 * over another region. QEMU counts the payload entries by fully present
 * entries, not by position: every (chunk ratio + 1)th one is skipped, and so
 * is it here. `first`: stop at the first problem.
 */
export function checkBatEntries(l: VhdxLayout, fileLength: number, first: boolean): string[] {
  const out: string[] = [];
  const bs = BigInt(l.blockSize);
  const fileLen = BigInt(fileLength);
  const total = BigInt(l.size);
  let payloadLeft = l.geometry.chunkRatio;
  for (let i = 0; i < l.bat.entries; i++) {
    if (l.bat.state(i) !== PayloadState.FULLY_PRESENT) continue;
    const offset = BigInt(l.bat.offset(i));
    // uint64 arithmetic: past the disk's end the difference wraps and the block size wins.
    const left = BigInt.asUintN(64, total - BigInt(i) * bs);
    const blockLength = left < bs ? left : bs;
    if (offset > INT64_MAX - bs) {
      out.push(`VHDX BAT entry ${i} offset overflow.`);
      if (first) break;
    }
    if (offset >= fileLen) {
      out.push(`VHDX BAT entry ${i} start offset ${offset} points after end of file (${fileLen}). Image has probably been truncated.`);
      if (first) break;
    } else if (offset + blockLength > fileLen) {
      out.push(`VHDX BAT entry ${i} end offset ${offset + blockLength - 1n} points after end of file (${fileLen}). Image has probably been truncated.`);
      if (first) break;
    }
    if (payloadLeft-- > 0) {
      const overlap = l.regions.overlap(offset, bs);
      if (overlap) {
        out.push(overlap);
        if (first) break;
      }
    } else {
      payloadLeft = l.geometry.chunkRatio;
    }
  }
  return out;
}

/** qemu-img check: a replayed log counts as a repaired corruption, each BAT problem as a corruption. */
export function checkImage(l: VhdxLayout, fileLength: number): CheckResult {
  const problems = checkBatEntries(l, fileLength, false);
  return {
    corruptions: problems.length,
    leaks: 0,
    checkErrors: 0,
    corruptionsFixed: l.logReplayed ? 1 : 0,
    leaksFixed: 0,
    imageEndOffset: 0,
    messages: problems.map((p) => CHECK_REPORT_LINE + p),
  };
}
