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
} as const;

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
        // A message nacked without requeue (a poison message) still lands in the dead-letter queue.
        arguments: { 'x-dead-letter-exchange': EXCHANGES.deadLetter },
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
