/**
 * The events of the quorum driver, named and shaped as QEMU's QAPI events
 * QUORUM_FAILURE and QUORUM_REPORT_BAD. The block layer has no event bus
 * (QEMU sends these to QMP monitors; qemu-io and qemu-img print nothing), so
 * each quorum node's instance keeps one listener (`quorumEvents(node)` in
 * quorum.ts).
 */
import type { BlockNode } from '../core/node.js';
import { STRERROR, type BlockError } from '../core/errors.js';

/** The operation a report is about (QAPI QuorumOpType). */
export type QuorumOpType = 'read' | 'write' | 'flush';

/** Sector range of a request, in 512-byte sectors as QEMU reports it. */
export interface SectorRange {
  'sector-num': number;
  'sectors-count': number;
}

/** No version of the data (or too few successful requests) reached the vote threshold. */
export interface QuorumFailureEvent {
  event: 'QUORUM_FAILURE';
  /** `reference`: the node-name of the quorum node (QEMU gives the device name of a named BlockBackend above it instead). */
  data: SectorRange & { reference: string };
}

/** One child failed a request, or its data lost the vote (then without `error`). */
export interface QuorumReportBadEvent {
  event: 'QUORUM_REPORT_BAD';
  data: SectorRange & { type: QuorumOpType; error?: string; 'node-name': string };
}

export type QuorumEvent = QuorumFailureEvent | QuorumReportBadEvent;
export type QuorumEventListener = (event: QuorumEvent) => void;

/** The listener slot of one quorum node. */
export interface QuorumEventHook {
  /** Called synchronously for each event of the node; null drops them. */
  listener: QuorumEventListener | null;
}

/** The range QEMU reports for a request: whole sectors covering it. */
export function sectorRange(offset: number, bytes: number): SectorRange {
  const start = Math.floor(offset / 512);
  const end = Math.ceil((offset + bytes) / 512);
  return { 'sector-num': start, 'sectors-count': end - start };
}

/** Builds the events of one quorum node and hands them to its hook. */
export class QuorumReporter {
  constructor(
    private readonly node: BlockNode,
    readonly hook: QuorumEventHook,
  ) {}

  /** QUORUM_FAILURE for the request at `offset`. */
  failure(offset: number, bytes: number): void {
    this.hook.listener?.({ event: 'QUORUM_FAILURE', data: { reference: this.node.nodeName, ...sectorRange(offset, bytes) } });
  }

  /** QUORUM_REPORT_BAD for `child`: `error` when its request failed, none when its data lost the vote. */
  bad(type: QuorumOpType, offset: number, bytes: number, child: BlockNode, error?: BlockError): void {
    const data: QuorumReportBadEvent['data'] = { type, 'node-name': child.nodeName, ...sectorRange(offset, bytes) };
    if (error) data.error = STRERROR[error.code] ?? error.text;
    this.hook.listener?.({ event: 'QUORUM_REPORT_BAD', data });
  }
}
