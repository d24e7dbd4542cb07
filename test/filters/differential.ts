/**
 * Runs the same qemu-io / qemu-img command lines through QEMU 7.2's tools and
 * through diskworker, each in its own copy of a directory, and collects what
 * the blkdebug tests compare: each run's exit code, stdout and stderr
 * (normalized), and `qemu-img check` of the images afterwards.
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Fixture, normalize, ours, theirs, type RunResult, type Tool } from '../cli/harness.js';

export interface Step {
  tool: Tool;
  args: string[];
}

export interface SideResult {
  runs: RunResult[];
  /** `qemu-img check` of each checked image: exit code and output. */
  checks: RunResult[];
}

/** What `qemu-img check` says about an image, read-only, with the leak lines dropped when asked. */
export function check(dir: string, image: string, ignoreLeaks: boolean): RunResult {
  const r = spawnSync('qemu-img', ['check', '-U', image], { cwd: dir, encoding: 'utf8' });
  if (!ignoreLeaks) return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
  // As QEMU's iotests' _check_test_img_ignore_leaks: leaks (exit code 3) count as clean.
  const drop = (text: string) =>
    text
      .split('\n')
      .filter((l) => !/^Leaked cluster|leaked clusters were found|waste of disk space|^Image end offset|^No errors were found/.test(l) && l !== '')
      .join('\n');
  return { code: r.status === 3 ? 0 : (r.status ?? -1), stdout: drop(r.stdout), stderr: drop(r.stderr) };
}

/**
 * Runs `steps` on a fresh copy of `fx` with each tool, after writing `files`
 * (a blkdebug config, for example) into the copy.
 */
export async function runBoth(
  fx: Fixture,
  steps: Step[],
  opts: { files?: Record<string, string>; check?: string[]; ignoreLeaks?: boolean } = {},
): Promise<{ theirs: SideResult; ours: SideResult }> {
  const side = async (run: (tool: Tool, args: string[], dir: string) => RunResult | Promise<RunResult>): Promise<SideResult> => {
    const dir = fx.copy();
    for (const [name, text] of Object.entries(opts.files ?? {})) writeFileSync(join(dir, name), text);
    const runs: RunResult[] = [];
    for (const s of steps) {
      const r = await run(s.tool, s.args, dir);
      runs.push({ code: r.code, stdout: normalize(r.stdout), stderr: normalize(r.stderr) });
    }
    const checks = (opts.check ?? []).map((img) => check(dir, img, opts.ignoreLeaks ?? false));
    return { runs, checks };
  };
  return { theirs: await side(theirs), ours: await side(ours) };
}
