/**
 * blkdebug's state machine (QEMU's blkdebug_co_debug_event and rule_check):
 * the rules listed per event, the current state, the inject-error rules the
 * last event activated, and the requests suspended at breakpoints.
 */
import { BlockError, STRERROR } from '../core/errors.js';
import { isDebugEvent, type BlockDebugger, type DebugEvent } from '../core/debug-event.js';
import type { BlkdebugRule, InjectRule, IoType } from './blkdebug-config.js';

interface Suspended {
  tag: string;
  resume: () => void;
}

/** One blkdebug node's rules and state. */
export class BlkdebugState implements BlockDebugger {
  /** The state inject-error and set-state rules are matched against; starts at 1. */
  state = 1;
  /** Where "Suspended request" / "Resuming request" lines go (qemu-io prints them on stdout). */
  output: ((line: string) => void) | null = null;
  /** Rules per event, the most recently added first (QEMU inserts at the head). */
  private readonly rules = new Map<DebugEvent, BlkdebugRule[]>();
  /** The inject-error rules of the last event that had any, checked by every request. */
  private active: InjectRule[] = [];
  /** Requests waiting at a breakpoint, the most recent first. */
  private suspended: Suspended[] = [];
  /** Waiters for a suspension; tag null: any tag. */
  private suspendWaiters: Array<{ tag: string | null; wake: () => void }> = [];

  constructor(rules: readonly BlkdebugRule[]) {
    for (const r of rules) this.add(r);
  }

  private add(rule: BlkdebugRule): void {
    const list = this.rules.get(rule.event);
    if (list) list.unshift(rule);
    else this.rules.set(rule.event, [rule]);
  }

  private remove(rule: BlkdebugRule): void {
    const list = this.rules.get(rule.event);
    const i = list ? list.indexOf(rule) : -1;
    if (i >= 0) list!.splice(i, 1);
  }

  event(event: DebugEvent): Promise<void> | void {
    const list = this.rules.get(event);
    if (!list || list.length === 0) return;
    let newState = this.state;
    let injects = 0;
    const waits: Promise<void>[] = [];
    for (const rule of [...list]) {
      if (rule.state && rule.state !== this.state) continue;
      if (rule.action === 'inject-error') {
        // The first inject-error rule of an event replaces the active set.
        if (injects++ === 0) this.active = [];
        this.active.unshift(rule);
      } else if (rule.action === 'set-state') {
        newState = rule.newState;
      } else {
        this.remove(rule);
        waits.push(this.suspend(rule.tag));
      }
    }
    this.state = newState;
    if (waits.length > 0) return Promise.all(waits).then(() => undefined);
  }

  private suspend(tag: string): Promise<void> {
    return new Promise<void>((resume) => {
      this.suspended.unshift({ tag, resume });
      this.output?.(`blkdebug: Suspended request '${tag}'\n`);
      const waiting = this.suspendWaiters.filter((w) => w.tag === tag || w.tag === null);
      this.suspendWaiters = this.suspendWaiters.filter((w) => !waiting.includes(w));
      for (const w of waiting) w.wake();
    });
  }

  /**
   * The error an active rule injects into a request of `iotype` covering
   * `[offset, offset + bytes)`, or undefined. A rule that is not
   * `immediately` fails the request only after it has yielded once.
   */
  check(offset: number, bytes: number, iotype: IoType): Promise<never> | undefined {
    if (this.active.length === 0) return undefined;
    const rule = this.active.find(
      (r) => (r.offset === -1 || (bytes > 0 && r.offset >= offset && r.offset < offset + bytes)) && r.iotypes.has(iotype),
    );
    if (!rule || rule.errno === 0) return undefined;
    if (rule.once) {
      this.active.splice(this.active.indexOf(rule), 1);
      this.remove(rule);
    }
    const err = new BlockError(rule.code, STRERROR[rule.code], { offset });
    if (rule.immediately) return Promise.reject(err);
    return new Promise<never>((_, reject) => setTimeout(() => reject(err), 0));
  }

  breakpoint(event: string, tag: string): void {
    if (!isDebugEvent(event)) throw new BlockError('ENOENT', STRERROR.ENOENT);
    this.add({ action: 'suspend', event, state: 0, tag });
  }

  removeBreakpoint(tag: string): void {
    let found = false;
    for (const list of this.rules.values()) {
      for (const r of [...list]) {
        if (r.action === 'suspend' && r.tag === tag) {
          this.remove(r);
          found = true;
        }
      }
    }
    // Resuming is no success of its own: QEMU's resume-all loop always ends in ENOENT.
    while (this.resumeOne(tag));
    if (!found) throw new BlockError('ENOENT', STRERROR.ENOENT);
  }

  resume(tag: string): void {
    if (!this.resumeOne(tag)) throw new BlockError('ENOENT', STRERROR.ENOENT);
  }

  private resumeOne(tag: string): boolean {
    const i = this.suspended.findIndex((s) => s.tag === tag);
    if (i < 0) return false;
    const [s] = this.suspended.splice(i, 1);
    this.output?.(`blkdebug: Resuming request '${tag}'\n`);
    s!.resume();
    return true;
  }

  isSuspended(tag: string): boolean {
    return this.suspended.some((s) => s.tag === tag);
  }

  whenSuspended(tag: string): Promise<void> {
    if (this.isSuspended(tag)) return Promise.resolve();
    return new Promise((wake) => this.suspendWaiters.push({ tag, wake }));
  }

  suspendedCount(): number {
    return this.suspended.length;
  }

  resumeAll(): void {
    for (const s of this.suspended.splice(0)) s.resume();
  }

  nextSuspension(): Promise<void> {
    return new Promise((wake) => this.suspendWaiters.push({ tag: null, wake }));
  }

  /** Forgets every rule and lets suspended requests go on (the node is closing). */
  close(): void {
    this.rules.clear();
    this.active = [];
    this.resumeAll();
  }
}
