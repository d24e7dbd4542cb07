/**
 * `diskworker img --help`.
 */
import { PROG, type Ctx } from './context.js';

const HELP = `${PROG} version 0.1.0 (qemu-img 7.2 compatible)
usage: ${PROG} [standard options] command [command options]
QEMU disk image utility, rebuilt on the DiskWorker block layer

    '-h', '--help'       display this help and exit
    '-V', '--version'    output version information and exit

Command syntax:
  amend [-f fmt] [-p] [-q] -o options [--force] filename
  bench [-c count] [-d depth] [-f fmt] [-o offset] [-q] [-s buffer_size] [-S step_size] [-t cache] [-w] [-U] [--pattern=pattern] [--flush-interval=flush_interval] filename
  check [-q] [-f fmt] [--output=ofmt] [-r [leaks | all]] [-U] filename
  commit [-q] [-f fmt] [-t cache] [-b base] [-r rate_limit] [-d] [-p] filename
  compare [-f fmt] [-F fmt] [-T src_cache] [-p] [-q] [-s] [-U] filename1 filename2
  convert [-c] [-f fmt] [-n] [-O output_fmt] [-B backing_file [-F backing_fmt]] [-o options] [-l snapshot_param] [-S sparse_size] [-p] [-q] [--target-is-zero] [-U] filename [filename2 [...]] output_filename
  create [-q] [-f fmt] [-b backing_file [-F backing_fmt]] [-u] [-o options] filename [size]
  dd [-f fmt] [-O output_fmt] [-U] [bs=block_size] [count=blocks] [skip=blocks] if=input of=output
  info [-f fmt] [--output=ofmt] [--backing-chain] [-U] filename
  map [-f fmt] [--output=ofmt] [--start-offset=offset] [--max-length=len] [-U] filename
  measure [--output=ofmt] [-O output_fmt] [-o options] [--size N | [-f fmt] [-l snapshot_param] filename]
  rebase [-f fmt] [-t cache] [-T src_cache] [-p] [-q] [-u] [-U] -b backing_file [-F backing_fmt] filename
  resize [-f fmt] [--preallocation=prealloc] [-q] [--shrink] filename [+ | -]size
  snapshot [--object objectdef] [--image-opts] [-U] [-q] [-l | -a snapshot | -c snapshot | -d snapshot] filename
  bitmap (--merge SOURCE | --add | --remove | --clear | --enable | --disable)... [-b source_file [-F source_fmt]] [-g granularity] [--object objectdef] [--image-opts | [-f fmt]] filename bitmap

Sizes take the suffixes k, M, G, T, P, E (powers of 1024).
`;

export function help(ctx: Ctx): number {
  ctx.out(HELP);
  return 0;
}
