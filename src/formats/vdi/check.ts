/**
 * `qemu-img check` of a VDI image, as QEMU 7.2 checks it: every allocated
 * entry must name a slot below blocks_in_image, no slot may be used twice,
 * and the header's blocks_allocated must equal the number of entries that
 * name a slot. Nothing is repaired (QEMU answers ENOTSUP to a repair).
 */
import type { CheckResult } from '../../core/driver.js';
import { BlockError } from '../../core/errors.js';
import { isAllocated, type BlockMap } from './block-map.js';

/**
 * Checks `map` against the header's `blocksAllocated`. The lines are QEMU's
 * (printed on stderr without the program name).
 */
export function checkBlockMap(map: BlockMap, blocksAllocated: number): CheckResult {
  const n = map.entries;
  // One bit per slot: a slot seen once already (QEMU keeps a whole map copy).
  const seen = new Uint8Array(Math.ceil(n / 8));
  const messages: string[] = [];
  let corruptions = 0;
  let counted = 0;
  for (let block = 0; block < n; block++) {
    const entry = map.get(block);
    if (!isAllocated(entry)) continue;
    if (entry < n) {
      counted++;
      const bit = 1 << (entry & 7);
      if (seen[entry >>> 3]! & bit) {
        // QEMU names the slot twice here (its copy holds the slot's own number).
        messages.push(`ERROR: block index ${entry} also used by ${entry}`);
        corruptions++;
      } else {
        seen[entry >>> 3] = seen[entry >>> 3]! | bit;
      }
    } else {
      messages.push(`ERROR: block index ${block} too large, is ${entry}`);
      corruptions++;
    }
  }
  if (counted !== blocksAllocated) {
    messages.push(`ERROR: allocated blocks mismatch, is ${counted}, should be ${blocksAllocated}`);
    corruptions++;
  }
  return { corruptions, leaks: 0, checkErrors: 0, corruptionsFixed: 0, leaksFixed: 0, imageEndOffset: 0, messages };
}

/** QEMU's answer to `check -r`: VDI images cannot be repaired. */
export function repairRefused(): BlockError {
  return new BlockError('ENOTSUP', 'This image format does not support checks', {}, { detail: 'vdi has no repair' });
}
