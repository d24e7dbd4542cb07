/**
 * The demo's keys of encrypted images, without their passwords: which secret
 * id (a `dw.secrets` object in the worker) unlocks which image, and how a
 * failed open says that it needs one. The passwords go to the worker as the
 * user types them and stay there; the page keeps only the ids.
 */

/** QEMU's message for an encrypted image opened without its key secret. */
const KEY_NEEDED = /^Parameter '((?:[A-Za-z0-9_-]+\.)*key-secret)' is required for cipher/;

/**
 * The open option that names the key secret a failure asks for
 * (`key-secret` for luks, `encrypt.key-secret` for qcow2 and qcow), from
 * QEMU's "Parameter 'X' is required for cipher"; null for other failures.
 */
export function neededKeyOption(e: unknown): string | null {
  const err = e as { code?: unknown; message?: unknown };
  if (err?.code !== 'EINVAL' || typeof err.message !== 'string') return null;
  return KEY_NEEDED.exec(err.message)?.[1] ?? null;
}

/** Whether a failure is QEMU's wrong password (EPERM "Invalid password, cannot unlock any keyslot"). */
export function isWrongPassword(e: unknown): boolean {
  const err = e as { code?: unknown; message?: unknown };
  return err?.code === 'EPERM' && typeof err.message === 'string' && err.message.startsWith('Invalid password');
}

/** One image's key: the open option and the secret id it names. */
export interface ImageKey {
  option: string;
  id: string;
}

/** The secret ids of the images unlocked in this page. */
export class KeyRing {
  private readonly keys = new Map<string, ImageKey>();
  private next = 1;

  /** A fresh secret id (QEMU's identifiers: a letter first). */
  newId(): string {
    return `demo-key-${this.next++}`;
  }

  /** The open options of `path` (`{ 'key-secret': id }`), or undefined when it has no key here. */
  options(path: string): Record<string, string> | undefined {
    const k = this.keys.get(path);
    return k ? { [k.option]: k.id } : undefined;
  }

  get(path: string): ImageKey | undefined {
    return this.keys.get(path);
  }

  /** Records `path`'s key; returns the id it replaces, which the caller removes from the worker. */
  set(path: string, key: ImageKey): string | undefined {
    const old = this.keys.get(path);
    this.keys.set(path, key);
    return old && old.id !== key.id ? old.id : undefined;
  }

  /** Forgets `path`'s key (a deleted image); returns its id for the caller to remove. */
  forget(path: string): string | undefined {
    const old = this.keys.get(path);
    this.keys.delete(path);
    return old?.id;
  }
}
