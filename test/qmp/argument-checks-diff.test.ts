/**
 * What a careless or hostile QMP client sends, against qemu-storage-daemon
 * 7.2 and `diskworker daemon`, replies compared exactly (class, desc, id):
 *
 * - argument checks of every command both have, generated from QSD's own
 *   `query-qmp-schema` (test/qmp/qapi-cases.ts): required members left out,
 *   unknown members, wrong JSON types at any depth, integers at the int64 /
 *   uint64 / double edges, empty strings, values outside an enum, names of
 *   nothing; a seeded sample of them, then the base requests again with the
 *   name of an existing node in every name-like member;
 * - the request envelope: `execute` not a string, `arguments` not an
 *   object, unknown members, `id` of every JSON type echoed back, unknown
 *   commands, malformed JSON (QEMU's parse errors and its recovery);
 * - capabilities negotiation: commands before it, `enable` with an unknown
 *   or a valid capability (oob, which QSD's socket monitors offer), twice,
 *   and exec-oob before and after oob is enabled.
 *
 * Needs `npm run build:ts` (the bundled bin).
 */
import net from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { QmpClient, hasQsd, mask, run, startDaemon, twinDirs, type Daemon, type Json } from './harness.js';
import { QapiCaseGenerator, type SchemaEntry } from './qapi-cases.js';
import { prng } from '../prng.js';

const daemons: Daemon[] = [];
afterAll(async () => {
  await Promise.all(daemons.splice(0).map((d) => d.stop()));
});

/** The command line of both daemons: a raw node over a file node. */
const ARGS = ['--blockdev', '{"driver":"file","node-name":"f0","filename":"$DIR/a.raw"}', '--blockdev', '{"driver":"raw","node-name":"r0","file":"f0"}'];

/** Replies that differ by design: our version and command list, and QEMU's member order of answers to queries. */
const OWN_ANSWERS = new Set(['query-version', 'query-commands', 'query-named-block-nodes', 'x-debug-query-block-graph', 'query-block', 'query-blockstats']);

/** Sends each text to a fresh daemon of `side`; the greeting and the masked replies. */
async function session(side: 'qemu' | 'ours', dir: string, texts: string[]): Promise<{ greeting: Json; replies: Json[] }> {
  const d = startDaemon(side, dir, ARGS);
  daemons.push(d);
  const c = await QmpClient.connect(d.sock);
  const replies: Json[] = [];
  try {
    for (const t of texts) replies.push(mask(await c.send(t.replaceAll('$DIR', dir)), dir));
  } finally {
    c.close();
    await d.stop();
  }
  return { greeting: c.greeting, replies };
}

/** Runs `texts` on both daemons (twin directories) and returns the replies side by side. */
async function compare(texts: string[]): Promise<{ qemu: Json[]; ours: Json[]; greetings: Json[] }> {
  const dirs = twinDirs((dir) => run('truncate', ['-s', '1M', 'a.raw'], dir));
  const qemu = await session('qemu', dirs.qemu, texts);
  const ours = await session('ours', dirs.ours, texts);
  return { qemu: qemu.replies, ours: ours.replies, greetings: [qemu.greeting, ours.greeting] };
}

/** The differences, as readable lines (empty when equal). */
function differences(texts: string[], r: { qemu: Json[]; ours: Json[] }): string[] {
  const out: string[] = [];
  texts.forEach((t, i) => {
    if (JSON.stringify(r.qemu[i]) !== JSON.stringify(r.ours[i])) out.push(`${t}\n  qemu: ${JSON.stringify(r.qemu[i])}\n  ours: ${JSON.stringify(r.ours[i])}`);
  });
  return out;
}

/** QSD's schema (its own introspection). */
async function qsdSchema(): Promise<SchemaEntry[]> {
  const dirs = twinDirs((dir) => run('truncate', ['-s', '1M', 'a.raw'], dir));
  const d = startDaemon('qemu', dirs.qemu, []);
  daemons.push(d);
  const c = await QmpClient.connect(d.sock);
  try {
    await c.send({ execute: 'qmp_capabilities' });
    return ((await c.send({ execute: 'query-qmp-schema' })) as unknown as { return: SchemaEntry[] }).return;
  } finally {
    c.close();
    await d.stop();
  }
}

/** How many generated cases run (a seeded sample of the about 5,500 the generator makes). */
const SAMPLE = 2500;

/**
 * Union branches left out, by tag value: what DiskWorker does not have by
 * design, so QSD checks members we do not know (QEMU block drivers and
 * object types DiskWorker lacks, vhost-user-blk and fuse exports), or
 * DiskWorker takes options of its own (its http driver), or blockdev-create
 * formats it does not create.
 */
const NOT_OURS: Record<string, Set<string>> = {
  driver: new Set([
    'blkdebug', 'blkreplay', 'bochs', 'cloop', 'copy-before-write', 'dmg', 'ftp', 'ftps', 'gluster', 'host_cdrom', 'host_device', 'http',
    'https', 'iscsi', 'nbd', 'nfs', 'nvme', 'parallels', 'rbd', 'replication', 'snapshot-access', 'ssh', 'vvfat',
  ]),
  'qom-type': new Set(['*']),
  type: new Set(['vhost-user-blk', 'fuse']),
};
/** blockdev-create creates file and qcow2 images only; object-add makes these types. */
const CREATE_DRIVERS = new Set(['file', 'qcow2']);
const OBJECT_TYPES = new Set(['throttle-group', 'secret', 'iothread']);

/** Whether `command` with union tag `tag` = `value` is compared. */
function compared(command: string, tag: string, value: string): boolean {
  if (command === 'blockdev-create' && tag === 'driver') return CREATE_DRIVERS.has(value);
  if (tag === 'qom-type') return OBJECT_TYPES.has(value);
  return !NOT_OURS[tag]?.has(value);
}

describe.skipIf(!hasQsd())('argument checks against qemu-storage-daemon 7.2', () => {
  it('cases generated from the schema: the same errors, word for word', async () => {
    const schema = await qsdSchema();
    // Our command table, as query-commands lists it.
    const ours = await compare(['{"execute": "qmp_capabilities"}', '{"execute": "query-commands"}']);
    const names = new Set(((ours.ours[1] as { return: { name: string }[] }).return ?? []).map((c) => c.name));
    const commands = new QapiCaseGenerator(schema).commands().filter((c) => names.has(c) && !['qmp_capabilities', 'quit'].includes(c) && !OWN_ANSWERS.has(c));
    expect(commands.length).toBeGreaterThan(40);

    // Each command's base, then again with every branch of each union it takes (that we compare).
    const seen = new Set<string>();
    const generated = commands.flatMap((c) => {
      const g = new QapiCaseGenerator(schema);
      const variants = [...g.unionTags(c)].flatMap(([tag, values]) => values.filter((v) => compared(c, tag, v)).map((v) => ({ [tag]: v })));
      return [{}, ...variants].flatMap((tags) => new QapiCaseGenerator(schema, 'nope', tags).cases(c, 2)).filter((k) => {
        // Bases whose preferred branch is not compared (a union's first value) are left out too.
        const tagged = [...k.request.matchAll(/"(driver|qom-type|type)": "([^"]*)"/g)];
        if (tagged.some((t) => !compared(c, t[1]!, t[2]!))) return false;
        if (seen.has(k.request)) return false;
        seen.add(k.request);
        return true;
      });
    });
    const random = prng(15);
    // Every base request, missing member and unknown member; a seeded sample of the rest.
    const always = generated.filter((k) => / base$| missing$|\+unknown$/.test(k.label));
    const rest = generated.filter((k) => !always.includes(k)).sort(() => random() - 0.5);
    const picked = [...always, ...rest.slice(0, Math.max(0, SAMPLE - always.length))];
    // Then the base requests naming a node that exists (r0), where state may change: the same on both sides.
    const existing = commands.flatMap((c) => new QapiCaseGenerator(schema, 'r0').cases(c, 0).filter((k) => k.label.endsWith(' base')));
    const texts = ['{"execute": "qmp_capabilities"}', ...picked.map((k) => k.request), ...existing.map((k) => k.request)];

    const r = await compare(texts);
    expect(differences(texts, r)).toEqual([]);
    const errors = r.ours.filter((x) => typeof x === 'object' && x !== null && 'error' in x).length;
    expect(errors).toBeGreaterThan(texts.length * 0.8);
  }, 120_000);

  it('the request envelope, ids of every JSON type, unknown commands and malformed JSON', async () => {
    const texts = [
      '{"execute": "qmp_capabilities"}',
      '{"execute": 1}',
      '{"execute": null, "id": "x"}',
      '{"execute": ["query-jobs"]}',
      '{"execute": "query-jobs", "arguments": []}',
      '{"execute": "query-jobs", "arguments": "x", "id": 1}',
      '{"execute": "query-jobs", "argument": {}}',
      '{"id": 5}',
      '{}',
      '[]',
      '1',
      '"query-jobs"',
      'null',
      '{"execute": "query-jobs", "arguments": {}, "bogus": 1, "id": 2}',
      '{"execute": "query-jobs", "id": null}',
      '{"execute": "query-jobs", "id": true}',
      '{"execute": "query-jobs", "id": -7}',
      '{"execute": "query-jobs", "id": 1.0}',
      '{"execute": "query-jobs", "id": 0.1}',
      '{"execute": "query-jobs", "id": -0.0}',
      '{"execute": "query-jobs", "id": 1e300}',
      '{"execute": "query-jobs", "id": 9223372036854775807}',
      '{"execute": "query-jobs", "id": 9223372036854775808}',
      '{"execute": "query-jobs", "id": 18446744073709551616}',
      '{"execute": "query-jobs", "id": -9223372036854775809}',
      '{"execute": "query-jobs", "id": "\\u00e9\\ud83d\\ude00\\t\\u0001"}',
      '{"execute": "query-jobs", "id": [1, "a", {"b": [null, false]}, []]}',
      '{"execute": "query-jobs", "id": {"z": 1, "a": 2, "execute": 3}}',
      "{'execute': 'query-jobs', 'id': 'it\\'s'}",
      '{"execute": "no-such-command", "id": 3}',
      '{"execute": "", "id": 4}',
      '{"execute": "query-qmp-schema-x"}',
      '{"execute": "block_resize", "arguments": {"node-name": "r0", "size": 1}, "id": {"a": 1}}',
      // Malformed JSON: QEMU's own parse errors.
      '{"execute": "query-jobs", "id": 1, "id": 2}',
      '{"execute": "query-jobs",}',
      '{"execute" "query-jobs"}',
      '{"execute": "query-jobs" "id": 1}',
      '{"execute": tru}',
      '{1: 2}',
      '{"execute": "a\\qb"}',
      '{"execute": "\\ud800"}',
      '}',
      ']',
      // Bad characters: QEMU reports the stray text, skips to the next structural character, then fails again there.
      '{"execute": 01}',
      '{"execute": "query-jobs", "id": @}',
      '{"execute": "query-jobs"}',
    ];
    const r = await compare(texts);
    expect(differences(texts, r)).toEqual([]);
  }, 60_000);

  it('the bytes on the wire, compact and pretty: member order, escapes, doubles, CR LF', async () => {
    const texts = [
      '{"execute": "qmp_capabilities", "id": [1, {}, 0.1, 1e300, -0.0, "\\u00e9\\ud83d\\ude00\\u007f/"]}',
      '{"execute": "query-jobs", "id": {"z": 1, "a": [], "execute": null}}',
      '{"execute": "no-such-command", "id": 18446744073709551615}',
      '{"execute": "block_resize", "arguments": {"node-name": "r0", "size": 1.0}}',
    ];
    for (const pretty of ['off', 'on']) {
      const dirs = twinDirs(() => undefined);
      const bytes: string[] = [];
      for (const side of ['qemu', 'ours'] as const) {
        const dir = dirs[side];
        const d = startDaemon(side, dir, ['--chardev', `socket,id=raw,path=${dir}/raw.sock,server=on,wait=off`, '--monitor', `chardev=raw,pretty=${pretty}`]);
        daemons.push(d);
        // The harness' monitor first (it waits until the daemon listens), then the raw one.
        (await QmpClient.connect(d.sock)).close();
        const s = net.createConnection(`${dir}/raw.sock`);
        let out = '';
        s.on('data', (b: Buffer) => (out += b.toString('latin1')));
        // One request at a time, each after the reply before it: a message is one line, or (pretty) ends with a line "}".
        const ends = pretty === 'on' ? /^\}\r\n/gm : /\r\n/g;
        const replies = (n: number) => new Promise<void>((res) => {
          const t = setInterval(() => {
            if ((out.match(ends) ?? []).length >= n) {
              clearInterval(t);
              res();
            }
          }, 10);
        });
        await replies(1);
        for (let i = 0; i < texts.length; i++) {
          s.write(texts[i]!);
          await replies(i + 2);
        }
        s.destroy();
        await d.stop();
        bytes.push(out.replace(/"qemu": \{[^}]*\}/, 'V').replace(/"package": "[^"]*"/, 'P'));
      }
      expect(bytes[1], `pretty=${pretty}`).toBe(bytes[0]);
    }
  }, 60_000);

  it('capabilities negotiation: before, oob, twice, exec-oob', async () => {
    const texts = [
      '{"execute": "query-jobs", "id": 1}',
      '{"execute": "no-such-command"}',
      '{"exec-oob": "query-jobs"}',
      '{"execute": "qmp_capabilities", "arguments": {"enable": ["no-such-cap"]}}',
      '{"execute": "qmp_capabilities", "arguments": {"enable": "oob"}}',
      '{"execute": "qmp_capabilities", "arguments": {"enable": [1]}}',
      '{"execute": "qmp_capabilities", "arguments": {"bogus": 1}}',
      '{"execute": "qmp_capabilities", "arguments": []}',
      '{"execute": "qmp_capabilities", "arguments": {"enable": ["oob", "oob"]}, "id": "caps"}',
      '{"execute": "qmp_capabilities"}',
      '{"execute": "qmp_capabilities", "arguments": {"enable": ["no-such-cap"]}}',
      '{"execute": "qmp_capabilities", "arguments": {"bogus": 1}}',
      '{"exec-oob": "query-jobs", "id": 7}',
      '{"exec-oob": "no-such-command"}',
      '{"exec-oob": 1}',
      '{"exec-oob": "query-jobs", "execute": "query-jobs"}',
      '{"execute": "query-jobs", "id": 8}',
    ];
    const r = await compare(texts);
    expect(differences(texts, r)).toEqual([]);
    // Both greetings offer the same capabilities (the version is DiskWorker's own).
    const caps = r.greetings.map((g) => (g as { QMP: { capabilities: string[] } }).QMP.capabilities);
    expect(caps[1]).toEqual(caps[0]);
  }, 60_000);
});
