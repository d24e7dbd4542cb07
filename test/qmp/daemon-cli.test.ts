/**
 * `diskworker daemon` as a process: help, version, command-line errors
 * (against qemu-storage-daemon's where both have the option), the pid file,
 * several clients and monitors with events to each client in command mode,
 * and a clean shutdown on `quit` and SIGTERM (images closed, bitmaps stored).
 * Needs `npm run build:ts` (the bundled bin).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BIN, checkImage, hasQsd, QmpClient, run, scratchDir, startDaemon, twinDirs, type Daemon } from './harness.js';

const started: Daemon[] = [];
afterAll(async () => {
  await Promise.all(started.map((d) => d.stop()));
});

function ours(args: string[]) {
  const r = spawnSync(process.execPath, [BIN, 'daemon', ...args], { encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr.replace(/^diskworker daemon: /gm, 'PROG: ') };
}
function qsd(args: string[]) {
  const r = spawnSync('qemu-storage-daemon', args, { encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr.replace(/^qemu-storage-daemon: /gm, 'PROG: ') };
}

describe.skipIf(!hasQsd())('diskworker daemon command line and server', () => {
  it('prints help and version', () => {
    const h = ours(['-h']);
    expect(h.code).toBe(0);
    expect(h.stdout).toMatch(/^Usage: diskworker daemon \[options\]\n/);
    for (const o of ['--blockdev', '--chardev', '--monitor', '--object', '--pidfile', '-V, --version']) expect(h.stdout).toContain(o);
    const v = ours(['-V']);
    expect(v).toEqual({ code: 0, stdout: 'diskworker daemon version 0.1.0 (qemu-storage-daemon 7.2 compatible)\n', stderr: '' });
  });

  it.each([
    [['--bogus']],
    [['foo']],
    [['--monitor', 'chardev=nope']],
    [['--object', 'foo,id=x']],
    [['--object', 'help']],
    [['--object', 'throttle-group,help']],
    [['--object', 'iothread,help']],
    [['--object', '{"qom-type":"iothread","id":"x"}', '--object', '{"qom-type":"throttle-group","id":"x"}']],
    [['--object', 'throttle-group,id=a,,b']],
    [['--blockdev', 'help']],
    [['--blockdev', 'driver=qcow2,help']],
    [['--blockdev', '?']],
    [['--export', 'type=nbd,help']],
    [['--nbd-server', 'addr.type=unix,help']],
    [['--monitor', 'help']],
    [['--pidfile', '/nonexistent/dir/pid']],
    [['--object', 'throttle-group,id=1tg']],
    [['--object', 'throttle-group,id=tg0,x-bps-total=-1']],
    [['--object', 'throttle-group,id=tg0,x-foo=1']],
    [['--object', 'throttle-group,id=tg0', '--object', 'secret,id=tg0,data=x']],
    [['--object', 'iothread,id=io0', '--object', 'throttle-group,id=io0']],
    [['--object', 'throttle-group,id=io0', '--object', 'iothread,id=io0']],
    [['--object', 'secret,id=s0', '--blockdev', 'driver=null-co,node-name=n']],
    [['--blockdev', 'driver=null-co,node-name=n', '--blockdev', 'driver=throttle,node-name=t,throttle-group=tg9,file=n']],
    [['--blockdev', '{"driver":"file","filename":"/nonexistent"}']],
    [['--blockdev', '{"driver":"file","node-name":"f","filename":"/nonexistent/x.img"}']],
    [['--blockdev', 'driver=qcow2']],
    [['--blockdev', 'qcow2,node-name=q']],
    [['--blockdev', 'driver=file,node-name=f,filename=/x,read-only=maybe']],
    [['--blockdev', 'driver=qcow2,node-name=q,file=f,bogus=1']],
    [['--blockdev', 'driver=null-co,node-name=n,size=big']],
    [['--blockdev', 'driver=raw,node-name=r,file.driver=file,file.filename=/x,file.locking=sometimes']],
    [['--blockdev', '{"driver":"qcow2","node-name":"q","file":{"driver":"file","filename":7}}']],
  ])('refuses %j as qemu-storage-daemon does', (args) => {
    expect(ours(args)).toEqual(qsd(args));
  });

  it('lists the chardev backends it has for --chardev help (qemu-storage-daemon lists all of its own)', () => {
    expect(ours(['--chardev', 'help'])).toEqual({ code: 0, stdout: 'Available chardev backend types: \n  socket\n', stderr: '' });
    expect(qsd(['--chardev', 'help']).stdout).toMatch(/^Available chardev backend types: \n(  \w+\n)*  socket\n/);
  });

  it('says which qemu-storage-daemon options it does not have', () => {
    expect(ours(['--daemonize'])).toEqual({ code: 1, stdout: '', stderr: "PROG: option '--daemonize' is not supported by diskworker daemon\n" });
  });

  const nullNode = ['--blockdev', 'driver=null-co,node-name=n'];
  const monitor = ['--chardev', 'socket,id=m,path=$DIR/m.sock,server=on,wait=off', '--monitor'];
  it.each([
    [[...nullNode, '--export', 'type=nbd,id=e1,node-name=n']],
    [['--nbd-server', 'addr.type=unix,addr.path=/tmp/x,max-connections=x']],
    [['--nbd-server', 'addr.type=unix']],
    [['--nbd-server', 'addr.type=unix,addr.path=/nonexistent/s']],
    [['--nbd-server', 'addr.type=unix,addr.path=/tmp/x,bogus=1']],
    [[...nullNode, '--nbd-server', 'addr.type=unix,addr.path=$DIR/s', '--export', 'type=nbd,id=e1,node-name=n,bitmaps.0=zz']],
    [[...nullNode, '--nbd-server', 'addr.type=unix,addr.path=$DIR/s', '--export', 'type=nbd,id=e1,node-name=n,writable=on,foo=1']],
    [[...nullNode, '--nbd-server', 'addr.type=unix,addr.path=$DIR/s', '--export', 'type=nbd,id=e1,node-name=zz']],
    [[...nullNode, '--nbd-server', 'addr.type=unix,addr.path=$DIR/s', '--export', 'type=nbd,id=e1,node-name=n', '--export', 'type=nbd,id=e1,node-name=n']],
    [[...nullNode, '--nbd-server', 'addr.type=unix,addr.path=$DIR/s', '--export', 'type=nbd,id=e1,node-name=n,writable=maybe']],
    [['--export', 'type=nbd']],
    [[...monitor, 'm,mode=readline']],
    [[...monitor, 'm,mode=foo']],
    [[...monitor, 'm,mode=readline,x=1']],
    [[...monitor, 'chardev=m,pretty=maybe']],
    [[...monitor, 'm,pretty=maybe,x=1']],
    [['--chardev', 'socket,id=m,path=$DIR/m.sock,server=maybe,wait=off']],
  ])('refuses the NBD and monitor options %j as qemu-storage-daemon does', (args) => {
    const dir = scratchDir('dw-qmpd-');
    const a = args.map((x) => x.replaceAll('$DIR', dir));
    expect(ours(a)).toEqual(qsd(a));
  });

  it('serves an --export over --nbd-server as qemu-storage-daemon does: qemu-img and qemu-io over NBD see the same, the image ends the same', async () => {
    const dirs = twinDirs((dir) => {
      run('qemu-img', ['create', '-f', 'qcow2', 'a.qcow2', '4M'], dir);
      run('qemu-io', ['-c', 'write -P 7 0 256k', '-c', 'write -z 1M 128k', '-c', 'write -P 8 3M 64k', 'a.qcow2'], dir);
    });
    const seen: Record<string, string[]> = {};
    for (const side of ['qemu', 'ours'] as const) {
      const dir = dirs[side];
      const d = startDaemon(side, dir, [
        '--blockdev', 'driver=qcow2,node-name=q,file.driver=file,file.filename=$DIR/a.qcow2',
        '--nbd-server', 'addr.type=unix,addr.path=$DIR/nbd.sock',
        '--export', 'type=nbd,id=e1,node-name=q,writable=on,name=disk',
      ]);
      started.push(d);
      const c = await QmpClient.connect(d.sock);
      expect(await c.send({ execute: 'qmp_capabilities' })).toEqual({ return: {} });
      const url = `nbd+unix:///disk?socket=${dir}/nbd.sock`;
      const io = (...cmds: string[]) => run('qemu-io', ['-f', 'raw', ...cmds.flatMap((x) => ['-c', x]), url], dir).replace(/\d+\.\d+ sec.*$/gm, 'T');
      seen[side] = [
        run('qemu-img', ['map', '--output=json', '-f', 'raw', url], dir),
        io('read -P 7 0 256k', 'read -P 0 1M 128k', 'read -P 8 3M 64k'),
        io('write -P 9 512k 64k', 'write -z 3M 64k', 'discard 0 64k', 'aio_write -P 10 2M 4k', 'aio_flush'),
        run('qemu-img', ['map', '--output=json', '-f', 'raw', url], dir),
        JSON.stringify(await c.send({ execute: 'query-block-exports' })),
      ];
      expect(await c.send({ execute: 'quit' })).toEqual({ return: {} });
      c.close();
      expect(await d.stop()).toBe(0);
    }
    expect(seen.ours).toEqual(seen.qemu);
    expect(run('qemu-img', ['compare', `${dirs.qemu}/a.qcow2`, `${dirs.ours}/a.qcow2`], dirs.ours)).toBe('Images are identical.\n');
    expect(checkImage(`${dirs.ours}/a.qcow2`).code).toBe(0);
  }, 60_000);

  it('writes and removes its pid file; quit ends it cleanly; events reach every client in command mode', async () => {
    const dir = scratchDir('dw-qmpd-');
    run('qemu-img', ['create', '-f', 'qcow2', 'a.qcow2', '1M'], dir);
    run('qemu-io', ['-c', 'write -P 9 0 128k', 'a.qcow2'], dir);
    run('qemu-img', ['create', '-f', 'qcow2', 'b.qcow2', '1M'], dir);
    const d = startDaemon('ours', dir, [
      '--chardev', 'socket,id=mon1,path=$DIR/second.sock,server=on,wait=off',
      '--monitor', 'mon1,pretty=on',
      '--object', 'iothread,id=io0',
      '--blockdev', 'driver=file,node-name=af,filename=$DIR/a.qcow2',
      '--blockdev', 'driver=qcow2,node-name=a,file=af',
      '--blockdev', '{"driver":"qcow2","node-name":"b","file":{"driver":"file","filename":"$DIR/b.qcow2"}}',
      '--pidfile', '$DIR/pid',
    ]);
    started.push(d);
    const a = await QmpClient.connect(d.sock);
    const b = await QmpClient.connect(d.sock);
    const c = await QmpClient.connect(join(dir, 'second.sock'));
    expect(readFileSync(join(dir, 'pid'), 'utf8')).toBe(`${d.proc.pid}\n`);
    expect(await a.send({ execute: 'qmp_capabilities' })).toEqual({ return: {} });
    expect(await c.send({ execute: 'qmp_capabilities' })).toEqual({ return: {} });
    expect(await a.send({ execute: 'blockdev-mirror', arguments: { 'job-id': 'm', device: 'a', target: 'b', sync: 'full' } })).toEqual({ return: {} });
    await a.waitEvent((e) => e.event === 'BLOCK_JOB_READY');
    await c.waitEvent((e) => e.event === 'BLOCK_JOB_READY');
    // b is still negotiating: no events for it.
    expect(b.events).toEqual([]);
    expect(await b.send({ execute: 'qmp_capabilities' })).toEqual({ return: {} });
    expect(await b.send({ execute: 'job-complete', arguments: { id: 'm' } })).toEqual({ return: {} });
    for (const client of [a, b, c]) await client.waitEvent((e) => e.event === 'JOB_STATUS_CHANGE' && e.data?.status === 'null');
    // waiting, pending, COMPLETED, concluded, null: what happened after b's negotiation.
    expect(b.events.map((e) => (e as { event: string }).event)).toEqual(['JOB_STATUS_CHANGE', 'JOB_STATUS_CHANGE', 'BLOCK_JOB_COMPLETED', 'JOB_STATUS_CHANGE', 'JOB_STATUS_CHANGE']);
    expect(a.events.map((e) => (e as { event: string }).event)).toEqual(c.events.map((e) => (e as { event: string }).event));
    expect(await c.send({ execute: 'block-dirty-bitmap-add', arguments: { node: 'a', name: 'kept', persistent: true } })).toEqual({ return: {} });
    expect(await a.send({ execute: 'quit' })).toEqual({ return: {} });
    expect(await d.stop()).toBe(0);
    expect(existsSync(join(dir, 'pid'))).toBe(false);
    expect(existsSync(d.sock)).toBe(false);
    expect(checkImage(join(dir, 'a.qcow2')).code).toBe(0);
    expect(run('qemu-img', ['compare', 'a.qcow2', 'b.qcow2'], dir)).toBe('Images are identical.\n');
    expect(run('qemu-img', ['info', 'a.qcow2'], dir)).toContain('name: kept');
  }, 60_000);

  it('SIGTERM closes the graph and exits 0', async () => {
    const dir = scratchDir('dw-qmpd-');
    run('qemu-img', ['create', '-f', 'qcow2', 'a.qcow2', '1M'], dir);
    const d = startDaemon('ours', dir, ['--blockdev', '{"driver":"qcow2","node-name":"a","file":{"driver":"file","filename":"$DIR/a.qcow2"}}']);
    started.push(d);
    const a = await QmpClient.connect(d.sock);
    await a.send({ execute: 'qmp_capabilities' });
    expect(await a.send({ execute: 'block-dirty-bitmap-add', arguments: { node: 'a', name: 'p', persistent: true } })).toEqual({ return: {} });
    expect(await a.send({ execute: 'block_resize', arguments: { 'node-name': 'a', size: 2097152 } })).toEqual({ return: {} });
    expect(await d.stop()).toBe(0);
    expect(checkImage(join(dir, 'a.qcow2')).code).toBe(0);
    const info = run('qemu-img', ['info', 'a.qcow2'], dir);
    expect(info).toContain('virtual size: 2 MiB');
    expect(info).toContain('name: p');
  }, 60_000);
});
