/**
 * The file system calls file-posix makes that Node has no API for:
 * lseek(SEEK_DATA / SEEK_HOLE), which block status asks where data and holes
 * are, and fallocate, with which QEMU punches holes (discard, unmapping zero
 * writes), zeroes ranges (FALLOC_FL_ZERO_RANGE) and preallocates
 * (preallocation=falloc). Perl (part of every Debian system: perl-base is
 * Essential) makes them for us: one Perl process per Node process, started
 * when first needed, with its own descriptor of each file that asks.
 *
 * Not the image lock holder's process (node-file-lock-holder.ts): closing a
 * descriptor there would drop that process's locks on the file. This process
 * takes no locks, so its descriptors come and go freely. It ends when its
 * stdin closes, that is when this process ends.
 *
 * Protocol, one line each way, answered in order:
 * - `o <id> <hex path>`: open the file (read-write, else read-only) as `<id>`, answered `ok <inode>`;
 * - `s <id> <whence> <offset>`: lseek, answered `ok <position>`;
 * - `f <id> <mode> <offset> <length>`: fallocate;
 * - `c <id>`: close;
 * each answered `ok …` or `e <errno>`.
 */
import { PerlProcess } from './perl-process.js';

const PERL = String.raw`
use strict; use warnings;
$| = 1;
my $nr = shift @ARGV;
my %fh;
while (my $line = <STDIN>) {
  chomp $line;
  my @a = split / /, $line;
  my $c = $a[0];
  if ($c eq 'o') {
    my $path = pack('H*', $a[2]);
    my $f;
    if (sysopen($f, $path, 2) || sysopen($f, $path, 0)) { $fh{$a[1]} = $f; print 'ok ', (stat($f))[1], "\n"; } else { print 'e ', $! + 0, "\n"; }
  } elsif (!defined $fh{$a[1]}) {
    print "e 9\n";
  } elsif ($c eq 's') {
    my $r = sysseek($fh{$a[1]}, $a[3] + 0, $a[2] + 0);
    if (defined $r) { print 'ok ', $r + 0, "\n"; } else { print 'e ', $! + 0, "\n"; }
  } elsif ($c eq 'f') {
    my $r = syscall($nr + 0, fileno($fh{$a[1]}), $a[2] + 0, $a[3] + 0, $a[4] + 0);
    if ($r == 0) { print "ok\n"; } else { print 'e ', $! + 0, "\n"; }
  } elsif ($c eq 'c') {
    close(delete $fh{$a[1]}); print "ok\n";
  } else {
    print "e 22\n";
  }
}
`;

/** fallocate's system call number per CPU (Linux). */
const FALLOCATE_NR: Record<string, number> = { x64: 285, arm64: 47 };

/** lseek's whence values and fallocate's mode bits (Linux). */
export const SEEK_DATA = 3;
export const SEEK_HOLE = 4;
export const FALLOC_FL_KEEP_SIZE = 0x01;
export const FALLOC_FL_PUNCH_HOLE = 0x02;
export const FALLOC_FL_ZERO_RANGE = 0x10;

/** Linux errno values the callers tell apart. */
export const ERRNO = { EBADF: 9, ENXIO: 6, EBUSY: 16, EINVAL: 22, ENOTSUP: 95 } as const;

/** An answer: `ok` with the number that came with it, or the errno. */
export type OpResult = { ok: true; value: number } | { ok: false; errno: number };

/** The helper process of this Node process, or null where it cannot run. */
export class FileOps {
  private static instance: Promise<FileOps | null> | undefined;
  private readonly waiting: Array<(r: OpResult) => void> = [];
  private failed = false;
  private nextId = 1;
  private proc: PerlProcess | null = null;

  private constructor() {}

  /**
   * The helper, started on first use; null where it cannot work (not Linux on
   * x86_64 or aarch64, no Perl, DISKWORKER_FILE_OPS=off, or it failed before).
   */
  static get(): Promise<FileOps | null> {
    FileOps.instance ??= FileOps.start();
    return FileOps.instance.then((h) => (h && !h.failed ? h : null));
  }

  private static async start(): Promise<FileOps | null> {
    if (typeof process === 'undefined' || process.platform !== 'linux') return null;
    const nr = FALLOCATE_NR[process.arch];
    if (nr === undefined || process.env.DISKWORKER_FILE_OPS === 'off') return null;
    const h = new FileOps();
    h.proc = await PerlProcess.start(
      PERL,
      [String(nr)],
      (line) => h.onLine(line),
      () => h.fail(),
    );
    if (!h.proc) return null;
    // Started for real (perl exists and runs) once it answers.
    const probe = await h.send('c 0');
    return probe.ok || probe.errno === ERRNO.EBADF ? h : null;
  }

  /** Opens `path` in the helper; null when it cannot (the caller does without). */
  async open(path: string): Promise<FileOpsFile | null> {
    const id = this.nextId++;
    const r = await this.send(`o ${id} ${Buffer.from(path, 'utf8').toString('hex')}`);
    return r.ok ? new FileOpsFile(this, id, r.value) : null;
  }

  /** Sends one command; resolves with its answer (EIO-like errno 5 when the helper died). */
  send(line: string): Promise<OpResult> {
    if (this.failed || !this.proc) return Promise.resolve({ ok: false, errno: 5 });
    return new Promise<OpResult>((resolve) => {
      this.waiting.push(resolve);
      this.proc!.send(line);
    });
  }

  private onLine(line: string): void {
    const [word, num] = line.split(' ');
    this.waiting.shift()?.(word === 'ok' ? { ok: true, value: Number(num ?? 0) } : { ok: false, errno: Number(num) || 5 });
    if (!this.waiting.length) this.proc?.waiting(false);
  }

  private fail(): void {
    this.failed = true;
    for (const w of this.waiting.splice(0)) w({ ok: false, errno: 5 });
    this.proc?.waiting(false);
  }
}

/** One file open in the helper. */
export class FileOpsFile {
  private closed = false;

  constructor(
    private readonly ops: FileOps,
    private readonly id: number,
    /** The inode the helper opened (the caller checks it is its file's). */
    readonly inode: number,
  ) {}

  /** lseek(fd, offset, whence): the position, or the errno (ENXIO: no data / beyond the end). */
  seek(whence: typeof SEEK_DATA | typeof SEEK_HOLE, offset: number): Promise<OpResult> {
    return this.ops.send(`s ${this.id} ${whence} ${offset}`);
  }

  /** fallocate(fd, mode, offset, length): 0 or the errno (EOPNOTSUPP where the file system cannot). */
  fallocate(mode: number, offset: number, length: number): Promise<OpResult> {
    return this.ops.send(`f ${this.id} ${mode} ${offset} ${length}`);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.ops.send(`c ${this.id}`);
  }
}
