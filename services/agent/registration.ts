import pRetry from 'p-retry';
import type { Logger } from '../../shared/logger.js';
import { sleep, type Timers } from './timers.js';
import { reasonOf, TransportError } from './transport.js';

export interface RegistrationSchedule {
  /** Wait after the first failed attempt (5 s). */
  firstDelayMs: number;
  /** Failed attempts with a doubling wait; from then on the wait stays at the longest (5 attempts: 80 s). */
  attempts: number;
  /** Each wait is moved by up to this share either way (0.1 = ±10 %), so a restarting fleet spreads out. */
  jitter: number;
}

/**
 * Wait after the n-th consecutive failed attempt (n from 1): firstDelayMs * 2^(n-1), capped at the wait of the
 * last back-off attempt, ± jitter. With the defaults: 5, 10, 20, 40, 80, 80, 80 ... s.
 */
export function registrationDelayMs(schedule: RegistrationSchedule, failedAttempts: number, random: () => number): number {
  return jittered(longestDelayMs(schedule, failedAttempts), schedule.jitter, random);
}

function longestDelayMs(schedule: RegistrationSchedule, failedAttempts = schedule.attempts): number {
  const step = Math.max(0, Math.min(failedAttempts, schedule.attempts) - 1);
  return schedule.firstDelayMs * 2 ** step;
}

function jittered(ms: number, jitter: number, random: () => number): number {
  return Math.round(ms * (1 + jitter * (2 * random() - 1)));
}

export interface RegistrationDeps {
  nodeId: string;
  schedule: RegistrationSchedule;
  /** One attempt: resolves once a transport accepted the registration. */
  attempt: (signal: AbortSignal) => Promise<unknown>;
  timers: Timers;
  random: () => number;
  log: Logger;
}

export interface Registration {
  /** Tries until a registration is accepted; never gives up. Rejects only when `signal` is aborted. */
  register(signal: AbortSignal): Promise<void>;
}

/** p-retry counts the attempts; the waits go through the injected timers so that fake timers drive them. */
class AttemptFailed extends Error {
  constructor(readonly original: unknown) {
    // Not a TypeError, which p-retry would not retry (fetch throws TypeError for network failures).
    super(reasonOf(original));
    this.name = 'AttemptFailed';
  }
}

export function createRegistration(deps: RegistrationDeps): Registration {
  const { schedule, log, nodeId } = deps;

  function delayAfter(failedAttempts: number, error: unknown): number {
    const scheduled = registrationDelayMs(schedule, failedAttempts, deps.random);
    const asked = error instanceof TransportError ? error.retryAfterMs : undefined;
    if (asked === undefined || asked <= scheduled) return scheduled;
    // The orchestrator asked for a longer pause (503 Retry-After): honour it up to the longest wait, jittered too.
    return Math.min(jittered(asked, schedule.jitter, deps.random), Math.round(longestDelayMs(schedule) * (1 + schedule.jitter)));
  }

  return {
    async register(signal) {
      await pRetry(
        async () => {
          try {
            await deps.attempt(signal);
          } catch (error) {
            throw new AttemptFailed(error);
          }
        },
        {
          retries: Infinity,
          // p-retry's own sleep is off (0 ms); the schedule is ours, in onFailedAttempt.
          minTimeout: 0,
          signal,
          onFailedAttempt: async ({ error, attemptNumber }) => {
            if (signal.aborted) return;
            const delay = delayAfter(attemptNumber, (error as AttemptFailed).original ?? error);
            if (attemptNumber === schedule.attempts) {
              log.warn(`Registration failed ${attemptNumber} times; retrying every ${Math.round(longestDelayMs(schedule) / 1000)} s until it succeeds`);
            }
            log.warn(`Registration attempt ${attemptNumber} failed: ${error.message}; retrying in ${(delay / 1000).toFixed(1)} s`);
            await sleep(deps.timers, delay, signal);
          },
        },
      );
      log.info(`Successfully registered with orchestrator as ${nodeId}`);
    },
  };
}
