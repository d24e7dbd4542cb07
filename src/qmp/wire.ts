/**
 * QMP's wire text: JSON as QEMU's qobject_to_json writes it (", " and ": "
 * separators, one object per line), or its pretty form (4-space indent).
 */

function compact(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(compact).join(', ')}]`;
  if (v !== null && typeof v === 'object') {
    const parts = Object.entries(v as Record<string, unknown>)
      .filter(([, x]) => x !== undefined)
      .map(([k, x]) => `${JSON.stringify(k)}: ${compact(x)}`);
    return `{${parts.join(', ')}}`;
  }
  return JSON.stringify(v) ?? 'null';
}

/** One QMP message as a line (with its newline). */
export function qmpLine(value: unknown, pretty = false): string {
  return (pretty ? JSON.stringify(value, null, 4) : compact(value)) + '\n';
}
