/**
 * node-file back end and raw format against qemu-img / qemu-io 7.2.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BlockBackend, createImage, createNodeGraph } from '../../src/node.js';
import { blockStatus } from '../../src/core/block-status.js';
import { Status } from '../../src/core/driver.js';
import { expectBlockError } from '../core/helpers.js';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'dw-nodefile-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const qemuIo = (...args: string[]) => execFileSync('qemu-io', args, { encoding: 'utf8' });

describe('node-file + raw', () => {
  it('reads what qemu-io wrote, byte for byte', async () => {
    const img = join(dir, 'a.raw');
    execFileSync('qemu-img', ['create', '-f', 'raw', img, '4M']);
    qemuIo('-f', 'raw', '-c', 'write -P 0xab 1000 70000', '-c', 'write -P 0x11 3M 4096', img);
    const graph = createNodeGraph();
    const bb = await BlockBackend.open(graph, img, { format: 'raw', readOnly: true });
    expect(bb.length).toBe(4 << 20);
    const all = await bb.read(0, bb.length);
    expect(Buffer.from(all).equals(readFileSync(img))).toBe(true);
    expect(all[1000]).toBe(0xab);
    expect(all[999]).toBe(0);
    await expectBlockError(bb.write(0, new Uint8Array(1)), 'EACCES');
    await bb.close();
  });

  it('writes what qemu-io reads back, and creates images qemu-img accepts', async () => {
    const img = join(dir, 'b.raw');
    const graph = createNodeGraph();
    await createImage(graph, 'raw', img, { size: '1M' });
    expect(statSync(img).size).toBe(1 << 20);
    const bb = await BlockBackend.open(graph, img, { format: 'raw' });
    await bb.write(4096, new Uint8Array(8192).fill(0x5a));
    await bb.write(12345, new Uint8Array(7).fill(0x77));
    await bb.flush();
    await bb.close();
    const out = qemuIo('-f', 'raw', '-c', 'read -P 0x5a 4096 8192', '-c', 'read -P 0x77 12345 7', img);
    expect(out).not.toMatch(/verification failed/);
    expect(out).toMatch(/read 8192\/8192 bytes at offset 4096/);
    const info = JSON.parse(execFileSync('qemu-img', ['info', '--output=json', img], { encoding: 'utf8' }));
    expect(info['virtual-size']).toBe(1 << 20);
    expect(info.format).toBe('raw');
  });

  it('sees the hole a resize leaves at the end of a fully allocated file, as qemu-img map does', async () => {
    const img = join(dir, 'grow.raw');
    writeFileSync(img, Buffer.alloc(1 << 20, 1));
    const graph = createNodeGraph();
    const bb = await BlockBackend.open(graph, img, { format: 'raw' });
    // Asked once before the resize: the file has no holes then.
    expect((await blockStatus(bb.node, true, 0, 1 << 20)).status & Status.ZERO).toBe(0);
    await bb.truncate(2 << 20);
    const grown = await blockStatus(bb.node, true, 1 << 20, 1 << 20);
    await bb.close();
    const map = JSON.parse(execFileSync('qemu-img', ['map', '--output=json', '-f', 'raw', img], { encoding: 'utf8' })) as Array<{ start: number; zero: boolean }>;
    expect(map.find((e) => e.start === 1 << 20)?.zero).toBe(true);
    expect(grown.status & Status.ZERO).toBe(Status.ZERO);
  });

  it('reports a missing file with ENOENT in qemu-img words', async () => {
    const graph = createNodeGraph();
    await expectBlockError(graph.open(join(dir, 'missing.img')), 'ENOENT', /Could not open '.*missing.img': No such file or directory/);
    expect(graph.listNodes()).toEqual([]);
  });

  it('probes raw for a plain file and honours file: prefixes and json: filenames', async () => {
    const img = join(dir, 'c.raw');
    writeFileSync(img, Buffer.alloc(65536, 1));
    const graph = createNodeGraph();
    const a = await BlockBackend.open(graph, `file:${img}`, { readOnly: true });
    expect(a.node.driver.name).toBe('raw');
    expect(a.node.probed).toBe(true);
    await a.close();
    const b = await BlockBackend.open(graph, `json:{"driver":"raw","file":{"driver":"file","filename":"${img}"}}`, { readOnly: true });
    expect((await b.read(0, 1))[0]).toBe(1);
    await b.close();
    const c = await BlockBackend.open(graph, { driver: 'raw', 'file.driver': 'file', 'file.filename': img }, { readOnly: true });
    expect(c.length).toBe(65536);
    await c.close();
  });
});
