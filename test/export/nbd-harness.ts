/**
 * Helpers of the NBD differential tests: qemu-nbd and `diskworker nbd`
 * (in-process) on Unix sockets, asynchronous client runs (the in-process
 * server needs the event loop while a client runs), output masking, and a
 * raw NBD client that records the exact reply bytes.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { nbdMain } from '../../src/cli/nbd/main.js';
import type { CliIo } from '../../src/cli/common.js';

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a program without blocking the event loop. */
export function run(cmd: string, args: string[], cwd?: string): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd, encoding: 'utf8', maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** qemu-io statistics lines without the timings. */
export function maskTimings(text: string): string {
  return text.replace(/; [\d:.]+ sec \([^)]*\)/g, '; X sec (X)');
}

/** A server under test: where it listens and how to stop it. */
export interface ServerHandle {
  sock: string;
  stop(): Promise<void>;
  /** Exit code once stopped (or after it exited by itself). */
  exited: Promise<number>;
  stderr(): string;
}

async function waitFor(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 800; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** qemu-nbd on `sock`; resolves once it accepts connections. */
export async function startQemuNbd(args: string[], sock: string): Promise<ServerHandle> {
  const child: ChildProcess = spawn('qemu-nbd', ['-k', sock, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number>((r) => child.once('exit', (code) => r(code ?? 1)));
  let done = false;
  void exited.then(() => (done = true));
  await waitFor(() => existsSync(sock) || done, `qemu-nbd socket ${sock}`);
  return {
    sock,
    exited,
    stderr: () => err,
    stop: async () => {
      if (!done) child.kill('SIGTERM');
      await exited;
    },
  };
}

/** `diskworker nbd` in this process on `sock`; resolves once it serves. */
export async function startOurs(args: string[], sock: string): Promise<ServerHandle> {
  const ac = new AbortController();
  let err = '';
  const io: CliIo = { stdout: () => undefined, stderr: (s) => void (err += s) };
  let listening = false;
  let done = false;
  const exited = nbdMain(['-k', sock, ...args], io, { signal: ac.signal, onListening: () => (listening = true) }).finally(() => (done = true));
  await waitFor(() => listening || done, `diskworker nbd socket ${sock}`);
  return {
    sock,
    exited,
    stderr: () => err,
    stop: async () => {
      ac.abort();
      await exited;
    },
  };
}

export const nbdUri = (sock: string, name = ''): string => `nbd+unix:///${name}?socket=${sock}`;

// ---------------------------------------------------------------------------
// A raw client

/** A connection that reads exact byte counts, for scripted exchanges. */
export class RawNbd {
  private buf = Buffer.alloc(0);
  private closed = false;
  private wake: (() => void) | null = null;
  private constructor(readonly sock: Socket) {
    sock.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.wake?.();
    });
    sock.on('close', () => {
      this.closed = true;
      this.wake?.();
    });
    sock.on('error', () => undefined);
  }

  static open(path: string): Promise<RawNbd> {
    return new Promise((resolve, reject) => {
      const s = connect(path, () => resolve(new RawNbd(s)));
      s.once('error', reject);
    });
  }

  /** Reads `n` bytes; null when the server closed first. */
  async read(n: number): Promise<Buffer | null> {
    while (this.buf.length < n) {
      if (this.closed) return null;
      await new Promise<void>((r) => (this.wake = r));
    }
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return Buffer.from(out);
  }

  /** Whether the server closed the connection (waits for it up to a few seconds). */
  async serverClosed(): Promise<boolean> {
    for (let i = 0; i < 200 && !this.closed; i++) await new Promise((r) => setTimeout(r, 25));
    return this.closed;
  }

  write(b: Buffer): void {
    this.sock.write(b);
  }

  end(): void {
    this.sock.destroy();
  }

  /** Sends an option and returns the replies up to the final one (ACK or error), as hex. */
  async option(opt: number, payload: Buffer = Buffer.alloc(0)): Promise<string[]> {
    const h = Buffer.alloc(16);
    h.writeBigUInt64BE(0x49484156454f5054n, 0);
    h.writeUInt32BE(opt, 8);
    h.writeUInt32BE(payload.length, 12);
    this.write(Buffer.concat([h, payload]));
    const out: string[] = [];
    for (;;) {
      const head = await this.read(20);
      if (!head) return [...out, 'closed'];
      const body = (await this.read(head.readUInt32BE(16))) ?? Buffer.alloc(0);
      const type = head.readUInt32BE(12);
      out.push(`${type.toString(16)}:${body.toString('hex')}`);
      if (type === 1 || type >= 0x80000000) return out;
    }
  }

  /** Reads the greeting and sends client flags (fixed newstyle + no zeroes). */
  async greet(flags = 3): Promise<string> {
    const g = await this.read(18);
    const f = Buffer.alloc(4);
    f.writeUInt32BE(flags, 0);
    this.write(f);
    return g?.toString('hex') ?? 'closed';
  }

  /** Sends a request (and payload). */
  request(type: number, flags: number, handle: number, offset: number, length: number, payload?: Buffer): void {
    const b = Buffer.alloc(28);
    b.writeUInt32BE(0x25609513, 0);
    b.writeUInt16BE(flags, 4);
    b.writeUInt16BE(type, 6);
    b.writeBigUInt64BE(BigInt(handle), 8);
    b.writeBigUInt64BE(BigInt(offset), 16);
    b.writeUInt32BE(length, 24);
    this.write(payload ? Buffer.concat([b, payload]) : b);
  }

  /** Reads one reply: a simple reply (with `dataLen` bytes of data) or structured chunks up to DONE, as text. */
  async reply(structured: boolean, dataLen = 0): Promise<string> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<string>((r) => (timer = setTimeout(() => r(`no reply within 10 s (buffered ${this.buf.length})`), 10_000)));
    try {
      return await Promise.race([this.replyNow(structured, dataLen), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  private async replyNow(structured: boolean, dataLen: number): Promise<string> {
    // Replies without data are simple even after structured replies were negotiated.
    const magic = await this.read(4);
    if (!magic) return 'closed';
    if (!structured || magic.readUInt32BE(0) === 0x67446698) {
      const rest = await this.read(12);
      if (!rest) return 'closed';
      const h = Buffer.concat([magic, rest]);
      const err = h.readUInt32BE(4);
      const data = err === 0 && dataLen ? await this.read(dataLen) : null;
      return `${structured ? '[structured on] ' : ''}simple err=${err} handle=${h.readBigUInt64BE(8)} data=${data ? data.toString('hex').slice(0, 64) : ''}`;
    }
    const parts: string[] = [];
    let first: Buffer | null = magic;
    for (;;) {
      const tail = await this.read(first ? 16 : 20);
      const h = tail && first ? Buffer.concat([first, tail]) : tail;
      first = null;
      if (!h) return [...parts, 'closed'].join(' | ');
      const flags = h.readUInt16BE(4);
      const type = h.readUInt16BE(6);
      const body = (await this.read(h.readUInt32BE(16))) ?? Buffer.alloc(0);
      let text = body.toString('hex');
      if (type >= 0x8000) text = `err=${body.readUInt32BE(0)} msg=${body.subarray(6).toString()}`;
      parts.push(`flags=${flags} type=${type} handle=${h.readBigUInt64BE(8)} ${text.slice(0, 200)}`);
      if (flags & 1) return parts.join(' | ');
    }
  }
}

/** NBD_OPT_GO / INFO payload: name and info requests. */
export function goPayload(name: string, requests: number[] = []): Buffer {
  const n = Buffer.from(name);
  const b = Buffer.alloc(4 + n.length + 2 + 2 * requests.length);
  b.writeUInt32BE(n.length, 0);
  n.copy(b, 4);
  b.writeUInt16BE(requests.length, 4 + n.length);
  requests.forEach((r, i) => b.writeUInt16BE(r, 6 + n.length + 2 * i));
  return b;
}

/** NBD_OPT_{LIST,SET}_META_CONTEXT payload. */
export function metaPayload(name: string, queries: string[]): Buffer {
  const parts: Buffer[] = [];
  const n = Buffer.from(name);
  const h = Buffer.alloc(4);
  h.writeUInt32BE(n.length, 0);
  parts.push(h, n);
  const c = Buffer.alloc(4);
  c.writeUInt32BE(queries.length, 0);
  parts.push(c);
  for (const q of queries) {
    const qb = Buffer.from(q);
    const l = Buffer.alloc(4);
    l.writeUInt32BE(qb.length, 0);
    parts.push(l, qb);
  }
  return Buffer.concat(parts);
}
