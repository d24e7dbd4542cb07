/**
 * The NBD server without sockets: a transport made of two callbacks (what a
 * page would build over a WebSocket or MessagePort) carries a handshake, a
 * write, a structured read with a hole, and a dirty-bitmap block status on a
 * memory image; and a client that sends garbage is dropped with the reason.
 * A transport that hands out unzeroed read buffers and takes a reply's parts
 * in one call gets the same bytes.
 */
import { describe, expect, it } from 'vitest';
import { BlockBackend, NbdServer, createExport } from '../../src/node.js';
import { addDirtyBitmap } from '../../src/core/dirty-bitmap.js';
import type { NbdConnectionEnd } from '../../src/node.js';
import type { NbdTransport } from '../../src/export/nbd/index.js';
import { memoryGraph } from '../core/helpers.js';

/** A scripted peer: bytes from the server are collected, reads take exact counts. */
function pipe(server: NbdServer, extras: { allocate?: NbdTransport['allocate']; onParts?: (sizes: number[]) => void } = {}) {
  let got = Buffer.alloc(0);
  let closed = false;
  const write = async (d: Uint8Array): Promise<void> => void (got = Buffer.concat([got, Buffer.from(d)]));
  const transport: NbdTransport = { write, close: () => void (closed = true) };
  if (extras.allocate) transport.allocate = extras.allocate;
  const { onParts } = extras;
  if (onParts) {
    transport.writeParts = async (parts) => {
      onParts(parts.map((p) => p.length));
      for (const p of parts) await write(p);
    };
  }
  const session = server.connect(transport);
  const take = async (n: number): Promise<Buffer> => {
    for (let i = 0; i < 500 && got.length < n; i++) await new Promise((r) => setTimeout(r, 2));
    if (got.length < n) throw new Error(`wanted ${n} bytes, have ${got.length}`);
    const out = got.subarray(0, n);
    got = got.subarray(n);
    return Buffer.from(out);
  };
  return { session, take, isClosed: () => closed, send: (b: Buffer) => session.receive(new Uint8Array(b)) };
}

function option(opt: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(16);
  h.writeBigUInt64BE(0x49484156454f5054n, 0);
  h.writeUInt32BE(opt, 8);
  h.writeUInt32BE(payload.length, 12);
  return Buffer.concat([h, payload]);
}

function request(type: number, offset: number, length: number, payload?: Buffer): Buffer {
  const b = Buffer.alloc(28);
  b.writeUInt32BE(0x25609513, 0);
  b.writeUInt16BE(type, 6);
  b.writeBigUInt64BE(42n, 8);
  b.writeBigUInt64BE(BigInt(offset), 16);
  b.writeUInt32BE(length, 24);
  return payload ? Buffer.concat([b, payload]) : b;
}

/** Reads option replies until ACK or an error; returns their types. */
async function replies(take: (n: number) => Promise<Buffer>): Promise<number[]> {
  const types: number[] = [];
  for (;;) {
    const h = await take(20);
    await take(h.readUInt32BE(16));
    const t = h.readUInt32BE(12);
    types.push(t);
    if (t === 1 || t >= 0x80000000) return types;
  }
}

describe('NBD server over an in-memory transport', () => {
  it('serves a memory image: handshake, write, read, bitmap status', async () => {
    const { graph, storage } = memoryGraph();
    storage.create('d', 1 << 20);
    const bb = await BlockBackend.open(graph, { driver: 'raw', file: { driver: 'memory', filename: 'd' } });
    addDirtyBitmap(bb.node, 'bm', { granularity: 65536 });
    const server = new NbdServer();
    server.addExport(createExport(bb, { name: 'mem', readOnly: false, bitmaps: ['bm'] }));
    const ends: NbdConnectionEnd[] = [];
    server.onConnectionEnd = (e) => ends.push(e);
    const c = pipe(server);

    expect((await c.take(18)).toString('hex')).toBe('4e42444d41474943' + '49484156454f5054' + '0003');
    c.send(Buffer.from([0, 0, 0, 3]));
    c.send(option(8, Buffer.alloc(0)));
    expect(await replies(c.take)).toEqual([1]);
    const ctx = Buffer.from('qemu:dirty-bitmap:bm');
    const set = Buffer.alloc(4 + 3 + 4 + 4 + ctx.length);
    set.writeUInt32BE(3, 0);
    set.write('mem', 4);
    set.writeUInt32BE(1, 7);
    set.writeUInt32BE(ctx.length, 11);
    ctx.copy(set, 15);
    c.send(option(10, set));
    expect(await replies(c.take)).toEqual([4, 1]);
    const go = Buffer.from([0, 0, 0, 3, ...Buffer.from('mem'), 0, 0]);
    c.send(option(7, go));
    expect(await replies(c.take)).toEqual([3, 3, 1]);

    c.send(request(1, 65536, 4096, Buffer.alloc(4096, 0xab)));
    const wrote = await c.take(16);
    expect(wrote.readUInt32BE(0)).toBe(0x67446698);
    expect(wrote.readUInt32BE(4)).toBe(0);

    // The raw memory image reports all data (no holes), so one data chunk comes back.
    c.send(request(0, 65536, 8192));
    const chunk = await c.take(20);
    expect(chunk.readUInt16BE(6)).toBe(1);
    const body = await c.take(chunk.readUInt32BE(16));
    expect(body.subarray(8, 8 + 4096).every((b) => b === 0xab)).toBe(true);
    expect(body.subarray(8 + 4096).every((b) => b === 0)).toBe(true);

    c.send(request(7, 0, 1 << 20));
    const bs = await c.take(20);
    expect(bs.readUInt16BE(6)).toBe(5);
    const ext = await c.take(bs.readUInt32BE(16));
    // Context id 2, then (length, flags): clean 64k, dirty 64k, clean rest.
    expect([...Array((ext.length - 4) / 4)].map((_, i) => ext.readUInt32BE(4 + 4 * i))).toEqual([65536, 0, 65536, 1, 1048576 - 131072, 0]);
    expect(ext.readUInt32BE(0)).toBe(2);

    c.send(request(2, 0, 0));
    await c.session.finished;
    expect(c.isClosed()).toBe(true);
    expect(ends).toEqual([{ negotiated: true }]);

    // Garbage instead of an option: dropped, with qemu-nbd's reason.
    const bad = pipe(server);
    await bad.take(18);
    bad.send(Buffer.from([0, 0, 0, 3, 1, 2, 3, 4, 5, 6, 7, 8]));
    await bad.session.finished;
    expect(ends[1]).toEqual({ negotiated: false, error: 'option negotiation failed: Bad magic received' });
    server.close();
    await bb.close();
  });

  it('fills unzeroed read buffers completely and sends a reply header with its data in one call', async () => {
    const { graph, storage } = memoryGraph();
    storage.create('d', 1 << 20);
    const bb = await BlockBackend.open(graph, { driver: 'raw', file: { driver: 'memory', filename: 'd' } });
    const server = new NbdServer();
    server.addExport(createExport(bb, { name: '', readOnly: false }));
    const groups: number[][] = [];
    const c = pipe(server, {
      // What Buffer.allocUnsafe may give: old bytes.
      allocate: (n) => new Uint8Array(n).fill(0xee),
      onParts: (sizes) => groups.push(sizes),
    });
    await c.take(18);
    c.send(Buffer.from([0, 0, 0, 3]));
    c.send(option(8, Buffer.alloc(0)));
    expect(await replies(c.take)).toEqual([1]);
    c.send(option(7, Buffer.from([0, 0, 0, 0, 0, 0])));
    expect(await replies(c.take)).toEqual([3, 3, 1]);

    c.send(request(1, 4096, 512, Buffer.alloc(512, 0x5a)));
    expect((await c.take(16)).readUInt32BE(4)).toBe(0);
    groups.length = 0;
    c.send(request(0, 0, 16384));
    const head = await c.take(28);
    expect(head.readUInt32BE(0)).toBe(0x668e33ef);
    expect(groups).toEqual([[28, 16384]]);
    const data = await c.take(16384);
    const want = Buffer.alloc(16384);
    want.fill(0x5a, 4096, 4608);
    expect(data.equals(want)).toBe(true);
    c.send(request(2, 0, 0));
    await c.session.finished;
    server.close();
    await bb.close();
  });
});
