import pRetry from 'p-retry';

/** Waits between attempts: `firstDelayMs` after the first failure, doubling after each further one, at most `maxDelayMs`. */
export interface Backoff {
  firstDelayMs: number;
  maxDelayMs: number;
}

export interface RetryOptions extends Backoff {
  /** Retries after the first attempt before giving up with the last failure (default: no limit). */
  retries?: number;
  /**
   * Stops retrying: a wait in progress ends at once and the call rejects with the last failure. An attempt in
   * progress is let finish, and its result is returned if it succeeds.
   */
  signal?: AbortSignal;
  /** Whether a failure is worth retrying (default: every one); any other is rethrown at once, unnoticed by the hooks below. */
  retryIf?: (error: unknown) => boolean;
  /** Logs the outage: `failed` on every failed attempt (it logs the first), `recovered` on success. */
  outage?: { failed(error: unknown): void; recovered(): void };
  /** Called on every failed attempt that `retryIf` accepts, before the wait (e.g. to report the dependency down). */
  onFailure?: (error: unknown) => void;
  /** Called on success (e.g. to report the dependency up). */
  onSuccess?: () => void;
}

/** Wraps every failure, so that p-retry retries what `retryIf` accepts (it would not retry a TypeError or a non-Error). */
class AttemptFailed extends Error {
  constructor(readonly original: unknown) {
    super(original instanceof Error ? original.message : String(original));
    this.name = 'AttemptFailed';
  }
}

/** The wait after the `failures`-th failure in a row (1 for the first): the schedule retry() uses. */
export function backoffDelay(backoff: Backoff, failures: number): number {
  return Math.min(backoff.maxDelayMs, backoff.firstDelayMs * 2 ** Math.max(0, failures - 1));
}

/**
 * Runs `run` until it succeeds, with exponential back-off between attempts (p-retry), and rejects with the
 * original error of the last attempt when retrying stops (`retries` exhausted, `retryIf` false, or `signal`).
 */
export async function retry<T>(run: (attempt: number) => Promise<T>, options: RetryOptions): Promise<T> {
  const retryIf = options.retryIf ?? (() => true);
  const stop = options.signal;
  // p-retry's own signal would also throw away an attempt that succeeds after the abort: this one only cuts waits short.
  const waits = new AbortController();
  let waiting = false;
  let last: unknown;
  const onStop = () => {
    if (waiting) waits.abort();
  };
  stop?.addEventListener('abort', onStop, { once: true });
  try {
    const result = await pRetry(
      async (attempt) => {
        waiting = false;
        try {
          return await run(attempt);
        } catch (error) {
          last = error;
          throw new AttemptFailed(error);
        }
      },
      {
        retries: options.retries ?? Infinity,
        minTimeout: options.firstDelayMs,
        maxTimeout: options.maxDelayMs,
        factor: 2,
        signal: waits.signal,
        onFailedAttempt: ({ error }) => {
          const original = (error as AttemptFailed).original;
          if (!retryIf(original)) return;
          options.outage?.failed(original);
          options.onFailure?.(original);
        },
        shouldRetry: ({ error }) => {
          waiting = retryIf((error as AttemptFailed).original) && !stop?.aborted;
          return waiting;
        },
      },
    );
    options.outage?.recovered();
    options.onSuccess?.();
    return result;
  } catch (error) {
    if (error instanceof AttemptFailed) throw error.original;
    // Stopped while waiting: the failure that led to the wait says more than the abort.
    if (waits.signal.aborted) throw last;
    throw error;
  } finally {
    stop?.removeEventListener('abort', onStop);
  }
}
