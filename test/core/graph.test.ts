/**
 * Graph tests with stub drivers (after QEMU's tests/unit/test-bdrv-graph-mod.c).
 * Each test draws its graph.
 */
import { describe, it, expect } from 'vitest';
import {
  BlockBackend,
  BlockError,
  Perm,
  drainBegin,
  drainEnd,
  type BlockNode,
} from '../../src/node.js';
import { expectBlockError, memoryGraph } from './helpers.js';

describe('permissions', () => {
  /*
   *   bb-a (write)     bb-b (write)
   *        \             /
   *          fmt (stubfmt)
   *            | file
   *          mem (memory)
   */
  it('refuses a second writer that the first does not share, naming both users', async () => {
    const { graph, storage } = memoryGraph();
    storage.create('disk', 65536);
    const fmt = await graph.open({ driver: 'stubfmt', 'node-name': 'fmt', file: { driver: 'memory', filename: 'disk' } });
    const a = await BlockBackend.attach(graph, fmt, { name: 'bb-a', device: true });
    const err = await expectBlockError(BlockBackend.attach(graph, fmt, { name: 'bb-b', device: true }), 'EPERM');
    // QEMU's wording: the newest user does not share what the older one takes.
    expect(err.message).toBe(
      "Permission conflict on node 'fmt': permissions 'write' are both required by block device 'bb-a' " +
        "(uses node 'fmt' as 'root' child) and unshared by block device 'bb-b' (uses node 'fmt' as 'root' child).",
    );
    // A reader that shares write is fine.
    const r = await BlockBackend.attach(graph, fmt, {
      name: 'reader',
      perm: Perm.CONSISTENT_READ,
      shared: Perm.CONSISTENT_READ | Perm.WRITE | Perm.WRITE_UNCHANGED | Perm.RESIZE | Perm.GRAPH_MOD,
    });
    // The failed attach left no trace: a writes, the reader sees it.
    await a.write(0, new Uint8Array([9]));
    expect((await r.read(0, 1))[0]).toBe(9);
    await r.close();
    await a.close();
    await fmt.unref();
    expect(graph.listNodes()).toEqual([]);
  });

  /*
   *   guest (write; resize only while truncating)   job (shares no resize)
   *                          \                      /
   *                                  raw ── mem
   */
  it('a backend takes resize only while it truncates; a user sharing no resize refuses the truncate', async () => {
    const { graph, storage } = memoryGraph();
    storage.create('disk', 65536);
    const node = await graph.open({ driver: 'raw', 'node-name': 'n', file: { driver: 'memory', filename: 'disk' } });
    const guest = await BlockBackend.attach(graph, node, { name: 'guest' });
    expect(guest.root.perm).toBe(Perm.CONSISTENT_READ | Perm.WRITE);
    await guest.truncate(131072);
    expect(guest.length).toBe(131072);
    expect(guest.root.perm).toBe(Perm.CONSISTENT_READ | Perm.WRITE);
    const job = await BlockBackend.attach(graph, node, { name: 'job', perm: Perm.CONSISTENT_READ, shared: Perm.CONSISTENT_READ | Perm.WRITE | Perm.WRITE_UNCHANGED | Perm.GRAPH_MOD });
    const err = await expectBlockError(guest.truncate(65536), 'EPERM');
    expect(err.message).toContain("permissions 'resize'");
    // Refused before anything changed: the length and the guest's permissions are as they were.
    expect(guest.length).toBe(131072);
    expect(guest.root.perm).toBe(Perm.CONSISTENT_READ | Perm.WRITE);
    await job.close();
    await guest.truncate(65536);
    expect(guest.length).toBe(65536);
    await guest.close();
    await node.unref();
  });

  /*
   *   bb (write) ── fmt ── file ──> mem
   *                  \
   *   other user ─────────────────> mem   (wants write on the protocol node too)
   */
  it('protects the file under a format from other writers', async () => {
    const { graph, storage } = memoryGraph();
    storage.create('disk', 65536);
    const fmt = await graph.open({ driver: 'stubfmt', 'node-name': 'fmt', file: { driver: 'memory', filename: 'disk', 'node-name': 'proto' } });
    const bb = await BlockBackend.attach(graph, fmt, { name: 'bb' });
    const proto = graph.findNode('proto');
    // The format takes write on its file and shares neither write nor resize.
    expect(proto.parents[0]!.perm & Perm.WRITE).toBeTruthy();
    await expectBlockError(
      BlockBackend.attach(graph, proto, { name: 'intruder', perm: Perm.WRITE, shared: 0x1f }),
      'EPERM',
      /'write' are both required by an unnamed block device \(uses node 'proto' as 'root' child\) and unshared by node 'fmt' \(uses node 'proto' as 'file' child\)/,
    );
    await bb.close();
    await fmt.unref();
  });

  it('refuses write permission on a read-only node with EACCES', async () => {
    const { graph, storage } = memoryGraph();
    storage.create('disk', 4096);
    const node = await graph.open({ driver: 'raw', file: { driver: 'memory', filename: 'disk' } }, { readOnly: true });
    await expectBlockError(
      BlockBackend.attach(graph, node, { name: 'w', perm: Perm.WRITE | Perm.CONSISTENT_READ }),
      'EACCES',
      /read-only/,
    );
    const bb = await BlockBackend.attach(graph, node);
    await expectBlockError(bb.write(0, new Uint8Array(1)), 'EACCES', /read-only/);
    await bb.close();
    await node.unref();
  });
});

describe('frozen links and replace', () => {
  /*
   *   bb ── top(stubfmt) ──backing──> base(raw)
   *   replace top by base: bb now reads base directly.
   */
  it('replaces a node under all its parents and refuses frozen links', async () => {
    const { graph, storage } = memoryGraph();
    storage.create('top', 4096);
    storage.create('base', 4096).writeRaw(0, new Uint8Array([7]));
    const base = await graph.open({ driver: 'raw', 'node-name': 'base', file: { driver: 'memory', filename: 'base' } });
    const top = await graph.open({
      driver: 'stubfmt',
      'node-name': 'top',
      file: { driver: 'memory', filename: 'top' },
      backing: 'base',
    });
    expect(top.backing?.node).toBe(base);
    const bb = await BlockBackend.attach(graph, top, { name: 'bb' });
    await bb.write(0, new Uint8Array([3]));
    expect((await bb.read(0, 1))[0]).toBe(3);
    bb.root.frozen = true;
    await expectBlockError(graph.replaceNode(top, base), 'EPERM', /frozen/);
    expect(bb.node).toBe(top);
    bb.root.frozen = false;
    // top.backing -> base is not moved (it would make a loop); only bb's link moves.
    await graph.replaceNode(top, base);
    expect(bb.node).toBe(base);
    expect((await bb.read(0, 1))[0]).toBe(7);
    const link = top.backing!;
    link.frozen = true;
    await expectBlockError(graph.detachChild(link), 'EPERM', /frozen/);
    link.frozen = false;
    await top.unref();
    await base.unref();
    await bb.close();
    expect(graph.listNodes()).toEqual([]);
  });

  it('refuses links that would make a loop', async () => {
    const { graph, storage } = memoryGraph();
    storage.create('a', 512);
    const a = await graph.open({ driver: 'raw', 'node-name': 'a', file: { driver: 'memory', filename: 'a' } });
    a.ref();
    await expectBlockError(graph.attachChild(a.file!.node, a, 'backing', 0), 'EINVAL', /loop/);
    await a.unref();
    await a.unref();
  });
});

describe('reopen', () => {
  /*
   *   bb-ro ── fmt(stubfmt) ── file ──> mem
   *   reopen fmt read-write: fmt and mem become writable together.
   */
  it('switches a subtree between read-only and read-write', async () => {
    const { graph, storage } = memoryGraph();
    storage.create('d', 4096);
    const fmt = await graph.open({ driver: 'stubfmt', file: { driver: 'memory', filename: 'd', 'node-name': 'p' } }, { readOnly: true });
    const p = graph.findNode('p');
    expect(p.readOnly).toBe(true);
    await graph.reopen([{ node: fmt, readOnly: false }]);
    expect(fmt.readOnly).toBe(false);
    expect(p.readOnly).toBe(false);
    expect(fmt.file!.perm & Perm.WRITE).toBeTruthy();
    const bb = await BlockBackend.attach(graph, fmt);
    await bb.write(0, new Uint8Array([1, 2]));
    await bb.close();
    await graph.reopen([{ node: fmt, readOnly: true }]);
    expect(p.readOnly).toBe(true);
    expect(fmt.file!.perm & Perm.WRITE).toBe(0);
    expect(storage.get('d')!.toBytes()[1]).toBe(2);
    await fmt.unref();
  });

  /*
   *   writer(bb) ── fmt ── mem : reopen read-only while bb holds write → refused,
   *   and a driver that refuses prepare rolls back every node.
   */
  it('rolls back on a permission conflict or a refusing driver', async () => {
    const { graph, storage } = memoryGraph();
    storage.create('d', 4096);
    storage.create('e', 4096);
    const fmt = await graph.open({ driver: 'stubfmt', file: { driver: 'memory', filename: 'd' } });
    const bb = await BlockBackend.attach(graph, fmt, { name: 'writer' });
    await expectBlockError(graph.reopen([{ node: fmt, readOnly: true }]), 'EACCES', /writer/);
    expect(fmt.readOnly).toBe(false);
    expect(fmt.file!.node.readOnly).toBe(false);
    await bb.write(0, new Uint8Array([5]));
    await bb.close();

    const refusing = await graph.open(
      { driver: 'stubfmt', 'fail-reopen': true, file: { driver: 'memory', filename: 'e' } },
      { readOnly: true },
    );
    await expectBlockError(
      graph.reopen([
        { node: fmt, readOnly: true },
        { node: refusing, readOnly: false },
      ]),
      'EIO',
      /refuses to reopen/,
    );
    expect(fmt.readOnly).toBe(false);
    expect(refusing.readOnly).toBe(true);
    await refusing.unref();
    await fmt.unref();
  });
});

describe('drain', () => {
  /*
   *   bb ── raw ── file ──> slow (requests complete only when released)
   *   drain(raw) waits for the in-flight reads, holds new bb requests until drainEnd.
   */
  it('waits for requests in flight and holds new ones until the end', async () => {
    const releases: Array<() => void> = [];
    const { graph } = memoryGraph([
      {
        name: 'slow',
        kind: 'protocol',
        async open() {
          return {
            getLength: () => 65536,
            preadv: (_o, _b, buf) =>
              new Promise<void>((resolve) => {
                releases.push(() => {
                  buf.fill(1);
                  resolve();
                });
              }),
          };
        },
      },
    ]);
    const node = await graph.open({ driver: 'raw', file: { driver: 'slow' } });
    const bb = await BlockBackend.attach(graph, node, { perm: Perm.CONSISTENT_READ });
    const r1 = bb.read(0, 512);
    const r2 = bb.read(512, 512);
    let drainedIn = false;
    const d = drainBegin(node).then((t) => {
      drainedIn = true;
      return t;
    });
    await new Promise((r) => setTimeout(r, 5));
    expect(drainedIn).toBe(false);
    expect(node.quiesceCounter).toBe(1);
    // Nested drain.
    const d2 = drainBegin(node);
    releases.splice(0).forEach((f) => f());
    const token = await d;
    const token2 = await d2;
    expect((await r1)[0]).toBe(1);
    await r2;
    // New backend requests are held while drained.
    let r3done = false;
    const r3 = bb.read(0, 512).then(() => (r3done = true));
    await new Promise((r) => setTimeout(r, 5));
    expect(releases.length).toBe(0);
    drainEnd(token2);
    await new Promise((r) => setTimeout(r, 5));
    expect(releases.length).toBe(0);
    drainEnd(token);
    await new Promise((r) => setTimeout(r, 5));
    expect(releases.length).toBe(1);
    releases.splice(0).forEach((f) => f());
    await r3;
    expect(r3done).toBe(true);
    expect(node.inFlight).toBe(0);
    await bb.close();
    await node.unref();
  });
});

describe('node names and references', () => {
  it('validates, generates and refuses duplicate node names', async () => {
    const { graph, storage } = memoryGraph();
    storage.create('d', 512);
    await expectBlockError(graph.open({ driver: 'memory', filename: 'd', 'node-name': '1bad' }), 'EINVAL', /Invalid node-name: '1bad'/);
    const a = await graph.open({ driver: 'memory', filename: 'd', 'node-name': 'ok-name' }, { readOnly: true });
    await expectBlockError(
      graph.open({ driver: 'memory', filename: 'd', 'node-name': 'ok-name' }, { readOnly: true }),
      'EINVAL',
      /Duplicate nodes with node-name='ok-name'/,
    );
    const b = await graph.open({ driver: 'memory', filename: 'd' }, { readOnly: true });
    expect(b.nodeName).toMatch(/^#block\d+$/);
    await a.unref();
    await b.unref();
    await expectBlockError(a.unref(), 'EINVAL', /no reference left/);
    expect(graph.listNodes()).toEqual([]);
  });

  it('closes children when the last reference goes, flushing first', async () => {
    const flushed: string[] = [];
    const { graph } = memoryGraph([
      {
        name: 'flushy',
        kind: 'protocol',
        async open(node: BlockNode) {
          return {
            getLength: () => 4096,
            pwritev: async () => undefined,
            flushToDisk: async () => {
              flushed.push(node.nodeName);
            },
            close: async () => {
              flushed.push(`close ${node.nodeName}`);
            },
          };
        },
      },
    ]);
    const node = await graph.open({ driver: 'raw', file: { driver: 'flushy', 'node-name': 'f' } });
    const bb = await BlockBackend.attach(graph, node);
    await bb.write(0, new Uint8Array(10));
    await bb.flush();
    expect(flushed).toEqual(['f']);
    await bb.flush(); // nothing written since: free
    expect(flushed).toEqual(['f']);
    await bb.write(0, new Uint8Array(10));
    await bb.close();
    await node.unref();
    expect(flushed).toEqual(['f', 'f', 'close f']);
  });

  it('makes errors BlockErrors with codes', async () => {
    const { graph } = memoryGraph();
    const e = await expectBlockError(graph.open({ driver: 'memory', filename: 'nope' }), 'ENOENT', /nope/);
    expect(e).toBeInstanceOf(BlockError);
  });
});
