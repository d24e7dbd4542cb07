/**
 * Human-readable image information as qemu-img info / qemu-io info print it
 * (QEMU's bdrv_image_info_dump and its QDict walker).
 */
import { qdictOrder, sizeToStr, type JsonValue } from './format.js';
import type { SnapshotJson } from '../core/image-facts.js';

export type { SnapshotJson };

function dumpValue(indent: number, v: JsonValue): string {
  if (Array.isArray(v)) return dumpList(indent, v);
  if (v !== null && typeof v === 'object') return dumpDict(indent, v);
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  return String(v);
}

function isComposite(v: JsonValue | undefined): boolean {
  return v !== null && typeof v === 'object';
}

function dumpList(indent: number, list: JsonValue[]): string {
  let out = '';
  list.forEach((v, i) => {
    const comp = isComposite(v);
    out += `${' '.repeat(indent * 4)}[${i}]:${comp ? '\n' : ' '}${dumpValue(indent + 1, v)}${comp ? '' : '\n'}`;
  });
  return out;
}

function dumpDict(indent: number, dict: { [k: string]: JsonValue | undefined }): string {
  let out = '';
  const keys = qdictOrder(Object.keys(dict).filter((k) => dict[k] !== undefined));
  for (const k of keys) {
    const v = dict[k]!;
    const comp = isComposite(v);
    out += `${' '.repeat(indent * 4)}${k.replace(/-/g, ' ')}:${comp ? '\n' : ' '}${dumpValue(indent + 1, v)}${comp ? '' : '\n'}`;
  }
  return out;
}

/** The "Format specific information" block (its data, indented one level). */
export function dumpSpecific(data: Record<string, unknown>): string {
  return dumpValue(1, data as JsonValue);
}

/** QEMU's ImageInfo as qemu-img info --output=json shows it. */
export interface ImageInfo {
  filename: string;
  format: string;
  'virtual-size': number;
  'actual-size'?: number;
  'cluster-size'?: number;
  encrypted?: boolean;
  'dirty-flag'?: boolean;
  'backing-filename'?: string;
  'full-backing-filename'?: string;
  'backing-filename-format'?: string;
  snapshots?: SnapshotJson[];
  'format-specific'?: { type: string; data: Record<string, unknown> };
}


function pad(s: string, n: number, left = true): string {
  return left ? s.padEnd(n) : s.padStart(n);
}

/** The snapshot table of qemu-img info / snapshot -l (bdrv_snapshot_dump). */
export function dumpSnapshots(list: SnapshotJson[]): string {
  let out = `${pad('ID', 10)}${pad('TAG', 17)}${pad('VM SIZE', 8, false)}${pad('DATE', 20, false)}${pad('VM CLOCK', 13, false)}${pad('ICOUNT', 11, false)}\n`;
  for (const sn of list) {
    const d = new Date(sn['date-sec'] * 1000);
    const two = (n: number) => String(n).padStart(2, '0');
    const date = `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
    const secs = sn['vm-clock-sec'];
    const clock = `${two(Math.floor(secs / 3600))}:${two(Math.floor(secs / 60) % 60)}:${two(secs % 60)}.${String(Math.floor(sn['vm-clock-nsec'] / 1e6) % 1000).padStart(3, '0')}`;
    const icount = sn.icount !== undefined ? String(sn.icount) : '';
    out += `${pad(sn.id, 9)} ${pad(sn.name, 16)} ${pad(sizeToStr(sn['vm-state-size']), 8, false)}${pad(date, 20, false)}${pad(clock, 13, false)}${pad(icount, 11, false)}\n`;
  }
  return out;
}

/** bdrv_image_info_dump. */
export function dumpImageInfo(info: ImageInfo): string {
  let out = `image: ${info.filename}\nfile format: ${info.format}\nvirtual size: ${sizeToStr(info['virtual-size'])} (${info['virtual-size']} bytes)\n`;
  out += info['actual-size'] !== undefined ? `disk size: ${sizeToStr(info['actual-size'])}\n` : 'disk size: unavailable\n';
  if (info.encrypted) out += 'encrypted: yes\n';
  if (info['cluster-size'] !== undefined) out += `cluster_size: ${info['cluster-size']}\n`;
  if (info['dirty-flag']) out += 'cleanly shut down: no\n';
  if (info['backing-filename'] !== undefined) {
    out += `backing file: ${info['backing-filename']}`;
    if (info['full-backing-filename'] === undefined) out += ' (cannot determine actual path)';
    else if (info['full-backing-filename'] !== info['backing-filename']) out += ` (actual path: ${info['full-backing-filename']})`;
    out += '\n';
    if (info['backing-filename-format'] !== undefined) out += `backing file format: ${info['backing-filename-format']}\n`;
  }
  if (info.snapshots && info.snapshots.length > 0) {
    out += 'Snapshot list:\n' + dumpSnapshots(info.snapshots);
  }
  if (info['format-specific']) {
    out += 'Format specific information:\n' + dumpSpecific(info['format-specific'].data);
  }
  return out;
}
