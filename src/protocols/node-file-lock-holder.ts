/**
 * The take half of QEMU's image locks in Node (issue #16; the test half is
 * node-file-locks.ts).
 *
 * QEMU's file-posix marks its use of an image with shared fcntl locks on
 * single bytes (100+i while it holds permission bit i, 200+i while it does
 * not share bit i) and tests other processes' locks before it takes more.
 * Node cannot call fcntl, but Perl (part of every Debian system: perl-base is
 * Essential) can: one Perl process per Node process holds POSIX read locks on
 * those bytes for every open node-file, and QEMU's F_OFD_GETLK sees them, as
 * OFD and POSIX locks conflict with each other. The locks live as long as the
 * Perl process, which ends when its stdin closes, that is when this process
 * ends, however it ends: as QEMU's locks die with QEMU.
 *
 * POSIX locks belong to a process, not to an open file, and closing any
 * descriptor of a file drops all of the process's locks on it. So the holder
 * keeps one descriptor per file (device and inode) and the union of what
 * every open node of this process wants locked on it; the Perl side only
 * ever makes a file's locked set equal to what it is sent.
 *
 * Protocol, one line each way, in order: `<seq> <key> <hex path> <bytes,…|->`
 * is answered `<seq> ok` or `<seq> <errno>`.
 */
import { PerlProcess } from './perl-process.js';

/** struct flock of LP64 Linux (x86_64, aarch64): type, whence, start, len, pid. */
const PERL = String.raw`
use strict; use warnings; use Fcntl;
$| = 1;
my (%fh, %held);
sub setlk { my ($f, $type, $byte) = @_; return fcntl($f, F_SETLK, pack('s s x4 q q l x4', $type, 0, $byte, 1, 0)); }
while (my $line = <STDIN>) {
  chomp $line;
  my ($seq, $key, $hex, $list) = split / /, $line;
  my %want = map { $_ => 1 } grep { length } split /,/, ($list eq '-' ? '' : $list);
  my $err = 0;
  if (!%want) {
    close($fh{$key}) if $fh{$key};
    delete $fh{$key}; delete $held{$key};
  } else {
    if (!$fh{$key}) {
      my $path = pack('H*', $hex);
      if (open(my $f, '<', $path)) { $fh{$key} = $f; $held{$key} = {}; } else { $err = $! + 0; }
    }
    if (!$err) {
      my $f = $fh{$key}; my $h = $held{$key};
      for my $b (keys %$h) { next if $want{$b}; setlk($f, F_UNLCK, $b); delete $h->{$b}; }
      for my $b (keys %want) { next if $h->{$b}; if (setlk($f, F_RDLCK, $b)) { $h->{$b} = 1; } else { $err = $! + 0; } }
    }
  }
  print "$seq ", ($err ? $err : 'ok'), "\n";
}
`;

/** The lock holder of this process, or null where it cannot run. */
export class LockHolder {
  private static instance: Promise<LockHolder | null> | undefined;
  /** key → (owner → bytes): what each open node wants locked. */
  private readonly wanted = new Map<string, Map<object, ReadonlySet<number>>>();
  private readonly waiting = new Map<number, { resolve: () => void; reject: (e: Error) => void }>();
  private seq = 0;
  private failed: Error | null = null;
  private proc: PerlProcess | null = null;

  private constructor() {}

  /**
   * The holder, started on first use; null where it cannot work (not Linux
   * on a 64-bit CPU, no child processes, or it failed before).
   */
  static get(): Promise<LockHolder | null> {
    // One start for concurrent first callers.
    LockHolder.instance ??= LockHolder.start();
    return LockHolder.instance;
  }

  private static async start(): Promise<LockHolder | null> {
    if (typeof process === 'undefined' || process.platform !== 'linux' || !['x64', 'arm64'].includes(process.arch)) return null;
    if (process.env.DISKWORKER_LOCK_HOLDER === 'off') return null;
    const h = new LockHolder();
    h.proc = await PerlProcess.start(
      PERL,
      [],
      (line) => h.onLine(line),
      (e) => h.fail(e),
    );
    return h.proc ? h : null;
  }

  /** The holder's process id: its locks are ours in /proc/locks. */
  get pid(): number | undefined {
    return this.failed ? undefined : this.proc?.pid;
  }

  /**
   * Makes `owner`'s locked bytes on file `key` (at `path`) equal to `bytes`
   * (empty: none). Resolves once the locks are in place; rejects if they
   * could not be taken (the lock is then not visible to QEMU).
   */
  set(key: string, path: string, owner: object, bytes: ReadonlySet<number>): Promise<void> {
    let owners = this.wanted.get(key);
    if (!owners) this.wanted.set(key, (owners = new Map()));
    if (bytes.size) owners.set(owner, bytes);
    else owners.delete(owner);
    const union = new Set<number>();
    for (const b of owners.values()) for (const x of b) union.add(x);
    if (!owners.size) this.wanted.delete(key);
    if (this.failed) return Promise.reject(this.failed);
    const seq = this.seq++;
    const list = union.size ? [...union].sort((a, b) => a - b).join(',') : '-';
    return new Promise<void>((resolve, reject) => {
      this.waiting.set(seq, { resolve, reject });
      this.proc!.send(`${seq} ${key} ${Buffer.from(path, 'utf8').toString('hex')} ${list}`);
    });
  }

  private onLine(line: string): void {
    const [seq, answer] = line.split(' ');
    const w = this.waiting.get(Number(seq));
    if (w) {
      this.waiting.delete(Number(seq));
      if (answer === 'ok') w.resolve();
      else w.reject(new Error(`Could not lock the image (errno ${answer})`));
    }
    if (!this.waiting.size) this.proc?.waiting(false);
  }

  private fail(e: Error): void {
    this.failed ??= new Error(`The image lock holder failed: ${e.message}`);
    for (const w of this.waiting.values()) w.reject(this.failed);
    this.waiting.clear();
    this.proc?.waiting(false);
  }
}
