/**
 * Passwords of encrypted images (luks, qcow2 with encrypt.format=luks): a
 * work that fails for want of a key secret asks the user for the password in
 * a dialog, gives it to the worker as a secret (`dw.secrets.add`) and runs
 * again with the secret named; a wrong password is said in the dialog
 * (QEMU's "Invalid password, cannot unlock any keyslot") and the user tries
 * again or cancels. Passwords are never logged or kept in the page: the input
 * is cleared once sent.
 */
import { app } from './state.js';
import { isWrongPassword, KeyRing, neededKeyOption } from './key-secrets.js';
import { field, h } from './ui.js';

/** The secret ids of the images unlocked in this page (never their passwords). */
export const keys = new KeyRing();

function dw() {
  if (!app.dw) throw new Error('The block worker is not running');
  return app.dw;
}

/** A password given to the worker as a new secret; returns its id. */
export async function addPassword(password: string): Promise<string> {
  const id = keys.newId();
  await dw().secrets.add(id, password);
  return id;
}

/** Removes a secret from the worker, if it is there. */
export async function dropSecret(id: string | undefined): Promise<void> {
  if (id) await dw().secrets.remove(id).catch(() => undefined);
}

/**
 * Runs `work` with the key options known for `path` (undefined: none); when
 * it fails because the image needs a key secret, asks for the password
 * (`what` names the image) until `work` succeeds with it or the user
 * cancels (then null). With `path`, the key is remembered for the image's
 * next opens; without, the secret is removed once `work` is done.
 */
export async function withPassword<T>(what: string, path: string | undefined, work: (options: Record<string, string> | undefined) => Promise<T>): Promise<T | null> {
  let option: string | null;
  try {
    return await work(path ? keys.options(path) : undefined);
  } catch (e) {
    option = neededKeyOption(e);
    // A remembered key that no longer unlocks (the image was replaced): ask again.
    if (!option && path && isWrongPassword(e)) option = keys.get(path)?.option ?? null;
    if (!option) throw e;
  }
  const keyOption = option;
  return passwordDialog(what, async (password) => {
    const id = await addPassword(password);
    try {
      const out = await work({ [keyOption]: id });
      if (path) await dropSecret(keys.set(path, { option: keyOption, id }));
      else await dropSecret(id);
      return out;
    } catch (e) {
      await dropSecret(id);
      throw e;
    }
  });
}

/**
 * The password dialog: `attempt` runs with each password the user submits;
 * a wrong one is shown as an error in the dialog, which stays open; any other
 * failure closes it and is thrown. Cancel resolves null.
 */
function passwordDialog<T>(what: string, attempt: (password: string) => Promise<T>): Promise<T | null> {
  return new Promise((resolve, reject) => {
    const input = h('input', { type: 'password', name: 'password', required: true, autocomplete: 'off', 'data-testid': 'password-input' });
    const error = h('p', { class: 'field-error', role: 'alert', 'data-testid': 'password-error', hidden: true });
    const submit = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Unlock');
    const cancel = h('button', { type: 'button', class: 'btn' }, 'Cancel');
    const form = h(
      'form',
      { method: 'dialog', class: 'dialog-form', 'data-testid': 'password-dialog' },
      h('h2', {}, `Password for ${what}`),
      h('p', { class: 'muted' }, 'This image is encrypted (LUKS). The password goes to the block worker only, as a secret it unlocks the image with.'),
      field('Password', input),
      error,
      h('div', { class: 'dialog-actions' }, cancel, submit),
    );
    const dlg = h('dialog', { class: 'dialog' }, form);
    document.body.append(dlg);
    let settled = false;
    const finish = (fn: () => void) => {
      settled = true;
      dlg.close();
      fn();
    };
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      if (!form.reportValidity()) return;
      const password = input.value;
      input.value = '';
      submit.disabled = true;
      error.hidden = true;
      attempt(password).then(
        (out) => finish(() => resolve(out)),
        (e: unknown) => {
          submit.disabled = false;
          if (isWrongPassword(e)) {
            error.textContent = `${(e as Error).message}. Try again.`;
            error.hidden = false;
            input.focus();
          } else finish(() => reject(e));
        },
      );
    });
    cancel.addEventListener('click', () => finish(() => resolve(null)));
    dlg.addEventListener('close', () => {
      dlg.remove();
      if (!settled) resolve(null);
    });
    dlg.showModal();
  });
}

/** A password field and its confirmation, for a new encrypted image: hidden until `show(true)`; `value()` reads and clears them. */
export function newPasswordFields(): { root: HTMLElement; show(on: boolean): void; value(): string | null } {
  const pw = h('input', { type: 'password', name: 'new-password', autocomplete: 'new-password', 'data-testid': 'new-password' });
  const again = h('input', { type: 'password', name: 'new-password-again', autocomplete: 'new-password', 'data-testid': 'new-password-again' });
  const root = h('div', { class: 'grid2', hidden: true }, field('Password', pw, 'LUKS encrypts the image with it; QEMU asks for it to open the image.'), field('Password again', again));
  const check = () => again.setCustomValidity(!root.hidden && again.value !== pw.value ? 'The two passwords differ' : '');
  pw.addEventListener('input', check);
  again.addEventListener('input', check);
  return {
    root,
    show(on) {
      root.hidden = !on;
      pw.required = on;
      again.required = on;
      check();
    },
    value() {
      if (root.hidden) return null;
      const v = pw.value;
      pw.value = '';
      again.value = '';
      return v;
    },
  };
}
