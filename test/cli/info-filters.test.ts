/**
 * `img info --image-opts` with filter nodes on top of or under a qcow2 image,
 * against qemu-img 7.2 on the same files (info only reads, so both tools look
 * at the same bytes): every line of the human and JSON output, the disk size
 * included (unavailable through blkdebug, which QEMU does not look through;
 * the file's allocation through preallocate), and the exit code. QEMU reports
 * the top node: its refreshed name, its driver as the format (blkdebug, not
 * the qcow2 below), generic info found through filters, snapshots through
 * filters, no format-specific part for a filter. copy-on-read refuses a
 * read-only open as QEMU does.
 */
import { describe, it, expect, afterAll, beforeAll } from 'vitest';
import { ours, theirs } from './harness.js';
import { qemuImg, tempDir } from '../formats/qcow2/helpers.js';

const t = tempDir();
afterAll(() => t.cleanup());
beforeAll(() => {
  qemuImg('create', '-q', '-f', 'qcow2', t.path('plain.qcow2'), '1M');
  qemuImg('create', '-q', '-f', 'qcow2', t.path('snap.qcow2'), '2M');
  qemuImg('snapshot', '-c', 's1', t.path('snap.qcow2'));
  qemuImg('create', '-q', '-f', 'qcow2', '-b', 'plain.qcow2', '-F', 'qcow2', t.path('over.qcow2'), '1M');
});

const optionStrings = (img: string): string[] => [
  `driver=blkdebug,image.driver=qcow2,image.file.filename=${img}`,
  `driver=blkdebug,image.filename=${img}`,
  `driver=qcow2,file.driver=blkdebug,file.image.filename=${img}`,
  `driver=raw,file.driver=blkdebug,file.image.filename=${img}`,
  `driver=copy-on-read,file.driver=qcow2,file.file.filename=${img}`,
  `driver=preallocate,file.driver=qcow2,file.file.filename=${img}`,
  `driver=qcow2,file.driver=preallocate,file.file.filename=${img}`,
  `driver=compress,file.driver=qcow2,file.file.filename=${img}`,
  `driver=throttle,throttle-group=g0,file.driver=qcow2,file.file.filename=${img}`,
  `driver=raw,offset=512,file.driver=file,file.filename=${img}`,
  `driver=file,filename=${img}`,
];

describe('img info on filter nodes prints what qemu-img 7.2 prints', () => {
  for (const img of ['plain.qcow2', 'snap.qcow2', 'over.qcow2']) {
    for (const opts of optionStrings(img)) {
      for (const output of ['human', 'json']) {
        it(`${opts} (${output})`, async () => {
          const args = ['info', `--output=${output}`, '--object', 'throttle-group,id=g0', '--image-opts', opts];
          const q = theirs('img', args, t.dir);
          const d = await ours('img', args, t.dir);
          expect({ ...d, stderr: d.stderr.replace(/^diskworker img: /gm, 'qemu-img: ') }).toEqual(q);
        });
      }
    }
  }
});
