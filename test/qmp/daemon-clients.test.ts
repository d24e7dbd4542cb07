/**
 * `diskworker daemon` under 100 QMP clients at once: each negotiates, runs a
 * few commands (queries, a dirty bitmap of its own, an internal snapshot for
 * some), some send malformed JSON and go on, some hang up in the middle of a
 * command. The daemon stays up and answers every client in order with the
 * right replies, and the image is consistent afterwards (qemu-img check, the
 * persistent bitmaps and snapshots that were left listed by qemu-img info).
 * Needs `npm run build:ts` (the bundled bin).
 */
import { existsSync } from 'node:fs';
import net from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { BIN, QmpClient, checkImage, run, startDaemon, twinDirs, type Daemon, type Json } from './harness.js';

let daemon: Daemon | undefined;
afterAll(async () => {
  await daemon?.stop();
});

const CLIENTS = 100;

/** Connects, sends `text` and hangs up without reading the reply. */
async function hangUp(path: string, text: string): Promise<void> {
  const s = net.createConnection(path);
  await new Promise<void>((res, rej) => {
    s.once('connect', res);
    s.once('error', rej);
  });
  s.write(text);
  s.destroy();
}

describe.skipIf(!existsSync(BIN))('diskworker daemon with 100 QMP clients at once', () => {
  it('answers every client correctly, survives hang-ups and malformed JSON, leaves the image consistent', async () => {
    const { ours: dir } = twinDirs((d) => run('qemu-img', ['create', '-f', 'qcow2', 'a.qcow2', '16M'], d));
    daemon = startDaemon('ours', dir, ['--blockdev', JSON.stringify({ driver: 'qcow2', 'node-name': 'q', file: { driver: 'file', filename: `${dir}/a.qcow2` } })]);
    // One client first: the daemon is up.
    const first = await QmpClient.connect(daemon.sock);
    expect(await first.send({ execute: 'qmp_capabilities' })).toEqual({ return: {} });

    const client = async (i: number): Promise<Json[]> => {
      if (i % 10 === 9) {
        // Hangs up in the middle: negotiation sent, a command half-written or unanswered.
        await hangUp(daemon!.sock, i % 20 === 9 ? '{"execute":"qmp_capabilities"}\n{"execute":"query-named-block' : '{"execute":"qmp_capabilities"}\n{"execute":"query-blockstats","arguments":{"query-nodes":true}}\n');
        return [];
      }
      const c = await QmpClient.connect(daemon!.sock);
      const out: Json[] = [];
      try {
        out.push(await c.send({ execute: 'query-version', id: i }));
        out.push(await c.send({ execute: 'qmp_capabilities', id: i }));
        if (i % 7 === 0) out.push(await c.send('{"execute": "query-version", "arguments": }'));
        if (i % 7 === 1) out.push(await c.send('[1, 2]'));
        out.push(await c.send({ execute: 'block-dirty-bitmap-add', arguments: { node: 'q', name: `b${i}`, persistent: i % 2 === 0 }, id: i }));
        out.push(await c.send({ execute: 'block-dirty-bitmap-add', arguments: { node: 'q', name: `b${i}` }, id: i }));
        if (i % 5 === 0) out.push(await c.send({ execute: 'blockdev-snapshot-internal-sync', arguments: { device: 'q', name: `s${i}` }, id: i }));
        out.push(await c.send({ execute: 'query-blockstats', arguments: { 'query-nodes': true }, id: i }));
        if (i % 4 === 1) out.push(await c.send({ execute: 'block-dirty-bitmap-remove', arguments: { node: 'q', name: `b${i}` }, id: i }));
        out.push(await c.send({ execute: 'nosuch', id: i }));
      } finally {
        c.close();
      }
      return out;
    };
    const results = await Promise.all(Array.from({ length: CLIENTS }, (_, i) => client(i)));

    for (let i = 0; i < CLIENTS; i++) {
      if (i % 10 === 9) continue;
      const r = results[i]!;
      const ok = { return: {}, id: i };
      let k = 0;
      expect(r[k++], `client ${i}`).toEqual({ error: { class: 'CommandNotFound', desc: "Expecting capabilities negotiation with 'qmp_capabilities'" }, id: i });
      expect(r[k++]).toEqual(ok);
      if (i % 7 === 0) expect((r[k++] as { error: { class: string; desc: string } }).error).toMatchObject({ class: 'GenericError', desc: expect.stringMatching(/^JSON parse error/) });
      if (i % 7 === 1) expect(r[k++]).toEqual({ error: { class: 'GenericError', desc: 'QMP input must be a JSON object' } });
      expect(r[k++]).toEqual(ok);
      expect(r[k++]).toEqual({ error: { class: 'GenericError', desc: `Bitmap already exists: b${i}` }, id: i });
      if (i % 5 === 0) expect(r[k++]).toEqual(ok);
      const stats = r[k++] as { return: Array<{ 'node-name': string }>; id: number };
      expect(stats.id).toBe(i);
      expect(stats.return.map((s) => s['node-name'])).toContain('q');
      if (i % 4 === 1) expect(r[k++]).toEqual(ok);
      expect(r[k++]).toEqual({ error: { class: 'CommandNotFound', desc: 'The command nosuch has not been found' }, id: i });
      expect(r.length).toBe(k);
    }

    // Still up and serving: a late client, and the first one, get answers.
    const late = await QmpClient.connect(daemon.sock);
    expect(await late.send({ execute: 'qmp_capabilities' })).toEqual({ return: {} });
    const nodes = (await late.send({ execute: 'query-named-block-nodes', arguments: { flat: true } })) as { return: Array<{ 'node-name': string; 'dirty-bitmaps'?: Array<{ name: string }> }> };
    const q = nodes.return.find((n) => n['node-name'] === 'q')!;
    const kept = Array.from({ length: CLIENTS }, (_, i) => i).filter((i) => i % 10 !== 9 && i % 4 !== 1);
    expect(q['dirty-bitmaps']!.map((b) => b.name).sort()).toEqual(kept.map((i) => `b${i}`).sort());
    expect(await first.send({ execute: 'query-version' })).toMatchObject({ return: { package: expect.any(String) } });
    late.close();
    first.close();
    expect(daemon.proc.exitCode).toBeNull();
    expect(await daemon.stop()).toBe(0);

    // The image: clean, with the persistent bitmaps and the snapshots that were made.
    expect(checkImage(`${dir}/a.qcow2`)).toMatchObject({ code: 0 });
    const info = JSON.parse(run('qemu-img', ['info', '--output=json', `${dir}/a.qcow2`], dir)) as {
      snapshots?: Array<{ name: string }>;
      'format-specific': { data: { bitmaps?: Array<{ name: string }> } };
    };
    const answered = Array.from({ length: CLIENTS }, (_, i) => i).filter((i) => i % 10 !== 9);
    expect(info.snapshots!.map((s) => s.name).sort()).toEqual(answered.filter((i) => i % 5 === 0).map((i) => `s${i}`).sort());
    expect(info['format-specific'].data.bitmaps!.map((b) => b.name).sort()).toEqual(kept.filter((i) => i % 2 === 0).map((i) => `b${i}`).sort());
  }, 60_000);
});
