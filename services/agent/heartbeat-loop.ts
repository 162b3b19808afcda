import type { Clock } from '../../shared/clock.js';
import type { Logger } from '../../shared/logger.js';
import type { Timers } from './timers.js';
import { isNodeNotRegistered, reasonOf } from './transport.js';

export type LoopExit = { kind: 'reregister'; reason: 'too-many-failures' | 'not-registered' | 'asked' } | { kind: 'stopped' };

export interface HeartbeatLoopDeps {
  nodeId: string;
  intervalMs: number;
  /** Consecutive failed beats that end the run for re-registration (MAX_HEARTBEAT_FAILURES). */
  maxFailures: number;
  /** Collects stats and sends one heartbeat; rejects when no transport accepted it. */
  beat: () => Promise<unknown>;
  /** Monotonic: the schedule must not follow wall-clock jumps. */
  clock: Clock;
  timers: Timers;
  log: Logger;
}

export interface HeartbeatLoop {
  /**
   * Beats at anchor + k * interval (anchor = now + startOffsetMs) until re-registration is needed or stop() is
   * called. A beat that overruns its slot makes the loop skip the slots it missed; two beats never overlap.
   */
  run(options?: { startOffsetMs?: number }): Promise<LoopExit>;
  /** The orchestrator asked for a re-registration: ends the run now, or after the beat in flight. False when not running. */
  requestReregistration(): boolean;
  stop(): void;
  /** Settles once no beat is in flight. */
  idle(): Promise<void>;
}

interface Run {
  timer: unknown;
  beating: boolean;
  pending?: LoopExit;
  finish(exit: LoopExit): void;
}

export function createHeartbeatLoop(deps: HeartbeatLoopDeps): HeartbeatLoop {
  const { nodeId, intervalMs, maxFailures, clock, timers, log } = deps;
  let active: Run | null = null;
  let inFlight: Promise<void> = Promise.resolve();
  let failures = 0;

  /** One beat; returns why the run must end, if it must. */
  async function beatOnce(): Promise<LoopExit | undefined> {
    try {
      await deps.beat();
      failures = 0;
      log.info(`Heartbeat sent successfully for ${nodeId}`);
      return undefined;
    } catch (error) {
      if (isNodeNotRegistered(error)) {
        log.warn(`Orchestrator does not know ${nodeId} (${reasonOf(error)}), re-registering`);
        return { kind: 'reregister', reason: 'not-registered' };
      }
      failures++;
      log.error(`Error sending heartbeat to orchestrator: ${reasonOf(error)}`);
      if (failures < maxFailures) return undefined;
      log.warn(`Too many heartbeat failures (${failures}), attempting re-registration...`);
      return { kind: 'reregister', reason: 'too-many-failures' };
    }
  }

  function interrupt(exit: LoopExit, override: boolean): boolean {
    const run = active;
    if (!run) return false;
    if (!run.beating) run.finish(exit);
    else if (override || !run.pending) run.pending = exit;
    return true;
  }

  return {
    run({ startOffsetMs = 0 } = {}) {
      if (active) return Promise.reject(new Error('heartbeat loop is already running'));
      failures = 0; // a fresh registration starts a fresh count
      return new Promise<LoopExit>((resolve) => {
        const anchor = clock.now() + Math.max(0, startOffsetMs);
        let slot = 0;
        const run: Run = {
          timer: undefined,
          beating: false,
          finish(exit) {
            if (run.timer !== undefined) timers.clearTimeout(run.timer);
            run.timer = undefined;
            if (active === run) active = null;
            resolve(exit);
          },
        };
        active = run;

        const schedule = () => {
          run.timer = timers.setTimeout(tick, Math.max(0, anchor + slot * intervalMs - clock.now()));
        };
        const tick = () => {
          run.timer = undefined;
          run.beating = true;
          inFlight = beatOnce().then((exit) => {
            run.beating = false;
            const end = run.pending ?? exit;
            if (end) return run.finish(end);
            // Next slot on the fixed grid that has not started yet: no drift, missed slots are skipped.
            const next = Math.max(slot + 1, Math.ceil((clock.now() - anchor) / intervalMs));
            if (next > slot + 1) log.warn(`Heartbeat took longer than the interval, skipping ${next - slot - 1} slot(s)`);
            slot = next;
            schedule();
          });
        };
        schedule();
      });
    },
    requestReregistration: () => interrupt({ kind: 'reregister', reason: 'asked' }, false),
    stop() {
      interrupt({ kind: 'stopped' }, true);
    },
    idle: () => inFlight,
  };
}
