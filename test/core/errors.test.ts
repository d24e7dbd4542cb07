/**
 * BlockError's detail: `message` names the offending value for library users,
 * `text` is the wording alone (what the command-line tools print, as QEMU
 * does), and prefixes and toBlockError keep both.
 */
import { describe, it, expect } from 'vitest';
import { BlockError, einval, toBlockError, withContext } from '../../src/core/errors.js';
import { errText } from '../../src/cli/common.js';

describe('BlockError detail', () => {
  it('shows the detail in the message and leaves it out of the text', () => {
    const e = einval('Reference count table too large', {}, '4294967295 entries');
    expect(e.message).toBe('Reference count table too large (4294967295 entries)');
    expect(e.text).toBe('Reference count table too large');
    expect(e.detail).toBe('4294967295 entries');
    expect(e.code).toBe('EINVAL');
    expect(errText(e)).toBe('Reference count table too large');
  });

  it('without a detail, text and message are the same', () => {
    for (const e of [einval('Invalid backing file offset'), new BlockError('EIO', 'x', {}, { detail: '' })]) {
      expect(e.detail).toBeUndefined();
      expect(e.text).toBe(e.message);
    }
  });

  it('keeps the detail under a prefix, and the code, context and cause', () => {
    const inner = new BlockError('EFBIG', 'Image is too big', { offset: 24 }, { detail: 'size 1152921504606846976' });
    const outer = inner.withPrefix("Could not open 't.qcow2'", { node: 'n1' });
    expect(outer.text).toBe("Could not open 't.qcow2': Image is too big");
    expect(outer.message).toBe("Could not open 't.qcow2': Image is too big (size 1152921504606846976)");
    expect(outer.detail).toBe('size 1152921504606846976');
    expect(outer.code).toBe('EFBIG');
    expect(outer.context).toEqual({ offset: 24, node: 'n1' });
    expect(outer.cause).toBe(inner);
  });

  it('withContext and toBlockError keep it', async () => {
    const e = await withContext('while reading L2 table at 0x50000', {}, () =>
      Promise.reject(einval('L1 table is too small', {}, 'l1_size 0, the size 67108864 needs 1')),
    ).catch((x: unknown) => x);
    expect(toBlockError(e)).toBe(e);
    expect((e as BlockError).text).toBe('while reading L2 table at 0x50000: L1 table is too small');
    expect((e as BlockError).message).toBe('while reading L2 table at 0x50000: L1 table is too small (l1_size 0, the size 67108864 needs 1)');
  });

  it('errors that are not BlockErrors print their whole message', () => {
    expect(errText(new Error('plain (with parentheses)'))).toBe('plain (with parentheses)');
    expect(errText(Object.assign(new Error('No space'), { code: 'ENOSPC' }))).toBe('No space');
  });
});
