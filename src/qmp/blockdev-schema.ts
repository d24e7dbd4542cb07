/**
 * The BlockdevOptions union of QEMU 7.2 (qapi/block-core.json) for the
 * blockdev-add check: the common members, the driver enum, and the members
 * of the drivers DiskWorker has in QEMU's set (file, raw, qcow2, qcow, qed,
 * vmdk, luks, the generic formats, blkverify, blklogwrites, quorum,
 * throttle, copy-on-read, preallocate, null-co, null-aio, nbd). http (which takes
 * DiskWorker's own cache options), blkdebug, QEMU's drivers DiskWorker does
 * not have and DiskWorker's own back ends are checked for the common
 * members only and left to their open.
 */
import { genericError } from './errors.js';
import { checkMembers, flatUnion, m, struct, type QapiCustom, type QapiMember, type QapiType } from './schema.js';

/** QEMU 7.2's BlockdevDriver values (this build's). */
export const QEMU_BLOCKDEV_DRIVERS = [
  'blkdebug', 'blklogwrites', 'blkreplay', 'blkverify', 'bochs', 'cloop', 'compress', 'copy-before-write',
  'copy-on-read', 'dmg', 'file', 'snapshot-access', 'ftp', 'ftps', 'gluster', 'host_cdrom', 'host_device',
  'http', 'https', 'iscsi', 'luks', 'nbd', 'nfs', 'null-aio', 'null-co', 'nvme', 'parallels', 'preallocate',
  'qcow', 'qcow2', 'qed', 'quorum', 'raw', 'rbd', 'replication', 'ssh', 'throttle', 'vdi', 'vhdx', 'vmdk',
  'vpc', 'vvfat',
] as const;

const onOffAuto = { enum: ['auto', 'on', 'off'] } as const;

type Known = (driver: string) => boolean;

/** A child: a node-name or inline options (BlockdevRef). */
export function blockdevRef(known: Known): QapiType {
  return { alternate: 'BlockdevRef', str: 'str', object: { custom: 'BlockdevOptions', check: (v, p, kv) => checkBlockdevOptions(v, p, known, kv) } };
}

const common: QapiMember[] = [
  m('driver', 'str'),
  m('*node-name', 'str'),
  m('*discard', { enum: ['ignore', 'unmap'] }),
  m('*cache', struct('BlockdevCacheOptions', [m('*direct', 'bool'), m('*no-flush', 'bool')])),
  m('*read-only', 'bool'),
  m('*auto-read-only', 'bool'),
  m('*force-share', 'bool'),
  m('*detect-zeroes', { enum: ['off', 'on', 'unmap'] }),
];

const overlapCheck: QapiType = {
  alternate: 'Qcow2OverlapChecks',
  str: { enum: ['none', 'constant', 'cached', 'all'] },
  object: struct('Qcow2OverlapCheckFlags', [
    m('*template', { enum: ['none', 'constant', 'cached', 'all'] }),
    ...['main-header', 'active-l1', 'active-l2', 'refcount-table', 'refcount-block', 'snapshot-table', 'inactive-l1', 'inactive-l2', 'bitmap-directory'].map((n) => m(`*${n}`, 'bool')),
  ]),
};

/** BlockdevQcow2Encryption: the format, and the key secret of either kind. */
const qcow2Encryption = flatUnion('BlockdevQcow2Encryption', [m('format', { enum: ['aes', 'luks'] })], {
  aes: [m('*key-secret', 'str')],
  luks: [m('*key-secret', 'str')],
});

/** BlockdevQcowEncryption: qcow's one format and its key secret. */
const qcowEncryption = flatUnion('BlockdevQcowEncryption', [m('format', { enum: ['aes'] })], { aes: [m('*key-secret', 'str')] });

/** SocketAddress (qapi/sockets.json): where an NBD client connects. */
const socketAddress = flatUnion('SocketAddress', [m('type', { enum: ['inet', 'unix', 'vsock', 'fd'] })], {
  inet: [m('host', 'str'), m('port', 'str'), m('*numeric', 'bool'), m('*to', 'uint16'), m('*ipv4', 'bool'), m('*ipv6', 'bool'), m('*keep-alive', 'bool'), m('*mptcp', 'bool')],
  unix: [m('path', 'str'), m('*abstract', 'bool'), m('*tight', 'bool')],
  vsock: [m('cid', 'str'), m('port', 'str')],
  fd: [m('str', 'str')],
});

/** BlockdevOptionsNbd. */
const nbdMembers: QapiMember[] = [
  m('server', socketAddress),
  m('*export', 'str'),
  m('*tls-creds', 'str'),
  m('*tls-hostname', 'str'),
  m('*x-dirty-bitmap', 'str'),
  m('*reconnect-delay', 'uint32'),
  m('*open-timeout', 'uint32'),
];

/** The members each described driver adds to the common ones. */
function variants(known: Known): Record<string, QapiMember[]> {
  const ref = blockdevRef(known);
  // BlockdevRefOrNull: null means "no child".
  const refOrNull: QapiType = { alternate: 'BlockdevRefOrNull', str: 'str', object: (ref as { object: QapiType }).object, null: true };
  return {
  file: [
    m('filename', 'str'),
    m('*pr-manager', 'str'),
    m('*locking', onOffAuto),
    m('*aio', { enum: ['threads', 'native', 'io_uring'] }),
    m('*aio-max-batch', 'int'),
    m('*drop-cache', 'bool'),
    m('*x-check-cache-dropped', 'bool'),
  ],
  raw: [m('file', ref), m('*offset', 'int'), m('*size', 'int')],
  qcow2: [
    m('file', ref),
    m('*backing', refOrNull),
    m('*lazy-refcounts', 'bool'),
    m('*pass-discard-request', 'bool'),
    m('*pass-discard-snapshot', 'bool'),
    m('*pass-discard-other', 'bool'),
    m('*overlap-check', overlapCheck),
    m('*cache-size', 'int'),
    m('*l2-cache-size', 'int'),
    m('*l2-cache-entry-size', 'int'),
    m('*refcount-cache-size', 'int'),
    m('*cache-clean-interval', 'int'),
    m('*encrypt', qcow2Encryption),
    m('*data-file', ref),
  ],
  blkverify: [m('test', ref), m('raw', ref)],
  ...Object.fromEntries(['bochs', 'cloop', 'compress', 'dmg', 'parallels', 'snapshot-access', 'vdi', 'vhdx', 'vpc'].map((d) => [d, [m('file', ref)]])),
  qed: [m('file', ref), m('*backing', refOrNull)],
  vmdk: [m('file', ref), m('*backing', refOrNull)],
  luks: [m('file', ref), m('*key-secret', 'str')],
  qcow: [m('file', ref), m('*backing', refOrNull), m('*encrypt', qcowEncryption)],
  throttle: [m('throttle-group', 'str'), m('file', ref)],
  'copy-on-read': [m('file', ref), m('*bottom', 'str')],
  preallocate: [m('file', ref), m('*prealloc-align', 'int'), m('*prealloc-size', 'int')],
  blklogwrites: [m('file', ref), m('log', ref), m('*log-sector-size', 'uint32'), m('*log-append', 'bool'), m('*log-super-update-interval', 'uint64')],
  quorum: [m('*blkverify', 'bool'), m('children', { list: ref }), m('vote-threshold', 'int'), m('*rewrite-corrupted', 'bool'), m('*read-pattern', { enum: ['quorum', 'fifo'] })],
  nbd: nbdMembers,
  'null-co': [m('*size', 'int'), m('*latency-ns', 'uint64'), m('*read-zeroes', 'bool')],
  'null-aio': [m('*size', 'int'), m('*latency-ns', 'uint64'), m('*read-zeroes', 'bool')],
  };
}

/**
 * Checks blockdev options as QEMU's visitor does: the common members, the
 * driver's value, then the driver's members and nothing else. `known` says
 * whether a driver outside QEMU's enum exists here (then only the common
 * members are checked).
 */
export function checkBlockdevOptions(value: unknown, path: string, known: Known, keyval = false): void {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw genericError(`Invalid parameter type for '${path === '' ? 'null' : path}', expected: object`);
  }
  const opts = value as Record<string, unknown>;
  checkMembers(opts, struct('BlockdevOptions', common, true), path, keyval);
  const driver = opts.driver as string;
  const variant = variants(known)[driver];
  if (!variant) {
    if (!(QEMU_BLOCKDEV_DRIVERS as readonly string[]).includes(driver) && !known(driver)) {
      // QEMU's enum visitor names the member alone, at any depth.
      throw genericError(`Parameter 'driver' does not accept value '${driver}'`);
    }
    return;
  }
  checkMembers(opts, struct(`BlockdevOptions-${driver}`, [...common, ...variant]), path, keyval);
}

/** The arguments of blockdev-add checked against BlockdevOptions. */
export function blockdevAddSchema(known: Known): QapiCustom {
  return { custom: 'BlockdevOptions', check: (v, p, kv) => checkBlockdevOptions(v, p, known, kv) };
}
