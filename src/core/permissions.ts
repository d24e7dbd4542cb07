/**
 * Permissions on graph links (QEMU's BLK_PERM_*) and child roles (BDRV_CHILD_*).
 *
 * Each link (BdrvChild) holds the permissions its parent takes on the child node
 * (`perm`) and the ones it lets other users of that node have (`shared`). Two users
 * conflict when one takes what the other does not share.
 */

/** Permission bits. */
export const Perm = {
  /** The data read is what was written (no one else writes unchecked under us). */
  CONSISTENT_READ: 0x01,
  /** Writes that change the data. */
  WRITE: 0x02,
  /** Writes that store what is already there (copy-on-read, stream). */
  WRITE_UNCHANGED: 0x04,
  /** Changing the node's length. */
  RESIZE: 0x08,
  /** Changing the graph around the node (deprecated in QEMU, kept for jobs). */
  GRAPH_MOD: 0x10,
} as const;
export type PermMask = number;

/** Every permission bit. */
export const PERM_ALL: PermMask = 0x1f;

const PERM_NAMES: ReadonlyArray<[number, string]> = [
  [Perm.CONSISTENT_READ, 'consistent read'],
  [Perm.WRITE, 'write'],
  [Perm.WRITE_UNCHANGED, 'write unchanged'],
  [Perm.RESIZE, 'resize'],
  [Perm.GRAPH_MOD, 'change children'],
];

/** "write, resize" for the bits set in `mask` (QEMU's bdrv_perm_names). */
export function permNames(mask: PermMask): string {
  return PERM_NAMES.filter(([bit]) => mask & bit).map(([, name]) => name).join(', ');
}

/** Roles a child plays for its parent (bit mask, QEMU's BdrvChildRole). */
export const ChildRole = {
  /** The child stores guest-visible data. */
  DATA: 0x01,
  /** The child stores metadata of the parent's format. */
  METADATA: 0x02,
  /** The parent is a filter over this child (the data passes through unchanged). */
  FILTERED: 0x04,
  /** The child is a copy-on-write backing file. */
  COW: 0x08,
  /** The parent's primary child (`file` of formats and filters). */
  PRIMARY: 0x10,
} as const;
export type ChildRoleMask = number;

/** The usual role of `file` under a format driver: data and metadata, primary. */
export const ROLE_IMAGE: ChildRoleMask = ChildRole.DATA | ChildRole.METADATA | ChildRole.PRIMARY;
/** `file` under raw or a filter: data passes through. */
export const ROLE_FILTERED_PRIMARY: ChildRoleMask = ChildRole.DATA | ChildRole.FILTERED | ChildRole.PRIMARY;
/** `backing` of a format. */
export const ROLE_BACKING: ChildRoleMask = ChildRole.COW;
/** qcow2's external `data-file`. */
export const ROLE_DATA_FILE: ChildRoleMask = ChildRole.DATA;

/** Bits that pass straight through a filter (QEMU DEFAULT_PERM_PASSTHROUGH). */
const PASSTHROUGH = Perm.CONSISTENT_READ | Perm.WRITE | Perm.WRITE_UNCHANGED | Perm.RESIZE;
/** Bits a filter shares regardless of its parents (QEMU DEFAULT_PERM_UNCHANGED). */
const UNCHANGED = PERM_ALL & ~PASSTHROUGH;

/**
 * The permissions a node needs on a child given the node's own cumulative
 * permissions (QEMU's bdrv_default_perms).
 *
 * @param role the child's role
 * @param perm what the node's parents take on the node
 * @param shared what the node's parents share on the node
 * @param writable whether the node is open read-write
 */
export function defaultChildPerms(
  role: ChildRoleMask,
  perm: PermMask,
  shared: PermMask,
  writable: boolean,
): { perm: PermMask; shared: PermMask } {
  if (role & ChildRole.COW) {
    // Backing files are only read; they may change under us only if the parent allows.
    const p = perm & Perm.CONSISTENT_READ;
    let s = shared & Perm.WRITE ? Perm.WRITE | Perm.RESIZE : 0;
    s |= Perm.CONSISTENT_READ | Perm.GRAPH_MOD | Perm.WRITE_UNCHANGED;
    return { perm: p, shared: s };
  }
  let p = perm & PASSTHROUGH;
  let s = (shared & PASSTHROUGH) | UNCHANGED;
  if (role & ChildRole.METADATA) {
    // Formats touch metadata even when their users do not write, and need it consistent.
    if (writable) p |= Perm.WRITE | Perm.RESIZE;
    p |= Perm.CONSISTENT_READ;
    s &= ~(Perm.WRITE | Perm.RESIZE);
  } else if (role & ChildRole.DATA && !(role & ChildRole.FILTERED)) {
    // A pure data child (external data file): the format may assume its size, so nobody else
    // resizes it; writes are its parents' (QEMU takes none for a node no one writes through).
    s &= ~Perm.RESIZE;
  }
  if (role & ChildRole.DATA && !(role & ChildRole.FILTERED)) {
    // An unchanged write of the format (copy-on-read) is a real write on its storage.
    if (p & Perm.WRITE_UNCHANGED) p |= Perm.WRITE;
    if (p & Perm.WRITE) p |= Perm.RESIZE;
  }
  return { perm: p, shared: s };
}
