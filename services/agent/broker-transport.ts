import { BusUnavailableError, type Bus } from '../../shared/bus/bus.js';
import { ROUTING, type BrokerNames } from '../../shared/topology.js';
import { withTimeout, type Timers } from './timers.js';
import { TransportError, type OutboundMessage, type SendOptions, type Transport } from './transport.js';

export interface BrokerTransport extends Transport {
  /** Connected and not blocking publishes now: worth trying before HTTP. */
  isAvailable(): boolean;
  /** Why isAvailable() is false (for the fallback's log line and error). */
  unavailableReason(): string;
}

const ROUTE = {
  'agent.register': ROUTING.register,
  'agent.heartbeat': ROUTING.heartbeat,
  'agent.shutdown': ROUTING.shutdown,
} as const;

/** Publishes envelopes to the agent inbound exchange; accepted once the broker confirmed them. */
export function createBrokerTransport(deps: { bus: Bus; names: BrokerNames; timers: Timers }): BrokerTransport {
  const { bus, names, timers } = deps;
  // A broker that blocks publishers (memory or disk alarm) is treated like one that cannot be reached.
  const unavailableReason = () => {
    if (!bus.isConnected()) return 'broker not connected';
    const state = bus.publishState();
    return state.blocked ? `broker blocking publishes: ${state.reason}` : '';
  };
  return {
    name: 'amqp',
    isAvailable: () => !unavailableReason(),
    unavailableReason,
    async send(message: OutboundMessage, options: SendOptions): Promise<undefined> {
      const unavailable = unavailableReason();
      if (unavailable) throw new TransportError('UNAVAILABLE', unavailable);
      const publish = bus.publish(names.exchanges.agentInbound, ROUTE[message.type](message.nodeId), message, { messageId: message.id, persistent: true });
      try {
        await withTimeout(timers, publish, options.timeoutMs, () => new TransportError('TIMEOUT', `no broker confirm within ${options.timeoutMs} ms`));
        return undefined; // the pace comes as a control message (control-listener.ts)
      } catch (error) {
        if (error instanceof TransportError) {
          publish.catch(() => undefined); // settles later; nobody waits for it any more
          throw error;
        }
        const reason = error instanceof BusUnavailableError ? error.message : `broker publish failed: ${(error as Error)?.message ?? String(error)}`;
        throw new TransportError('UNAVAILABLE', reason, { cause: error });
      }
    },
  };
}
