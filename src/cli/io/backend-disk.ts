/** A BlockBackend seen as an IoDisk (the CLI's `diskworker io`). */
import type { BlockBackend } from '../../core/backend.js';
import { isAllocatedAbove, cowChild } from '../../core/block-status.js';
import type { PreallocMode } from '../../core/driver.js';
import { Perm } from '../../core/permissions.js';
import type { BlockNode } from '../../core/node.js';
import { findDebugger, type BlockDebugger } from '../../core/debug-event.js';
import { driverInfo, formatNode, supportsCompressed } from '../common.js';
import { loadVmState, saveVmState } from '../../core/vmstate.js';
import { infoText } from './info.js';
import type { IoAllocation, IoDisk } from './disk.js';

/**
 * `info` of a filter without generic info of its own (throttle, copy-on-read,
 * compress): QEMU names the filter, takes the cluster size and VM state
 * offset from the first node below that has them (bdrv_get_info looks
 * through filters), and has no format-specific information.
 */
function filterInfo(top: BlockNode): { text: string; supported: boolean } {
  let n = top;
  while (!n.instance.getInfo && n.driver.kind === 'filter' && n.filtered) n = n.filtered.node;
  const inf = driverInfo(n);
  return infoText({
    format: top.driver.name,
    // A filter opened by file name (blkdebug:, blkverify:) has a protocol name too: printed again.
    protocol: top.driver.protocolPrefixes !== undefined,
    supported: inf !== null,
    virtualSize: top.length,
    clusterSize: inf?.clusterSize ?? 0,
    vmStateOffset: inf?.vmStateOffset ?? 0,
  });
}

export class BackendDisk implements IoDisk {
  constructor(readonly bb: BlockBackend) {}

  get length(): number {
    return this.bb.length;
  }
  get readOnly(): boolean {
    return this.bb.readOnly;
  }
  get available(): boolean {
    return this.bb.isAvailable;
  }
  pread(offset: number, buf: Uint8Array): Promise<void> {
    return this.bb.pread(offset, buf);
  }
  write(offset: number, buf: Uint8Array, flags: number): Promise<void> {
    return this.bb.write(offset, buf, flags);
  }
  writeZeroes(offset: number, bytes: number, flags: number): Promise<void> {
    return this.bb.writeZeroes(offset, bytes, flags);
  }
  discard(offset: number, bytes: number): Promise<void> {
    return this.bb.discard(offset, bytes);
  }
  flush(): Promise<void> {
    return this.bb.flush();
  }
  async truncate(size: number, prealloc: PreallocMode): Promise<void> {
    // qemu-io opens without the resize permission and takes it for truncate (and keeps it).
    this.bb.setPerm(this.bb.root.perm | Perm.RESIZE, this.bb.root.shared);
    await this.bb.settled();
    return this.bb.truncate(size, { exact: false, prealloc });
  }
  async isAllocated(offset: number, bytes: number): Promise<IoAllocation> {
    const node = this.bb.node;
    // Like bdrv_is_allocated: this layer only.
    if (offset >= node.length) return { allocated: false, pnum: 0 };
    return isAllocatedAbove(node, cowChild(node), false, offset, Math.min(bytes, node.length - offset));
  }
  loadVmState(pos: number, buf: Uint8Array): Promise<void> {
    return loadVmState(this.bb.node, pos, buf);
  }
  async saveVmState(pos: number, buf: Uint8Array): Promise<void> {
    await saveVmState(this.bb.node, pos, buf);
    // As QEMU's blk_save_vmstate: without a write cache the state is flushed at once.
    if (this.bb.writeThrough) await this.bb.flush();
  }
  debugger(): BlockDebugger {
    return findDebugger(this.bb.node);
  }
  supportsCompressed(): boolean {
    return supportsCompressed(formatNode(this.bb.node));
  }
  async info(): Promise<{ text: string; supported: boolean }> {
    const top = this.bb.node;
    if (top.driver.kind === 'filter' && !top.instance.getInfo) return filterInfo(top);
    const node = formatNode(top);
    const inf = driverInfo(node);
    return infoText({
      format: node.driver.name,
      // qemu-io prints the driver's format name, then its protocol name (the same for protocols).
      protocol: node.driver.kind === 'protocol',
      supported: inf !== null,
      virtualSize: node.length,
      ...(inf?.clusterSize !== undefined ? { clusterSize: inf.clusterSize } : {}),
      ...(inf?.vmStateOffset !== undefined ? { vmStateOffset: inf.vmStateOffset } : {}),
      ...(inf !== null && node.instance.getSpecificInfo ? { specific: node.instance.getSpecificInfo()?.data } : {}),
    });
  }
}
