/**
 * The throttle filter (QEMU 7.2's block/throttle.c): reads, writes, zero
 * writes and discards through it wait for the I/O limits of its throttle
 * group (src/filters/throttle-group.ts) before they reach its `file` node;
 * everything else passes through. Options: `throttle-group` (the name of a
 * group of the node's graph, required) and `file`. A drained section lets
 * the node's waiting requests go at once, so drains and closes never wait
 * for the limits.
 */
import type { BlockDriver, DriverInstance, ReopenState, ReqFlags } from '../core/driver.js';
import { ReqFlag } from '../core/driver.js';
import type { BlockNode } from '../core/node.js';
import { einval } from '../core/errors.js';
import type { OptionReader } from '../core/options.js';
import { ROLE_FILTERED_PRIMARY } from '../core/permissions.js';
import { ThrottleGroupMember, throttleGroups, type ThrottleGroup } from './throttle-group.js';

/** The option naming the group (QEMU's QEMU_OPT_THROTTLE_GROUP_NAME). */
export const THROTTLE_GROUP_OPTION = 'throttle-group';

/** The group `name` names in `node`'s graph, with QEMU's messages. */
function findGroup(node: BlockNode, name: unknown): ThrottleGroup {
  if (name === undefined || name === null) throw einval('Please specify a throttle group', { node: node.nodeName });
  const text = String(name);
  const group = throttleGroups(node.graph).get(text);
  if (!group) throw einval(`Throttle group '${text}' does not exist`, { node: node.nodeName });
  return group;
}

async function openThrottle(node: BlockNode, options: OptionReader): Promise<DriverInstance> {
  // QEMU opens the child before it looks at the group: a bad file is reported first.
  const file = (await node.openChild(options, 'file', ROLE_FILTERED_PRIMARY))!;
  let group: ThrottleGroup;
  try {
    group = findGroup(node, options.string(THROTTLE_GROUP_OPTION));
  } catch (e) {
    await node.graph.detachChild(file);
    throw e;
  }
  const member = new ThrottleGroupMember(node.nodeName);
  member.join(group);
  const childFlags = () => file.node.instance.supportedWriteFlags ?? 0;
  const childZeroFlags = () => file.node.instance.supportedZeroFlags ?? 0;

  return {
    getLength: () => file.length,
    get supportedWriteFlags(): ReqFlags {
      return childFlags() | ReqFlag.WRITE_UNCHANGED;
    },
    get supportedZeroFlags(): ReqFlags {
      return childZeroFlags() | ReqFlag.WRITE_UNCHANGED;
    },
    async preadv(offset, bytes, buf, flags) {
      await member.intercept(bytes, false);
      await file.preadv(offset, bytes, buf, flags);
    },
    async pwritev(offset, bytes, buf, flags) {
      await member.intercept(bytes, true);
      await file.pwritev(offset, bytes, buf, flags);
    },
    async pwriteZeroes(offset, bytes, flags) {
      await member.intercept(bytes, true);
      await file.pwriteZeroes(offset, bytes, flags);
    },
    async pdiscard(offset, bytes) {
      await member.intercept(bytes, true);
      await file.pdiscard(offset, bytes);
    },
    drainBegin: () => member.disableLimits(),
    drainEnd: () => member.enableLimits(),
    async reopenPrepare(state: ReopenState) {
      // Only a group named in the new options changes; checked now, switched on commit.
      const name = state.options[THROTTLE_GROUP_OPTION];
      state.opaque = name === undefined ? undefined : findGroup(node, name);
    },
    reopenCommit(state: ReopenState) {
      const next = state.opaque as ThrottleGroup | undefined;
      if (next && next !== member.group) member.join(next);
    },
    async close() {
      member.leave();
    },
  };
}

/** The throttle filter driver. */
export const throttleDriver: BlockDriver = {
  name: 'throttle',
  kind: 'filter',
  strongOptions: ['throttle-group'],
  open: openThrottle,
};
