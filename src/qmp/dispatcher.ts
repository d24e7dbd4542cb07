/**
 * The QMP command table and dispatcher (QEMU's qmp_dispatch): one table of
 * commands, each with its argument schema; a request is checked against the
 * schema before the command runs, and every answer is a `{"return": ...}` or
 * `{"error": {"class", "desc"}}` object carrying the request's `id`.
 */
import { QmpError, toQmpError } from './errors.js';
import { plainJson } from './json.js';
import { checkArguments, checkValue, type QapiCustom, type QapiStruct } from './schema.js';

/** One command of the table. */
export interface QmpCommand {
  name: string;
  /** The command's 'data' (null: takes no arguments; a custom type: a boxed union). */
  args: QapiStruct | QapiCustom | null;
  /**
   * Whether `run` gets the arguments as parsed (bigints, QmpDoubles: json.ts)
   * because it checks members the schema leaves open (object-add's properties).
   */
  rawNumbers?: boolean;
  /** Runs with checked arguments; the value is the reply's `return` (undefined: `{}`). */
  run(args: Record<string, unknown>): unknown;
}

/** A reply as it goes on the wire. */
export type QmpReply =
  | { return: unknown; id?: unknown }
  | { error: { class: string; desc: string }; id?: unknown };

/** The error reply for `e`, with `id` when the request had one. */
export function errorReply(e: unknown, id?: unknown): QmpReply {
  const q = toQmpError(e);
  return { error: { class: q.errorClass, desc: q.message }, ...(id !== undefined ? { id } : {}) };
}

/** The command table: look-up and the checked run of one command. */
export class QmpDispatcher {
  private readonly commands = new Map<string, QmpCommand>();

  /** Adds commands; a name must be new. */
  register(...commands: QmpCommand[]): void {
    for (const c of commands) {
      if (this.commands.has(c.name)) throw new Error(`QMP command '${c.name}' is already registered`);
      this.commands.set(c.name, c);
    }
  }

  /** Whether `name` is a command of the table. */
  has(name: string): boolean {
    return this.commands.has(name);
  }

  /** The names of every command, in registration order (query-commands). */
  names(): string[] {
    return [...this.commands.keys()];
  }

  /**
   * Runs `name` with `args`: CommandNotFound for a name not in the table,
   * the schema's error for bad arguments, else the command's answer.
   */
  async execute(name: string, args: Record<string, unknown>, id?: unknown): Promise<QmpReply> {
    const command = this.commands.get(name);
    if (!command) return errorReply(new QmpError('CommandNotFound', `The command ${name} has not been found`), id);
    try {
      if (command.args !== null && 'custom' in command.args) checkValue(args, command.args, '');
      else checkArguments(args, command.args);
      // The checks saw QEMU's number kinds; the command reads plain numbers.
      const value = await command.run(command.rawNumbers ? args : (plainJson(args) as Record<string, unknown>));
      return { return: value === undefined ? {} : value, ...(id !== undefined ? { id } : {}) };
    } catch (e) {
      return errorReply(e, id);
    }
  }
}
