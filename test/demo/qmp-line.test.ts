/**
 * The demo QMP console's line forms (demo/src/qmp-console.ts): QMP's own
 * JSON, a command name with a JSON object, or key=value words.
 */
import { describe, it, expect } from 'vitest';
import { parseQmpLine } from '../../demo/src/qmp-console.js';

describe('demo QMP console: parseQmpLine', () => {
  it('takes QMP JSON, with arguments and id', () => {
    expect(parseQmpLine('{"execute": "query-jobs"}')).toEqual({ execute: 'query-jobs', arguments: {} });
    expect(parseQmpLine(' {"execute": "block_resize", "arguments": {"node-name": "n", "size": 1048576}, "id": 3} ')).toEqual({
      execute: 'block_resize',
      arguments: { 'node-name': 'n', size: 1048576 },
      id: 3,
    });
  });

  it('takes a name with a JSON object or key=value words (numbers, booleans and objects as JSON)', () => {
    expect(parseQmpLine('query-named-block-nodes')).toEqual({ execute: 'query-named-block-nodes', arguments: {} });
    expect(parseQmpLine('blockdev-add {"driver": "null-co", "node-name": "x"}')).toEqual({ execute: 'blockdev-add', arguments: { driver: 'null-co', 'node-name': 'x' } });
    expect(parseQmpLine('block-dirty-bitmap-add node=n0 name=b1 granularity=65536 persistent=true disabled=false')).toEqual({
      execute: 'block-dirty-bitmap-add',
      arguments: { node: 'n0', name: 'b1', granularity: 65536, persistent: true, disabled: false },
    });
    expect(parseQmpLine('blockdev-add driver=qcow2 file={"driver":"opfs","filename":"opfs:/a"} node-name=007')).toEqual({
      execute: 'blockdev-add',
      arguments: { driver: 'qcow2', file: { driver: 'opfs', filename: 'opfs:/a' }, 'node-name': '007' },
    });
    // Text that only looks like JSON stays text (007 is no JSON number).
    expect(parseQmpLine('x name={oops')).toEqual({ execute: 'x', arguments: { name: '{oops' } });
  });

  it('says what is wrong with a line it cannot take', () => {
    expect(() => parseQmpLine('{"arguments": {}}')).toThrow('QMP input lacks member "execute"');
    expect(() => parseQmpLine('{"execute": "x", "arguments": [1]}')).toThrow('QMP input member "arguments" must be an object');
    expect(() => parseQmpLine('query-block bad')).toThrow('"bad" is not key=value');
    expect(() => parseQmpLine('query-block =v')).toThrow('"=v" is not key=value');
    expect(() => parseQmpLine('x [1, 2]')).toThrow('"[1," is not key=value');
    expect(() => parseQmpLine('{"execute": ')).toThrow(SyntaxError);
  });
});
