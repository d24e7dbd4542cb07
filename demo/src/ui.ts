/**
 * Small DOM helpers of the demo: element building, byte formatting, toasts
 * and error messages a person can read.
 */

type Attrs = Record<string, string | number | boolean | undefined | ((ev: Event) => void)>;
type Child = Node | string | number | null | undefined | false;

/** Builds an element: h('button', { class: 'x', onclick: fn }, 'Label'). */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue;
    if (typeof v === 'function') el.addEventListener(k.replace(/^on/, ''), v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  for (const c of children) if (c !== null && c !== undefined && c !== false) el.append(c instanceof Node ? c : String(c));
  return el;
}

export function $(sel: string, root: ParentNode = document): HTMLElement {
  const el = root.querySelector(sel);
  if (!el) throw new Error(`demo: element ${sel} is missing`);
  return el as HTMLElement;
}

/** 1536 -> "1.5 KiB", 0 -> "0 B". */
export function fmtBytes(n: number | undefined): string {
  if (n === undefined || !Number.isFinite(n) || n < 0) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  const digits = i === 0 || v >= 100 || Number.isInteger(v) ? 0 : v >= 10 ? 1 : 2;
  return `${v.toFixed(digits).replace(/\.0+$/, '')} ${units[i]}`;
}

/** "64M" / "1.5G" / "4096" -> bytes (qemu-img style suffixes, binary). */
export function parseSize(text: string): number | null {
  const m = /^\s*([0-9]+(?:\.[0-9]+)?)\s*([kmgtp]?)(?:i?b)?\s*$/i.exec(text);
  if (!m) return null;
  const mult = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40, p: 2 ** 50 }[m[2]!.toLowerCase() as '' | 'k'];
  const v = Math.round(Number(m[1]) * mult);
  return Number.isSafeInteger(v) ? v : null;
}

const EXPLAIN: Record<string, string> = {
  ENOENT: 'It does not exist (any more).',
  EBUSY: 'It is in use — close it (or the VM using it) first, or use another tab’s copy.',
  ENOSPC: 'The browser’s storage quota is full. Delete images or grant persistent storage.',
  EFBIG: 'That is larger than this image or storage can hold.',
  EINVAL: 'The request or the image does not look right.',
  EIO: 'Reading or writing the storage failed.',
  EACCES: 'Not allowed by the image policy.',
  EPERM: 'Not allowed.',
  ENOTSUP: 'This is not supported here.',
  ECANCELED: 'Cancelled.',
  ENOMEDIUM: 'The image was closed.',
};

/** A title and detail for any error. */
export function describeError(e: unknown): { title: string; detail: string; code?: string } {
  const err = e as { code?: string; message?: string; name?: string };
  const code = typeof err?.code === 'string' ? err.code : undefined;
  const message = String(err?.message ?? e ?? 'Unknown error');
  if (code && EXPLAIN[code]) return { title: EXPLAIN[code]!, detail: message, code };
  if (err?.name === 'AbortError') return { title: 'Cancelled.', detail: message };
  if (err?.name === 'QuotaExceededError') return { title: EXPLAIN.ENOSPC!, detail: message, code: 'ENOSPC' };
  return { title: 'Something went wrong.', detail: message, ...(code ? { code } : {}) };
}

let toastRoot: HTMLElement | null = null;

/** Shows a message in the corner; errors stay until dismissed. */
export function toast(kind: 'info' | 'ok' | 'error', title: string, detail = ''): void {
  toastRoot ??= document.getElementById('toasts');
  if (!toastRoot) return;
  const close = h('button', { class: 'toast-close', 'aria-label': 'Dismiss', onclick: () => el.remove() }, '×');
  const el = h('div', { class: `toast toast-${kind}`, role: kind === 'error' ? 'alert' : 'status' }, h('div', { class: 'toast-title' }, title), detail ? h('div', { class: 'toast-detail' }, detail) : null, close);
  toastRoot.append(el);
  while (toastRoot.children.length > 4) toastRoot.firstElementChild?.remove();
  if (kind !== 'error') setTimeout(() => el.remove(), 4500);
}

export function showError(e: unknown, what?: string): void {
  const d = describeError(e);
  if (d.code === 'ECANCELED') {
    toast('info', what ? `${what}: cancelled` : 'Cancelled');
    return;
  }
  toast('error', what ? `${what} failed. ${d.title}` : d.title, d.code ? `${d.code}: ${d.detail}` : d.detail);
}

/** Runs an async action, reporting failures as toasts; never throws. */
export async function guard<T>(what: string, fn: () => Promise<T>): Promise<T | undefined> {
  try {
    return await fn();
  } catch (e) {
    showError(e, what);
    return undefined;
  }
}

/** A modal <dialog> with a form; resolves with its FormData or null. */
export function formDialog(title: string, body: Node[], submitLabel: string, setup?: (form: HTMLFormElement) => void): Promise<FormData | null> {
  return new Promise((resolve) => {
    const form = h('form', { method: 'dialog', class: 'dialog-form' });
    const cancel = h('button', { type: 'button', class: 'btn', value: 'cancel' }, 'Cancel');
    form.append(h('h2', {}, title), ...body, h('div', { class: 'dialog-actions' }, cancel, h('button', { type: 'submit', class: 'btn btn-primary', value: 'ok' }, submitLabel)));
    const dlg = h('dialog', { class: 'dialog' }, form);
    document.body.append(dlg);
    let result: FormData | null = null;
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      if (!form.reportValidity()) return;
      result = new FormData(form);
      dlg.close();
    });
    cancel.addEventListener('click', () => dlg.close());
    dlg.addEventListener('close', () => {
      dlg.remove();
      resolve(result);
    });
    setup?.(form);
    dlg.showModal();
  });
}

export function field(label: string, input: HTMLElement, hint?: string): HTMLElement {
  return h('label', { class: 'field' }, h('span', { class: 'field-label' }, label), input, hint ? h('span', { class: 'field-hint' }, hint) : null);
}

export function confirmDialog(title: string, text: string, okLabel: string): Promise<boolean> {
  return formDialog(title, [h('p', {}, text)], okLabel).then((r) => r !== null);
}
