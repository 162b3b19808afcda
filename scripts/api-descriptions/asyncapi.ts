import { z } from 'zod';
import {
  canaryMessageSchema,
  clusterEventSchema,
  controlMessageSchema,
  heartbeatBodySchema,
  heartbeatMessageSchema,
  nodeEventSchema,
  nodeIdSchema,
  registerBodySchema,
  registerMessageSchema,
  shutdownBodySchema,
  shutdownMessageSchema,
} from '../../shared/messages/index.js';
import { brokerNames, HEADERS, ROUTING, topology } from '../../shared/topology.js';
import { componentSchemas } from './json-schemas.js';

const AMQP_BINDING_VERSION = '0.3.0';

export const nodeEventHeadersSchema = z.looseObject({
  'x-status-version': z.number().int().min(1).meta({ description: "The event's statusVersion" }),
});

export const refusalHeadersSchema = z.union([
  z
    .looseObject({
      [HEADERS.refusalReason]: z.string().meta({ description: 'Why it was refused, e.g. "unknown node: node-7 is not registered"' }),
      [HEADERS.refusedBy]: z.literal('ingest'),
      [HEADERS.originalRoutingKey]: z.string().meta({ description: 'The routing key it was published with' }),
    })
    .meta({ description: 'Refused by the ingest' }),
  z
    .looseObject({
      'x-first-death-reason': z.literal('delivery_limit').meta({ description: 'Given back to the ingest queue more often than its x-delivery-limit' }),
      'x-first-death-queue': z.string().meta({ description: 'The ingest queue' }),
      'x-death': z
        .array(z.looseObject({ reason: z.string(), queue: z.string(), count: z.number().int().min(1), 'routing-keys': z.array(z.string()) }))
        .meta({ description: "RabbitMQ's record of each dead-lettering, newest first" }),
    })
    .meta({
      description: 'Dead-lettered by the broker: given back to the ingest queue more than its x-delivery-limit times, its processing failing on every delivery',
    }),
]);

/** Fixed example messages, each checked against its schema when the description is built. */
const EXAMPLES = {
  register: {
    id: '0b9f6c1e-2f0e-4a57-9d8e-4c1a2b3c4d5e',
    type: 'agent.register',
    version: 1,
    sentAt: '2025-01-01T12:00:00.000Z',
    nodeId: 'node-1',
    payload: { nodeId: 'node-1', hostname: 'game-host-1', ipAddress: '10.0.0.5', maxServers: 20 },
  },
  heartbeat: {
    id: '5d2c7a90-8a1b-4c3d-9e4f-0a1b2c3d4e5f',
    type: 'agent.heartbeat',
    version: 1,
    sentAt: '2025-01-01T12:01:00.000Z',
    nodeId: 'node-1',
    payload: { cpuUsage: 12.5, memoryUsage: 40.1, diskUsage: 73.2, containerCount: 3, timestamp: '2025-01-01T12:01:00.000Z' },
  },
  shutdown: {
    id: '9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d',
    type: 'agent.shutdown',
    version: 1,
    sentAt: '2025-01-01T13:00:00.000Z',
    nodeId: 'node-1',
    payload: {},
  },
  canary: {
    id: '3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f',
    type: 'orchestrator.canary',
    version: 1,
    sentAt: '2025-01-01T12:00:05.000Z',
    senderId: 'sweeper-1a2b3c4d',
    kind: 'sweeper',
    intervalMs: 5000,
  },
  reregister: {
    id: '7e6d5c4b-3a29-4817-9654-3210fedcba98',
    type: 'control.reregister',
    version: 1,
    sentAt: '2025-01-01T12:05:00.000Z',
    nodeId: 'node-1',
    reason: 'node is not registered',
  },
  nodeOffline: {
    eventId: '6f1c2d3e-4a5b-4c6d-8e7f-9a0b1c2d3e4f',
    type: 'node.offline',
    version: 1,
    nodeId: 'node-1',
    status: 'OFFLINE',
    previousStatus: 'ONLINE',
    statusVersion: 4,
    lastHeartbeat: '2025-01-01T12:00:00.000Z',
    occurredAt: '2025-01-01T12:03:05.000Z',
    reason: 'timeout',
  },
  nodeRegistered: {
    eventId: '1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d',
    type: 'node.registered',
    version: 1,
    nodeId: 'node-1',
    status: 'ONLINE',
    previousStatus: null,
    statusVersion: 1,
    lastHeartbeat: '2025-01-01T12:00:00.000Z',
    occurredAt: '2025-01-01T12:00:00.000Z',
    reason: 'registered',
  },
  clusterDegraded: {
    eventId: '2b3c4d5e-6f7a-4b8c-9d0e-1f2a3b4c5d6e',
    type: 'cluster.degraded',
    version: 1,
    occurredAt: '2025-01-01T12:03:05.000Z',
    silentNodes: 40,
    onlineNodes: 50,
    heldUntil: '2025-01-01T12:09:05.000Z',
    reason: '40 of 50 ONLINE nodes went silent at once',
  },
} as const;

function example<T>(schema: z.ZodType<T>, name: string, payload: unknown, headers?: Record<string, unknown>) {
  return { name, payload: schema.parse(payload), ...(headers ? { headers } : {}) };
}

/** docs/asyncapi.yaml: the orchestrator's exchanges, routing keys and messages, with every payload from the zod schemas the code validates with. */
export function buildAsyncApi(version: string): Record<string, unknown> {
  const names = brokerNames();
  const declared = topology(names);
  const ingestQueue = declared.queues.find((q) => q.name === names.queues.ingest);
  if (!ingestQueue) throw new Error('topology() declares no ingest queue');

  /** The AMQP binding of a channel whose address is a routing key on `exchange`, as topology() declares it. */
  function onExchange(exchange: string) {
    const spec = declared.exchanges.find((e) => e.name === exchange);
    if (!spec) throw new Error(`topology() declares no exchange ${exchange}`);
    return {
      amqp: {
        is: 'routingKey',
        exchange: { name: spec.name, type: spec.type, durable: spec.durable, autoDelete: false, vhost: '/' },
        bindingVersion: AMQP_BINDING_VERSION,
      },
    };
  }

  /** "Bound to queue …": the topology() binding that routes `routingKey` off `exchange`. */
  function boundTo(exchange: string, pattern: string): string {
    const binding = declared.bindings.find((b) => b.source === exchange && b.routingKey === pattern);
    if (!binding) throw new Error(`topology() binds nothing to ${pattern} on ${exchange}`);
    const quorum = declared.queues.find((q) => q.name === binding.destination)?.arguments['x-queue-type'] === 'quorum';
    return `Routed to the ${quorum ? 'quorum queue' : 'queue'} ${binding.destination} (binding ${pattern}), which every ingest consumes.`;
  }

  const schemas = componentSchemas(
    {
      NodeId: { schema: nodeIdSchema, description: 'A node id: 1-64 characters of A-Z a-z 0-9 . _ -, safe in routing keys' },
      RegisterBody: { schema: registerBodySchema, description: 'The registration, as the HTTP body' },
      HeartbeatBody: { schema: heartbeatBodySchema, description: "A heartbeat's stats, as the HTTP body; timestamp is the agent's clock" },
      ShutdownBody: { schema: shutdownBodySchema, description: 'A shutdown announcement, as the HTTP body' },
      RegisterMessage: {
        schema: registerMessageSchema,
        description: "An agent's registration; payload.nodeId must equal the envelope's nodeId",
      },
      HeartbeatMessage: { schema: heartbeatMessageSchema, description: "An agent's heartbeat" },
      ShutdownMessage: { schema: shutdownMessageSchema, description: "An agent's shutdown announcement" },
      CanaryMessage: { schema: canaryMessageSchema, description: "An orchestrator process's own heartbeat along the agents' path" },
      ControlMessage: { schema: controlMessageSchema, description: 'The orchestrator asks one agent to register again' },
      NodeEvent: { schema: nodeEventSchema, description: "A node's status change" },
      ClusterEvent: { schema: clusterEventSchema, description: 'The mass-silence guard started holding silent nodes ONLINE' },
      NodeEventHeaders: { schema: nodeEventHeadersSchema, description: 'AMQP headers of a node event' },
      RefusalHeaders: {
        schema: refusalHeadersSchema,
        description: "AMQP headers of a dead-lettered message: the original ones plus the ingest's refusal headers, or the broker's dead-letter headers",
      },
    },
    'draft-7',
  );

  const envelope =
    "Envelope: `id` unique per message (also the AMQP message-id; redeliveries keep it), `sentAt` the sender's clock (never used to judge liveness), `receivedAt` set only by the api for messages that came over HTTP, `auth` the credential string with AUTH_MODE=on (docs/security.md). Unknown keys are refused; the routing key must name the same type and node as the body.";
  const ref = (path: string) => ({ $ref: path });
  const schema = (id: string) => ref(`#/components/schemas/${id}`);
  const json = { contentType: 'application/json' };
  const persistent = { amqp: { deliveryMode: 2, bindingVersion: AMQP_BINDING_VERSION } };

  const messages = {
    agentRegister: {
      name: 'agent.register',
      title: 'Registration',
      summary: 'An agent registers its node (first time, or again)',
      description: envelope,
      ...json,
      payload: schema('RegisterMessage'),
      examples: [example(registerMessageSchema, 'register', EXAMPLES.register)],
    },
    agentHeartbeat: {
      name: 'agent.heartbeat',
      title: 'Heartbeat',
      summary: 'An agent reports that its node is alive, with its stats',
      description: envelope,
      ...json,
      payload: schema('HeartbeatMessage'),
      examples: [example(heartbeatMessageSchema, 'heartbeat', EXAMPLES.heartbeat)],
    },
    agentShutdown: {
      name: 'agent.shutdown',
      title: 'Shutdown',
      summary: 'An agent announces that it stops: its node goes OFFLINE with reason shutdown',
      description: envelope,
      ...json,
      payload: schema('ShutdownMessage'),
      examples: [example(shutdownMessageSchema, 'shutdown', EXAMPLES.shutdown)],
    },
    orchestratorCanary: {
      name: 'orchestrator.canary',
      title: 'Canary',
      summary: 'Each sweeper and api process proves that heartbeats are recorded end to end',
      description:
        '`senderId` is `<kind>-<8 hex digits>`, new per process; `failedSince` says since when the sender could not get canaries onto the path. Only orchestrator processes should be able to publish these: give agents broker users of their own.',
      ...json,
      payload: schema('CanaryMessage'),
      examples: [example(canaryMessageSchema, 'canary', EXAMPLES.canary)],
    },
    controlReregister: {
      name: 'control.reregister',
      title: 'Re-register request',
      summary: 'The orchestrator asks an agent to register again',
      description:
        'Sent when a heartbeat names a node the store does not know (`reason` "node is not registered") or whose clock baseline is stale ("heartbeat clock baseline is stale"). At most once a second per node and ingest, never while the ingest works through a backlog.',
      ...json,
      payload: schema('ControlMessage'),
      examples: [example(controlMessageSchema, 'reregister', EXAMPLES.reregister)],
    },
    refusedAgentMessage: {
      name: 'refused',
      title: 'Refused agent message',
      summary: 'An agent message the ingest refused and never stored',
      description: `The body is the refused message unchanged (it may not be JSON), with its routing key. Refused by the ingest (header ${HEADERS.refusalReason}): too large, not JSON, invalid, a routing key that does not match, an unknown node (heartbeat or shutdown), failed authentication. Dead-lettered by the broker (x-death, x-first-death-reason delivery_limit): given back to the ingest queue more than its delivery limit (${String(ingestQueue.arguments['x-delivery-limit'])}) times because processing it kept failing.`,
      contentType: 'application/octet-stream',
      headers: schema('RefusalHeaders'),
      payload: { description: 'The refused body, byte for byte' },
    },
    nodeEvent: {
      name: 'node.event',
      title: 'Node status change',
      summary: 'A node changed status: exactly one event per change',
      description:
        "Delivered at least once: drop duplicates by `eventId` (also the AMQP message-id). `statusVersion` grows by exactly one with each status change of a node: order by it and ignore anything not newer than what you hold. `previousStatus` is null on node.registered; `lastHeartbeat` is the orchestrator's receive time of the newest heartbeat or registration at the change.",
      ...json,
      headers: schema('NodeEventHeaders'),
      payload: schema('NodeEvent'),
      examples: [
        example(nodeEventSchema, 'registered', EXAMPLES.nodeRegistered, { 'x-status-version': EXAMPLES.nodeRegistered.statusVersion }),
        example(nodeEventSchema, 'offline', EXAMPLES.nodeOffline, { 'x-status-version': EXAMPLES.nodeOffline.statusVersion }),
      ],
    },
    clusterDegraded: {
      name: 'cluster.degraded',
      title: 'Cluster degraded',
      summary: 'More than MASS_SILENCE_SHARE of the ONLINE nodes fell silent in one sweep: none of them is marked OFFLINE for now',
      description:
        'Published once per hold and not stored: if the broker refuses it, it is logged, not retried. `heldUntil`: when the silent nodes are marked OFFLINE anyway if the silence lasts.',
      ...json,
      payload: schema('ClusterEvent'),
      examples: [example(clusterEventSchema, 'degraded', EXAMPLES.clusterDegraded)],
    },
  };

  const nodeIdParameter = { nodeId: { description: 'The node id (NodeId)' } };
  const inbound = names.exchanges.agentInbound;
  const nodeEvents = names.exchanges.nodeEvents;
  const channel = (address: string, message: keyof typeof messages, description: string, bindings: object, parameters?: object) => ({
    address,
    description,
    ...(parameters ? { parameters } : {}),
    messages: { [message]: ref(`#/components/messages/${message}`) },
    bindings,
  });
  const deadLetterQueue = declared.queues.find((q) => q.name === names.queues.deadLetter);
  if (!deadLetterQueue) throw new Error('topology() declares no dead-letter queue');

  const channels = {
    agentRegister: channel(
      ROUTING.register('{nodeId}'),
      'agentRegister',
      `Registrations, on ${inbound}. ${boundTo(inbound, 'agent.register.#')}`,
      onExchange(inbound),
      nodeIdParameter,
    ),
    agentHeartbeat: channel(
      ROUTING.heartbeat('{nodeId}'),
      'agentHeartbeat',
      `Heartbeats, on ${inbound}. ${boundTo(inbound, 'agent.heartbeat.#')}`,
      onExchange(inbound),
      nodeIdParameter,
    ),
    agentShutdown: channel(
      ROUTING.shutdown('{nodeId}'),
      'agentShutdown',
      `Shutdown announcements, on ${inbound}. ${boundTo(inbound, 'agent.shutdown.#')}`,
      onExchange(inbound),
      nodeIdParameter,
    ),
    orchestratorCanary: channel(
      ROUTING.canary('{senderId}'),
      'orchestratorCanary',
      `The orchestrator's canaries, on ${inbound}. ${boundTo(inbound, 'agent.canary.#')}`,
      onExchange(inbound),
      { senderId: { description: 'The sending process: sweeper-<8 hex digits> or api-<8 hex digits>' } },
    ),
    agentControl: channel(
      ROUTING.control('{nodeId}'),
      'controlReregister',
      `Requests to one agent, on ${names.exchanges.agentControl}. An agent consumes them from its own queue ${names.exchanges.agentControl}.<nodeId> (exclusive, auto-deleted, bound to its routing key).`,
      onExchange(names.exchanges.agentControl),
      nodeIdParameter,
    ),
    agentDeadLetter: channel(
      deadLetterQueue.name,
      'refusedAgentMessage',
      `Refused agent messages: published to the fanout exchange ${names.exchanges.deadLetter}, kept in this queue (at most ${String(deadLetterQueue.arguments['x-max-length'])} messages, the oldest dropped first). Only operators should read it: refused messages keep their auth field.`,
      {
        amqp: {
          is: 'queue',
          queue: { name: deadLetterQueue.name, durable: deadLetterQueue.durable, exclusive: false, autoDelete: false, vhost: '/' },
          bindingVersion: AMQP_BINDING_VERSION,
        },
      },
    ),
    nodeRegistered: channel(
      ROUTING.nodeRegistered,
      'nodeEvent',
      `On ${nodeEvents}: a node id registers and the store has no record of it (first registration, or after an operator reset or a lost record); reason registered. Bind a durable queue of your own.`,
      onExchange(nodeEvents),
    ),
    nodeOnline: channel(ROUTING.nodeOnline, 'nodeEvent', `On ${nodeEvents}: an OFFLINE node is heard from again; reason heartbeat or registered.`, onExchange(nodeEvents)),
    nodeOffline: channel(
      ROUTING.nodeOffline,
      'nodeEvent',
      `On ${nodeEvents}: the sweeper found the node silent for TIMEOUT_MINUTES (reason timeout), or its agent announced a shutdown (reason shutdown).`,
      onExchange(nodeEvents),
    ),
    clusterDegraded: channel(ROUTING.clusterDegraded, 'clusterDegraded', `On ${nodeEvents}: the mass-silence guard tripped.`, onExchange(nodeEvents)),
  };

  const operation = (action: 'send' | 'receive', channelId: keyof typeof channels, summary: string, bindings?: object) => {
    const message = Object.keys(channels[channelId].messages)[0]!;
    return {
      action,
      channel: ref(`#/channels/${channelId}`),
      summary,
      messages: [ref(`#/channels/${channelId}/messages/${message}`)],
      ...(bindings ? { bindings } : {}),
    };
  };
  const consumed = { amqp: { ack: true, bindingVersion: AMQP_BINDING_VERSION } };

  return {
    asyncapi: '3.0.0',
    info: {
      title: 'Host heartbeat orchestrator messages',
      version,
      description: [
        'The orchestrator (ingest, sweeper and api) as one application on RabbitMQ: what it receives from agents, and what it sends to agents and to subscribers of node.events.',
        '',
        'Every message is JSON (content-type application/json) with the AMQP message-id set to its id (eventId for events), published with publisher confirms. With BROKER_NAMESPACE every exchange and queue name gets the prefix `<namespace>.`; routing keys are unchanged. The topology is in rabbitmq/definitions.json.',
        '',
        'Generated by `npm run docs:api` from the zod schemas the code validates with: do not edit by hand. Reference: docs/reference.md (Events; Agent ↔ orchestrator messages).',
      ].join('\n'),
    },
    defaultContentType: 'application/json',
    servers: {
      broker: {
        host: '{host}:{port}',
        protocol: 'amqp',
        protocolVersion: '0-9-1',
        description: 'RabbitMQ, as RABBITMQ_URL names it (amqp: or amqps:)',
        variables: { host: { default: '127.0.0.1' }, port: { default: '5672' } },
      },
    },
    channels,
    operations: {
      receiveRegistration: operation('receive', 'agentRegister', 'The ingest stores registrations', consumed),
      receiveHeartbeat: operation('receive', 'agentHeartbeat', 'The ingest stores heartbeats in batches and acknowledges them once written', consumed),
      receiveShutdown: operation('receive', 'agentShutdown', 'The ingest marks the node OFFLINE', consumed),
      sendCanary: operation('send', 'orchestratorCanary', 'Each sweeper and api sends one every CANARY_INTERVAL_MS', persistent),
      receiveCanary: operation('receive', 'orchestratorCanary', 'The ingest records its arrival', consumed),
      sendReregisterRequest: operation('send', 'agentControl', 'The ingest asks an agent to register again: not persistent, expires after 60 s', {
        amqp: { deliveryMode: 1, expiration: 60000, bindingVersion: AMQP_BINDING_VERSION },
      }),
      sendRefusal: operation('send', 'agentDeadLetter', 'The ingest dead-letters a refused message, then acknowledges it', persistent),
      sendNodeRegistered: operation('send', 'nodeRegistered', 'A new node', persistent),
      sendNodeOnline: operation('send', 'nodeOnline', 'A node is back', persistent),
      sendNodeOffline: operation('send', 'nodeOffline', 'A node went silent or shut down', persistent),
      sendClusterDegraded: operation('send', 'clusterDegraded', 'The mass-silence guard holds silent nodes', persistent),
    },
    components: { schemas, messages },
  };
}
