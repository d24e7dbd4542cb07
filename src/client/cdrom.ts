/**
 * A v86 CD-ROM drive with removable media: the page inserts and ejects ISO
 * images (OPFS, HTTP, anything `dw.open` takes) while the guest runs, with
 * QEMU's tray and lock rules (src/core/removable-media.ts).
 *
 * ```ts
 * const cd = new V86Cdrom(dw);
 * await cd.insert({ path: 'opfs:/iso/install.iso' });
 * const emulator = new V86({ cdrom: cd.buffer, ... });
 * cd.attach(emulator);                 // later swaps reach the running guest
 * await cd.insert({ path: 'https://example.org/drivers.iso' });
 * await cd.eject();
 * ```
 *
 * The medium is opened read-only; v86 reads it through {@link toV86Buffer}.
 * A swap tells v86's ATAPI drive (`set_cdrom` / `eject`), which reports the
 * medium change to the guest. v86 does not pass the guest's PREVENT ALLOW
 * MEDIUM REMOVAL on: {@link lock} stands in for it.
 */
import { RemovableMedia, type MediaEvents } from '../core/removable-media.js';
import type { OpenOptions } from './protocol.js';
import { toV86Buffer, type V86Disk, type V86DiskBuffer } from './v86.js';

/** The part of a running v86 emulator the drive drives (its ATAPI device). */
export interface V86CdromEmulator {
  v86?: { cpu?: { devices?: { cdrom?: { set_cdrom(buffer: unknown): void; eject(): void } } } };
  /** V86#is_running: while the machine is stopped (or destroyed) the drive is left alone. */
  is_running?(): boolean;
  /** V86#add_listener / remove_listener: a change made while stopped reaches the drive at the next start. */
  add_listener?(event: string, listener: () => void): void;
  remove_listener?(event: string, listener: () => void): void;
}

/** What the drive needs of the page's DiskWorker: `open` (read-only here). */
export interface CdromOpener {
  open(o: OpenOptions): Promise<V86Disk & { close(): Promise<void> }>;
}

/** One medium in the drive: its disk and the buffer v86 reads. */
interface CdMedium {
  disk: V86Disk & { close(): Promise<void> };
  buffer: V86DiskBuffer;
}

/** A CD-ROM drive for v86 whose media are disks the page opens. */
export class V86Cdrom {
  private readonly drive: RemovableMedia<CdMedium>;
  private emulator: V86CdromEmulator | undefined;

  /**
   * `id` names the drive in errors (default `cdrom`); `events` hears the
   * tray move, lock requests and media changes.
   */
  constructor(
    private readonly dw: CdromOpener,
    opts: { id?: string; events?: MediaEvents } = {},
  ) {
    const outer = opts.events;
    this.drive = new RemovableMedia<CdMedium>(opts.id ?? 'cdrom', {
      release: (m) => m.disk.close(),
      events: {
        trayMoved: (open) => outer?.trayMoved?.(open),
        ejectRequest: (force) => outer?.ejectRequest?.(force),
        mediumChanged: (inserted) => {
          this.tellEmulator();
          outer?.mediumChanged?.(inserted);
        },
      },
    });
  }

  /**
   * Connects the drive to a running emulator: from now on it sees every
   * change, starting with the medium in the drive now.
   */
  attach(emulator: V86CdromEmulator): void {
    this.detach();
    this.emulator = emulator;
    emulator.add_listener?.('emulator-started', this.onStarted);
    this.tellEmulator();
  }

  /** Disconnects the drive from its emulator (before the emulator is destroyed, or to attach another). */
  detach(): void {
    this.emulator?.remove_listener?.('emulator-started', this.onStarted);
    this.emulator = undefined;
  }

  private readonly onStarted = (): void => this.tellEmulator();

  /** The buffer of the medium the guest can read (for V86's `cdrom:` option), or undefined. */
  get buffer(): V86DiskBuffer | undefined {
    return this.drive.isReadable ? this.drive.medium!.buffer : undefined;
  }

  /** The disk in the drive, or undefined. */
  get disk(): V86Disk | undefined {
    return this.drive.medium?.disk;
  }

  /** Whether a medium is in the drive. */
  get isInserted(): boolean {
    return this.drive.isInserted;
  }

  /** Whether the tray is open (the guest then sees no medium). */
  get isTrayOpen(): boolean {
    return this.drive.isTrayOpen;
  }

  /** Whether the medium is locked in. */
  get isLocked(): boolean {
    return this.drive.isLocked;
  }

  /**
   * Puts the image `o` names in the drive (read-only), taking out the one
   * there (QEMU's blockdev-change-medium). Refused (EBUSY) while the medium
   * is locked, unless `force`; a failed open leaves the drive as it was.
   */
  async insert(o: OpenOptions, opts: { force?: boolean } = {}): Promise<void> {
    await this.drive.change(async () => {
      const disk = await this.dw.open({ ...o, readOnly: true });
      return { disk, buffer: toV86Buffer(disk) };
    }, opts.force ?? false);
  }

  /**
   * Opens the tray and takes the medium out (QEMU's eject). Refused (EBUSY,
   * "Device 'cdrom' is locked and force was not specified, ...") while
   * locked, unless `force`.
   */
  async eject(opts: { force?: boolean } = {}): Promise<void> {
    await this.drive.eject(opts.force ?? false);
  }

  /** Opens the tray: 'requested' while the medium is locked (unless `force`). */
  openTray(opts: { force?: boolean } = {}): 'open' | 'requested' {
    return this.drive.openTray(opts.force ?? false);
  }

  /** Closes the tray; a medium in it becomes readable again. */
  closeTray(): void {
    this.drive.closeTray();
  }

  /** Locks the medium in or releases it (the guest's PREVENT ALLOW MEDIUM REMOVAL). */
  lock(locked: boolean): void {
    this.drive.lockMedium(locked);
  }

  /** Ejects whatever is in the drive (forced) and closes its disk. */
  async close(): Promise<void> {
    if (this.drive.isInserted) await this.drive.eject(true);
  }

  private tellEmulator(): void {
    // A stopped machine takes no interrupts (a destroyed one has no timers left to raise them):
    // the drive hears of the medium when the machine starts again.
    if (this.emulator?.is_running && !this.emulator.is_running()) return;
    const dev = this.emulator?.v86?.cpu?.devices?.cdrom;
    if (!dev) return;
    const buffer = this.buffer;
    if (buffer) dev.set_cdrom(buffer);
    else dev.eject();
  }
}
