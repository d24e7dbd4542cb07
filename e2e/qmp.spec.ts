/**
 * QMP from the page (`dw.qmp`) in real Chromium: the worker runs QEMU 7.2's
 * block commands on the graph the page's disks use (a bitmap added through
 * QMP is one `disk.bitmaps` lists), errors come back as QEMU words them, and
 * a backup job started through QMP reports its JOB_STATUS_CHANGE events
 * through `dw.qmp.events()` in QEMU's order.
 */
import { test, expect } from '@playwright/test';
import { openHarness } from './helpers.js';

test('dw.qmp: commands on the disks\' graph, QEMU\'s errors, a job\'s events', async ({ page }) => {
  await openHarness(page);
  const r = await page.evaluate(async () => {
    const dw = await window.harness.start();
    const p = 'opfs:/qmp/a.qcow2';
    await dw.remove(p).catch(() => undefined);
    await dw.create({ path: p, format: 'qcow2', size: 4 << 20 });
    const disk = await dw.open({ path: p });
    await disk.write(0, new Uint8Array(65536).fill(3));
    const nodes = (await dw.qmp.execute('query-named-block-nodes', { flat: true })) as { return: Array<{ 'node-name': string; drv: string; file: string }> };
    const qcow2 = nodes.return.find((n) => n.drv === 'qcow2')!;
    const added = await dw.qmp.execute('block-dirty-bitmap-add', { node: qcow2['node-name'], name: 'q1' });
    const listed = (await disk.bitmaps.list()).map((b) => b.name);
    await disk.write(1 << 20, new Uint8Array(4096).fill(4));
    const dirty = [];
    for await (const e of disk.bitmaps.dirtyExtents('q1')) dirty.push(e);
    const errors = [
      await dw.qmp.execute('blockdev-del', { 'node-name': 'zz' }),
      await dw.qmp.execute('no-such-command'),
      await dw.qmp.execute('block-dirty-bitmap-add', { node: qcow2['node-name'], name: 'q1' }),
      await dw.qmp.execute('blockdev-del', { 'node-name': qcow2['node-name'] }),
    ];
    const events: Array<{ event: string; data?: { id?: string; status?: string } }> = [];
    const seen = (async () => {
      for await (const e of dw.qmp.events()) {
        events.push(e as (typeof events)[number]);
        if (e.event === 'JOB_STATUS_CHANGE' && (e.data as { status?: string }).status === 'concluded') break;
      }
    })();
    const target = 'opfs:/qmp/b.qcow2';
    await dw.remove(target).catch(() => undefined);
    await dw.create({ path: target, format: 'qcow2', size: 4 << 20 });
    const steps = [
      await dw.qmp.execute('blockdev-add', { driver: 'qcow2', 'node-name': 't', file: { driver: 'opfs', filename: target } }),
      await dw.qmp.execute('blockdev-backup', { 'job-id': 'j1', device: qcow2['node-name'], target: 't', sync: 'full', 'auto-dismiss': false }),
    ];
    await seen;
    const jobs = await dw.qmp.execute('query-jobs');
    steps.push(await dw.qmp.execute('job-dismiss', { id: 'j1' }), await dw.qmp.execute('blockdev-del', { 'node-name': 't' }));
    await disk.close();
    // The copy: what the disk held when the backup started.
    const copy = await dw.open({ path: target, readOnly: true });
    const head = await copy.read(0, 65536);
    const copied = head.every((b) => b === 3) && (await copy.read(1 << 20, 4096)).every((b) => b === 4);
    await copy.close();
    return { copied, qcow2: qcow2.file, added, listed, dirty, errors, steps, jobs, events: events.map((e) => [e.event, e.data?.id ?? (e.data as { device?: string } | undefined)?.device, e.data?.status]) };
  });
  expect(r.qcow2).toBe('opfs:/qmp/a.qcow2');
  expect(r.added).toEqual({ return: {} });
  expect(r.listed).toEqual(['q1']);
  expect(r.dirty).toEqual([[1 << 20, 65536]]);
  expect(r.errors).toEqual([
    { error: { class: 'GenericError', desc: "Failed to find node with node-name='zz'" } },
    { error: { class: 'CommandNotFound', desc: 'The command no-such-command has not been found' } },
    { error: { class: 'GenericError', desc: 'Bitmap already exists: q1' } },
    { error: { class: 'GenericError', desc: expect.stringMatching(/^Node .* is in use$/) } },
  ]);
  expect(r.steps).toEqual([{ return: {} }, { return: {} }, { return: {} }, { return: {} }]);
  expect(r.copied).toBe(true);
  expect((r.jobs as { return: Array<{ id: string; status: string; type: string }> }).return.map((j) => [j.id, j.type, j.status])).toEqual([['j1', 'backup', 'concluded']]);
  // QEMU's order for a backup that runs to its end (auto-finalize, auto-dismiss off); a drain
  // on the way (the worker's own requests) pauses and resumes it, as QEMU's drains do.
  const statuses = r.events.filter((e) => e[0] === 'JOB_STATUS_CHANGE').map((e) => e[2]).join(' ');
  expect(statuses).toMatch(/^created running( paused running)* waiting pending concluded$/);
  expect(r.events.some((e) => e[0] === 'BLOCK_JOB_COMPLETED' && e[1] === 'j1')).toBe(true);
});
