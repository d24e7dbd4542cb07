/**
 * Check and repair: runs the format's consistency check (qemu-img check) on
 * the selected image and shows the report as a verdict, numbers and the
 * messages, plus the text qemu-img check would print.
 */
import type { CheckReport } from '../../src/client/index.js';
import { app, bus, displayName } from './state.js';
import { runJob } from './jobs.js';
import { refreshSelectedInfo } from './disks.js';
import { fmtBytes, guard, h } from './ui.js';

function qemuImgText(r: CheckReport, repair: boolean): string {
  let out = r.messages.length ? r.messages.join('\n') + '\n' : '';
  if (repair && (r.corruptionsFixed || r.leaksFixed)) {
    out += `The following inconsistencies were found and repaired:\n\n    ${r.leaksFixed} leaked clusters\n    ${r.corruptionsFixed} corruptions\n\nDouble checking the fixed image now...\n`;
  }
  if (!r.corruptions && !r.leaks && !r.checkErrors) out += 'No errors were found on the image.\n';
  else {
    if (r.corruptions) out += `\n${r.corruptions} errors were found on the image.\nData may be corrupted, or further writes to the image may corrupt it.\n`;
    if (r.leaks) out += `\n${r.leaks} leaked clusters were found on the image.\nThis means waste of disk space, but no harm to data.\n`;
    if (r.checkErrors) out += `\n${r.checkErrors} internal errors have occurred during the check.\n`;
  }
  if (r.imageEndOffset) out += `Image end offset: ${r.imageEndOffset}\n`;
  return out;
}

export class CheckPanel {
  readonly root: HTMLElement;
  private readonly result: HTMLElement;

  constructor() {
    this.result = h('div', { class: 'check-result', 'data-testid': 'check-result' }, h('p', { class: 'muted' }, 'A check reads all metadata of the image (L1/L2 tables, refcounts) and compares what is used with what is counted.'));
    const run = (repair: boolean) => () => void this.run(repair);
    this.root = h('div', { class: 'check' }, h('div', { class: 'row' }, h('button', { class: 'btn btn-primary', type: 'button', onclick: run(false), 'data-testid': 'check-run' }, 'Check image'), h('button', { class: 'btn', type: 'button', onclick: run(true) }, 'Check and repair'), h('span', { class: 'muted' }, 'Repair frees leaked clusters and fixes refcounts, like qemu-img check -r all.')), this.result);
    bus.on('select', (sel) => {
      if (!sel) this.result.replaceChildren();
    });
  }

  private async run(repair: boolean): Promise<void> {
    const sel = app.selected;
    if (!sel || !app.dw) return;
    const dw = app.dw;
    const r = await guard(`Checking ${displayName(sel.path)}`, () =>
      runJob(`${repair ? 'Repairing' : 'Checking'} ${displayName(sel.path)}`, async (job) => {
        job.phase('reading metadata…');
        // A check without repair stops when cancelled; a repair always runs to its end.
        return await dw.check(sel.path, { repair, signal: job.signal, onProgress: (p) => job.progress(p, 'percent') });
      }),
    );
    if (!r) return;
    this.show(r, repair);
    if (repair) await guard('Reading the image', refreshSelectedInfo);
  }

  private show(r: CheckReport, repair: boolean): void {
    const clean = !r.corruptions && !r.leaks && !r.checkErrors;
    const verdict = clean
      ? { cls: 'ok', title: 'No errors were found on the image.', text: 'Every cluster in use is counted exactly once.' }
      : r.corruptions || r.checkErrors
        ? { cls: 'bad', title: `${r.corruptions} corruption${r.corruptions === 1 ? '' : 's'} found`, text: 'Data may be corrupted, or further writes may corrupt it. Export a copy, then try Check and repair.' }
        : { cls: 'warn', title: `${r.leaks} leaked cluster${r.leaks === 1 ? '' : 's'}`, text: 'Space is wasted but no data is harmed. Check and repair frees them.' };
    const stat = (label: string, v: number | string) => h('div', { class: 'stat' }, h('div', { class: 'stat-value' }, String(v)), h('div', { class: 'stat-label' }, label));
    this.result.replaceChildren(
      h('div', { class: `verdict verdict-${verdict.cls}`, 'data-verdict': verdict.cls }, h('strong', {}, verdict.title), h('span', {}, verdict.text)),
      h('div', { class: 'stats' }, stat('corruptions', r.corruptions), stat('leaked clusters', r.leaks), stat('check errors', r.checkErrors), stat('fixed', r.corruptionsFixed + r.leaksFixed), stat('image end', fmtBytes(r.imageEndOffset))),
      r.messages.length ? h('div', {}, h('h4', {}, 'Messages'), h('ul', { class: 'messages mono' }, ...r.messages.map((m) => h('li', {}, m)))) : h('span'),
      h('details', { class: 'raw-info' }, h('summary', {}, `As qemu-img check${repair ? ' -r all' : ''} prints it`), h('pre', { class: 'mono' }, qemuImgText(r, repair))),
    );
  }
}
