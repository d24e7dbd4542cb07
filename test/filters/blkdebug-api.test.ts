/**
 * blkdebug through the library (no QEMU needed): the page's driver without
 * config files, rules given as options, the debug-event path of the core
 * (a no-op without blkdebug), breakpoints that hold a request until resumed,
 * and the config-file parser on its own.
 *
 *   BlockBackend
 *        |
 *      raw          (announces read_aio / write_aio on its file child)
 *        | file
 *    blkdebug
 *        | image
 *   memory:disk
 */
import { describe, it, expect } from 'vitest';
import { BlockBackend, BlockError, BlockGraph, MemoryStorage, createMemoryDriver, debugEvent, findDebugger, rawDriver } from '../../src/node.js';
import { blkdebugDriver, createBlkdebugDriver } from '../../src/filters/blkdebug.js';
import { parseConfigText, buildRules } from '../../src/filters/blkdebug-config.js';

function graph(withBlkdebug = true) {
  const storage = new MemoryStorage();
  const drivers = [createMemoryDriver(storage), rawDriver, ...(withBlkdebug ? [blkdebugDriver] : [])];
  return new BlockGraph(drivers, 'memory');
}

const overMemory = (blk: Record<string, unknown>) => ({
  driver: 'raw',
  file: { driver: 'blkdebug', image: { driver: 'memory', filename: 'disk', size: 1 << 20 }, ...blk },
});

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (e) {
    return e instanceof BlockError ? e.code : String(e);
  }
}

describe('blkdebug through the library', () => {
  it('injects the rule\'s errno once, then lets requests through', async () => {
    const g = graph();
    const bb = await BlockBackend.open(g, overMemory({ 'inject-error': [{ event: 'write_aio', errno: 28, once: true, immediately: true }] }));
    expect(await codeOf(bb.write(0, new Uint8Array(512).fill(1)))).toBe('ENOSPC');
    expect(await codeOf(bb.write(0, new Uint8Array(512).fill(2)))).toBe('ok');
    expect((await bb.read(0, 512))[0]).toBe(2);
    await bb.close();
  });

  it('a sector rule fails only requests covering that sector', async () => {
    const g = graph();
    const bb = await BlockBackend.open(g, overMemory({ 'inject-error': { event: 'read_aio', sector: 8, errno: 5 } }));
    expect(await codeOf(bb.read(0, 4096))).toBe('ok');
    expect(await codeOf(bb.read(4096, 512))).toBe('EIO');
    expect(await codeOf(bb.read(4608, 512))).toBe('ok');
    await bb.close();
  });

  it('set-state moves the state a rule waits for', async () => {
    const g = graph();
    const bb = await BlockBackend.open(g, overMemory({ 'inject-error': [{ event: 'read_aio', state: 2 }], 'set-state': [{ event: 'write_aio', state: 1, new_state: 2 }] }));
    expect(await codeOf(bb.read(0, 512))).toBe('ok');
    await bb.write(0, new Uint8Array(512));
    expect(await codeOf(bb.read(0, 512))).toBe('EIO');
    // The rule stays active and covers flushes too: the close's flush fails (QEMU's close ignores it).
    expect(await codeOf(bb.close())).toBe('EIO');
  });

  it('a breakpoint holds the request until it is resumed', async () => {
    const g = graph();
    const bb = await BlockBackend.open(g, overMemory({}));
    const dbg = findDebugger(bb.node);
    const lines: string[] = [];
    dbg.output = (l) => lines.push(l);
    dbg.breakpoint('write_aio', 'A');
    let done = false;
    const w = bb.write(0, new Uint8Array(512).fill(7)).then(() => (done = true));
    await dbg.whenSuspended('A');
    expect(dbg.isSuspended('A')).toBe(true);
    // Nothing moves while it is held.
    for (let i = 0; i < 20; i++) await Promise.resolve();
    expect(done).toBe(false);
    dbg.resume('A');
    await w;
    expect((await bb.read(0, 1))[0]).toBe(7);
    expect(lines).toEqual(["blkdebug: Suspended request 'A'\n", "blkdebug: Resuming request 'A'\n"]);
    expect(() => dbg.resume('A')).toThrowError(BlockError);
    expect(() => dbg.breakpoint('no_such_event', 'B')).toThrowError(/No such file or directory/);
    await bb.close();
  });

  it('without blkdebug, events are ignored and breakpoints are not supported', async () => {
    const g = graph(false);
    const bb = await BlockBackend.open(g, { driver: 'raw', file: { driver: 'memory', filename: 'plain', size: 65536 } });
    expect(debugEvent(bb.node.file, 'write_aio')).toBeUndefined();
    expect(() => findDebugger(bb.node)).toThrowError(/Operation not supported/);
    await bb.close();
  });

  it('the page\'s driver cannot read config files; a host that can is asked for them', async () => {
    const g = graph();
    await expect(g.open(overMemory({ config: 'rules.conf' }))).rejects.toThrowError(/Could not read blkdebug config file: Operation not supported/);
    const asked: string[] = [];
    const storage = new MemoryStorage();
    const host = createBlkdebugDriver({
      readConfig: async (path) => {
        asked.push(path);
        return '[inject-error]\nevent = "write_aio"\nerrno = "28"\n';
      },
    });
    storage.create('img', 65536);
    const g2 = new BlockGraph([createMemoryDriver(storage), rawDriver, host], 'memory');
    const bb = await BlockBackend.open(g2, 'blkdebug:rules.conf:memory:img', { format: 'raw' });
    expect(asked).toEqual(['rules.conf']);
    expect(bb.node.file?.node.driver.name).toBe('blkdebug');
    expect(bb.node.file?.node.filename).toBe('blkdebug:rules.conf:memory:img');
    expect(await codeOf(bb.write(0, new Uint8Array(512)))).toBe('ENOSPC');
    expect(await codeOf(bb.close())).toBe('ENOSPC');
  });
});

describe('blkdebug config text', () => {
  it('reads sections, comments, ids and keys without a quoted value', () => {
    const s = parseConfigText('# c\n[inject-error "x"]\nevent = "l2_load"\n  errno = "28"\niotype =""\n\n[set-state]\nevent = "l1_update"\nnew_state = "3"\n');
    expect(s.map((x) => [x.group, Object.fromEntries(x.section)])).toEqual([
      ['inject-error', { event: 'l2_load', errno: '28', iotype: '' }],
      ['set-state', { event: 'l1_update', new_state: '3' }],
    ]);
  });

  it('builds rules with QEMU\'s defaults and number syntax', () => {
    const rules = buildRules(parseConfigText('[inject-error]\nevent = "write_aio"\nsector = "0x10"\nerrno = "034"\n'), { inject: undefined, setState: undefined });
    expect(rules).toHaveLength(1);
    const r = rules[0]!;
    expect(r).toMatchObject({ action: 'inject-error', event: 'write_aio', state: 0, errno: 28, code: 'ENOSPC', offset: 16 * 512, once: false, immediately: false });
    expect(r.action === 'inject-error' && [...r.iotypes]).toEqual(['read', 'write', 'write-zeroes', 'discard', 'flush']);
  });

  it('refuses bad text with QEMU\'s messages', () => {
    expect(() => parseConfigText('   \n')).toThrowError('parse error');
    // An empty value is no boolean for QEMU either.
    expect(() => parseConfigText('[inject-error]\nonce =""\n')).toThrowError("Parameter 'once' expects 'on' or 'off'");
    expect(() => parseConfigText('[inject-error]\nstate = "-x"\n')).toThrowError("Parameter 'state' expects a number");
    expect(() => parseConfigText('[inject-error]\nerrno = "99999999999999999999999"\n')).toThrowError("Value '99999999999999999999999' is too large for parameter 'errno'");
    expect(() => buildRules([], { inject: [{ event: 'l2_load', iotype: 'sideways' }], setState: undefined })).toThrowError('invalid parameter value: sideways');
  });
});
