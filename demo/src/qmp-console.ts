/**
 * The QMP console: QEMU's block commands typed against the worker's graph
 * (`dw.qmp`), the one the open disks use. A line is either QMP's own JSON
 * (`{"execute": "query-jobs", "id": 1}`) or a short form: the command name,
 * then its arguments as a JSON object or as `key=value` words. Replies are
 * printed as QEMU puts them on the wire; events as they arrive, also those
 * of jobs started elsewhere in the page.
 */
import type { QmpEvent } from '../../src/client/index.js';
import { app, bus } from './state.js';
import { h } from './ui.js';

/** One parsed console line: what goes to `dw.qmp.execute`, and the id to echo. */
export interface QmpLine {
  execute: string;
  arguments: Record<string, unknown>;
  id?: unknown;
}

/** A `key=value` word's value: JSON where it reads as JSON (numbers, booleans, null, objects), else the text. */
function wordValue(text: string): unknown {
  if (/^(-?\d+(\.\d+)?|true|false|null)$/.test(text) || /^[[{"]/.test(text)) {
    try {
      return JSON.parse(text);
    } catch {
      return text;
    }
  }
  return text;
}

/** Parses a console line (see the file comment). Throws an Error with the reason. */
export function parseQmpLine(line: string): QmpLine {
  const text = line.trim();
  if (text.startsWith('{')) {
    const msg = JSON.parse(text) as Record<string, unknown>;
    if (typeof msg['execute'] !== 'string') throw new Error('QMP input lacks member "execute"');
    const args = msg['arguments'] ?? {};
    if (typeof args !== 'object' || args === null || Array.isArray(args)) throw new Error('QMP input member "arguments" must be an object');
    return { execute: msg['execute'], arguments: args as Record<string, unknown>, ...('id' in msg ? { id: msg['id'] } : {}) };
  }
  const space = text.search(/\s/);
  const name = space < 0 ? text : text.slice(0, space);
  const rest = space < 0 ? '' : text.slice(space).trim();
  if (rest.startsWith('{')) {
    const args = JSON.parse(rest) as unknown;
    if (typeof args !== 'object' || args === null || Array.isArray(args)) throw new Error('arguments must be a JSON object');
    return { execute: name, arguments: args as Record<string, unknown> };
  }
  const args: Record<string, unknown> = {};
  for (const word of rest.split(/\s+/).filter((w) => w !== '')) {
    const eq = word.indexOf('=');
    if (eq <= 0) throw new Error(`"${word}" is not key=value`);
    args[word.slice(0, eq)] = wordValue(word.slice(eq + 1));
  }
  return { execute: name, arguments: args };
}

export class QmpConsole {
  readonly root: HTMLElement;
  private readonly output: HTMLElement;
  private readonly input: HTMLInputElement;
  private readonly history: string[] = [];
  private histPos = 0;
  private queue: Promise<void> = Promise.resolve();
  private listening = false;
  /** The selected disk's format node (for the example commands). */
  private node: string | null = null;

  constructor() {
    this.output = h('pre', { class: 'console-out mono', 'data-testid': 'qmp-output', 'aria-live': 'polite' });
    this.input = h('input', { class: 'console-input mono', 'data-testid': 'qmp-input', autocomplete: 'off', spellcheck: 'false', 'aria-label': 'QMP command', placeholder: 'open an image first' });
    const examples: Array<[string, () => string]> = [
      ['query-named-block-nodes', () => 'query-named-block-nodes flat=true'],
      ['query-block', () => 'query-block'],
      ['bitmap add', () => `block-dirty-bitmap-add node=${this.node ?? 'NODE'} name=b1`],
      ['snapshot', () => `blockdev-snapshot-internal-sync device=${this.node ?? 'NODE'} name=s1`],
      ['query-jobs', () => 'query-jobs'],
      ['bad command', () => 'no-such-command'],
    ];
    const chips = h('div', { class: 'chips' }, h('span', { class: 'muted' }, 'Try:'), ...examples.map(([label, line]) => h('button', { class: 'chip mono', type: 'button', onclick: () => this.run(line()) }, label)));
    const form = h('form', { class: 'console-line', onsubmit: (e: Event) => {
      e.preventDefault();
      const line = this.input.value;
      this.input.value = '';
      void this.run(line);
    } }, h('span', { class: 'prompt mono' }, '(QMP)'), this.input);
    this.input.addEventListener('keydown', (e) => this.key(e));
    this.root = h('div', { class: 'console' }, chips, this.output, form);
    this.output.addEventListener('click', () => this.input.focus());
    bus.on('select', (sel) => {
      void this.listen();
      this.node = null;
      if (!sel?.disk) {
        this.input.placeholder = 'open an image first';
        return;
      }
      const disk = sel.disk;
      void this.findNode(disk.path, disk.format).then((node) => {
        if (app.selected?.disk !== disk) return;
        this.node = node;
        this.input.placeholder = node ? `QMP command — ${disk.path} is node ${node}` : 'QMP command';
        if (node) this.print(`# ${disk.path} is node '${node}'\n`, 'note');
      });
    });
  }

  /** The node of the graph that is the disk at `path` (its format node). */
  private async findNode(path: string, format: string): Promise<string | null> {
    const r = await app.dw!.qmp.execute('query-named-block-nodes', { flat: true });
    if (!('return' in r)) return null;
    const nodes = r.return as Array<{ 'node-name': string; drv: string; file: string }>;
    return nodes.find((n) => n.file === path && n.drv === format)?.['node-name'] ?? null;
  }

  /** Prints every QMP event from the first selection on. */
  private async listen(): Promise<void> {
    if (this.listening || !app.dw) return;
    this.listening = true;
    await app.dw.qmp.on((e: QmpEvent) => this.print(`${JSON.stringify(e)}\n`, 'note'));
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
    this.output.append(h('span', cls ? { class: cls } : {}, text));
    while (this.output.childNodes.length > 2000) this.output.firstChild?.remove();
    this.output.scrollTop = this.output.scrollHeight;
  }

  /** Runs one line (queued behind the previous ones). */
  run(line: string): Promise<void> {
    const trimmed = line.trim();
    if (trimmed && this.history[this.history.length - 1] !== trimmed) this.history.push(trimmed);
    this.histPos = this.history.length;
    this.queue = this.queue.then(() => this.exec(trimmed));
    return this.queue;
  }

  private async exec(line: string): Promise<void> {
    this.print(`(QMP) ${line}\n`, 'echo');
    if (!line || line.startsWith('#')) return;
    if (line === 'clear') {
      this.output.replaceChildren();
      return;
    }
    if (!app.dw) {
      this.print('the block worker is not running\n', 'err');
      return;
    }
    let msg: QmpLine;
    try {
      msg = parseQmpLine(line);
    } catch (e) {
      this.print(`${e instanceof Error ? e.message : String(e)}\n`, 'err');
      return;
    }
    const reply = await app.dw.qmp.execute(msg.execute, msg.arguments);
    const wire = 'id' in msg ? { ...reply, id: msg.id } : reply;
    this.print(`${JSON.stringify(wire, null, 2)}\n`, 'error' in reply ? 'err' : undefined);
    // Commands may have changed the disk (bitmaps, snapshots, jobs): the panels look again.
    if (!msg.execute.startsWith('query-') && 'return' in reply && app.selected) bus.emit('data', null);
  }
}
