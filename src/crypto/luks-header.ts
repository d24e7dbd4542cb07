/**
 * The LUKS1 header (592 bytes at offset 0, big-endian): magic, version, cipher name,
 * cipher mode (`<mode>-<ivgen>[:<hash>]`), hash spec, payload offset (sectors), master
 * key length, master key digest / salt / iterations, uuid, and eight key slots of 48
 * bytes (active, iterations, salt, key material offset in sectors, stripes).
 */
import { BlockError } from '../core/errors.js';
import { CIPHER_MODES, IVGEN_ALGS, isCipherAlg, masterKeyLength, type CipherAlg, type CipherMode, type CipherSpec, type IvGenAlg } from './cipher.js';
import { isHashAlg, type HashAlg } from './hash.js';

export const LUKS_MAGIC = Uint8Array.of(0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe);
export const LUKS_HEADER_SIZE = 592;
export const LUKS_SECTOR = 512;
export const LUKS_STRIPES = 4000;
export const LUKS_SLOTS = 8;
/** Where key material may start (the header area). */
export const LUKS_KEY_SLOT_OFFSET = 4096;
export const SLOT_ENABLED = 0x00ac71f3;
export const SLOT_DISABLED = 0x0000dead;
export const DIGEST_LEN = 20;
export const SALT_LEN = 32;
export const MIN_ITERATIONS = 1000;

const NAME_LEN = 32;
const UUID_LEN = 40;
const OFF = {
  version: 6,
  cipherName: 8,
  cipherMode: 40,
  hashSpec: 72,
  payloadOffset: 104,
  keyBytes: 108,
  mkDigest: 112,
  mkSalt: 132,
  mkIterations: 164,
  uuid: 168,
  slots: 208,
} as const;

export interface LuksKeySlot {
  active: number;
  iterations: number;
  salt: Uint8Array;
  keyOffsetSector: number;
  stripes: number;
}

export interface LuksHeader {
  version: number;
  cipherName: string;
  cipherMode: string;
  hashSpec: string;
  payloadOffsetSector: number;
  masterKeyLength: number;
  masterKeyDigest: Uint8Array;
  masterKeySalt: Uint8Array;
  masterKeyIterations: number;
  uuid: string;
  slots: LuksKeySlot[];
}

/** Does `buf` start with a LUKS1 header (magic and version 1)? */
export function hasLuksMagic(buf: Uint8Array): boolean {
  return buf.length >= 8 && LUKS_MAGIC.every((b, i) => buf[i] === b) && buf[6] === 0 && buf[7] === 1;
}

/** A fixed-size NUL-terminated field; undefined when it has no NUL. */
function cString(buf: Uint8Array, at: number, len: number): string | undefined {
  const field = buf.subarray(at, at + len);
  const nul = field.indexOf(0);
  if (nul < 0) return undefined;
  return String.fromCharCode(...field.subarray(0, nul));
}

/** Decodes the header; `check` validates it. */
export function parseLuksHeader(buf: Uint8Array): LuksHeader {
  if (buf.length < LUKS_HEADER_SIZE) throw new BlockError('EINVAL', `LUKS header needs ${LUKS_HEADER_SIZE} bytes, the file has ${buf.length}`);
  if (!LUKS_MAGIC.every((b, i) => buf[i] === b)) throw new BlockError('EINVAL', 'Volume is not in LUKS format');
  const dv = new DataView(buf.buffer, buf.byteOffset, LUKS_HEADER_SIZE);
  const version = dv.getUint16(OFF.version);
  if (version !== 1) throw new BlockError('EINVAL', `LUKS version ${version} is not supported`);
  const cipherName = cString(buf, OFF.cipherName, NAME_LEN);
  if (cipherName === undefined) throw new BlockError('EINVAL', 'LUKS header cipher name is not NUL terminated');
  const cipherMode = cString(buf, OFF.cipherMode, NAME_LEN);
  if (cipherMode === undefined) throw new BlockError('EINVAL', 'LUKS header cipher mode is not NUL terminated');
  const hashSpec = cString(buf, OFF.hashSpec, NAME_LEN);
  if (hashSpec === undefined) throw new BlockError('EINVAL', 'LUKS header hash spec is not NUL terminated');
  const slots: LuksKeySlot[] = [];
  for (let i = 0; i < LUKS_SLOTS; i++) {
    const at = OFF.slots + i * 48;
    slots.push({
      active: dv.getUint32(at),
      iterations: dv.getUint32(at + 4),
      salt: buf.slice(at + 8, at + 8 + SALT_LEN),
      keyOffsetSector: dv.getUint32(at + 40),
      stripes: dv.getUint32(at + 44),
    });
  }
  const uuidField = buf.subarray(OFF.uuid, OFF.uuid + UUID_LEN);
  const uuidEnd = uuidField.indexOf(0);
  return {
    version,
    cipherName,
    cipherMode,
    hashSpec,
    payloadOffsetSector: dv.getUint32(OFF.payloadOffset),
    masterKeyLength: dv.getUint32(OFF.keyBytes),
    masterKeyDigest: buf.slice(OFF.mkDigest, OFF.mkDigest + DIGEST_LEN),
    masterKeySalt: buf.slice(OFF.mkSalt, OFF.mkSalt + SALT_LEN),
    masterKeyIterations: dv.getUint32(OFF.mkIterations),
    uuid: String.fromCharCode(...uuidField.subarray(0, uuidEnd < 0 ? UUID_LEN : uuidEnd)),
    slots,
  };
}

/** Sectors one slot's key material takes: split key rounded to sectors, then to the header area (as cryptsetup). */
export function keyMaterialSectors(masterKeyLength: number, stripes: number): number {
  const headerSectors = LUKS_KEY_SLOT_OFFSET / LUKS_SECTOR;
  const sectors = Math.ceil((masterKeyLength * stripes) / LUKS_SECTOR);
  return Math.ceil(sectors / headerSectors) * headerSectors;
}

/** QEMU's sanity checks of a header, with its messages. */
export function checkLuksHeader(h: LuksHeader): void {
  const headerSectors = LUKS_KEY_SLOT_OFFSET / LUKS_SECTOR;
  const bad = (msg: string) => new BlockError('EINVAL', msg);
  if (h.payloadOffsetSector < headerSectors) throw bad('LUKS payload is overlapping with the header');
  if (h.masterKeyIterations === 0) throw bad('LUKS key iteration count is zero');
  // Bounds the key material before anything is allocated for it (QEMU trusts the size).
  if (h.masterKeyLength === 0 || h.masterKeyLength > 128) throw bad(`LUKS master key length ${h.masterKeyLength} is not between 1 and 128 bytes`);
  for (let i = 0; i < LUKS_SLOTS; i++) {
    const s = h.slots[i]!;
    if (s.stripes !== LUKS_STRIPES) throw bad(`Keyslot ${i} is corrupted (stripes ${s.stripes | 0} != ${LUKS_STRIPES})`);
    if (s.active !== SLOT_DISABLED && s.active !== SLOT_ENABLED) throw bad(`Keyslot ${i} state (active/disable) is corrupted`);
    if (s.active === SLOT_ENABLED && s.iterations === 0) throw bad(`Keyslot ${i} iteration count is zero`);
    if (s.keyOffsetSector < headerSectors) throw bad(`Keyslot ${i} is overlapping with the LUKS header`);
    const len = keyMaterialSectors(h.masterKeyLength, s.stripes);
    if (s.keyOffsetSector + len > h.payloadOffsetSector) throw bad(`Keyslot ${i} is overlapping with the encrypted payload`);
    for (let j = i + 1; j < LUKS_SLOTS; j++) {
      const t = h.slots[j]!;
      const len2 = keyMaterialSectors(h.masterKeyLength, t.stripes);
      if (s.keyOffsetSector + len > t.keyOffsetSector && t.keyOffsetSector + len2 > s.keyOffsetSector) {
        throw bad(`Keyslots ${i} and ${j} are overlapping in the header`);
      }
    }
  }
}

function lookup<T extends string>(name: string, names: readonly T[], what: string): T {
  if (!(names as readonly string[]).includes(name)) throw new BlockError('EINVAL', `${what} '${name}' not supported`);
  return name as T;
}

function hashLookup(name: string): HashAlg {
  if (!isHashAlg(name)) throw new BlockError('EINVAL', `Hash algorithm '${name}' not supported`);
  return name;
}

/** The cipher spec and PBKDF2 hash a header names (QEMU's parse step, with its messages). */
export function luksCipherSpec(h: LuksHeader): { spec: CipherSpec; hash: HashAlg } {
  const dash = h.cipherMode.indexOf('-');
  if (dash < 0) throw new BlockError('EINVAL', `Unexpected cipher mode string format '${h.cipherMode}'`);
  const modeName = h.cipherMode.slice(0, dash);
  let ivName = h.cipherMode.slice(dash + 1);
  let ivgenHash: HashAlg | undefined;
  const colon = ivName.indexOf(':');
  if (colon >= 0) {
    ivgenHash = hashLookup(ivName.slice(colon + 1));
    ivName = ivName.slice(0, colon);
  }
  const mode = lookup<CipherMode>(modeName, CIPHER_MODES, 'Cipher mode');
  const keyBytes = mode === 'xts' ? h.masterKeyLength / 2 : h.masterKeyLength;
  const alg = `${h.cipherName}-${keyBytes * 8}`;
  if (!isCipherAlg(alg) || (h.cipherName === 'cast5' && keyBytes !== 16)) {
    throw new BlockError('EINVAL', `Algorithm '${h.cipherName}' with key size ${Math.floor(keyBytes)} bytes not supported`);
  }
  const hash = hashLookup(h.hashSpec);
  const ivgen = lookup<IvGenAlg>(ivName, IVGEN_ALGS, 'IV generator');
  if (ivgen === 'essiv' && !ivgenHash) throw new BlockError('EINVAL', 'Missing IV generator hash specification');
  const spec: CipherSpec = { alg: alg as CipherAlg, mode, ivgen, ...(ivgenHash ? { ivgenHash } : {}) };
  if (masterKeyLength(spec) !== h.masterKeyLength) throw new BlockError('EINVAL', `LUKS master key length ${h.masterKeyLength} does not fit ${alg}-${mode}`);
  return { spec, hash };
}

function putString(buf: Uint8Array, at: number, len: number, s: string): void {
  if (s.length >= len) throw new BlockError('EINVAL', `'${s}' is too long for a LUKS header field of ${len} bytes`);
  for (let i = 0; i < s.length; i++) buf[at + i] = s.charCodeAt(i);
}

/** Encodes the header into 592 bytes. */
export function serializeLuksHeader(h: LuksHeader): Uint8Array {
  const buf = new Uint8Array(LUKS_HEADER_SIZE);
  const dv = new DataView(buf.buffer);
  buf.set(LUKS_MAGIC, 0);
  dv.setUint16(OFF.version, h.version);
  putString(buf, OFF.cipherName, NAME_LEN, h.cipherName);
  putString(buf, OFF.cipherMode, NAME_LEN, h.cipherMode);
  putString(buf, OFF.hashSpec, NAME_LEN, h.hashSpec);
  dv.setUint32(OFF.payloadOffset, h.payloadOffsetSector);
  dv.setUint32(OFF.keyBytes, h.masterKeyLength);
  buf.set(h.masterKeyDigest, OFF.mkDigest);
  buf.set(h.masterKeySalt, OFF.mkSalt);
  dv.setUint32(OFF.mkIterations, h.masterKeyIterations);
  for (let i = 0; i < h.uuid.length && i < UUID_LEN; i++) buf[OFF.uuid + i] = h.uuid.charCodeAt(i);
  h.slots.forEach((s, i) => {
    const at = OFF.slots + i * 48;
    dv.setUint32(at, s.active);
    dv.setUint32(at + 4, s.iterations);
    buf.set(s.salt, at + 8);
    dv.setUint32(at + 40, s.keyOffsetSector);
    dv.setUint32(at + 44, s.stripes);
  });
  return buf;
}
