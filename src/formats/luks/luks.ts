/**
 * luks: a LUKS1 volume over its file (QEMU's block/crypto.c). The guest sees
 * the payload after the header and key material, decrypted sector by sector
 * (512 bytes, IVs counted from the payload's start). `key-secret` names the
 * secret object holding the password; without it only the header can be
 * read (qemu-img info opens so, with the internal `x-no-io` option).
 */
import type { BlockDriver, CreateOptionSpec, DriverInstance, IoResult, PreallocMode, ReqFlags, SpecificInfo } from '../../core/driver.js';
import type { BlockGraph } from '../../core/graph.js';
import { addKeySlot, eraseKeySlots, type KeySlotChange } from '../../crypto/luks-keyslots.js';
import { ReqFlag } from '../../core/driver.js';
import { BlockError } from '../../core/errors.js';
import type { BdrvChild } from '../../core/child.js';
import type { BlockNode } from '../../core/node.js';
import type { OptionReader } from '../../core/options.js';
import type { BlockLimits } from '../../core/limits.js';
import { ROLE_IMAGE } from '../../core/permissions.js';
import { lookupSecret } from '../../core/secrets.js';
import { LuksVolume, passwordBytes, type CryptoRead, type CryptoWrite } from '../../crypto/luks.js';
import { hasLuksMagic, LUKS_SECTOR } from '../../crypto/luks-header.js';
import { createLuks, LUKS_CREATE_OPTIONS, measureLuks } from './create.js';
import { childAllocatedSize } from '../../core/image-facts.js';

/** Bytes encrypted per bounce buffer (QEMU's BLOCK_CRYPTO_MAX_IO_SIZE). */
const MAX_IO = 1 << 20;

/** The file's reads as the crypto layer wants them: a fresh buffer of exactly `length` bytes. */
export function childReader(file: BdrvChild): (offset: number, length: number) => Promise<Uint8Array> {
  return async (offset, length) => {
    if (offset + length > file.length) {
      throw new BlockError('EIO', `Could not read encryption header: ${length} bytes at ${offset} lie beyond the end of the file (${file.length} bytes)`);
    }
    const buf = new Uint8Array(length);
    await file.preadv(offset, length, buf);
    return buf;
  };
}

/** QEMU's block_crypto_amend_opts_luks, in its order. */
export const LUKS_AMEND_OPTIONS: readonly CreateOptionSpec[] = [
  { name: 'state', type: 'string', help: 'Select new state of affected keyslots (active/inactive)' },
  { name: 'keyslot', type: 'number', help: 'Select a single keyslot to modify explicitly' },
  { name: 'old-secret', type: 'string', help: 'Select all keyslots that match this password' },
  { name: 'new-secret', type: 'string', help: 'New secret to set in the matching keyslots. Empty string to erase' },
  { name: 'iter-time', type: 'number', help: 'Time to spend in PBKDF in milliseconds' },
];

/**
 * Key slot changes from amend options (`state`, `keyslot`, `old-secret`,
 * `new-secret`, `iter-time`; with qcow2 under `encrypt.`), as QEMU's
 * qcrypto_block_luks_amend_options.
 */
export async function amendLuksVolume(
  volume: LuksVolume,
  o: OptionReader,
  graph: BlockGraph,
  openSecret: string | undefined,
  force: boolean,
  read: CryptoRead,
  write: CryptoWrite,
): Promise<void> {
  const state = o.string('state');
  const keyslot = o.uint('keyslot');
  const oldSecret = o.string('old-secret');
  const newSecret = o.string('new-secret');
  const iterTime = o.uint('iter-time');
  if (state === undefined) throw new BlockError('EINVAL', `Parameter '${o.prefix}state' is missing`);
  if (state !== 'active' && state !== 'inactive') throw new BlockError('EINVAL', `Parameter '${o.prefix}state' does not accept value '${state}'`);
  const wipe: Uint8Array[] = [];
  const secret = (id: string) => {
    const b = lookupSecret(graph, id);
    wipe.push(b);
    return passwordBytes(b);
  };
  try {
    const change: KeySlotChange = {
      state,
      ...(keyslot !== undefined ? { keyslot } : {}),
      ...(iterTime !== undefined ? { iterTime } : {}),
      hasNewSecret: newSecret !== undefined,
      hasOldSecret: oldSecret !== undefined,
    };
    if (state === 'active') {
      // The secrets are looked up after the option checks, as QEMU does.
      const current = () => {
        if (openSecret === undefined) throw new BlockError('EINVAL', "Parameter 'key-secret' is required for cipher");
        return secret(openSecret);
      };
      await addKeySlot(volume, change, current, () => secret(newSecret!), force, read, write);
    } else {
      if (oldSecret !== undefined && newSecret === undefined && iterTime === undefined) change.oldPassword = secret(oldSecret);
      await eraseKeySlots(volume, change, force, read, write);
    }
  } finally {
    for (const b of wipe) b.fill(0);
  }
}

class LuksInstance implements DriverInstance {
  constructor(
    private readonly node: BlockNode,
    private readonly file: BdrvChild,
    private readonly volume: LuksVolume,
    private readonly keySecret: string | undefined,
  ) {}

  async amend(options: OptionReader, force: boolean): Promise<void> {
    const write = async (offset: number, data: Uint8Array) => {
      if (offset + data.length > this.volume.payloadOffset) throw new BlockError('EINVAL', `LUKS key material write at ${offset} of ${data.length} bytes reaches into the payload at ${this.volume.payloadOffset}`);
      await this.file.pwritev(offset, data.length, data);
    };
    await amendLuksVolume(this.volume, options, this.node.graph, this.keySecret, force, childReader(this.file), write);
    options.finish();
    await this.file.flush();
  }

  get supportedWriteFlags(): ReqFlags {
    return ReqFlag.FUA & (this.file.node.instance.supportedWriteFlags ?? 0);
  }

  getLength(): number {
    const len = this.file.length;
    // A payload starting past the end of the file: QEMU's getlength fails with EIO.
    if (this.volume.payloadOffset > len) {
      throw new BlockError('EIO', 'Could not refresh total sector count: Input/output error', {}, { detail: `payload offset ${this.volume.payloadOffset}, file length ${len}` });
    }
    return len - this.volume.payloadOffset;
  }

  refreshLimits(limits: BlockLimits): void {
    limits.requestAlignment = Math.max(limits.requestAlignment, LUKS_SECTOR);
  }

  preadv(offset: number, bytes: number, buf: Uint8Array, flags: ReqFlags): IoResult {
    return this.read(offset, bytes, buf, flags);
  }

  private async read(offset: number, bytes: number, buf: Uint8Array, flags: ReqFlags): Promise<void> {
    await this.file.preadv(this.volume.payloadOffset + offset, bytes, buf, flags & ~ReqFlag.PREFETCH);
    for (let done = 0; done < bytes; done += MAX_IO) {
      const n = Math.min(MAX_IO, bytes - done);
      this.volume.decrypt(offset + done, buf.subarray(done, done + n));
    }
  }

  async pwritev(offset: number, bytes: number, buf: Uint8Array, flags: ReqFlags): Promise<void> {
    // The caller's buffer stays as it is: encrypt a copy.
    const bounce = new Uint8Array(Math.min(MAX_IO, bytes));
    for (let done = 0; done < bytes; done += MAX_IO) {
      const n = Math.min(MAX_IO, bytes - done);
      const piece = bounce.subarray(0, n);
      piece.set(buf.subarray(done, done + n));
      this.volume.encrypt(offset + done, piece);
      await this.file.pwritev(this.volume.payloadOffset + offset + done, n, piece, flags);
    }
  }

  async truncate(offset: number, exact: boolean, prealloc: PreallocMode, flags: ReqFlags): Promise<void> {
    const end = offset + this.volume.payloadOffset;
    if (!Number.isSafeInteger(end)) throw new BlockError('EFBIG', 'The requested file size is too large');
    await this.file.truncate(end, exact, prealloc, flags);
  }

  async getAllocatedFileSize(): Promise<number> {
    return childAllocatedSize(this.file);
  }

  /** The file's cluster size, if it has one (QEMU's block_crypto_co_get_info_luks). */
  getInfo(): ReturnType<NonNullable<DriverInstance['getInfo']>> {
    const below = this.file.node.instance.getInfo?.();
    return below && { ...(below.clusterSize !== undefined ? { clusterSize: below.clusterSize } : {}) };
  }

  getSpecificInfo(): SpecificInfo {
    return { type: 'luks', data: this.volume.info() };
  }

  isEncrypted(): boolean {
    return true;
  }

  async close(): Promise<void> {
    this.volume.close();
  }
}

export const luksDriver = {
  name: 'luks',
  kind: 'format',
  strongOptions: ['key-secret'],
  createOptions: LUKS_CREATE_OPTIONS,
  amendOptions: LUKS_AMEND_OPTIONS,
  probe: (header: Uint8Array) => (hasLuksMagic(header) ? 100 : 0),
  async open(node: BlockNode, options: OptionReader): Promise<DriverInstance> {
    const keySecret = options.string('key-secret');
    const noIo = options.bool('x-no-io', false);
    const file = (await node.openChild(options, 'file', ROLE_IMAGE))!;
    let secret: Uint8Array | undefined;
    if (!noIo) {
      if (keySecret === undefined) throw new BlockError('EINVAL', "Parameter 'key-secret' is required for cipher");
      secret = lookupSecret(node.graph, keySecret);
    }
    try {
      const volume = await LuksVolume.open(childReader(file), secret);
      return new LuksInstance(node, file, volume, keySecret);
    } finally {
      secret?.fill(0);
    }
  },
  create: createLuks,
  measure: measureLuks,
} satisfies BlockDriver;
