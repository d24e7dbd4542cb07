/**
 * qcow2's part of a reopen (QEMU's qcow2_reopen_prepare and
 * qcow2_update_options): the runtime options are checked in QEMU's order,
 * all of them before anything changes (a refused reopen changes nothing), and
 * applied on commit: lazy-refcounts, the pass-discard-* and discard-no-unref
 * switches, the L2 and refcount cache sizes and the cache clean interval. A
 * node that becomes read-only, or stops using lazy refcounts, first writes
 * every cached table, refcount blocks included, and clears the dirty bit it
 * set (marks itself clean). overlap-check is checked only (our writes always
 * run every metadata check), and l2-cache-entry-size is checked and keeps the
 * slice size the image was opened with (it changes how much is cached at once,
 * not what is read or written).
 */
import type { ReopenState } from '../../core/driver.js';
import { einval } from '../../core/errors.js';
import { OptionReader } from '../../core/options.js';
import { cacheSizes, overlapMask, readCleanInterval } from './open.js';
import { INCOMPAT } from './constants.js';
import { flushAll } from './cow.js';
import type { Qcow2Image } from './qcow2.js';

/** What prepare decided, applied by commit. */
interface Qcow2ReopenPlan {
  lazyRefcounts: boolean;
  passDiscardRequest?: boolean;
  passDiscardOther?: boolean;
  passDiscardSnapshot?: boolean;
  discardNoUnref?: boolean;
  /** Cache capacities in entries, when a size was given. */
  l2Entries?: number;
  refEntries?: number;
  cleanInterval?: number;
  /** The overlap-check mask, when the options name one. */
  overlapChecks?: number;
}

const INT_MAX = 0x7fffffff;

/**
 * The cache, clean interval and overlap options of a reopen, checked in
 * QEMU's order (qcow2_update_options_prepare); what they ask for goes into
 * `plan`.
 */
function checkRuntimeOptions(img: Qcow2Image, o: Record<string, unknown>, plan: Qcow2ReopenPlan): void {
  const r = new OptionReader(o as never, "Block format 'qcow2'");
  const l2 = r.size('l2-cache-size');
  const ref = r.size('refcount-cache-size');
  const total = r.size('cache-size');
  const cs = img.clusterSize;
  const { l2Bytes, refBytes } = cacheSizes(img, l2, ref, total);
  const entry = r.size('l2-cache-entry-size', img.sliceBytes);
  if (entry < 512 || entry > cs || (entry & (entry - 1)) !== 0) {
    throw einval(`L2 cache entry size must be a power of two between 512 and the cluster size (${cs})`);
  }
  if (l2Bytes / entry > INT_MAX) throw einval('L2 cache size too big');
  if (refBytes / cs > INT_MAX) throw einval('Refcount cache size too big');
  if (l2 !== undefined || total !== undefined) plan.l2Entries = Math.max(2, Math.floor(l2Bytes / img.sliceBytes));
  if (ref !== undefined || total !== undefined) plan.refEntries = Math.max(4, Math.floor(refBytes / cs));
  if (o['cache-clean-interval'] !== undefined) plan.cleanInterval = readCleanInterval(r);
  const overlap = o['overlap-check'];
  const template = o['overlap-check.template'];
  if (typeof overlap === 'string' && template !== undefined && String(template) !== overlap) {
    throw einval(`Conflicting values for qcow2 options 'overlap-check' ('${overlap}') and 'overlap-check.template' ('${String(template)}')`);
  }
  const nested: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) if (k.startsWith('overlap-check.')) nested[k.slice('overlap-check.'.length)] = v;
  // As QEMU's qcow2_join_options: a new template replaces all old overlap options, else the switches apply to them.
  if (typeof overlap === 'string') nested.template = overlap;
  else if (overlap !== undefined && overlap !== null) Object.assign(nested, overlap);
  if (Object.keys(nested).length > 0) plan.overlapChecks = overlapMask(nested, 'template' in nested ? undefined : img.meta.checked);
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
  const o = state.options;
  const wanted = boolOption(o['lazy-refcounts'], 'lazy-refcounts');
  const plan: Qcow2ReopenPlan = { lazyRefcounts: wanted ?? img.lazyRefcounts };
  const passRequest = boolOption(o['pass-discard-request'], 'pass-discard-request');
  const passOther = boolOption(o['pass-discard-other'], 'pass-discard-other');
  const passSnapshot = boolOption(o['pass-discard-snapshot'], 'pass-discard-snapshot');
  const noUnref = boolOption(o['discard-no-unref'], 'discard-no-unref');
  checkRuntimeOptions(img, o, plan);
  const lazy = plan.lazyRefcounts;
  if (lazy && img.header.version < 3) {
    throw einval('Lazy refcounts require a qcow2 image with at least qemu 1.1 compatibility level');
  }
  if (passRequest !== undefined) plan.passDiscardRequest = passRequest;
  if (passOther !== undefined) plan.passDiscardOther = passOther;
  if (passSnapshot !== undefined) plan.passDiscardSnapshot = passSnapshot;
  if (noUnref !== undefined) plan.discardNoUnref = noUnref;
  // As QEMU: options checked first, then the bitmaps stored, then the image marked clean.
  await beforeClean?.();
  const writable = !img.node.readOnly && img.refs !== undefined && !img.corrupt;
  if (writable && (state.readOnly || (img.lazyRefcounts && !lazy))) await markClean(img);
  state.opaque = plan;
}

/** Applies what {@link prepareReopen} accepted. */
export function commitReopen(img: Qcow2Image, state: ReopenState): void {
  const plan = state.opaque as Qcow2ReopenPlan | undefined;
  if (!plan) return;
  img.lazyRefcounts = plan.lazyRefcounts;
  if (plan.passDiscardRequest !== undefined) img.passDiscardRequest = plan.passDiscardRequest;
  if (plan.passDiscardOther !== undefined) img.passDiscardOther = plan.passDiscardOther;
  if (plan.passDiscardSnapshot !== undefined) img.passDiscardSnapshot = plan.passDiscardSnapshot;
  if (plan.discardNoUnref !== undefined) img.discardNoUnref = plan.discardNoUnref;
  // A smaller cache gives up entries on its next insert (dirty ones are written then).
  if (plan.l2Entries !== undefined) img.l2cache.capacity = plan.l2Entries;
  if (plan.refEntries !== undefined) img.refs.cache.capacity = plan.refEntries;
  if (plan.cleanInterval !== undefined) img.startCacheCleaner(plan.cleanInterval);
  if (plan.overlapChecks !== undefined) img.meta.checked = plan.overlapChecks;
}
