/** Minimal types for the parts of pako the qcow2 driver uses (pako ships no types). */
declare module 'pako' {
  interface DeflateOptions {
    level?: number;
    windowBits?: number;
    memLevel?: number;
    strategy?: number;
  }
  export function deflateRaw(data: Uint8Array, options?: DeflateOptions): Uint8Array;
  const pako: { deflateRaw: typeof deflateRaw };
  export default pako;
}
