/**
 * One QMP client conversation (QEMU 7.2's monitor/qmp.c): the greeting,
 * capabilities negotiation, then commands; requests are checked as QEMU's
 * qmp_dispatch checks them before the command table is consulted. Input is
 * a stream of JSON texts ({@link QmpJsonSplitter}); each gets one reply.
 */
import type { BlockQmp } from './block-qmp.js';
import { errorReply, type QmpReply } from './dispatcher.js';
import { QmpError, genericError } from './errors.js';
import { checkArguments, m, struct } from './schema.js';

/** The greeting's shape (QEMU's QMP greeting). */
export interface QmpGreeting {
  QMP: { version: { qemu: { major: number; minor: number; micro: number }; package: string }; capabilities: string[] };
}

const capabilitiesArgs = struct('qmp_capabilities', [m('*enable', { list: { enum: ['oob'] } })]);

/** Longest JSON text a client may send (QEMU's parser limit is of this order: 64 MiB). */
export const MAX_REQUEST_BYTES = 64 << 20;

/** A client's conversation state. */
export class QmpSession {
  /** Until qmp_capabilities only that command is accepted; events are sent in command mode only. */
  mode: 'negotiation' | 'command' = 'negotiation';

  constructor(private readonly q: BlockQmp) {}

  /**
   * The greeting. The version is DiskWorker's own in QEMU's shape (QEMU's
   * numbers would claim to be QEMU); no capability is offered (no OOB).
   */
  greeting(): QmpGreeting {
    const v = this.q.version;
    return { QMP: { version: { qemu: { major: v.major, minor: v.minor, micro: v.micro }, package: v.package }, capabilities: [] } };
  }

  /** Handles one JSON text; resolves to the reply. */
  async handle(text: string): Promise<QmpReply> {
    let request: unknown;
    try {
      request = JSON.parse(text);
    } catch (e) {
      return errorReply(genericError(`JSON parse error, ${e instanceof Error ? e.message : String(e)}`));
    }
    if (typeof request !== 'object' || request === null || Array.isArray(request)) {
      return errorReply(genericError('QMP input must be a JSON object'));
    }
    const req = request as Record<string, unknown>;
    const id = req.id;
    for (const [key, value] of Object.entries(req)) {
      if (key === 'execute') {
        if (typeof value !== 'string') return errorReply(genericError("QMP input member 'execute' must be a string"), id);
      } else if (key === 'arguments') {
        if (typeof value !== 'object' || value === null || Array.isArray(value)) {
          return errorReply(genericError("QMP input member 'arguments' must be an object"), id);
        }
      } else if (key !== 'id') {
        return errorReply(genericError(`QMP input member '${key}' is unexpected`), id);
      }
    }
    if (req.execute === undefined) return errorReply(genericError("QMP input lacks member 'execute'"), id);
    const name = req.execute as string;
    const args = (req.arguments ?? {}) as Record<string, unknown>;
    if (this.mode === 'negotiation') {
      if (name !== 'qmp_capabilities') {
        return errorReply(new QmpError('CommandNotFound', "Expecting capabilities negotiation with 'qmp_capabilities'"), id);
      }
      try {
        checkArguments(args, capabilitiesArgs);
        for (const cap of (args.enable as string[] | undefined) ?? []) throw genericError(`Capability '${cap}' not available`);
      } catch (e) {
        return errorReply(e, id);
      }
      this.mode = 'command';
      return { return: {}, ...(id !== undefined ? { id } : {}) };
    }
    if (name === 'qmp_capabilities') {
      return errorReply(new QmpError('CommandNotFound', 'Capabilities negotiation is already complete, command ignored'), id);
    }
    return this.q.dispatcher.execute(name, args, id);
  }
}

/**
 * Splits a byte stream into JSON texts as QEMU's streaming parser does: an
 * object or array ends when its brackets balance; a bare value ends at white
 * space. Bounded by {@link MAX_REQUEST_BYTES}.
 */
export class QmpJsonSplitter {
  private pending = '';
  private depth = 0;
  private inString = false;
  private escaped = false;

  /** Adds input; returns the complete texts it finished. Throws when one text is too long. */
  push(chunk: string): string[] {
    const out: string[] = [];
    for (const ch of chunk) {
      if (this.inString) {
        this.pending += ch;
        if (this.escaped) this.escaped = false;
        else if (ch === '\\') this.escaped = true;
        else if (ch === '"') this.inString = false;
        continue;
      }
      if (this.depth === 0 && /\s/.test(ch)) {
        if (this.pending.trim() !== '') out.push(this.pending);
        this.pending = '';
        continue;
      }
      this.pending += ch;
      if (ch === '"') this.inString = true;
      else if (ch === '{' || ch === '[') this.depth++;
      else if (ch === '}' || ch === ']') {
        this.depth = Math.max(0, this.depth - 1);
        if (this.depth === 0) {
          out.push(this.pending);
          this.pending = '';
        }
      }
      if (this.pending.length > MAX_REQUEST_BYTES) {
        this.pending = '';
        this.depth = 0;
        throw genericError('JSON parse error, request too large');
      }
    }
    return out;
  }
}
