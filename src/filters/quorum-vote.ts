/**
 * The votes of the quorum driver (QEMU 7.2's block/quorum.c): children whose
 * reads returned the same bytes form one version of the data, the version
 * with most votes wins; failed requests vote for their error the same way.
 *
 * Ties go as in QEMU, which keeps versions newest first and takes the first
 * with the highest count: the version that first appeared at the highest
 * child index wins.
 */

/** One version: the children (indexes, in order) that voted for it. */
export interface Version<T> {
  value: T;
  voters: number[];
}

/** Groups `values` (one per child, undefined for children that do not vote) into versions. */
export function countVotes<T>(values: ReadonlyArray<T | undefined>, same: (a: T, b: T) => boolean): Version<T>[] {
  const versions: Version<T>[] = [];
  values.forEach((value, index) => {
    if (value === undefined) return;
    const v = versions.find((x) => same(x.value, value));
    if (v) v.voters.push(index);
    else versions.push({ value, voters: [index] });
  });
  return versions;
}

/** The version with most votes (see the module comment for ties); undefined when nobody voted. */
export function winner<T>(versions: ReadonlyArray<Version<T>>): Version<T> | undefined {
  let best: Version<T> | undefined;
  for (let i = versions.length - 1; i >= 0; i--) {
    const v = versions[i]!;
    if (!best || v.voters.length > best.voters.length) best = v;
  }
  return best;
}

/** Whether two buffers hold the same bytes. */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  // Compare 4 bytes at a time where the buffers allow it.
  if (a.byteOffset % 4 === 0 && b.byteOffset % 4 === 0) {
    const words = a.length >>> 2;
    const wa = new Uint32Array(a.buffer, a.byteOffset, words);
    const wb = new Uint32Array(b.buffer, b.byteOffset, words);
    for (let i = 0; i < words; i++) if (wa[i] !== wb[i]) return false;
    for (let i = words * 4; i < a.length; i++) if (a[i] !== b[i]) return false;
    return true;
  }
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The index of the first byte where the buffers differ, -1 when they are equal (blkverify's report). */
export function firstDifference(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}
