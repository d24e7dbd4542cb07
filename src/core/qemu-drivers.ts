/**
 * Block drivers QEMU 7.2's tools know by name and this library does not
 * implement. qemu-img tells "no such driver" ("Unknown file format 'x'")
 * apart from "a driver that cannot do this" ("Format driver 'bochs' does not
 * support image creation"); with this table the CLI gives the same answer for
 * the drivers whose answer does not depend on having them.
 */

/** What a QEMU driver we lack can do, as far as qemu-img's messages go. */
export interface QemuOnlyDriver {
  /** The driver has creation options (qemu-img create / convert -O accept it). */
  readonly create: boolean;
  /** The driver implements option amendment. */
  readonly amend: boolean;
}

const none: QemuOnlyDriver = { create: false, amend: false };
const creatable: QemuOnlyDriver = { create: true, amend: false };

/**
 * Drivers of QEMU 7.2 (as Debian builds it, without the modules it ships
 * separately: curl, gluster, iscsi, nfs, rbd, ssh) that we do not have.
 * Formats whose names the probe recognises (src/core/probe-foreign.ts) are
 * all here.
 */
const QEMU_ONLY_DRIVERS: Readonly<Record<string, QemuOnlyDriver>> = {
  blklogwrites: none,
  bochs: none,
  cloop: none,
  'copy-before-write': none,
  dmg: none,
  preallocate: none,
  replication: none,
  'snapshot-access': none,
  throttle: none,
  vvfat: none,
  nvme: creatable,
  parallels: creatable,
  qcow: creatable,
  qed: creatable,
};

/** The capabilities of a QEMU driver we lack, or undefined when QEMU has no such driver either. */
export function qemuOnlyDriver(name: string): QemuOnlyDriver | undefined {
  return Object.prototype.hasOwnProperty.call(QEMU_ONLY_DRIVERS, name) ? QEMU_ONLY_DRIVERS[name] : undefined;
}

/** The names of {@link qemuOnlyDriver}'s table, sorted. */
export function qemuOnlyDriverNames(): string[] {
  return Object.keys(QEMU_ONLY_DRIVERS).sort();
}
