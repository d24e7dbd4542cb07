/**
 * The throttle filter's rates on virtual time (test/jobs/virtual-timers.ts):
 * timers fire in due order and the clock jumps to each one, so "5 seconds"
 * of throttled I/O run in milliseconds and never depend on the machine.
 *
 *   bb ── throttle(tg0) ──file──> raw ──file──> memory:a
 *   bb2 ─ throttle(tg0) ──file──> raw ──file──> memory:b     (shared group)
 *
 * The expected times follow from QEMU's leaky bucket: without a burst rate a
 * bucket holds a tenth of a second of its rate before requests wait.
 */
import { describe, it, expect } from 'vitest';
import { BlockBackend } from '../../src/core/backend.js';
import { BlockGraph } from '../../src/core/graph.js';
import { drained } from '../../src/core/drain.js';
import { MemoryStorage, createMemoryDriver } from '../../src/protocols/memory.js';
import { rawDriver } from '../../src/formats/raw/raw.js';
import { throttleDriver } from '../../src/filters/throttle.js';
import { throttleGroups } from '../../src/filters/throttle-group.js';
import type { ThrottleLimits } from '../../src/filters/throttle-config.js';
import { VirtualTimers } from '../jobs/virtual-timers.js';

const MiB = 1 << 20;
const SIZE = 64 * MiB;

interface Setup {
  timers: VirtualTimers;
  graph: BlockGraph;
  storage: MemoryStorage;
  open(name: string, group?: string): Promise<BlockBackend>;
}

/** A graph whose throttle groups run on virtual time, with group tg0 made from `limits`. */
function setup(limits: ThrottleLimits): Setup {
  const timers = new VirtualTimers();
  const storage = new MemoryStorage();
  const graph = new BlockGraph([createMemoryDriver(storage), rawDriver, throttleDriver], 'memory');
  throttleGroups(graph).clock = timers;
  throttleGroups(graph).create('tg0', limits);
  const open = async (name: string, group = 'tg0') => {
    storage.create(name, SIZE);
    return BlockBackend.open(graph, { driver: 'throttle', 'throttle-group': group, file: { driver: 'raw', file: { driver: 'memory', filename: name } } });
  };
  return { timers, graph, storage, open };
}

/** Writes `count` requests of `chunk` bytes one after the other; the virtual time each one completed at (seconds). */
async function sequentialWrites(s: Setup, bb: BlockBackend, count: number, chunk: number, fill = 1): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < count; i++) {
    await bb.write(i * chunk, new Uint8Array(chunk).fill(fill));
    times.push(s.timers.now() / 1000);
  }
  return times;
}

/** Runs the workloads to their end on virtual time. */
async function run<T>(s: Setup, ...work: Array<Promise<T>>): Promise<T[]> {
  let done = 0;
  const all = work.map((p) => p.finally(() => done++));
  expect(await s.timers.runUntil(() => done === work.length)).toBe(true);
  return Promise.all(all);
}

describe('throttle filter on virtual time', () => {
  it('a node limited to 10 MiB/s moves 50 MiB in 5 s (± 10 %)', async () => {
    const s = setup({ 'bps-total': 10 * MiB });
    const bb = await s.open('a');
    const [times] = await run(s, sequentialWrites(s, bb, 50, MiB));
    const end = times![49]!;
    expect(end).toBeGreaterThanOrEqual(4.5);
    expect(end).toBeLessThanOrEqual(5.5);
    // The rate holds throughout: every 10 MiB take about a second.
    for (let k = 10; k < 50; k += 10) expect(times![k + 9]! - times![k - 1]!).toBeCloseTo(1, 1);
    expect(s.storage.get('a')!.toBytes().subarray(0, 50 * MiB).every((b) => b === 1)).toBe(true);
    await bb.close();
  });

  it('requests queued all at once go at the same rate, in order', async () => {
    const s = setup({ 'bps-write': 10 * MiB });
    const bb = await s.open('a');
    const order: number[] = [];
    const writes = Array.from({ length: 50 }, (_, i) => bb.write(i * MiB, new Uint8Array(MiB).fill(i)).then(() => void order.push(i)));
    await run(s, ...writes);
    expect(s.timers.now() / 1000).toBeGreaterThanOrEqual(4.5);
    expect(s.timers.now() / 1000).toBeLessThanOrEqual(5.5);
    expect(order).toEqual([...order].sort((a, b) => a - b));
    await bb.close();
  });

  it('reads are not held by a write limit, writes are by a total limit', async () => {
    const s = setup({ 'bps-write': MiB });
    const bb = await s.open('a');
    const reads = (async () => {
      for (let i = 0; i < 20; i++) await bb.read(i * MiB, MiB);
      return s.timers.now();
    })();
    const [readEnd] = await run(s, reads);
    expect(readEnd).toBe(0);
    const [times] = await run(s, sequentialWrites(s, bb, 5, MiB));
    // 1 MiB/s with 0.1 MiB of slack: the fifth MiB starts after about 3.9 s.
    expect(times![4]!).toBeGreaterThan(3.5);
    await bb.close();
  });

  it('a burst rate lets a burst through at that rate, then the average rate holds', async () => {
    // 1 MiB/s on average, bursts at 10 MiB/s for up to 2 s (a 20 MiB bucket).
    const s = setup({ 'bps-total': MiB, 'bps-total-max': 10 * MiB, 'bps-total-max-length': 2 });
    const bb = await s.open('a');
    const [times] = await run(s, sequentialWrites(s, bb, 30, MiB));
    // The first 20 MiB go at the burst rate: about 2 s, far from the 20 s of the average.
    expect(times![19]!).toBeGreaterThan(1.5);
    expect(times![19]!).toBeLessThan(2.2);
    // Once the bucket is full, 1 MiB per second.
    const tail = (times![29]! - times![24]!) / 5;
    expect(tail).toBeGreaterThan(0.9);
    expect(tail).toBeLessThan(1.1);
    await bb.close();
  });

  it('after a pause the bucket has leaked and a new burst goes through', async () => {
    const s = setup({ 'bps-total': MiB, 'bps-total-max': 10 * MiB, 'bps-total-max-length': 2 });
    const bb = await s.open('a');
    await run(s, sequentialWrites(s, bb, 25, MiB));
    // 30 s of idleness empty the bucket (it leaks at 1 MiB/s).
    let woke = false;
    s.timers.setTimeout(() => (woke = true), 30_000);
    expect(await s.timers.runUntil(() => woke)).toBe(true);
    const start = s.timers.now() / 1000;
    const [times] = await run(s, sequentialWrites(s, bb, 15, MiB));
    expect(times![14]! - start).toBeLessThan(1.6);
    await bb.close();
  });

  it('two nodes in one group share its limit, round robin', async () => {
    const s = setup({ 'bps-total': 10 * MiB });
    const a = await s.open('a');
    const b = await s.open('b');
    const [ta, tb] = await run(s, sequentialWrites(s, a, 25, MiB, 1), sequentialWrites(s, b, 25, MiB, 2));
    // Together 10 MiB/s: 50 MiB in about 5 s, and neither node finishes early.
    const end = Math.max(ta![24]!, tb![24]!);
    expect(end).toBeGreaterThanOrEqual(4.5);
    expect(end).toBeLessThanOrEqual(5.5);
    expect(Math.abs(ta![24]! - tb![24]!)).toBeLessThanOrEqual(0.3);
    // At any time the two have done about as much.
    for (let k = 0; k < 25; k++) expect(Math.abs(ta![k]! - tb![k]!)).toBeLessThanOrEqual(0.3);
    await a.close();
    await b.close();
  });

  it('a node with a deep queue does not starve one that sends a request at a time', async () => {
    const s = setup({ 'bps-total': 10 * MiB });
    const deep = await s.open('a');
    const single = await s.open('b');
    const queued = Array.from({ length: 40 }, (_, i) => deep.write(i * MiB, new Uint8Array(MiB).fill(3)).then(() => s.timers.now() / 1000));
    const [singleTimes] = (await run<unknown>(s, sequentialWrites(s, single, 20, MiB, 4), ...queued)) as [number[]];
    // The lone writer gets every other turn: 20 MiB by about 4 s, not after the other's 40 MiB.
    expect(singleTimes[19]!).toBeLessThan(4.5);
    expect(s.timers.now() / 1000).toBeGreaterThan(5.4);
    await deep.close();
    await single.close();
  });

  it('nodes in different groups do not share limits', async () => {
    const s = setup({ 'bps-total': 10 * MiB });
    throttleGroups(s.graph).create('tg1', { 'bps-total': 10 * MiB });
    const a = await s.open('a', 'tg0');
    const b = await s.open('b', 'tg1');
    const [ta, tb] = await run(s, sequentialWrites(s, a, 25, MiB), sequentialWrites(s, b, 25, MiB));
    expect(ta![24]!).toBeLessThan(2.6);
    expect(tb![24]!).toBeLessThan(2.6);
    await a.close();
    await b.close();
  });

  it('a reopen moves a node to another group, whose limits then apply', async () => {
    const s = setup({ 'bps-total': MiB });
    const fast = throttleGroups(s.graph).create('fast', { 'bps-total': 10 * MiB });
    const bb = await s.open('a');
    await expect(s.graph.reopen([{ node: bb.node, readOnly: false, options: { 'throttle-group': 'nope' } }])).rejects.toThrow("Throttle group 'nope' does not exist");
    await s.graph.reopen([{ node: bb.node, readOnly: false, options: { 'throttle-group': 'fast' } }]);
    expect(fast.memberCount).toBe(1);
    expect(throttleGroups(s.graph).get('tg0')!.memberCount).toBe(0);
    const [times] = await run(s, sequentialWrites(s, bb, 20, MiB));
    // 10 MiB/s: 20 MiB in about 2 s (it would take about 19 s in tg0).
    expect(times![19]!).toBeGreaterThan(1.6);
    expect(times![19]!).toBeLessThan(2.2);
    expect(() => throttleGroups(s.graph).delete('fast')).toThrow("object 'fast' is in use, can not be deleted");
    await bb.close();
    throttleGroups(s.graph).delete('fast');
    expect(throttleGroups(s.graph).names()).toEqual(['tg0']);
  });

  it('opening needs a group that exists', async () => {
    const s = setup({});
    s.storage.create('x', MiB);
    const file = { driver: 'raw', file: { driver: 'memory', filename: 'x' } };
    await expect(BlockBackend.open(s.graph, { driver: 'throttle', file })).rejects.toThrow('Please specify a throttle group');
    await expect(BlockBackend.open(s.graph, { driver: 'throttle', 'throttle-group': 'tg7', file })).rejects.toThrow("Throttle group 'tg7' does not exist");
    // Nothing stays open after the failures.
    expect(s.graph.listNodes()).toEqual([]);
  });

  it('iops-size counts a large request as several operations', async () => {
    const KiB = 1024;
    const timeFor = async (limits: ThrottleLimits, chunk: number) => {
      const s = setup(limits);
      const bb = await s.open('a');
      const [times] = await run(s, sequentialWrites(s, bb, 20, chunk));
      await bb.close();
      return times![19]!;
    };
    // 10 operations per second with a tenth of a second of slack: 20 requests take about 1.8 s.
    const small = await timeFor({ 'iops-total': 10, 'iops-size': 4 * KiB }, 4 * KiB);
    const plain = await timeFor({ 'iops-total': 10 }, 16 * KiB);
    const sized = await timeFor({ 'iops-total': 10, 'iops-size': 4 * KiB }, 16 * KiB);
    expect(small).toBeCloseTo(1.8, 1);
    expect(plain).toBeCloseTo(1.8, 1);
    // A 16 KiB request is four 4 KiB operations: about four times as long.
    expect(sized).toBeGreaterThan(7);
    expect(sized).toBeLessThan(8);
  });

  it('a drain lets the queued requests go without waiting for the limit', async () => {
    const s = setup({ 'bps-total': MiB });
    const bb = await s.open('a');
    const writes = Array.from({ length: 8 }, (_, i) => bb.write(i * MiB, new Uint8Array(MiB).fill(7)));
    await run(s, drained(bb.node, async () => undefined), ...writes);
    // Drained at once: no timer had to fire.
    expect(s.timers.now()).toBe(0);
    expect(s.storage.get('a')!.toBytes().subarray(0, 8 * MiB).every((b) => b === 7)).toBe(true);
    // After the drained section the limit holds again.
    const [times] = await run(s, sequentialWrites(s, bb, 2, MiB));
    expect(times![1]!).toBeGreaterThan(8);
    await bb.close();
    expect(throttleGroups(s.graph).get('tg0')!.memberCount).toBe(0);
  });

  it('new limits take effect at once, for the requests waiting too', async () => {
    const s = setup({ 'bps-total': MiB });
    const bb = await s.open('a');
    const group = throttleGroups(s.graph).get('tg0')!;
    const first = sequentialWrites(s, bb, 5, MiB);
    // At 2 s, the rate goes up tenfold.
    s.timers.setTimeout(() => group.setLimits({ 'bps-total': 10 * MiB }), 2000);
    const [times] = await run(s, first);
    expect(times![4]!).toBeLessThan(2.5);
    expect(group.limits['bps-total']).toBe(10 * MiB);
    expect(() => group.setLimits({ 'bps-read': 5 })).toThrow('bps/iops/max total values and read/write values cannot be used at the same time');
    await bb.close();
  });
});
