/**
 * The protocol conformance cases, written once: Vitest runs them over memory,
 * null-co, node-file and blob (test/protocols/conformance.test.ts), and a
 * dedicated worker in Chromium runs them over OPFS, IndexedDB, read-only HTTP
 * and blob (e2e/harness/conformance-worker.ts, e2e/conformance.spec.ts), each
 * once with the WASM hot paths and once with the TypeScript ones.
 *
 * A case either runs (and can fail) or, for a target that cannot do what it
 * needs, is not applicable with the reason the target gives; see {@link applicable}.
 */
import { BlockBackend } from '../../src/core/backend.js';
import { createImage } from '../../src/core/create.js';
import { ReqFlag, Status } from '../../src/core/driver.js';
import {
  check,
  closeAll,
  expectContent,
  expectError,
  IMAGE_SIZE,
  Model,
  openImage,
  pattern,
  READ_ONLY_CODES,
  shownLength,
  type Image,
  type Target,
} from './conformance-kit.js';
import { checkHotPaths, type HotPaths } from './hot-paths.js';

export * from './conformance-kit.js';

/** One case: `run` throws a CaseFailure (or any error) when the back end does not conform. */
export interface ConformanceCase {
  name: string;
  run(t: Target, id: string, mode: HotPaths): Promise<void>;
}

const KiB = 1024;

/** Writes refused on a read-only image, and the content unchanged afterwards. */
async function refusesWrites(t: Target, img: Image, bb: BlockBackend, ops: Array<[string, () => Promise<unknown>]>): Promise<void> {
  for (const [what, op] of ops) await expectError(op, READ_ONLY_CODES, [], `${t.name}: ${what} on a read-only image`);
  await expectContent(bb, new Model(img.initial, false, t.sectorLength));
}

async function unalignedReadAfterWrite(t: Target, id: string): Promise<void> {
  const img = await t.fresh(id);
  const bb = await openImage(t, img);
  try {
    const model = new Model(img.initial, t.data === 'drops', t.sectorLength);
    const writes: Array<[number, number]> = [[1, 3], [511, 2], [4095, 4099], [65535, 70_001], [img.size - 777, 777]];
    if (t.data === 'read-only') {
      await refusesWrites(t, img, bb, writes.map(([o, n]) => [`write at ${o}`, () => bb.write(o, pattern(o, n))]));
    } else {
      for (const [o, n] of writes) {
        await bb.write(o, pattern(o, n));
        model.write(o, pattern(o, n));
      }
    }
    for (const [o, n] of [[0, 7], [2, 1], [510, 5], [4000, 9000], [65_530, 70_100], [img.size - 1001, 1001], [333, img.size - 333]]) {
      await expectContent(bb, model, o, n);
    }
  } finally {
    await closeAll(bb);
  }
}

async function readsPastEof(t: Target, id: string): Promise<void> {
  const img = await t.fresh(id);
  const bb = await openImage(t, img);
  try {
    const size = shownLength(t, img.size);
    for (const [o, n] of [[size - 10, 11], [size, 1], [size + 4096, 512], [0, size + 1]]) {
      await expectError(() => bb.read(o, n), ['EIO'], [`offset ${o}`], `${t.name}: read of ${n} at ${o} (length ${size})`);
    }
    // The last bytes themselves still read.
    await expectContent(bb, new Model(img.initial, t.data === 'drops', t.sectorLength), img.size - 10, 10);
  } finally {
    await closeAll(bb);
  }
}

async function truncateGrowShrink(t: Target, id: string): Promise<void> {
  const img = await t.fresh(id);
  const bb = await openImage(t, img);
  try {
    const model = new Model(img.initial, t.data === 'drops', t.sectorLength);
    if (t.data === 'read-only') {
      await refusesWrites(t, img, bb, [['truncate grow', () => bb.truncate(img.size + 4096)], ['truncate shrink', () => bb.truncate(1000)]]);
      return;
    }
    if (typeof t.resizes === 'string') {
      await expectError(() => bb.truncate(img.size + 4096), ['ENOTSUP'], [], `${t.name}: truncate grow (${t.resizes})`);
      await expectError(() => bb.truncate(1000), ['ENOTSUP'], [], `${t.name}: truncate shrink (${t.resizes})`);
      check(bb.length === img.size, `${t.name}: length ${bb.length} after refused truncates, expected ${img.size}`);
      return;
    }
    const data = pattern(7, 200 * KiB);
    await bb.write(img.size - data.length, data);
    model.write(img.size - data.length, data);
    const grown = img.size + 300 * KiB + 3;
    await bb.truncate(grown);
    model.truncate(grown);
    await expectContent(bb, model);
    const shrunk = img.size - 100 * KiB + 1;
    await bb.truncate(shrunk);
    model.truncate(shrunk);
    await expectContent(bb, model);
    const end = shownLength(t, shrunk);
    await expectError(() => bb.read(end, 1), ['EIO'], [`offset ${end}`], `${t.name}: read past the shrunk end`);
    // Growing again must not bring the cut-off bytes back.
    await bb.truncate(img.size);
    model.truncate(img.size);
    await expectContent(bb, model);
  } finally {
    await closeAll(bb);
  }
}

async function zeroAndDiscard(t: Target, id: string): Promise<void> {
  const img = await t.fresh(id);
  const bb = await openImage(t, img);
  try {
    const model = new Model(img.initial, t.data === 'drops', t.sectorLength);
    if (t.data === 'read-only') {
      await refusesWrites(t, img, bb, [
        ['write zeroes', () => bb.writeZeroes(1000, 70_000)],
        ['discard', () => bb.discard(128 * KiB, 64 * KiB)],
      ]);
      return;
    }
    const data = pattern(3, 320 * KiB);
    await bb.write(0, data);
    model.write(0, data);
    await bb.writeZeroes(1000, 70_000);
    model.zero(1000, 70_000);
    await bb.writeZeroes(64 * KiB, 64 * KiB, ReqFlag.MAY_UNMAP);
    model.zero(64 * KiB, 64 * KiB);
    await bb.discard(128 * KiB, 64 * KiB + 5);
    model.zero(128 * KiB, 64 * KiB + 5);
    // A buffer of zeros: detect-zeroes turns it into a zero write (the zero detector's hot path).
    await bb.write(200 * KiB + 3, new Uint8Array(10_000));
    model.zero(200 * KiB + 3, 10_000);
    await expectContent(bb, model);
  } finally {
    await closeAll(bb);
  }
}

async function reopenKeepsData(t: Target, id: string): Promise<void> {
  const img = await t.fresh(id);
  const model = new Model(img.initial, t.data === 'drops', t.sectorLength);
  const bb = await openImage(t, img);
  try {
    if (t.data !== 'read-only') {
      for (const [o, n] of [[0, 4096], [100_001, 50_000], [img.size - 5, 5]]) {
        await bb.write(o, pattern(o + 1, n));
        model.write(o, pattern(o + 1, n));
      }
      await bb.writeZeroes(2048, 1024);
      model.zero(2048, 1024);
      await bb.flush();
    } else {
      await bb.flush();
    }
  } finally {
    await closeAll(bb);
  }
  const again = await openImage(t, img);
  try {
    await expectContent(again, model);
  } finally {
    await closeAll(again);
  }
}

async function overlappingWritesInFlight(t: Target, id: string): Promise<void> {
  const img = await t.fresh(id);
  const bb = await openImage(t, img);
  try {
    const model = new Model(img.initial, t.data === 'drops', t.sectorLength);
    // Issued together, never awaited one by one: the later request must win where they overlap.
    const ops: Array<{ run: () => Promise<void>; apply: () => void }> = [];
    const w = (o: number, n: number, seed: number) => {
      const d = pattern(seed, n);
      ops.push({ run: () => bb.write(o, d), apply: () => model.write(o, d) });
    };
    w(0, 96 * KiB, 11);
    w(4 * KiB + 1, 64 * KiB, 12);
    ops.push({ run: () => bb.writeZeroes(8 * KiB, 8 * KiB + 7), apply: () => model.zero(8 * KiB, 8 * KiB + 7) });
    w(10 * KiB, 3, 13);
    w(60 * KiB - 1, 100 * KiB, 14);
    w(0, 1, 15);
    const results = await Promise.allSettled(ops.map((o) => o.run()));
    if (t.data === 'read-only') {
      for (const r of results) {
        check(r.status === 'rejected', `${t.name}: a write on a read-only image succeeded`);
        await expectError(() => Promise.reject(r.reason), READ_ONLY_CODES, [], `${t.name}: write in flight on a read-only image`);
      }
    } else {
      for (const r of results) if (r.status === 'rejected') throw r.reason;
      for (const o of ops) o.apply();
    }
    await expectContent(bb, model);
  } finally {
    await closeAll(bb);
  }
}

async function blockStatusAndAllocation(t: Target, id: string): Promise<void> {
  const img = await t.fresh(id);
  const bb = await openImage(t, img);
  try {
    if (t.data !== 'read-only') {
      await bb.write(0, pattern(5, 256 * KiB));
      await bb.writeZeroes(256 * KiB, 128 * KiB, ReqFlag.MAY_UNMAP);
    }
    const head = await bb.blockStatus(0, 256 * KiB);
    if (typeof t.reportsData === 'string') {
      // Nothing is ever allocated here: the whole device reads as unallocated, without DATA.
      check((head.status & Status.DATA) === 0, `${t.name}: written range reports status ${head.status}, expected no DATA (${t.reportsData})`);
      check(head.pnum === 256 * KiB, `${t.name}: block status answers ${head.pnum} bytes, expected ${256 * KiB}`);
    } else {
      check((head.status & Status.DATA) !== 0, `${t.name}: written range reports status ${head.status}, expected DATA`);
    }
    if (t.data !== 'read-only' && typeof t.reportsData !== 'string') {
      const hole = await bb.blockStatus(256 * KiB, 128 * KiB);
      if (t.sparse) {
        check((hole.status & Status.ZERO) !== 0 && (hole.status & Status.DATA) === 0, `${t.name}: zeroed range reports ${hole.status}, expected ZERO without DATA`);
        check(hole.pnum === 128 * KiB, `${t.name}: zeroed range reports ${hole.pnum} bytes, expected ${128 * KiB}`);
      } else {
        // No hole detection here: every byte is data (the bytes still read as zeros).
        check((hole.status & Status.DATA) !== 0, `${t.name}: zeroed range reports ${hole.status}, expected DATA (no holes)`);
      }
    }
    const eof = await bb.blockStatus(img.size, 0);
    check(eof.pnum === 0, `${t.name}: block status at the end answers ${eof.pnum} bytes`);
    const getAllocated = bb.node.instance.getAllocatedFileSize?.bind(bb.node.instance);
    if (t.allocated === 'none') {
      check(getAllocated === undefined, `${t.name}: has getAllocatedFileSize but declares none`);
    } else {
      check(getAllocated !== undefined, `${t.name}: getAllocatedFileSize is missing`);
      const bytes = await getAllocated();
      if (t.allocated === 'logical') check(bytes === img.size, `${t.name}: allocated size ${bytes}, expected the length ${img.size}`);
      else if (t.allocated === 'zero') check(bytes === 0, `${t.name}: allocated size ${bytes}, expected 0`);
      else check(bytes >= 256 * KiB && bytes <= img.size + 64 * KiB, `${t.name}: allocated size ${bytes} after writing 256 KiB`);
    }
  } finally {
    await closeAll(bb);
  }
}

function injectedFault(code: 'ENOSPC' | 'EIO'): ConformanceCase['run'] {
  return async (t, id) => {
    const inj = t.faults[code];
    if (typeof inj === 'string') throw new Error(`${t.name}: no ${code} injection (${inj})`);
    const img = await t.fresh(id);
    const bb = await openImage(t, img);
    try {
      const model = new Model(img.initial, t.data === 'drops', t.sectorLength);
      await bb.write(4096, pattern(21, 8192));
      model.write(4096, pattern(21, 8192));
      await inj.arm(img);
      try {
        if (inj.hits === 'write') {
          await expectError(() => bb.write(4196, pattern(22, 5000)), [code], [`offset 4196`], `${t.name}: write with ${code} injected`);
        } else {
          const to = img.size + (1 << 20);
          await expectError(() => bb.truncate(to), [code], [`offset ${to}`], `${t.name}: growing with ${code} injected`);
        }
      } finally {
        await inj.disarm(img);
      }
      // The failed request changed nothing, and the image works again.
      await expectContent(bb, model);
      await bb.write(4196, pattern(23, 5000));
      model.write(4196, pattern(23, 5000));
      await expectContent(bb, model);
    } finally {
      await closeAll(bb);
    }
  };
}

async function locking(t: Target, id: string): Promise<void> {
  const img = await t.fresh(id);
  if (t.data === 'read-only') {
    await expectError(() => openImage(t, img, false), ['EROFS'], ['read-only'], `${t.name}: read-write open`);
    const a = await openImage(t, img, true);
    const b = await openImage(t, img, true).catch(async (e: unknown) => {
      await a.close();
      throw e;
    });
    await closeAll(a, b);
    return;
  }
  const a = await openImage(t, img, false);
  let b: BlockBackend | undefined;
  try {
    if (typeof t.locks !== 'string') {
      const refusal = t.locks === true ? { code: 'EBUSY', words: ['in use'] } : t.locks;
      await expectError(() => openImage(t, img, false), [refusal.code], refusal.words, `${t.name}: second read-write open`);
      await a.close();
      // Once the first writer is gone the image opens again.
      b = await openImage(t, img, false);
    } else {
      // Documented: this back end takes no lock (t.locks says why), so a second writer gets in.
      b = await openImage(t, img, false);
    }
  } finally {
    await closeAll(a, b);
  }
}

async function qcow2Workload(t: Target, id: string, mode: HotPaths): Promise<void> {
  const place = await t.qcow2(id);
  if (t.data === 'read-only') {
    const fx = place.fixture;
    check(fx !== undefined, `${t.name}: read-only target without a qcow2 fixture`);
    await expectError(() => BlockBackend.open(t.graph, place.filename, { format: 'qcow2' }), ['EROFS'], ['read-only'], `${t.name}: qcow2 read-write open`);
    const bb = await BlockBackend.open(t.graph, place.filename, { format: 'qcow2', readOnly: true });
    try {
      await expectContent(bb, new Model(fx.content, false));
      await expectError(() => bb.write(0, pattern(1, 512)), READ_ONLY_CODES, [], `${t.name}: qcow2 write on a read-only image`);
    } finally {
      await bb.close();
    }
    await checkHotPaths(mode);
    return;
  }
  const size = 8 << 20;
  if (t.data === 'drops') {
    // null-co keeps nothing, so it cannot hold an image: creation is refused, as qemu-img refuses it
    // ("Protocol driver 'null-co' does not support image creation").
    await expectError(() => createImage(t.graph, 'qcow2', place.filename, { size }), ['ENOTSUP'], [`'${t.name}'`, 'does not support image creation'], `${t.name}: qcow2 create`);
    return;
  }
  await createImage(t.graph, 'qcow2', place.filename, { size });
  const model = new Model(new Uint8Array(size), false);
  const bb = await BlockBackend.open(t.graph, place.filename, { format: 'qcow2' });
  try {
    for (const [o, n, s] of [[0, 4096, 1], [100_001, 300_000, 2], [(5 << 20) + 7, 70_000, 3], [size - 65_537, 65_537, 4]]) {
      await bb.write(o!, pattern(s!, n!));
      model.write(o!, pattern(s!, n!));
    }
    await bb.writeZeroes(131_072, 65_536, ReqFlag.MAY_UNMAP);
    model.zero(131_072, 65_536);
    await bb.flush();
  } finally {
    await bb.close();
  }
  const again = await BlockBackend.open(t.graph, place.filename, { format: 'qcow2' });
  try {
    check(again.node.driver.name === 'qcow2', `${t.name}: reopened as ${again.node.driver.name}`);
    await expectContent(again, model);
    const st = await again.blockStatus(131_072, 65_536);
    check((st.status & Status.ZERO) !== 0, `${t.name}: qcow2 zeroed cluster reports ${st.status}, expected ZERO`);
  } finally {
    await again.close();
  }
  await checkHotPaths(mode);
}

/** Every case, in the order they run. */
export const CASES: readonly ConformanceCase[] = [
  { name: 'unaligned read after write', run: unalignedReadAfterWrite },
  { name: 'reads past EOF fail with EIO naming the offset', run: readsPastEof },
  { name: 'truncate grows with zeros and shrinks', run: truncateGrowShrink },
  { name: 'zero writes and discard read back as zeros', run: zeroAndDiscard },
  { name: 'flush, close and reopen keeps the data', run: reopenKeepsData },
  { name: 'overlapping writes in flight: last issued wins', run: overlappingWritesInFlight },
  { name: 'block status and allocated size', run: blockStatusAndAllocation },
  { name: 'injected ENOSPC', run: injectedFault('ENOSPC') },
  { name: 'injected EIO', run: injectedFault('EIO') },
  { name: 'a second writer gets EBUSY', run: locking },
  { name: 'qcow2 create, write, reopen, read', run: qcow2Workload },
];

/** null when the case runs on the target; otherwise why it cannot (the target's documented reason). */
export function applicable(c: ConformanceCase, t: Target): string | null {
  if (c.name === 'injected ENOSPC' && typeof t.faults.ENOSPC === 'string') return t.faults.ENOSPC;
  if (c.name === 'injected EIO' && typeof t.faults.EIO === 'string') return t.faults.EIO;
  return null;
}

/** The outcome of one case on one target. */
export interface CaseResult {
  target: string;
  mode: HotPaths;
  case: string;
  outcome: 'pass' | 'fail' | 'n/a';
  /** The failure, or why the case does not apply. */
  detail?: string;
  ms: number;
}

/**
 * A qcow2 image made in memory (4 MiB, data in three places, one zeroed cluster) and its
 * guest content: the fixture of read-only targets that have no qemu-img-made one.
 */
export async function qcow2Fixture(t: Pick<Target, 'graph'>, name: string): Promise<{ bytes: Uint8Array; content: Uint8Array }> {
  const size = 4 << 20;
  const content = new Uint8Array(size);
  const filename = `memory:${name}`;
  await createImage(t.graph, 'qcow2', filename, { size });
  const bb = await BlockBackend.open(t.graph, filename, { format: 'qcow2' });
  try {
    for (const [o, n, s] of [[0, 70_000, 31], [1_000_003, 200_000, 32], [size - 4096, 4096, 33]] as const) {
      await bb.write(o, pattern(s, n));
      content.set(pattern(s, n), o);
    }
    await bb.writeZeroes(65_536, 65_536);
    content.fill(0, 65_536, 131_072);
  } finally {
    await bb.close();
  }
  const file = await BlockBackend.open(t.graph, { driver: 'memory', filename }, { readOnly: true });
  try {
    return { bytes: await file.read(0, file.length), content };
  } finally {
    await file.close();
  }
}

/** Runs every case on a target and collects the outcomes (for the browser worker). */
export async function runAll(t: Target, mode: HotPaths, now: () => number): Promise<CaseResult[]> {
  const out: CaseResult[] = [];
  for (const [i, c] of CASES.entries()) {
    const start = now();
    const reason = applicable(c, t);
    if (reason !== null) {
      out.push({ target: t.name, mode, case: c.name, outcome: 'n/a', detail: reason, ms: 0 });
      continue;
    }
    try {
      await c.run(t, `${mode}-${i}`, mode);
      out.push({ target: t.name, mode, case: c.name, outcome: 'pass', ms: Math.round(now() - start) });
    } catch (e) {
      const err = e as { code?: string; message?: string };
      out.push({ target: t.name, mode, case: c.name, outcome: 'fail', detail: `${err.code ? `${err.code}: ` : ''}${err.message ?? String(e)}`, ms: Math.round(now() - start) });
    }
  }
  return out;
}
