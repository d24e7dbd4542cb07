/** `diskworker nbd --help` and `--version` texts (qemu-nbd's options, described in our words). */

export const NBD_VERSION = 'diskworker nbd version 0.1.0 (qemu-nbd 7.2 compatible)\n';

export const NBD_USAGE = `Usage: diskworker nbd [OPTIONS] FILE
Serve a disk image over NBD (the options of qemu-nbd 7.2)

  -h, --help                print this text and exit
  -V, --version             print the version and exit

Where to listen:
  -k, --socket=PATH         Unix socket at PATH (absolute)
  -p, --port=PORT           TCP port (default 10809)
  -b, --bind=ADDRESS        TCP address (default 0.0.0.0)
  -e, --shared=NUM          serve up to NUM clients at once, 0 for any (default 1)
  -t, --persistent          keep running after the last client leaves
  -v, --verbose             accepted (dropped connections are always reported)
  -x, --export-name=NAME    name of the export (default: the empty name)
  -D, --description=TEXT    description sent to clients that list exports
  --fork                    run in the background once serving
  --pid-file=PATH           write the server's process id to PATH

What to export:
  -f, --format=FORMAT       image format (raw, qcow2, ...); probed if absent
  --image-opts              FILE is a list of block options (driver=...,...)
  -o, --offset=OFFSET       export the image from byte OFFSET on
  -r, --read-only           refuse writes
  -s, --snapshot            writes go to a temporary overlay, dropped at exit
  -l, --load-snapshot=SNAP  export internal snapshot SNAP read-only; SNAP is an
                            id or name, or snapshot.id=ID,snapshot.name=NAME
  -A, --allocation-depth    offer the qemu:allocation-depth context
  -B, --bitmap=NAME         offer dirty bitmap NAME as qemu:dirty-bitmap:NAME
  -n, --nocache             same as --cache=none
  --cache=MODE              none, writeback (default), writethrough,
                            directsync or unsafe
  --aio=MODE                threads, native or io_uring (accepted, no effect)
  --discard=MODE            ignore (default) or unmap
  --detect-zeroes=MODE      off (default), on or unmap
  --object SPEC             accepted for compatibility; creates nothing
  -T, --trace SPEC          accepted for compatibility; no trace points

Not available: -c/--connect and -d/--disconnect (kernel /dev/nbdN), -L/--list,
TLS (--tls-creds, --tls-authz, --tls-hostname), --selinux-label.
`;
