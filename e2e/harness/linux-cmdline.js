/**
 * The Linux guest's kernel command line (scripts/build-linux-guest.mjs records
 * it in build/linux-guest/manifest.json; the harness and the demo boot with it).
 * Everything past the console skips work that costs seconds in an emulator and
 * that the guest does not need: PnP BIOS and ISA PnP scans, the crypto self
 * tests, zeroing every allocation, security modules, loading the built-in
 * certificates (modules are unsigned: build-linux-guest.mjs strips them).
 */
export const LINUX_CMDLINE = [
  'console=ttyS0',
  'quiet',
  'mitigations=off',
  'tsc=reliable',
  'pnpbios=off',
  'noisapnp',
  'cryptomgr.notests',
  'init_on_alloc=0',
  'lsm=capability',
  'audit=0',
  'nowatchdog',
  'initcall_blacklist=load_system_certificate_list',
].join(' ');
