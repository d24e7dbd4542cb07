/**
 * The seeded qemu-io sessions of the format io-diff tests (qcow, qed): writes,
 * zero writes, vectored and aio requests, reads, alloc / map / flush / info,
 * the same sequence for the same seed.
 */
import { prng } from '../prng.js';

const MiB = 1 << 20;

/** A seeded session of `n` commands on an image of `size` bytes; `scale` shrinks or grows the request sizes. */
export function session(seed: number, size: number, n: number, scale = 1): string[] {
  const rnd = prng(seed);
  const range = (max: number): [number, number] => {
    const unit = rnd() < 0.5 ? 512 : 4096;
    const len = Math.max(unit, Math.floor((rnd() * Math.min(size, max * scale)) / unit) * unit);
    return [Math.floor((rnd() * (size - len)) / unit) * unit, len];
  };
  const cmds: string[] = [];
  for (let i = 0; i < n; i++) {
    const k = rnd();
    const p = `0x${(1 + Math.floor(rnd() * 254)).toString(16)}`;
    if (k < 0.35) {
      const [o, l] = range(2.5 * MiB);
      cmds.push(`write -P ${p} ${o} ${l}`);
    } else if (k < 0.47) {
      const [o, l] = range(2 * MiB);
      cmds.push(`write -z ${rnd() < 0.5 ? '-u ' : ''}${o} ${l}`);
    } else if (k < 0.55) {
      const [o, l] = range(MiB);
      const half = Math.max(512, Math.floor(l / 1024) * 512);
      cmds.push(`writev -P ${p} ${o} ${half} ${Math.max(512, l - half)}`);
    } else if (k < 0.65) {
      const [o, l] = range(48);
      cmds.push(`read -v ${o} ${l}`);
    } else if (k < 0.72) {
      const [o, l] = range(4 * MiB);
      cmds.push(`alloc ${o} ${l}`);
    } else if (k < 0.77) {
      cmds.push('map');
    } else if (k < 0.84) {
      const [o, l] = range(MiB);
      cmds.push(`readv -P 0 ${o} ${l}`);
    } else if (k < 0.9) {
      const [o, l] = range(MiB);
      cmds.push(`aio_write -P ${p} ${o} ${l}`, 'aio_flush');
    } else if (k < 0.95) {
      cmds.push('flush');
    } else {
      cmds.push('info');
    }
  }
  return cmds;
}
