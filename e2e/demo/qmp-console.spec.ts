/**
 * The demo's QMP console: QEMU's commands typed against the worker's graph.
 * The open disk is found as its node, a bitmap added through QMP shows up in
 * the bitmap bar, errors come back in QEMU's words, QMP's own JSON form
 * echoes its id, and the events of a job started from the console are
 * printed as they arrive.
 */
import { test, expect, type Page } from '@playwright/test';
import { createDisk, openDemo } from './helpers.js';

async function qmp(page: Page, line: string, expectOut: RegExp): Promise<void> {
  const input = page.getByTestId('qmp-input');
  await input.fill(line);
  await input.press('Enter');
  const out = page.getByTestId('qmp-output');
  await expect(out).toContainText(`(QMP) ${line}`);
  await expect(out).toHaveText(expectOut);
}

test('QMP console: node of the open disk, a bitmap, errors, ids and job events', async ({ page }) => {
  await openDemo(page);
  // The backup target first: the disk created last is the one selected.
  await createDisk(page, 'qmp-target.qcow2', '16M');
  await createDisk(page, 'qmp.qcow2', '16M');
  await page.locator('[role=tab][data-tab=qmp]').click();
  const out = page.getByTestId('qmp-output');
  await expect(out).toContainText("# opfs:/qmp.qcow2 is node '");
  const node = /opfs:\/qmp\.qcow2 is node '([^']+)'/.exec((await out.textContent()) ?? '')![1]!;

  await qmp(page, `block-dirty-bitmap-add node=${node} name=from-qmp`, /\(QMP\) block-dirty-bitmap-add[^]*\{\s*"return": \{\}\s*\}/);
  await expect(page.getByTestId('bitmap-bar').locator('[data-bitmap="from-qmp"]')).toBeVisible();
  await qmp(page, `block-dirty-bitmap-add {"node": "${node}", "name": "from-qmp"}`, /"class": "GenericError",\s*"desc": "Bitmap already exists: from-qmp"/);
  await qmp(page, 'no-such-command', /"class": "CommandNotFound",\s*"desc": "The command no-such-command has not been found"/);
  await qmp(page, '{"execute": "query-jobs", "id": "q7"}', /"return": \[\],\s*"id": "q7"/);
  await qmp(page, 'query-block bad', /"bad" is not key=value/);

  // A job from the console: its events arrive in the output.
  await qmp(page, 'blockdev-add driver=qcow2 node-name=tgt file={"driver":"opfs","filename":"opfs:/qmp-target.qcow2"}', /blockdev-add[^]*"return": \{\}/);
  await qmp(page, `blockdev-backup job-id=j1 device=${node} target=tgt sync=full`, /blockdev-backup[^]*"return": \{\}/);
  await expect(out).toContainText('"event":"BLOCK_JOB_COMPLETED"');
  await expect(out).toContainText('"event":"JOB_STATUS_CHANGE","data":{"id":"j1","status":"concluded"}');
  await qmp(page, 'blockdev-del node-name=tgt', /blockdev-del node-name=tgt[^]*"return": \{\}/);
  await qmp(page, `blockdev-snapshot-internal-sync device=${node} name=s1`, /blockdev-snapshot-internal-sync[^]*"return": \{\}/);
  await qmp(page, `query-named-block-nodes flat=true`, /"node-name": "[^"]+"[^]*"drv": "qcow2"/);
});
