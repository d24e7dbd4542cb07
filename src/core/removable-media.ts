/**
 * A drive with removable media (QEMU 7.2's BlockBackend of a CD-ROM or
 * floppy: blk_is_inserted, blk_lock_medium, blk_eject and the QMP verbs
 * blockdev-open-tray / close-tray / remove-medium / insert-medium /
 * change-medium and eject, block/qapi-sysemu.c).
 *
 * The drive holds at most one medium (a {@link BlockBackend} in the graph,
 * a page's Disk in src/client/cdrom.ts) and, when it has a tray, the tray's
 * state. The guest may lock the medium in (SCSI PREVENT ALLOW MEDIUM
 * REMOVAL): opening the tray then only asks the guest to let it go, and
 * `eject` fails unless forced. A medium goes in or out only while the tray
 * is open; a drive without a tray swaps it at once.
 */
import { BlockError } from './errors.js';
import { BlockBackend } from './backend.js';
import type { BlockGraph } from './graph.js';
import type { BlockNode } from './node.js';

/** What the drive tells its device model (QEMU's BlockDevOps and the events it raises). */
export interface MediaEvents {
  /** The tray moved (QEMU's DEVICE_TRAY_MOVED). */
  trayMoved?(open: boolean): void;
  /** The guest was asked to release a locked medium (QEMU's eject_request; `force` unlocks it). */
  ejectRequest?(force: boolean): void;
  /** A medium went in or out (the guest sees "medium changed"). */
  mediumChanged?(inserted: boolean): void;
}

/** Options of a {@link RemovableMedia} drive. */
export interface RemovableMediaOptions<M> {
  /** Whether the drive has a tray (a CD-ROM has; a floppy drive has not). Default true. */
  hasTray?: boolean;
  /** Releases a medium taken out of the drive (closes its disk). */
  release(medium: M): Promise<void>;
  /** Called as the tray and medium change. */
  events?: MediaEvents;
}

/** A drive's removable-medium state machine over media of type `M`. */
export class RemovableMedia<M> {
  private current: M | null = null;
  private open = false;
  private lockedIn = false;
  readonly hasTray: boolean;

  /** `id` names the drive in messages ("Device 'cd0' is locked ..."). */
  constructor(
    readonly id: string,
    private readonly opts: RemovableMediaOptions<M>,
  ) {
    this.hasTray = opts.hasTray ?? true;
  }

  /** The medium in the drive, or null. */
  get medium(): M | null {
    return this.current;
  }

  /** Whether a medium is in the drive (QEMU's blk_is_inserted). */
  get isInserted(): boolean {
    return this.current !== null;
  }

  /** Whether the tray is open (false for a drive without a tray). */
  get isTrayOpen(): boolean {
    return this.open;
  }

  /** Whether the guest has locked the medium in. */
  get isLocked(): boolean {
    return this.lockedIn;
  }

  /** Whether the guest can read the medium: inserted and the tray closed. */
  get isReadable(): boolean {
    return this.current !== null && !this.open;
  }

  /** The guest locks or unlocks the medium (QEMU's blk_lock_medium). */
  lockMedium(locked: boolean): void {
    this.lockedIn = locked;
  }

  /**
   * Opens the tray (QEMU's do_open_tray). A locked medium makes this ask the
   * guest to release it; with `force` the lock is broken and the tray opens.
   * Returns 'open' when the tray is open, 'requested' when the guest was
   * only asked; throws ENOTSUP on a drive without a tray.
   */
  openTray(force = false): 'open' | 'requested' {
    if (!this.hasTray) throw new BlockError('ENOTSUP', `Device '${this.id}' does not have a tray`);
    if (this.open) return 'open';
    if (this.lockedIn) this.opts.events?.ejectRequest?.(force);
    if (this.lockedIn && !force) return 'requested';
    // A forced open breaks the guest's lock, as the guest's drive would on an emergency eject.
    this.lockedIn = false;
    this.moveTray(true);
    return 'open';
  }

  /** Closes the tray (QEMU's blockdev-close-tray); nothing on a drive without one. */
  closeTray(): void {
    if (!this.hasTray || !this.open) return;
    this.moveTray(false);
  }

  /**
   * Takes the medium out (QEMU's blockdev-remove-medium): the tray must be
   * open; an empty drive is left as it is. The medium is released.
   */
  async removeMedium(): Promise<void> {
    if (this.hasTray && !this.open) throw new BlockError('EINVAL', `Tray of device '${this.id}' is not open`);
    const m = this.current;
    if (m === null) return;
    this.current = null;
    if (!this.hasTray) this.opts.events?.mediumChanged?.(false);
    await this.opts.release(m);
  }

  /**
   * Puts `medium` in (QEMU's blockdev-insert-medium): the tray must be open
   * and the drive empty. The drive owns the medium from then on.
   */
  insertMedium(medium: M): void {
    if (this.hasTray && !this.open) throw new BlockError('EINVAL', 'Tray of the device is not open');
    if (this.current !== null) throw new BlockError('EBUSY', 'There already is a medium in the device');
    this.current = medium;
    if (!this.hasTray) this.opts.events?.mediumChanged?.(true);
  }

  /**
   * Ejects (QEMU's eject): opens the tray and takes the medium out. A locked
   * medium without `force` is refused (the guest has been asked to release
   * it; try again once it has).
   */
  async eject(force = false): Promise<void> {
    if (this.hasTray && this.openTray(force) === 'requested') {
      throw new BlockError('EBUSY', `Device '${this.id}' is locked and force was not specified, wait for tray to open and try again`);
    }
    await this.removeMedium();
  }

  /**
   * Replaces the medium (QEMU's blockdev-change-medium): `openMedium` opens
   * the new one first (a failure leaves the drive as it was), then the tray
   * opens (refused while locked, unless `force`), the old medium goes out,
   * the new one in, and the tray closes. The new medium is released if it
   * could not go in.
   */
  async change(openMedium: () => Promise<M>, force = false): Promise<void> {
    const medium = await openMedium();
    try {
      if (this.hasTray && this.openTray(force) === 'requested') {
        throw new BlockError('EBUSY', `Device '${this.id}' is locked and force was not specified, wait for tray to open and try again`);
      }
      await this.removeMedium();
      this.insertMedium(medium);
    } catch (e) {
      await this.opts.release(medium);
      throw e;
    }
    this.closeTray();
  }

  private moveTray(open: boolean): void {
    this.open = open;
    this.opts.events?.trayMoved?.(open);
    // A medium that comes into view or leaves it is a media change for the guest.
    if (this.current !== null) this.opts.events?.mediumChanged?.(!open);
  }
}

/**
 * A removable-media drive whose media are BlockBackends opened in `graph`:
 * {@link changeTo} opens an image by name or options (read-only unless told
 * otherwise), as QEMU's blockdev-change-medium opens its filename.
 */
export class RemovableBackend extends RemovableMedia<BlockBackend> {
  constructor(
    id: string,
    private readonly graph: BlockGraph,
    opts: { hasTray?: boolean; events?: MediaEvents } = {},
  ) {
    super(id, { ...opts, release: (bb) => bb.close() });
  }

  /** The node of the medium, or null. */
  get node(): BlockNode | null {
    return this.medium?.node ?? null;
  }

  /** Inserts an already open node (QEMU's blockdev-insert-medium with a node-name). */
  async insertNode(node: BlockNode): Promise<void> {
    if (node.parents.some((c) => c.parent instanceof BlockBackend)) {
      throw new BlockError('EBUSY', `Node '${node.nodeName}' is already in use`);
    }
    const bb = await BlockBackend.attach(this.graph, node, { name: this.id, device: true });
    try {
      this.insertMedium(bb);
    } catch (e) {
      await bb.close();
      throw e;
    }
  }

  /** blockdev-change-medium with an image name or options. */
  async changeTo(spec: string | Record<string, unknown>, opts: { force?: boolean; readOnly?: boolean; format?: string } = {}): Promise<void> {
    const flags = { readOnly: opts.readOnly ?? true, ...(opts.format ? { format: opts.format } : {}) };
    await this.change(() => BlockBackend.open(this.graph, spec, flags, { name: this.id }), opts.force ?? false);
  }
}
