/**
 * BlockError crosses a Comlink boundary with its code, message and context
 * (src/client/transfer.ts), here over a Node MessageChannel; other errors
 * keep Comlink's behaviour.
 */
import { describe, it, expect, afterAll } from 'vitest';
import { MessageChannel } from 'node:worker_threads';
import { expose, wrap, type Endpoint } from 'comlink';
import { BlockError } from '../../src/core/errors.js';
import { installErrorTransfer } from '../../src/client/transfer.js';

installErrorTransfer();

const { port1, port2 } = new MessageChannel();
const service = {
  failBlock(): Promise<number> {
    throw new BlockError('EBUSY', "Could not open 'opfs:/a.img': the image is in use", { node: 'disk0', offset: 4096 });
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
});
