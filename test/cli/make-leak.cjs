// Test helper: gives a qcow2 image one leaked cluster (used by test/cli/img.test.ts).
// Makes one leaked cluster: a refcount of 1 for a cluster nothing points to.
const fs = require('fs');
const f = process.argv[2];
const fd = fs.openSync(f, 'r+');
const h = Buffer.alloc(72); fs.readSync(fd, h, 0, 72, 0);
const cs = 1 << h.readUInt32BE(20);
const rt = Number(h.readBigUInt64BE(48));
const e = Buffer.alloc(8); fs.readSync(fd, e, 0, 8, rt);
const rb = Number(e.readBigUInt64BE(0));
const size = fs.fstatSync(fd).size;
const idx = Math.ceil(size / cs);
const v = Buffer.alloc(2); v.writeUInt16BE(1); fs.writeSync(fd, v, 0, 2, rb + idx * 2);
fs.ftruncateSync(fd, (idx + 1) * cs);
fs.closeSync(fd);
