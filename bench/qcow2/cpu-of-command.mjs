/**
 * Runs one `diskworker img` command in this process and prints the CPU time
 * (user + system, all threads, ms) it took, from just before the command to
 * its end: Node's boot and the loading of the CLI's modules are left out, so
 * what remains is the image open, the operation and the close. Used by
 * snapshot.bench.ts, whose 10-30 ms operations drown in the 150-250 ms
 * spread of a whole process's start-up.
 *
 *   node cpu-of-command.mjs <dist dir> img snapshot -c s1 image.qcow2
 */
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const [dist, ...argv] = process.argv.slice(2);
const load = (p) => import(pathToFileURL(join(dist, p)).href);
const { main } = await load('src/cli/main.js');
await load('src/cli/img/index.js');
const quiet = { stdout() {}, stderr: (s) => process.stderr.write(s), flush() {}, exit: (c) => process.exit(c) };
// The CLI as installed runs from a code cache (bytecode of what the command
// ran when the cache was made); these modules do not, so the first run would
// count V8 compiling the code. The same command on a small image (the
// DW_WARM_IMAGE copy, 1 MiB: too short for the optimising tiers to start)
// compiles it first.
const warm = process.env.DW_WARM_IMAGE;
if (warm) {
  const at = argv.length - 1;
  await main([...argv.slice(0, at), warm], quiet);
}
const t0 = process.cpuUsage();
const code = await main(argv, quiet);
const d = process.cpuUsage(t0);
process.stdout.write(`${(d.user + d.system) / 1000}\n`);
process.exitCode = code;
