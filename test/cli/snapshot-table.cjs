// Test helper: gives a qcow2 image a hand-made internal snapshot table (used by test/cli/hints.test.ts).
//   node snapshot-table.cjs extra FILE N BYTES   N entries, the first with BYTES of extra data
//   node snapshot-table.cjs big FILE N           N entries with 64 KiB - 1 byte ids and names:
//                                                the table passes QEMU's 64 MiB limit at entry 511
// The table goes at the next cluster boundary after the file's end; entries name no L1 table.
const fs = require('fs');
const [cmd, f, nText, extraText] = process.argv.slice(2);
const n = Number(nText);
const fd = fs.openSync(f, 'r+');
const h = Buffer.alloc(72);
fs.readSync(fd, h, 0, 72, 0);
const cs = 1 << h.readUInt32BE(20);
const at = Math.ceil(fs.fstatSync(fd).size / cs) * cs;
const idLen = cmd === 'big' ? 0xffff : 1;
const nameLen = cmd === 'big' ? 0xffff : 1;
let pos = at;
for (let i = 0; i < n; i++) {
  const extra = cmd === 'extra' && i === 0 ? Number(extraText) : 0;
  const e = Buffer.alloc(40);
  e.writeUInt16BE(idLen, 12);
  e.writeUInt16BE(nameLen, 14);
  e.writeUInt32BE(extra, 36);
  fs.writeSync(fd, e, 0, 40, pos);
  const rest = Buffer.alloc(extra + idLen + nameLen, 0x41);
  // Written in full for small entries; big ones stay holes (read as zeros, any bytes do).
  if (cmd !== 'big') fs.writeSync(fd, rest, 0, rest.length, pos + 40);
  pos += Math.ceil((40 + rest.length) / 8) * 8;
}
if (cmd === 'big') fs.writeSync(fd, Buffer.alloc(1), 0, 1, pos);
else if (cmd !== 'extra') throw new Error(`unknown command ${cmd}`);
const hdr = Buffer.alloc(12);
hdr.writeUInt32BE(n, 0);
hdr.writeBigUInt64BE(BigInt(at), 4);
fs.writeSync(fd, hdr, 0, 12, 60);
fs.closeSync(fd);
