/**
 * Every exchange, queue and routing key of the system. rabbitmq/definitions.json declares the same
 * (test/topology.test.ts fails when the two disagree).
 */
export const EXCHANGES = {
  /** Agents (and the api gateway on their behalf) publish register/heartbeat/shutdown here. */
  agentInbound: 'agent.inbound',
  /** The orchestrator asks one agent to act (re-register) on `agent.control.<nodeId>`. */
  agentControl: 'agent.control',
  /** Refused agent messages, with the reason in the `x-refusal-reason` header. */
  deadLetter: 'agent.dead-letter',
  /** Node status events for subscribers (docs/reference.md, events). */
  nodeEvents: 'node.events',
} as const;

export const QUEUES = {
  /** Competing consumers: every ingest replica reads this one queue. */
  ingest: 'ingest.agent-messages',
  deadLetter: 'agent.dead-letter',
} as const;

export const ROUTING = {
  register: (nodeId: string) => `agent.register.${nodeId}`,
  heartbeat: (nodeId: string) => `agent.heartbeat.${nodeId}`,
  shutdown: (nodeId: string) => `agent.shutdown.${nodeId}`,
  /** The orchestrator's own canary heartbeat, from one sweeper or api process. */
  canary: (senderId: string) => `agent.canary.${senderId}`,
  control: (nodeId: string) => `agent.control.${nodeId}`,
  /** The agent preflight's probe publish (`--check`): no binding matches it, so the broker confirms and drops it. */
  preflight: (nodeId: string) => `agent.preflight.${nodeId}`,
  nodeRegistered: 'node.registered',
  nodeOnline: 'node.online',
  nodeOffline: 'node.offline',
  clusterDegraded: 'cluster.degraded',
} as const;

export const HEADERS = {
  refusalReason: 'x-refusal-reason',
  refusedBy: 'x-refused-by',
  originalRoutingKey: 'x-original-routing-key',
  /** Set by the broker on a quorum queue's redeliveries: how many times the message was given back before. */
  deliveryCount: 'x-delivery-count',
} as const;

/**
 * How many times the ingest queue takes a message back (a failed batch, an ingest stopped or a connection lost
 * with the message unacknowledged) before the broker dead-letters it instead, reason `delivery_limit`: a message
 * is delivered at most this many times plus one, so a poison message never blocks the queue.
 */
export const INGEST_DELIVERY_LIMIT = 5;

export interface ExchangeSpec {
  name: string;
  type: 'topic' | 'fanout' | 'direct';
  durable: boolean;
}
export interface QueueSpec {
  name: string;
  durable: boolean;
  arguments: Record<string, unknown>;
}
export interface BindingSpec {
  source: string;
  destination: string;
  routingKey: string;
}
export interface Topology {
  exchanges: ExchangeSpec[];
  queues: QueueSpec[];
  bindings: BindingSpec[];
}

export type BrokerNames = { exchanges: { [K in keyof typeof EXCHANGES]: string }; queues: { [K in keyof typeof QUEUES]: string } };

/**
 * The names in one namespace. Production uses the empty namespace (the names above); tests and benchmarks
 * use a unique one so that they never share an exchange or queue (BROKER_NAMESPACE).
 */
export function brokerNames(namespace = ''): BrokerNames {
  const p = (name: string) => (namespace ? `${namespace}.${name}` : name);
  return {
    exchanges: {
      agentInbound: p(EXCHANGES.agentInbound),
      agentControl: p(EXCHANGES.agentControl),
      deadLetter: p(EXCHANGES.deadLetter),
      nodeEvents: p(EXCHANGES.nodeEvents),
    },
    queues: { ingest: p(QUEUES.ingest), deadLetter: p(QUEUES.deadLetter) },
  };
}

/** The whole broker topology as data: declared by every service at start, mirrored in rabbitmq/definitions.json. */
export function topology(names: BrokerNames = brokerNames()): Topology {
  const EXCHANGES = names.exchanges;
  const ingestQueue = names.queues.ingest;
  const deadLetterQueue = names.queues.deadLetter;
  return {
    exchanges: [
      { name: EXCHANGES.agentInbound, type: 'topic', durable: true },
      { name: EXCHANGES.agentControl, type: 'topic', durable: true },
      { name: EXCHANGES.deadLetter, type: 'fanout', durable: true },
      { name: EXCHANGES.nodeEvents, type: 'topic', durable: true },
    ],
    queues: [
      {
        name: ingestQueue,
        durable: true,
        // Replicated (Raft) and counting deliveries. A message given back more than the limit is dead-lettered by
        // the broker, which keeps it until the dead-letter queue has it (at-least-once, which needs reject-publish;
        // the queue has no length limit, so reject-publish never refuses a publish). docs/architecture.md, Ingest.
        arguments: {
          'x-queue-type': 'quorum',
          'x-delivery-limit': INGEST_DELIVERY_LIMIT,
          'x-dead-letter-exchange': EXCHANGES.deadLetter,
          'x-dead-letter-strategy': 'at-least-once',
          'x-overflow': 'reject-publish',
        },
      },
      { name: deadLetterQueue, durable: true, arguments: { 'x-max-length': 100000, 'x-overflow': 'drop-head' } },
    ],
    bindings: [
      { source: EXCHANGES.agentInbound, destination: ingestQueue, routingKey: 'agent.register.#' },
      { source: EXCHANGES.agentInbound, destination: ingestQueue, routingKey: 'agent.heartbeat.#' },
      { source: EXCHANGES.agentInbound, destination: ingestQueue, routingKey: 'agent.shutdown.#' },
      { source: EXCHANGES.agentInbound, destination: ingestQueue, routingKey: 'agent.canary.#' },
      { source: EXCHANGES.deadLetter, destination: deadLetterQueue, routingKey: '' },
    ],
  };
}
