/**
 * The sidebar: storage quota and persistence, the image list (OPFS and
 * IndexedDB) with format, size and usage, and the actions on images: create,
 * import (pick or drop a file), export / download, convert, delete. Also the
 * selection: selecting an image reads its details and opens it.
 */
import { groupImageFiles, type Disk, type ExportFormat, type ImageFormat, type ImageInfo } from '../../src/client/index.js';
import { app, bus, displayName, resolveBacking, storageOf, type ChainEntry, type Selected } from './state.js';
import { loadSnapshots } from './snapshots.js';
import { runJob } from './jobs.js';
import { confirmDialog, describeError, field, fmtBytes, formDialog, guard, h, parseSize, showError, toast } from './ui.js';
import { addPassword, dropSecret, keys, newPasswordFields, withPassword } from './unlock.js';

const infoCache = new Map<string, ImageInfo | { error: string }>();

function dw() {
  if (!app.dw) throw new Error('The block worker is not running');
  return app.dw;
}

// ---------------------------------------------------------------- list

export async function refreshList(): Promise<void> {
  const listEl = document.getElementById('disk-list')!;
  const entries = (await dw().list()).filter((e) => !e.path.includes('/.diskworker-tmp/') && !e.path.startsWith('memory:'));
  entries.sort((a, b) => a.path.localeCompare(b.path));
  await Promise.all(
    entries.map(async (e) => {
      try {
        infoCache.set(e.path, await dw().info(e.path));
      } catch (err) {
        infoCache.set(e.path, { error: describeError(err).title });
      }
    }),
  );
  const groups: Array<[string, string, typeof entries]> = [
    ['opfs', 'Origin private file system', entries.filter((e) => storageOf(e.path) === 'opfs')],
    ['idb', 'IndexedDB', entries.filter((e) => storageOf(e.path) === 'idb')],
  ];
  listEl.replaceChildren();
  for (const [kind, title, list] of groups) {
    const ul = h('ul', { class: 'disk-group', 'data-storage': kind });
    for (const e of list) ul.append(diskItem(e.path));
    if (!list.length) ul.append(h('li', { class: 'disk-empty' }, 'No images yet'));
    listEl.append(h('h3', { class: 'group-title' }, h('span', { class: `badge badge-${kind}` }, kind === 'opfs' ? 'OPFS' : 'IDB'), title), ul);
  }
  await refreshStorage();
}

function diskItem(path: string): HTMLElement {
  const info = infoCache.get(path);
  const selected = app.selected?.path === path;
  const meta =
    info && 'format' in info
      ? [
          h('span', { class: 'fmt' }, info.format),
          h('span', {}, `${fmtBytes(info.virtualSize)}`),
          h('span', { class: 'muted' }, `uses ${fmtBytes(info.actualSize)}`),
          info.backingFile ? h('span', { class: 'muted', title: `backing file ${info.backingFile}` }, '⤷ overlay') : null,
        ]
      : [h('span', { class: 'muted' }, info && 'error' in info ? info.error : '')];
  const usage =
    info && 'format' in info && info.virtualSize > 0
      ? h('div', { class: 'usage', title: `${fmtBytes(info.actualSize)} stored for ${fmtBytes(info.virtualSize)} of guest space` }, h('div', { class: 'usage-fill', style: `width:${Math.min(100, (100 * info.actualSize) / info.virtualSize).toFixed(1)}%` }))
      : null;
  const btn = h('button', { class: 'disk-item' + (selected ? ' selected' : ''), type: 'button', 'data-path': path, 'aria-pressed': selected ? 'true' : 'false', onclick: () => void guard('Opening the image', () => select(path)) }, h('span', { class: 'disk-name' }, displayName(path)), h('span', { class: 'disk-meta' }, ...meta), usage);
  return h('li', {}, btn);
}

export async function refreshStorage(): Promise<void> {
  const el = document.getElementById('storage')!;
  const r = await dw().storage();
  const persisted = r.persisted ?? (await navigator.storage?.persisted?.().catch(() => false));
  const pct = r.usage !== undefined && r.quota ? (100 * r.usage) / r.quota : 0;
  const persistBtn = persisted
    ? null
    : h('button', { class: 'link', type: 'button', onclick: () => void guard('Asking for persistent storage', async () => {
        const ok = await navigator.storage.persist();
        toast(ok ? 'ok' : 'info', ok ? 'Storage is persistent now' : 'The browser said no', ok ? 'The browser will not evict these images under storage pressure.' : 'Browsers grant this for sites you use often or have bookmarked; images may be evicted when space runs low.');
        await refreshStorage();
      }) }, 'Make persistent');
  el.replaceChildren(
    h('div', { class: 'storage-row' }, h('span', {}, 'Storage used'), h('strong', {}, `${fmtBytes(r.usage)} of ${fmtBytes(r.quota)}`)),
    h('div', { class: 'meter', title: `${pct.toFixed(2)}% of the quota` }, h('div', { class: 'meter-fill', style: `width:${Math.max(pct, r.usage ? 0.5 : 0).toFixed(2)}%` })),
    h('div', { class: 'storage-row' }, h('span', { class: persisted ? 'pill pill-ok' : 'pill pill-warn' }, persisted ? 'persistent' : 'best effort'), persistBtn),
  );
}

// ---------------------------------------------------------------- selection

/**
 * Selects an image: reads its details, then opens it for the panels. Console
 * commands typed meanwhile wait for the open (app.opening) rather than
 * finding no disk.
 */
export function select(path: string): Promise<void> {
  const done = openSelection(path);
  app.opening = done.then(() => undefined, () => undefined);
  return done;
}

async function openSelection(path: string): Promise<void> {
  await closeSelected();
  const sel: Selected = { path, disk: null, info: null, chain: [], snapshots: null };
  app.selected = sel;
  markSelected();
  bus.emit('select', sel);
  try {
    sel.info = await dw().info(path);
  } catch (e) {
    sel.openError = `${describeError(e).title} (${(e as Error).message})`;
    bus.emit('select', sel);
    throw e;
  }
  sel.chain = await backingChain(path, sel.info);
  const allow = sel.chain.some((c) => storageOf(c.path) === 'http') ? ['http'] : [];
  // An encrypted image asks for its password (unless this page has its key already).
  const open = (readOnly: boolean) => withPassword(displayName(path), path, (options) => dw().open({ path, allowBackingProtocols: allow, ...(readOnly ? { readOnly } : {}), ...(options ? { options } : {}) }));
  try {
    sel.disk = await open(false);
    if (!sel.disk) sel.openError = 'The image is encrypted and was not unlocked: select it again to give its password.';
  } catch (e) {
    if ((e as { code?: string }).code !== 'EBUSY' && (e as { code?: string }).code !== 'EACCES' && (e as { code?: string }).code !== 'EPERM') throw e;
    sel.openError = (e as Error).message;
    sel.disk = await open(true).catch(() => null);
  }
  if (app.selected !== sel) {
    await sel.disk?.close();
    return;
  }
  // The worker lists them (disk.snapshots), also on a disk opened read-only.
  await loadSnapshots(sel);
  if (app.selected !== sel) return;
  bus.emit('select', sel);
}

async function backingChain(path: string, top: ImageInfo): Promise<ChainEntry[]> {
  const chain: ChainEntry[] = [{ path, info: top }];
  let cur = top;
  let curPath = path;
  for (let depth = 0; depth < 16 && cur.backingFile; depth++) {
    const next = resolveBacking(curPath, cur.backingFile);
    try {
      cur = await dw().info(next);
      chain.push({ path: next, info: cur });
      curPath = next;
    } catch (e) {
      chain.push({ path: next, error: describeError(e).title + ' ' + (e as Error).message });
      break;
    }
  }
  return chain;
}

/** Refreshes the selected image's info (after writes, checks, ...). */
export async function refreshSelectedInfo(): Promise<void> {
  const sel = app.selected;
  if (!sel) return;
  sel.info = await dw().info(sel.path);
  if (sel.chain[0]) sel.chain[0].info = sel.info;
  bus.emit('select', sel);
}

export async function closeSelected(): Promise<void> {
  if (app.vmRunning) await app.stopVm?.();
  const sel = app.selected;
  app.selected = null;
  if (sel?.disk) {
    const d = sel.disk;
    sel.disk = null;
    await d.close().catch((e) => showError(e, 'Closing the image'));
  }
  bus.emit('select', null);
  markSelected();
}

function markSelected(): void {
  for (const b of document.querySelectorAll<HTMLElement>('.disk-item')) {
    const on = b.dataset.path === app.selected?.path;
    b.classList.toggle('selected', on);
    b.setAttribute('aria-pressed', on ? 'true' : 'false');
  }
}

/** Runs `fn` with the selected image closed, then reopens it. */
async function withSelectedClosed<T>(path: string, fn: () => Promise<T>): Promise<T> {
  const wasOpen = app.selected?.path === path;
  if (wasOpen) await closeSelected();
  try {
    return await fn();
  } finally {
    if (wasOpen) await select(path).catch((e) => showError(e, 'Reopening the image'));
  }
}

// ---------------------------------------------------------------- create

function storageSelect(name = 'storage'): HTMLSelectElement {
  return h('select', { name }, h('option', { value: 'opfs' }, 'Origin private file system (OPFS)'), h('option', { value: 'idb' }, 'IndexedDB'));
}

export function pathFor(storage: string, name: string): string {
  const clean = name.trim().replace(/^\/+/, '');
  return storage === 'idb' ? `idb:${clean}` : `opfs:/${clean}`;
}

function validName(input: HTMLInputElement): void {
  input.pattern = '[A-Za-z0-9._\\-][A-Za-z0-9._\\-\\/]*';
  input.title = 'Letters, digits, dot, dash, underscore (and / for folders)';
}

export async function createDialog(): Promise<void> {
  const name = h('input', { name: 'name', required: true, value: `disk-${new Date().toISOString().slice(11, 19).replace(/:/g, '')}.qcow2`, autocomplete: 'off' });
  validName(name);
  const format = h('select', { name: 'format' }, h('option', { value: 'qcow2' }, 'qcow2 (sparse, snapshots, backing files)'), h('option', { value: 'raw' }, 'raw (plain bytes)'));
  const size = h('input', { name: 'size', value: '64M', placeholder: 'e.g. 64M, 1G' });
  const cluster = h('select', { name: 'cluster' }, ...['4k', '16k', '64k', '256k', '1M', '2M'].map((c) => h('option', { value: c, selected: c === '64k' }, c)));
  const backing = h('input', { name: 'backing', placeholder: 'another image, e.g. base.qcow2, or https://…/image.raw', autocomplete: 'off' });
  // Any image the worker reads can be a backing file: an imported vmdk, vhd, vhdx, vdi, ... as it is.
  const backingFmt = h('select', { name: 'backingFormat' }, h('option', { value: '' }, 'probe'), ...['qcow2', 'raw', 'vmdk', 'vpc', 'vhdx', 'vdi', 'qed', 'qcow'].map((f) => h('option', { value: f }, f === 'vpc' ? 'vpc (vhd)' : f)));
  const extended = h('input', { type: 'checkbox', name: 'extended_l2' });
  const lazy = h('input', { type: 'checkbox', name: 'lazy_refcounts' });
  const compression = h('select', { name: 'compression' }, h('option', { value: 'zlib' }, 'zlib'), h('option', { value: 'zstd' }, 'zstd'));
  const qcowOnly = h('fieldset', { class: 'qcow-only' }, h('legend', {}, 'qcow2 options'), h('div', { class: 'grid2' }, field('Cluster size', cluster), field('Compression', compression), field('Backing file', backing, 'Reads of unwritten clusters come from here. An http(s) URL works too (range requests).'), field('Backing format', backingFmt)), h('label', { class: 'check' }, extended, ' Extended L2 (subclusters)'), h('label', { class: 'check' }, lazy, ' Lazy refcounts'));
  const fd = await formDialog('New disk image', [h('div', { class: 'grid2' }, field('Name', name), field('Storage', storageSelect())), h('div', { class: 'grid2' }, field('Format', format), field('Virtual size', size, 'Empty = the backing file’s size')), qcowOnly], 'Create', () => {
    format.addEventListener('change', () => (qcowOnly.hidden = format.value !== 'qcow2'));
  });
  if (!fd) return;
  const path = pathFor(String(fd.get('storage')), String(fd.get('name')));
  const sizeText = String(fd.get('size') ?? '').trim();
  const bytes = sizeText ? parseSize(sizeText) : undefined;
  if (bytes === null) {
    toast('error', `“${sizeText}” is not a size`, 'Use a number with an optional K, M, G or T suffix, e.g. 64M.');
    return;
  }
  const fmt = String(fd.get('format')) as 'qcow2' | 'raw';
  const backingFile = fmt === 'qcow2' ? String(fd.get('backing') ?? '').trim() : '';
  if (!backingFile && bytes === undefined) {
    toast('error', 'The disk needs a size', 'Give a virtual size, or a backing file to take it from.');
    return;
  }
  const options: Record<string, string | number | boolean> = {};
  if (fmt === 'qcow2') {
    options.cluster_size = parseSize(String(fd.get('cluster')))!;
    if (fd.get('extended_l2')) options.extended_l2 = true;
    if (fd.get('lazy_refcounts')) options.lazy_refcounts = true;
    if (fd.get('compression') === 'zstd') options.compression_type = 'zstd';
  }
  const bfmt = String(fd.get('backingFormat') ?? '');
  await guard(`Creating ${displayName(path)}`, async () => {
    // The backing file is opened for its size: the selected image, open here for writing, closes first.
    if (backingFile && app.selected?.path === resolveBacking(path, backingFile)) await closeSelected();
    await dw().create({ path, format: fmt, ...(bytes !== undefined ? { size: bytes } : {}), ...(backingFile ? { backingFile, ...(bfmt ? { backingFormat: bfmt } : {}) } : {}), options });
    toast('ok', `Created ${displayName(path)}`, `${fmt}, ${bytes !== undefined ? fmtBytes(bytes) : 'size of the backing file'}`);
    await refreshList();
    await select(path);
  });
}

// ---------------------------------------------------------------- import

/**
 * The import dialog, for one picked or dropped image (`file`, with the files
 * it names: a vmdk's extents) or, without one, a file input that takes
 * several files: a vmdk descriptor with its extents, or several images.
 */
export async function importDialog(file?: File, companions: File[] = []): Promise<void> {
  const fileInput = h('input', { type: 'file', name: 'file', multiple: true, required: !file, accept: '.qcow2,.img,.raw,.bin,.iso,.vmdk,.vhd,.vpc,.vhdx,.vdi,.qed,.qcow,.luks,application/octet-stream' });
  const name = h('input', { name: 'name', required: true, value: file?.name ?? '', autocomplete: 'off' });
  validName(name);
  const how = h('select', { name: 'how' }, h('option', { value: 'copy' }, 'Keep the file as it is'), h('option', { value: 'qcow2' }, 'Convert to qcow2'), h('option', { value: 'raw' }, 'Convert to raw'));
  const shown = file ? h('p', {}, `File: ${file.name} (${fmtBytes(file.size)})`, ...(companions.length ? [h('br'), `with ${companions.map((c) => c.name).join(', ')}`] : [])) : field('File', fileInput, 'qcow2, raw, vmdk (a descriptor with its extent files: pick them together), vhd, vhdx, vdi, qed, qcow or luks. You can also drop files anywhere on the page.');
  const fd = await formDialog('Import a disk image', [shown, h('div', { class: 'grid2' }, field('Name', name), field('Storage', storageSelect())), field('Import as', how, 'A qcow2 kept as it is keeps its backing file name and snapshots. Other formats work as they are too (also as backing files; a vmdk keeps its extent files beside it); converting to qcow2 gives snapshots and compression. An encrypted image asks for its password.')], 'Import', () => {
    fileInput.addEventListener('change', () => {
      const f = fileInput.files?.[0];
      if (f && !name.value) name.value = f.name.replace(/[^A-Za-z0-9._-]/g, '_');
    });
  });
  if (!fd) return;
  const how_ = String(fd.get('how')) as 'copy' | 'qcow2' | 'raw';
  const storage = String(fd.get('storage'));
  const given = String(fd.get('name')).replace(/[^A-Za-z0-9._\-/]/g, '_');
  const groups = file ? [{ image: file, companions, missing: [] }] : await groupImageFiles([...(fileInput.files ?? [])]);
  // The name given is the first image's; the others keep their file names.
  for (const [i, g] of groups.entries()) await importFile(g.image, pathFor(storage, i === 0 ? given : g.image.name.replace(/[^A-Za-z0-9._-]/g, '_')), how_, g.companions);
}

export async function importFile(file: File, path: string, how: 'copy' | 'qcow2' | 'raw', companions: File[] = []): Promise<void> {
  const done = await guard(`Importing ${file.name}`, () =>
    // A conversion of an encrypted file asks for its password (kept as it is, its first open does).
    withPassword(file.name, undefined, (fromOptions) =>
      runJob(`Importing ${file.name}`, async (job) => {
        await dw().importFile(file, { to: path, format: how, ...(companions.length ? { companions } : {}), ...(fromOptions ? { fromOptions } : {}) }, { signal: job.signal, onProgress: job.progress });
        return true;
      }),
    ),
  );
  if (!done) {
    await dw().remove(path).catch(() => undefined);
    return;
  }
  toast('ok', `Imported ${displayName(path)}`, `${fmtBytes(file.size + companions.reduce((n, c) => n + c.size, 0))} from ${[file, ...companions].map((f) => f.name).join(', ')}`);
  await refreshList();
  await select(path);
}

/** Accepts files dropped anywhere on the page. */
export function installDropZone(): void {
  const overlay = document.getElementById('drop-overlay')!;
  let depth = 0;
  const hasFiles = (e: DragEvent) => [...(e.dataTransfer?.types ?? [])].includes('Files');
  window.addEventListener('dragenter', (e) => {
    if (!hasFiles(e)) return;
    depth++;
    overlay.hidden = false;
  });
  window.addEventListener('dragleave', () => {
    if (--depth <= 0) {
      depth = 0;
      overlay.hidden = true;
    }
  });
  window.addEventListener('dragover', (e) => {
    if (hasFiles(e)) e.preventDefault();
  });
  window.addEventListener('drop', (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    depth = 0;
    overlay.hidden = true;
    const files = [...(e.dataTransfer?.files ?? [])];
    // A vmdk descriptor dropped with its extents is one image; other files one each, a dialog after another.
    void guard('Reading the dropped files', async () => {
      for (const g of await groupImageFiles(files)) await importDialog(g.image, g.companions);
    });
  });
}

// ---------------------------------------------------------------- export

/** Conversions the export dialog offers: [value, label, format, creation options]. */
const EXPORT_CHOICES: Array<[string, string, ExportFormat, Record<string, string>]> = [
  ['qcow2', 'qcow2 (converted)', 'qcow2', {}],
  ['vmdk', 'vmdk, monolithic sparse (VMware)', 'vmdk', {}],
  ['vmdk-stream', 'vmdk, stream-optimized (OVF / OVA)', 'vmdk', { subformat: 'streamOptimized' }],
  ['vmdk-split', 'vmdk, split in 2 GiB sparse extents (several files)', 'vmdk', { subformat: 'twoGbMaxExtentSparse' }],
  ['vpc', 'vhd, dynamic (Virtual PC, Hyper-V, Azure)', 'vpc', {}],
  ['vhdx', 'vhdx, dynamic (Hyper-V)', 'vhdx', {}],
  ['vdi', 'vdi, dynamic (VirtualBox)', 'vdi', {}],
  ['qed', 'qed', 'qed', {}],
  ['qcow', 'qcow (version 1)', 'qcow', {}],
  ['luks', 'luks (encrypted with a password)', 'luks', {}],
];
/** File name extensions of exported formats. */
const EXPORT_EXT: Record<string, string> = { vpc: 'vhd' };

/**
 * The creation options of a luks target: a new secret in the worker holding
 * the password typed (`passwords`' value), named as its `key-secret`; the
 * caller removes the secret when done (`dropSecret`).
 */
async function luksOptions(passwords: ReturnType<typeof newPasswordFields>): Promise<Record<string, string>> {
  const password = passwords.value();
  if (password === null) throw new Error('A luks image needs a password');
  return { 'key-secret': await addPassword(password) };
}

export async function exportDialog(path: string): Promise<void> {
  const info = infoCache.get(path);
  const stored = info && 'format' in info ? info.format : '';
  const format = h('select', { name: 'format' }, h('option', { value: 'file' }, `the image file as stored${stored ? ` (${stored})` : ''}`), ...EXPORT_CHOICES.filter(([v]) => v !== stored).map(([v, label]) => h('option', { value: v }, label)), h('option', { value: 'qcow2c' }, 'qcow2 with compressed clusters (like qemu-img convert -c)'), h('option', { value: 'raw' }, 'raw (what the guest sees)'));
  const gzip = h('input', { type: 'checkbox', name: 'gzip' });
  const passwords = newPasswordFields();
  const fd = await formDialog(`Download ${displayName(path)}`, [field('Format', format), passwords.root, h('label', { class: 'check' }, gzip, ' Compress the download with gzip (.gz)')], 'Download', () => {
    format.addEventListener('change', () => passwords.show(format.value === 'luks'));
  });
  if (!fd) return;
  const choice = String(fd.get('format'));
  const compress = choice === 'qcow2c';
  const picked = EXPORT_CHOICES.find(([v]) => v === choice);
  const fmt: ExportFormat = compress ? 'qcow2' : (picked?.[2] ?? (choice as ExportFormat));
  const options = fmt === 'luks' ? await luksOptions(passwords) : (picked?.[3] ?? {});
  try {
    // A conversion opens the image a second time: close it here for that.
    if (fmt !== 'file' && fmt !== 'raw') await withSelectedClosed(path, () => exportImage(path, fmt, !!fd.get('gzip'), compress, options));
    else await exportImage(path, fmt, !!fd.get('gzip'));
  } finally {
    await dropSecret(options['key-secret']);
  }
}

/** vmdk subformats of several files: a descriptor and its extents, downloaded one by one. */
const SEVERAL_FILES = ['twoGbMaxExtentSparse', 'twoGbMaxExtentFlat', 'monolithicFlat'];

/** Downloads every file of a conversion (a vmdk descriptor and its extents), one download each. */
async function exportFiles(path: string, format: ExportFormat, options: Record<string, string>): Promise<void> {
  await guard(`Exporting ${displayName(path)}`, () => withPassword(displayName(path), path, (fromOptions) =>
    runJob(`Exporting ${displayName(path)} as ${options.subformat}`, async (job) => {
      job.phase(`converting to ${format} ${options.subformat}…`);
      const files = await dw().exportFiles(path, { format, signal: job.signal, options, ...(fromOptions ? { fromOptions } : {}) });
      for (const f of files) {
        job.phase(`saving ${f.name}…`);
        const url = URL.createObjectURL(await new Response(f.stream).blob());
        const a = h('a', { href: url, download: f.name });
        document.body.append(a);
        a.click();
        a.remove();
        setTimeout(() => URL.revokeObjectURL(url), 60_000);
      }
      toast('ok', `Downloaded ${files.length} files`, files.map((f) => f.name).join(', '));
    }),
  ));
}

export async function exportImage(path: string, format: ExportFormat, gzip: boolean, compress = false, options: Record<string, string> = {}): Promise<void> {
  const base = displayName(path).split('/').pop()!.replace(/\.(qcow2|raw|img|vmdk|vhdx?|vdi|qed|qcow)$/, '');
  const storedFmt = (infoCache.get(path) as ImageInfo | undefined)?.format ?? 'img';
  const shown = format === 'file' ? storedFmt : format;
  const ext = EXPORT_EXT[shown] ?? shown;
  const filename = `${base}.${ext}${gzip ? '.gz' : ''}`;
  if (SEVERAL_FILES.includes(options.subformat ?? '')) return exportFiles(path, format, options);
  // An encrypted source not open here asks for its password.
  await guard(`Exporting ${displayName(path)}`, () => withPassword(displayName(path), path, (fromOptions) =>
    runJob(`Exporting ${filename}`, async (job) => {
      const info = await dw().info(path);
      if (format !== 'file' && format !== 'raw') job.phase(compress ? 'converting to qcow2, compressing clusters…' : `converting to ${format}…`);
      let stream = await dw().exportStream(path, { format, signal: job.signal, compress, options, ...(fromOptions ? { fromOptions } : {}) });
      const total = format === 'raw' ? info.virtualSize : format === 'file' ? info.actualSize : 0;
      let done = 0;
      const count = new TransformStream<Uint8Array, Uint8Array>({
        transform(chunk, c) {
          done += chunk.length;
          if (job.signal.aborted) throw new DOMException('cancelled', 'AbortError');
          if (total > 0) job.progress({ done: Math.min(done, total), total });
          else job.phase(`${fmtBytes(done)} read`);
          c.enqueue(chunk);
        },
      });
      stream = stream.pipeThrough(count);
      if (gzip) stream = stream.pipeThrough(new CompressionStream('gzip') as unknown as TransformStream<Uint8Array, Uint8Array>);
      const blob = await new Response(stream).blob();
      const url = URL.createObjectURL(blob);
      const a = h('a', { href: url, download: filename });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
      toast('ok', `Downloaded ${filename}`, fmtBytes(blob.size));
    }),
  ));
}

// ---------------------------------------------------------------- convert / delete

export async function convertDialog(path: string): Promise<void> {
  const info = infoCache.get(path) as ImageInfo | undefined;
  const target = info?.format === 'qcow2' ? 'raw' : 'qcow2';
  const name = h('input', { name: 'name', required: true, value: displayName(path).replace(/\.(qcow2|raw|img|luks)$/, '') + `-converted.${target}`, autocomplete: 'off' });
  validName(name);
  const format = h('select', { name: 'format' }, h('option', { value: 'qcow2', selected: target === 'qcow2' }, 'qcow2'), h('option', { value: 'raw', selected: target === 'raw' }, 'raw'), h('option', { value: 'luks' }, 'luks (encrypted with a password)'));
  const passwords = newPasswordFields();
  const fd = await formDialog(`Convert ${displayName(path)}`, [h('p', { class: 'muted' }, 'Like qemu-img convert: copies what the guest sees (the whole backing chain flattened) into a new image.'), h('div', { class: 'grid2' }, field('New name', name), field('Storage', storageSelect())), field('Format', format), passwords.root], 'Convert', () => {
    format.addEventListener('change', () => passwords.show(format.value === 'luks'));
  });
  if (!fd) return;
  const to = pathFor(String(fd.get('storage')), String(fd.get('name')));
  const fmt = String(fd.get('format')) as ImageFormat;
  // A luks target's secret stays in the worker as the new image's key (its first open needs no password).
  const options = fmt === 'luks' ? await luksOptions(passwords) : {};
  const ok = await guard(`Converting ${displayName(path)}`, () => withSelectedClosed(path, () =>
    withPassword(displayName(path), path, (fromOptions) =>
      runJob(`Converting to ${displayName(to)}`, async (job) => {
        await dw().convert({ from: path, to, format: fmt, options, allowBackingProtocols: ['http'], ...(fromOptions ? { fromOptions } : {}) }, { signal: job.signal, onProgress: job.progress });
        return true;
      })),
  ));
  if (!ok) {
    await dropSecret(options['key-secret']);
    await dw().remove(to).catch(() => undefined);
    return;
  }
  if (options['key-secret']) await dropSecret(keys.set(to, { option: 'key-secret', id: options['key-secret'] }));
  toast('ok', `Converted to ${displayName(to)}`);
  await refreshList();
}

export async function deleteImage(path: string): Promise<void> {
  if (app.vmRunning && app.selected?.path === path) {
    toast('error', 'The VM is using this disk', 'Stop the VM first.');
    return;
  }
  if (!(await confirmDialog(`Delete ${displayName(path)}?`, 'The image and everything written to it are removed from this browser. Overlays that use it as their backing file stop working.', 'Delete'))) return;
  await guard(`Deleting ${displayName(path)}`, async () => {
    if (app.selected?.path === path) await closeSelected();
    await dw().remove(path);
    infoCache.delete(path);
    await dropSecret(keys.forget(path));
    toast('ok', `Deleted ${displayName(path)}`);
    await refreshList();
  });
}

export { withSelectedClosed };
export type { Disk };
