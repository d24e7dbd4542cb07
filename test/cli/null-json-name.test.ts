/**
 * The name qemu-img 7.2 shows for a null-co / null-aio device opened with
 * options: `null-co://` while only the driver (or latency-ns) is given, a
 * `json:{...}` name of the options that define the device (size,
 * read-zeroes) otherwise, keys in QEMU's QDict order and values as given.
 * Golden: same lines, same exit code.
 */
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { Fixture, golden } from './harness.js';
import { qdictJson } from '../../src/core/qemu-json.js';

describe('null-co names vs qemu-img 7.2', () => {
  let fx: Fixture;
  beforeAll(() => {
    fx = new Fixture(() => undefined);
  });
  afterAll(() => fx.dispose());

  const cases: string[][] = [
    ['info', 'json:{"driver":"null-co","size":1024,"read-zeroes":true,"latency-ns":5}'],
    ['info', 'json:{"driver":"null-co","size":1024}'],
    ['info', 'json:{"driver":"null-co","read-zeroes":true}'],
    ['info', 'json:{"driver":"null-co","read-zeroes":false,"size":"2048"}'],
    ['info', 'json:{"driver":"null-co","latency-ns":5}'],
    ['info', 'json:{"driver":"null-aio","size":1024}'],
    ['info', '--image-opts', 'driver=null-co,size=1k'],
    ['info', '--image-opts', 'driver=null-co,read-zeroes=on,size=4096'],
    ['info', '--output=json', 'json:{"driver":"null-co","size":1024}'],
    ['info', 'null-co://'],
    ['map', '--output=json', 'json:{"driver":"null-co","size":1024,"read-zeroes":true}'],
  ];
  for (const args of cases) {
    it(`img ${args.join(' ')}`, async () => {
      const g = await golden(fx, { tool: 'img', args });
      expect(g.ours).toEqual(g.theirs);
    });
  }

  it('orders keys as QEMU\'s QDict does', () => {
    expect(qdictJson([['driver', 'null-co'], ['size', 1], ['read-zeroes', true]])).toBe('{"read-zeroes": true, "driver": "null-co", "size": 1}');
  });
});
