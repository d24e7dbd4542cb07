/**
 * block_set_io_throttle (QEMU 7.2's qmp_block_set_io_throttle): I/O limits
 * on a device's BlockBackend. The device is found by `device` (its name) or
 * `id` (a qdev id: the worker's disks have none); the arguments make one
 * whole new config (what is left out is 0, burst lengths 1), checked as
 * QEMU's throttle_is_valid. Limits put the backend in a throttle group
 * (`group`, else the device's name), shared by the devices naming the same
 * group; all limits 0 take them off. Offered only where there are devices
 * (the worker): qemu-storage-daemon has no such command.
 */
import { BlockError } from '../core/errors.js';
import { ThrottleGroup, ThrottleGroupMember, throttleGroups } from '../filters/throttle-group.js';
import { ThrottleConfig, type ThrottleLimits } from '../filters/throttle-config.js';
import type { BlockQmp } from './block-qmp.js';
import type { QmpDevice } from './commands-blockstats.js';
import type { QmpCommand } from './dispatcher.js';
import { QmpError, genericError } from './errors.js';
import { m, struct } from './schema.js';

/** BlockIOThrottle's members and the ThrottleLimits name each sets. */
const FIELDS: ReadonlyArray<readonly [string, keyof ThrottleLimits, boolean]> = [
  ['bps', 'bps-total', true], ['bps_rd', 'bps-read', true], ['bps_wr', 'bps-write', true],
  ['iops', 'iops-total', true], ['iops_rd', 'iops-read', true], ['iops_wr', 'iops-write', true],
  ['bps_max', 'bps-total-max', false], ['bps_rd_max', 'bps-read-max', false], ['bps_wr_max', 'bps-write-max', false],
  ['iops_max', 'iops-total-max', false], ['iops_rd_max', 'iops-read-max', false], ['iops_wr_max', 'iops-write-max', false],
  ['bps_max_length', 'bps-total-max-length', false], ['bps_rd_max_length', 'bps-read-max-length', false],
  ['bps_wr_max_length', 'bps-write-max-length', false], ['iops_max_length', 'iops-total-max-length', false],
  ['iops_rd_max_length', 'iops-read-max-length', false], ['iops_wr_max_length', 'iops-write-max-length', false],
  ['iops_size', 'iops-size', false],
];

const blockIoThrottle = struct('block_set_io_throttle', [
  m('*device', 'str'),
  m('*id', 'str'),
  ...FIELDS.map(([name, , required]) => m(required ? name : `*${name}`, 'int')),
  m('*group', 'str'),
]);

/** Every limit at its "not set" value: rates 0, burst lengths 1, no operation size. */
function emptyLimits(): ThrottleLimits {
  const out: ThrottleLimits = {};
  for (const [, name] of FIELDS) out[name] = name.endsWith('-length') ? 1 : 0;
  return out;
}

/** One throttled device: its group membership. */
interface Throttled {
  member: ThrottleGroupMember;
  group: ThrottleGroup;
}

/** block_set_io_throttle of `q` over the host's `devices`. */
export function ioThrottleCommands(q: BlockQmp, devices: () => QmpDevice[]): QmpCommand[] {
  // The BlockBackends' groups (QEMU's are the same namespace as throttle-group objects: a
  // group object of that name is joined; else one is made, named freely as QEMU allows).
  const groups = new Map<string, ThrottleGroup>();
  const throttled = new Map<QmpDevice['backend'], Throttled>();
  const findGroup = (name: string, config: ThrottleConfig): ThrottleGroup => {
    const object = throttleGroups(q.graph).get(name);
    if (object) return object;
    let g = groups.get(name);
    if (!g) groups.set(name, (g = new ThrottleGroup(name, config, throttleGroups(q.graph).clock)));
    return g;
  };
  const leave = (bb: QmpDevice['backend']) => {
    const t = throttled.get(bb);
    if (!t) return;
    bb.ioLimits = null;
    t.member.leave();
    throttled.delete(bb);
    if (t.group.memberCount === 0 && groups.get(t.group.name) === t.group) groups.delete(t.group.name);
  };
  return [
    {
      name: 'block_set_io_throttle',
      args: blockIoThrottle,
      run: (args) => {
        const device = args.device as string | undefined;
        const id = args.id as string | undefined;
        if ((device === undefined) === (id === undefined)) throw genericError("Need exactly one of 'device' and 'id'");
        // The worker's disks have no qdev ids (QEMU's blk_by_qdev_id finds no such device).
        if (id !== undefined) throw genericError(`Device '${id}' not found`);
        const dev = devices().find((d) => d.name === device);
        if (!dev) throw new QmpError('DeviceNotFound', `Device '${device}' not found`);
        const limits = emptyLimits();
        for (const [name, limit] of FIELDS) if (args[name] !== undefined) limits[limit] = args[name] as number;
        let config: ThrottleConfig;
        try {
          config = ThrottleConfig.fromLimits(limits);
        } catch (e) {
          throw genericError(e instanceof BlockError ? e.text : String(e));
        }
        const bb = dev.backend;
        if (!config.enabled()) {
          leave(bb);
          return;
        }
        let t = throttled.get(bb);
        const groupName = (args.group as string | undefined) ?? device!;
        if (!t || (args.group !== undefined && t.group.name !== groupName)) {
          leave(bb);
          const group = findGroup(groupName, config);
          const member = new ThrottleGroupMember(dev.name);
          member.join(group);
          t = { member, group };
          throttled.set(bb, t);
          bb.ioLimits = { intercept: (bytes, isWrite) => member.intercept(bytes, isWrite) };
        }
        t.group.setLimits(limits);
      },
    },
  ];
}
