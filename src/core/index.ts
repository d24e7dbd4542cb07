/** The block layer proper: no DOM and no Node imports. */
export * from './errors.js';
export * from './driver.js';
export * from './limits.js';
export * from './permissions.js';
export * from './options.js';
export { BdrvChild, parentName, type RootParent, type ChildParent } from './child.js';
export { BlockNode, newIoStats, type IoStats, type OpStats, type DetectZeroes, type BeforeWriteHook } from './node.js';
export { BlockGraph, type BackingPolicy, type OpenFlags } from './graph.js';
export { joinRelative } from './backing-open.js';
export { BlockBackend, type BackendOptions, type ErrorAction, type StopEvent } from './backend.js';
export { RemovableMedia, RemovableBackend, type MediaEvents, type RemovableMediaOptions } from './removable-media.js';
export { drainBegin, drainEnd, drained, type DrainToken } from './drain.js';
export { blockStatus, checkRequest, flush, MAX_REQUEST_END } from './request-path.js';
export { probeFormat, probeFormatName } from './probe.js';
export { isZeroBuffer, setZeroDetector } from './zero-detect.js';
export { blockStatusAbove, isAllocatedAbove, type StatusAbove } from './block-status.js';
export { createImage } from './create.js';
export { DEBUG_EVENTS, isDebugEvent, debugEvent, findDebugger, type DebugEvent, type BlockDebugger } from './debug-event.js';
