/**
 * By hand: the jobs of bench/jobs/mirror-stream.ts and in-process converts,
 * interleaved, median wall and CPU time (process.cpuUsage) of each. Needs
 * full.qcow2 (a fully allocated 1 GiB qcow2, e.g. from
 * bench/cli/convert.ts's makeConvertImages) in BENCH_PROBE_DIR (default
 * /dev/shm/js). Run from the repository root:
 *   npx tsx bench/research/jobs-probe.ts mirror,convert,stream,cstream 5
 * (cstream: convert of the stream's chain, top.qcow2 over full.qcow2).
 */
import { mirrorJob } from '../../src/jobs/mirror.js';
import { streamJob } from '../../src/jobs/stream.js';
import { sh } from '../cli/convert.js';
import { SIZE, convertInProcess, msOf, openGuest, openTarget, remove, runJob } from '../jobs/common.js';
const dir = process.env['BENCH_PROBE_DIR'] ?? '/dev/shm/js';
const list = (process.argv[2] ?? 'mirror').split(',');
const reps = Number(process.argv[3] ?? 1);
const res: Record<string, number[][]> = {};
for (let i = 0; i < reps * list.length; i++) {
  const which = list[i % list.length]!;
  const tag = which;
  const c0 = process.cpuUsage();
  let ms = 0;
  if (which === 'mirror') {
    remove(dir, 'target.qcow2');
    sh('qemu-img', ['create', '-q', '-f', 'qcow2', 'target.qcow2', String(SIZE)], dir);
    ms = await msOf(async () => {
      const { graph, guest } = await openGuest(dir, 'full.qcow2');
      const target = await openTarget(graph, dir, 'target.qcow2');
      const driver = mirrorJob({ graph, source: guest.node, target, sync: 'full' });
      await target.unref();
      await runJob(driver, true);
      await guest.close();
      await graph.closeAll();
    });
  } else if (which === 'stream') {
    remove(dir, 'top.qcow2');
    sh('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'full.qcow2', '-F', 'qcow2', 'top.qcow2'], dir);
    ms = await msOf(async () => {
      const { graph, guest } = await openGuest(dir, 'top.qcow2');
      await runJob(streamJob({ graph, top: guest.node }), false);
      await guest.close();
      await graph.closeAll();
    });
  } else {
    remove(dir, 'out.qcow2');
    ms = await msOf(() => convertInProcess(dir, ['-O', 'qcow2', which === 'cstream' ? 'top.qcow2' : 'full.qcow2', 'out.qcow2']));
  }
  const c = process.cpuUsage(c0);
  (res[tag] ??= []).push([ms, (c.user + c.system) / 1000]);
}
const med = (a: number[]) => a.sort((x, y) => x - y)[Math.floor(a.length / 2)]!;
for (const [k, v] of Object.entries(res)) console.log(k, 'n', v.length, 'wall', med(v.map((x) => x[0])).toFixed(0), 'cpu', med(v.map((x) => x[1])).toFixed(0));
