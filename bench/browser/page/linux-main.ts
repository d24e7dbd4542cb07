/**
 * The Linux guest bench page (bench/browser/linux.ts drives it): boots the
 * guest of scripts/build-linux-guest.mjs with its disk either a DiskWorker
 * qcow2 overlay in OPFS over the HTTP-served root image, or the same image
 * (raw) as an in-memory ArrayBuffer, and times, inside the guest, sequential
 * dd writes and reads and random 4 KiB reads (busybox, O_DIRECT reads of
 * /dev/sda so the guest's page cache does not answer).
 */
import { DiskWorker, toV86Buffer } from '../../../src/client/index.js';
import { bootLinux } from '../../../e2e/harness/linux-guest.js';

let dw: DiskWorker | null = null;

async function diskworker(): Promise<DiskWorker> {
  if (!dw) {
    const worker = new Worker(new URL('./bench-worker.ts', import.meta.url), { type: 'module', name: 'diskworker-bench' });
    dw = await DiskWorker.start({ worker });
  }
  return dw;
}

export interface LinuxRun {
  mode: 'diskworker' | 'memory';
  bootMs: number;
  writeMs: number;
  readMs: number;
  randomMs: number;
  mib: number;
  randomReads: number;
}

/** One boot and the dd runs; `mib` MiB written then read, `randomReads` 4 KiB reads. */
async function run(mode: LinuxRun['mode'], mib: number, randomReads: number, diskBytes: number): Promise<LinuxRun> {
  let hda: unknown;
  let close = async () => {};
  if (mode === 'memory') {
    hda = { buffer: await (await fetch('/linux/root.raw')).arrayBuffer() };
  } else {
    const d = await diskworker();
    const path = 'opfs:/linux-bench/overlay.qcow2';
    await d.remove(path).catch(() => undefined);
    await d.create({ path, format: 'qcow2', size: diskBytes, backingFile: `${location.origin}/linux/root.qcow2`, backingFormat: 'qcow2' });
    const disk = await d.open({ path, allowBackingProtocols: ['http'] });
    const buf = toV86Buffer(disk);
    hda = buf;
    close = async () => {
      await buf.flush();
      await disk.close();
    };
  }
  const guest = await bootLinux({ hda, bootTimeoutMs: 900_000 });
  const timed = async (cmd: string) => {
    const t = performance.now();
    const r = await guest.run(cmd, 1_800_000);
    if (r.status !== 0) throw new Error(`${cmd}: exit ${r.status}: ${r.out}`);
    return performance.now() - t;
  };
  const writeMs = await timed(`dd if=/dev/zero of=/mnt/dd.bin bs=1048576 count=${mib} conv=fsync 2>/dev/null`);
  // Reads of the file just written (O_DIRECT, caches dropped): they reach the disk's own
  // clusters, not the HTTP base under the overlay.
  await timed('sync; echo 3 > /proc/sys/vm/drop_caches');
  const readMs = await timed(`dd if=/mnt/dd.bin of=/dev/null bs=1048576 iflag=direct 2>/dev/null`);
  const blocks = mib * 256;
  const randomMs = await timed(`i=0; while [ $i -lt ${randomReads} ]; do dd if=/mnt/dd.bin of=/dev/null bs=4096 count=1 skip=$(( (RANDOM * 32768 + RANDOM) % ${blocks} )) iflag=direct 2>/dev/null; i=$((i + 1)); done`);
  await guest.stop();
  await close();
  return { mode, bootMs: guest.bootMs, writeMs, readMs, randomMs, mib, randomReads };
}

const linuxBench = { run };
declare global {
  interface Window {
    linuxBench: typeof linuxBench;
  }
}
window.linuxBench = linuxBench;
document.getElementById('log')!.textContent = 'ready';
document.title = 'linux bench ready';
