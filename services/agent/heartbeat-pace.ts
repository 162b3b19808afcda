import type { Logger } from '../../shared/logger.js';
import type { Timers } from './timers.js';
import type { PaceSettings, TransportName } from './transport.js';

export type { PaceSettings } from './transport.js';

/** The slowest pace an agent follows, whatever it is told: slower, a dead host would go unnoticed for too long. */
export const LONGEST_INTERVAL_MS = 600_000;

/** A change is applied with a random stagger of up to this share either way, so a fleet told together does not beat together. */
export const PACE_STAGGER = 0.1;

const positive = (x: unknown): x is number => typeof x === 'number' && Number.isFinite(x) && x > 0;

/**
 * The pace fields of an answer, or undefined when it has none (an orchestrator that does not set the pace).
 * Checked by hand: the zod schemas cost the agent several MiB of memory (control-listener.ts).
 */
export function paceSettingsOf(body: unknown): PaceSettings | undefined {
  if (typeof body !== 'object' || body === null) return undefined;
  const { heartbeatInterval, timeout, fleetSize } = body as Record<string, unknown>;
  if (!positive(heartbeatInterval) || !positive(timeout)) return undefined;
  const fleet = typeof fleetSize === 'number' && Number.isInteger(fleetSize) && fleetSize >= 0 ? { fleetSize } : {};
  return { heartbeatInterval, timeout, ...fleet };
}

/** A told interval within bounds: never faster than the agent's own, never slower than 10 minutes (unless its own is slower). */
export function boundedIntervalMs(toldMs: number, ownMs: number): number {
  return Math.min(Math.max(toldMs, ownMs), Math.max(ownMs, LONGEST_INTERVAL_MS));
}

/** The interval an agent beats at once told `toldMs`: within bounds, moved by ±PACE_STAGGER (random() in [0, 1)). */
export function staggeredIntervalMs(toldMs: number, ownMs: number, random: () => number): number {
  const bounded = boundedIntervalMs(toldMs, ownMs);
  if (bounded === ownMs) return ownMs;
  return boundedIntervalMs(Math.round(bounded * (1 + PACE_STAGGER * (2 * random() - 1))), ownMs);
}

/**
 * The gap from the last beat to the first at a new interval. Slowing down: the old interval plus a random part of
 * the new one (at most 10 minutes). A fleet told together had its last beats spread over one old interval; these
 * gaps spread its next beats evenly over the new one at once (the ramps at both ends of old + [0, new) overlap
 * modulo the new interval), and none comes sooner than the old interval. Speeding up: the new interval.
 */
export function firstGapMs(currentMs: number, nextMs: number, random: () => number, longestMs = LONGEST_INTERVAL_MS): number {
  if (nextMs <= currentMs) return nextMs;
  return Math.round(Math.min(currentMs + random() * nextMs, Math.max(nextMs, longestMs)));
}

export interface PaceStatus {
  /** The interval the heartbeat loop follows, ms (staggered). */
  intervalMs: number;
  /** `own`: HEARTBEAT_INTERVAL; `orchestrator`: what it was told. */
  source: 'own' | 'orchestrator';
  /** The last settings told, in seconds (as on the wire). */
  told?: PaceSettings;
}

export interface HeartbeatPace {
  /** The interval to beat at now, ms. */
  intervalMs(): number;
  /** A registration is about to be sent: its answer, or the lack of one, decides the pace again. */
  registering(): void;
  /**
   * The registration was accepted. Over HTTP the answer says it all: settings, or none (an orchestrator that sets
   * no pace: back to HEARTBEAT_INTERVAL). Over AMQP a `control.settings` follows, or the agent falls back to its
   * own interval once that interval passed without one.
   */
  registered(via: TransportName, settings: PaceSettings | undefined): void;
  /** Settings from a stats answer or a `control.settings` message. */
  told(settings: PaceSettings): void;
  stop(): void;
  status(): PaceStatus;
}

export interface HeartbeatPaceDeps {
  /** HEARTBEAT_INTERVAL, ms: what the agent declares and follows when nobody tells it otherwise. */
  ownIntervalMs: number;
  random: () => number;
  timers: Timers;
  log: Logger;
  /** Called with the new interval (ms) each time it changes, and the gap from the last beat to the next one. */
  onChange: (intervalMs: number, firstGapMs: number) => void;
}

const seconds = (ms: number) => `${Number((ms / 1000).toFixed(3))} s`;

/** Follows the pace the orchestrator sets, within bounds, and falls back to the agent's own when it sets none. */
export function createHeartbeatPace(deps: HeartbeatPaceDeps): HeartbeatPace {
  const { ownIntervalMs: own, timers, log } = deps;
  /** The bounded value told (or own): what a change is compared with, before the stagger. */
  let target = own;
  let current = own;
  let source: PaceStatus['source'] = 'own';
  let told: PaceSettings | undefined;
  /** Settings arrived since the last registration was sent (a control.settings may beat the broker's confirm). */
  let answered = false;
  let grace: unknown;

  function clearGrace(): void {
    if (grace !== undefined) timers.clearTimeout(grace);
    grace = undefined;
  }

  function apply(intervalMs: number): void {
    if (intervalMs === current) return;
    const gap = firstGapMs(current, intervalMs, deps.random);
    current = intervalMs;
    deps.onChange(intervalMs, gap);
  }

  function fallBack(): void {
    source = 'own';
    told = undefined;
    if (target === own) return;
    target = own;
    log.info(`Heartbeat interval back to ${seconds(own)} (HEARTBEAT_INTERVAL): the orchestrator no longer sets it`);
    apply(own);
  }

  function follow(settings: PaceSettings): void {
    answered = true;
    clearGrace();
    source = 'orchestrator';
    told = settings;
    const toldMs = Math.round(settings.heartbeatInterval * 1000);
    const bounded = boundedIntervalMs(toldMs, own);
    if (bounded === target) return;
    target = bounded;
    const fleet = settings.fleetSize === undefined ? '' : ` (fleet of ${settings.fleetSize} nodes)`;
    log.info(`Heartbeat interval set to ${seconds(bounded)} by the orchestrator${fleet}`);
    if (bounded !== toldMs) {
      log.warn(`The orchestrator asked for a heartbeat every ${seconds(toldMs)}; this agent beats every ${seconds(own)} to ${seconds(Math.max(own, LONGEST_INTERVAL_MS))}`);
    }
    const next = staggeredIntervalMs(bounded, own, deps.random);
    log.debug(`Heartbeat every ${seconds(next)} from now on (${seconds(bounded)} ±${PACE_STAGGER * 100} %)`);
    apply(next);
  }

  return {
    intervalMs: () => current,
    registering() {
      answered = false;
      clearGrace();
    },
    registered(via, settings) {
      if (settings) return follow(settings);
      if (answered) return; // the control.settings came before the broker's confirm
      if (via === 'http') return fallBack();
      clearGrace();
      grace = timers.setTimeout(() => {
        grace = undefined;
        if (!answered) fallBack();
      }, own);
    },
    told: follow,
    stop: clearGrace,
    status: () => ({ intervalMs: current, source, ...(told ? { told } : {}) }),
  };
}
