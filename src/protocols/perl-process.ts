/**
 * A Perl helper process spoken to in lines (the image lock holder and the
 * file-ops helper: the system calls Node has no API for). Perl is part of
 * every Debian system (perl-base is Essential). The process must never keep
 * Node alive: it is unreferenced, and its pipes hold the event loop only
 * while answers are awaited. It ends when its stdin closes, that is when this
 * process ends, however it ends.
 */
import type { ChildProcess } from 'node:child_process';

/** One helper process: lines out, lines back. */
export class PerlProcess {
  private buffered = '';

  private constructor(
    private readonly child: ChildProcess,
    onLine: (line: string) => void,
    onFail: (e: Error) => void,
  ) {
    child.on('error', (e) => onFail(e));
    child.on('exit', (code, signal) => onFail(new Error(`perl helper exited (${signal ?? code})`)));
    child.stdin!.on('error', (e) => onFail(e));
    child.stdout!.setEncoding('latin1');
    child.stdout!.on('data', (chunk: string) => {
      this.buffered += chunk;
      for (let nl = this.buffered.indexOf('\n'); nl >= 0; nl = this.buffered.indexOf('\n')) {
        const line = this.buffered.slice(0, nl);
        this.buffered = this.buffered.slice(nl + 1);
        onLine(line);
      }
    });
    child.unref();
    this.waiting(false);
  }

  /**
   * Starts `perl -e script args…`; null where no child process can be
   * started (the caller then does without). `onLine` gets each line the
   * script prints; `onFail` when the process cannot start or ends.
   */
  static async start(script: string, args: string[], onLine: (line: string) => void, onFail: (e: Error) => void): Promise<PerlProcess | null> {
    try {
      const { spawn } = await import('node:child_process');
      return new PerlProcess(spawn('perl', ['-e', script, ...args], { stdio: ['pipe', 'pipe', 'ignore'] }), onLine, onFail);
    } catch {
      return null;
    }
  }

  /** The process id (its POSIX locks are ours in /proc/locks). */
  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Sends one line; the pipes hold the event loop until {@link waiting}(false). */
  send(line: string): void {
    this.waiting(true);
    this.child.stdin!.write(`${line}\n`);
  }

  /** Whether answers are awaited: only then do the pipes keep this process alive. */
  waiting(on: boolean): void {
    for (const s of [this.child.stdin, this.child.stdout] as Array<{ ref?: () => void; unref?: () => void } | null>) {
      if (on) s?.ref?.();
      else s?.unref?.();
    }
  }
}
