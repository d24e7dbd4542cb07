/**
 * The bitmap bar under the allocation map: the open disk's dirty bitmaps
 * (`disk.bitmaps`) as chips with their dirty bytes; the chosen one is drawn
 * on the map as outlined cells (what changed since it was added or cleared,
 * e.g. while the guest booted). "Track changes" adds a bitmap (persistent on
 * a writable qcow2, so it is stored when the disk closes), and the chosen one
 * can be cleared or removed.
 */
import type { BitmapInfo, Disk } from '../../src/client/index.js';
import type { AllocationMap, OverlaySource } from './allocmap.js';
import { bus } from './state.js';
import { fmtBytes, guard, h } from './ui.js';

/** Marks the cells of [start, start + len) that hold a dirty extent of `name`. */
function dirtyCells(name: string): OverlaySource {
  return async (disk: Disk, start: number, len: number, n: number) => {
    const marks = new Uint8Array(n);
    const bpc = len / n;
    for await (const [o, l] of disk.bitmaps.dirtyExtents(name, { offset: start, bytes: len })) {
      const c0 = Math.max(0, Math.floor((o - start) / bpc));
      const c1 = Math.min(n - 1, Math.ceil((o + l - start) / bpc) - 1);
      marks.fill(1, c0, c1 + 1);
    }
    return marks;
  };
}

export class BitmapBar {
  readonly root: HTMLElement;
  private readonly chips: HTMLElement;
  private readonly clearBtn: HTMLButtonElement;
  private readonly removeBtn: HTMLButtonElement;
  private readonly addBtn: HTMLButtonElement;
  private disk: Disk | null = null;
  private chosen: string | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;

  constructor(private readonly map: AllocationMap) {
    const btn = (label: string, title: string, fn: () => Promise<void>) =>
      h('button', { class: 'btn btn-small', type: 'button', title, onclick: () => void guard(title, fn) }, label);
    this.chips = h('span', { class: 'chips' });
    this.addBtn = btn('Track changes', 'Add a dirty bitmap', () => this.add());
    this.clearBtn = btn('Clear', 'Clear the chosen bitmap', () => this.run((d, n) => d.bitmaps.clear(n)));
    this.removeBtn = btn('Remove', 'Remove the chosen bitmap', async () => {
      await this.run((d, n) => d.bitmaps.remove(n));
      this.chosen = null;
    });
    this.root = h('div', { class: 'bitmap-bar', 'data-testid': 'bitmap-bar' }, h('span', { class: 'muted' }, 'Dirty bitmaps'), this.chips, this.addBtn, this.clearBtn, this.removeBtn);
    bus.on('select', (sel) => {
      this.disk = sel?.disk ?? null;
      this.chosen = null;
      void this.refresh();
    });
    bus.on('data', () => {
      if (this.timer) return;
      this.timer = setTimeout(() => {
        this.timer = null;
        void this.refresh(false);
      }, 300);
    });
    void this.refresh();
  }

  private async add(): Promise<void> {
    const disk = this.disk;
    if (!disk) return;
    const names = new Set((await disk.bitmaps.list()).map((b) => b.name));
    let name = 'changes';
    for (let i = 2; names.has(name); i++) name = `changes-${i}`;
    const persistent = disk.format === 'qcow2' && !disk.readOnly;
    try {
      await disk.bitmaps.add(name, { persistent });
    } catch (e) {
      // A qcow2 v2 image cannot store bitmaps: track in memory only.
      if (!persistent) throw e;
      await disk.bitmaps.add(name);
    }
    this.chosen = name;
    await this.refresh();
  }

  private async run(op: (d: Disk, name: string) => Promise<void>): Promise<void> {
    if (this.disk && this.chosen) await op(this.disk, this.chosen);
    await this.refresh();
  }

  /** Relists the bitmaps; redraws the map when the chosen one changed (or `redraw`). */
  async refresh(redraw = true): Promise<void> {
    const disk = this.disk;
    let list: BitmapInfo[] = [];
    if (disk) list = await disk.bitmaps.list().catch(() => []);
    if (disk !== this.disk) return;
    if (!list.some((b) => b.name === this.chosen)) this.chosen = list.find((b) => !b.inconsistent)?.name ?? null;
    // An inconsistent bitmap (its disk was not closed, e.g. the page reloaded) can only be removed.
    const usable = list.some((b) => b.name === this.chosen && !b.inconsistent);
    this.chips.replaceChildren(
      ...(list.length === 0 ? [h('span', { class: 'muted' }, disk ? 'none' : '')] : []),
      ...list.map((b) =>
        h(
          'button',
          {
            class: 'chip',
            type: 'button',
            'data-bitmap': b.name,
            'aria-pressed': String(b.name === this.chosen),
            title: b.inconsistent
              ? 'Not stored after its last use (the disk was not closed): it can only be removed'
              : `${fmtBytes(b.granularity)} granules${b.persistent ? ', stored in the image when the disk closes' : ''}${b.recording ? '' : ', not recording'}`,
            onclick: () => {
              this.chosen = b.name;
              void this.refresh();
            },
          },
          `${b.name} · ${b.inconsistent ? 'inconsistent' : `${fmtBytes(b.count)} dirty`}`,
        ),
      ),
    );
    this.addBtn.disabled = !disk;
    this.clearBtn.disabled = !usable;
    this.removeBtn.disabled = !this.chosen;
    const had = this.map.overlay?.label;
    this.map.overlay = usable && this.chosen ? { source: dirtyCells(this.chosen), label: `Dirty in “${this.chosen}”` } : null;
    if (redraw || had !== (this.map.overlay?.label ?? undefined)) await this.map.refresh();
  }
}
