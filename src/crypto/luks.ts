/**
 * A LUKS1 volume: unlocking the master key from a key slot with a password,
 * creating a header with one key slot, the format-specific info, and the
 * payload's sector cipher. Storage is reached through read / write callbacks
 * so that the luks driver and qcow2's encryption header share this code.
 *
 * Key material never leaves this object except as the WASM cipher's expanded
 * keys; buffers holding keys are zeroed after use.
 */
import { BlockError } from '../core/errors.js';
import { afMerge, afSplit } from './afsplit.js';
import { SectorCipher, checkSupported, essivCipher, masterKeyLength, type CipherSpec } from './cipher.js';
import { pbkdf2, pbkdf2IterationsPerSecond, randomBytes, type HashAlg } from './hash.js';
import {
  DIGEST_LEN,
  LUKS_KEY_SLOT_OFFSET,
  LUKS_SECTOR,
  LUKS_SLOTS,
  LUKS_STRIPES,
  MIN_ITERATIONS,
  SALT_LEN,
  SLOT_DISABLED,
  SLOT_ENABLED,
  checkLuksHeader,
  keyMaterialSectors,
  luksCipherSpec,
  parseLuksHeader,
  serializeLuksHeader,
  LUKS_HEADER_SIZE,
  type LuksHeader,
} from './luks-header.js';

export type CryptoRead = (offset: number, length: number) => Promise<Uint8Array>;
export type CryptoWrite = (offset: number, data: Uint8Array) => Promise<void>;

/** Options of a new volume (QEMU's QCryptoBlockCreateOptionsLUKS), defaults filled in. */
export interface LuksCreateOptions {
  spec: CipherSpec;
  hash: HashAlg;
  /** Milliseconds PBKDF2 should take for the slot (the master key digest takes an eighth). */
  iterTime: number;
}

/** The default spec: aes-256-xts-plain64, sha256. */
export const LUKS_DEFAULTS: LuksCreateOptions = { spec: { alg: 'aes-256', mode: 'xts', ivgen: 'plain64' }, hash: 'sha256', iterTime: 2000 };

/** The password a secret gives: its bytes up to the first NUL (QEMU passes it as a C string). */
export function passwordBytes(secret: Uint8Array): Uint8Array {
  const nul = secret.indexOf(0);
  return nul < 0 ? secret : secret.subarray(0, nul);
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i]! ^ b[i]!;
  return d === 0;
}

/** Iterations for `iterTime` ms at the measured rate (QEMU's scaling, with its bounds). */
function scaledIterations(perSecond: number, iterTime: number, divisor: number): number {
  const iters = Math.floor(Math.floor((perSecond * iterTime) / 1000) / divisor);
  if (iters > 0xffffffff) throw new BlockError('EINVAL', `PBKDF iterations ${iters} larger than ${0xffffffff}`);
  return Math.max(iters, MIN_ITERATIONS);
}

export class LuksVolume {
  private cipher: SectorCipher | undefined;

  private constructor(
    readonly header: LuksHeader,
    readonly spec: CipherSpec,
    readonly hash: HashAlg,
  ) {}

  /** Byte offset of the encrypted payload. */
  get payloadOffset(): number {
    return this.header.payloadOffsetSector * LUKS_SECTOR;
  }

  /**
   * Reads and checks the header; with a secret, unlocks the master key and
   * sets up the payload cipher. Without one (QEMU's NO_IO open, for info)
   * only the header is available.
   */
  static async open(read: CryptoRead, secret: Uint8Array | undefined): Promise<LuksVolume> {
    const header = parseLuksHeader(await read(0, LUKS_HEADER_SIZE));
    checkLuksHeader(header);
    const { spec, hash } = luksCipherSpec(header);
    const vol = new LuksVolume(header, spec, hash);
    if (secret !== undefined) {
      checkSupported(spec);
      const password = passwordBytes(secret);
      for (let i = 0; i < LUKS_SLOTS; i++) {
        const key = await vol.slotKey(i, password, read);
        if (key) {
          vol.cipher = await SectorCipher.create(spec, key, LUKS_SECTOR);
          key.fill(0);
          return vol;
        }
      }
      throw new BlockError('EPERM', 'Invalid password, cannot unlock any keyslot');
    }
    return vol;
  }

  /** The master key from slot `i` if `password` opens it, else undefined. */
  async slotKey(i: number, password: Uint8Array, read: CryptoRead): Promise<Uint8Array | undefined> {
    const slot = this.header.slots[i]!;
    if (slot.active !== SLOT_ENABLED) return undefined;
    const mkLen = this.header.masterKeyLength;
    const slotKey = await pbkdf2(this.hash, password, slot.salt, slot.iterations, mkLen);
    const material = await read(slot.keyOffsetSector * LUKS_SECTOR, mkLen * slot.stripes);
    const slotCipher = await SectorCipher.create(this.spec, slotKey, LUKS_SECTOR);
    slotKey.fill(0);
    try {
      slotCipher.decrypt(material, 0);
    } finally {
      slotCipher.release();
    }
    const candidate = await afMerge(this.hash, material, mkLen, slot.stripes);
    material.fill(0);
    const digest = await pbkdf2(this.hash, candidate, this.header.masterKeySalt, this.header.masterKeyIterations, DIGEST_LEN);
    if (equalBytes(digest, this.header.masterKeyDigest)) return candidate;
    candidate.fill(0);
    return undefined;
  }

  /**
   * Creates a volume: a random master key, its digest, the slot layout, then
   * `init(payloadOffset)` (the caller sizes the file), then slot 0 for the
   * secret and the header.
   */
  static async create(opts: LuksCreateOptions, secret: Uint8Array, init: (payloadOffset: number) => Promise<void>, write: CryptoWrite): Promise<LuksVolume> {
    const { spec, hash, iterTime } = opts;
    checkSupported(spec);
    if (spec.ivgen === 'essiv') essivCipher(spec.alg, spec.ivgenHash ?? 'sha256');
    const mkLen = masterKeyLength(spec);
    // Key material is en/decrypted in whole 512-byte sectors (QEMU asserts so and aborts otherwise).
    if ((mkLen * LUKS_STRIPES) % LUKS_SECTOR !== 0) {
      throw new BlockError('EINVAL', `Cipher ${spec.alg}-${spec.mode}: its key material of ${mkLen * LUKS_STRIPES} bytes is not a whole number of ${LUKS_SECTOR}-byte sectors`);
    }
    const cipherName = spec.alg.slice(0, spec.alg.indexOf('-'));
    const modeSpec = `${spec.mode}-${spec.ivgen}${spec.ivgenHash ? `:${spec.ivgenHash}` : ''}`;
    const masterKey = randomBytes(mkLen);
    try {
      const mkSalt = randomBytes(SALT_LEN);
      const mkRate = await pbkdf2IterationsPerSecond(hash, masterKey, mkSalt, DIGEST_LEN);
      const mkIterations = scaledIterations(mkRate, iterTime, 8);
      const mkDigest = await pbkdf2(hash, masterKey, mkSalt, mkIterations, DIGEST_LEN);
      const slotSectors = keyMaterialSectors(mkLen, LUKS_STRIPES);
      const headerSectors = LUKS_KEY_SLOT_OFFSET / LUKS_SECTOR;
      const header: LuksHeader = {
        version: 1,
        cipherName,
        cipherMode: modeSpec,
        hashSpec: hash,
        payloadOffsetSector: headerSectors + LUKS_SLOTS * slotSectors,
        masterKeyLength: mkLen,
        masterKeyDigest: mkDigest,
        masterKeySalt: mkSalt,
        masterKeyIterations: mkIterations,
        uuid: globalThis.crypto.randomUUID(),
        slots: Array.from({ length: LUKS_SLOTS }, (_, i) => ({
          active: SLOT_DISABLED,
          iterations: 0,
          salt: new Uint8Array(SALT_LEN),
          keyOffsetSector: headerSectors + i * slotSectors,
          stripes: LUKS_STRIPES,
        })),
      };
      serializeLuksHeader(header); // fails early on names too long for their fields
      const vol = new LuksVolume(header, spec, hash);
      await init(vol.payloadOffset);
      await vol.storeKeySlot(0, passwordBytes(secret), masterKey, iterTime, write);
      vol.cipher = await SectorCipher.create(spec, masterKey, LUKS_SECTOR);
      return vol;
    } finally {
      masterKey.fill(0);
    }
  }

  /** Writes `masterKey` into slot `i` for `password`, then the header. */
  async storeKeySlot(i: number, password: Uint8Array, masterKey: Uint8Array, iterTime: number, write: CryptoWrite): Promise<void> {
    const slot = this.header.slots[i]!;
    const mkLen = this.header.masterKeyLength;
    slot.salt = randomBytes(SALT_LEN);
    const rate = await pbkdf2IterationsPerSecond(this.hash, password, slot.salt, mkLen);
    slot.iterations = scaledIterations(rate, iterTime, 1);
    const slotKey = await pbkdf2(this.hash, password, slot.salt, slot.iterations, mkLen);
    const material = await afSplit(this.hash, masterKey, slot.stripes);
    const slotCipher = await SectorCipher.create(this.spec, slotKey, LUKS_SECTOR);
    slotKey.fill(0);
    try {
      slotCipher.encrypt(material, 0);
    } finally {
      slotCipher.release();
    }
    await write(slot.keyOffsetSector * LUKS_SECTOR, material);
    slot.active = SLOT_ENABLED;
    await write(0, serializeLuksHeader(this.header));
  }

  /** The master key from the first slot `secret` opens; EPERM with QEMU's message when none does. */
  async findMasterKey(secret: Uint8Array, read: CryptoRead): Promise<Uint8Array> {
    const password = passwordBytes(secret);
    for (let i = 0; i < LUKS_SLOTS; i++) {
      const key = await this.slotKey(i, password, read);
      if (key) return key;
    }
    throw new BlockError('EPERM', 'Invalid password, cannot unlock any keyslot');
  }

  /** Whether the payload can be read and written (a secret was given). */
  get unlocked(): boolean {
    return this.cipher !== undefined;
  }

  private payloadCipher(): SectorCipher {
    if (!this.cipher) throw new BlockError('EPERM', 'The LUKS volume was opened without its key (key-secret)');
    return this.cipher;
  }

  /** Encrypts payload bytes in place; `offset` (a multiple of 512) counts from the payload's start. */
  encrypt(offset: number, buf: Uint8Array): void {
    this.payloadCipher().encrypt(buf, offset / LUKS_SECTOR);
  }

  /** Decrypts payload bytes in place; `offset` (a multiple of 512) counts from the payload's start. */
  decrypt(offset: number, buf: Uint8Array): void {
    this.payloadCipher().decrypt(buf, offset / LUKS_SECTOR);
  }

  /** QEMU's QCryptoBlockInfoLUKS, keyed as qemu-img info prints it. */
  info(): Record<string, unknown> {
    const h = this.header;
    return {
      'cipher-alg': this.spec.alg,
      'cipher-mode': this.spec.mode,
      'ivgen-alg': this.spec.ivgen,
      ...(this.spec.ivgen === 'essiv' && this.spec.ivgenHash ? { 'ivgen-hash-alg': this.spec.ivgenHash } : {}),
      'hash-alg': this.hash,
      'payload-offset': this.payloadOffset,
      'master-key-iters': h.masterKeyIterations,
      uuid: h.uuid,
      slots: h.slots.map((s) => {
        const active = s.active === SLOT_ENABLED;
        return { active, ...(active ? { iters: s.iterations, stripes: s.stripes } : {}), 'key-offset': s.keyOffsetSector * LUKS_SECTOR };
      }),
    };
  }

  /** Wipes the payload keys. */
  close(): void {
    this.cipher?.release();
    this.cipher = undefined;
  }
}
