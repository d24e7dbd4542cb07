/**
 * A seeded random guest for job tests: writes, zero writes, cluster-aligned
 * discards and flushes on a BlockBackend, mirrored into a byte model of what
 * the guest must read back. Runs until told to stop, so it overlaps a job.
 */
import type { BlockBackend } from '../../src/core/backend.js';
import { ReqFlag } from '../../src/core/driver.js';
import { prng } from '../prng.js';

export interface GuestWorkload {
  /** Resolves when the guest has stopped after {@link stop}; rejects with a failed request. */
  done: Promise<number>;
  stop(): void;
}

/**
 * Starts the guest. `model` holds the disk's content before the first
 * request and is updated as requests complete. Discards cover whole
 * `cluster`s and read back as zeros (qcow2 v3 with or without a backing file),
 * or as before where a job's filter dropped them.
 */
export function startGuest(bb: BlockBackend, model: Uint8Array, seed: number, cluster = 65536, log?: string[]): GuestWorkload {
  const float = prng(seed);
  const rnd = (): number => Math.floor(float() * 0x100000000);
  let stopped = false;
  const size = model.length;
  const run = async (): Promise<number> => {
    let ops = 0;
    while (!stopped) {
      const kind = rnd() % 10;
      if (kind < 5) {
        const len = 512 * (1 + (rnd() % 128));
        const off = 512 * (rnd() % ((size - len) / 512));
        const data = new Uint8Array(len).fill(1 + (rnd() % 250));
        log?.push(`write ${off} ${len} ${data[0]}`);
        await bb.write(off, data);
        model.set(data, off);
      } else if (kind < 7) {
        const len = 512 * (1 + (rnd() % 256));
        const off = 512 * (rnd() % ((size - len) / 512));
        const unmap = rnd() % 2 === 1;
        log?.push(`zero ${off} ${len} ${unmap}`);
        await bb.writeZeroes(off, len, unmap ? ReqFlag.MAY_UNMAP : 0);
        model.fill(0, off, off + len);
      } else if (kind < 8) {
        const clusters = size / cluster;
        const first = rnd() % clusters;
        const count = 1 + (rnd() % Math.min(4, clusters - first));
        log?.push(`discard ${first * cluster} ${count * cluster}`);
        await bb.discard(first * cluster, count * cluster);
        // A discard either takes effect (zeros) or is dropped (the old data stays): QEMU's job
        // filters are opened without discard=unmap, so one that reaches a filter is dropped.
        // Which one happened is read back; anything else is an error.
        const got = await bb.read(first * cluster, count * cluster);
        const before = model.subarray(first * cluster, (first + count) * cluster);
        const zeroed = got.every((b) => b === 0);
        const kept = got.every((b, i) => b === before[i]);
        if (!zeroed && !kept) throw new Error(`guest discard at ${first * cluster}: the range reads neither as zeros nor as its old data`);
        if (zeroed) before.fill(0);
      } else if (kind < 9) {
        await bb.flush();
      } else {
        const len = 4096;
        const off = 4096 * (rnd() % (size / 4096));
        const got = await bb.read(off, len);
        const want = model.subarray(off, off + len);
        for (let i = 0; i < len; i++) {
          if (got[i] !== want[i]) throw new Error(`guest read at ${off + i}: got ${got[i]}, expected ${want[i]}`);
        }
      }
      ops++;
      // Let the job run between guest requests.
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    return ops;
  };
  const done = run();
  return {
    done,
    stop: () => {
      stopped = true;
    },
  };
}
