/**
 * x-debug-query-block-graph while block jobs run, against
 * qemu-storage-daemon 7.2: stream, commit of an intermediate image, active
 * commit, mirror (running, then ready) and backup, each held running by a
 * speed limit (as QEMU's iotests do) or waiting in ready, then cancelled.
 * The replies must be equal as they are, in QEMU's order (its ids number
 * the backends, the jobs, then the nodes as it meets them): the job node
 * named by the job id with its edges ("main node", "source", "target",
 * "active node", "intermediate node", "base") and their permissions, the
 * jobs' filters and their links, and the job's own BlockBackends. Only the
 * generated node names are masked (by the harness). A graph without jobs
 * before and after; and the same with an NBD export of the image, whose
 * backend moves onto each job's filter. Needs `npm run build:ts` (the bundled bin).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { both, hasQsd, jobReaches, qcow2, run, stopAll, x, type Json, type Step } from './harness.js';

afterAll(stopAll);

const graph = x('x-debug-query-block-graph');

/** Starts a job, queries the graph while it runs, cancels it and waits until it is gone. */
function during(id: string, start: Step, extra: Step[] = []): Step[] {
  return [start, graph, ...extra, x('block-job-cancel', { device: id, force: true }), jobReaches(id, 'null')];
}

/** The JOB_STATUS_CHANGE sequence of each job (the other events carry progress, which the two copy loops reach differently). */
function statuses(events: Json[]): string[] {
  return events
    .filter((e) => (e as { event: string }).event === 'JOB_STATUS_CHANGE')
    .map((e) => {
      const d = (e as { data: { id: string; status: string } }).data;
      return `${d.id}:${d.status}`;
    });
}

/** b ← m ← a, each with data in several 512 KiB chunks, and c, an empty image of the same size. */
function chain(dir: string): void {
  // Data in several 512 KiB chunks of each image: a job under a speed limit copies one
  // chunk, then waits for its rate, and always has more left (the jobs copy into the same chain).
  run('qemu-img', ['create', '-f', 'qcow2', 'b.qcow2', '4M'], dir);
  run('qemu-io', ['-c', 'write -P 5 0 128k', '-c', 'write -P 5 1M 128k', '-c', 'write -P 5 2M 128k', '-c', 'write -P 5 3M 128k', 'b.qcow2'], dir);
  run('qemu-img', ['create', '-f', 'qcow2', '-b', 'b.qcow2', '-F', 'qcow2', 'm.qcow2', '4M'], dir);
  run('qemu-io', ['-c', 'write -P 7 512k 128k', '-c', 'write -P 7 1536k 128k', '-c', 'write -P 7 2560k 128k', 'm.qcow2'], dir);
  run('qemu-img', ['create', '-f', 'qcow2', '-b', 'm.qcow2', '-F', 'qcow2', 'a.qcow2', '4M'], dir);
  run('qemu-io', ['-c', 'write -P 6 3584k 64k', 'a.qcow2'], dir);
  run('qemu-img', ['create', '-f', 'qcow2', 'c.qcow2', '4M'], dir);
}

const images = [...qcow2('b'), ...qcow2('m', { backing: 'b' }), ...qcow2('a', { backing: 'm' }), ...qcow2('c')];

describe.skipIf(!hasQsd())('x-debug-query-block-graph during block jobs against qemu-storage-daemon 7.2', () => {
  it('stream, intermediate and active commit, mirror (running and ready) and backup', async () => {
    const r = await both(
      'job-graph',
      chain,
      images,
      [
        x('qmp_capabilities'),
        graph,
        // A copy-on-read filter above a, held by the job as "main node", with the job's backend on it.
        ...during('s1', x('block-stream', { device: 'a', 'job-id': 's1', speed: 1 })),
        // commit_top above m (its "backing"), the job's backends on the base and on top.
        ...during('c1', x('block-commit', { device: 'a', 'top-node': 'm', 'job-id': 'c1', speed: 1 })),
        // Active commit: a mirror_top above a, the intermediate image held by the job.
        ...during('c2', x('block-commit', { device: 'a', 'job-id': 'c2', speed: 1 })),
        // A paused stream shows the same graph as a running one.
        ...during('s2', x('block-stream', { device: 'a', 'job-id': 's2', speed: 1 }), [x('block-job-pause', { device: 's2' }), jobReaches('s2', 'paused'), graph]),
        // Mirror while it copies (speed limit), and once ready.
        ...during('m1', x('blockdev-mirror', { device: 'a', target: 'c', sync: 'full', 'job-id': 'm1', speed: 1 }), [
          x('block-job-set-speed', { device: 'm1', speed: 0 }),
          jobReaches('m1', 'ready'),
          graph,
        ]),
        // Backup: a copy-before-write filter with the source as its file and the target as its target.
        ...during('b1', x('blockdev-backup', { device: 'a', target: 'c', sync: 'full', 'job-id': 'b1', speed: 1 })),
        graph,
      ],
    );
    expect(r.ours.replies).toEqual(r.qemu.replies);
    expect(statuses(r.ours.events)).toEqual(statuses(r.qemu.events));
    // QEMU's answers have the job nodes (a check that the script queried what it means to).
    const jobNodes = r.qemu.replies
      .map((reply) => (reply as { return?: { nodes?: Array<{ type: string; name: string }> } }).return?.nodes)
      .filter((n) => n !== undefined)
      .map((nodes) => nodes.filter((n) => n.type === 'block-job').map((n) => n.name));
    expect(jobNodes).toEqual([[], ['s1'], ['c1'], ['c2'], ['s2'], ['s2'], ['m1'], ['m1'], ['b1'], []]);
  }, 90_000);

  it('with an NBD export of the image: its backend moves onto the job filters, listed before the jobs\' own', async () => {
    const r = await both('job-graph-export', chain, images, [
      x('qmp_capabilities'),
      x('nbd-server-start', { addr: { type: 'unix', data: { path: '$DIR/nbd.sock' } } }),
      x('block-export-add', { type: 'nbd', id: 'e', 'node-name': 'a', writable: true }),
      graph,
      ...during('s1', x('block-stream', { device: 'a', 'job-id': 's1', speed: 1 })),
      ...during('m1', x('blockdev-mirror', { device: 'a', target: 'c', sync: 'full', 'job-id': 'm1', speed: 1 })),
      ...during('b1', x('blockdev-backup', { device: 'a', target: 'c', sync: 'full', 'job-id': 'b1', speed: 1 })),
      x('block-export-del', { id: 'e' }),
      graph,
    ]);
    expect(r.ours.replies).toEqual(r.qemu.replies);
    expect(statuses(r.ours.events)).toEqual(statuses(r.qemu.events));
  }, 90_000);
});
