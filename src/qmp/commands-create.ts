/**
 * blockdev-create (QEMU 7.2's block/create.c): image creation as a job of
 * type 'create' that the user dismisses (QEMU makes it with manual dismiss).
 * The drivers: file (filename, size, preallocation, nocow,
 * extent-size-hint) and qcow2 on a file node (QAPI's options mapped to the
 * qcow2 creation options of core/create.ts).
 */
import { createImage } from '../core/create.js';
import type { BlockNode } from '../core/node.js';
import type { JobDriver } from '../jobs/job-types.js';
import { isWellFormedId } from '../jobs/job-registry.js';
import type { BlockQmp } from './block-qmp.js';
import { blockdevRef, QEMU_BLOCKDEV_DRIVERS } from './blockdev-schema.js';
import type { QmpCommand } from './dispatcher.js';
import { genericError } from './errors.js';
import { checkMembers, flatUnion, m, struct, type QapiCustom, type QapiMember, type QapiType } from './schema.js';

const prealloc = { enum: ['off', 'metadata', 'falloc', 'full'] } as const;

/** The other drivers QEMU 7.2's blockdev-create creates with. */
const QEMU_CREATORS = new Set(['gluster', 'luks', 'nfs', 'parallels', 'qcow', 'qed', 'rbd', 'ssh', 'vdi', 'vhdx', 'vmdk', 'vpc']);

const hashAlg = { enum: ['md5', 'sha1', 'sha224', 'sha256', 'sha384', 'sha512', 'ripemd160'] } as const;

/** QCryptoBlockCreateOptions (qcow2's encrypt): the format, then its branch. */
const cryptoCreateOptions = flatUnion('QCryptoBlockCreateOptions', [m('format', { enum: ['qcow', 'luks'] })], {
  qcow: [m('*key-secret', 'str')],
  luks: [
    m('*key-secret', 'str'),
    m('*cipher-alg', { enum: ['aes-128', 'aes-192', 'aes-256', 'des', '3des', 'cast5-128', 'serpent-128', 'serpent-192', 'serpent-256', 'twofish-128', 'twofish-192', 'twofish-256'] }),
    m('*cipher-mode', { enum: ['ecb', 'cbc', 'xts', 'ctr'] }),
    m('*ivgen-alg', { enum: ['plain', 'plain64', 'essiv'] }),
    m('*ivgen-hash-alg', hashAlg),
    m('*hash-alg', hashAlg),
    m('*iter-time', 'int'),
  ],
});

/** The members of the create options' branches DiskWorker implements. */
function branches(ref: QapiType): Record<string, QapiMember[]> {
  return {
    file: [m('filename', 'str'), m('size', 'size'), m('*preallocation', prealloc), m('*nocow', 'bool'), m('*extent-size-hint', 'size')],
    qcow2: [
      m('file', ref),
      m('*data-file', ref),
      m('*data-file-raw', 'bool'),
      m('*extended-l2', 'bool'),
      m('size', 'size'),
      m('*version', { enum: ['v2', 'v3'] }),
      m('*backing-file', 'str'),
      m('*backing-fmt', { enum: QEMU_BLOCKDEV_DRIVERS }),
      m('*encrypt', cryptoCreateOptions),
      m('*cluster-size', 'size'),
      m('*preallocation', prealloc),
      m('*lazy-refcounts', 'bool'),
      m('*refcount-bits', 'int'),
      m('*compression-type', { enum: ['zlib', 'zstd'] }),
    ],
  };
}

/** BlockdevCreateOptions: the driver first, then its branch's members and nothing else. */
function createOptionsType(q: BlockQmp): QapiCustom {
  const ref = blockdevRef((driver) => q.graph.lookupDriver(driver) !== undefined);
  return {
    custom: 'BlockdevCreateOptions',
    check(value, path) {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) throw genericError(`Invalid parameter type for '${path}', expected: object`);
      const v = value as Record<string, unknown>;
      const driver = m('driver', { enum: QEMU_BLOCKDEV_DRIVERS });
      checkMembers(v, struct('BlockdevCreateOptions', [driver], true), path);
      const kind = v.driver as string;
      // The other branches of QEMU's union belong to drivers DiskWorker does not create with (refused
      // when the command runs); a driver without a branch takes no member but 'driver'.
      if (QEMU_CREATORS.has(kind)) return;
      checkMembers(v, struct(`BlockdevCreateOptions-${kind}`, [driver, ...(branches(ref)[kind] ?? [])]), path);
    },
  };
}

/** The file node a BlockdevRef names (opened when given inline; `opened` says so). */
async function resolveRef(q: BlockQmp, ref: unknown): Promise<{ node: BlockNode; opened: boolean }> {
  if (typeof ref === 'string') return { node: q.lookupNode(ref, ref), opened: false };
  return { node: await q.graph.open(ref as Record<string, unknown>), opened: true };
}

/** The filename of a node qcow2 can be created on (a 'file' node). */
function fileNameOf(node: BlockNode): string {
  if (node.driver.name !== 'file') throw genericError(`DiskWorker's blockdev-create writes qcow2 images on 'file' nodes only, not on '${node.driver.name}' node '${node.nodeName}'`);
  return node.filename;
}

/** QAPI's qcow2 options as the creation options of core/create.ts. */
function qcow2Options(o: Record<string, unknown>, dataFile: string | undefined): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = { size: o.size as number };
  if (o.version !== undefined) out.compat = o.version === 'v2' ? '0.10' : '1.1';
  if (o['backing-file'] !== undefined) out.backing_file = o['backing-file'] as string;
  if (o['backing-fmt'] !== undefined) out.backing_fmt = o['backing-fmt'] as string;
  if (o['cluster-size'] !== undefined) out.cluster_size = o['cluster-size'] as number;
  if (o.preallocation !== undefined) out.preallocation = o.preallocation as string;
  if (o['lazy-refcounts'] !== undefined) out.lazy_refcounts = o['lazy-refcounts'] as boolean;
  if (o['refcount-bits'] !== undefined) out.refcount_bits = o['refcount-bits'] as number;
  if (o['extended-l2'] !== undefined) out.extended_l2 = o['extended-l2'] as boolean;
  if (o['compression-type'] !== undefined) out.compression_type = o['compression-type'] as string;
  if (dataFile !== undefined) out.data_file = dataFile;
  if (o['data-file-raw'] !== undefined) out.data_file_raw = o['data-file-raw'] as boolean;
  return out;
}

/** Creates the image the options describe (the job's work). */
async function create(q: BlockQmp, o: Record<string, unknown>): Promise<void> {
  if (o.driver === 'file') {
    await createImage(q.graph, 'file', o.filename as string, {
      size: o.size as number,
      ...(o.preallocation !== undefined ? { preallocation: o.preallocation as string } : {}),
      ...(o.nocow !== undefined ? { nocow: o.nocow as boolean } : {}),
      ...(o['extent-size-hint'] !== undefined ? { extent_size_hint: o['extent-size-hint'] as number } : {}),
    });
    return;
  }
  if (o.encrypt !== undefined) throw genericError("DiskWorker's blockdev-create does not create encrypted qcow2 images");
  const held: Array<{ node: BlockNode; opened: boolean }> = [];
  try {
    const file = await resolveRef(q, o.file);
    held.push(file);
    let dataFile: string | undefined;
    if (o['data-file'] !== undefined) {
      const d = await resolveRef(q, o['data-file']);
      held.push(d);
      dataFile = fileNameOf(d.node);
    }
    await createImage(q.graph, 'qcow2', fileNameOf(file.node), qcow2Options(o, dataFile));
    // The image was written beside the node: its length is new.
    for (const h of held) await h.node.refreshLength();
  } finally {
    for (const h of held) if (h.opened) await h.node.unref();
  }
}

/** The blockdev-create command of `q`. */
export function createCommands(q: BlockQmp): QmpCommand[] {
  return [
    {
      name: 'blockdev-create',
      args: struct('blockdev-create', [m('job-id', 'str'), m('options', createOptionsType(q))]),
      run: (args) => {
        const options = args.options as Record<string, unknown>;
        const driver = options.driver as string;
        if (QEMU_CREATORS.has(driver)) throw genericError(`DiskWorker's blockdev-create does not create '${driver}' images`);
        if (driver !== 'file' && driver !== 'qcow2') throw genericError('Driver does not support blockdev-create');
        const id = args['job-id'] as string;
        if (!isWellFormedId(id)) throw genericError(`Invalid job ID '${id}'`);
        if (q.jobs.get(id)) throw genericError(`Job ID '${id}' already in use`);
        const job: JobDriver = {
          type: 'create',
          // QEMU counts the creation as one unit of work, done whether it succeeded or not.
          run: async (ctl) => {
            ctl.progressSetRemaining(1);
            try {
              await create(q, options);
            } finally {
              ctl.progressUpdate(1);
            }
          },
        };
        q.jobs.create(job, { id, autoDismiss: false }).start();
      },
    },
  ];
}
