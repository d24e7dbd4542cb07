import { describe, expect, it } from 'vitest';
import { ArraySet } from '../../src/core/array-set.js';

describe('ArraySet', () => {
  it('keeps members in insertion order, once each, like a Set', () => {
    const s = new ArraySet<number>();
    const ref = new Set<number>();
    // A fixed pseudo-random walk of adds and deletes, compared step by step with Set.
    let x = 7;
    for (let i = 0; i < 2000; i++) {
      x = (x * 1103515245 + 12345) % 2147483648;
      const v = x % 13;
      if (x % 3 === 0) expect(s.delete(v)).toBe(ref.delete(v));
      else {
        expect(s.add(v)).toBe(s);
        ref.add(v);
      }
      expect(s.size).toBe(ref.size);
      expect([...s]).toEqual([...ref]);
      expect(s.members).toEqual([...ref]);
      expect(s.first()).toBe(ref.values().next().value);
      expect(s.has(v)).toBe(ref.has(v));
    }
  });

  it('removes from the front, the back and the middle', () => {
    const s = new ArraySet<string>();
    for (const v of ['a', 'b', 'c', 'd', 'e']) s.add(v);
    expect(s.delete('a')).toBe(true);
    expect(s.delete('e')).toBe(true);
    expect(s.delete('c')).toBe(true);
    expect(s.delete('c')).toBe(false);
    expect([...s]).toEqual(['b', 'd']);
    expect(s.first()).toBe('b');
    s.delete('b');
    s.delete('d');
    expect(s.size).toBe(0);
    expect(s.first()).toBeUndefined();
  });

  it('a member added again stays where it was', () => {
    const s = new ArraySet<object>();
    const a = {};
    const b = {};
    s.add(a).add(b).add(a);
    expect(s.members).toEqual([a, b]);
    expect(s.members[0]).toBe(a);
  });
});
