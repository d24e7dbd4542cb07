/**
 * idb: images in IndexedDB as fixed-size chunks (see idb-chunks.ts).
 *
 * One database (`diskworker-idb`) with two object stores: `images` (name →
 * metadata: size, chunk size) and `chunks` ([name, index] → bytes). A
 * missing chunk reads as zeros; all-zero chunks are deleted on commit. Reads
 * of a request fetch every missing chunk in one transaction; writes collect in
 * memory and are committed with the metadata in one transaction, on flush
 * (durability 'strict': flush = durable commit) or when 16 MiB are dirty.
 *
 * Plain IndexedDB, not idb-keyval, for this store: it needs compound keys, a
 * key-range delete (truncate, remove), a second store written in the same
 * transaction as the chunks, the 'strict' durability hint, and handling of
 * versionchange / close / blocked; idb-keyval has none of these (the page
 * client uses idb-keyval for its small settings record).
 *
 * One writer per image: a Web Lock (`diskworker-idb:<name>`, exclusive for
 * read-write, shared for read-only) taken with ifAvailable; a second writer
 * gets EBUSY.
 */
import type { BlockDriver, CreateContext, DriverInstance } from '../core/driver.js';
import { BlockError, einval, toBlockError } from '../core/errors.js';
import type { BlockNode } from '../core/node.js';
import type { OptionReader } from '../core/options.js';
import { ChunkedImage, type ChunkStore, type IdbMeta } from './idb-chunks.js';

const DB_NAME = 'diskworker-idb';
const DB_VERSION = 1;
const IMAGES = 'images';
const CHUNKS = 'chunks';
const PREFIX = 'idb:';
/**
 * Default chunk size, chosen by bench/browser (persistent Chromium profile,
 * 32 MiB image, 1 MiB requests): against 32 KiB chunks, 64 KiB chunks read
 * sequentially ≈ 2.5× and write ≈ 5× faster, with random 4 KiB reads the same
 * and random 4 KiB writes (flush every 16) ≈ 0.85×; 128 / 256 KiB gain little
 * more sequentially and lose on random writes. 64 KiB also holds exactly one
 * default qcow2 cluster. (PLATFORM-FACTS.md's per-value blob-file cost of
 * ≥ 64 KiB values is outweighed by the per-value overhead here.)
 */
export const IDB_DEFAULT_CHUNK = 64 * 1024;

let dbPromise: Promise<IDBDatabase> | null = null;

function idbError(e: unknown, what: string): BlockError {
  const ev = e as { target?: { error?: unknown } } | undefined;
  const err = toBlockError(ev?.target?.error ?? e);
  return new BlockError(err.code, `${what}: ${err.message}`, err.context, { cause: e });
}

/** Opens the database at `version` (latest when undefined), creating our stores on upgrade. */
function openDatabase(version: number | undefined): Promise<IDBDatabase> {
  return new Promise<IDBDatabase>((resolve, reject) => {
    const req = version === undefined ? indexedDB.open(DB_NAME) : indexedDB.open(DB_NAME, version);
    let blockedTimer: ReturnType<typeof setTimeout> | undefined;
    req.onupgradeneeded = () => {
      const db = req.result;
      if (!db.objectStoreNames.contains(IMAGES)) db.createObjectStore(IMAGES);
      if (!db.objectStoreNames.contains(CHUNKS)) db.createObjectStore(CHUNKS);
    };
    req.onblocked = () => {
      // Another connection (an older tab) has not closed for our upgrade yet.
      blockedTimer = setTimeout(
        () => reject(new BlockError('EBUSY', `IndexedDB '${DB_NAME}' upgrade is blocked by another tab that keeps it open`)),
        10_000,
      );
    };
    req.onerror = () => {
      clearTimeout(blockedTimer);
      reject(idbError(req.error, `Could not open IndexedDB '${DB_NAME}'`));
    };
    req.onsuccess = () => {
      clearTimeout(blockedTimer);
      resolve(req.result);
    };
  });
}

/**
 * The shared connection, reopened after versionchange / close. It opens the
 * latest version (someone else — a newer release, another library — may have
 * upgraded the database) and upgrades it only when our stores are missing.
 */
function database(): Promise<IDBDatabase> {
  if (dbPromise) return dbPromise;
  if (typeof indexedDB === 'undefined') {
    return Promise.reject(new BlockError('ENOTSUP', 'IndexedDB is not available here'));
  }
  const p = (async () => {
    let db = await openDatabase(undefined);
    if (!db.objectStoreNames.contains(IMAGES) || !db.objectStoreNames.contains(CHUNKS)) {
      const next = Math.max(DB_VERSION, db.version + 1);
      db.close();
      db = await openDatabase(next);
    }
    db.onversionchange = () => {
      // Someone upgrades the database: let them; the next request reopens.
      db.close();
      if (dbPromise === p) dbPromise = null;
    };
    db.onclose = () => {
      if (dbPromise === p) dbPromise = null;
    };
    return db;
  })();
  dbPromise = p;
  p.catch(() => {
    if (dbPromise === p) dbPromise = null;
  });
  return p;
}

/** Runs `fn` in a transaction, retrying once when the connection was closed under us. */
async function withTx<T>(
  stores: string[],
  mode: IDBTransactionMode,
  durable: boolean,
  fn: (tx: IDBTransaction) => T,
): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    const db = await database();
    let tx: IDBTransaction;
    try {
      tx = db.transaction(stores, mode, { durability: durable ? 'strict' : 'relaxed' });
    } catch (e) {
      if (attempt === 0 && (e as { name?: string })?.name === 'InvalidStateError') {
        if (dbPromise) dbPromise = null;
        continue;
      }
      throw idbError(e, 'IndexedDB transaction failed');
    }
    const result = fn(tx);
    await new Promise<void>((resolve, reject) => {
      tx.oncomplete = () => resolve();
      tx.onabort = () => reject(tx.error ?? new DOMException('Transaction aborted', 'AbortError'));
      tx.onerror = (ev) => ev.preventDefault();
    });
    return result;
  }
}

function chunkRange(name: string, from = 0): IDBKeyRange {
  return IDBKeyRange.bound([name, from], [name, Infinity]);
}

/** The IndexedDB implementation of {@link ChunkStore}. */
export const idbChunkStore: ChunkStore = {
  async getMany(name, indexes) {
    const out: Array<ArrayBuffer | Uint8Array | undefined> = new Array(indexes.length);
    const first = indexes[0]!;
    const contiguous = indexes.length > 2 && indexes.every((v, k) => v === first + k);
    await withTx([CHUNKS], 'readonly', false, (tx) => {
      const store = tx.objectStore(CHUNKS);
      if (contiguous) {
        // One range request instead of one get per chunk; holes are simply absent.
        const range = IDBKeyRange.bound([name, first], [name, first + indexes.length - 1]);
        const keys = store.getAllKeys(range);
        const values = store.getAll(range);
        values.onsuccess = () => {
          const ks = keys.result as Array<[string, number]>;
          const vs = values.result as ArrayBuffer[];
          for (let i = 0; i < ks.length; i++) out[ks[i]![1] - first] = vs[i];
        };
        return;
      }
      indexes.forEach((idx, k) => {
        const r = store.get([name, idx]);
        r.onsuccess = () => (out[k] = r.result as ArrayBuffer | undefined);
      });
    }).catch((e) => {
      throw idbError(e, `Could not read IndexedDB image '${name}'`);
    });
    return out;
  },
  async commit(name, puts, deletes, deleteFrom, meta, durable) {
    await withTx([IMAGES, CHUNKS], 'readwrite', durable, (tx) => {
      const chunks = tx.objectStore(CHUNKS);
      if (deleteFrom !== undefined) chunks.delete(chunkRange(name, deleteFrom));
      for (const i of deletes) chunks.delete([name, i]);
      // put() clones the bytes now: the caller may reuse the buffers afterwards.
      for (const [i, c] of puts) chunks.put(c, [name, i]);
      tx.objectStore(IMAGES).put(meta, name);
    });
  },
};

async function readMeta(name: string): Promise<IdbMeta | undefined> {
  let meta: IdbMeta | undefined;
  await withTx([IMAGES], 'readonly', false, (tx) => {
    const r = tx.objectStore(IMAGES).get(name);
    r.onsuccess = () => (meta = r.result as IdbMeta | undefined);
  });
  return meta;
}

/** Validates an image name (`idb:name` or `name`). */
export function idbImageName(filename: string): string {
  let n = filename.startsWith(PREFIX) ? filename.slice(PREFIX.length) : filename;
  n = n.replace(/^\/+/, '');
  if (n === '' || n.length > 1024 || n.includes('\0')) throw einval(`Invalid IndexedDB image name '${filename}'`);
  return n;
}

interface HeldLock {
  /** Releases the lock; resolves once another request can take it. */
  release(): Promise<void>;
}

/** Takes the per-image Web Lock without waiting; null when someone else holds it. */
async function tryLock(name: string, exclusive: boolean): Promise<HeldLock | null> {
  const locks = (globalThis.navigator as Navigator | undefined)?.locks;
  if (!locks) return { release: async () => undefined };
  return new Promise<HeldLock | null>((resolve, reject) => {
    let letGo!: () => void;
    const held = new Promise<void>((r) => (letGo = r));
    const done = locks.request(`diskworker-idb:${name}`, { mode: exclusive ? 'exclusive' : 'shared', ifAvailable: true }, async (lock) => {
      if (!lock) {
        resolve(null);
        return;
      }
      resolve({
        release: () => {
          letGo();
          // The lock is free only once request() settles, after the callback returns.
          return done.then(() => undefined, () => undefined);
        },
      });
      await held;
    });
    done.catch(reject);
  });
}

class IdbInstance implements DriverInstance {
  constructor(
    readonly image: ChunkedImage,
    private readonly lock: HeldLock,
    private readonly readOnly: boolean,
  ) {}
  readonly supportedWriteFlags = 0;
  readonly supportedZeroFlags = 0x02;

  getLength(): number {
    return this.image.size;
  }
  preadv(offset: number, bytes: number, buf: Uint8Array): Promise<void> {
    return this.image.read(offset, buf, bytes);
  }
  pwritev(offset: number, bytes: number, buf: Uint8Array): Promise<void> {
    return this.image.write(offset, buf, bytes);
  }
  pwriteZeroes(offset: number, bytes: number): Promise<void> {
    return this.image.write(offset, null, bytes);
  }
  async pdiscard(offset: number, bytes: number): Promise<void> {
    const end = Math.min(offset + bytes, this.image.size);
    if (end > offset) await this.image.write(offset, null, end - offset);
  }
  async flushToDisk(): Promise<void> {
    await this.image.commit(true);
  }
  async truncate(offset: number): Promise<void> {
    await this.image.truncate(offset);
  }
  async getAllocatedFileSize(): Promise<number> {
    return this.image.allocatedEstimate;
  }
  hasZeroInit(): boolean {
    return true;
  }
  async close(): Promise<void> {
    try {
      if (!this.readOnly) await this.image.commit(true);
    } finally {
      await this.lock.release();
    }
  }
}

async function createImage(ctx: CreateContext): Promise<void> {
  const size = ctx.options.size('size', 0);
  const chunkSize = ctx.options.size('chunk-size', IDB_DEFAULT_CHUNK);
  ctx.options.consume('preallocation');
  ctx.options.finish();
  checkChunkSize(chunkSize);
  const name = idbImageName(ctx.filename);
  const lock = await tryLock(name, true);
  if (!lock) throw new BlockError('EBUSY', `Cannot create '${PREFIX}${name}': the image is in use (open for writing in another tab or worker)`);
  try {
    await idbChunkStore.commit(name, [], [], 0, { size, chunkSize, version: 1 }, true);
  } catch (e) {
    throw idbError(e, `Could not create '${PREFIX}${name}'`);
  } finally {
    await lock.release();
  }
}

function checkChunkSize(cs: number): void {
  if (cs < 512 || cs > 16 * 1024 * 1024 || (cs & (cs - 1)) !== 0) {
    throw einval(`idb chunk-size must be a power of two between 512 and 16M, got ${cs}`);
  }
}

/** Lists the images stored in IndexedDB. */
export async function listIdb(): Promise<Array<{ path: string; size: number }>> {
  const out: Array<{ path: string; size: number }> = [];
  await withTx([IMAGES], 'readonly', false, (tx) => {
    const r = tx.objectStore(IMAGES).openCursor();
    r.onsuccess = () => {
      const c = r.result;
      if (!c) return;
      out.push({ path: `${PREFIX}${String(c.key)}`, size: (c.value as IdbMeta).size });
      c.continue();
    };
  });
  return out;
}

/** Deletes an image (EBUSY when open elsewhere, ENOENT when missing). */
export async function removeIdb(filename: string): Promise<void> {
  const name = idbImageName(filename);
  const lock = await tryLock(name, true);
  if (!lock) throw new BlockError('EBUSY', `Cannot remove '${PREFIX}${name}': the image is in use`);
  try {
    if (!(await readMeta(name))) throw new BlockError('ENOENT', `Cannot remove '${PREFIX}${name}': No such file or directory`);
    await withTx([IMAGES, CHUNKS], 'readwrite', true, (tx) => {
      tx.objectStore(CHUNKS).delete(chunkRange(name));
      tx.objectStore(IMAGES).delete(name);
    });
  } finally {
    await lock.release();
  }
}

export const idbDriver = {
  name: 'idb',
  kind: 'protocol',
  protocolPrefixes: [PREFIX],
  parseFilename: (filename: string) => ({ filename: `${PREFIX}${idbImageName(filename)}` }),
  isAvailable: () => typeof indexedDB !== 'undefined',
  createOptions: [
    { name: 'size', type: 'size', help: 'Virtual disk size' },
    { name: 'chunk-size', type: 'size', help: 'Bytes per IndexedDB value', default: String(IDB_DEFAULT_CHUNK) },
  ],
  async open(node: BlockNode, options: OptionReader): Promise<DriverInstance> {
    const filename = options.string('filename');
    if (!filename) throw einval("The 'idb' block driver requires an image name");
    const cacheBytes = options.size('cache-size', 32 * 1024 * 1024);
    const writebackBytes = options.size('writeback-size', 16 * 1024 * 1024);
    const name = idbImageName(filename);
    node.filename = `${PREFIX}${name}`;
    const lock = await tryLock(name, !node.readOnly);
    if (!lock) {
      throw new BlockError('EBUSY', `Could not open '${PREFIX}${name}': the image is in use (it is open for writing in another tab or worker)`);
    }
    try {
      const meta = await readMeta(name);
      if (!meta) throw new BlockError('ENOENT', `Could not open '${PREFIX}${name}': No such file or directory`);
      checkChunkSize(meta.chunkSize);
      const image = new ChunkedImage(idbChunkStore, name, meta, { cacheBytes, writebackBytes });
      return new IdbInstance(image, lock, node.readOnly);
    } catch (e) {
      await lock.release();
      throw e;
    }
  },
  create: createImage,
  catalogue: { storage: 'idb', list: listIdb, remove: removeIdb },
} satisfies BlockDriver;
