/**
 * blockdev-add of NBD client nodes (src/protocols/nbd.ts) against
 * qemu-storage-daemon 7.2: each daemon connects to its own qemu-nbd serving
 * the same raw image. Good nodes open and show the same in
 * query-named-block-nodes; bad server addresses, members, a refused
 * connection and an unknown export fail with QEMU's errors. Needs
 * `npm run build:ts`.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { both, hasQsd, run, sortNodes, stopAll, x, type Json, type Step } from './harness.js';

afterAll(stopAll);

const server = { type: 'unix', path: '$DIR/s.sock' };
const add = (args: Record<string, Json>): Step => x('blockdev-add', args);

describe.skipIf(!hasQsd())('NBD client nodes vs qemu-storage-daemon 7.2', () => {
  it('blockdev-add opens an export and refuses what QEMU refuses', async () => {
    const pids: string[] = [];
    try {
      const r = await both(
        'nbd-client',
        (dir) => {
          run('qemu-img', ['create', '-f', 'raw', 'a.raw', '1M'], dir);
          run('qemu-io', ['-f', 'raw', '-c', 'write -P 7 0 64k', 'a.raw'], dir);
          run('qemu-nbd', ['-k', join(dir, 's.sock'), '-t', '-e', '8', '-x', 'e1', '--fork', '--pid-file', join(dir, 'nbd.pid'), '-f', 'raw', 'a.raw'], dir);
          pids.push(readFileSync(join(dir, 'nbd.pid'), 'utf8').trim());
        },
        [],
        [
          x('qmp_capabilities'),
          add({ driver: 'nbd', 'node-name': 'n0', server, export: 'e1' }),
          add({ driver: 'raw', 'node-name': 'r0', file: 'n0' }),
          add({ driver: 'nbd', 'node-name': 'n1', server: { type: 'unix' } }),
          add({ driver: 'nbd', 'node-name': 'n2', server, 'reconnect-delay': 'x' }),
          add({ driver: 'nbd', 'node-name': 'n3', server, exportx: 'e1' }),
          add({ driver: 'nbd', 'node-name': 'n4', server: { type: 'inet', host: '127.0.0.1', port: '1' } }),
          add({ driver: 'nbd', 'node-name': 'n5', server, export: 'nope' }),
          add({ driver: 'nbd', 'node-name': 'n6', server: { type: 'unix', path: '$DIR/missing.sock' } }),
          add({ driver: 'nbd', 'node-name': 'n7', server: { type: 'inet', host: '127.0.0.1' } }),
          add({ driver: 'nbd', 'node-name': 'n8' }),
          x('query-named-block-nodes', { flat: true }),
          x('blockdev-del', { 'node-name': 'r0' }),
          x('blockdev-del', { 'node-name': 'n0' }),
          x('query-named-block-nodes', { flat: true }),
        ],
      );
      const norm = (replies: Json[]) => replies.map((rep) => sortNodes(rep));
      expect(norm(r.ours.replies)).toEqual(norm(r.qemu.replies));
      expect(JSON.stringify(r.qemu.replies[1])).toBe('{"return":{}}');
    } finally {
      for (const pid of pids) process.kill(Number(pid), 'SIGTERM');
    }
  });
});
