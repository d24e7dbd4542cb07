/**
 * The names `img info` shows (QEMU's bdrv_refresh_filename) against
 * qemu-img 7.2 over the same images: plain names where the file's name opens
 * the same node, `json:{...}` with the strong options and children where it
 * does not (raw offset/size, null-co size, blkdebug rules, filters, quorum),
 * blkdebug:CONF:IMAGE names, both output formats and --image-opts. Then every
 * json: name we print is given back to qemu-img, which must open it and show
 * the name both then show must be the same; the json: names of either side
 * read the same in qemu-io and `diskworker io`, and so do those of graphs
 * only a read-write open makes (copy-on-read, blkdebug over qcow2). Overlays
 * with json: backing names, and backing options refused beside qemu-img
 * info's no-backing open (BDRV_O_NO_BACKING), as qemu-img refuses them.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { Fixture, golden, hasQemu, normalize, ours, words } from './harness.js';
import { Ctx } from '../../src/cli/img/context.js';

function build(_dir: string, sh: (cmd: string) => void): void {
  sh('qemu-img create -q -f raw r.img 1M && qemu-img create -q -f raw r2.img 1M');
  sh('qemu-img create -q -f qcow2 base.qcow2 1M && qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2');
  sh(': > empty.conf');
  // Overlays whose backing file is a json: name (as QEMU writes one over a node without a plain name).
  sh(`qemu-img create -q -f qcow2 -b '${RAW_OFFSET_BACKING}' -F raw ov.qcow2`);
  sh(`qemu-img create -q -f qcow2 -b '${BLKDEBUG_BACKING}' -F blkdebug ov2.qcow2`);
  sh(`qemu-io -f raw -c 'write -P 0x5a 0 1M' r.img >/dev/null`);
}

const RAW_OFFSET_BACKING = 'json:{"driver":"raw","offset":512,"size":4096,"file":{"driver":"file","filename":"r.img"}}';
const BLKDEBUG_BACKING = 'json:{"driver":"blkdebug","inject-error":[{"event":"read_aio","errno":5}],"image":{"driver":"qcow2","file":{"driver":"file","filename":"base.qcow2"}}}';

const FILE = (name: string) => `{"driver":"file","filename":"${name}"}`;

/** One image spec each: a json: name (or plain one), or --image-opts options after `opts:`. */
const SPECS: string[] = [
  'top.qcow2',
  `json:{"driver":"raw","offset":512,"size":1024,"file":${FILE('r.img')}}`,
  `json:{"driver":"raw","file":${FILE('r.img')}}`,
  `json:{"driver":"qcow2","file":{"driver":"file","filename":"top.qcow2","aio":"threads"}}`,
  `json:{"driver":"file","filename":"r.img","locking":"off"}`,
  `json:{"driver":"raw","file":{"driver":"null-co","size":1024}}`,
  'json:{"driver":"null-co","size":1024,"read-zeroes":true}',
  'json:{"driver":"null-co","latency-ns":5}',
  'null-co://',
  `json:{"driver":"blkdebug","config":"empty.conf","image":${FILE('r.img')}}`,
  `json:{"driver":"raw","file":{"driver":"blkdebug","config":"empty.conf","image":${FILE('r.img')}}}`,
  `json:{"driver":"raw","file":{"driver":"blkdebug","align":4096,"image":${FILE('r.img')}}}`,
  `json:{"driver":"raw","file":{"driver":"blkdebug","inject-error":[{"event":"read_aio","errno":5}],"image":${FILE('r.img')}}}`,
  `json:{"driver":"blkdebug","inject-error":[{"event":"read_aio","errno":5}],"set-state":[{"event":"write_aio","new_state":2}],"image":${FILE('r.img')}}`,
  `json:{"driver":"raw","file":{"driver":"blkdebug","inject-error.1.event":"write_aio","inject-error.0.errno":5,"inject-error.0.event":"read_aio","image":${FILE('r.img')}}}`,
  `json:{"driver":"raw","file":{"driver":"blkdebug","inject-error":[{"event":"write_aio"},{"event":"read_aio","errno":5}],"image":${FILE('r.img')}}}`,
  'blkdebug:empty.conf:r.img',
  `json:{"driver":"quorum","vote-threshold":1,"children":[${FILE('r.img')},${FILE('r2.img')}]}`,
  `json:{"driver":"compress","file":{"driver":"qcow2","file":${FILE('top.qcow2')}}}`,
  `json:{"driver":"preallocate","file":${FILE('r.img')}}`,
  `json:{"driver":"raw","file":{"driver":"preallocate","file":${FILE('r.img')}}}`,
  'opts:driver=raw,offset=512,file.filename=r.img',
  'throttle:driver=throttle,throttle-group=tg,file.driver=qcow2,file.file.filename=top.qcow2',
  'opts:driver=null-co,size=4096',
  'opts:driver=blkdebug,image.filename=r.img,align=4096',
  'opts:driver=qcow2,file.driver=raw,file.size=196608,file.file.filename=top.qcow2',
  `json:{"driver":"blkdebug","inject-error":[{"event":"read_aio","errno":5,"once":true}],"set-state":[{"event":"write_aio","new_state":2}],"image":{"driver":"qcow2","file":${FILE('top.qcow2')}}}`,
  'ov.qcow2',
  'ov2.qcow2',
];

function infoArgs(spec: string, json: boolean): string[] {
  const out = json ? ['--output=json'] : [];
  if (spec.startsWith('throttle:')) return ['info', '-U', ...out, '--object', 'throttle-group,id=tg', '--image-opts', spec.slice(9)];
  return spec.startsWith('opts:') ? ['info', '-U', ...out, '--image-opts', spec.slice(5)] : ['info', '-U', ...out, spec];
}

describe.skipIf(!hasQemu())('img info names vs qemu-img 7.2', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture(build);
  });
  afterAll(() => fx.dispose());

  for (const spec of SPECS) {
    it(`image: and "filename" of ${spec}`, async () => {
      for (const json of [false, true]) {
        const g = await golden(fx, { tool: 'img', args: infoArgs(spec, json) });
        expect(g.ours.code).toBe(0);
        expect(g.theirs.code).toBe(0);
        const name = (out: string) => (json ? /^ {4}"filename": (.*),$/m.exec(out)?.[1] : /^image: (.*)$/m.exec(out)?.[1]);
        expect(name(g.ours.stdout)).toBe(name(g.theirs.stdout));
        expect(name(g.ours.stdout)).toBeDefined();
      }
    });
  }

  it('every json: name we print opens in qemu-img, and both then show the same name', async () => {
    const dir = fx.copy();
    let checked = 0;
    for (const spec of SPECS) {
      const r = await ours('img', infoArgs(spec, false), dir);
      const name = /^image: (.*)$/m.exec(r.stdout)![1]!;
      if (!name.startsWith('json:')) continue;
      // A throttle node needs its group again.
      const obj = spec.startsWith('throttle:') ? ['--object', 'throttle-group,id=tg'] : [];
      const q = spawnSync('qemu-img', ['info', '-U', ...obj, name], { cwd: dir, encoding: 'utf8' });
      expect(q.status, `${name}: ${q.stderr}`).toBe(0);
      // Opened again from that name, both show the same name (QEMU's is not always the name given:
      // options of one hash bucket come out in another order).
      const again = await ours('img', ['info', '-U', ...obj, name], dir);
      expect(/^image: (.*)$/m.exec(again.stdout)?.[1]).toBe(/^image: (.*)$/m.exec(q.stdout)![1]);
      checked++;
    }
    expect(checked).toBeGreaterThanOrEqual(12);
  });

  it("json: names we print, and QEMU's, read the same in qemu-io and in diskworker io", async () => {
    const dir = fx.copy();
    /** `io -c 'read -v 0 16' -c 'read -v 1000 8'` (read-only, shared) of `name` in both tools: the same output. */
    const read = async (name: string, obj: string[]) => {
      const args = ['-r', '-U', ...obj, '-c', 'read -v 0 16', '-c', 'read -v 1000 8', name];
      const q = spawnSync('qemu-io', args, { cwd: dir, encoding: 'utf8' });
      const d = await ours('io', args, dir);
      const show = (code: number | null, out: string) => `${code} ${normalize(out).replace(/^.*ops; .*$/gm, '')}`;
      expect(show(d.code, d.stdout + d.stderr), name).toBe(show(q.status, q.stdout + q.stderr));
      // Opened (a blkdebug rule may still fail the reads, in both).
      expect(q.stderr, name).not.toMatch(/can't open/);
    };
    let checked = 0;
    for (const spec of SPECS) {
      const obj = spec.startsWith('throttle:') ? ['--object', 'throttle-group,id=tg'] : [];
      const mine = /^image: (.*)$/m.exec((await ours('img', infoArgs(spec, false), dir)).stdout)![1]!;
      const theirs = /^image: (.*)$/m.exec(spawnSync('qemu-img', infoArgs(spec, false), { cwd: dir, encoding: 'utf8' }).stdout)![1]!;
      for (const name of new Set([mine, theirs])) {
        if (!name.startsWith('json:')) continue;
        await read(name, obj);
        checked++;
      }
    }
    expect(checked).toBeGreaterThanOrEqual(14);
  });

  it('the names of graphs opened read-write (copy-on-read, blkdebug over qcow2, raw with offset) open in qemu-io', async () => {
    const dir = fx.copy();
    const specs = [
      `driver=copy-on-read,file.driver=qcow2,file.file.filename=${dir}/top.qcow2`,
      `driver=copy-on-read,bottom=b,file.driver=qcow2,file.node-name=t,file.file.filename=${dir}/top.qcow2,file.backing.node-name=b,file.backing.driver=qcow2,file.backing.file.filename=${dir}/base.qcow2`,
      `driver=blkdebug,inject-error.0.event=write_aio,inject-error.0.errno=28,image.driver=qcow2,image.file.filename=${dir}/top.qcow2`,
      `driver=raw,offset=1024,size=8192,file.driver=file,file.filename=${dir}/r.img`,
    ];
    for (const spec of specs) {
      const ctx = new Ctx({ stdout: () => undefined, stderr: () => undefined });
      ctx.imageOpts = true;
      let name: string;
      try {
        const bb = await ctx.open(spec, undefined, { readOnly: false });
        // Relative again: each tool runs in its own copy of the directory.
        name = bb.node.filename.replaceAll(`${dir}/`, '');
      } finally {
        await ctx.closeAll();
      }
      expect(name, spec).toMatch(/^json:\{/);
      const args = words(`-c 'read -v 0 16' -c 'write -P 3 0 512' -c 'read -v 0 16'`).concat([name]);
      const q = spawnSync('qemu-io', args, { cwd: fx.copy(), encoding: 'utf8' });
      const d = await ours('io', args, fx.copy());
      const show = (code: number | null, out: string) => `${code} ${normalize(out).replace(/^.*ops; .*$/gm, '')}`;
      expect(show(d.code, d.stdout + d.stderr), name).toBe(show(q.status, q.stdout + q.stderr));
    }
  });

  it('backing options beside the no-backing open of qemu-img info are refused as QEMU refuses them', async () => {
    for (const line of [
      'info -U --image-opts driver=qcow2,file.filename=top.qcow2,backing.driver=raw,backing.offset=512,backing.file.filename=r.img',
      'info -U --image-opts driver=qcow2,file.filename=top.qcow2,backing.driver=blkdebug,backing.image.driver=qcow2,backing.image.file.filename=base.qcow2',
      'info -U --image-opts driver=qcow2,file.filename=top.qcow2,backing=r',
      'info -U --image-opts driver=qcow2,file.filename=top.qcow2,foo=1,bar=2,baz.x=3',
      `info -U json:{"driver":"qcow2","file":{"driver":"file","filename":"top.qcow2"},"backing":{"driver":"raw","file":{"driver":"file","filename":"r.img"}}}`,
      `info -U json:{"driver":"qcow2","file":{"driver":"file","filename":"top.qcow2"},"backing":null}`,
    ]) {
      const g = await golden(fx, { tool: 'img', args: line.startsWith('info -U json:') ? ['info', '-U', line.slice(8)] : words(line) });
      expect(g.ours, line).toEqual(g.theirs);
    }
  });
});
