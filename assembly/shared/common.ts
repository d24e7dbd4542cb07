// Status codes shared by every module; src/wasm/loader.ts (WasmStatus) has the same numbers.
// Non-negative results are successes.

/** Bad arguments from the caller. */
export const E_INVAL: i32 = -1;
/** Corrupt input. */
export const E_CORRUPT: i32 = -2;
/** Output would exceed the declared size. */
export const E_OVERFLOW: i32 = -3;
/** Input ended before the stream did. */
export const E_TRUNCATED: i32 = -4;
/** Value does not fit (refcount overflow / underflow). */
export const E_RANGE: i32 = -5;
/** No memory. */
export const E_NOMEM: i32 = -6;
/** Unsupported feature of the input. */
export const E_NOTSUP: i32 = -7;
/** Checksum mismatch. */
export const E_CHECKSUM: i32 = -8;
