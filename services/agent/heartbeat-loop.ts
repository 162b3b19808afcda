import type { Clock } from '../../shared/clock.js';
import type { Logger } from '../../shared/logger.js';
import type { Timers } from './timers.js';
import { isNodeNotRegistered, reasonOf } from './transport.js';

export type LoopExit = { kind: 'reregister'; reason: 'too-many-failures' | 'not-registered' | 'asked' } | { kind: 'stopped' };

export interface HeartbeatLoopDeps {
  nodeId: string;
  /** The interval to start with; changeInterval() sets another. */
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
  /**
   * Beats every `ms` from now on: the next beat is `firstGapMs` (default `ms`) after the slot of the last one (at
   * once if that is past), then every `ms` from there. The first beat of a run keeps its time. A change during a
   * beat takes effect when it is done.
   */
  changeInterval(ms: number, firstGapMs?: number): void;
  stop(): void;
  /** Settles once no beat is in flight. */
  idle(): Promise<void>;
}

interface Run {
  timer: unknown;
  beating: boolean;
  pending?: LoopExit;
  finish(exit: LoopExit): void;
  /** The interval changed: schedule the waiting beat again, `gapMs` after the last one. */
  replan(gapMs: number): void;
  /** A change that came during a beat: its gap, for the planning after that beat. */
  gapAfterBeat?: number;
}

export function createHeartbeatLoop(deps: HeartbeatLoopDeps): HeartbeatLoop {
  const { nodeId, maxFailures, clock, timers, log } = deps;
  let intervalMs = deps.intervalMs;
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
        // The grid: slot k is due at anchor + k * interval. After each beat it starts again from that beat's slot,
        // so that a new interval takes over from the last beat (its first gap may differ: heartbeat-pace.ts).
        let anchor = clock.now() + Math.max(0, startOffsetMs);
        let slot = 0;
        let dueAt = anchor;
        /** The slot of the last beat of this run; undefined before the first. */
        let lastSlotAt: number | undefined;
        const run: Run = {
          timer: undefined,
          beating: false,
          finish(exit) {
            if (run.timer !== undefined) timers.clearTimeout(run.timer);
            run.timer = undefined;
            if (active === run) active = null;
            resolve(exit);
          },
          replan(gapMs) {
            if (run.beating) return void (run.gapAfterBeat = gapMs); // planned after the beat
            if (run.timer === undefined || lastSlotAt === undefined) return; // the first beat keeps its time
            timers.clearTimeout(run.timer);
            planFrom(lastSlotAt + gapMs - intervalMs);
          },
        };
        active = run;

        const schedule = () => {
          dueAt = anchor + slot * intervalMs;
          run.timer = timers.setTimeout(tick, Math.max(0, dueAt - clock.now()));
        };
        /** Slot 1 of the grid from `from` on, or the first of its slots that has not started yet. */
        const planFrom = (from: number): number => {
          anchor = from;
          slot = Math.max(1, Math.ceil((clock.now() - anchor) / intervalMs));
          schedule();
          return slot;
        };
        const tick = () => {
          run.timer = undefined;
          run.beating = true;
          const slotAt = dueAt;
          lastSlotAt = slotAt;
          inFlight = beatOnce().then((exit) => {
            run.beating = false;
            const end = run.pending ?? exit;
            if (end) return run.finish(end);
            // Next slot on the grid that has not started yet: no drift, missed slots are skipped.
            const gap = run.gapAfterBeat;
            run.gapAfterBeat = undefined;
            const next = planFrom(gap === undefined ? slotAt : slotAt + gap - intervalMs);
            if (next > 1 && gap === undefined) log.warn(`Heartbeat took longer than the interval, skipping ${next - 1} slot(s)`);
          });
        };
        schedule();
      });
    },
    requestReregistration: () => interrupt({ kind: 'reregister', reason: 'asked' }, false),
    changeInterval(ms, firstGapMs = ms) {
      if (!(ms > 0) || ms === intervalMs) return;
      intervalMs = ms;
      active?.replan(Math.max(0, firstGapMs));
    },
    stop() {
      interrupt({ kind: 'stopped' }, true);
    },
    idle: () => inFlight,
  };
}
