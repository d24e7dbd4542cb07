/**
 * BlockError crosses a Comlink boundary with its code, message and context
 * (src/client/transfer.ts), here over a Node MessageChannel; other errors
 * keep Comlink's behaviour.
 */
import { describe, it, expect, afterAll } from 'vitest';
import { MessageChannel } from 'node:worker_threads';
import { expose, wrap, type Endpoint } from 'comlink';
import { BlockError } from '../../src/core/errors.js';
import { deserializeBlockError, installErrorTransfer, serializeBlockError } from '../../src/client/transfer.js';
import { decodeErrorText, encodeErrorText } from '../../src/channels/error-text.js';

installErrorTransfer();

const { port1, port2 } = new MessageChannel();
const service = {
  failBlock(): Promise<number> {
    throw new BlockError('EBUSY', "Could not open 'opfs:/a.img': the image is in use", { node: 'disk0', offset: 4096 });
  },
  failDetailed(): Promise<number> {
    throw new BlockError('EFBIG', 'Image is too big', {}, { detail: 'size 1152921504606846976' }).withPrefix("Could not open 't.qcow2'");
  },
  async failCoded(): Promise<number> {
    throw Object.assign(new Error('No space left'), { code: 'ENOSPC' });
  },
  failPlain(): Promise<number> {
    throw new TypeError('plain failure');
  },
  ok(): number {
    return 42;
  },
};
expose(service, port1 as unknown as Endpoint);
const remote = wrap<typeof service>(port2 as unknown as Endpoint);

afterAll(() => {
  port1.close();
  port2.close();
});

describe('error transfer handler', () => {
  it('rebuilds a BlockError with code, message and context', async () => {
    const e = await remote.failBlock().catch((x: unknown) => x);
    expect(e).toBeInstanceOf(BlockError);
    expect((e as BlockError).code).toBe('EBUSY');
    expect((e as BlockError).message).toContain('in use');
    expect((e as BlockError).context).toEqual({ node: 'disk0', offset: 4096 });
    expect((e as BlockError).errno).toBe(16);
  });

  it('keeps the detail apart from the text', async () => {
    const e = await remote.failDetailed().catch((x: unknown) => x);
    expect(e).toBeInstanceOf(BlockError);
    const be = e as BlockError;
    expect(be.code).toBe('EFBIG');
    expect(be.text).toBe("Could not open 't.qcow2': Image is too big");
    expect(be.detail).toBe('size 1152921504606846976');
    expect(be.message).toBe("Could not open 't.qcow2': Image is too big (size 1152921504606846976)");
  });

  it('round-trips through the plain form, and reads the form of a peer without text', () => {
    const original = new BlockError('EINVAL', 'Active L1 table offset invalid', { node: 'n0', offset: 40 }, { detail: '0x1234567890abcdef' });
    const back = deserializeBlockError(structuredClone(serializeBlockError(original)));
    expect([back.code, back.text, back.detail, back.message, back.context]).toEqual([
      original.code,
      original.text,
      original.detail,
      original.message,
      original.context,
    ]);
    const hinted = new BlockError('ENOTSUP', 'Cannot amend the backing file', {}, { hint: "You can use 'qemu-img rebase' instead.\n" });
    expect(deserializeBlockError(structuredClone(serializeBlockError(hinted))).hint).toBe("You can use 'qemu-img rebase' instead.\n");
    const old = deserializeBlockError({ code: 'EIO', message: 'Header extension too large (at 0x70)', context: {} });
    expect(old.hint).toBe('');
    expect([old.text, old.detail, old.message]).toEqual(['Header extension too large (at 0x70)', undefined, 'Header extension too large (at 0x70)']);
  });

  it('turns errors carrying an errno code into BlockErrors', async () => {
    const e = await remote.failCoded().catch((x: unknown) => x);
    expect(e).toBeInstanceOf(BlockError);
    expect((e as BlockError).code).toBe('ENOSPC');
  });

  it('leaves other errors to Comlink and values alone', async () => {
    const e = await remote.failPlain().catch((x: unknown) => x);
    expect(e).toBeInstanceOf(Error);
    expect(e).not.toBeInstanceOf(BlockError);
    expect((e as Error).message).toBe('plain failure');
    expect(await remote.ok()).toBe(42);
  });

  it('the shared-memory channels carry text and detail apart', () => {
    const e = new BlockError('EFBIG', 'Image is too big', {}, { detail: 'size 1152921504606846976' });
    const back = decodeErrorText('EFBIG', encodeErrorText(e), { offset: 512 });
    expect([back.code, back.text, back.detail, back.message, back.context]).toEqual(['EFBIG', e.text, e.detail, e.message, { offset: 512 }]);
    const plain = decodeErrorText('EIO', encodeErrorText(new BlockError('EIO', 'Input/output error')), {});
    expect([plain.text, plain.detail]).toEqual(['Input/output error', undefined]);
    // A text without the code prefix (cut short, or from elsewhere) is kept whole.
    expect(decodeErrorText('EIO', 'something odd', {}).text).toBe('something odd');
  });
});
