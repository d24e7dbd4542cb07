/**
 * Option inheritance per child role (QEMU's bdrv_inherited_options) against
 * qemu-storage-daemon 7.2: a qcow2 with an external data file, whose backing
 * file and data file are opened from its header, added with blockdev-add and
 * --blockdev under several parent options (cache.direct, cache.no-flush,
 * read-only, discard, detect-zeroes, force-share), with and without explicit
 * options on the children. What each node of the graph ends up with
 * (read-only, cache, detect-zeroes) is compared through
 * query-named-block-nodes; force-share through what another process may then
 * open. Needs `npm run build:ts` (the bundled bin).
 */
import { spawnSync } from 'node:child_process';
import { basename } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { both, blockdev, hasQsd, run, stopAll, type Json, type Step } from './harness.js';

afterAll(stopAll);

const cap: Step = { execute: 'qmp_capabilities' };
const nodes: Step = { execute: 'query-named-block-nodes', arguments: { flat: true } };

/** base.qcow2 <- top.qcow2 (data file top.data): the backing and data file named in top's header. */
function setup(dir: string): void {
  run('qemu-img', ['create', '-f', 'qcow2', 'base.qcow2', '1M'], dir);
  run('qemu-img', ['create', '-f', 'qcow2', '-o', 'data_file=top.data', '-b', 'base.qcow2', '-F', 'qcow2', 'top.qcow2', '1M'], dir);
}

/**
 * Node (generated names by driver and file's base name: QEMU names the data
 * file as its header does, relative to the daemon's directory, where we show
 * the path it resolves to) → the options it ended up with.
 */
function projection(reply: Json): Record<string, Json> {
  const out: Record<string, Json> = {};
  for (const n of (reply as { return: Array<Record<string, Json>> }).return) {
    const name = n['node-name'] === '#blockN' ? `${String(n.drv)} ${basename(String(n.file))}` : String(n['node-name']);
    out[name] = { ro: n.ro!, cache: n.cache!, detect_zeroes: n.detect_zeroes!, drv: n.drv! };
  }
  return out;
}

/** The top qcow2 as blockdev-add options: `top` and `file` extra options for it and its file child. */
function topOptions(top: Record<string, Json>, file: Record<string, Json> = {}): Json {
  return { driver: 'qcow2', 'node-name': 'top', ...top, file: { driver: 'file', filename: '$DIR/top.qcow2', ...file } };
}

const PARENTS: Array<[string, Record<string, Json>, Record<string, Json>?]> = [
  ['defaults', {}],
  ['cache.direct', { cache: { direct: true } }],
  ['cache.no-flush', { cache: { 'no-flush': true } }],
  ['both cache options', { cache: { direct: true, 'no-flush': true } }],
  ['read-only', { 'read-only': true }],
  ['read-only, force-share', { 'read-only': true, 'force-share': true }],
  ['discard, detect-zeroes', { discard: 'unmap', 'detect-zeroes': 'unmap' }],
  ['detect-zeroes on', { 'detect-zeroes': 'on' }],
  // Explicit options on the child win over what it would inherit.
  ['file child explicit', { cache: { direct: true, 'no-flush': true } }, { cache: { direct: false, 'no-flush': false }, 'detect-zeroes': 'on' }],
  ['file child read-only under read-write', {}, { 'read-only': true }],
  ['backing explicit', { cache: { 'no-flush': true }, backing: { driver: 'qcow2', 'node-name': 'b', cache: { 'no-flush': false }, file: { driver: 'file', filename: '$DIR/base.qcow2' } } }],
  ['backing read-write', { backing: { driver: 'qcow2', 'node-name': 'b', 'read-only': false, file: { driver: 'file', filename: '$DIR/base.qcow2' } } }],
  ['data-file explicit', { cache: { direct: true }, 'data-file': { driver: 'file', 'node-name': 'd', filename: '$DIR/top.data', cache: { direct: false } } }],
];

describe.skipIf(!hasQsd())('inherited options per child role vs qemu-storage-daemon 7.2', () => {
  it('blockdev-add: what the file, backing and data-file children take from their parent', async () => {
    const steps: Step[] = [cap];
    for (const [, top, file] of PARENTS) {
      steps.push({ execute: 'blockdev-add', arguments: topOptions(top, file) }, nodes, { execute: 'blockdev-del', arguments: { 'node-name': 'top' } });
    }
    const r = await both('inherit-blockdev-add', setup, [], steps);
    PARENTS.forEach(([label], i) => {
      const at = 1 + i * 3;
      expect(r.ours.replies[at], `${label}: blockdev-add`).toEqual(r.qemu.replies[at]);
      expect(projection(r.ours.replies[at + 1]!), label).toEqual(projection(r.qemu.replies[at + 1]!));
      expect(r.ours.replies[at + 2], `${label}: blockdev-del`).toEqual(r.qemu.replies[at + 2]);
    });
  }, 120_000);

  it('--blockdev on the command line, and what another process may open next to a force-share parent', async () => {
    // What a reader elsewhere is told while the daemon holds the images (a write lock refuses it).
    const seen: Record<string, string[]> = {};
    const probe: Step = {
      call: (dir: string) => {
        const side = basename(dir);
        seen[side] = [];
        for (const f of ['base.qcow2', 'top.data', 'top.qcow2']) {
          const w = spawnSync('qemu-io', ['-f', f.endsWith('.data') ? 'raw' : 'qcow2', '-c', 'write 0 512', f], { cwd: dir, encoding: 'utf8' });
          seen[side]!.push(`${f}: ${w.status} ${w.stderr.replaceAll(dir, '$DIR').trim()}`);
        }
      },
    };
    const tops: Array<Record<string, Json>> = [{ 'read-only': true, 'force-share': true, cache: { 'no-flush': true } }, { 'read-only': true }, { cache: { direct: true } }];
    for (const top of tops) {
      const r = await both('inherit-cmdline', setup, blockdev(topOptions(top)), [cap, nodes, probe]);
      expect(r.ours.replies, JSON.stringify(top)).toHaveLength(2);
      expect(projection(r.ours.replies[1]!), JSON.stringify(top)).toEqual(projection(r.qemu.replies[1]!));
      expect(seen.ours, JSON.stringify(top)).toEqual(seen.qemu);
      // force-share reaches the backing file: a writer may open it then, not otherwise.
      expect(seen.qemu![0]!.startsWith('base.qcow2: 0'), JSON.stringify(top)).toBe(top['force-share'] === true);
    }
  }, 120_000);
});
