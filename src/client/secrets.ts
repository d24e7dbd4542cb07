/**
 * Secrets from the page (`dw.secrets`): QEMU's `secret` objects in the
 * worker's graph, named by the options of encrypted images (`key-secret` of
 * luks, `encrypt.key-secret` of qcow2 and qcow), as
 * `qemu-img --object secret,id=sec0,data=...` gives them.
 *
 * ```ts
 * await dw.secrets.add('sec0', 'my passphrase');
 * const disk = await dw.open({ path: 'opfs:/disks/a.luks', options: { 'key-secret': 'sec0' } });
 * await dw.secrets.remove('sec0'); // the open disk keeps its unlocked key
 * ```
 *
 * The bytes go to the worker once and never come back: there is no getter.
 */
import { transfer, type Remote } from 'comlink';
import type { BlockWorkerApi } from './api.js';

/** The worker's secrets, as the page adds and removes them. */
export class DiskSecrets {
  /** @internal Made by DiskWorker. */
  constructor(private readonly remote: Remote<BlockWorkerApi>) {}

  /**
   * Adds the secret `id`: a string is its UTF-8 bytes (QEMU's `data=`), a
   * Uint8Array its bytes (copied: the caller's array is left as it is). An
   * id must be an identifier (letters, digits, '-', '.', '_', starting with
   * a letter): EINVAL "Parameter 'id' expects an identifier" otherwise; a
   * taken id fails with EEXIST and QEMU's "attempt to add duplicate property
   * 'id' to object (type 'container')". Formats that use a secret as a
   * passphrase need it to be valid UTF-8, as QEMU does.
   */
  async add(id: string, data: string | Uint8Array): Promise<void> {
    // A copy of our own, transferred so that no second copy stays in the page; wiped if it comes back.
    const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : data.slice();
    try {
      await this.remote.secretAdd(id, transfer(bytes, [bytes.buffer]));
    } finally {
      if (bytes.byteLength > 0) bytes.fill(0);
    }
  }

  /**
   * Removes the secret `id` and wipes its bytes in the worker; ENOENT with
   * QEMU's "object 'id' not found" when there is none. Disks already open
   * keep their unlocked keys (as in QEMU).
   */
  async remove(id: string): Promise<void> {
    await this.remote.secretRemove(id);
  }
}
