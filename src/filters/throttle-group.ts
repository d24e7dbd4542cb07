/**
 * Throttle groups (QEMU 7.2's block/throttle-groups.c): one set of limits
 * shared by every throttle node that names the group. Each node is a
 * {@link ThrottleGroupMember} with a queue of waiting reads and one of
 * waiting writes. When the group's buckets are full, one timer per direction
 * is armed for the whole group, and when it fires the next member in
 * round-robin order that has a request waiting gets to run one, so members
 * share the limit fairly however many requests each one queues.
 *
 * Groups live in a registry per {@link BlockGraph} ({@link throttleGroups}),
 * by name, created with their limits (QEMU's `--object throttle-group`).
 * The clock is the registry's (or the group's): tests give one with virtual
 * time.
 */
import type { BlockGraph } from '../core/graph.js';
import { BlockError, einval } from '../core/errors.js';
import { REAL_TIMERS, type JobTimers } from '../jobs/job-types.js';
import { ThrottleConfig, ThrottleState, type ThrottleLimits } from './throttle-config.js';

/** Time source and timers of a group: `now()` in milliseconds. */
export type ThrottleClock = JobTimers;

/** 0: reads, 1: writes (zero writes and discards count as writes). */
type Direction = 0 | 1;
const DIRECTIONS: readonly Direction[] = [0, 1];

/** One user of a group: a throttle node's queues and timers (QEMU's ThrottleGroupMember). */
export class ThrottleGroupMember {
  /** Requests waiting, per direction. */
  readonly pending: [number, number] = [0, 0];
  /** @internal Wake-up functions of the waiting requests, in arrival order. */
  readonly queues: [Array<() => void>, Array<() => void>] = [[], []];
  /** @internal Armed timer per direction, or undefined. */
  readonly timers: [unknown, unknown] = [undefined, undefined];
  /** While above 0 (a drained section), requests are not throttled. */
  limitsDisabled = 0;
  private current: ThrottleGroup | null = null;

  /** `owner` names the member in messages (the node name). */
  constructor(readonly owner: string) {}

  /** The group the member is in, or null once it left. */
  get group(): ThrottleGroup | null {
    return this.current;
  }

  /** Joins `group` (leaving the current one first). */
  join(group: ThrottleGroup): void {
    this.leave();
    group.register(this);
    this.current = group;
  }

  /** Leaves the group, if any. */
  leave(): void {
    this.current?.unregister(this);
    this.current = null;
  }

  /** Waits until a request of `bytes` may go, then charges it to the group. */
  async intercept(bytes: number, isWrite: boolean): Promise<void> {
    if (!this.current) throw new BlockError('EIO', `Throttle node '${this.owner}' is not in a throttle group`);
    await this.current.intercept(this, bytes, isWrite ? 1 : 0);
  }

  /** Start of a drained section: queued requests run now, new ones are not throttled. */
  disableLimits(): void {
    if (this.limitsDisabled++ === 0) this.current?.restart(this);
  }

  /** End of a drained section. */
  enableLimits(): void {
    if (this.limitsDisabled > 0) this.limitsDisabled--;
  }
}

/** Named limits shared by their members (QEMU's ThrottleGroup). */
export class ThrottleGroup {
  private readonly state: ThrottleState;
  /** Round-robin order: a new member goes first, as in QEMU. */
  private readonly members: ThrottleGroupMember[] = [];
  /** Per direction, the member whose turn it is (or was last). */
  private readonly tokens: [ThrottleGroupMember | null, ThrottleGroupMember | null] = [null, null];
  /** Per direction, whether some member's timer is armed (at most one is). */
  private readonly anyTimerArmed: [boolean, boolean] = [false, false];

  constructor(
    readonly name: string,
    config: ThrottleConfig,
    readonly clock: ThrottleClock,
  ) {
    config.validate();
    this.state = new ThrottleState(config, this.nowNs());
  }

  private nowNs(): number {
    return this.clock.now() * 1e6;
  }

  /** The limits in force, every field present. */
  get limits(): Required<ThrottleLimits> {
    return this.state.config.toLimits();
  }

  /** The config in force, with its current bucket levels. */
  get config(): ThrottleConfig {
    return this.state.config;
  }

  /** How many nodes use the group. */
  get memberCount(): number {
    return this.members.length;
  }

  /**
   * Changes some limits (the rest keep their value), validated as a whole;
   * the buckets start empty and every member's waiting requests are
   * restarted (QEMU's throttle_group_config).
   */
  setLimits(limits: ThrottleLimits): void {
    const next = this.state.config.clone();
    next.applyLimits(limits);
    this.state.configure(next, this.nowNs());
    for (const m of [...this.members]) this.restart(m);
  }

  /** @internal Adds a member (see {@link ThrottleGroupMember.join}). */
  register(member: ThrottleGroupMember): void {
    this.members.unshift(member);
    for (const d of DIRECTIONS) this.tokens[d] ??= member;
  }

  /** @internal Removes a member; requests it still has waiting run unthrottled. */
  unregister(member: ThrottleGroupMember): void {
    if (!this.members.includes(member)) return;
    const heldTurn = DIRECTIONS.filter((d) => member.timers[d] !== undefined);
    for (const d of heldTurn) {
      this.clock.clearTimeout(member.timers[d]);
      member.timers[d] = undefined;
      this.anyTimerArmed[d] = false;
    }
    for (const d of DIRECTIONS) {
      if (this.tokens[d] === member) {
        const next = this.after(member);
        this.tokens[d] = next === member ? null : next;
      }
    }
    this.members.splice(this.members.indexOf(member), 1);
    // The node is going away: nothing may be left hanging on its queues.
    for (const d of DIRECTIONS) for (const wake of member.queues[d].splice(0)) wake();
    // Its timer held the group's turn: the others' waiting requests need a new one.
    for (const d of heldTurn) if (this.tokens[d]) this.scheduleNext(this.tokens[d]!, d);
  }

  /** The member after `m` in round-robin order. */
  private after(m: ThrottleGroupMember): ThrottleGroupMember {
    const i = this.members.indexOf(m);
    return this.members[(i + 1) % this.members.length]!;
  }

  /**
   * Whose turn it is: the next member after the current token that has a
   * request waiting, else `m` itself (its request is the one arriving). A
   * drained member with waiting requests goes first, so a drain never waits
   * for the other members' turns.
   */
  private nextToken(m: ThrottleGroupMember, d: Direction): ThrottleGroupMember {
    if (m.pending[d] > 0 && m.limitsDisabled > 0) return m;
    const start = this.tokens[d] ?? m;
    let token = this.after(start);
    while (token !== start && token.pending[d] === 0) token = this.after(token);
    if (token === start && token.pending[d] === 0) return m;
    return token;
  }

  /**
   * Whether `token`'s next request must wait; if so and no timer of the
   * group is armed for this direction, arms `token`'s timer for the time the
   * buckets need, and `token` holds the turn.
   */
  private mustWait(token: ThrottleGroupMember, d: Direction): boolean {
    if (token.limitsDisabled > 0) return false;
    if (this.anyTimerArmed[d]) return true;
    const now = this.nowNs();
    const wait = this.state.waitFor(d === 1, now);
    if (wait <= 0) return false;
    if (token.timers[d] === undefined) this.arm(token, d, wait / 1e6);
    this.tokens[d] = token;
    this.anyTimerArmed[d] = true;
    return true;
  }

  private arm(m: ThrottleGroupMember, d: Direction, ms: number): void {
    if (m.timers[d] !== undefined) this.clock.clearTimeout(m.timers[d]);
    m.timers[d] = this.clock.setTimeout(() => {
      m.timers[d] = undefined;
      this.timerFired(m, d);
    }, ms);
  }

  /** Lets the oldest waiting request of `m` go; false if none was waiting. */
  private wake(m: ThrottleGroupMember, d: Direction): boolean {
    const next = m.queues[d].shift();
    next?.();
    return next !== undefined;
  }

  /** @internal Waits for the request's turn and the buckets, then charges it (QEMU's io_limits_intercept). */
  async intercept(m: ThrottleGroupMember, bytes: number, d: Direction): Promise<void> {
    const token = this.nextToken(m, d);
    const wait = this.mustWait(token, d);
    // Behind a timer, or behind this member's own earlier requests (they keep their order).
    if (wait || m.pending[d] > 0) {
      m.pending[d]++;
      await new Promise<void>((resolve) => m.queues[d].push(resolve));
      m.pending[d]--;
      // The member left the group while waiting (closed): go unthrottled.
      if (!this.members.includes(m)) return;
    }
    this.state.account(d === 1, bytes);
    this.scheduleNext(m, d);
  }

  /**
   * After a request of `m` went: gives the turn to the next member with a
   * request waiting, at once if the buckets allow (preferring `m`'s own next
   * request, as QEMU does), else when its timer fires.
   */
  private scheduleNext(m: ThrottleGroupMember, d: Direction): void {
    let token = this.nextToken(m, d);
    if (token.pending[d] === 0) return;
    if (this.mustWait(token, d)) return;
    if (this.wake(m, d)) {
      token = m;
    } else {
      // Its request runs from a timer at "now", outside this request's turn.
      this.arm(token, d, 0);
      this.anyTimerArmed[d] = true;
    }
    this.tokens[d] = token;
  }

  private timerFired(m: ThrottleGroupMember, d: Direction): void {
    this.anyTimerArmed[d] = false;
    this.restartQueue(m, d);
  }

  /** Runs `m`'s next waiting request, or hands the turn on if it has none. */
  private restartQueue(m: ThrottleGroupMember, d: Direction): void {
    if (!this.members.includes(m)) return;
    if (!this.wake(m, d)) this.scheduleNext(m, d);
  }

  /** @internal Fires `m`'s armed timers now, or runs its next request (QEMU's throttle_group_restart_tgm). */
  restart(m: ThrottleGroupMember): void {
    for (const d of DIRECTIONS) {
      if (m.timers[d] !== undefined) {
        this.clock.clearTimeout(m.timers[d]);
        m.timers[d] = undefined;
        this.timerFired(m, d);
      } else {
        this.restartQueue(m, d);
      }
    }
  }
}

const IDENTIFIER = /^[A-Za-z][A-Za-z0-9._-]*$/;

/** The throttle groups of one block graph, by name. */
export class ThrottleGroups {
  private readonly groups = new Map<string, ThrottleGroup>();

  /** The clock new groups use unless given their own (default: the real one). */
  constructor(public clock: ThrottleClock = REAL_TIMERS) {}

  /**
   * Creates a group with `limits` (validated, QEMU's messages). The name must
   * be an identifier (letters, digits, '-', '.', '_', starting with a
   * letter) not taken yet.
   */
  create(name: string, limits: ThrottleLimits | ThrottleConfig = {}, clock: ThrottleClock = this.clock): ThrottleGroup {
    if (!IDENTIFIER.test(name)) throw einval(`Invalid throttle group name '${name}'`, {}, 'identifiers consist of letters, digits, -, ., _, starting with a letter');
    if (this.groups.has(name)) throw new BlockError('EEXIST', 'A group with this name already exists', {}, { detail: name });
    const config = limits instanceof ThrottleConfig ? limits.clone() : ThrottleConfig.fromLimits(limits);
    const group = new ThrottleGroup(name, config, clock);
    this.groups.set(name, group);
    return group;
  }

  /** The group called `name`, or undefined. */
  get(name: string): ThrottleGroup | undefined {
    return this.groups.get(name);
  }

  /** Whether a group called `name` exists. */
  has(name: string): boolean {
    return this.groups.has(name);
  }

  /** Every group's name, in creation order. */
  names(): string[] {
    return [...this.groups.keys()];
  }

  /** Deletes a group no node uses (EBUSY while one does, ENOENT if there is none). */
  delete(name: string): void {
    const g = this.groups.get(name);
    if (!g) throw new BlockError('ENOENT', `object '${name}' not found`);
    if (g.memberCount > 0) throw new BlockError('EBUSY', `object '${name}' is in use, can not be deleted`, {}, { detail: `${g.memberCount} throttle node(s)` });
    this.groups.delete(name);
  }
}

const REGISTRIES = new WeakMap<BlockGraph, ThrottleGroups>();

/** The throttle groups of `graph` (made empty, on the real clock, on first use). */
export function throttleGroups(graph: BlockGraph): ThrottleGroups {
  let r = REGISTRIES.get(graph);
  if (!r) {
    r = new ThrottleGroups();
    REGISTRIES.set(graph, r);
  }
  return r;
}
