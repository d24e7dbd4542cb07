/**
 * One QMP client conversation (QEMU 7.2's monitor/qmp.c): the greeting,
 * capabilities negotiation, then commands; requests are checked as QEMU's
 * qmp_dispatch checks them before the command table is consulted. Input is
 * a stream of JSON messages (QmpJsonStream, json.ts); each gets one reply.
 */
import type { BlockQmp } from './block-qmp.js';
import { errorReply, type QmpReply } from './dispatcher.js';
import { QmpError, genericError } from './errors.js';
import { parseQmpJson, qdictKeyOrder } from './json.js';
import { checkArguments, isObject, m, struct } from './schema.js';

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
  /** Whether the client enabled out-of-band execution (qmp_capabilities' `enable`). */
  private oob = false;

  constructor(
    private readonly q: BlockQmp,
    /**
     * Whether the monitor offers the 'oob' capability: qemu-storage-daemon's
     * socket monitors do (their chardev can run in the monitor I/O thread).
     */
    private readonly offerOob = false,
  ) {}

  /** The greeting: DiskWorker's version in QEMU's shape (QEMU's numbers would claim to be QEMU) and the offered capabilities. */
  greeting(): QmpGreeting {
    const v = this.q.version;
    return { QMP: { version: { qemu: { major: v.major, minor: v.minor, micro: v.micro }, package: v.package }, capabilities: this.offerOob ? ['oob'] : [] } };
  }

  /** Handles one JSON text; resolves to the reply. */
  async handle(text: string): Promise<QmpReply> {
    let request: unknown;
    try {
      request = parseQmpJson(text);
    } catch (e) {
      return errorReply(e);
    }
    return this.handleValue(request);
  }

  /**
   * Whether `request` is to run out of band (QEMU's qmp_is_oob): it has
   * 'exec-oob' and no 'execute'. Such a request is answered at once, ahead
   * of the in-band ones still queued.
   */
  static isOob(request: unknown): boolean {
    return isObject(request) && 'exec-oob' in request && !('execute' in request);
  }

  /** Handles one parsed request (QEMU's qmp_dispatch); resolves to the reply. */
  async handleValue(request: unknown): Promise<QmpReply> {
    if (!isObject(request)) return errorReply(genericError('QMP input must be a JSON object'));
    const id = request.id;
    const reply = await this.dispatch(request, id);
    if ('error' in reply && this.mode === 'negotiation' && reply.error.class === 'CommandNotFound') {
      // QEMU's more useful text for any command before negotiation.
      return errorReply(new QmpError('CommandNotFound', "Expecting capabilities negotiation with 'qmp_capabilities'"), id);
    }
    return reply;
  }

  private async dispatch(req: Record<string, unknown>, id: unknown): Promise<QmpReply> {
    // The members are checked in QEMU's QDict order: with two bad ones, the same one is named.
    let execKey: string | undefined;
    for (const key of qdictKeyOrder(Object.keys(req))) {
      const value = req[key];
      if (key === 'execute' || (key === 'exec-oob' && this.oob)) {
        if (typeof value !== 'string') return errorReply(genericError(`QMP input member '${key}' must be a string`), id);
        if (execKey) return errorReply(genericError(`QMP input member '${key}' clashes with '${execKey}'`), id);
        execKey = key;
      } else if (key === 'arguments') {
        if (!isObject(value)) return errorReply(genericError("QMP input member 'arguments' must be an object"), id);
      } else if (key !== 'id') {
        return errorReply(genericError(`QMP input member '${key}' is unexpected`), id);
      }
    }
    if (!execKey) return errorReply(genericError("QMP input lacks member 'execute'"), id);
    const name = req[execKey] as string;
    const oob = execKey === 'exec-oob';
    const args = (req.arguments ?? {}) as Record<string, unknown>;
    const known = this.mode === 'negotiation' ? name === 'qmp_capabilities' : name === 'qmp_capabilities' || this.q.dispatcher.has(name);
    if (!known) return errorReply(new QmpError('CommandNotFound', `The command ${name} has not been found`), id);
    // No command of qemu-storage-daemon 7.2 may run out of band.
    if (oob) return errorReply(genericError(`The command ${name} does not support OOB`), id);
    if (name !== 'qmp_capabilities') return this.q.dispatcher.execute(name, args, id);
    try {
      checkArguments(args, capabilitiesArgs);
      if (this.mode === 'command') throw new QmpError('CommandNotFound', 'Capabilities negotiation is already complete, command ignored');
      const enable = (args.enable as string[] | undefined) ?? [];
      const unavailable = enable.filter((c) => !(c === 'oob' && this.offerOob));
      if (unavailable.length) throw genericError(`Capability ${unavailable.join(', ')} not available`);
      this.oob = enable.includes('oob');
    } catch (e) {
      return errorReply(e, id);
    }
    this.mode = 'command';
    return { return: {}, ...(id !== undefined ? { id } : {}) };
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
