/**
 * The http back end's block cache over a fake fetch (Node's Response): byte
 * exactness for scattered and sequential reads, large readahead requests for
 * sequential streams, and clear errors for servers that ignore Range or
 * compress.
 */
import { describe, it, expect } from 'vitest';
import { HttpFile, HTTP_DEFAULTS } from '../../src/protocols/http.js';
import { BlockError } from '../../src/core/errors.js';

const SIZE = 20 * 1024 * 1024 + 123;
const data = new Uint8Array(SIZE).map((_, i) => (i * 7 + (i >>> 11)) & 0xff);

function fakeFetch(mode: 'range' | 'ignore' | 'gzip' = 'range') {
  const ranges: Array<[number, number]> = [];
  const f = (async (_url: string, init?: RequestInit) => {
    const h = new Headers(init?.headers);
    const m = /^bytes=(\d+)-(\d+)$/.exec(h.get('range') ?? '');
    if (mode === 'ignore' || !m) return new Response(data.slice(), { status: 200 });
    const a = Number(m[1]);
    const b = Math.min(Number(m[2]), SIZE - 1);
    ranges.push([a, b]);
    const headers: Record<string, string> = { 'content-range': `bytes ${a}-${b}/${SIZE}` };
    if (mode === 'gzip') headers['content-encoding'] = 'gzip';
    // Deliver in odd-sized pieces, as a network would.
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        for (let p = a; p <= b; p += 70_001) c.enqueue(data.slice(p, Math.min(b + 1, p + 70_001)));
        c.close();
      },
    });
    return new Response(body, { status: 206, headers });
  }) as typeof fetch;
  return { f, ranges };
}

describe('HttpFile', () => {
  it('reads scattered ranges byte-exact, including the unaligned tail', async () => {
    const { f } = fakeFetch();
    const file = new HttpFile('http://x/img', SIZE, { ...HTTP_DEFAULTS }, f);
    for (const [off, len] of [[0, 1], [262_143, 2], [5_000_000, 1_000_000], [SIZE - 10, 10], [1234, 600_000]] as const) {
      const buf = new Uint8Array(len);
      await file.read(off, buf);
      expect(Buffer.compare(buf, data.subarray(off, off + len)), `${off}+${len}`).toBe(0);
    }
    const past = new Uint8Array(100).fill(9);
    await file.read(SIZE - 50, past);
    expect(Buffer.compare(past.subarray(0, 50), data.subarray(SIZE - 50))).toBe(0);
    expect(past.subarray(50).every((b) => b === 0)).toBe(true);
  });

  it('streams sequential reads with few, large range requests', async () => {
    const { f, ranges } = fakeFetch();
    const file = new HttpFile('http://x/img', SIZE, { ...HTTP_DEFAULTS }, f);
    const buf = new Uint8Array(1 << 20);
    for (let pos = 0; pos < SIZE; pos += buf.length) {
      const n = Math.min(buf.length, SIZE - pos);
      await file.read(pos, buf, n);
      expect(Buffer.compare(buf.subarray(0, n), data.subarray(pos, pos + n))).toBe(0);
    }
    expect(ranges.length).toBeLessThan(12);
    const fetched = ranges.reduce((s, [a, b]) => s + b - a + 1, 0);
    expect(fetched).toBe(SIZE);
  });

  it('says so when the server ignores Range or compresses', async () => {
    for (const [mode, text] of [['ignore', 'ignores Range'], ['gzip', 'Content-Encoding']] as const) {
      const file = new HttpFile('http://x/img', SIZE, { ...HTTP_DEFAULTS }, fakeFetch(mode).f);
      const err = await file.read(0, new Uint8Array(4096)).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(BlockError);
      expect((err as BlockError).code).toBe('EIO');
      expect((err as BlockError).message).toContain(text);
    }
  });
});
