/**
 * An insertion-ordered set of a few members, kept in an array: for the
 * registries of requests in flight that long-lived objects hold (a node's
 * tracked requests, qcow2's running reads and writes), where a member is
 * added and removed once per request.
 *
 * Why not a Set: V8 rebuilds a Set's hash table whenever removals leave it
 * sparse (for a set of one or two members, on nearly every delete) and
 * allocates the new table in the generation of the old one. A registry that
 * lives in the old generation so leaves a dead table there per request, which
 * only a full collection frees: a 1 GiB `img convert` of a compressed qcow2
 * (16384 tracked writes) grew the old generation by 3 MB that way. An array
 * keeps its backing store when members come and go.
 */
export class ArraySet<T> {
  private readonly items: T[] = [];

  /** Members, in the order they were added (read-only; do not keep across changes). */
  get members(): readonly T[] {
    return this.items;
  }

  get size(): number {
    return this.items.length;
  }

  /** The member added first that is still here, or undefined when empty. */
  first(): T | undefined {
    return this.items[0];
  }

  has(v: T): boolean {
    return this.items.includes(v);
  }

  /** Adds `v` at the end (a member already here stays where it is). */
  add(v: T): this {
    if (!this.items.includes(v)) this.items.push(v);
    return this;
  }

  /** Removes `v`; false when it was not a member. */
  delete(v: T): boolean {
    const i = this.items.indexOf(v);
    if (i < 0) return false;
    if (i === 0) this.items.shift();
    else if (i === this.items.length - 1) this.items.pop();
    else this.items.splice(i, 1);
    return true;
  }

  [Symbol.iterator](): IterableIterator<T> {
    return this.items.values();
  }
}
