/**
 * The names query-named-block-nodes shows (`file`, `image.filename`,
 * `backing_file`) against qemu-storage-daemon 7.2 for nodes added with
 * blockdev-add: a qcow2 whose backing file is the one its image names (plain
 * name), one whose backing is another node or none (`json:` with the
 * backing's options or `backing: null`), raw with offset, null-co with size,
 * blkdebug with rules, quorum, copy-on-read, and an external
 * snapshot whose overlay gets a backing node. Needs `npm run build:ts`.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { both, canonical, hasQsd, run, stopAll, type Json, type Step } from './harness.js';

afterAll(stopAll);

const cap: Step = { execute: 'qmp_capabilities' };
const file = (name: string) => ({ driver: 'file', filename: `$DIR/${name}` });

/**
 * A json: name with the members of each dictionary sorted: QEMU lists the
 * options of one hash bucket in an order that depends on how many times
 * the options were copied, which differs between blockdev-add and json:.
 */
function sortedName(name: Json): Json {
  if (typeof name !== 'string' || !name.startsWith('json:')) return name;
  return `json:${canonical(JSON.parse(name.slice(5)) as Json)}`;
}

/** node-name (generated ones by their file) → its names, from a query-named-block-nodes reply. */
function names(reply: Json): Record<string, Json> {
  const out: Record<string, Json> = {};
  for (const n of (reply as { return: Array<Record<string, Json>> }).return) {
    const image = n.image as Record<string, Json>;
    const backingImage = (image['backing-image'] as Record<string, Json> | undefined)?.filename ?? null;
    const key = n['node-name'] === '#blockN' ? `#blockN ${String(n.file)}` : (n['node-name'] as string);
    out[key] = { file: sortedName(n.file!), image: sortedName(image.filename!), backing_file: sortedName(n.backing_file ?? null), backing_image: sortedName(backingImage) };
  }
  return out;
}

describe.skipIf(!hasQsd())('node names in query-named-block-nodes vs qemu-storage-daemon 7.2', () => {
  it('plain and json: names over formats, filters and overridden backing files', async () => {
    const r = await both(
      'filenames',
      (dir) => {
        run('qemu-img', ['create', '-f', 'raw', 'r.img', '1M'], dir);
        run('qemu-img', ['create', '-f', 'raw', 'r2.img', '1M'], dir);
        run('qemu-img', ['create', '-f', 'qcow2', 'base.qcow2', '1M'], dir);
        run('qemu-img', ['create', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', 'top.qcow2', '1M'], dir);
        run('qemu-img', ['create', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', 'top2.qcow2', '1M'], dir);
        run('qemu-img', ['create', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', 'top3.qcow2', '1M'], dir);
        run('qemu-img', ['create', '-f', 'qcow2', 'lone.qcow2', '1M'], dir);
      },
      [],
      [
        cap,
        { execute: 'blockdev-add', arguments: { 'node-name': 'implicit', driver: 'qcow2', file: file('top.qcow2') } },
        { execute: 'blockdev-add', arguments: { 'node-name': 'rawb', driver: 'raw', file: file('r.img') } },
        { execute: 'blockdev-add', arguments: { 'node-name': 'over', driver: 'qcow2', file: file('top2.qcow2'), backing: 'rawb' } },
        { execute: 'blockdev-add', arguments: { 'node-name': 'none', driver: 'qcow2', file: file('top3.qcow2'), backing: null } },
        { execute: 'blockdev-add', arguments: { 'node-name': 'off', driver: 'raw', offset: 512, size: 4096, file: file('r2.img') } },
        { execute: 'blockdev-add', arguments: { 'node-name': 'nul', driver: 'null-co', size: 8192 } },
        { execute: 'blockdev-add', arguments: { 'node-name': 'nul2', driver: 'null-co' } },
        {
          execute: 'blockdev-add',
          arguments: { 'node-name': 'dbg', driver: 'blkdebug', 'inject-error': [{ event: 'read_aio', errno: 5 }], image: { driver: 'null-co' } },
        },
        { execute: 'blockdev-add', arguments: { 'node-name': 'quo', driver: 'quorum', 'vote-threshold': 1, children: ['nul2', { driver: 'null-co' }] } },
        { execute: 'blockdev-add', arguments: { 'node-name': 'lone', driver: 'qcow2', file: file('lone.qcow2') } },
        { execute: 'blockdev-add', arguments: { 'node-name': 'cor', driver: 'copy-on-read', file: 'lone' } },
        { execute: 'query-named-block-nodes', arguments: { flat: true } },
        { execute: 'query-named-block-nodes' },
        { execute: 'blockdev-snapshot-sync', arguments: { 'node-name': 'off', 'snapshot-file': '$DIR/snap.qcow2', 'snapshot-node-name': 'snap', format: 'qcow2' } },
        { execute: 'query-named-block-nodes', arguments: { flat: true } },
      ],
    );
    expect(r.ours.replies[14]).toEqual(r.qemu.replies[14]);
    const queries = [12, 13, 15];
    for (const i of queries) expect(names(r.ours.replies[i]!), `reply ${i}`).toEqual(names(r.qemu.replies[i]!));
    expect(r.ours.replies.slice(0, 12)).toEqual(r.qemu.replies.slice(0, 12));
    // The plain and json: cases are both there.
    // Names without bucket-mates are printed in the same order: compared as printed.
    const printed = (reply: Json) => Object.fromEntries((reply as { return: Array<Record<string, Json>> }).return.filter((n) => n['node-name'] !== 'dbg' && n['node-name'] !== '#blockN').map((n) => [n['node-name'], n.file]));
    expect(printed(r.ours.replies[12]!)).toEqual(printed(r.qemu.replies[12]!));
    const flat = printed(r.qemu.replies[12]!);
    expect(flat.over).toMatch(/^json:\{"backing": /);
    expect(flat.none).toMatch(/"backing": null/);
    expect(flat.implicit).toBe('$DIR/top.qcow2');
  }, 60_000);
});
