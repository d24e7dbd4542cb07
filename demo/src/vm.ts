/**
 * The VM panel: boots v86 from the selected disk through DiskWorker's v86
 * adapter (toV86Buffer), shows the guest's screen and serial output, and the
 * disk's live I/O statistics. The demo guest (demo/guest/guest.asm, built
 * with nasm by scripts/build-demo-assets.mjs) can be installed on any disk.
 * The Linux guest (linux.ts) boots from the selected disk or from a new
 * qcow2 overlay over the served root image, with its serial console typeable;
 * its FLUSH CACHE reaches the disk (connectV86Flush), so the guest's sync is
 * on storage when it returns.
 * "Save machine" keeps the running machine (v86's state) and its disk as one
 * internal snapshot of a qcow2 disk (saveMachine); "Restore machine" brings
 * one back (restoreMachine), booting an emulator first when none runs, so a
 * machine saved before a page reload resumes after it.
 */
import { connectV86Flush, restoreMachine, saveMachine, toV86Buffer, type Disk, type DiskStats, type V86DiskBuffer, type V86Machine } from '../../src/client/index.js';
import { relistSnapshots } from './snapshots.js';
import { app, bus, type Selected } from './state.js';
import { appendSerial, isLinuxOverlay, linuxBaseUrl, linuxBootOptions, linuxDiskSize, serialBytes } from './linux.js';
import { refreshList, select } from './disks.js';
import { confirmDialog, field, fmtBytes, guard, h, showError, toast } from './ui.js';

type Emulator = V86Machine & { destroy(): Promise<void>; add_listener(ev: string, fn: (v: number) => void): void };

const BASE = import.meta.env.BASE_URL;

export class VmPanel {
  readonly root: HTMLElement;
  private readonly screen: HTMLElement;
  private readonly serial: HTMLElement;
  private readonly status: HTMLElement;
  private readonly stats: HTMLElement;
  private readonly bootBtn: HTMLButtonElement;
  private readonly stopBtn: HTMLButtonElement;
  private readonly installBtn: HTMLButtonElement;
  private readonly guestSelect: HTMLSelectElement;
  private readonly newLinuxBtn: HTMLButtonElement;
  private readonly figures: HTMLElement;
  private serialShown = '';
  /** performance.now() at Boot while the Linux guest has not reached its shell prompt yet, else 0. */
  private bootStart = 0;
  /** Seconds from Boot to the Linux guest's first shell prompt (this boot), or null. */
  private bootSeconds: number | null = null;
  private readonly saveName: HTMLInputElement;
  private readonly saveBtn: HTMLButtonElement;
  private readonly restoreSelect: HTMLSelectElement;
  private readonly restoreBtn: HTMLButtonElement;
  private machineOp = false;
  private emulator: Emulator | null = null;
  private hda: V86DiskBuffer | null = null;
  private disk: Disk | null = null;
  private poll: ReturnType<typeof setInterval> | null = null;
  private last: { t: number; s: DiskStats } | null = null;
  private base: DiskStats | null = null;

  constructor() {
    this.screen = h('div', { class: 'vm-screen', 'data-testid': 'vm-screen' }, h('div', { class: 'vm-text' }), h('canvas', { style: 'display:none' }));
    this.screen.append(h('div', { class: 'vm-idle' }, 'The guest’s screen appears here.'));
    this.serial = h('pre', { class: 'vm-serial mono', 'data-testid': 'vm-serial', tabindex: '0', title: 'Click here and type: keys go to the guest’s serial port' });
    this.serial.addEventListener('keydown', (e) => {
      const bytes = this.emulator ? serialBytes(e) : null;
      if (bytes === null) return;
      e.preventDefault();
      (this.emulator as unknown as { serial0_send(s: string): void }).serial0_send(bytes);
    });
    this.serial.addEventListener('paste', (e) => {
      const text = e.clipboardData?.getData('text');
      if (!this.emulator || !text) return;
      e.preventDefault();
      (this.emulator as unknown as { serial0_send(s: string): void }).serial0_send(text.replace(/\r?\n/g, '\r'));
    });
    this.guestSelect = h('select', { name: 'guest', 'data-testid': 'vm-guest' }, h('option', { value: 'demo' }, 'Demo boot program'), h('option', { value: 'linux' }, 'Linux (Debian i386, ext4 disk)'));
    this.newLinuxBtn = h('button', { class: 'btn', type: 'button', 'data-testid': 'vm-new-linux', title: 'A new qcow2 overlay in OPFS over the Linux root image served with the page', onclick: () => void guard('Creating a Linux disk', () => this.newLinuxDisk()) }, 'New Linux disk');
    this.status = h('span', { class: 'pill', 'data-testid': 'vm-status' }, 'stopped');
    this.stats = h('div', { class: 'io-stats', 'data-testid': 'io-stats' });
    this.figures = h('p', { class: 'muted small', 'data-testid': 'vm-figures' });
    this.installBtn = h('button', { class: 'btn', type: 'button', onclick: () => void guard('Installing the demo guest', () => this.install()) }, 'Install demo guest');
    this.bootBtn = h('button', { class: 'btn btn-primary', type: 'button', 'data-testid': 'vm-boot', onclick: () => void guard('Booting the VM', () => this.boot()) }, 'Boot');
    this.stopBtn = h('button', { class: 'btn', type: 'button', disabled: true, onclick: () => void guard('Stopping the VM', () => this.stop()) }, 'Stop');
    this.saveName = h('input', { type: 'text', name: 'machine-name', 'data-testid': 'vm-save-name', value: 'machine-1', autocomplete: 'off', spellcheck: 'false', style: 'width: 10em' });
    this.saveBtn = h('button', { class: 'btn', type: 'button', 'data-testid': 'vm-save', disabled: true, title: 'Store the running machine and its disk as one internal snapshot of this qcow2 disk', onclick: () => void this.machine('Saving the machine', () => this.save()) }, 'Save machine');
    this.restoreSelect = h('select', { name: 'machine', 'data-testid': 'vm-restore-select' });
    this.restoreBtn = h('button', { class: 'btn', type: 'button', 'data-testid': 'vm-restore', disabled: true, title: 'Bring back a saved machine and its disk (boots the emulator first when it is stopped)', onclick: () => void this.machine('Restoring the machine', () => this.restore()) }, 'Restore machine');
    this.root = h(
      'div',
      { class: 'vm' },
      h('div', { class: 'row' }, field('Guest', this.guestSelect), this.newLinuxBtn, this.bootBtn, this.stopBtn, this.installBtn, this.status, h('span', { class: 'muted vm-note' }, 'v86 (an x86 emulator in WebAssembly) reads and writes the selected disk through toV86Buffer — every sector goes through the block worker.')),
      h('div', { class: 'row vm-machine' }, field('Save as', this.saveName), this.saveBtn, field('Saved machine', this.restoreSelect), this.restoreBtn, h('span', { class: 'muted vm-note' }, 'A saved machine is an internal snapshot with v86’s state as its VM state: qemu-img snapshot -l lists it with its VM size.')),
      h('div', { class: 'vm-body' }, this.screen, h('div', { class: 'vm-side' }, h('h4', {}, 'Disk I/O'), this.stats, this.figures, h('h4', {}, 'Serial port (COM1) — click and type'), this.serial)),
    );
    this.renderStats(null);
    app.stopVm = () => this.stop();
    bus.on('select', (sel) => {
      if ((sel?.disk ?? null) === this.disk) return;
      if (this.emulator) void this.stop();
      this.disk = sel?.disk ?? null;
      this.last = null;
      this.base = null;
      this.renderStats(null);
    });
    bus.on('select', (sel) => this.renderMachines(sel));
    // An overlay of the Linux root image boots Linux; the figures show its stored size as it grows.
    bus.on('select', (sel) => {
      if (!this.emulator && isLinuxOverlay(sel?.info?.backingFile)) this.guestSelect.value = 'linux';
      this.renderFigures();
    });
    bus.on('snapshots', (sel) => this.renderMachines(sel));
  }

  /** The running emulator (for the Playwright specs: its memory). */
  get emulatorForTests(): Emulator | null {
    return this.emulator;
  }

  private get selectedDisk(): Disk {
    const d = app.selected?.disk;
    if (!d) throw Object.assign(new Error('Select an image in the list first'), { code: 'ENOENT' });
    return d;
  }

  /** Writes the demo guest (4 KiB) at the start of the selected disk. */
  async install(): Promise<void> {
    const disk = this.selectedDisk;
    if (disk.readOnly) throw Object.assign(new Error(`${disk.path} is open read-only`), { code: 'EPERM' });
    if (!(await confirmDialog('Install the demo guest?', 'This writes a 4 KiB boot program over the first sectors of the disk (a partition table there is lost). The guest then writes 64 sectors spread over the disk when it runs.', 'Install'))) return;
    await this.installGuest(disk);
    toast('ok', 'Demo guest installed', 'Press Boot.');
  }

  private async installGuest(disk: Disk): Promise<void> {
    const res = await fetch(`${BASE}guest/guest.bin`);
    if (!res.ok) throw new Error(`guest/guest.bin is missing (HTTP ${res.status}): run node scripts/build-demo-assets.mjs`);
    const bin = new Uint8Array(await res.arrayBuffer());
    await disk.write(0, bin);
    await disk.flush();
    bus.emit('data', { offset: 0, bytes: bin.length });
  }

  /**
   * Creates opfs:/linux-<time>.qcow2 over the served Linux root image, selects
   * it and picks the Linux guest; boots it when `boot` (the welcome screen's button).
   */
  async newLinuxDisk(boot = false): Promise<void> {
    if (!app.dw) throw new Error('The block worker is not running');
    const existing = new Set((await app.dw.list('opfs')).map((e) => e.path));
    const stamp = new Date().toISOString().slice(11, 19).replace(/:/g, '');
    let path = `opfs:/linux-${stamp}.qcow2`;
    for (let n = 2; existing.has(path); n++) path = `opfs:/linux-${stamp}-${n}.qcow2`;
    await app.dw.create({ path, format: 'qcow2', size: await linuxDiskSize(), backingFile: linuxBaseUrl(), backingFormat: 'qcow2' });
    await refreshList();
    await select(path);
    this.guestSelect.value = 'linux';
    if (boot) await this.boot();
    else toast('ok', 'Linux disk created', `${path} over ${linuxBaseUrl()}: press Boot.`);
  }

  async boot(): Promise<void> {
    if (this.emulator) return;
    const disk = this.selectedDisk;
    if (this.guestSelect.value === 'linux') {
      this.serial.textContent = this.serialShown = '';
      await this.start(disk, true);
      // Keys typed now go to the guest's shell.
      this.serial.focus();
      return;
    }
    const mbr = await disk.read(0, 512);
    if (mbr[510] !== 0x55 || mbr[511] !== 0xaa) {
      if (disk.readOnly || !(await confirmDialog('This disk is not bootable', 'It has no boot sector (no 0x55AA signature). Install the demo guest on it and boot?', 'Install and boot'))) return;
      await this.installGuest(disk);
    }
    this.serial.textContent = this.serialShown = '';
    await this.start(disk, true);
  }

  /** Starts an emulator on `disk`: running from the BIOS, or (autostart false) loaded and stopped, for a restore. */
  private async start(disk: Disk, autostart: boolean): Promise<Emulator> {
    this.setRunning(true, 'starting…');
    this.screen.querySelector('.vm-idle')?.remove();
    try {
      const [{ V86 }, wasm] = await Promise.all([import('v86'), import('v86/build/v86.wasm?url')]);
      this.hda = toV86Buffer(disk, { onError: (e) => showError(e, 'A guest disk request') });
      this.disk = disk;
      this.base = await disk.stats();
      const isLinux = this.guestSelect.value === 'linux';
      const t0 = performance.now();
      const linux = isLinux ? await linuxBootOptions() : {};
      this.bootStart = isLinux ? t0 : 0;
      this.bootSeconds = null;
      this.renderFigures();
      const emulator = new V86({
        wasm_path: wasm.default,
        bios: { url: `${BASE}seabios/bios-256k.bin` },
        vga_bios: { url: `${BASE}seabios/vgabios-stdvga.bin` },
        hda: this.hda as never,
        memory_size: 32 << 20,
        vga_memory_size: 2 << 20,
        screen: { container: this.screen },
        autostart,
        disable_keyboard: true,
        disable_mouse: true,
        disable_speaker: true,
        ...linux,
      } as never) as unknown as Emulator;
      // The guest's sync (FLUSH CACHE) flushes the disk: a journal commit is on storage when the guest hears so.
      connectV86Flush(emulator as never, this.hda);
      const loaded = autostart ? null : new Promise<void>((resolve) => emulator.add_listener('emulator-loaded', () => resolve()));
      this.emulator = emulator;
      this.renderMachines(app.selected);
      let pending = '';
      emulator.add_listener('serial0-output-byte', (b) => {
        // Batched per frame: a booting kernel prints thousands of bytes.
        if (pending === '') requestAnimationFrame(() => {
          this.serialShown = appendSerial(this.serialShown, pending);
          pending = '';
          // Booted: the shell's first prompt after init's marker.
          const ready = this.bootStart ? this.serialShown.indexOf('LINUX-GUEST-READY') : -1;
          if (ready >= 0 && this.serialShown.includes('guest:', ready)) {
            this.bootSeconds = (performance.now() - this.bootStart) / 1000;
            this.bootStart = 0;
            this.status.textContent = `running (booted in ${this.bootSeconds.toFixed(1)} s)`;
            this.renderFigures();
          }
          this.serial.textContent = this.serialShown;
          this.serial.scrollTop = this.serial.scrollHeight;
        });
        pending += String.fromCharCode(b);
      });
      emulator.add_listener('emulator-started', () => this.status.textContent = 'running');
      app.vmRunning = true;
      this.poll = setInterval(() => void this.tick(), 400);
      await loaded;
      return emulator;
    } catch (e) {
      this.setRunning(false, 'failed');
      throw e;
    }
  }

  /** Runs a save or restore, one at a time; errors are the API's (code and message). */
  private async machine(what: string, fn: () => Promise<void>): Promise<void> {
    if (this.machineOp) return;
    this.machineOp = true;
    this.renderMachines(app.selected);
    try {
      await guard(what, fn);
    } finally {
      this.machineOp = false;
      await relistSnapshots();
      this.renderMachines(app.selected);
    }
  }

  /** Saves the running machine and its disk as snapshot `name` (saveMachine). */
  private async save(): Promise<void> {
    const emulator = this.emulator;
    const disk = this.disk;
    if (!emulator || !disk || !this.hda) throw Object.assign(new Error('Boot the VM first: there is no machine to save'), { code: 'EINVAL' });
    const name = this.saveName.value;
    this.status.textContent = 'saving…';
    try {
      const entry = await saveMachine(emulator, disk, this.hda, name);
      toast('ok', `Machine saved as '${entry.name}'`, `${fmtBytes(entry.vmStateSize)} of machine state, with the disk, in snapshot ${entry.id}.`);
      this.saveName.value = nextName(name);
    } finally {
      if (this.emulator === emulator) this.status.textContent = emulator.is_running() ? 'running' : 'stopped';
    }
  }

  /** Restores the machine chosen in the list (restoreMachine), into a new emulator when none runs. */
  private async restore(): Promise<void> {
    const id = this.restoreSelect.value;
    const label = this.restoreSelect.selectedOptions[0]?.textContent ?? id;
    const disk = this.selectedDisk;
    if (!(await confirmDialog(`Restore the machine ${label}?`, 'The disk goes back to what the snapshot holds (what was written since is lost unless another snapshot keeps it), and the VM continues from where it was saved.', 'Restore'))) return;
    const fresh = !this.emulator;
    const emulator = this.emulator ?? (await this.start(disk, false));
    this.status.textContent = 'restoring…';
    try {
      await restoreMachine(emulator, disk, this.hda!, id);
    } catch (e) {
      // A new emulator that got no machine is not left idling.
      if (fresh) await this.stop();
      throw e;
    }
    if (fresh) await emulator.run();
    this.status.textContent = 'running';
    toast('ok', `Machine ${label} restored`);
    bus.emit('data', null);
  }

  /** The saved-machine list: the snapshots with a VM state. */
  private renderMachines(sel: Selected | null): void {
    const machines = (sel?.snapshots ?? []).filter((s) => s.vmStateSize > 0);
    const keep = this.restoreSelect.value;
    this.restoreSelect.replaceChildren(
      ...(machines.length ? machines.map((s) => h('option', { value: s.id }, `'${s.name}' (id ${s.id}, ${fmtBytes(s.vmStateSize)})`)) : [h('option', { value: '' }, 'none saved')]),
    );
    if (machines.some((s) => s.id === keep)) this.restoreSelect.value = keep;
    this.saveBtn.disabled = this.machineOp || !this.emulator;
    this.restoreBtn.disabled = this.machineOp || !sel?.disk || machines.length === 0;
  }

  async stop(): Promise<void> {
    const emulator = this.emulator;
    if (!emulator) return;
    this.emulator = null;
    emulator.stop();
    if (this.poll) clearInterval(this.poll);
    this.poll = null;
    await this.hda?.flush().catch((e) => showError(e, 'Flushing the guest’s writes'));
    await emulator.destroy().catch(() => undefined);
    app.vmRunning = false;
    this.setRunning(false, 'stopped');
    await this.tick();
    bus.emit('data', null);
  }

  private setRunning(on: boolean, text: string): void {
    this.bootBtn.disabled = on;
    this.installBtn.disabled = on;
    this.stopBtn.disabled = !on;
    this.status.textContent = text;
    this.status.className = on ? 'pill pill-ok' : 'pill';
    this.renderMachines(app.selected);
  }

  private async tick(): Promise<void> {
    const disk = this.disk;
    if (!disk) return;
    let s: DiskStats;
    try {
      s = await disk.stats();
    } catch {
      return;
    }
    const now = performance.now();
    const prev = this.last;
    this.last = { t: now, s };
    if (prev && (s.write.ops !== prev.s.write.ops || s.zeroWrite.ops !== prev.s.zeroWrite.ops)) bus.emit('data', null);
    this.renderStats(s, prev);
    this.renderFigures();
  }

  /** Boot time and the disk's figures: what its top image stores, of how much. */
  private renderFigures(): void {
    const info = app.selected?.disk === this.disk ? app.selected?.info : null;
    const parts: string[] = [];
    if (this.bootSeconds !== null) parts.push(`Linux booted in ${this.bootSeconds.toFixed(1)} s (Boot to the shell prompt).`);
    else if (this.bootStart) parts.push('Linux is booting…');
    if (info) {
      parts.push(`${info.format} stores ${fmtBytes(info.actualSize)} of ${fmtBytes(info.virtualSize)}${info.backingFile ? `; the rest comes from ${info.backingFile}` : ''}.`);
    }
    this.figures.textContent = parts.join(' ');
  }

  private renderStats(s: DiskStats | null, prev?: { t: number; s: DiskStats } | null): void {
    const b = this.base;
    const d = (k: 'read' | 'write' | 'flush', f: 'ops' | 'bytes' | 'timeMs') => (s ? s[k][f] - (b ? b[k][f] : 0) : 0);
    const secs = prev && this.last ? (this.last.t - prev.t) / 1000 : 0;
    const rate = (k: 'read' | 'write') => (s && prev && secs > 0 ? (s[k].bytes - prev.s[k].bytes) / secs : 0);
    const lat = (k: 'read' | 'write' | 'flush') => (d(k, 'ops') > 0 ? `${(d(k, 'timeMs') / d(k, 'ops')).toFixed(2)} ms` : '–');
    const row = (label: string, k: 'read' | 'write') =>
      h('tr', { 'data-op': k }, h('th', {}, label), h('td', { 'data-field': 'ops' }, d(k, 'ops').toLocaleString('en-US')), h('td', {}, fmtBytes(d(k, 'bytes'))), h('td', {}, lat(k)), h('td', {}, `${fmtBytes(rate(k))}/s`));
    this.stats.replaceChildren(
      h('table', { class: 'table table-compact' }, h('thead', {}, h('tr', {}, h('th', {}, ''), h('th', {}, 'ops'), h('th', {}, 'bytes'), h('th', {}, 'latency'), h('th', {}, 'rate'))), h('tbody', {}, row('Reads', 'read'), row('Writes', 'write'), h('tr', { 'data-op': 'flush' }, h('th', {}, 'Flushes'), h('td', { 'data-field': 'ops' }, d('flush', 'ops').toLocaleString('en-US')), h('td', {}, ''), h('td', {}, lat('flush')), h('td', {}, '')))),
      h('p', { class: 'muted small' }, this.base ? 'Since this boot; latency is the average per request, measured in the block worker.' : 'Boot the VM to see its disk traffic.'),
    );
  }
}

/** "machine-1" -> "machine-2"; "x" -> "x-2". */
function nextName(name: string): string {
  const m = /^(.*?)-(\d+)$/.exec(name);
  return m ? `${m[1]}-${Number(m[2]) + 1}` : `${name}-2`;
}
