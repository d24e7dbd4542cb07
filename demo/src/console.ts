/**
 * The console: a qemu-io prompt against the open image. It runs the CLI's
 * own qemu-io interpreter (src/cli/io/: the same commands, output lines and
 * error strings as `diskworker io`) over the page's Disk through PageDisk;
 * this file is only the UI around it (history, echo, clear, map refresh).
 * The CLI-only commands (open, close, reopen, abort, sigraise) are not here:
 * the image list opens and closes images.
 */
import type { Disk } from '../../src/client/index.js';
import { cvtstr } from '../../src/cli/format.js';
import { CORE_COMMANDS } from '../../src/cli/io/commands/index.js';
import { PageDisk } from '../../src/cli/io/page-disk.js';
import { IoSession } from '../../src/cli/io/session.js';
import { app, bus } from './state.js';
import { h } from './ui.js';

export class Console {
  readonly root: HTMLElement;
  private readonly output: HTMLElement;
  private readonly input: HTMLInputElement;
  private readonly history: string[] = [];
  private histPos = 0;
  private queue: Promise<void> = Promise.resolve();
  private disk: Disk | null = null;
  /** Output of the running command, in order, stderr marked. */
  private chunks: Array<{ text: string; err: boolean }> = [];
  private readonly session = new IoSession(
    { stdout: (s) => this.chunks.push({ text: s, err: false }), stderr: (s) => this.chunks.push({ text: s, err: true }) },
    CORE_COMMANDS,
  );

  constructor() {
    this.output = h('pre', { class: 'console-out mono', 'data-testid': 'console-output', 'aria-live': 'polite' });
    this.input = h('input', { class: 'console-input mono', 'data-testid': 'console-input', autocomplete: 'off', spellcheck: 'false', 'aria-label': 'qemu-io command', placeholder: 'open an image first' });
    const examples = ['write -P 0xab 0 64k', 'read -v 0 32', 'write -z 1M 256k', 'map', 'alloc 0 128k', 'discard 0 64k', 'info', 'help'];
    const chips = h('div', { class: 'chips' }, h('span', { class: 'muted' }, 'Try:'), ...examples.map((ex) => h('button', { class: 'chip mono', type: 'button', onclick: () => this.run(ex) }, ex)));
    const form = h('form', { class: 'console-line', onsubmit: (e: Event) => {
      e.preventDefault();
      const line = this.input.value;
      this.input.value = '';
      this.run(line);
    } }, h('span', { class: 'prompt mono' }, 'qemu-io>'), this.input);
    this.input.addEventListener('keydown', (e) => this.key(e));
    this.root = h('div', { class: 'console' }, chips, this.output, form);
    this.output.addEventListener('click', () => this.input.focus());
    bus.on('select', (sel) => {
      if (sel?.disk === this.disk) return;
      this.disk = sel?.disk ?? null;
      this.session.disk = this.disk ? pageDisk(this.disk) : null;
      this.input.placeholder = this.disk ? `command for ${this.disk.path} — try: write -P 0xab 0 64k` : 'open an image first';
      if (this.disk) this.print(`# ${this.disk.path} is open (${this.disk.format}, ${cvtstr(this.disk.length)}${this.disk.readOnly ? ', read-only' : ''})\n`, 'note');
    });
  }

  private key(e: KeyboardEvent): void {
    if (e.key === 'ArrowUp' && this.histPos > 0) {
      this.input.value = this.history[--this.histPos]!;
      e.preventDefault();
    } else if (e.key === 'ArrowDown') {
      this.histPos = Math.min(this.history.length, this.histPos + 1);
      this.input.value = this.history[this.histPos] ?? '';
      e.preventDefault();
    }
  }

  private print(text: string, cls?: string): void {
    const span = h('span', cls ? { class: cls } : {}, text);
    this.output.append(span);
    while (this.output.childNodes.length > 2000) this.output.firstChild?.remove();
    this.output.scrollTop = this.output.scrollHeight;
  }

  /** Runs one command line (queued behind the previous ones). */
  run(line: string): Promise<void> {
    const trimmed = line.trim();
    if (trimmed && this.history[this.history.length - 1] !== trimmed) this.history.push(trimmed);
    this.histPos = this.history.length;
    this.queue = this.queue.then(() => this.exec(trimmed));
    return this.queue;
  }

  private async exec(line: string): Promise<void> {
    this.print(`qemu-io> ${line}\n`, 'echo');
    if (!line || line.startsWith('#')) return;
    if (line === 'clear') {
      this.output.replaceChildren();
      return;
    }
    // A disk being opened (perhaps waiting for its password) takes the command once it is open.
    await app.opening;
    this.chunks = [];
    const name = line.split(' ').filter((x) => x !== '')[0]!;
    const c = this.session.commands.find((x) => x.name === name || x.alt === name);
    await this.session.command(line);
    for (const chunk of this.chunks) this.print(chunk.text, chunk.err ? 'err' : undefined);
    this.chunks = [];
    // Whatever changed the image: the allocation map reads it again.
    if (c?.write && this.disk) bus.emit('data', null);
  }
}

/** The page Disk as the interpreter's disk, with `info` from the DiskWorker. */
function pageDisk(disk: Disk): PageDisk {
  return new PageDisk(disk, {
    compressed: disk.format === 'qcow2',
    info: async () => {
      const info = await app.dw!.info(disk.path);
      return {
        format: info.format,
        virtualSize: info.virtualSize,
        ...(info.clusterSize !== undefined ? { clusterSize: info.clusterSize } : {}),
        ...(info.specific ? { specific: info.specific.data } : {}),
      };
    },
  });
}
