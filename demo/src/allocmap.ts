/**
 * The allocation map: the guest address space of the open disk as a grid of
 * cells on a canvas, each colored by what backs it (data, zeros, unallocated,
 * from the backing file, compressed). Zoom with the buttons, the mouse wheel
 * or a click; it redraws when the disk is written. An overlay (bitmaps.ts)
 * may outline cells, e.g. the dirty regions of a bitmap.
 */
import type { Disk, MapExtent } from '../../src/client/index.js';
import { bus } from './state.js';
import { fmtBytes, h } from './ui.js';

export const CATEGORIES = [
  { key: 'data', label: 'Data', color: '#2563eb', help: 'written in this image' },
  { key: 'compressed', label: 'Compressed', color: '#9333ea', help: 'compressed clusters' },
  { key: 'zero', label: 'Zeros', color: '#14b8a6', help: 'allocated, reads as zeros' },
  { key: 'backing', label: 'From backing', color: '#f59e0b', help: 'read from the backing file' },
  { key: 'unallocated', label: 'Unallocated', color: '#e2e8f0', help: 'never written, costs nothing' },
] as const;
type Cat = (typeof CATEGORIES)[number]['key'];
/** Which category colors a cell that holds several: the first present wins. */
const PRIORITY: Cat[] = ['compressed', 'data', 'backing', 'zero', 'unallocated'];

export function categoryOf(e: MapExtent): Cat {
  if (e.compressed) return 'compressed';
  if (e.allocated) return e.zero || !e.data ? 'zero' : 'data';
  return e.data && !e.zero ? 'backing' : 'unallocated';
}

/** Outline color of overlay cells. */
export const OVERLAY_COLOR = '#dc2626';

/** Which of `cells` cells of [start, start + len) the overlay marks (1), or null for none. */
export type OverlaySource = (disk: Disk, start: number, len: number, cells: number) => Promise<Uint8Array | null>;

const CELL = 12;
const GAP = 2;
const ROWS = 16;

export class AllocationMap {
  readonly root: HTMLElement;
  private readonly canvas: HTMLCanvasElement;
  private readonly legend: HTMLElement;
  private readonly axis: HTMLElement;
  private readonly tip: HTMLElement;
  private readonly range: HTMLElement;
  private disk: Disk | null = null;
  private start = 0;
  private len = 0;
  private cols = 64;
  private cells: Array<Record<Cat, number>> = [];
  private marks: Uint8Array | null = null;
  /** The overlay and its legend label (set by the bitmap bar); refresh() after changing it. */
  overlay: { source: OverlaySource; label: string } | null = null;
  private busy = false;
  private again = false;
  private timer: ReturnType<typeof setTimeout> | null = null;
  /** Number of completed redraws (tests wait on it). */
  redraws = 0;

  constructor() {
    this.canvas = h('canvas', { class: 'map-canvas', 'data-testid': 'allocation-map', role: 'img', 'aria-label': 'Allocation map of the guest address space' });
    this.legend = h('ul', { class: 'legend' });
    this.axis = h('div', { class: 'map-axis' });
    this.tip = h('div', { class: 'map-tip', hidden: true });
    this.range = h('span', { class: 'map-range muted' });
    const btn = (label: string, title: string, fn: () => void) => h('button', { class: 'btn btn-small', type: 'button', title, onclick: fn }, label);
    const tools = h('div', { class: 'map-tools' }, this.range, btn('−', 'Zoom out', () => this.zoom(2)), btn('+', 'Zoom in', () => this.zoom(0.5)), btn('Whole disk', 'Show the whole disk', () => this.reset()), btn('↻', 'Redraw now', () => this.refresh()));
    this.root = h('section', { class: 'panel map-panel' }, h('div', { class: 'panel-head' }, h('h2', {}, 'Allocation map'), tools), h('div', { class: 'map-wrap' }, this.canvas, this.tip), this.axis, this.legend);
    this.canvas.addEventListener('mousemove', (e) => this.hover(e));
    this.canvas.addEventListener('mouseleave', () => (this.tip.hidden = true));
    this.canvas.addEventListener('click', (e) => {
      const c = this.cellAt(e);
      if (c !== null) this.zoomAt(this.start + (c + 0.5) * this.bytesPerCell(), 0.125);
    });
    this.canvas.addEventListener(
      'wheel',
      (e) => {
        if (!this.disk) return;
        e.preventDefault();
        const c = this.cellAt(e);
        const at = c === null ? this.start + this.len / 2 : this.start + (c + 0.5) * this.bytesPerCell();
        this.zoomAt(at, e.deltaY > 0 ? 2 : 0.5);
      },
      { passive: false },
    );
    new ResizeObserver(() => this.layout()).observe(this.root);
    bus.on('select', (sel) => this.setDisk(sel?.disk ?? null));
    bus.on('data', () => this.refreshSoon());
    this.layout();
  }

  private bytesPerCell(): number {
    return this.len / (this.cols * ROWS);
  }

  private minLen(): number {
    return Math.min(this.disk?.length ?? 0, this.cols * ROWS * 512);
  }

  setDisk(disk: Disk | null): void {
    if (disk === this.disk) return;
    this.disk = disk;
    this.start = 0;
    this.len = disk?.length ?? 0;
    this.cells = [];
    void this.refresh();
  }

  reset(): void {
    this.start = 0;
    this.len = this.disk?.length ?? 0;
    void this.refresh();
  }

  zoom(factor: number): void {
    this.zoomAt(this.start + this.len / 2, factor);
  }

  private zoomAt(at: number, factor: number): void {
    if (!this.disk) return;
    const size = this.disk.length;
    const len = Math.min(size, Math.max(this.minLen(), Math.round(this.len * factor)));
    let start = Math.round(at - len / 2);
    start = Math.max(0, Math.min(size - len, start));
    start -= start % 512;
    if (start === this.start && len === this.len) return;
    this.start = start;
    this.len = len;
    void this.refresh();
  }

  /** Redraws within 150 ms (coalesces bursts of writes). */
  refreshSoon(): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.refresh();
    }, 150);
  }

  async refresh(): Promise<void> {
    if (this.busy) {
      this.again = true;
      return;
    }
    this.busy = true;
    try {
      do {
        this.again = false;
        await this.load();
        this.draw();
      } while (this.again);
    } finally {
      this.busy = false;
    }
  }

  private async load(): Promise<void> {
    const disk = this.disk;
    const n = this.cols * ROWS;
    const empty = () => ({ data: 0, compressed: 0, zero: 0, backing: 0, unallocated: 0 });
    if (!disk || this.len <= 0) {
      this.cells = [];
      return;
    }
    let extents: MapExtent[];
    try {
      extents = await disk.map(this.start, this.len);
    } catch {
      return; // closed while loading: the next select redraws
    }
    if (disk !== this.disk) return;
    const cells = Array.from({ length: n }, empty);
    const bpc = this.len / n;
    for (const e of extents) {
      const cat = categoryOf(e);
      const a = e.offset - this.start;
      const b = a + e.length;
      const c0 = Math.max(0, Math.floor(a / bpc));
      const c1 = Math.min(n - 1, Math.ceil(b / bpc) - 1);
      for (let c = c0; c <= c1; c++) {
        const lo = Math.max(a, c * bpc);
        const hi = Math.min(b, (c + 1) * bpc);
        if (hi > lo) cells[c]![cat] += hi - lo;
      }
    }
    this.cells = cells;
    const ov = this.overlay;
    this.marks = ov ? await ov.source(disk, this.start, this.len, n).catch(() => null) : null;
    this.redraws++;
  }

  private layout(): void {
    const width = Math.max(240, this.canvas.parentElement?.clientWidth ?? 600);
    const cols = Math.max(16, Math.floor((width + GAP) / (CELL + GAP)));
    const dpr = window.devicePixelRatio || 1;
    const w = cols * (CELL + GAP) - GAP;
    const hgt = ROWS * (CELL + GAP) - GAP;
    this.canvas.style.width = `${w}px`;
    this.canvas.style.height = `${hgt}px`;
    this.canvas.width = Math.round(w * dpr);
    this.canvas.height = Math.round(hgt * dpr);
    if (cols !== this.cols) {
      this.cols = cols;
      if (this.disk) {
        this.len = Math.max(this.len, this.minLen());
        void this.refresh();
        return;
      }
    }
    this.draw();
  }

  private draw(): void {
    const ctx = this.canvas.getContext('2d');
    if (!ctx) return;
    const dpr = window.devicePixelRatio || 1;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, this.canvas.width, this.canvas.height);
    const totals: Record<Cat, number> = { data: 0, compressed: 0, zero: 0, backing: 0, unallocated: 0 };
    const n = this.cols * ROWS;
    for (let c = 0; c < n; c++) {
      const x = (c % this.cols) * (CELL + GAP);
      const y = Math.floor(c / this.cols) * (CELL + GAP);
      const cell = this.cells[c];
      if (!cell) {
        ctx.fillStyle = '#f1f5f9';
      } else {
        for (const k of PRIORITY) totals[k] += cell[k];
        const cat = PRIORITY.find((k) => cell[k] > 0) ?? 'unallocated';
        ctx.fillStyle = CATEGORIES.find((d) => d.key === cat)!.color;
      }
      ctx.beginPath();
      ctx.roundRect(x, y, CELL, CELL, 2);
      ctx.fill();
      if (this.marks?.[c]) {
        ctx.strokeStyle = OVERLAY_COLOR;
        ctx.lineWidth = 2;
        ctx.strokeRect(x + 1, y + 1, CELL - 2, CELL - 2);
      }
    }
    const disk = this.disk;
    this.range.textContent = disk ? `${fmtBytes(this.bytesPerCell())} per cell · showing ${fmtBytes(this.len)} of ${fmtBytes(disk.length)}` : 'no image open';
    this.axis.replaceChildren(...(disk ? [h('span', {}, fmtBytes(this.start)), h('span', {}, fmtBytes(this.start + this.len / 2)), h('span', {}, fmtBytes(this.start + this.len))] : []));
    this.legend.replaceChildren(
      ...CATEGORIES.map((d) => h('li', { title: d.help, 'data-category': d.key }, h('span', { class: 'swatch', style: `background:${d.color}` }), h('span', {}, d.label), h('span', { class: 'muted' }, disk ? fmtBytes(totals[d.key]) : ''))),
      ...(this.overlay && disk ? [h('li', { 'data-category': 'overlay' }, h('span', { class: 'swatch swatch-outline', style: `border-color:${OVERLAY_COLOR}` }), h('span', {}, this.overlay.label))] : []),
    );
    this.canvas.dataset.redraws = String(this.redraws);
  }

  private cellAt(e: MouseEvent): number | null {
    const r = this.canvas.getBoundingClientRect();
    const col = Math.floor((e.clientX - r.left) / (CELL + GAP));
    const row = Math.floor((e.clientY - r.top) / (CELL + GAP));
    if (col < 0 || col >= this.cols || row < 0 || row >= ROWS || !this.disk) return null;
    return row * this.cols + col;
  }

  private hover(e: MouseEvent): void {
    const c = this.cellAt(e);
    const cell = c === null ? undefined : this.cells[c];
    if (c === null || !cell) {
      this.tip.hidden = true;
      return;
    }
    const bpc = this.bytesPerCell();
    const lo = this.start + c * bpc;
    const parts = CATEGORIES.filter((d) => cell[d.key] > 0).map((d) => `${d.label.toLowerCase()} ${fmtBytes(cell[d.key])}`);
    this.tip.textContent = `${fmtBytes(lo)} – ${fmtBytes(lo + bpc)}: ${parts.join(', ')}. Click to zoom in.`;
    this.tip.hidden = false;
    const r = this.canvas.getBoundingClientRect();
    this.tip.style.left = `${Math.min(e.clientX - r.left + 12, r.width - 260)}px`;
    this.tip.style.top = `${e.clientY - r.top + 14}px`;
  }
}
