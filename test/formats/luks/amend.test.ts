/**
 * Key slot changes through `img amend` of a luks image, as QEMU's iotests 293
 * and 294 exercise them: the same sequence of amend commands run through
 * qemu-img and through ours on copies of one image gives the same messages and
 * exit codes, the same slots active, and passwords that open (or no longer
 * open) the image in qemu-io.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { Fixture, hasQemu, normalize, ours, theirs, type RunResult } from '../../cli/harness.js';

/**
 * QEMU's PBKDF2 timing fails now and then on a loaded machine ("Unable to get
 * accurate CPU usage", before anything is written): such runs are repeated.
 */
function steady(tool: 'img' | 'io', args: string[], dir: string): RunResult {
  let r = theirs(tool, args, dir);
  for (let i = 0; i < 12 && /Unable to get accurate CPU usage/.test(r.stderr); i++) r = theirs(tool, args, dir);
  return r;
}


const SECRETS = ['--object', 'secret,id=s0,data=alpha', '--object', 'secret,id=s1,data=beta', '--object', 'secret,id=s2,data=gamma'];
const img = (secret: string) => ['--image-opts', `driver=luks,key-secret=${secret},file.filename=test.luks`];
const amend = (secret: string, o: string) => ['amend', ...SECRETS, ...img(secret), '-o', o];

/** Each step: the secret the image is opened with and the -o list. */
const STEPS: Array<[string, string]> = [
  ['s0', 'new-secret=s1'],
  ['s0', 'state=bogus'],
  ['s0', 'state=inactive,keyslot=0'],
  ['s0', 'state=active,new-secret=s1,iter-time=10'],
  ['s0', 'state=active,new-secret=s2,keyslot=1,iter-time=10'],
  ['s0', 'state=active,new-secret=s2,keyslot=8,iter-time=10'],
  ['s0', 'state=active,old-secret=s0,new-secret=s2'],
  ['s1', 'state=active,new-secret=s2,keyslot=5,iter-time=10'],
  ['s0', 'state=inactive,keyslot=3'],
  ['s0', 'state=inactive,new-secret=s1'],
  ['s0', 'state=inactive,iter-time=10,keyslot=1'],
  ['s0', 'state=inactive'],
  ['s0', 'state=inactive,keyslot=1,old-secret=s2'],
  ['s0', 'state=inactive,old-secret=s1'],
  ['s2', 'state=inactive,old-secret=s0'],
  ['s2', 'state=inactive,old-secret=s2'],
  ['s2', 'state=inactive,keyslot=5'],
];

it('compares against qemu-img 7.2', () => {
  expect(hasQemu()).toBe(true);
});

describe('img amend of luks key slots vs qemu-img', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture((_dir, sh) => {
      const c = 'qemu-img create -q -f luks --object secret,id=s0,data=alpha -o key-secret=s0,iter-time=10 test.luks 1M';
      sh(Array(12).fill(c).join(" || "));
      sh("qemu-io --object secret,id=s0,data=alpha -c 'write -P 0x42 0 64k' --image-opts driver=luks,key-secret=s0,file.filename=test.luks");
    });
  });
  afterAll(() => fx.dispose());

  it('the same messages, exit codes, slots and passwords after each step', async () => {
    const mine = fx.copy();
    const ref = fx.copy();
    const slots = (dir: string) => steady('img', ['info', '--output=json', 'test.luks'], dir).stdout.match(/"active": (true|false)/g);
    for (const [secret, o] of STEPS) {
      const a = await ours('img', amend(secret, o), mine);
      const b = steady('img', amend(secret, o), ref);
      expect({ step: o, code: a.code, out: normalize(a.stdout + a.stderr) }).toEqual({ step: o, code: b.code, out: normalize(b.stdout + b.stderr) });
      expect(slots(mine)).toEqual(slots(ref));
    }
    for (const s of ['s0', 's1', 's2']) {
      const read = [...SECRETS, '-c', 'read -P 0x42 0 64k', ...img(s)];
      expect(normalize(theirs('io', read, mine).stdout + theirs('io', read, mine).stderr)).toBe(normalize(theirs('io', read, ref).stdout + theirs('io', read, ref).stderr));
    }
  });
});
