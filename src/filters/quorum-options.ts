/**
 * The open options of the quorum driver (QEMU 7.2's quorum_open): the list
 * of children and the four settings, checked in QEMU's order with QEMU's
 * messages.
 */
import { einval } from '../core/errors.js';
import type { BlockOptions, OptionReader, OptionValue } from '../core/options.js';
import { optText, parseOptBool, parseOptNumber } from './qemu-opt-value.js';

/** How reads pick their data (QAPI QuorumReadPattern). */
export type QuorumReadPattern = 'quorum' | 'fifo';

/** The settings of one quorum node. */
export interface QuorumSettings {
  /** Votes a version of the data needs to win (1..number of children). */
  threshold: number;
  /** Compare the two children on each read and stop at the first difference. */
  blkverify: boolean;
  /** Write the winning data back to the children that voted otherwise. */
  rewriteCorrupted: boolean;
  readPattern: QuorumReadPattern;
}

/** One child as the options give it: an options object or the node-name of an existing node. */
export type QuorumChildRef = BlockOptions | string | null;

const isObject = (v: unknown): v is BlockOptions => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * The children in the options, as QEMU's qdict_array_entries counts them: a
 * list, or an object with the keys 0, 1, 2 ... and no others (dotted keys
 * `children.0.driver=...` arrive as such an object). Anything else under
 * `children` that is not a list is an empty list. Null when the object has
 * gaps or other keys.
 */
export function childRefs(value: OptionValue): QuorumChildRef[] | null {
  if (Array.isArray(value)) return value.map((v) => (isObject(v) || typeof v === 'string' ? v : null));
  if (!isObject(value)) return [];
  const out: QuorumChildRef[] = [];
  for (let i = 0; value[String(i)] !== undefined; i++) {
    const v = value[String(i)];
    out.push(isObject(v) || typeof v === 'string' ? v : null);
  }
  const extra = Object.keys(value).filter((k) => value[k] !== undefined).length - out.length;
  return extra === 0 ? out : null;
}

/**
 * Reads `children` and the settings from a quorum node's options. Errors,
 * in QEMU's order: the list of children, each setting's syntax, the
 * threshold's range, the read pattern, then the blkverify and
 * rewrite-corrupted combinations.
 */
export function readQuorumOptions(options: OptionReader): { children: QuorumChildRef[]; settings: QuorumSettings } {
  const children = childRefs(options.raw('children'));
  if (children === null) throw einval('Option children is not a valid array');
  if (children.length < 1) throw einval('Number of provided children must be 1 or more');

  // QemuOpts parses every value when it absorbs the options, before any of them is used.
  const text = (key: string) => optText(options.raw(key));
  const thresholdText = text('vote-threshold');
  const blkverifyText = text('blkverify');
  const rewriteText = text('rewrite-corrupted');
  const patternText = text('read-pattern');
  // QEMU stores the 64-bit number in an int: it wraps to 32 bits.
  const threshold = thresholdText === undefined ? 0 : Number(BigInt.asIntN(32, parseOptNumber('vote-threshold', thresholdText)));
  const blkverify = blkverifyText === undefined ? false : parseOptBool('blkverify', blkverifyText);
  const rewrite = rewriteText === undefined ? false : parseOptBool('rewrite-corrupted', rewriteText);

  if (threshold < 1) throw einval("Parameter 'vote-threshold' expects a value >= 1", {}, `got ${threshold}`);
  if (threshold > children.length) {
    throw einval('threshold may not exceed children count', {}, `vote-threshold ${threshold}, ${children.length} children`);
  }
  if (patternText !== undefined && patternText !== 'quorum' && patternText !== 'fifo') {
    throw einval('Please set read-pattern as fifo or quorum', {}, `got '${patternText}'`);
  }
  const readPattern: QuorumReadPattern = patternText === 'fifo' ? 'fifo' : 'quorum';
  const settings: QuorumSettings = { threshold, blkverify: false, rewriteCorrupted: false, readPattern };
  // In fifo mode QEMU ignores both settings.
  if (readPattern === 'quorum') {
    if (blkverify && (children.length !== 2 || threshold !== 2)) {
      throw einval(
        'blkverify=on can only be set if there are exactly two files and vote-threshold is 2',
        {},
        `${children.length} children, vote-threshold ${threshold}`,
      );
    }
    if (rewrite && blkverify) throw einval('rewrite-corrupted=on cannot be used with blkverify=on');
    settings.blkverify = blkverify;
    settings.rewriteCorrupted = rewrite;
  }
  return { children, settings };
}
