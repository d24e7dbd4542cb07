/**
 * The NBD client's wire handling (src/protocols/nbd-connection.ts) against a
 * scripted server in memory: what a well-behaved server sends is read right
 * (data and hole chunks, block status, structured errors), and what a broken
 * or hostile one sends ends in a BlockError naming the problem, with every
 * request in flight and every later one failing at once: no hang, no huge
 * allocation, no wrong data.
 */
import { describe, expect, it } from 'vitest';
import { NbdConnection } from '../../src/protocols/nbd-connection.js';
import {
  Cmd,
  ExportFlag,
  Info,
  NBD_INIT_MAGIC,
  NBD_OPTS_MAGIC,
  NBD_REP_MAGIC,
  NBD_SIMPLE_REPLY_MAGIC,
  NBD_STRUCTURED_REPLY_MAGIC,
  Opt,
  Rep,
  Reply,
} from '../../src/export/nbd/constants.js';
import { WireWriter } from '../../src/export/nbd/transport.js';
import { BlockError } from '../../src/core/errors.js';

const FLAGS = ExportFlag.HAS_FLAGS | ExportFlag.SEND_FLUSH | ExportFlag.SEND_FUA | ExportFlag.SEND_TRIM | ExportFlag.SEND_WRITE_ZEROES;

function optReply(opt: number, type: number, payload: Uint8Array = new Uint8Array(0)): Uint8Array {
  return new WireWriter(20 + payload.length).u64(NBD_REP_MAGIC).u32(opt).u32(type).u32(payload.length).raw(payload).bytes;
}

/** The server's side of a good handshake: structured replies, base:allocation (id 7), an export of `size`. */
function handshake(size: number | bigint = 1 << 20, flags = FLAGS): Uint8Array[] {
  const ctx = new TextEncoder().encode('base:allocation');
  return [
    new WireWriter(18).u64(NBD_INIT_MAGIC).u64(NBD_OPTS_MAGIC).u16(3).bytes,
    optReply(Opt.STRUCTURED_REPLY, Rep.ACK),
    optReply(Opt.SET_META_CONTEXT, Rep.META_CONTEXT, new WireWriter(4 + ctx.length).u32(7).raw(ctx).bytes),
    optReply(Opt.SET_META_CONTEXT, Rep.ACK),
    optReply(Opt.GO, Rep.INFO, new WireWriter(12).u16(Info.EXPORT).u64(size).u16(flags).bytes),
    optReply(Opt.GO, Rep.INFO, new WireWriter(14).u16(Info.BLOCK_SIZE).u32(1).u32(4096).u32(32 << 20).bytes),
    optReply(Opt.GO, Rep.ACK),
  ];
}

function chunk(handle: number, type: number, payload: Uint8Array, done: boolean): Uint8Array {
  return new WireWriter(20 + payload.length)
    .u32(NBD_STRUCTURED_REPLY_MAGIC)
    .u16(done ? Reply.FLAG_DONE : 0)
    .u16(type)
    .u64(handle)
    .u32(payload.length)
    .raw(payload).bytes;
}

/** A connection whose transport records what the client sends. */
function pair(): { conn: NbdConnection; sent: Uint8Array[]; closed: () => boolean } {
  const sent: Uint8Array[] = [];
  let closed = false;
  const conn = new NbdConnection({
    write: async (d) => void sent.push(d.slice()),
    close: () => void (closed = true),
  });
  return { conn, sent, closed: () => closed };
}

async function connected(size?: number | bigint): Promise<ReturnType<typeof pair>> {
  const p = pair();
  for (const b of handshake(size)) p.conn.input.push(b);
  await p.conn.negotiate('', 'base:allocation');
  p.conn.startReceiving();
  return p;
}

async function failure(p: Promise<unknown>): Promise<BlockError> {
  const e = await p.then(
    () => null,
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(BlockError);
  return e as BlockError;
}

describe('NBD client connection', () => {
  it('negotiates, then reads data and hole chunks into the right places and one extent of block status', async () => {
    const { conn, sent } = await connected();
    expect(conn.info).toMatchObject({ size: 1 << 20, flags: FLAGS, minBlock: 1, optBlock: 4096, structuredReply: true, metaContext: true });
    // The client asked for structured replies, base:allocation and GO with INFO_BLOCK_SIZE.
    const opts = sent.filter((b) => b.length >= 16).map((b) => new DataView(b.buffer, b.byteOffset).getUint32(8));
    expect(opts).toEqual([Opt.STRUCTURED_REPLY, Opt.SET_META_CONTEXT, Opt.GO]);

    const buf = new Uint8Array(12).fill(0xee);
    const read = conn.read(100, buf);
    conn.input.push(chunk(1, Reply.TYPE_OFFSET_DATA, new WireWriter(12).u64(104).raw(Uint8Array.of(1, 2, 3, 4)).bytes, false));
    conn.input.push(chunk(1, Reply.TYPE_OFFSET_HOLE, new WireWriter(12).u64(100).u32(4).bytes, false));
    conn.input.push(chunk(1, Reply.TYPE_OFFSET_HOLE, new WireWriter(12).u64(108).u32(4).bytes, true));
    await read;
    expect([...buf]).toEqual([0, 0, 0, 0, 1, 2, 3, 4, 0, 0, 0, 0]);

    const status = conn.blockStatus(0, 65536, 8);
    conn.input.push(chunk(2, Reply.TYPE_BLOCK_STATUS, new WireWriter(20).u32(7).u32(4096).u32(3).u32(4096).u32(0).bytes, true));
    expect(await status).toEqual({ length: 4096, flags: 3 });
  });

  it('a structured error fails its request with the server message and code; requests beside it go on', async () => {
    const { conn } = await connected();
    const a = conn.write(0, new Uint8Array(512), 0);
    const b = conn.flush();
    const msg = new TextEncoder().encode('no space');
    conn.input.push(chunk(1, Reply.TYPE_ERROR, new WireWriter(6 + msg.length).u32(28).u16(msg.length).raw(msg).bytes, true));
    conn.input.push(new WireWriter(16).u32(NBD_SIMPLE_REPLY_MAGIC).u32(0).u64(2n).bytes);
    const e = await failure(a);
    expect(e.code).toBe('ENOSPC');
    expect(e.message).toBe('no space');
    await b;
  });

  it.each([
    ['a reply to a handle never sent', () => new WireWriter(16).u32(NBD_SIMPLE_REPLY_MAGIC).u32(0).u64(99n).bytes, /unknown handle 99/],
    ['bad reply magic', () => new WireWriter(16).u32(0x12345678).u32(0).u64(1n).bytes, /invalid magic \(got 0x12345678\)/],
    ['a data chunk outside the request', () => chunk(1, Reply.TYPE_OFFSET_DATA, new WireWriter(12).u64(200).raw(Uint8Array.of(1, 2, 3, 4)).bytes, true), /exceeding requested region/],
    ['a hole chunk with a wrong length', () => chunk(1, Reply.TYPE_OFFSET_HOLE, new WireWriter(8).u64(100).bytes, true), /invalid payload for NBD_REPLY_TYPE_OFFSET_HOLE/],
    ['a 4 GiB chunk', () => new WireWriter(20).u32(NBD_STRUCTURED_REPLY_MAGIC).u16(1).u16(Reply.TYPE_OFFSET_DATA).u64(1n).u32(0xffffffff).bytes, /Payload too large/],
    ['a NONE chunk without DONE', () => chunk(1, Reply.TYPE_NONE, new Uint8Array(0), false), /NBD_REPLY_TYPE_NONE chunk without/],
    ['an error chunk with error 0', () => chunk(1, Reply.TYPE_ERROR, new WireWriter(6).u32(0).u16(0).bytes, true), /error = 0/],
    ['an error message longer than its chunk', () => chunk(1, Reply.TYPE_ERROR, new WireWriter(6).u32(5).u16(100).bytes, true), /incorrect message size/],
    ['the connection closing mid-reply', () => chunk(1, Reply.TYPE_OFFSET_DATA, new WireWriter(12).u64(100).raw(Uint8Array.of(1, 2, 3, 4)).bytes, false).subarray(0, 10), /Connection closed|Unexpected end-of-file/],
  ])('%s ends the connection: the request in flight, the others and later ones fail with EIO', async (_what, reply, why) => {
    const { conn, closed } = await connected();
    const buf = new Uint8Array(12);
    const r1 = conn.read(100, buf);
    const r2 = conn.flush();
    conn.input.push(reply());
    conn.input.end();
    for (const p of [r1, r2]) {
      const e = await failure(p);
      expect(e.code).toBe('EIO');
      expect(e.message).toMatch(why);
    }
    expect(closed()).toBe(true);
    expect((await failure(conn.read(0, new Uint8Array(1)))).code).toBe('EIO');
  });

  it('a block status chunk with a foreign context id or a zero-length extent is a protocol error', async () => {
    for (const [payload, why] of [
      [new WireWriter(12).u32(8).u32(4096).u32(0).bytes, /unexpected context id 8/],
      [new WireWriter(12).u32(7).u32(0).u32(0).bytes, /zero length/],
    ] as const) {
      const { conn } = await connected();
      const st = conn.blockStatus(0, 65536, 8);
      conn.input.push(chunk(1, Reply.TYPE_BLOCK_STATUS, payload, true));
      expect((await failure(st)).message).toMatch(why);
    }
  });

  it('an extent longer than asked is cut to the request', async () => {
    const { conn } = await connected();
    const st = conn.blockStatus(0, 1000, 8);
    conn.input.push(chunk(1, Reply.TYPE_BLOCK_STATUS, new WireWriter(12).u32(7).u32(1 << 20).u32(2).bytes, true));
    expect(await st).toEqual({ length: 1000, flags: 2 });
  });

  it.each([
    ['a bad first magic', [new WireWriter(18).u64(0x1234n).u64(NBD_OPTS_MAGIC).u16(3).bytes], /Bad initial magic received: 0x1234/],
    ['an oldstyle server', [new WireWriter(18).u64(NBD_INIT_MAGIC).u64(0x00420281861253n).u16(0).bytes], /Bad server magic received: 0x420281861253/],
    ['a server that hangs up', [new WireWriter(8).u64(NBD_INIT_MAGIC).bytes], /Unexpected end-of-file/],
    [
      'an unknown export',
      [handshake()[0]!, handshake()[1]!, handshake()[2]!, handshake()[3]!, optReply(Opt.GO, Rep.ERR_UNKNOWN, new TextEncoder().encode("export 'x' not present"))],
      /^Requested export not available$/,
    ],
    [
      'an option reply of 4 GiB',
      [handshake()[0]!, handshake()[1]!, handshake()[2]!, handshake()[3]!, new WireWriter(20).u64(NBD_REP_MAGIC).u32(Opt.GO).u32(Rep.INFO).u32(0xffffffff).bytes],
      /NBD_REP_INFO length 4294967295 is too long/,
    ],
    [
      'a minimum block size that is not a power of two',
      [...handshake().slice(0, 5), optReply(Opt.GO, Rep.INFO, new WireWriter(14).u16(Info.BLOCK_SIZE).u32(3).u32(4096).u32(1 << 20).bytes)],
      /server minimum block size 3 is not a power of two/,
    ],
    ['an export past 2^53 bytes', handshake(1n << 60n), /export size 1152921504606846976 is too large/],
    [
      'a reply to another option',
      [handshake()[0]!, optReply(Opt.GO, Rep.ACK)],
      /Unexpected option type 7 \(go\), expected 8 \(structured reply\)/,
    ],
  ])('the handshake refuses %s', async (_what, server, why) => {
    const { conn } = pair();
    for (const b of server) conn.input.push(b);
    conn.input.end();
    const e = await failure(conn.negotiate('', 'base:allocation'));
    expect(e.message).toMatch(why);
  });

  it('the server reported reason of a refused export is the hint', async () => {
    const { conn } = pair();
    for (const b of [...handshake().slice(0, 4), optReply(Opt.GO, Rep.ERR_UNKNOWN, new TextEncoder().encode("export 'x' not present"))]) conn.input.push(b);
    const e = await failure(conn.negotiate('x', 'base:allocation'));
    expect(e.hint).toBe("server reported: export 'x' not present\n");
  });

  it('writes in flight leave as whole messages: no request between a header and its data', async () => {
    const sent: Uint8Array[] = [];
    // A transport that takes its time, as a socket under backpressure does.
    const conn = new NbdConnection({
      write: async (d) => {
        await new Promise((r) => setTimeout(r, 2));
        sent.push(d.slice());
      },
      close: () => undefined,
    });
    for (const b of handshake()) conn.input.push(b);
    await conn.negotiate('', 'base:allocation');
    conn.startReceiving();
    const before = sent.length;
    const a = conn.write(0, new Uint8Array(8).fill(0xaa), 0);
    const b = conn.write(8, new Uint8Array(8).fill(0xbb), 0);
    const f = conn.flush();
    for (const h of [1, 2, 3]) conn.input.push(new WireWriter(16).u32(NBD_SIMPLE_REPLY_MAGIC).u32(0).u64(BigInt(h)).bytes);
    await Promise.all([a, b, f]);
    // The replies came before the slow transport was done sending.
    while (sent.length - before < 5) await new Promise((r) => setTimeout(r, 5));
    const stream = Buffer.concat(sent.slice(before));
    // Request header (28 bytes) of write 1, its 8 bytes, then write 2, then the flush.
    expect(stream.length).toBe(28 + 8 + 28 + 8 + 28);
    expect(stream.readUInt16BE(6)).toBe(Cmd.WRITE);
    expect([...stream.subarray(28, 36)]).toEqual(new Array(8).fill(0xaa));
    expect(stream.readUInt16BE(36 + 6)).toBe(Cmd.WRITE);
    expect([...stream.subarray(64, 72)]).toEqual(new Array(8).fill(0xbb));
    expect(stream.readUInt16BE(72 + 6)).toBe(Cmd.FLUSH);
  });

  it('a failed handshake is abandoned without NBD_CMD_DISC (no transmission phase to leave)', async () => {
    const { conn, sent, closed } = pair();
    for (const b of [...handshake().slice(0, 4), optReply(Opt.GO, Rep.ERR_UNKNOWN)]) conn.input.push(b);
    await failure(conn.negotiate('x', 'base:allocation'));
    conn.abandon();
    expect(closed()).toBe(true);
    const requests = sent.filter((b) => b.length >= 4 && new DataView(b.buffer, b.byteOffset).getUint32(0) === 0x25609513);
    expect(requests).toEqual([]);
    expect((await failure(conn.flush())).code).toBe('EIO');
  });

  it('close sends NBD_CMD_DISC and later requests fail without reaching the server', async () => {
    const { conn, sent, closed } = await connected();
    const before = sent.length;
    await conn.close();
    expect(closed()).toBe(true);
    const disc = sent[before]!;
    expect(new DataView(disc.buffer, disc.byteOffset).getUint16(6)).toBe(Cmd.DISC);
    expect((await failure(conn.flush())).code).toBe('EIO');
    expect(sent.length).toBe(before + 1);
  });
});
