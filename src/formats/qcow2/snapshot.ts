/**
 * The internal snapshot table on disk: reading it (each entry bounded before
 * use) and its byte layout for writing (snapshot-ops.ts writes it).
 */
import type { BdrvChild } from '../../core/child.js';
import { BlockError } from '../../core/errors.js';
import type { SnapshotInfo } from '../../core/driver.js';
import { MAX_L1_BYTES, MAX_SNAPSHOTS_BYTES, MAX_SNAPSHOT_EXTRA, SNAP } from './constants.js';

export interface Qcow2Snapshot extends SnapshotInfo {
  l1TableOffset: number;
  l1Size: number;
  /** Bytes of extra data in the entry (v3 requires at least the large VM state and disk sizes). */
  extraDataSize: number;
  /** Extra data past the fields we know (a newer writer's), kept as it is when the table is rewritten. */
  unknownExtra?: Uint8Array;
}

/** Extra data a table written by us holds: vm_state_size_large, disk_size and icount. */
export const SNAPSHOT_EXTRA = 24;

/** QEMU's advice after "Snapshot table is too big": check -r all drops the entries that do not fit. */
function overhanging(n: number): string {
  return `You can force-remove all ${n} overhanging snapshots with qemu-img check -r all\n`;
}

/** Extra data a v3 snapshot table entry must hold: vm_state_size_large and disk_size. */
export const V3_SNAPSHOT_EXTRA = 16;

/**
 * What a read for check -r all dropped (QEMU's repair mode of
 * qcow2_do_read_snapshots): its lines, entries cut off the end of a table too
 * big, entries whose extra data was cut to the limit.
 */
export interface SnapshotRepair {
  messages: string[];
  reduced: number;
  dropped: number;
}

/**
 * QEMU keeps a snapshot's id and name as C strings: they end at the first
 * NUL byte, whatever length the table gives (listings, lookups, and the
 * lengths written when the table is rewritten all see the shorter string).
 */
function cString(text: TextDecoder, bytes: Uint8Array): string {
  const nul = bytes.indexOf(0);
  return text.decode(nul < 0 ? bytes : bytes.subarray(0, nul));
}

/**
 * Reads `count` snapshot entries at `offset`; returns them and the table's
 * byte size. With `repair`, too much extra data is cut and a table too big
 * loses its last entries, as QEMU's check -r all does, instead of failing.
 */
export async function readSnapshotTable(
  file: BdrvChild,
  offset: number,
  count: number,
  clusterSize: number,
  repair?: SnapshotRepair,
): Promise<{ snapshots: Qcow2Snapshot[]; bytes: number }> {
  const out: Qcow2Snapshot[] = [];
  let pos = offset;
  const fixed = new Uint8Array(SNAP.FIXED);
  const dv = new DataView(fixed.buffer);
  const text = new TextDecoder();
  // As in QEMU, what lies past the end of the file reads as zeros.
  const read = async (at: number, buf: Uint8Array) => {
    const n = Math.max(0, Math.min(buf.length, file.length - at));
    if (n > 0) await file.preadv(at, n, buf.subarray(0, n));
    buf.fill(0, n);
  };
  // Repair mode: QEMU's sum of the entries' sizes (extra data as cut, no padding).
  let tableLength = 0;
  let end = offset;
  for (let i = 0; i < count; i++) {
    if (!repair && pos - offset + SNAP.FIXED > MAX_SNAPSHOTS_BYTES) {
      throw new BlockError('EFBIG', 'Snapshot table is too big', {}, { detail: `at 0x${offset.toString(16)}, entry ${i}`, hint: overhanging(count - i) });
    }
    await read(pos, fixed);
    const l1Off = Number(dv.getBigUint64(SNAP.L1_TABLE_OFFSET));
    const l1Size = dv.getUint32(SNAP.L1_SIZE);
    const idLen = dv.getUint16(SNAP.ID_STR_SIZE);
    const nameLen = dv.getUint16(SNAP.NAME_SIZE);
    const storedExtra = dv.getUint32(SNAP.EXTRA_DATA_SIZE);
    let extraLen = storedExtra;
    if (extraLen > MAX_SNAPSHOT_EXTRA && repair) {
      repair.messages.push(`Discarding too much extra metadata in snapshot table entry ${i} (${extraLen} > ${MAX_SNAPSHOT_EXTRA})`);
      repair.dropped++;
      extraLen = MAX_SNAPSHOT_EXTRA;
    } else if (extraLen > MAX_SNAPSHOT_EXTRA) {
      throw new BlockError('EFBIG', `Too much extra metadata in snapshot table entry ${i}`, {}, { detail: `${extraLen} bytes`, hint: 'You can force-remove this extra metadata with qemu-img check -r all\n' });
    }
    // The L1 table's place and size are checked where it is used (snapshot-ops.ts), as in QEMU.
    const varLen = extraLen + idLen + nameLen;
    if (repair) {
      tableLength += SNAP.FIXED + varLen;
      if (tableLength > MAX_SNAPSHOTS_BYTES || pos + SNAP.FIXED + storedExtra + idLen + nameLen - offset > 0x7fffffff) {
        repair.messages.push(`Discarding ${count - i} overhanging snapshots (snapshot table is too big)`);
        repair.reduced += count - i;
        break;
      }
    } else if (pos - offset + SNAP.FIXED + varLen > MAX_SNAPSHOTS_BYTES) {
      throw new BlockError('EFBIG', 'Snapshot table is too big', {}, { detail: `at 0x${offset.toString(16)}, entry ${i}`, hint: overhanging(count - i) });
    }
    const rest = new Uint8Array(varLen);
    await read(pos + SNAP.FIXED, rest.subarray(0, extraLen));
    // Extra data cut in a repair: the id and name still follow all of it.
    await read(pos + SNAP.FIXED + storedExtra, rest.subarray(extraLen));
    const rdv = new DataView(rest.buffer);
    let vmStateSize = dv.getUint32(SNAP.VM_STATE_SIZE);
    let diskSize: number | undefined;
    let icount: number | undefined;
    if (extraLen >= 8) vmStateSize = Number(rdv.getBigUint64(SNAP.EXTRA_VM_STATE_SIZE_LARGE));
    if (extraLen >= 16) diskSize = Number(rdv.getBigUint64(SNAP.EXTRA_DISK_SIZE));
    if (extraLen >= 24) {
      const ic = rdv.getBigInt64(SNAP.EXTRA_ICOUNT);
      if (ic !== -1n) icount = Number(ic);
    }
    out.push({
      id: cString(text, rest.subarray(extraLen, extraLen + idLen)),
      name: cString(text, rest.subarray(extraLen + idLen, varLen)),
      vmStateSize,
      dateSec: dv.getUint32(SNAP.DATE_SEC),
      dateNsec: dv.getUint32(SNAP.DATE_NSEC),
      vmClockNsec: Number(dv.getBigUint64(SNAP.VM_CLOCK_NSEC)),
      ...(icount !== undefined ? { icount } : {}),
      ...(diskSize !== undefined ? { diskSize } : {}),
      l1TableOffset: l1Off,
      l1Size,
      extraDataSize: extraLen,
      ...(extraLen > SNAPSHOT_EXTRA ? { unknownExtra: rest.slice(SNAPSHOT_EXTRA, extraLen) } : {}),
    });
    end = pos + SNAP.FIXED + storedExtra + idLen + nameLen;
    pos += (SNAP.FIXED + storedExtra + idLen + nameLen + 7) & ~7;
  }
  // QEMU's size ends with the last entry read; without repair, ours pads it to 8 bytes.
  return { snapshots: out, bytes: repair ? end - offset : pos - offset };
}


/**
 * QEMU's qcow2_validate_table for a snapshot's L1 table, checked before the
 * table is used (goto, delete, temporary load): EFBIG when too large, EINVAL
 * when not cluster aligned.
 */
export function validateSnapshotL1(sn: Qcow2Snapshot, clusterSize: number): void {
  if (sn.l1Size > MAX_L1_BYTES / 8) throw new BlockError('EFBIG', 'Snapshot L1 table too large', {}, { detail: `l1_size ${sn.l1Size}` });
  if (sn.l1TableOffset % clusterSize !== 0) throw new BlockError('EINVAL', 'Snapshot L1 table offset invalid', {}, { detail: `0x${sn.l1TableOffset.toString(16)}` });
}
