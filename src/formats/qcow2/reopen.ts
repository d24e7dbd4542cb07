/**
 * qcow2's part of a reopen (QEMU's qcow2_reopen_prepare and the lazy
 * refcount handling of qcow2_update_options): a node that becomes read-only,
 * or stops using lazy refcounts, first writes every cached table, refcount
 * blocks included, and clears the dirty bit it set (marks itself clean);
 * `lazy-refcounts` is the one qcow2 option a reopen changes here.
 */
import type { ReopenState } from '../../core/driver.js';
import { einval } from '../../core/errors.js';
import { INCOMPAT } from './constants.js';
import { flushAll } from './cow.js';
import type { Qcow2Image } from './qcow2.js';

/** What prepare decided, applied by commit. */
interface Qcow2ReopenPlan {
  lazyRefcounts: boolean;
}

/** Reads a boolean option value as the generic layer hands it over. */
function boolOption(v: unknown, key: string): boolean | undefined {
  if (v === undefined) return undefined;
  if (v === true || v === 'on') return true;
  if (v === false || v === 'off') return false;
  throw einval(`Parameter '${key}' expects 'on' or 'off'`);
}

/**
 * Writes every cached table and the refcounts, then clears the dirty bit
 * this session set: the on-disk refcounts are exact again (QEMU's
 * qcow2_mark_clean). Runs with the image idle.
 */
export async function markClean(img: Qcow2Image): Promise<void> {
  await img.whenIdle(async () => {
    await flushAll(img, true);
    await img.file.flush();
    if (img.markedDirty && img.header.incompatible & INCOMPAT.DIRTY) {
      img.header.incompatible &= ~INCOMPAT.DIRTY;
      await img.writeHeader();
    }
    img.markedDirty = false;
  });
}

/** Checks the new options; marks the image clean when it stops being writable or lazy. */
export async function prepareReopen(img: Qcow2Image, state: ReopenState, beforeClean?: () => Promise<void>): Promise<void> {
  const wanted = boolOption(state.options['lazy-refcounts'], 'lazy-refcounts');
  const lazy = wanted ?? img.lazyRefcounts;
  if (lazy && img.header.version < 3) {
    throw einval('Lazy refcounts require a qcow2 image with at least qemu 1.1 compatibility level');
  }
  // As QEMU: options checked first, then the bitmaps stored, then the image marked clean.
  await beforeClean?.();
  const writable = !img.node.readOnly && img.refs !== undefined && !img.corrupt;
  if (writable && (state.readOnly || (img.lazyRefcounts && !lazy))) await markClean(img);
  const plan: Qcow2ReopenPlan = { lazyRefcounts: lazy };
  state.opaque = plan;
}

/** Applies what {@link prepareReopen} accepted. */
export function commitReopen(img: Qcow2Image, state: ReopenState): void {
  const plan = state.opaque as Qcow2ReopenPlan | undefined;
  if (plan) img.lazyRefcounts = plan.lazyRefcounts;
}
