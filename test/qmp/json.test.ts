/**
 * QMP's JSON input and output (src/qmp/json.ts, src/qmp/wire.ts) as QEMU
 * 7.2 reads and writes it: number kinds, parse errors, the stream's
 * recovery after a bad character, QDict member order. The expected texts
 * are qemu-storage-daemon's (argument-checks-diff.test.ts compares the two
 * live).
 */
import { describe, expect, it } from 'vitest';
import { QmpDouble, QmpJsonStream, parseQmpJson, plainJson, type QmpJson } from '../../src/qmp/json.js';
import { formatDouble, qmpLine } from '../../src/qmp/wire.js';
import { checkValue } from '../../src/qmp/schema.js';

/** Every message (value or error text) the stream emits for `text`. */
function messages(text: string): (QmpJson | string)[] {
  const out: (QmpJson | string)[] = [];
  const s = new QmpJsonStream((v, e) => out.push(e ? e.message : v!));
  s.push(text);
  return out;
}

describe('QMP JSON input', () => {
  it('keeps QEMU number kinds: int64, uint64 past it, doubles for fractions, exponents and overflow', () => {
    expect(parseQmpJson('1')).toBe(1);
    expect(parseQmpJson('-0')).toBe(0);
    expect(parseQmpJson('9007199254740993')).toBe(9007199254740993n);
    expect(parseQmpJson('9223372036854775807')).toBe(9223372036854775807n);
    expect(parseQmpJson('-9223372036854775808')).toBe(-9223372036854775808n);
    expect(parseQmpJson('9223372036854775808')).toBe(9223372036854775808n);
    expect(parseQmpJson('18446744073709551615')).toBe(18446744073709551615n);
    expect(parseQmpJson('18446744073709551616')).toEqual(new QmpDouble(18446744073709551616));
    expect(parseQmpJson('-9223372036854775809')).toEqual(new QmpDouble(-9223372036854775808));
    expect(parseQmpJson('1.0')).toEqual(new QmpDouble(1));
    expect(parseQmpJson('1e3')).toEqual(new QmpDouble(1000));
    expect(parseQmpJson('1.5')).toBe(1.5);
    expect(plainJson({ a: [9007199254740993n, new QmpDouble(2)] })).toEqual({ a: [9007199254740992, 2] });
  });

  it('checks integers as QEMU visitors do: a double is no int, uint64 takes negatives, uint32 its range', () => {
    const err = (v: unknown, t: Parameters<typeof checkValue>[1]) => {
      try {
        checkValue(v, t, 'x');
        return 'ok';
      } catch (e) {
        return (e as Error).message;
      }
    };
    expect(err(new QmpDouble(1), 'int')).toBe("Invalid parameter type for 'x', expected: integer");
    expect(err(9223372036854775808n, 'int')).toBe("Invalid parameter type for 'x', expected: integer");
    expect(err(9223372036854775807n, 'int')).toBe('ok');
    expect(err(-1, 'size')).toBe('ok');
    expect(err(18446744073709551615n, 'size')).toBe('ok');
    expect(err(new QmpDouble(1), 'size')).toBe("Parameter 'x' expects uint64");
    expect(err('1', 'uint32')).toBe("Parameter 'x' expects uint64");
    expect(err(4294967296, 'uint32')).toBe("Parameter 'x' expects uint32_t");
    expect(err(-1, 'uint32')).toBe("Parameter 'x' expects uint32_t");
    expect(err(new QmpDouble(1), 'number')).toBe('ok');
  });

  it('refuses malformed input with QEMU parse errors', () => {
    const error = (t: string) => {
      try {
        parseQmpJson(t);
        return 'parsed';
      } catch (e) {
        return (e as Error).message;
      }
    };
    expect(error('{"a": 1, "a": 2}')).toBe('JSON parse error, duplicate key');
    expect(error('{"a": 1,}')).toBe('JSON parse error, expecting value');
    expect(error('{"a" 1}')).toBe('JSON parse error, missing : in object pair');
    expect(error('{"a": 1 "b": 2}')).toBe('JSON parse error, expected separator in dict');
    expect(error('[1 2]')).toBe('JSON parse error, expected separator in list');
    expect(error('{"a": tru}')).toBe("JSON parse error, invalid keyword 'tru'");
    expect(error('{1: 2}')).toBe('JSON parse error, key is not a string in object');
    expect(error('"a\\qb"')).toBe('JSON parse error, invalid escape sequence in string');
    expect(error('"\\ud800"')).toBe('JSON parse error, \\ud800 is not a valid Unicode character');
    expect(error("{'a': 'it\\'s'}")).toBe('parsed');
    expect(parseQmpJson('"\\u00e9\\ud83d\\ude00"')).toBe('é😀');
  });

  it('streams messages: a bad character reported, then recovery at the next structural one', () => {
    expect(messages('{"execute": 01}')).toEqual(["JSON parse error, stray '01'", 'JSON parse error, expecting value']);
    expect(messages('@ {"a": 1}')).toEqual(["JSON parse error, stray '@'", { a: 1 }]);
    expect(messages('[1,\n2] 3 ')).toEqual([[1, 2], 3]);
    expect(messages('}')).toEqual(['JSON parse error, expecting value']);
    expect(messages('{"a": "tab\there"}')).toEqual(['JSON parse error, stray \'"tab\t\'', 'JSON parse error, expecting value']);
    expect(messages('[['.repeat(513))).toEqual(['JSON nesting depth limit exceeded']);
  });
});

describe('QMP JSON output', () => {
  it('writes doubles as %.17g and members in QDict order', () => {
    expect(formatDouble(0.1)).toBe('0.10000000000000001');
    expect(formatDouble(1e-7)).toBe('9.9999999999999995e-08');
    expect(formatDouble(1e300)).toBe('1.0000000000000001e+300');
    expect(formatDouble(-0)).toBe('-0');
    expect(formatDouble(1.5e19)).toBe('1.5e+19');
    expect(formatDouble(1e16)).toBe('10000000000000000');
    expect(formatDouble(123456789.123)).toBe('123456789.123');
    expect(qmpLine({ return: { qemu: { major: 7, minor: 2, micro: 0 }, package: '' } })).toBe('{"return": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}}\r\n');
    expect(qmpLine({ id: [new QmpDouble(1), 18446744073709551615n] })).toBe('{"id": [1, 18446744073709551615]}\r\n');
  });
});
