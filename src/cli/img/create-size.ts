/**
 * Image sizes qemu-img create takes but this implementation cannot hold:
 * QEMU reads sizes up to INT64_MAX, we hold them exactly only up to 2^53.
 * Such a size is printed in "Formatting ..." as given, and the create then
 * fails as a size the driver refused (EFBIG), with QEMU's message.
 */
import type { CreateOptionSpec } from '../../core/driver.js';
import { parseSizeExact } from '../format.js';

const INT64_MAX = (1n << 63n) - 1n;

/** The decimal text of a size in (2^53, INT64_MAX], or undefined for any other text. */
export function hugeImageSize(text: string): string | undefined {
  const r = parseSizeExact(text);
  if (!r.ok || r.value <= BigInt(Number.MAX_SAFE_INTEGER) || r.value > INT64_MAX) return undefined;
  return r.value.toString();
}

/**
 * qemu-img create's message when the driver refused the size (EFBIG). QEMU
 * adds the cluster size hint whenever the format has a cluster size option
 * with a non-zero value, its default included.
 */
export function imageTooLargeMessage(fmt: string, specs: CreateOptionSpec[], values: Map<string, string>): string {
  const spec = specs.find((s) => s.name === 'cluster_size');
  const cluster = spec ? (values.get('cluster_size') ?? spec.default ?? '0') : '0';
  const hint = cluster !== '0' && cluster !== '' ? ' (try using a larger cluster size)' : '';
  return `The image size is too large for file format '${fmt}'${hint}`;
}
