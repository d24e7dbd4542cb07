/**
 * The demo's key bookkeeping (demo/src/key-secrets.ts): QEMU's missing-key
 * and wrong-password failures recognised, ids handed out and replaced.
 */
import { describe, expect, it } from 'vitest';
import { isWrongPassword, KeyRing, neededKeyOption } from '../../demo/src/key-secrets.js';
import { BlockError } from '../../src/core/errors.js';

describe('demo key secrets', () => {
  it('finds the key option QEMU asks for, and only in that failure', () => {
    expect(neededKeyOption(new BlockError('EINVAL', "Parameter 'key-secret' is required for cipher"))).toBe('key-secret');
    expect(neededKeyOption(new BlockError('EINVAL', "Parameter 'encrypt.key-secret' is required for cipher"))).toBe('encrypt.key-secret');
    // Errors as they cross the worker boundary: plain objects with code and message.
    expect(neededKeyOption({ code: 'EINVAL', message: "Parameter 'encrypt.key-secret' is required for cipher" })).toBe('encrypt.key-secret');
    expect(neededKeyOption(new BlockError('EINVAL', "Parameter 'size' is required"))).toBeNull();
    expect(neededKeyOption(new BlockError('EPERM', "Parameter 'key-secret' is required for cipher"))).toBeNull();
    expect(neededKeyOption(new Error("Parameter 'key-secret' is required for cipher"))).toBeNull();
    expect(neededKeyOption(undefined)).toBeNull();
  });

  it('tells a wrong password from other refusals', () => {
    expect(isWrongPassword(new BlockError('EPERM', 'Invalid password, cannot unlock any keyslot'))).toBe(true);
    expect(isWrongPassword(new BlockError('EPERM', 'Permission conflict on node'))).toBe(false);
    expect(isWrongPassword(new BlockError('EINVAL', 'Invalid password, cannot unlock any keyslot'))).toBe(false);
  });

  it('keeps one secret id per image, giving back the ids it drops', () => {
    const ring = new KeyRing();
    const a = ring.newId();
    const b = ring.newId();
    expect(a).not.toBe(b);
    expect(a).toMatch(/^[A-Za-z][A-Za-z0-9_.-]*$/);
    expect(ring.options('opfs:/x.luks')).toBeUndefined();
    expect(ring.set('opfs:/x.luks', { option: 'key-secret', id: a })).toBeUndefined();
    expect(ring.options('opfs:/x.luks')).toEqual({ 'key-secret': a });
    expect(ring.set('opfs:/x.luks', { option: 'key-secret', id: a })).toBeUndefined();
    expect(ring.set('opfs:/x.luks', { option: 'key-secret', id: b })).toBe(a);
    expect(ring.forget('opfs:/x.luks')).toBe(b);
    expect(ring.forget('opfs:/x.luks')).toBeUndefined();
  });
});
