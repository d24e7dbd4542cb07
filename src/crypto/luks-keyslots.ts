/**
 * Key slot changes of a LUKS volume (qemu-img amend: `state=active` adds a
 * password, `state=inactive` erases slots), with QEMU's rules and messages:
 * adding needs the password the image opened with and a free slot (or
 * `keyslot`); erasing names a slot or a password, never the last active slot
 * unless forced. Erased key material is overwritten with random bytes.
 */
import { BlockError } from '../core/errors.js';
import { randomBytes } from './hash.js';
import { LUKS_SECTOR, LUKS_SLOTS, SLOT_DISABLED, SLOT_ENABLED, serializeLuksHeader } from './luks-header.js';
import type { CryptoRead, CryptoWrite, LuksVolume } from './luks.js';

/** QEMU overwrites erased key material this many times. */
const ERASE_PASSES = 40;

export interface KeySlotChange {
  state: 'active' | 'inactive';
  keyslot?: number;
  /** Password of the slots to erase. */
  oldPassword?: Uint8Array;
  /** Whether `new-secret` / `old-secret` / `iter-time` were given (for the checks). */
  hasNewSecret: boolean;
  hasOldSecret: boolean;
  iterTime?: number;
}

const einval = (msg: string) => new BlockError('EINVAL', msg);

function activeCount(vol: LuksVolume): number {
  return vol.header.slots.filter((s) => s.active === SLOT_ENABLED).length;
}

function checkSlot(k: number): void {
  if (!Number.isInteger(k) || k < 0 || k >= LUKS_SLOTS) throw einval(`Invalid keyslot ${k} specified, must be between 0 and ${LUKS_SLOTS - 1}`);
}

/**
 * Adds a key slot. `currentPassword` gives the secret the volume was opened
 * with (it unlocks the master key the new slot stores), `newPassword` the
 * new slot's; both are asked for after the option checks.
 */
export async function addKeySlot(
  vol: LuksVolume,
  change: KeySlotChange,
  currentPassword: () => Uint8Array,
  newPassword: () => Uint8Array,
  force: boolean,
  read: CryptoRead,
  write: CryptoWrite,
): Promise<void> {
  if (!change.hasNewSecret) throw einval("'new-secret' is required to activate a keyslot");
  if (change.hasOldSecret) throw einval("'old-secret' must not be given when activating keyslots");
  let slot: number;
  if (change.keyslot !== undefined) {
    checkSlot(change.keyslot);
    slot = change.keyslot;
  } else {
    slot = vol.header.slots.findIndex((s) => s.active !== SLOT_ENABLED);
    if (slot < 0) throw einval("Can't add a keyslot - all keyslots are in use");
  }
  if (!force && vol.header.slots[slot]!.active === SLOT_ENABLED) throw einval(`Refusing to overwrite active keyslot ${slot} - please erase it first`);
  const masterKey = await vol.findMasterKey(currentPassword(), read);
  try {
    await vol.storeKeySlot(slot, newPassword(), masterKey, change.iterTime ?? 2000, write);
  } finally {
    masterKey.fill(0);
  }
}

/** Erases key slots: the one named, or every one `oldPassword` opens. */
export async function eraseKeySlots(vol: LuksVolume, change: KeySlotChange, force: boolean, read: CryptoRead, write: CryptoWrite): Promise<void> {
  if (change.hasNewSecret) throw einval("'new-secret' must not be given when erasing keyslots");
  if (change.iterTime !== undefined) throw einval("'iter-time' must not be given when erasing keyslots");
  const slots = vol.header.slots;
  if (change.keyslot !== undefined) {
    const k = change.keyslot;
    if (!Number.isInteger(k) || k < 0 || k >= LUKS_SLOTS) throw einval(`Invalid keyslot ${k} specified, must be between 0 and ${LUKS_SLOTS - 1}`);
    if (change.oldPassword) {
      const key = await vol.slotKey(k, change.oldPassword, read);
      if (!key) throw einval(`Given keyslot ${k} doesn't contain the given old password for erase operation`);
      key.fill(0);
    }
    if (!force && slots[k]!.active !== SLOT_ENABLED) throw einval(`Given keyslot ${k} is already erased (inactive) `);
    if (!force && activeCount(vol) === 1) {
      throw einval(`Attempt to erase the only active keyslot ${k} which will erase all the data in the image irreversibly - refusing operation`);
    }
    await eraseSlot(vol, k, write);
    return;
  }
  if (!change.oldPassword) {
    throw einval('To erase keyslot(s), either explicit keyslot index or the password currently contained in them must be given');
  }
  const matching: number[] = [];
  for (let i = 0; i < LUKS_SLOTS; i++) {
    const key = await vol.slotKey(i, change.oldPassword, read);
    if (key) {
      key.fill(0);
      matching.push(i);
    }
  }
  if (matching.length === 0) throw einval('No keyslots match given (old) password for erase operation');
  if (!force && matching.length === activeCount(vol)) {
    throw einval('All the active keyslots match the (old) password that was given and erasing them will erase all the data in the image irreversibly - refusing operation');
  }
  for (const i of matching) await eraseSlot(vol, i, write);
}

/** Marks slot `i` inactive (header first), then overwrites its key material. */
async function eraseSlot(vol: LuksVolume, i: number, write: CryptoWrite): Promise<void> {
  const s = vol.header.slots[i]!;
  s.salt = new Uint8Array(s.salt.length);
  s.iterations = 0;
  s.active = SLOT_DISABLED;
  await write(0, serializeLuksHeader(vol.header));
  const len = vol.header.masterKeyLength * s.stripes;
  for (let pass = 0; pass < ERASE_PASSES; pass++) await write(s.keyOffsetSector * LUKS_SECTOR, randomBytes(len));
}
