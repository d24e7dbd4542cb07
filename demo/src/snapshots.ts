/**
 * The Snapshots tab: the open disk's internal snapshots through the page API
 * (`disk.snapshots`): the list with the columns of `qemu-img snapshot -l`
 * (plus the disk size each one holds), and create / apply / delete, from a
 * row or by id or name as `qemu-img snapshot -c / -a / -d` take them. Errors
 * are shown as the API reports them (the BlockError's code and message); the
 * demo refuses nothing itself. The list is read through the worker, which
 * owns the qcow2 format: the page never parses the image.
 */
import type { Disk, SnapshotEntry } from '../../src/client/index.js';
import { sizeToStr } from '../../src/cli/format.js';
import { dumpSnapshots, type SnapshotJson } from '../../src/cli/info-dump.js';
import { app, bus, type Selected, type Snapshot } from './state.js';
import { confirmDialog, h, showError, toast } from './ui.js';

/** "CODE: message" of an error as the page API reports it. */
export function errorText(e: unknown): string {
  const err = e as { code?: unknown; message?: unknown };
  const message = String(err?.message ?? e);
  return typeof err?.code === 'string' ? `${err.code}: ${message}` : message;
}

/** A snapshot in the shape of qemu-img's JSON (for the qemu-img info and snapshot -l texts). */
export function snapshotJson(s: SnapshotEntry): SnapshotJson {
  return {
    id: s.id,
    name: s.name,
    'vm-state-size': s.vmStateSize,
    'date-sec': Math.floor(s.date / 1000),
    'date-nsec': (s.date % 1000) * 1e6,
    'vm-clock-sec': Math.floor(s.vmClockNsec / 1e9),
    'vm-clock-nsec': s.vmClockNsec % 1e9,
    ...(s.icount !== undefined ? { icount: s.icount } : {}),
  };
}

/** What `qemu-img snapshot -l` prints for this list. */
export function snapshotListText(list: SnapshotEntry[]): string {
  return list.length ? 'Snapshot list:\n' + dumpSnapshots(list.map(snapshotJson)) : '';
}

const two = (n: number) => String(n).padStart(2, '0');

/** The DATE column: local time, as qemu-img prints it. */
export function snapshotDate(ms: number): string {
  const d = new Date(Math.floor(ms / 1000) * 1000);
  return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
}

/** The VM CLOCK column: hh:mm:ss.mmm of the guest clock. */
export function snapshotClock(nsec: number): string {
  const secs = Math.floor(nsec / 1e9);
  return `${two(Math.floor(secs / 3600))}:${two(Math.floor(secs / 60) % 60)}:${two(secs % 60)}.${String(Math.floor(nsec / 1e6) % 1000).padStart(3, '0')}`;
}

/** The table of snapshots; `actions` adds a cell of buttons to each row. */
export function snapshotTable(list: Snapshot[], actions?: (s: Snapshot) => Node[]): HTMLElement {
  const heads = ['ID', 'Tag', 'VM size', 'Date', 'VM clock', 'Disk size', ...(actions ? [''] : [])];
  return h(
    'table',
    { class: 'table snapshot-table', 'data-testid': 'snapshot-table' },
    h('thead', {}, h('tr', {}, ...heads.map((t) => h('th', {}, t)))),
    h(
      'tbody',
      {},
      ...list.map((s) =>
        h(
          'tr',
          { 'data-snapshot': s.name, 'data-id': s.id },
          h('td', { 'data-col': 'id' }, s.id),
          h('td', { 'data-col': 'name' }, s.name),
          h('td', { 'data-col': 'vm-size', class: 'num' }, sizeToStr(s.vmStateSize)),
          h('td', { 'data-col': 'date' }, snapshotDate(s.date)),
          h('td', { 'data-col': 'vm-clock' }, snapshotClock(s.vmClockNsec)),
          h('td', { 'data-col': 'disk-size', class: 'num' }, s.diskSize !== undefined ? sizeToStr(s.diskSize) : '–'),
          actions ? h('td', { class: 'row-actions' }, ...actions(s)) : null,
        ),
      ),
    ),
  );
}

/** Lists the snapshots of the selection's open disk into `sel` (no event). */
export async function loadSnapshots(sel: Selected): Promise<void> {
  delete sel.snapshotsError;
  if (!sel.disk) {
    sel.snapshots = null;
    sel.snapshotsError = sel.openError ? `The disk is not open: ${sel.openError}` : 'The disk is not open';
    return;
  }
  try {
    sel.snapshots = await sel.disk.snapshots.list();
  } catch (e) {
    sel.snapshots = null;
    sel.snapshotsError = errorText(e);
  }
}

/** Relists the selected disk's snapshots and tells the panels. */
export async function relistSnapshots(): Promise<void> {
  const sel = app.selected;
  if (!sel) return;
  await loadSnapshots(sel);
  if (app.selected === sel) bus.emit('snapshots', sel);
}

/** The Snapshots tab. */
export class SnapshotsPanel {
  readonly root: HTMLElement;
  private readonly nameInput: HTMLInputElement;
  private readonly list: HTMLElement;
  private readonly error: HTMLElement;
  private readonly status: HTMLElement;
  private readonly dump: HTMLElement;
  private readonly buttons: HTMLButtonElement[] = [];
  private busy = false;
  /** The image the panel shows (its messages are cleared when another is selected). */
  private shown: string | null = null;

  constructor() {
    this.nameInput = h('input', { type: 'text', name: 'snapshot-name', 'data-testid': 'snapshot-name', placeholder: 'name (or id to apply / delete)', autocomplete: 'off', spellcheck: 'false' });
    const btn = (label: string, testid: string, title: string, what: string, fn: () => Promise<void>, primary = false) => {
      const b = h('button', { class: primary ? 'btn btn-primary' : 'btn', type: 'button', 'data-testid': testid, title, onclick: () => void this.act(what, fn) }, label);
      this.buttons.push(b);
      return b;
    };
    this.nameInput.addEventListener('keydown', (e) => {
      if (e.key === 'Enter') void this.act('Creating the snapshot', () => this.create(this.nameInput.value));
    });
    this.error = h('p', { class: 'error-text', role: 'alert', 'data-testid': 'snapshot-error', hidden: true });
    this.status = h('p', { class: 'muted', role: 'status', 'data-testid': 'snapshot-status' });
    this.list = h('div', { class: 'snapshot-list', 'data-testid': 'snapshot-list' });
    this.dump = h('pre', { class: 'mono', 'data-testid': 'snapshot-dump' });
    this.root = h(
      'div',
      { class: 'snapshots-panel' },
      h(
        'div',
        { class: 'row' },
        this.nameInput,
        btn('Create', 'snapshot-create', 'Take a snapshot of the disk as it is now (qemu-img snapshot -c)', 'Creating the snapshot', () => this.create(this.nameInput.value), true),
        btn('Apply', 'snapshot-apply', 'Revert the disk to the snapshot with this id or name (qemu-img snapshot -a)', 'Applying the snapshot', () => this.apply(this.nameInput.value)),
        btn('Delete', 'snapshot-delete', 'Delete the snapshot with this id or name (qemu-img snapshot -d)', 'Deleting the snapshot', () => this.remove(this.nameInput.value)),
      ),
      h('p', { class: 'muted' }, 'Internal snapshots live inside the qcow2 file: each keeps the disk as it was when it was taken, sharing unchanged clusters with the disk. Applying one brings that disk back; the VM tab stores a whole machine in one.'),
      this.error,
      this.status,
      this.list,
      h('details', { class: 'raw-info' }, h('summary', {}, 'As qemu-img snapshot -l prints it'), this.dump),
    );
    bus.on('select', (sel) => this.render(sel));
    bus.on('snapshots', (sel) => this.render(sel));
    this.render(null);
  }

  private get disk(): Disk {
    const d = app.selected?.disk;
    if (!d) throw Object.assign(new Error(app.selected?.openError ?? 'No disk is open: select an image first'), { code: 'ENOMEDIUM' });
    return d;
  }

  /** Runs one action: its error (code and message) stays shown until the next one; the list is read again either way. */
  private async act(what: string, fn: () => Promise<void>): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    this.error.hidden = true;
    this.error.textContent = '';
    this.status.textContent = '';
    this.setEnabled();
    try {
      await fn();
    } catch (e) {
      this.error.textContent = errorText(e);
      this.error.hidden = false;
      showError(e, what);
    } finally {
      this.busy = false;
      await relistSnapshots();
      this.setEnabled();
    }
  }

  private say(text: string): void {
    this.status.textContent = text;
  }

  private async create(name: string): Promise<void> {
    const s = await this.disk.snapshots.create(name);
    this.say(`Created snapshot '${s.name}' (id ${s.id}).`);
    toast('ok', `Snapshot '${s.name}' created`);
    this.nameInput.value = '';
  }

  /** Applies snapshot `idOrName` (`label` names it to the person: a row passes its id and its name). */
  private async apply(idOrName: string, label = JSON.stringify(idOrName)): Promise<void> {
    const disk = this.disk;
    const vm = app.vmRunning ? ' The running VM is stopped first (the VM tab’s “Restore machine” resumes a saved machine instead).' : '';
    if (!(await confirmDialog(`Apply snapshot ${label}?`, `The disk goes back to what the snapshot holds; what was written since it was taken is lost unless another snapshot keeps it.${vm}`, 'Apply'))) return;
    if (app.vmRunning) await app.stopVm?.();
    await disk.snapshots.apply(idOrName);
    this.say(`Applied snapshot ${label}: the disk is as it was then.`);
    toast('ok', `Snapshot ${label} applied`);
    bus.emit('data', null);
  }

  private async remove(idOrName: string, label = JSON.stringify(idOrName)): Promise<void> {
    const disk = this.disk;
    if (!(await confirmDialog(`Delete snapshot ${label}?`, 'Its clusters are freed unless the disk or another snapshot still uses them. The disk itself does not change.', 'Delete'))) return;
    await disk.snapshots.delete(idOrName);
    this.say(`Deleted snapshot ${label}.`);
    toast('ok', `Snapshot ${label} deleted`);
  }

  private setEnabled(): void {
    const off = this.busy || !app.selected?.disk;
    for (const b of this.buttons) b.disabled = off;
    for (const b of this.list.querySelectorAll<HTMLButtonElement>('button')) b.disabled = off;
  }

  private render(sel: Selected | null): void {
    if (sel?.path !== this.shown) {
      this.shown = sel?.path ?? null;
      this.status.textContent = '';
      this.error.textContent = '';
      this.error.hidden = true;
    }
    if (!sel) {
      this.list.replaceChildren();
      this.dump.textContent = '';
      this.setEnabled();
      return;
    }
    const list = sel.snapshots;
    // A row acts by id (unique, where names need not be in images made elsewhere).
    const rowBtn = (label: string, s: Snapshot, fn: (idOrName: string, label: string) => Promise<void>) =>
      h('button', { class: 'btn btn-small', type: 'button', 'data-action': label.toLowerCase(), onclick: () => void this.act(`${label === 'Apply' ? 'Applying' : 'Deleting'} snapshot '${s.name}'`, () => fn(s.id, `'${s.name}' (id ${s.id})`)) }, label);
    if (sel.snapshotsError) this.list.replaceChildren(h('p', { class: 'error-text', 'data-testid': 'snapshot-list-error' }, `The snapshots could not be listed: ${sel.snapshotsError}`));
    else if (!list) this.list.replaceChildren(h('p', { class: 'muted' }, 'Opening the disk…'));
    else if (!list.length) this.list.replaceChildren(h('p', { class: 'muted', 'data-testid': 'snapshot-none' }, sel.info?.format === 'qcow2' ? 'No internal snapshots yet.' : `${sel.info?.format ?? 'This'} image has no internal snapshots (only qcow2 keeps them).`));
    else this.list.replaceChildren(snapshotTable(list, (s) => [rowBtn('Apply', s, (x, l) => this.apply(x, l)), rowBtn('Delete', s, (x, l) => this.remove(x, l))]));
    this.dump.textContent = list ? snapshotListText(list) : '';
    this.setEnabled();
  }
}
