/**
 * blockdev-add of blkverify nodes against qemu-storage-daemon 7.2: iotest
 * 071's two graphs (the test image an existing node, then the raw copy one),
 * the QAPI check of the `test` and `raw` members, and the names
 * query-named-block-nodes shows (blkverify:RAW:TEST, or json: when a child has
 * no plain name). Needs `npm run build:ts`.
 *
 *   v1 ─test→ drive0 (qcow2 over t.qcow2)     v2 ─test→ qcow2 over t2.qcow2
 *      ─raw→ file r.raw                          ─raw→ rawnode (file r2.raw)
 *   v7 ─test→ drive0, ─raw→ rawnode
 */
import { afterAll, describe, expect, it } from 'vitest';
import { both, hasQsd, run, stopAll, type Json, type Step } from './harness.js';

afterAll(stopAll);

const cap: Step = { execute: 'qmp_capabilities' };
const file = (name: string) => ({ driver: 'file', filename: `$DIR/${name}` });

/** node-name → the names it shows, from a query-named-block-nodes reply. */
function names(reply: Json): Record<string, Json> {
  const out: Record<string, Json> = {};
  for (const n of (reply as { return: Array<Record<string, Json>> }).return) {
    const image = n.image as Record<string, Json>;
    // Generated names (#blockN) differ between the two: such nodes go by driver and file.
    const name = n['node-name'] as string;
    out[name.startsWith('#block') ? `#blockN ${String(n.drv)} ${String(n.file)}` : name] = { file: n.file!, drv: n.drv!, image: image.filename!, format: image.format!, size: image['virtual-size']! };
  }
  return out;
}

describe.skipIf(!hasQsd())('blkverify nodes vs qemu-storage-daemon 7.2', () => {
  it("iotest 071's blockdev-add graphs, the QAPI members and the nodes' names", async () => {
    const r = await both(
      'blkverify',
      (dir) => {
        run('qemu-img', ['create', '-f', 'raw', 'r.raw', '1M'], dir);
        run('qemu-img', ['create', '-f', 'raw', 'r2.raw', '1M'], dir);
        run('qemu-img', ['create', '-f', 'qcow2', 't.qcow2', '1M'], dir);
        run('qemu-img', ['create', '-f', 'qcow2', 't2.qcow2', '1M'], dir);
      },
      [],
      [
        cap,
        { execute: 'blockdev-add', arguments: { 'node-name': 'drive0', driver: 'qcow2', file: file('t.qcow2') } },
        { execute: 'blockdev-add', arguments: { 'node-name': 'v1', driver: 'blkverify', test: 'drive0', raw: file('r.raw') } },
        { execute: 'blockdev-add', arguments: { 'node-name': 'rawnode', driver: 'file', filename: '$DIR/r2.raw' } },
        { execute: 'blockdev-add', arguments: { 'node-name': 'v2', driver: 'blkverify', test: { driver: 'qcow2', file: file('t2.qcow2') }, raw: 'rawnode', 'read-only': true } },
        { execute: 'blockdev-add', arguments: { 'node-name': 'v3', driver: 'blkverify', raw: file('r.raw') } },
        { execute: 'blockdev-add', arguments: { 'node-name': 'v4', driver: 'blkverify', test: 'drive0' } },
        { execute: 'blockdev-add', arguments: { 'node-name': 'v5', driver: 'blkverify', test: 'drive0', raw: file('r.raw'), bogus: 1 } },
        { execute: 'blockdev-add', arguments: { 'node-name': 'v6', driver: 'blkverify', test: 'nosuch', raw: file('r.raw') } },
        // A second user of the same test node (nothing above writes: no conflict).
        { execute: 'blockdev-add', arguments: { 'node-name': 'v7', driver: 'blkverify', test: 'drive0', raw: 'rawnode' } },
        { execute: 'query-named-block-nodes', arguments: { flat: true } },
      ],
    );
    expect(r.ours.replies.slice(0, 10)).toEqual(r.qemu.replies.slice(0, 10));
    expect(r.qemu.replies[5]).toEqual({ error: { class: 'GenericError', desc: "Parameter 'test' is missing" } });
    expect(r.qemu.replies[6]).toEqual({ error: { class: 'GenericError', desc: "Parameter 'raw' is missing" } });
    const [ours, qemu] = [names(r.ours.replies[10]!), names(r.qemu.replies[10]!)];
    expect(ours).toEqual(qemu);
    expect(qemu.v1).toMatchObject({ drv: 'blkverify', format: 'blkverify', size: 1048576, file: 'blkverify:$DIR/r.raw:$DIR/t.qcow2' });
    expect(qemu.v7).toMatchObject({ file: 'blkverify:$DIR/r2.raw:$DIR/t.qcow2' });
  }, 60_000);
});
