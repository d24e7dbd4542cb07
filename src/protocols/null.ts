/**
 * null: reads zeros and drops writes, for benchmarks and tests (QEMU null-co).
 * Options: `size` (default 1 GiB), `read-zeroes` (default on: reads fill the
 * buffer with zeros; off leaves it untouched, as QEMU's default does).
 */
import type { BlockDriver, DriverInstance } from '../core/driver.js';
import type { OptionReader } from '../core/options.js';
import type { BlockNode } from '../core/node.js';

class NullInstance implements DriverInstance {
  constructor(
    private size: number,
    private readonly readZeroes: boolean,
  ) {}
  readonly supportedWriteFlags = 0x01; // FUA is free
  readonly supportedZeroFlags = 0x03;
  getLength(): number {
    return this.size;
  }
  preadv(_offset: number, _bytes: number, buf: Uint8Array): void {
    if (this.readZeroes) buf.fill(0);
  }
  pwritev(): void {}
  pwriteZeroes(): Promise<void> {
    return Promise.resolve();
  }
  pdiscard(): Promise<void> {
    return Promise.resolve();
  }
  async truncate(offset: number): Promise<void> {
    this.size = offset;
  }
  hasZeroInit(): boolean {
    return true;
  }
}

export const nullDriver = {
  name: 'null-co',
  kind: 'protocol',
  protocolPrefixes: ['null-co://', 'null:'],
  parseFilename: () => ({}),
  async open(node: BlockNode, options: OptionReader): Promise<DriverInstance> {
    options.string('filename');
    const size = options.size('size', 1 << 30);
    const readZeroes = options.bool('read-zeroes', true);
    node.filename = 'null-co://';
    return new NullInstance(size, readZeroes);
  },
} satisfies BlockDriver;
