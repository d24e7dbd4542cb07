/**
 * `json:` filenames in QEMU's JSON dialect (single-quoted strings, `\'`
 * escapes, duplicate keys refused) and QEMU's parse errors, through
 * `diskworker img info` / `diskworker io` against qemu-img / qemu-io 7.2 on the
 * same images; plus nested formats (qcow2 inside qcow2) and `open -o` merging
 * options with a json: filename. Unit cases of the parser itself at the end.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { Fixture, golden, words } from './harness.js';
import { parseQemuJson } from '../../src/core/qemu-json.js';
import { expectBlockError } from '../core/helpers.js';

function build(_dir: string, sh: (cmd: string) => void): void {
  sh('qemu-img create -q -f raw base.raw 4M');
  sh(`qemu-io -f raw -c 'write -P 42 0 512' -c 'write -P 23 512 512' base.raw >/dev/null`);
  sh('qemu-img convert -f raw -O qcow2 base.raw in.qcow2');
  // A qcow2 image whose guest data is itself a qcow2 image.
  sh('qemu-img convert -f raw -O qcow2 in.qcow2 nest.qcow2');
  sh(`cp in.qcow2 "q'uote.qcow2"`);
  // Colons in names: after a file: prefix, or in options, they are just characters.
  sh(`mkdir co:lon && cp in.qcow2 co:lon/x.qcow2 && cp in.qcow2 a:b.qcow2`);
  // A three-image chain for info --backing-chain --image-opts (iotest 279's case).
  sh('qemu-img create -q -f qcow2 t.base 4M && qemu-img create -q -f qcow2 -b t.base -F qcow2 t.mid && qemu-img create -q -f qcow2 -b t.mid -F qcow2 t.top');
}

describe('json: filenames vs qemu-img / qemu-io 7.2', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture(build);
  });
  afterAll(() => fx.dispose());

  const img: string[] = [
    `"json:{'driver':'qcow2','file':{'driver':'file','filename':'in.qcow2'}}"`,
    `"json:{\\"driver\\":'qcow2', 'file.filename':'in.qcow2'}"`,
    `"json:{'driver':'qcow2','file.filename':'q\\'uote.qcow2'}"`,
    `"json:{'driver':'qcow2','file.filename':\\"q'uote.qcow2\\"}"`,
    `"json:{'driver':'qcow2','file.filename':'in.qcow2','lazy-refcounts':true,'cache-clean-interval':0}"`,
    `"json:{'file.filename':'in.qcow2'}"`,
    `"json:{'a':1}"`,
    // Parse errors, each in QEMU's words.
    `"json:{'driver':'qcow2'"`,
    `"json:{'file.filename':'in.qcow2', 'file.filename':'in.qcow2'}"`,
    `"json:['a']"`,
    `"json:{'driver':'qcow2',}"`,
    `"json:{'driver' 'qcow2'}"`,
    `"json:{1:'qcow2'}"`,
    `"json:{'driver':'qcow2' 'x':1}"`,
    `"json:{'a':[1 2]}"`,
    `"json:{'a':tru}"`,
    `"json:{'a':'\\x'}"`,
    `"json:{'a':'\\u12'}"`,
    `"json:{'a':'\\ud83d'}"`,
    `"json:{'a':1}{'b':2}"`,
    'json:',
    `"json:{'a':$}"`,
    `"json:{'a':01}"`,
    `"json:{'a':-}"`,
    `"json:{'a':1.}"`,
    `"json:{'a':1e+}"`,
    `"json:{'a':'x"`,
    // Unknown options: named within their node, in QEMU's two wordings.
    `"json:{'driver':'qcow2','file.filename':'in.qcow2','x':1}"`,
    `"json:{'driver':'qcow2','file.filename':'in.qcow2','file.x':1}"`,
    `"json:{'driver':'file','filename':'in.qcow2','cache.x':1}"`,
  ];
  for (const line of [
    'info --backing-chain --image-opts driver=qcow2,file.driver=file,file.filename=t.top',
    'info --backing-chain --image-opts file.filename=t.top',
    'info --backing-chain --output=json --image-opts file.filename=t.mid',
    'info a:b.qcow2',
    'info ./a:b.qcow2',
    'convert -O raw a:b.qcow2 o.raw',
  ]) {
    it(`img ${line}`, async () => {
      const g = await golden(fx, { tool: 'img', args: words(line) });
      expect(g.ours).toEqual(g.theirs);
    });
  }

  for (const name of img) {
    it(`img info ${name}`, async () => {
      const g = await golden(fx, { tool: 'img', args: ['info', ...shellWords(name)] });
      expect(g.ours).toEqual(g.theirs);
    });
  }

  const io: string[] = [
    `-c 'read -P 42 0 512' -c 'read -P 23 512 512' "json:{'driver':'qcow2','file':{'driver':'qcow2','file':{'filename':'nest.qcow2'}}}"`,
    `-c 'read -P 42 0 512' nest.qcow2`,
    `-c "open -o driver=qcow2 json:{'file.filename':'in.qcow2'}" -c 'read -P 42 0 512'`,
    `-c 'open -o driver=qcow2 json:{"driver":"raw","file.filename":"in.qcow2"}' -c info`,
    `-c 'write -P 7 0 4k' "json:{'driver':'qcow2','file.filename':'in.qcow2'}"`,
    // open -o with no file name: the options name the file.
    `-c 'open -o driver=qcow2,file.filename=in.qcow2' -c 'read -P 42 0 512'`,
    `-c 'open -o file.filename=in.qcow2' -c 'read -P 42 0 512'`,
    `-c 'open -o driver=qcow2' -c 'read 0 1'`,
    `-c 'open -r -o driver=qcow2,file.filename=nosuch' -c 'read 0 1'`,
    `-c 'read -P 42 0 512' file:co:lon/x.qcow2`,
    `-f qcow2 -c 'read -P 42 0 512' file:a:b.qcow2`,
    // A colon before any slash names a protocol; 'a' is none.
    `-c 'read -P 42 0 512' a:b.qcow2`,
    `-c 'read -P 42 0 512' ./a:b.qcow2`,
    `-c 'open a:b.qcow2' -c 'read 0 1'`,
    `--image-opts -c 'read -P 42 0 512' driver=qcow2,file.filename=a:b.qcow2`,
    `--image-opts -c 'read -P 42 0 512' driver=qcow2,file.driver=file,file.filename=co:lon/x.qcow2`,
  ];
  for (const line of io) {
    it(`io ${line}`, async () => {
      const g = await golden(fx, { tool: 'io', args: shellWords(line), sameImages: ['in.qcow2'] });
      expect(g.ours).toEqual(g.theirs);
      expect(g.imageDiffs).toEqual([]);
    });
  }
});

/** Shell words with both quote kinds and backslash escapes inside double quotes (harness.words has single quotes only). */
function shellWords(line: string): string[] {
  const out: string[] = [];
  let cur: string | null = null;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (c === ' ') {
      if (cur !== null) out.push(cur);
      cur = null;
    } else if (c === "'") {
      const end = line.indexOf("'", i + 1);
      cur = (cur ?? '') + line.slice(i + 1, end);
      i = end;
    } else if (c === '"') {
      cur ??= '';
      for (i++; line[i] !== '"'; i++) {
        if (line[i] === '\\' && (line[i + 1] === '"' || line[i + 1] === '\\')) i++;
        cur += line[i];
      }
    } else {
      cur = (cur ?? '') + c;
    }
  }
  if (cur !== null) out.push(cur);
  return out;
}

describe('parseQemuJson', () => {
  it('reads both quote kinds, escapes and numbers as QEMU does', () => {
    expect(parseQemuJson(`{'a':'x\\'y', "b":"q'\\"", 'c':[1,-2.5e3,true,false,null], 'd':'\\u00e9\\ud83d\\ude00\\/'}`)).toEqual({
      a: "x'y",
      b: `q'"`,
      c: [1, -2500, true, false, null],
      d: 'é😀/',
    });
  });
  it('agrees with JSON.parse on standard JSON', () => {
    const samples = ['{"a":{"b":[1,2,{"c":"d\\n\\t"}]},"e":0.5,"f":-0,"g":""}', '[]', '{}', '"x"', '12', ' { "a" : [ ] } '];
    for (const s of samples) expect(parseQemuJson(s)).toEqual(JSON.parse(s));
  });
  it('keeps __proto__ as a plain key', () => {
    const v = parseQemuJson(`{'__proto__':{'x':1}}`) as Record<string, unknown>;
    expect(Object.keys(v)).toEqual(['__proto__']);
    expect(({} as Record<string, unknown>)['x']).toBeUndefined();
  });
  it('refuses nesting deeper than its limit and overlong text with EINVAL', async () => {
    await expectBlockError(() => parseQemuJson('['.repeat(100) + ']'.repeat(100)), 'EINVAL', /nesting deeper than 64/);
    await expectBlockError(() => parseQemuJson(`'${'a'.repeat(1 << 20)}'`), 'EINVAL', /too long/);
  });
});
