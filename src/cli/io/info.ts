/** The lines of qemu-io's `info` command, from what a driver reports. */
import { cvtstr } from '../format.js';
import { dumpSpecific } from '../info-dump.js';

export interface IoInfoFields {
  /** The format driver's name. */
  format: string;
  /** Whether the format node is a protocol (qemu-io then names it twice). */
  protocol?: boolean;
  /** False when the driver has no generic info (qemu-io's ENOTSUP after the name). */
  supported?: boolean;
  /** The virtual size (for qcow2's vm state offset when the driver does not say). */
  virtualSize: number;
  clusterSize?: number;
  vmStateOffset?: number;
  /** The format-specific information (qemu-img info's "Format specific information"). */
  specific?: Record<string, unknown>;
}

/** The `info` lines, and whether the command succeeds. */
export function infoText(f: IoInfoFields): { text: string; supported: boolean } {
  let text = `format name: ${f.format}\n`;
  if (f.protocol) text += `format name: ${f.format}\n`;
  if (f.supported === false) return { text, supported: false };
  text += `cluster size: ${cvtstr(f.clusterSize ?? 0)}\n`;
  text += `vm state offset: ${cvtstr(f.vmStateOffset ?? qcow2VmStateOffset(f.format, f.virtualSize, f.clusterSize, f.specific))}\n`;
  if (f.specific) text += 'Format specific information:\n' + dumpSpecific(f.specific);
  return { text, supported: true };
}

/**
 * Where qcow2 keeps VM state (after the last L1 entry the guest disk can
 * use), for drivers whose getInfo does not say.
 */
function qcow2VmStateOffset(driver: string, size: number, clusterSize: number | undefined, spec: Record<string, unknown> | undefined): number {
  if (driver !== 'qcow2' || !clusterSize) return 0;
  const entry = spec?.['extended-l2'] === true ? 16 : 8;
  const perL1 = clusterSize * (clusterSize / entry);
  return Math.ceil(size / perL1) * perL1;
}
