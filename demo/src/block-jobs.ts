/**
 * The Jobs tab: block jobs on the open disk (`dw.jobs`), each a row with its
 * status, a progress bar and the verbs its state takes (pause, resume,
 * complete, cancel). Actions: mirror the disk to the other back end (OPFS ⇄
 * IndexedDB, the disk moves there on complete), back up to a new qcow2 and
 * download it (in full, or incrementally: what the tracked dirty bitmap
 * marks), and commit the disk's overlay into its base (an active commit:
 * ready, then complete moves the disk onto the base).
 */
import type { Disk, Job } from '../../src/client/index.js';
import { app, bus, displayName, storageOf } from './state.js';
import { exportImage, refreshList } from './disks.js';
import { field, fmtBytes, guard, h, toast } from './ui.js';

let counter = 0;

/** The demo's jobs panel. */
export class BlockJobsPanel {
  readonly root: HTMLElement;
  private readonly list: HTMLElement;
  private readonly speed: HTMLInputElement;
  private readonly commitBtn: HTMLButtonElement;

  constructor() {
    this.speed = h('input', { type: 'number', min: 0, step: 1, value: 0, name: 'speed', 'data-testid': 'job-speed', style: 'width: 6em' });
    const action = (label: string, testid: string, fn: () => Promise<void>) =>
      h('button', { class: 'btn', type: 'button', 'data-testid': testid, onclick: () => void guard(label, fn) }, label);
    this.commitBtn = action('Commit into base', 'job-commit', () => this.commit());
    this.list = h('div', { class: 'block-jobs', 'data-testid': 'job-list' }, h('p', { class: 'muted' }, 'No jobs yet.'));
    this.root = h(
      'div',
      { class: 'jobs-panel' },
      h(
        'div',
        { class: 'row' },
        action('Mirror to the other storage', 'job-mirror', () => this.mirror()),
        action('Back up and download', 'job-backup', () => this.backup()),
        action('Incremental backup', 'job-incremental', () => this.backup(true)),
        this.commitBtn,
        field('Speed (MiB/s, 0 = unlimited)', this.speed),
      ),
      h('p', { class: 'muted' }, 'Jobs copy while the disk stays in use: write from the console or run the VM meanwhile.'),
      this.list,
    );
    bus.on('select', (sel) => {
      this.commitBtn.disabled = !sel?.info?.backingFile;
    });
  }

  private disk(): Disk {
    const d = app.selected?.disk;
    if (!d || d.readOnly) throw Object.assign(new Error('Open a disk for writing first'), { code: 'EPERM' });
    return d;
  }

  private speedBytes(): number {
    return Math.max(0, Math.round(Number(this.speed.value) || 0)) * (1 << 20);
  }

  /** Mirrors the disk to a new qcow2 on the other back end. */
  private async mirror(): Promise<void> {
    const disk = this.disk();
    const name = displayName(disk.path).split('/').pop()!.replace(/\.(qcow2|raw|img)$/, '');
    const to = storageOf(await disk.image()) === 'idb' ? `opfs:/${name}-mirror-${++counter}.qcow2` : `idb:${name}-mirror-${++counter}.qcow2`;
    const job = await app.dw!.jobs.startMirror(disk, { target: { path: to, create: true }, speed: this.speedBytes() });
    this.add(job, `mirror → ${to}`, async () => {
      toast('ok', 'Mirror complete', `The disk now runs on ${to}`);
      await refreshList();
    });
  }

  /**
   * Backs the disk up into a new qcow2 next to it, then downloads it. An
   * incremental backup holds only what the disk's tracked bitmap (the map's
   * "Track changes") marks dirty, and clears it on success.
   */
  private async backup(incremental = false): Promise<void> {
    const disk = this.disk();
    const image = await disk.image();
    let bitmap: string | undefined;
    if (incremental) {
      bitmap = (await disk.bitmaps.list()).find((b) => b.recording && !b.busy && !b.inconsistent)?.name;
      if (!bitmap) throw Object.assign(new Error('An incremental backup copies what a dirty bitmap tracks: use “Track changes” first'), { code: 'EINVAL' });
    }
    const to = image.replace(/(\.(qcow2|raw|img))?$/, `-${incremental ? 'inc' : 'backup'}-${++counter}.qcow2`);
    const job = await app.dw!.jobs.startBackup(disk, {
      target: { path: to, create: true },
      speed: this.speedBytes(),
      ...(bitmap ? { sync: 'bitmap' as const, bitmap } : {}),
    });
    this.add(job, `${incremental ? `incremental backup (${bitmap})` : 'backup'} → ${to}`, async () => {
      await refreshList();
      await exportImage(to, 'file', false);
    });
  }

  /** Active commit of the disk's overlay into its backing image. */
  private async commit(): Promise<void> {
    const disk = this.disk();
    const job = await app.dw!.jobs.startCommit(disk, { speed: this.speedBytes() });
    this.add(job, 'commit into base', async () => {
      toast('ok', 'Commit complete', 'The disk now runs on its base image');
      await refreshList();
    });
  }

  private readonly rows = new Map<Job, { row: HTMLElement; fill: HTMLElement; text: HTMLElement; buttons: Record<string, HTMLButtonElement> }>();

  private add(job: Job, label: string, onDone: () => Promise<void>): void {
    if (this.rows.size === 0) this.list.replaceChildren();
    const fill = h('div', { class: 'job-bar-fill' });
    const text = h('span', { class: 'job-text', 'data-testid': 'job-status' });
    const verb = (name: string, fn: () => Promise<void>) => h('button', { class: 'btn btn-small', type: 'button', onclick: () => void guard(`${name} ${job.id}`, fn) }, name);
    const buttons = {
      Pause: verb('Pause', () => job.pause()),
      Resume: verb('Resume', () => job.resume()),
      Complete: verb('Complete', () => job.complete()),
      Cancel: verb('Cancel', () => job.cancel()),
    };
    const row = h(
      'div',
      { class: 'job', 'data-job': job.id },
      h('div', { class: 'job-head' }, h('strong', {}, `${job.id}: ${label}`), text, ...Object.values(buttons)),
      h('div', { class: 'job-bar', role: 'progressbar', 'aria-label': job.id }, fill),
    );
    this.rows.set(job, { row, fill, text, buttons });
    this.list.prepend(row);
    this.render(job);
    job.on(() => this.render(job));
    job.settled().then(
      () => void guard(`Finishing ${job.id}`, onDone),
      (e: Error) => toast('error', `${job.id} ended`, e.message),
    );
  }

  private render(job: Job): void {
    const r = this.rows.get(job)!;
    const { current, total } = job.progress;
    const s = job.status;
    r.fill.style.width = `${total > 0 ? Math.min(100, (current / total) * 100) : 0}%`;
    r.row.dataset.status = s;
    r.text.textContent = `${s}${job.error ? ` (${job.error.message})` : ''} · ${fmtBytes(current)} of ${fmtBytes(total)}`;
    const live = s !== 'concluded' && s !== 'null' && s !== 'aborting';
    r.buttons.Pause!.disabled = !live || s === 'paused' || s === 'standby';
    r.buttons.Resume!.disabled = s !== 'paused' && s !== 'standby';
    r.buttons.Complete!.disabled = s !== 'ready';
    r.buttons.Cancel!.disabled = !live;
  }
}
