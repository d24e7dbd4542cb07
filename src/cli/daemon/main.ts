/**
 * `diskworker daemon`: qemu-storage-daemon 7.2 for what applies here. Opens
 * the --blockdev nodes, serves QMP on the --monitor sockets, and runs until
 * `quit`, SIGTERM or SIGINT, then cancels the jobs and closes the graph.
 */
import { unlinkSync, writeFileSync } from 'node:fs';
import { type CliIo, errHint, errText, fatalExit, strerror } from '../common.js';
import { addObject } from '../../qmp/objects.js';
import { createCliGraph } from '../node-graph.js';
import { BlockQmp } from '../../qmp/block-qmp.js';
import { addBlockdev } from '../../qmp/commands-nodes.js';
import { genericError, toQmpError } from '../../qmp/errors.js';
import { addBlockExport, BLOCK_EXPORT_OPTIONS, NBD_SERVER_OPTIONS, nbdServerFromOptions } from '../../qmp/commands-exports.js';
import { checkMembers } from '../../qmp/schema.js';
import { listenNbdServer } from '../../export/nbd/node-listen.js';
import { DaemonArgError, parseDaemonArgs, type ChardevSpec } from './options.js';
import { QmpSocketServer } from './server.js';

/** DiskWorker's version, reported in QEMU's VersionInfo shape (it is not QEMU's 7.2). */
export const DAEMON_VERSION = { major: 0, minor: 1, micro: 0, package: 'diskworker 0.1.0 (qemu-storage-daemon 7.2 compatible)' };

const PROG = 'diskworker daemon';

const HELP = `Usage: ${PROG} [options]
DiskWorker storage daemon (qemu-storage-daemon 7.2 compatible)

  -h, --help             display this help and exit
  -V, --version          output version information and exit

  --blockdev [driver=]<driver>[,node-name=<N>][,discard=ignore|unmap]
             [,cache.direct=on|off][,cache.no-flush=on|off]
             [,read-only=on|off][,auto-read-only=on|off]
             [,force-share=on|off][,detect-zeroes=on|off|unmap]
             [,driver specific parameters...]
                         configure a block node (JSON or key=value)

  --chardev socket,id=<id>,path=<path>,server=on,wait=off
                         a Unix socket server for a monitor

  --monitor [chardev=]name[,mode=control][,pretty[=on|off]]
                         configure a QMP monitor

  --nbd-server addr.type=unix,addr.path=<path>[,max-connections=<n>]
  --nbd-server addr.type=inet,addr.host=<host>,addr.port=<port>[,max-connections=<n>]
                         start an NBD server for exporting block nodes

  --export [type=]nbd,id=<id>,node-name=<node-name>[,name=<export-name>]
           [,writable=on|off][,writethrough=on|off][,description=<text>]
           [,bitmaps.0=<name>...][,allocation-depth=on|off]
                         export the specified block node over NBD

  --object help          list object types that can be added
  --object <type>,help   list properties for the given object type
  --object <type>[,<property>=<value>...]
                         create a new object of type <type> (throttle-group,
                         secret, ...); the 'id' property must be set.
                         iothread objects are accepted and unused: the
                         daemon has one I/O thread

  --pidfile <path>       write process ID to a file after startup
`;

/** `--object help`: qemu-storage-daemon's list, which has iothread besides qemu-img's types. */
/** Runs the daemon; resolves to the exit code once it has shut down. */
export async function daemonMain(argv: string[], io: CliIo): Promise<number> {
  const fail = (text: string, hint = ''): number => {
    io.stderr(`${PROG}: ${text}\n${hint}`);
    return 1;
  };
  let args;
  try {
    args = parseDaemonArgs(argv);
  } catch (e) {
    if (e instanceof DaemonArgError) return fail(e.message);
    throw e;
  }
  if (args.help) {
    io.stdout(HELP);
    return 0;
  }
  if (args.helpText !== undefined) {
    io.stdout(args.helpText);
    return 0;
  }
  if (args.version) {
    io.stdout(`${PROG} version 0.1.0 (qemu-storage-daemon 7.2 compatible)\n`);
    return 0;
  }
  const graph = createCliGraph();
  // Drivers' notices go out as they are (QEMU's fprintf, qcow2's corruption line); error reports
  // carry the program's name (error_report).
  graph.onNotice = (text) => io.stderr(`${text}\n`);
  graph.onReport = (text) => io.stderr(`${PROG}: ${text}\n`);
  // blkverify's mismatch ends the daemon, as it ends qemu-storage-daemon.
  graph.onFatal = fatalExit(io);
  const q = new BlockQmp(graph, DAEMON_VERSION);
  q.exportState.host = { listen: listenNbdServer };
  const chardevs = new Map<string, ChardevSpec>();
  const servers: QmpSocketServer[] = [];
  let queue: Promise<unknown> = Promise.resolve();
  const serial = <T>(fn: () => Promise<T>): Promise<T> => {
    const run = queue.then(fn, fn);
    queue = run.catch(() => undefined);
    return run;
  };
  let started: () => void = () => undefined;
  const ready = new Promise<void>((resolve) => (started = resolve));
  let requestQuit: () => void = () => undefined;
  const quitRequested = new Promise<void>((resolve) => (requestQuit = resolve));
  q.dispatcher.register({
    name: 'quit',
    args: null,
    run: () => {
      // After the reply is written.
      setImmediate(requestQuit);
    },
  });
  const shutdown = async (): Promise<void> => {
    for (const s of servers) await s.close();
    await q.close();
    if (args.pidfile !== undefined) {
      try {
        unlinkSync(args.pidfile);
      } catch {
        // already gone
      }
    }
  };
  try {
    for (const o of args.options) {
      if (o.kind === 'object') {
        let r;
        try {
          r = addObject(graph, o.text, { iothread: true });
        } catch (e) {
          throw new DaemonArgError(`--object ${o.text}: ${errText(e)}`, errHint(e));
        }
        if (r) {
          io.stdout(r.help);
          await shutdown();
          return 0;
        }
      } else if (o.kind === 'blockdev') {
        try {
          await addBlockdev(q, o.options, o.syntax);
        } catch (e) {
          throw new DaemonArgError(`--blockdev ${o.text}: ${toQmpError(e).message}`, errHint(e));
        }
      } else if (o.kind === 'nbd-server') {
        try {
          checkMembers(o.options, NBD_SERVER_OPTIONS, '', true);
          const n = nbdServerFromOptions(o.options);
          if (n.tlsCreds !== undefined) throw genericError(`No TLS credentials with id '${n.tlsCreds}'`);
          await q.exportState.start(n.addr, n.maxConnections);
        } catch (e) {
          throw new DaemonArgError(`--nbd-server ${o.text}: ${toQmpError(e).message}`);
        }
      } else if (o.kind === 'export') {
        try {
          BLOCK_EXPORT_OPTIONS.check(o.options, '', true);
          await addBlockExport(q, o.options);
        } catch (e) {
          throw new DaemonArgError(`--export ${o.text}: ${toQmpError(e).message}`);
        }
      } else if (o.kind === 'chardev') {
        if (chardevs.has(o.chardev.id)) throw new DaemonArgError(`--chardev ${o.text}: attempt to add duplicate property '${o.chardev.id}' to object (type 'container')`);
        chardevs.set(o.chardev.id, o.chardev);
      } else {
        const c = chardevs.get(o.monitor.chardev);
        if (!c) throw new DaemonArgError(`--monitor ${o.text}: chardev "${o.monitor.chardev}" not found`);
        const server = new QmpSocketServer(q, c.path, o.monitor.pretty, serial, ready);
        try {
          await server.listen();
        } catch (e) {
          throw new DaemonArgError(`--monitor ${o.text}: Failed to bind socket to ${c.path}: ${e instanceof Error ? e.message : String(e)}`);
        }
        servers.push(server);
      }
    }
    if (args.pidfile !== undefined) {
      try {
        writeFileSync(args.pidfile, `${process.pid}\n`);
      } catch (e) {
        // QEMU's wording: the path and the system's message (strerror).
        throw new DaemonArgError(`cannot create PID file: Could not create '${args.pidfile}': ${strerror(e)}`);
      }
    }
  } catch (e) {
    await shutdown().catch(() => undefined);
    if (e instanceof DaemonArgError) return fail(e.message, e.hint);
    throw e;
  }
  started();
  const onSignal = () => requestQuit();
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  process.on('SIGHUP', onSignal);
  try {
    await quitRequested;
    // Let commands already queued finish before the graph goes.
    await serial(async () => undefined);
    await shutdown();
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
    process.off('SIGHUP', onSignal);
  }
  return 0;
}
