import type { Logger } from '../logger.js';
import { BrokerBlockedError, type PublishState } from './bus.js';

/** One publish awaiting its confirm. */
export interface PublishTicket {
  readonly sentAt: number;
}

export interface PublishTrackerOptions {
  /** The oldest unconfirmed publish older than this, and no confirm within it either: blocked ('no-confirm'). */
  wedgedAfterMs: number;
  log?: Logger;
  now?: () => number;
}

type Block = { cause: 'broker' | 'no-confirm'; reason: string; since: number };

/**
 * The publish side of a bus adapter, shared by both adapters so that they agree on what "blocked" means:
 * the broker's connection.blocked / unblocked, and the backlog of publishes awaiting a confirm. Logs once when
 * a block starts and once when it ends (a 'no-confirm' block ends in the log only with the next confirm, the
 * broker's unblock, or the connection, so a wedged channel that keeps timing out is one start and one end).
 */
export function createPublishTracker(options: PublishTrackerOptions) {
  const now = options.now ?? (() => Date.now());
  const { wedgedAfterMs, log } = options;
  const pending = new Set<PublishTicket>(); // insertion order: the first is the oldest
  let lastConfirmAt = now();
  let broker: { reason: string; since: number } | null = null;
  let reported: Block | null = null;

  function oldest(): PublishTicket | undefined {
    for (const ticket of pending) return ticket;
    return undefined;
  }

  function current(at: number): Block | null {
    if (broker) return { cause: 'broker', reason: broker.reason, since: broker.since };
    const first = oldest();
    if (first && at - first.sentAt >= wedgedAfterMs && at - lastConfirmAt >= wedgedAfterMs) {
      const since = Math.max(first.sentAt, lastConfirmAt);
      return { cause: 'no-confirm', reason: `no publisher confirm for ${seconds(at - since)} s (${pending.size} unconfirmed)`, since };
    }
    return null;
  }

  /** Computes the block and logs a start; ends are logged by the events that end a block. */
  function block(): Block | null {
    const b = current(now());
    // A broker block that starts during a 'no-confirm' one is news (it names the alarm): logged too.
    if (b && (!reported || (b.cause === 'broker' && reported.cause !== 'broker'))) {
      reported = b;
      log?.warn(
        b.cause === 'broker'
          ? `Broker is blocking publishes (${b.reason}): publishing fails fast until it unblocks`
          : `Broker is not confirming publishes (${b.reason}): publishing fails fast until it confirms again`,
      );
    }
    return b;
  }

  function ended(how: string): void {
    if (!reported || current(now())) return;
    log?.info(`Publishing no longer blocked (${how}) after ${seconds(now() - reported.since)} s (${reported.reason})`);
    reported = null;
  }

  return {
    /** A publish was sent; pair with confirmed() or expired(). */
    begin(): PublishTicket {
      const ticket = { sentAt: now() };
      pending.add(ticket);
      return ticket;
    },
    /** The broker answered (ack or nack): the channel is alive. */
    confirmed(ticket: PublishTicket): void {
      pending.delete(ticket);
      lastConfirmAt = now();
      ended('publisher confirms again');
    },
    /** Given up at the confirm timeout (or the channel went away): no longer in the backlog. */
    expired(ticket: PublishTicket): void {
      pending.delete(ticket);
    },
    brokerBlocked(reason: string): void {
      broker ??= { reason: reason || 'no reason given', since: now() };
      block();
    },
    brokerUnblocked(): void {
      if (!broker) return;
      broker = null;
      lastConfirmAt = now(); // the backlog gets a fresh wedge window now that the broker reads again
      ended('broker unblocked');
    },
    /** The connection (or the channel) is gone: its block and its backlog with it (a new one starts unblocked). */
    reset(how = 'connection lost'): void {
      broker = null;
      pending.clear();
      lastConfirmAt = now();
      ended(how);
    },
    /** The error to fail a publish with now, or null when it may go. */
    blockedError(): BrokerBlockedError | null {
      const b = block();
      return b ? new BrokerBlockedError(b.reason, b.since) : null;
    },
    isBrokerBlocked: () => broker !== null,
    state(): PublishState {
      const b = block();
      const first = oldest();
      const backlog = { unconfirmed: pending.size, oldestMs: first ? Math.max(0, now() - first.sentAt) : 0 };
      return b ? { blocked: true, ...b, backlog } : { blocked: false, backlog };
    },
  };
}

export type PublishTracker = ReturnType<typeof createPublishTracker>;

function seconds(ms: number): string {
  return (Math.max(0, ms) / 1000).toFixed(ms < 10_000 ? 1 : 0);
}
