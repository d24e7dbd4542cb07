/**
 * null-co / null-aio: a device of a given size that stores nothing, for
 * benchmarks and tests (QEMU's null block drivers; the two differ in QEMU
 * only in how requests complete, so here they are one driver under two names).
 *
 * Options: `size` (default 1 GiB), `read-zeroes` (default off: a read leaves
 * the caller's buffer as it was, as QEMU's does; on: reads fill it with
 * zeros), `latency-ns` (each request completes after about this long).
 * Writes are dropped; the size cannot change; block status says "not
 * allocated" (zero when read-zeroes is on). The only filename accepted is
 * `null-co://` (`null-aio://`).
 */
import { Status, type BlockDriver, type BlockStatusResult, type DriverInstance } from '../core/driver.js';
import { BlockError, einval } from '../core/errors.js';
import type { BlockNode } from '../core/node.js';
import type { OptionReader } from '../core/options.js';

/** Latency above this is refused: a timer this long is a mistake, not a test setting. */
const MAX_LATENCY_NS = 3_600_000_000_000;

class NullInstance implements DriverInstance {
  constructor(
    private readonly size: number,
    private readonly readZeroes: boolean,
    private readonly latencyMs: number,
    private readonly node: BlockNode,
  ) {}
  readonly supportedWriteFlags = 0x01; // FUA: nothing to make durable

  getLength(): number {
    return this.size;
  }

  /** Completes now (no latency: synchronously, the hot path) or after the configured latency. */
  private done(): Promise<void> | undefined {
    if (this.latencyMs === 0) return undefined;
    return new Promise((r) => setTimeout(r, this.latencyMs));
  }

  preadv(_offset: number, _bytes: number, buf: Uint8Array): Promise<void> | undefined {
    if (this.readZeroes) buf.fill(0);
    return this.done();
  }

  pwritev(): Promise<void> | undefined {
    return this.done();
  }

  async flushToDisk(): Promise<void> {
    await this.done();
  }

  /** As QEMU's: the range sits at the same offset in this node, and reads zeros only with read-zeroes. */
  async blockStatus(_wantZero: boolean, offset: number, bytes: number): Promise<BlockStatusResult> {
    return {
      status: Status.OFFSET_VALID | (this.readZeroes ? Status.ZERO : 0),
      pnum: bytes,
      map: offset,
      file: this.node,
    };
  }

  async getAllocatedFileSize(): Promise<number> {
    return 0;
  }

  /** QEMU's null driver has no bdrv_get_info. */
  getInfo(): never {
    throw new BlockError('ENOTSUP', `Driver '${this.node.driver.name}' has no image information`);
  }

  /** Data written is not kept, so a new node reads zeros only with read-zeroes. */
  hasZeroInit(): boolean {
    return this.readZeroes;
  }
}

function nullVariant(name: 'null-co' | 'null-aio'): BlockDriver {
  const only = `${name}://`;
  return {
    name,
    kind: 'protocol',
    protocolPrefixes: [only],
    // Size and read-zeroes shape the device: given, the node shows a json: name.
    strongOptions: ['size', 'read-zeroes'],
    refreshFilename(_node, fullOptions) {
      return fullOptions.every(([k]) => k === 'driver' || k === 'filename' || k === 'latency-ns') ? only : '';
    },
    parseFilename(filename: string): Record<string, unknown> {
      if (filename !== only) throw einval(`The only allowed filename for this driver is '${only}'`);
      return {};
    },
    async open(node: BlockNode, options: OptionReader): Promise<DriverInstance> {
      const filename = options.string('filename');
      if (filename !== undefined && filename !== only) {
        throw einval(`The only allowed filename for this driver is '${only}'`);
      }
      const size = options.size('size', 1 << 30);
      // QEMU reads latency-ns as a 64-bit number and refuses what is negative as a signed one.
      const rawLatency = options.raw('latency-ns');
      if ((typeof rawLatency === 'string' && /^\s*-\s*[0-9]+\s*$/.test(rawLatency)) || (typeof rawLatency === 'number' && rawLatency < 0)) {
        throw einval('latency-ns is invalid');
      }
      const latency = options.uint('latency-ns', 0);
      if (latency > MAX_LATENCY_NS) throw einval(`latency-ns ${latency} is more than an hour`);
      const readZeroes = options.bool('read-zeroes', false);
      return new NullInstance(size, readZeroes, latency / 1e6, node);
    },
  } satisfies BlockDriver;
}

/** QEMU's null-co. */
export const nullDriver = nullVariant('null-co');
/** QEMU's null-aio (the same here: requests complete the same way). */
export const nullAioDriver = nullVariant('null-aio');
