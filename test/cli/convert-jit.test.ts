import v8 from 'node:v8';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { BlockNode } from '../../src/core/node.js';
import { allowCopyWithoutOptimizer, copyWithoutOptimizer } from '../../src/cli/img/convert-jit.js';

const node = (encrypted: boolean | undefined): BlockNode =>
  ({ instance: encrypted === undefined ? {} : { isEncrypted: () => encrypted } }) as unknown as BlockNode;

describe('img convert without TurboFan (src/cli/img/convert-jit.ts)', () => {
  afterEach(() => vi.restoreAllMocks());

  it('changes nothing in a process that only imports the CLI', () => {
    const set = vi.spyOn(v8, 'setFlagsFromString').mockImplementation(() => undefined);
    copyWithoutOptimizer([node(false), node(undefined)])();
    expect(set).not.toHaveBeenCalled();
  });

  it('in the command: off for the copy and on again after it, unless a node is encrypted', () => {
    const set = vi.spyOn(v8, 'setFlagsFromString').mockImplementation(() => undefined);
    allowCopyWithoutOptimizer();
    const back = copyWithoutOptimizer([node(false), node(undefined)]);
    expect(set.mock.calls).toEqual([['--no-opt']]);
    back();
    expect(set.mock.calls).toEqual([['--no-opt'], ['--opt']]);

    set.mockClear();
    copyWithoutOptimizer([node(false), node(true)])();
    expect(set).not.toHaveBeenCalled();
  });
});
