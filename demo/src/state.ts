/**
 * The demo's shared state: the block worker, the selected image and its open
 * Disk, and events the panels listen to.
 */
import type { Disk, DiskWorker, ImageInfo, SnapshotEntry } from '../../src/client/index.js';

/** An internal snapshot of the open disk, as `disk.snapshots.list()` gives it. */
export type Snapshot = SnapshotEntry;

/** One image of the backing chain, top first. */
export interface ChainEntry {
  path: string;
  info?: ImageInfo;
  error?: string;
}

export interface Selected {
  path: string;
  disk: Disk | null;
  /** Why the disk could not be opened for writing (then it is read-only or closed). */
  openError?: string;
  info: ImageInfo | null;
  chain: ChainEntry[];
  /** The open disk's snapshots (null until listed, or when the disk is not open). */
  snapshots: Snapshot[] | null;
  /** Why they could not be listed ("CODE: message"). */
  snapshotsError?: string;
}

type Events = {
  /** The image list may have changed. */
  list: void;
  /** The selection changed (or its disk was reopened). */
  select: Selected | null;
  /** The open disk's contents changed (console write, guest I/O, ...). */
  data: { offset: number; bytes: number } | null;
  /** The selected disk's snapshot list changed (created, applied, deleted, relisted). */
  snapshots: Selected;
};

class Bus {
  private readonly target = new EventTarget();
  on<K extends keyof Events>(name: K, fn: (v: Events[K]) => void): void {
    this.target.addEventListener(name, (e) => fn((e as CustomEvent<Events[K]>).detail));
  }
  emit<K extends keyof Events>(name: K, v: Events[K]): void {
    this.target.dispatchEvent(new CustomEvent(name, { detail: v }));
  }
}

export const bus = new Bus();

export const app = {
  dw: null as DiskWorker | null,
  selected: null as Selected | null,
  /** Settles when the selection in progress has opened its disk (or failed to): the console waits for it. */
  opening: Promise.resolve() as Promise<void>,
  /** Set while the VM owns the disk (console writes still work; deletes do not). */
  vmRunning: false,
  /** Stops the VM (set by the VM panel); run before the selected disk closes. */
  stopVm: null as null | (() => Promise<void>),
};

/** Storage of a path: 'opfs' | 'idb' | 'memory' | 'http'. */
export function storageOf(path: string): string {
  if (path.startsWith('idb:')) return 'idb';
  if (path.startsWith('memory:')) return 'memory';
  if (/^https?:\/\//.test(path)) return 'http';
  return 'opfs';
}

/** The display name of an image (its path without the storage prefix). */
export function displayName(path: string): string {
  return path.replace(/^opfs:\/?/, '').replace(/^idb:/, '').replace(/^memory:/, '');
}

/** Resolves a backing file name stored in `image` the way the worker does. */
export function resolveBacking(image: string, name: string): string {
  if (/^(opfs:|idb:|memory:|https?:\/\/|json:)/.test(name)) return name;
  if (/^https?:\/\//.test(image)) return new URL(name, image).toString();
  const prefix = image.startsWith('idb:') ? 'idb:' : image.startsWith('memory:') ? 'memory:' : 'opfs:';
  if (name.startsWith('/')) return prefix === 'opfs:' ? `opfs:${name}` : prefix + name;
  const slash = image.lastIndexOf('/');
  if (slash < 0 || prefix !== 'opfs:') return prefix + name;
  return image.slice(0, slash + 1) + name;
}
