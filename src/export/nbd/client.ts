/**
 * The state of one NBD connection, shared by the handshake and the
 * transmission phase: input queue, ordered output, and what was negotiated.
 */
import type { NbdExport } from './export.js';
import { ByteQueue, MessageSender, type NbdTransport } from './transport.js';

/** The contexts a client selected with NBD_OPT_SET_META_CONTEXT, for one export. */
export interface MetaSelection {
  exp: NbdExport;
  baseAllocation: boolean;
  allocationDepth: boolean;
  /** One flag per export bitmap. */
  bitmaps: boolean[];
  /** How many contexts were selected (0: BLOCK_STATUS is not negotiated). */
  count: number;
}

/** A failure that ends the connection (nothing can be answered). */
export class NbdConnectionError extends Error {}

export class NbdClient {
  readonly input = new ByteQueue();
  structuredReply = false;
  exp: NbdExport | null = null;
  meta: MetaSelection | null = null;
  closed = false;
  private readonly sender: MessageSender;

  constructor(readonly transport: NbdTransport) {
    this.sender = new MessageSender(transport, () => this.closed);
  }

  /**
   * Sends the parts as one message: messages never interleave. After the
   * connection closed, sends are dropped.
   */
  send(...parts: Uint8Array[]): Promise<void> {
    return this.sender.send(parts);
  }

  /** Closes the transport once; queued input reads end. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.input.end();
    this.transport.close();
  }
}

/** The selected bitmap contexts count for `exp`, or none when the meta selection names another export. */
export function metaFor(client: NbdClient, exp: NbdExport): MetaSelection | null {
  return client.meta && client.meta.exp === exp ? client.meta : null;
}
