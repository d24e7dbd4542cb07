/**
 * Golden tests for `diskworker img`: the same command line through qemu-img
 * 7.2 and through diskworker, on copies of the same images, must give the same
 * exit code, stdout and stderr (timings, disk usage and the program name
 * filtered), and where a command writes, images with the same contents.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { Fixture, golden, hasQemu, words, ours, theirs } from './harness.js';


function build(_dir: string, sh: (cmd: string) => void): void {
  // Raw images are written in full: Node sees holes only by reading zeros (no
  // SEEK_DATA), so zeros written into a sparse raw file map differently by design.
  sh('qemu-img create -q -f raw a.raw 1M');
  sh(`qemu-io -f raw -c 'write -P 1 0 64k' -c 'write -P 0 64k 448k' -c 'write -P 2 512k 4k' -c 'write -P 0 516k 508k' a.raw >/dev/null`);
  sh('cp a.raw b.raw');
  sh(`qemu-io -f raw -c 'write -P 3 520k 1' b.raw >/dev/null`);
  sh('cp a.raw c.raw');
  sh('qemu-img create -q -f raw big.raw 2M');
  sh(`qemu-io -f raw -c 'write -P 0 0 2M' -c 'write -P 5 1M 4k' big.raw >/dev/null`);
  // qcow2 with compressed, normal, zero and unallocated clusters.
  sh('qemu-img create -q -f qcow2 z.qcow2 1M');
  sh(`qemu-io -f qcow2 -c 'write -c -P 1 0 64k' -c 'write -P 2 128k 64k' -c 'write -z 256k 64k' z.qcow2 >/dev/null`);
  sh('qemu-img create -q -f qcow2 -b z.qcow2 -F qcow2 o.qcow2');
  sh(`qemu-io -c 'write -P 9 64k 4k' o.qcow2 >/dev/null`);
  sh('qemu-img create -q -f qcow2 -b a.raw -F raw ov.qcow2');
  sh(`qemu-io -c 'write -P 9 64k 4k' ov.qcow2 >/dev/null`);
  // A three-level chain for commit / rebase.
  sh('qemu-img create -q -f qcow2 base.qcow2 1M');
  sh(`qemu-io -c 'write -P 1 0 256k' base.qcow2 >/dev/null`);
  sh('qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 mid.qcow2');
  sh(`qemu-io -c 'write -P 2 64k 64k' mid.qcow2 >/dev/null`);
  sh('qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 top.qcow2');
  sh(`qemu-io -c 'write -P 3 128k 64k' -c 'write -z 192k 4k' top.qcow2 >/dev/null`);
  // The last cluster of the file holds data (block status must not call it zero).
  sh('qemu-img create -q -f qcow2 tail.qcow2 1M');
  sh(`qemu-io -c 'write -P 2 128k 64k' tail.qcow2 >/dev/null`);
    // An overlay whose backing file is missing, and a directory.
  sh('qemu-img create -q -f qcow2 -u -b nonexist.qcow2 -F qcow2 miss.qcow2 1M');
  sh('mkdir adir');
    // One leaked cluster (refcount 1, no reference).
  sh('qemu-img create -q -f qcow2 leak.qcow2 1M');
  sh(`qemu-io -c 'write -P 1 0 64k' leak.qcow2 >/dev/null`);
  sh(`node ${JSON.stringify(join(__dirname, 'make-leak.cjs'))} leak.qcow2`);
    // A lazy-refcounts image left dirty by a crash (qemu-io's abort).
  sh('qemu-img create -q -f qcow2 -o lazy_refcounts=on dirty.qcow2 1M');
  sh(`qemu-io -c 'write -P 1 0 128k' -c abort dirty.qcow2 >/dev/null 2>&1 || true`);
    sh('qemu-img create -q -f qcow2 snap.qcow2 1M');
  sh('qemu-img snapshot -c first snap.qcow2');
  sh(`qemu-io -c 'write -P 4 0 64k' snap.qcow2 >/dev/null`);
  sh('qemu-img snapshot -c a-rather-long-snapshot-name snap.qcow2');
  sh('qemu-img create -q -f qcow2 -o cluster_size=4k,lazy_refcounts=on small.qcow2 256k');

  sh(`qemu-io -c 'write -P 7 0 12k' small.qcow2 >/dev/null`);
  // A cluster shared by a snapshot and the active table whose refcount is
  // one too low (refcount 1, two references; cluster 7 holds the data).
  sh('qemu-img create -q -f qcow2 shared.qcow2 1M');
  sh('qemu-img snapshot -c first shared.qcow2');
  sh(`qemu-io -c 'write -P 4 0 64k' shared.qcow2 >/dev/null`);
  sh('qemu-img snapshot -c second shared.qcow2');
  sh(`node ${JSON.stringify(join(__dirname, 'poke-qcow2.cjs'))} refcount shared.qcow2 7 1`);
  // Persistent bitmaps (measure counts their room).
  sh('qemu-img create -q -f qcow2 bm.qcow2 3M');
  sh('qemu-img bitmap --add bm.qcow2 b0');
  sh('qemu-img bitmap --add -g 512 bm.qcow2 a-longer-bitmap-name');
  sh('qemu-img create -q -f qcow2 -o compat=0.10 v2.qcow2 1M');
  // An image with the corrupt bit set.
  sh('qemu-img create -q -f qcow2 corrupt.qcow2 1M');
  sh(`qemu-io -c 'write -P 1 0 64k' corrupt.qcow2 >/dev/null`);
  sh(`node ${JSON.stringify(join(__dirname, 'poke-qcow2.cjs'))} corrupt corrupt.qcow2`);
}

interface Row {
  line: string;
  sameImages?: string[];
}

const r = (line: string, sameImages?: string[]): Row => ({ line, ...(sameImages ? { sameImages } : {}) });

const CASES: Record<string, Row[]> = {
  global: [r(''), r('frob'), r('-Z info a.raw')],
  snapshot: [
    r('snapshot -l snap.qcow2'),
    r('snapshot -U -l snap.qcow2'),
    r('snapshot -l z.qcow2'),
    r('snapshot -l a.raw'),
    r('snapshot -f qcow2 -l snap.qcow2'),
    r('snapshot -l -c x snap.qcow2'),
    r('snapshot -a first -d first snap.qcow2'),
    r('snapshot -l'),
    r('snapshot -c'),
    r('snapshot -l snap.qcow2 z.qcow2'),
    r('snapshot snap.qcow2', ['snap.qcow2']),
    r('snapshot -l nonexist.qcow2'),
    r('snapshot -a nope snap.qcow2', ['snap.qcow2']),
    r('snapshot -a 99 snap.qcow2', ['snap.qcow2']),
    r('snapshot -d nope snap.qcow2', ['snap.qcow2']),
    r('snapshot -d 1 snap.qcow2', ['snap.qcow2']),
    r('snapshot -a first snap.qcow2', ['snap.qcow2']),
    r('snapshot -a 2 snap.qcow2', ['snap.qcow2']),
    r('snapshot -d first snap.qcow2', ['snap.qcow2']),
    r('snapshot -q -d a-rather-long-snapshot-name snap.qcow2', ['snap.qcow2']),
    r('snapshot -c x a.raw'),
    r('snapshot -a x a.raw'),
    r('snapshot -d x a.raw'),
    r('snapshot -c x -f raw a.raw'),
    r('snapshot -a first bm.qcow2'),
    r('snapshot -c x corrupt.qcow2'),
    r('snapshot -c x o.qcow2', ['o.qcow2']),
    r('snapshot -c x v2.qcow2', ['v2.qcow2']),
    r('convert -l first -O raw snap.qcow2 out.raw', ['out.raw']),
    r('convert -l 2 -O qcow2 snap.qcow2 out.qcow2', ['out.qcow2']),
    r('convert -l snapshot.name=first -O raw snap.qcow2 out.raw', ['out.raw']),
    r('convert -l snapshot.id=1,snapshot.name=first -O raw snap.qcow2 out.raw', ['out.raw']),
    r('convert -l snapshot.id=1,snapshot.name=nope -O raw snap.qcow2 out.raw'),
    r('convert -l snapshot.bad=1 -O raw snap.qcow2 out.raw'),
    r('convert -l snapshot.name -O raw snap.qcow2 out.raw'),
    r('convert -l nope -O raw snap.qcow2 out.raw'),
    r('convert -l first -O raw snap.qcow2 z.qcow2 out.raw'),
    r('convert -l first -O raw a.raw out.raw'),
    r('measure -l first -O qcow2 snap.qcow2'),
    r('measure -l snapshot.id=2 --output=json -O qcow2 snap.qcow2'),
    r('measure -l nope -O qcow2 snap.qcow2'),
    r('measure -l first --size 1M -O qcow2'),
    r('measure -f qcow2 --size 1M -O qcow2'),
  ],
  info: [
    r('info a.raw'),
    r('info -f raw a.raw'),
    r('info --output=json a.raw'),
    r('info --backing-chain --output=json a.raw'),
    r('info z.qcow2'),
    r('info --output=json z.qcow2'),
    r('info -U --output=json small.qcow2'),
    r('info --backing-chain o.qcow2'),
    r('info --backing-chain --output=json o.qcow2'),
    r('info --backing-chain top.qcow2'),
    r('info --output=json ov.qcow2'),
    r('info snap.qcow2'),
    r('info --output=json snap.qcow2'),
    r('map --output=json snap.qcow2'),
    r('check snap.qcow2'),
    r('check leak.qcow2'),
    r('check --output=json leak.qcow2'),
    r('check -q leak.qcow2'),
    r('check -r leaks leak.qcow2', ['leak.qcow2']),
    r('check -r all --output=json leak.qcow2', ['leak.qcow2']),
    r('check dirty.qcow2'),
    r('check --output=json dirty.qcow2'),
    r('info dirty.qcow2'),
    r('check -r leaks dirty.qcow2', ['dirty.qcow2']),
    r('check -r all dirty.qcow2', ['dirty.qcow2']),
    r('check -f qcow2 -r leaks dirty.qcow2', ['dirty.qcow2']),
    r('check -r all --image-opts driver=qcow2,file.filename=dirty.qcow2', ['dirty.qcow2']),
    r('check -r all --image-opts file.filename=dirty.qcow2', ['dirty.qcow2']),
    r('info nonexist'),
    r('info'),
    r('info a.raw b.raw'),
    r('info --output=xml a.raw'),
    r('info -Z a.raw'),
    r('info --foo a.raw'),
    r('info -f'),
    r('info --output'),
    r('info -f qcow2 a.raw'),
    r('info -f foo a.raw'),
    r('info miss.qcow2'),
    r('info --backing-chain miss.qcow2'),
    r('map miss.qcow2'),
    r('check miss.qcow2'),
    r('compare miss.qcow2 z.qcow2'),
    r('convert -O raw miss.qcow2 out.raw'),
    r('create -f qcow2 -b miss.qcow2 -F qcow2 q.qcow2'),
    r('info adir'),
    r('info -f raw adir'),
    r('info --image-opts driver=qcow2,file.filename=z.qcow2'),
    r('info --image-opts -f qcow2 driver=qcow2,file.filename=z.qcow2'),
  ],
  create: [
    r('create -f raw x.raw 1M', ['x.raw']),
    r('create -f raw x.raw 1.5M'),
    r('create -f raw -o size=2M x.raw'),
    r('create -q -f raw x.raw 1M'),
    r('create -f raw x.raw 1x'),
    r('create -f raw x.raw'),
    r('create -f foo x.raw 1M'),
    r('create -f raw x.raw -- -1'),
    r('create -f raw -o foo=bar x.raw 1M'),
    r('create -f raw x.raw 1M extra'),
    r('create -f raw -o help'),
    r('create -f qcow2 -o help'),
    r('create -f qcow2 q.qcow2 1M'),
    r('create -f qcow2 -o cluster_size=4k,lazy_refcounts=on q.qcow2 1M'),
    r('create -f qcow2 -b z.qcow2 q.qcow2'),
    r('create -f qcow2 -b z.qcow2 -F qcow2 q.qcow2'),
    r('create -f qcow2 -u -b nonexist -F raw q.qcow2 1M'),
    r('create -f qcow2 -b nonexist -F raw q.qcow2'),
    r('create -f qcow2 -b q.qcow2 -F qcow2 q.qcow2 1M'),
    r('create -f raw'),
    r('create -f qcow2 -o compat=0.10,preallocation=metadata,refcount_bits=16 q.qcow2 1M', ['q.qcow2']),
    r('create -f qcow2 -o data_file=d.raw,data_file_raw=on q.qcow2 1M'),
    r('create -f qcow2 -o extended_l2=on,compression_type=zstd,size=2M q.qcow2', ['q.qcow2']),
    r('create -f qcow2 -o encrypt.format=luks -o help'),
    r('create -f qcow2 q.qcow2 -o help'),
    r('create -f qcow2 -o preallocation=off q.qcow2 1M', ['q.qcow2']),
  ],
  check: [
    r('check a.raw'),
    r('check -f raw a.raw'),
    r('check --output=json a.raw'),
    r('check -r foo a.raw'),
    r('check z.qcow2'),
    r('check --output=json z.qcow2'),
    r('check -q z.qcow2'),
    r('check -r leaks top.qcow2'),
    r('check -r all --output=json small.qcow2'),
    r('check -f qcow2 a.raw'),
    r('check nonexist'),
    r('check --output=foo z.qcow2'),
    r('check'),
    r('check shared.qcow2'),
    r('check --output=json shared.qcow2'),
    r('check -r leaks shared.qcow2', ['shared.qcow2']),
    r('check -r all shared.qcow2', ['shared.qcow2']),
    r('check -r all --output=json shared.qcow2', ['shared.qcow2']),
    r('check corrupt.qcow2'),
    r('info corrupt.qcow2'),
    r('check -r leaks corrupt.qcow2', ['corrupt.qcow2']),
    r('check -r all --output=json corrupt.qcow2', ['corrupt.qcow2']),
  ],
  map: [
    r('map -f raw a.raw'),
    r('map a.raw'),
    r('map --output=json -f raw a.raw'),
    r('map --output=json --start-offset=4k --max-length=100k -f raw a.raw'),
    r('map z.qcow2'),
    r('map --output=json z.qcow2'),
    r('map o.qcow2'),
    r('map --output=json o.qcow2'),
    r('map ov.qcow2'),
    r('map --output=json ov.qcow2'),
    r('map --output=json top.qcow2'),
    r('map --output=json small.qcow2'),
    r('map --output=json tail.qcow2'),
    r('map --start-offset=64k --output=json top.qcow2'),
    r('map --start-offset=-1 a.raw'),
    r('map --max-length=x a.raw'),
    r('map --output=foo a.raw'),
    r('map nonexist'),
  ],
  compare: [
    r('compare a.raw b.raw'),
    r('compare -q a.raw b.raw'),
    r('compare a.raw c.raw'),
    r('compare -f raw -F raw a.raw nonexist'),
    r('compare -f raw a.raw'),
    r('compare a.raw big.raw'),
    r('compare -s a.raw big.raw'),
    r('compare z.qcow2 o.qcow2'),
    r('compare o.qcow2 o.qcow2'),
    r('compare -s z.qcow2 z.qcow2'),
    r('compare -f qcow2 -F raw ov.qcow2 a.raw'),
    r('compare top.qcow2 mid.qcow2'),
    r('compare tail.qcow2 z.qcow2'),
    r('compare -p a.raw c.raw'),
  ],
  convert: [
    r('convert -O raw z.qcow2 out.raw', ['out.raw']),
    r('convert -O qcow2 z.qcow2 out.qcow2', ['out.qcow2']),
    r('convert -c -O qcow2 a.raw out.qcow2', ['out.qcow2']),
    r('convert -c -O qcow2 z.qcow2 out.qcow2', ['out.qcow2']),
    r('convert -O qcow2 -B z.qcow2 -F qcow2 o.qcow2 out.qcow2', ['out.qcow2']),
    r('convert -O raw z.qcow2 a.raw out.raw', ['out.raw']),
    r('convert -S 0 -O qcow2 z.qcow2 out.qcow2', ['out.qcow2']),
    r('convert -O qcow2 top.qcow2 out.qcow2', ['out.qcow2']),
    r('convert -O qcow2 -o cluster_size=4k ov.qcow2 out.qcow2', ['out.qcow2']),
    r('convert -p -O raw z.qcow2 out.raw', ['out.raw']),
    r('convert -O raw tail.qcow2 out.raw', ['out.raw']),
    r('convert -O qcow2 tail.qcow2 out.qcow2', ['out.qcow2']),
    r('convert -O qcow2 -o compat=0.10,preallocation=metadata z.qcow2 out.qcow2', ['out.qcow2']),
    r('convert -O qcow2 -o extended_l2=on,cluster_size=128k z.qcow2 out.qcow2', ['out.qcow2']),
    r('convert -W -m 4 -O qcow2 z.qcow2 a.raw z.qcow2 out.qcow2', ['out.qcow2']),
    r('convert -O raw -S 64k z.qcow2 out.raw', ['out.raw']),
    r('convert -O qcow2 a.raw out.qcow2', ['out.qcow2']),
    r('convert -O qcow2 -S 64k a.raw out.qcow2', ['out.qcow2']),
    r('convert -O qcow2 -S 0 a.raw out.qcow2', ['out.qcow2']),
    r('convert -O qcow2 -S 512 big.raw out.qcow2', ['out.qcow2']),
    r('convert -n -O raw z.qcow2 c.raw', ['c.raw']),
    r('convert -n --target-is-zero -O raw z.qcow2 c.raw'),
    r('convert -O raw a.raw'),
    r('convert -O raw nonexist out.raw'),
    r('convert -O foo a.raw out'),
    r('convert -O raw -o foo=bar a.raw out'),
    r('convert --target-is-zero -O raw a.raw out.raw'),
    r('convert -S x -O raw a.raw out.raw'),
    r('convert -S 1000 -O raw a.raw out.raw'),
    r('convert -O raw -c a.raw out.raw'),
    r('convert -O qcow2 -B a.raw a.raw out.qcow2'),
    r('convert -n -O raw a.raw nonexist'),
    r('convert -O qcow2 -o help'),
  ],
  resize: [
    r('resize -f raw c.raw 2M', ['c.raw']),
    r('resize -f raw c.raw +1M'),
    r('resize -f raw c.raw -- -512k'),
    r('resize -f raw --shrink c.raw 512k', ['c.raw']),
    r('resize -f raw c.raw 1x'),
    r('resize c.raw'),
    r('resize --preallocation=bogus -f raw c.raw +4k'),
    r('resize --preallocation=full -f raw c.raw +4k'),
    r('resize --preallocation=full -f raw c.raw 4k'),
    r('resize -q -f raw c.raw 3M'),
    r('resize c.raw 2M'),
    r('resize z.qcow2 +1M', ['z.qcow2']),
    r('resize z.qcow2 512k'),
    r('resize --shrink z.qcow2 512k'),
    r('resize nonexist 1M'),
    r('resize -f raw c.raw -- -2M'),
    r('resize -f raw a.raw b.raw 1M'),
  ],
  measure: [
    r('measure -O raw a.raw'),
    r('measure --output=json -O raw a.raw'),
    r('measure --size 1G -O raw'),
    r('measure --size 1G -O qcow2'),
    r('measure -O qcow2 -o cluster_size=1M --size 1G'),
    r('measure -O qcow2 z.qcow2'),
    r('measure --output=json -O qcow2 z.qcow2'),
    r('measure -O qcow2 a.raw'),
    r('measure -O raw z.qcow2'),
    r('measure -O qcow2 bm.qcow2'),
    r('measure --output=json -O qcow2 -o cluster_size=4k bm.qcow2'),
    r('measure -O qcow2 -o compat=0.10 bm.qcow2'),
    r('measure -O qcow2 v2.qcow2'),
    r('measure'),
    r('measure --size 1G a.raw'),
    r('measure -O foo --size 1G'),
    r('measure --size x -O raw'),
    r('measure a.raw b.raw'),
  ],
  amend: [
    r('amend -o size=2M -f raw a.raw'),
    r('amend a.raw'),
    r('amend -f qcow2 -o lazy_refcounts=on z.qcow2'),
    r('amend -o compat=0.10 top.qcow2', ['top.qcow2']),
    r('amend -f qcow2 -o foo=on z.qcow2'),
    r('amend -o size=2M z.qcow2', ['z.qcow2']),
    r('amend -o lazy_refcounts=on nonexist'),
  ],
  commit: [
    r('commit top.qcow2', ['top.qcow2', 'mid.qcow2', 'base.qcow2']),
    r('commit -d top.qcow2', ['top.qcow2', 'mid.qcow2', 'base.qcow2']),
    r('commit -b base.qcow2 top.qcow2', ['top.qcow2', 'mid.qcow2', 'base.qcow2']),
    r('commit -q o.qcow2', ['o.qcow2', 'z.qcow2']),
    r('commit -b nope top.qcow2'),
    // The base named relative to the image whose backing file it is (iotest 020), and as ./ or absolute-looking names.
    r('commit -b mid.qcow2 top.qcow2', ['top.qcow2', 'mid.qcow2', 'base.qcow2']),
    r('commit -b ./base.qcow2 top.qcow2', ['top.qcow2', 'mid.qcow2', 'base.qcow2']),
    r('commit -b sub/base.qcow2 top.qcow2'),
    r('commit -f raw a.raw'),
    r('commit a.raw'),
    r('commit nonexist'),
    r('commit'),
  ],
  rebase: [
    r('rebase -b base.qcow2 -F qcow2 top.qcow2', ['top.qcow2']),
    r('rebase -u -b base.qcow2 -F qcow2 top.qcow2', ['top.qcow2']),
    r(`rebase -b '' top.qcow2`, ['top.qcow2']),
    r(`rebase -u -b '' top.qcow2`, ['top.qcow2']),
    r('rebase -b mid.qcow2 top.qcow2'),
    r('rebase -f qcow2 -b nonexist -F qcow2 top.qcow2'),
    r('rebase -u -b a.raw -F raw b.raw'),
    r('rebase a.raw'),
    r('rebase -b base.qcow2 -F qcow2 nonexist'),
  ],
  dd: [
    r('dd if=a.raw of=dd.raw bs=64k count=2', ['dd.raw']),
    r('dd -O raw if=a.raw of=dd.raw bs=4k skip=1 count=2', ['dd.raw']),
    r('dd -O qcow2 if=z.qcow2 of=dd.qcow2 bs=1M', ['dd.qcow2']),
    r('dd if=a.raw of=dd.raw skip=100000'),
    r('dd if=a.raw'),
    r('dd if=a.raw of=dd.raw bs=0'),
    r('dd if=a.raw of=dd.raw foo=1'),
    r('dd if=a.raw of=dd.raw count=x'),
    r('dd if=a.raw of=dd.raw junk'),
    r('dd if=nonexist of=dd.raw'),
    r('dd -O foo if=a.raw of=dd.raw'),
  ],
  bench: [
    r('bench -f raw -c 1000 a.raw'),
    r('bench -f raw -c 1000 -d 4 -s 4k -w c.raw'),
    r('bench -f raw -c 100 -S 8k -w --pattern=5 c.raw'),
    r('bench -c 100 -o 4k -q z.qcow2'),
    r('bench -c 100 -w --flush-interval=64 z.qcow2'),
    r('bench -c x a.raw'),
    r('bench -f raw -c 100 --flush-interval=10 -w a.raw'),
    r('bench -f raw -c 100 --flush-interval=10 a.raw'),
    r('bench --pattern=300 a.raw'),
    r('bench -s x a.raw'),
    r('bench nonexist'),
  ],
};

it('compares against qemu-img 7.2 (Debian qemu-utils), as the golden tests assume', () => {
  expect(hasQemu()).toBe(true);
});

describe('diskworker img vs qemu-img 7.2', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture(build);
  });
  afterAll(() => fx?.dispose());

  for (const [group, rows] of Object.entries(CASES)) {
    describe(group, () => {
      for (const row of rows) {
        const title = `img ${row.line}`;
        it(title, async () => {
          const g = await golden(fx, { tool: 'img', args: words(row.line), ...(row.sameImages ? { sameImages: row.sameImages } : {}) });
          expect(g.ours.stdout).toBe(g.theirs.stdout);
          expect(g.ours.stderr).toBe(g.theirs.stderr);
          expect(g.ours.code).toBe(g.theirs.code);
          expect(g.imageDiffs).toEqual([]);
        });
      }
    });
  }

  // Beyond the guest contents: the repaired files are the same bytes as
  // qemu-img's (header flags, refcounts, COPIED flags).
  describe('check repairs byte for byte', () => {
    for (const line of ['check -r leaks leak.qcow2', 'check -r leaks dirty.qcow2', 'check -r leaks shared.qcow2', 'check -r all shared.qcow2', 'check -r leaks corrupt.qcow2']) {
      it(`img ${line}`, async () => {
        const dq = fx.copy();
        const dd = fx.copy();
        const args = words(line);
        const img = args[args.length - 1]!;
        theirs('img', args, dq);
        await ours('img', args, dd);
        expect(Buffer.compare(readFileSync(join(dd, img)), readFileSync(join(dq, img)))).toBe(0);
      });
    }
  });

});
