/**
 * The request path against back ends with request alignment 1, 512 and 4096:
 * random reads, writes and zero writes (byte-unaligned included), several in
 * flight at once, compared with a plain byte-array model. The strict protocol
 * records every request that breaks the alignment / max-transfer promise.
 */
import { describe, it, expect } from 'vitest';
import { BlockBackend, ReqFlag } from '../../src/node.js';
import { memoryGraph, prng, strictProtocol, type StrictLog } from './helpers.js';

const OPS_PER_ALIGNMENT = 10_000;

for (const align of [1, 512, 4096]) {
  describe(`request alignment ${align}`, () => {
    it(`matches the byte-array model over ${OPS_PER_ALIGNMENT} random requests`, async () => {
      const log: StrictLog = { violations: [], reads: 0, writes: 0, maxConcurrent: 0 };
      const { graph } = memoryGraph([strictProtocol(log, align)]);
      const size = 256 * 1024 + (align === 1 ? 333 : 0);
      const maxTransfer = align === 1 ? 0 : align * 8;
      const bb = await BlockBackend.open(graph, {
        driver: 'raw',
        file: { driver: 'strict', size, align, 'max-transfer': maxTransfer },
      });
      const model = new Uint8Array(size);
      const rnd = prng(align * 7 + 3);
      const randInt = (n: number) => Math.floor(rnd() * n);
      const pickRange = () => {
        const kind = rnd();
        let len: number;
        if (kind < 0.4) len = 1 + randInt(64);
        else if (kind < 0.8) len = 1 + randInt(3 * Math.max(align, 512));
        else len = 1 + randInt(64 * 1024);
        len = Math.min(len, size);
        const offset = randInt(size - len + 1);
        return { offset, len };
      };
      let done = 0;
      let fill = 1;
      while (done < OPS_PER_ALIGNMENT) {
        // A batch of concurrent writes / zero writes; overlapping ones apply in submission order.
        const batch: Promise<void>[] = [];
        const n = 1 + randInt(6);
        for (let i = 0; i < n; i++, done++) {
          const { offset, len } = pickRange();
          if (rnd() < 0.25) {
            batch.push(bb.writeZeroes(offset, len, rnd() < 0.5 ? ReqFlag.MAY_UNMAP : 0));
            model.fill(0, offset, offset + len);
          } else {
            const data = new Uint8Array(len);
            const base = fill++ & 0xff;
            for (let k = 0; k < len; k++) data[k] = (base + k * 31) & 0xff;
            batch.push(bb.write(offset, data));
            model.set(data, offset);
          }
        }
        await Promise.all(batch);
        // A batch of concurrent reads, checked against the model.
        const reads: Promise<void>[] = [];
        const m = 1 + randInt(6);
        for (let i = 0; i < m; i++, done++) {
          const { offset, len } = pickRange();
          reads.push(
            bb.read(offset, len).then((got) => {
              const want = model.subarray(offset, offset + len);
              if (!Buffer.from(got).equals(Buffer.from(want))) {
                let at = 0;
                while (got[at] === want[at]) at++;
                throw new Error(`read ${offset}+${len}: first difference at ${offset + at}: got ${got[at]}, want ${want[at]}`);
              }
            }),
          );
        }
        await Promise.all(reads);
      }
      expect(log.violations.slice(0, 5)).toEqual([]);
      expect(log.maxConcurrent).toBeGreaterThan(1);
      // The whole image equals the model at the end.
      expect(Buffer.from(await bb.read(0, size)).equals(Buffer.from(model))).toBe(true);
      await bb.close();
    });

    it('never tears concurrent unaligned writes that share an aligned block', async () => {
      const log: StrictLog = { violations: [], reads: 0, writes: 0, maxConcurrent: 0 };
      const { graph } = memoryGraph([strictProtocol(log, align + 11)]);
      const bb = await BlockBackend.open(graph, { driver: 'raw', file: { driver: 'strict', size: 65536, align } });
      const rnd = prng(align);
      for (let round = 0; round < 200; round++) {
        const model = await bb.read(0, 3 * Math.max(align, 16));
        const writes: Promise<void>[] = [];
        // Many small writes into the same one or two blocks, some overlapping.
        for (let i = 0; i < 8; i++) {
          const len = 1 + Math.floor(rnd() * 20);
          const offset = Math.floor(rnd() * (model.length - len));
          const data = new Uint8Array(len).fill(round * 8 + i + 1);
          writes.push(bb.write(offset, data));
          model.set(data, offset);
        }
        await Promise.all(writes);
        expect(Buffer.from(await bb.read(0, model.length)).equals(Buffer.from(model))).toBe(true);
      }
      expect(log.violations).toEqual([]);
      await bb.close();
    });
  });
}
