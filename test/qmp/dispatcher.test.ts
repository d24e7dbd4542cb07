/**
 * The QMP dispatcher, argument schema and session in-process: QEMU 7.2's
 * texts for each kind of argument error, CommandNotFound for commands not
 * built, negotiation, the JSON stream splitter, events with timestamps.
 */
import { describe, expect, it } from 'vitest';
import { createNodeGraph } from '../../src/node.js';
import { BlockQmp } from '../../src/qmp/block-qmp.js';
import { QmpDispatcher } from '../../src/qmp/dispatcher.js';
import { m, struct } from '../../src/qmp/schema.js';
import { QmpJsonSplitter, QmpSession } from '../../src/qmp/session.js';
import { qmpLine } from '../../src/qmp/wire.js';

const VERSION = { major: 0, minor: 1, micro: 0, package: 'test' };

function table(): QmpDispatcher {
  const d = new QmpDispatcher();
  d.register({
    name: 'echo',
    args: struct('echo', [
      m('n', 'int'),
      m('*s', 'str'),
      m('*b', 'bool'),
      m('*u', 'uint32'),
      m('*big', 'uint64'),
      m('*e', { enum: ['a', 'b'] }),
      m('*l', { list: 'int' }),
      m('*o', struct('Inner', [m('x', 'str')])),
    ]),
    run: (args) => args,
  });
  return d;
}

describe('QMP argument checks (QEMU 7.2 texts)', () => {
  const err = (desc: string, id?: unknown) => ({ error: { class: 'GenericError', desc }, ...(id !== undefined ? { id } : {}) });
  it.each([
    [{}, "Parameter 'n' is missing"],
    [{ n: 'x' }, "Invalid parameter type for 'n', expected: integer"],
    [{ n: 1.5 }, "Invalid parameter type for 'n', expected: integer"],
    [{ n: 1, s: 2 }, "Invalid parameter type for 's', expected: string"],
    [{ n: 1, b: 'yes' }, "Invalid parameter type for 'b', expected: boolean"],
    [{ n: 1, u: -1 }, "Parameter 'u' expects uint32_t"],
    [{ n: 1, u: 2 ** 32 }, "Parameter 'u' expects uint32_t"],
    [{ n: 1, big: 'x' }, "Parameter 'big' expects uint64"],
    [{ n: 1, e: 'c' }, "Parameter 'e' does not accept value 'c'"],
    [{ n: 1, e: 3 }, "Invalid parameter type for 'e', expected: string"],
    [{ n: 1, l: 3 }, "Invalid parameter type for 'l', expected: array"],
    [{ n: 1, l: [1, 'x'] }, "Invalid parameter type for 'l[1]', expected: integer"],
    [{ n: 1, o: 1 }, "Invalid parameter type for 'o', expected: object"],
    [{ n: 1, o: {} }, "Parameter 'o.x' is missing"],
    [{ n: 1, o: { x: 'a', y: 1 } }, "Parameter 'o.y' is unexpected"],
    [{ n: 1, zz: 1 }, "Parameter 'zz' is unexpected"],
  ])('%j -> %s', async (args, desc) => {
    expect(await table().execute('echo', args as Record<string, unknown>, 'i')).toEqual(err(desc, 'i'));
  });

  it('passes checked arguments through and keeps the id', async () => {
    const args = { n: 1, s: 'a', b: true, u: 7, big: -1, e: 'b', l: [1], o: { x: 'y' } };
    expect(await table().execute('echo', args, 42)).toEqual({ return: args, id: 42 });
  });

  it('answers CommandNotFound for a command not in the table', async () => {
    expect(await table().execute('nope', {})).toEqual({ error: { class: 'CommandNotFound', desc: 'The command nope has not been found' } });
  });
});

describe('the block QMP instance', () => {
  it('has no command it does not implement: unbuilt QEMU commands are CommandNotFound', async () => {
    const q = new BlockQmp(createNodeGraph(), VERSION);
    for (const name of ['x-blockdev-change', 'block-latency-histogram-set', 'block_set_io_throttle', 'x-blockdev-amend']) {
      expect(await q.dispatcher.execute(name, {})).toEqual({ error: { class: 'CommandNotFound', desc: `The command ${name} has not been found` } });
    }
    const names = q.dispatcher.names();
    for (const name of ['blockdev-add', 'blockdev-del', 'query-named-block-nodes', 'block_resize', 'block-dirty-bitmap-merge', 'blockdev-snapshot-internal-sync', 'block-stream', 'block-commit', 'blockdev-mirror', 'blockdev-backup', 'block-job-set-speed', 'job-dismiss', 'query-jobs', 'query-block-jobs', 'transaction', 'blockdev-create', 'blockdev-snapshot', 'blockdev-snapshot-sync', 'block-set-write-threshold', 'query-block', 'nbd-server-start', 'nbd-server-stop', 'block-export-add', 'block-export-del', 'query-block-exports', 'blockdev-reopen', 'query-blockstats', 'x-debug-query-block-graph', 'drive-mirror', 'drive-backup']) {
      expect(names).toContain(name);
    }
    await q.close();
  });

  it('runs a null-co node through add, bitmaps, resize and del', async () => {
    const q = new BlockQmp(createNodeGraph(), VERSION);
    const x = (execute: string, args: Record<string, unknown> = {}) => q.dispatcher.execute(execute, args);
    expect(await x('blockdev-add', { driver: 'null-co', 'node-name': 'n', size: 1048576 })).toEqual({ return: {} });
    expect(await x('block-dirty-bitmap-add', { node: 'n', name: 'b', granularity: 65536 })).toEqual({ return: {} });
    // null-co cannot change its size (QEMU's text for a driver without truncate).
    expect(await x('block_resize', { 'node-name': 'n', size: 2097152 })).toEqual({ error: { class: 'GenericError', desc: 'Image format driver does not support resize' } });
    expect(await x('block_resize', { 'node-name': 'n', size: -1 })).toEqual({ error: { class: 'GenericError', desc: "Parameter 'size' expects a >0 size" } });
    const nodes = (await x('query-named-block-nodes', { flat: true })) as { return: Array<Record<string, unknown>> };
    expect(nodes.return).toHaveLength(1);
    expect(nodes.return[0]).toMatchObject({ 'node-name': 'n', drv: 'null-co', 'dirty-bitmaps': [{ name: 'b', count: 0, granularity: 65536, recording: true, persistent: false, busy: false }] });
    expect(await x('blockdev-del', { 'node-name': 'n' })).toEqual({ return: {} });
    expect(await x('blockdev-del', { 'node-name': 'n' })).toEqual({ error: { class: 'GenericError', desc: "Failed to find node with node-name='n'" } });
    await q.close();
  });

  it('stamps events and queues them', () => {
    const q = new BlockQmp(createNodeGraph(), VERSION);
    const seen: unknown[] = [];
    q.events.on((e) => seen.push(e));
    const before = Date.now() / 1000;
    q.events.emit('TEST', { a: 1 });
    const [e] = q.events.drain();
    expect(seen).toEqual([e]);
    expect(e!.event).toBe('TEST');
    expect(e!.data).toEqual({ a: 1 });
    expect(e!.timestamp.seconds).toBeGreaterThanOrEqual(Math.floor(before) - 1);
    expect(e!.timestamp.microseconds).toBeGreaterThanOrEqual(0);
    expect(e!.timestamp.microseconds).toBeLessThan(1e6);
    expect(q.events.drain()).toEqual([]);
  });
});

describe('QMP session', () => {
  it('negotiates capabilities first, then runs commands', async () => {
    const s = new QmpSession(new BlockQmp(createNodeGraph(), VERSION));
    expect(s.greeting()).toEqual({ QMP: { version: { qemu: { major: 0, minor: 1, micro: 0 }, package: 'test' }, capabilities: [] } });
    expect(await s.handle('{"execute": "query-jobs"}')).toEqual({ error: { class: 'CommandNotFound', desc: "Expecting capabilities negotiation with 'qmp_capabilities'" } });
    expect(await s.handle('{"execute": "qmp_capabilities", "arguments": {"enable": ["oob"]}}')).toEqual({ error: { class: 'GenericError', desc: 'Capability oob not available' } });
    expect(s.mode).toBe('negotiation');
    expect(await s.handle('{"execute": "qmp_capabilities", "id": "a"}')).toEqual({ return: {}, id: 'a' });
    expect(s.mode).toBe('command');
    expect(await s.handle('{"execute": "qmp_capabilities"}')).toEqual({ error: { class: 'CommandNotFound', desc: 'Capabilities negotiation is already complete, command ignored' } });
    expect(await s.handle('{"execute": "query-jobs", "id": [1]}')).toEqual({ return: [], id: [1] });
    expect(await s.handle('[]')).toEqual({ error: { class: 'GenericError', desc: 'QMP input must be a JSON object' } });
    expect(await s.handle('{"id": 3}')).toEqual({ error: { class: 'GenericError', desc: "QMP input lacks member 'execute'" }, id: 3 });
    expect(((await s.handle('{"execute"')) as { error: { desc: string } }).error.desc).toMatch(/^JSON parse error, /);
  });

  it('splits a stream into JSON texts across chunks and lines', () => {
    const sp = new QmpJsonSplitter();
    expect(sp.push('{"execute": "a", "arguments": {"s": "}{\\"" }}{"exe')).toEqual(['{"execute": "a", "arguments": {"s": "}{\\"" }}']);
    expect(sp.push('cute": "b"}\n garbage\n[1,\n2]')).toEqual(['{"execute": "b"}', 'garbage', '[1,\n2]']);
  });

  it('writes QEMU-style JSON lines: QDict member order, CR LF, \\u escapes, %.17g doubles', () => {
    expect(qmpLine({ return: {}, id: 1 })).toBe('{"return": {}, "id": 1}\r\n');
    expect(qmpLine({ id: 1, error: { class: 'GenericError', desc: 'x' } })).toBe('{"id": 1, "error": {"class": "GenericError", "desc": "x"}}\r\n');
    expect(qmpLine({ id: 1, return: {} })).toBe('{"return": {}, "id": 1}\r\n');
    expect(qmpLine({ a: [1, 'x\u00e9\u{1f600}\t', null, 0.1, -0] })).toBe('{"a": [1, "x\\u00E9\\uD83D\\uDE00\\t", null, 0.10000000000000001, -0]}\r\n');
    expect(qmpLine({ return: {} }, true)).toBe('{\r\n    "return": {\r\n    }\r\n}\r\n');
  });
});
