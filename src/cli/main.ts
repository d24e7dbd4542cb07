#!/usr/bin/env node
/**
 * The `diskworker` command: `diskworker img ...` (qemu-img),
 * `diskworker io ...` (qemu-io) and `diskworker nbd ...` (qemu-nbd). {@link main} runs in-process and returns the
 * exit code, so tests can call it without spawning a process.
 */
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { CliIo } from './common.js';
import { BlockBufferedOutput, CliExit } from './common.js';
import { allowCopyWithoutOptimizer } from './img/convert-jit.js';

export type { CliIo } from './common.js';

const USAGE = `Usage: diskworker <command> [args...]

Commands:
  img    disk image utility, like qemu-img ('diskworker img --help')
  io     disk exerciser, like qemu-io ('diskworker io --help')
  nbd    NBD server for an image, like qemu-nbd ('diskworker nbd --help')
  daemon storage daemon with a QMP monitor, like qemu-storage-daemon ('diskworker daemon --help')
`;

/** Runs the tool with `argv` (without node and script); resolves to the exit code. */
export async function main(argv: string[], io: CliIo): Promise<number> {
  const [tool, ...rest] = argv;
  try {
    if (tool === 'img') {
      const { imgMain } = await import('./img/index.js');
      return await imgMain(rest, io);
    }
    if (tool === 'io') {
      const { ioMain } = await import('./io/main.js');
      return await ioMain(rest, io);
    }
    if (tool === 'daemon') return await (await import('./daemon/main.js')).daemonMain(rest, io);
    if (tool === 'nbd') {
      const { nbdMain } = await import('./nbd/main.js');
      return await nbdMain(rest, io);
    }
    if (tool === '-h' || tool === '--help') {
      io.stdout(USAGE);
      return 0;
    }
    io.stderr(tool === undefined ? 'diskworker: missing command\n' : `diskworker: unknown command '${tool}'\n`);
    io.stderr(USAGE);
    return 1;
  } catch (e) {
    if (e instanceof CliExit) {
      if (e.message) io.stderr(`diskworker ${tool}: ${e.message}\n${e.hint}`);
      return e.exitCode;
    }
    const msg = e instanceof Error ? e.message : String(e);
    io.stderr(`diskworker ${tool ?? ''}: ${msg}\n`);
    return 1;
  }
}

/**
 * Standard streams of the process, with stdin read line by line; stdout is
 * block-buffered when it is not a terminal, as a C program's. `edit` changes
 * each text before it is written (the iotests wrapper renames the tools).
 */
export function processIo(edit: (text: string) => string = (t) => t): CliIo {
  const isTTY = !!process.stdout.isTTY;
  const held = isTTY ? undefined : new BlockBufferedOutput((chunk) => void process.stdout.write(chunk));
  return {
    stdout: held ? (s) => held.add(edit(s)) : (s) => void process.stdout.write(edit(s)),
    stderr: (s) => void process.stderr.write(edit(s)),
    flush: () => held?.flush(),
    exit: (code) => {
      held?.flush();
      process.exit(code);
    },
    isTTY,
    stdin: async function* () {
      const { createInterface } = await import('node:readline');
      const rl = createInterface({ input: process.stdin, terminal: false });
      for await (const line of rl) yield line;
    },
  };
}

const isEntry = (() => {
  if (typeof process === 'undefined' || !process.argv[1]) return false;
  try {
    return realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
})();

/**
 * Runs the CLI as this process: arguments from argv, the process's streams,
 * the exit code set when done. The bin's launcher (dist/cli/diskworker.js)
 * calls it; so does this module when it is the entry point itself.
 */
export function runAsProcess(): void {
  // `diskworker img map big.qcow2 | head`: a closed pipe ends the output quietly.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
      throw e;
    });
  }
  const io = processIo();
  allowCopyWithoutOptimizer();
  main(process.argv.slice(2), io).then(
    (code) => {
      io.flush?.();
      process.exitCode = code;
    },
    (e) => {
      io.flush?.();
      process.stderr.write(`diskworker: ${e instanceof Error ? e.message : String(e)}\n`);
      process.exitCode = 1;
    },
  );
}

if (isEntry) runAsProcess();
