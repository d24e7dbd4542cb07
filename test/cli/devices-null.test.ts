/**
 * The file, host_device, host_cdrom, null-co and null-aio protocols through
 * qemu-io / qemu-img against QEMU 7.2 (iotests 133 and 226 and more): which
 * files each accepts, device sizes and missing media, and the null drivers'
 * reads, block status, info and options.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { Fixture, golden, words } from './harness.js';

describe('device and null protocols vs QEMU 7.2', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture((_dir, sh) => {
      sh('mkdir t.qcow2');
      sh('truncate -s 1M reg.img');
    });
  });
  afterAll(() => fx.dispose());

  const io: string[] = [];
  // iotest 226: a directory and /dev/null, read-only and read-write, per driver.
  for (const p of ['file', 'host_device', 'host_cdrom']) {
    for (const f of ['t.qcow2', '/dev/null,locking=off', 'reg.img']) {
      io.push(`-c 'open -r -o driver=${p},filename=${f}' -c 'length'`);
      io.push(`-c 'open -o driver=${p},filename=${f}' -c 'length'`);
    }
  }
  const ops = `-c 'length' -c 'read -v 0 16' -c 'write 0 0' -c 'discard 0 0' -c 'write -z 0 0' -c 'map' -c 'info' -c 'truncate 1M'`;
  io.push(
    `-c 'open -o driver=host_device,filename=/dev/null' ${ops}`,
    `-c 'open -r -o driver=host_device,filename=/dev/zero' ${ops}`,
    `-c 'open -o driver=host_cdrom,filename=/dev/null' ${ops}`,
    `-c 'open -o driver=host_cdrom,filename=/dev/null' -c 'flush'`,
    `-c 'open -o driver=raw,file.driver=host_cdrom,file.filename=/dev/null' -c 'info' -c 'length' -c 'read 0 0'`,
    `-c 'info' -c 'length' /dev/null`,
    `-f raw -c 'info' -c 'read 0 0' /dev/null`,
    `-c 'open file:/dev/null'`,
  );
  // iotest 133 and the null drivers' behaviour.
  const nullOps = `-c 'read -v 0 16' -c 'readv -v 0 8 8' -c 'map' -c 'info' -c 'length' -c 'write 0 4k' -c 'flush' -c 'discard 0 4k' -c 'write -z 0 4k' -c 'truncate 2G'`;
  io.push(
    `-f null-co -c 'reopen' -c 'info' json:{'driver':'null-co','size':65536}`,
    `-c 'open -o driver=null-co' ${nullOps}`,
    `-c 'open -o driver=null-aio,size=1M' ${nullOps}`,
    `-c 'open -o driver=null-co,read-zeroes=on,size=64k' ${nullOps}`,
    `-c 'open -o driver=null-co,latency-ns=1000' -c 'read 0 512'`,
    `-c 'open -o driver=null-co,latency-ns=-1'`,
    `-c 'open -o driver=null-co,bogus=1'`,
    `${nullOps} null-co://`,
    `-f raw -c 'map' null-aio://`,
    `-c 'length' null-co://x`,
    `-c 'length' null-aio://x`,
  );
  for (const line of io) {
    it(`qemu-io ${line}`, async () => {
      const g = await golden(fx, { tool: 'io', args: words(line) });
      expect(g.ours).toEqual(g.theirs);
    });
  }

  const img = [
    'info /dev/null',
    'info --output=json /dev/null',
    'info --image-opts driver=host_device,filename=/dev/null',
    'info --image-opts driver=host_cdrom,filename=/dev/null',
    'info --image-opts driver=file,filename=/dev/null',
    'info null-co://',
    'map null-co://',
    'map --output=json null-co://',
    `map --output=json json:{'driver':'raw','file':{'driver':'null-co','read-zeroes':true,'size':4096}}`,
    // Creating on a device: it must be large enough already.
    'create -f raw /dev/null 0',
    'create -f raw /dev/null 1M',
    'create -f raw -o preallocation=full /dev/null 0',
    'create -f raw -o preallocation=x /dev/null 0',
    'create -f raw file:/dev/null 0',
  ];
  for (const line of img) {
    it(`qemu-img ${line}`, async () => {
      const g = await golden(fx, { tool: 'img', args: words(line) });
      expect(g.ours).toEqual(g.theirs);
    });
  }
});
