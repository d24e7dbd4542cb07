/**
 * Test fixtures for the core: a memory graph, a protocol that enforces the
 * request-path guarantees it is promised, and a stub format / filter.
 */
import { expect } from 'vitest';
import {
  BlockError,
  BlockGraph,
  MemoryStorage,
  createMemoryDriver,
  nullDriver,
  rawDriver,
  type BlockDriver,
  type DriverInstance,
  type BlockNode,
  type OptionReader,
  ROLE_IMAGE,
  ROLE_FILTERED_PRIMARY,
  type BdrvChild,
  type BlockLimits,
  Status,
} from '../../src/node.js';

export { prng } from '../prng.js';
import { prng } from '../prng.js';

/** Records the requests a strict protocol saw. */
export interface StrictLog {
  violations: string[];
  reads: number;
  writes: number;
  maxConcurrent: number;
}

/**
 * A protocol over a Uint8Array that declares `align` / `maxTransfer` and
 * records every request that breaks the contract, and that completes each
 * request after a random number of microtask turns (so requests interleave).
 */
export function strictProtocol(log: StrictLog, seed = 1): BlockDriver {
  const rnd = prng(seed);
  return {
    name: 'strict',
    kind: 'protocol',
    protocolPrefixes: ['strict:'],
    parseFilename: () => ({}),
    async open(node: BlockNode, options: OptionReader): Promise<DriverInstance> {
      const size = options.size('size', 1 << 20);
      const align = options.uint('align', 1);
      const maxTransfer = options.uint('max-transfer', 0);
      options.string('filename');
      const data = new Uint8Array(size);
      let inFlight = 0;
      const check = (what: string, offset: number, bytes: number) => {
        if (offset % align || bytes % align) log.violations.push(`${what} ${offset}+${bytes} not aligned to ${align}`);
        if (maxTransfer && bytes > maxTransfer) log.violations.push(`${what} of ${bytes} > max ${maxTransfer}`);
        if (bytes <= 0) log.violations.push(`${what} of ${bytes} bytes`);
        if (offset + bytes > Math.ceil(data.length / align) * align && what !== 'write') log.violations.push(`${what} past end`);
      };
      const delay = async () => {
        inFlight++;
        log.maxConcurrent = Math.max(log.maxConcurrent, inFlight);
        const turns = Math.floor(rnd() * 4);
        for (let i = 0; i < turns; i++) await Promise.resolve();
        inFlight--;
      };
      return {
        getLength: () => data.length,
        refreshLimits(l: BlockLimits) {
          l.requestAlignment = align;
          l.maxTransfer = maxTransfer;
        },
        async preadv(offset, bytes, buf) {
          check('read', offset, bytes);
          log.reads++;
          await delay();
          buf.set(data.subarray(offset, offset + bytes));
        },
        async pwritev(offset, bytes, buf) {
          check('write', offset, bytes);
          if (node.readOnly) log.violations.push('write on read-only node');
          log.writes++;
          const copy = buf.slice(0, bytes);
          await delay();
          data.set(copy, offset);
        },
      };
    },
  };
}

/**
 * A stub format driver: `file` child as image (metadata) role, optional backing,
 * reads and writes passed to the file. Enough to build graphs for permission tests.
 */
export const stubFormat: BlockDriver = {
  name: 'stubfmt',
  kind: 'format',
  supportsBacking: true,
  async open(node: BlockNode, options: OptionReader): Promise<DriverInstance> {
    const failReopen = options.bool('fail-reopen', false);
    const file = (await node.openChild(options, 'file', ROLE_IMAGE))!;
    // Holes of the file are "unallocated" and read from the backing file (a toy COW format).
    const allocated = async (o: number, b: number) => {
      const st = await file.blockStatus(false, o, b);
      return { data: (st.status & Status.DATA) !== 0, pnum: Math.max(1, st.pnum) };
    };
    return {
      getLength: () => file.length,
      async preadv(o, b, buf, f) {
        for (let done = 0; done < b; ) {
          const a = await allocated(o + done, b - done);
          const n = Math.min(a.pnum, b - done);
          const part = buf.subarray(done, done + n);
          if (a.data) await file.preadv(o + done, n, part, f);
          else if (node.backing) await node.backing.preadv(o + done, n, part, f);
          else part.fill(0);
          done += n;
        }
      },
      pwritev: (o, b, buf, f) => file.pwritev(o, b, buf, f),
      async blockStatus(_wantZero, o, b) {
        const a = await allocated(o, b);
        return { status: a.data ? Status.DATA : 0, pnum: a.pnum };
      },
      async reopenPrepare() {
        if (failReopen) throw new BlockError('EIO', `stubfmt '${node.nodeName}' refuses to reopen`);
      },
    };
  },
};

/** A stub filter: passes everything to `file`. */
export const stubFilter: BlockDriver = {
  name: 'stubfilter',
  kind: 'filter',
  async open(node: BlockNode, options: OptionReader): Promise<DriverInstance> {
    const file = (await node.openChild(options, 'file', ROLE_FILTERED_PRIMARY)) as BdrvChild;
    return { getLength: () => file.length };
  },
};

/** A memory graph with the core drivers and the stubs. */
export function memoryGraph(extra: BlockDriver[] = []) {
  const storage = new MemoryStorage();
  const graph = new BlockGraph([createMemoryDriver(storage), nullDriver, rawDriver, stubFormat, stubFilter, ...extra], 'memory');
  return { graph, storage };
}

/** Asserts that `p` rejects with a BlockError of `code` whose message matches `re`. */
export async function expectBlockError(p: Promise<unknown> | (() => unknown), code: string, re?: RegExp): Promise<BlockError> {
  let err: unknown;
  try {
    if (typeof p === 'function') await p();
    else await p;
  } catch (e) {
    err = e;
  }
  expect(err, 'expected a BlockError').toBeInstanceOf(BlockError);
  const be = err as BlockError;
  expect(be.code).toBe(code);
  if (re) expect(be.message).toMatch(re);
  return be;
}
