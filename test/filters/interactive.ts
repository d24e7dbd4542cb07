/**
 * Runs one interactive qemu-io session (commands on stdin, as QEMU's iotests'
 * QemuIoInteractive) through QEMU 7.2's qemu-io and through `diskworker io`,
 * calling `probe` after the open, after each command has completed and after
 * the tool has exited: what a file looks like while an image is open (the
 * preallocate filter's grown file, for one).
 */
import { spawn } from 'node:child_process';
import { main } from '../../src/cli/main.js';
import type { RunResult } from '../cli/harness.js';

export interface Session<T> {
  run: RunResult;
  /** probe() after the open, after each command, and after exit. */
  probes: T[];
}

const PROMPT = 'qemu-io> ';

const count = (text: string, what: string) => text.split(what).length - 1;

/** The session through QEMU's qemu-io, each command sent once the previous one has printed its prompt. */
export function theirsSession<T>(args: string[], cwd: string, commands: string[], probe: () => T): Promise<Session<T>> {
  return new Promise((resolve, reject) => {
    const child = spawn('qemu-io', args, { cwd, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let sent = 0;
    let exited = false;
    const probes: T[] = [];
    const timer = setTimeout(() => child.kill('SIGKILL'), 50_000);
    const step = () => {
      // One prompt per command read, plus the first: the previous command is done.
      while (!exited && count(stdout, PROMPT) > sent) {
        probes.push(probe());
        if (sent < commands.length) child.stdin.write(commands[sent]! + '\n');
        else child.stdin.end();
        sent++;
      }
    };
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString('utf8');
      step();
    });
    child.stderr.on('data', (d: Buffer) => void (stderr += d.toString('utf8')));
    child.on('error', reject);
    child.on('close', (code) => {
      exited = true;
      clearTimeout(timer);
      probes.push(probe());
      resolve({ run: { code: code ?? -1, stdout, stderr }, probes });
    });
  });
}

/** The same session through diskworker io in this process (cwd switched for the call). */
export async function oursSession<T>(args: string[], cwd: string, commands: string[], probe: () => T): Promise<Session<T>> {
  let stdout = '';
  let stderr = '';
  const probes: T[] = [];
  const old = process.cwd();
  process.chdir(cwd);
  try {
    const code = await main(['io', ...args], {
      stdout: (s) => void (stdout += s),
      stderr: (s) => void (stderr += s),
      // The interpreter asks for the next line once the previous command is done.
      stdin: async function* () {
        for (const c of commands) {
          probes.push(probe());
          yield c;
        }
        probes.push(probe());
      },
    });
    probes.push(probe());
    return { run: { code, stdout, stderr }, probes };
  } finally {
    process.chdir(old);
  }
}
