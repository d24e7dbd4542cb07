/**
 * The DiskWorker demo (npm start): a disk workbench in the browser. Wires the
 * panels in demo/src/ to the block worker.
 */
import { DiskWorker } from '../src/client/index.js';
import { AllocationMap } from './src/allocmap.js';
import { BitmapBar } from './src/bitmaps.js';
import { BlockJobsPanel } from './src/block-jobs.js';
import { CheckPanel } from './src/check.js';
import { Console } from './src/console.js';
import { QmpConsole } from './src/qmp-console.js';
import { installDetails } from './src/details.js';
import { convertDialog, createDialog, deleteImage, exportDialog, importDialog, installDropZone, refreshList, refreshSelectedInfo, select } from './src/disks.js';
import { SnapshotsPanel } from './src/snapshots.js';
import { app, bus, displayName, storageOf } from './src/state.js';
import { VmPanel } from './src/vm.js';
import { $, describeError, fmtBytes, guard, h, showError } from './src/ui.js';

function fatal(title: string, detail: string): void {
  const el = $('#fatal');
  el.replaceChildren(h('strong', {}, title), h('span', {}, detail));
  el.hidden = false;
}

window.addEventListener('error', (e) => showError(e.error ?? e.message));
window.addEventListener('unhandledrejection', (e) => showError(e.reason));

// ---------------------------------------------------------------- tabs

function showTab(name: string): void {
  for (const t of document.querySelectorAll<HTMLElement>('[role=tab]')) t.setAttribute('aria-selected', String(t.dataset.tab === name));
  for (const p of document.querySelectorAll<HTMLElement>('.tabpanel')) p.hidden = p.dataset.panel !== name;
}
for (const t of document.querySelectorAll<HTMLElement>('[role=tab]')) t.addEventListener('click', () => showTab(t.dataset.tab!));

// ---------------------------------------------------------------- panels

const map = new AllocationMap();
$('#map-slot').append(map.root);
const bitmapBar = new BitmapBar(map);
map.root.append(bitmapBar.root);
const konsole = new Console();
$('#console-slot').append(konsole.root);
$('#qmp-slot').append(new QmpConsole().root);
$('#check-slot').append(new CheckPanel().root);
$('#snapshots-slot').append(new SnapshotsPanel().root);
const vm = new VmPanel();
$('#vm-slot').append(vm.root);
$('#block-jobs-slot').append(new BlockJobsPanel().root);
installDetails($('#details'));

bus.on('select', (sel) => {
  $('#welcome').hidden = !!sel;
  $('#workspace').hidden = !sel;
  if (!sel) return;
  $('#disk-title').textContent = displayName(sel.path);
  const i = sel.info;
  $('#disk-sub').textContent = i
    ? `${i.format} · ${fmtBytes(i.virtualSize)} virtual · ${fmtBytes(i.actualSize)} stored · ${storageOf(sel.path) === 'idb' ? 'IndexedDB' : 'OPFS'}${sel.disk?.readOnly ? ' · read-only' : ''}`
    : 'opening…';
});

let infoTimer: ReturnType<typeof setTimeout> | null = null;
bus.on('data', () => {
  // Keep "stored" sizes current after writes, without asking on every write.
  if (infoTimer) return;
  infoTimer = setTimeout(() => {
    infoTimer = null;
    void refreshList().catch(() => undefined);
    void refreshSelectedInfo().catch(() => undefined);
  }, 1200);
});

const selPath = () => app.selected?.path;
$('#btn-export').addEventListener('click', () => selPath() && void exportDialog(selPath()!));
$('#btn-convert').addEventListener('click', () => selPath() && void convertDialog(selPath()!));
$('#btn-delete').addEventListener('click', () => selPath() && void deleteImage(selPath()!));
$('#btn-create').addEventListener('click', () => void createDialog());
$('#btn-import').addEventListener('click', () => void importDialog());
$('#btn-quick').addEventListener('click', () =>
  void guard('Creating the demo disk', async () => {
    const dw = app.dw!;
    let name = 'demo.qcow2';
    const existing = new Set((await dw.list('opfs')).map((e) => e.path));
    for (let n = 2; existing.has(`opfs:/${name}`); n++) name = `demo-${n}.qcow2`;
    await dw.create({ path: `opfs:/${name}`, format: 'qcow2', size: 256 << 20 });
    await refreshList();
    // Switch to the console first: a tab the user picks while the disk opens must win.
    showTab('console');
    await select(`opfs:/${name}`);
  }),
);
$('#btn-linux').addEventListener('click', () =>
  void guard('Booting Linux', async () => {
    showTab('vm');
    await vm.newLinuxDisk(true);
  }),
);
installDropZone();

// ---------------------------------------------------------------- start

async function start(): Promise<void> {
  const env = $('#env');
  try {
    app.dw = await DiskWorker.start();
  } catch (e) {
    env.replaceChildren(h('span', { class: 'pill pill-bad' }, 'block worker failed'));
    fatal('The block worker could not start.', `${describeError(e).detail} — this page needs a browser with module workers (Chromium 80+, Firefox 114+, Safari 15+).`);
    return;
  }
  const drivers = await app.dw.drivers();
  const isolated = globalThis.crossOriginIsolated;
  env.replaceChildren(
    h('span', { class: 'pill pill-ok', title: `drivers: ${drivers.join(', ')}` }, 'block worker ready'),
    h('span', { class: isolated ? 'pill pill-ok' : 'pill pill-warn', title: isolated ? 'SharedArrayBuffer is available (COOP/COEP headers are set)' : 'Serve with COOP/COEP headers for the synchronous channel' }, isolated ? 'cross-origin isolated' : 'not isolated'),
    h('span', { class: drivers.includes('opfs') ? 'pill' : 'pill pill-warn' }, drivers.includes('opfs') ? 'OPFS' : 'no OPFS'),
  );
  for (const id of ['#btn-create', '#btn-import', '#btn-quick', '#btn-linux']) ($(id) as HTMLButtonElement).disabled = false;
  await guard('Listing the images', refreshList);
  document.documentElement.dataset.ready = 'true';
}

void start();

// For the Playwright specs and the curious: the page's objects.
Object.assign(window, { diskworkerDemo: { app, map, bitmapBar, console: konsole, vm, showTab } });
