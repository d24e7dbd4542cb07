// Test helper: damages a qcow2 image in place (used by test/cli/img.test.ts).
//   node poke-qcow2.cjs refcount FILE CLUSTER VALUE   sets a 16-bit refcount
//   node poke-qcow2.cjs corrupt FILE                  sets the corrupt bit
const fs = require('fs');
const [cmd, f, a, b] = process.argv.slice(2);
const fd = fs.openSync(f, 'r+');
const h = Buffer.alloc(80);
fs.readSync(fd, h, 0, 80, 0);
if (cmd === 'refcount') {
  const cs = 1 << h.readUInt32BE(20);
  const rt = Number(h.readBigUInt64BE(48));
  const cluster = Number(a);
  const perBlock = cs / 2;
  const e = Buffer.alloc(8);
  fs.readSync(fd, e, 0, 8, rt + Math.floor(cluster / perBlock) * 8);
  const rb = Number(e.readBigUInt64BE(0));
  const v = Buffer.alloc(2);
  v.writeUInt16BE(Number(b));
  fs.writeSync(fd, v, 0, 2, rb + (cluster % perBlock) * 2);
} else if (cmd === 'corrupt') {
  const v = Buffer.from([h[79] | 2]);
  fs.writeSync(fd, v, 0, 1, 79);
} else {
  throw new Error(`unknown command ${cmd}`);
}
fs.closeSync(fd);
