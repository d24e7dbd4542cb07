/**
 * Image details: what qemu-img info says, as panels — the image, its format
 * specific information, the backing chain as a picture, the snapshots, and
 * the plain qemu-img info text.
 */
import { dumpImageInfo, type ImageInfo as QemuImageInfo } from '../../src/cli/info-dump.js';
import type { ImageInfo } from '../../src/client/index.js';
import { snapshotJson, snapshotTable as snapshotRows } from './snapshots.js';
import { bus, displayName, storageOf, type Selected } from './state.js';
import { fmtBytes, h } from './ui.js';

function kv(rows: Array<[string, Node | string | number | undefined]>): HTMLElement {
  return h('dl', { class: 'kv' }, ...rows.filter(([, v]) => v !== undefined).flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v as Node | string)]));
}

function card(title: string, ...body: Node[]): HTMLElement {
  return h('section', { class: 'card' }, h('h3', { class: 'card-title' }, title), ...body);
}

function yesNo(v: unknown): string {
  return v === true ? 'yes' : v === false ? 'no' : String(v);
}

const SPECIFIC_LABELS: Record<string, string> = {
  compat: 'Version (compat)',
  'compression-type': 'Compression',
  'lazy-refcounts': 'Lazy refcounts',
  'refcount-bits': 'Refcount bits',
  corrupt: 'Marked corrupt',
  'extended-l2': 'Extended L2 (subclusters)',
  'data-file': 'External data file',
  'data-file-raw': 'Data file is raw',
};

function specificRows(info: ImageInfo): Array<[string, string]> {
  const data = info.specific?.data ?? {};
  return Object.entries(data)
    .filter(([k]) => k !== 'bitmaps')
    .map(([k, v]) => [SPECIFIC_LABELS[k] ?? k.replace(/-/g, ' '), typeof v === 'object' ? JSON.stringify(v) : yesNo(v)]);
}

function qemuInfo(sel: Selected): QemuImageInfo {
  const i = sel.info!;
  const backing = sel.chain[1]?.path;
  return {
    filename: displayName(i.path),
    format: i.format,
    'virtual-size': i.virtualSize,
    'actual-size': i.actualSize,
    ...(i.clusterSize !== undefined ? { 'cluster-size': i.clusterSize } : {}),
    ...(i.dirty ? { 'dirty-flag': true } : {}),
    ...(i.backingFile ? { 'backing-filename': i.backingFile, ...(backing ? { 'full-backing-filename': backing } : {}) } : {}),
    ...(i.backingFormat ? { 'backing-filename-format': i.backingFormat } : {}),
    ...(sel.snapshots?.length ? { snapshots: sel.snapshots.map(snapshotJson) } : {}),
    ...(i.specific ? { 'format-specific': i.specific } : {}),
  };
}

function chainPicture(sel: Selected): HTMLElement {
  const wrap = h('ol', { class: 'chain' });
  sel.chain.forEach((c, idx) => {
    const i = c.info;
    const kind = storageOf(c.path);
    wrap.append(
      h(
        'li',
        { class: 'chain-node' + (c.error ? ' chain-error' : '') },
        h('div', { class: 'chain-head' }, h('span', { class: `badge badge-${kind}` }, kind.toUpperCase()), h('strong', {}, displayName(c.path)), idx === 0 ? h('span', { class: 'pill' }, 'this image') : null),
        i ? h('div', { class: 'chain-meta' }, `${i.format} · ${fmtBytes(i.virtualSize)} virtual · ${fmtBytes(i.actualSize)} stored`) : h('div', { class: 'chain-meta error-text' }, c.error ?? ''),
        idx < sel.chain.length - 1 ? h('div', { class: 'chain-arrow', 'aria-hidden': 'true' }, 'reads of unwritten clusters fall through to ↓') : null,
      ),
    );
  });
  return wrap;
}

function snapshotTable(sel: Selected): HTMLElement {
  if (sel.snapshotsError) return h('p', { class: 'error-text' }, `The snapshots could not be listed: ${sel.snapshotsError}`);
  if (!sel.snapshots) return h('p', { class: 'muted' }, 'Reading…');
  if (!sel.snapshots.length) return h('p', { class: 'muted' }, sel.info?.format === 'qcow2' ? 'No internal snapshots. (The Snapshots tab makes them, as qemu-img snapshot -c does.)' : `${sel.info?.format ?? 'This'} image has no internal snapshots.`);
  return h('div', {}, snapshotRows(sel.snapshots), h('p', { class: 'muted small' }, 'Create, apply and delete them in the Snapshots tab.'));
}

export function renderDetails(root: HTMLElement, sel: Selected | null): void {
  if (!sel) {
    root.replaceChildren();
    return;
  }
  const i = sel.info;
  if (!i) {
    root.replaceChildren(sel.openError ? h('p', { class: 'error-text' }, sel.openError) : h('p', { class: 'muted' }, 'Reading the image…'));
    return;
  }
  const sparse = i.virtualSize > 0 ? Math.max(0, 100 - (100 * i.actualSize) / i.virtualSize) : 0;
  const overview = card(
    'Image',
    kv([
      ['Name', displayName(i.path)],
      ['Stored in', storageOf(i.path) === 'idb' ? 'IndexedDB' : storageOf(i.path) === 'opfs' ? 'Origin private file system' : storageOf(i.path)],
      ['Format', i.format],
      ['Virtual size', `${fmtBytes(i.virtualSize)} (${i.virtualSize.toLocaleString('en-US')} bytes)`],
      ['Disk size', `${fmtBytes(i.actualSize)}${i.format === 'qcow2' ? ` — ${sparse.toFixed(sparse > 99 ? 2 : 0)}% of the guest space costs nothing` : ''}`],
      ['Cluster size', i.clusterSize !== undefined ? fmtBytes(i.clusterSize) : undefined],
      ['Cleanly shut down', i.dirty === undefined ? undefined : i.dirty ? 'no (dirty: lazy refcounts need a check)' : 'yes'],
      ['Opened', sel.disk ? (sel.disk.readOnly ? 'read-only' : 'read-write') : sel.openError ? 'no' : 'opening…'],
    ]),
    sel.openError ? h('p', { class: 'error-text' }, sel.openError) : h('span'),
  );
  const specRows = specificRows(i);
  const bitmaps = (i.specific?.data?.bitmaps as Array<{ name?: string; granularity?: number; flags?: string[] }> | undefined) ?? [];
  const specific = card(
    'Format specific',
    specRows.length ? kv(specRows) : h('p', { class: 'muted' }, `${i.format} has no format specific information.`),
    bitmaps.length ? h('div', {}, h('h4', {}, 'Persistent dirty bitmaps'), h('ul', {}, ...bitmaps.map((b) => h('li', {}, `${b.name ?? '?'} — granularity ${fmtBytes(b.granularity)}${b.flags?.length ? ` (${b.flags.join(', ')})` : ''}`)))) : h('span'),
  );
  const chain = card('Backing chain', sel.chain.length > 1 ? chainPicture(sel) : h('p', { class: 'muted' }, 'No backing file: this image holds all of its data itself.'));
  const snaps = card('Snapshots', snapshotTable(sel));
  const raw = h('details', { class: 'card raw-info' }, h('summary', {}, 'As qemu-img info prints it'), h('pre', { class: 'mono', 'data-testid': 'qemu-img-info' }, dumpImageInfo(qemuInfo(sel))));
  root.replaceChildren(h('div', { class: 'cards' }, overview, specific, chain, snaps), raw);
}

export function installDetails(root: HTMLElement): void {
  bus.on('select', (sel) => renderDetails(root, sel));
  bus.on('snapshots', (sel) => renderDetails(root, sel));
}
