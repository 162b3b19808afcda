import type { Clock } from '../../shared/clock.js';
import type { Logger } from '../../shared/logger.js';
import type { BrokerTransport } from './broker-transport.js';
import { withTimeout, type Timers } from './timers.js';
import { reasonOf, TransportError, type OutboundMessage, type PaceSettings, type Transport, type TransportName } from './transport.js';

export interface DeliverOptions {
  /** How long each transport may take (HEARTBEAT_TIMEOUT). */
  timeoutMs: number;
  /** Optional overall limit on `clock` (shutdown): the broker then gets half of what is left, HTTP the rest. */
  deadline?: number;
  signal?: AbortSignal;
}

/** Which transport took a message, and the pace the orchestrator answered with (HTTP only: over AMQP it comes as a control message). */
export interface Accepted {
  via: TransportName;
  pace?: PaceSettings;
}

/**
 * Sends each message over the broker when it is connected and not blocking publishes, else (or when it does not
 * confirm in time) over HTTP.
 */
export interface FailoverTransport {
  /** Resolves with the transport that accepted the message; rejects when none did. */
  send(message: OutboundMessage, options: DeliverOptions): Promise<Accepted>;
}

export function createFailoverTransport(deps: { broker?: BrokerTransport; http: Transport; clock: Clock; timers: Timers; log: Logger }): FailoverTransport {
  const { broker, http, clock, timers, log } = deps;
  let current: TransportName | undefined;

  // Logged when the path changes, not per message.
  function note(via: TransportName, brokerError?: unknown): void {
    if (!broker || via === current) return;
    if (via === 'amqp') log.info(current === undefined ? 'Sending to the orchestrator over RabbitMQ' : 'RabbitMQ is available again, sending over AMQP');
    else log.warn(`RabbitMQ did not take the message (${reasonOf(brokerError)}), sending over HTTP until it is available again`);
    current = via;
  }

  return {
    async send(message, options) {
      const left = () => (options.deadline === undefined ? Infinity : options.deadline - clock.now());
      let brokerError: unknown;
      if (broker?.isAvailable()) {
        try {
          await broker.send(message, { timeoutMs: Math.floor(Math.min(options.timeoutMs, left() / 2)), signal: options.signal });
          note('amqp');
          return { via: 'amqp' };
        } catch (error) {
          brokerError = error;
        }
      } else if (broker) {
        brokerError = new TransportError('UNAVAILABLE', broker.unavailableReason() || 'broker not connected');
      }
      const timeoutMs = Math.floor(Math.min(options.timeoutMs, left()));
      let pace: PaceSettings | undefined;
      try {
        if (timeoutMs <= 0) throw new TransportError('TIMEOUT', 'no time left for HTTP');
        // The HTTP transport aborts its request itself; this bounds any transport on the agent's own timers.
        pace = await withTimeout(
          timers,
          http.send(message, { timeoutMs, signal: options.signal }),
          timeoutMs,
          () => new TransportError('TIMEOUT', `no HTTP answer within ${timeoutMs} ms`),
        );
      } catch (error) {
        throw combine(error, brokerError);
      }
      note('http', brokerError);
      return pace ? { via: 'http', pace } : { via: 'http' };
    },
  };
}

/** The HTTP outcome decides (404, Retry-After); the broker's reason is kept for the log line. */
function combine(httpError: unknown, brokerError: unknown): unknown {
  if (brokerError === undefined) return httpError;
  const base = httpError instanceof TransportError ? httpError : new TransportError('UNAVAILABLE', reasonOf(httpError), { cause: httpError });
  return new TransportError(base.code, `${base.message} (broker: ${reasonOf(brokerError)})`, { cause: httpError, retryAfterMs: base.retryAfterMs });
}
