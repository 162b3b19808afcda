import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** Every metric of the system on one registry; each process creates its own and exposes it at /metrics. */
export function createMetrics(options: { defaultMetrics?: boolean } = {}) {
  const registry = new Registry();
  if (options.defaultMetrics) collectDefaultMetrics({ register: registry });
  return {
    registry,
    messagesIngested: new Counter({
      name: 'orchestrator_ingest_messages_total',
      help: 'Agent messages taken off the broker by the ingest, by type and outcome',
      labelNames: ['type', 'outcome'] as const,
      registers: [registry],
    }),
    batchSize: new Histogram({
      name: 'orchestrator_ingest_batch_size',
      help: 'Messages per ingest batch',
      buckets: [1, 5, 10, 50, 100, 250, 500, 1000, 2000],
      registers: [registry],
    }),
    storeWrites: new Counter({
      name: 'orchestrator_ingest_store_writes_total',
      help: 'Bulk write operations the ingest sent to the store',
      registers: [registry],
    }),
    nodeWrites: new Counter({
      name: 'orchestrator_ingest_node_writes_total',
      help: 'Node documents written by the ingest (after per-node coalescing)',
      registers: [registry],
    }),
    ingestLag: new Histogram({
      name: 'orchestrator_ingest_lag_seconds',
      help: 'Time from delivery to the batch being stored',
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30],
      registers: [registry],
    }),
    storeConflicts: new Counter({
      name: 'orchestrator_store_conflicts_total',
      help: 'Writes retried because another writer changed the node first',
      registers: [registry],
    }),
    sweepDuration: new Histogram({
      name: 'orchestrator_sweep_duration_seconds',
      help: 'Duration of one timeout sweep',
      buckets: [0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5],
      registers: [registry],
    }),
    sweepsSkipped: new Counter({
      name: 'orchestrator_sweeps_held_total',
      help: 'Sweeps that marked nothing because the ingest path was not healthy, by reason',
      labelNames: ['reason'] as const,
      registers: [registry],
    }),
    nodesByStatus: new Gauge({
      name: 'orchestrator_nodes',
      help: 'Nodes by status',
      labelNames: ['status'] as const,
      registers: [registry],
    }),
    eventsPublished: new Counter({
      name: 'orchestrator_events_published_total',
      help: 'Node events confirmed by the broker, by type',
      labelNames: ['type'] as const,
      registers: [registry],
    }),
    deadLettered: new Counter({
      name: 'orchestrator_dead_lettered_total',
      help: 'Agent messages refused and dead-lettered, by reason',
      labelNames: ['reason'] as const,
      registers: [registry],
    }),
    clusterDegraded: new Gauge({
      name: 'orchestrator_cluster_degraded',
      help: '1 while the mass-silence guard holds back a transition of many nodes',
      registers: [registry],
    }),
    brokerBlocked: new Gauge({
      name: 'orchestrator_broker_blocked',
      help: "1 while the broker blocks this process's publishes (memory or disk alarm, or no publisher confirm for a while)",
      registers: [registry],
    }),
    brokerUnconfirmed: new Gauge({
      name: 'orchestrator_broker_unconfirmed_publishes',
      help: 'Publishes sent to the broker and not yet confirmed',
      registers: [registry],
    }),
    brokerOldestUnconfirmed: new Gauge({
      name: 'orchestrator_broker_oldest_unconfirmed_seconds',
      help: 'Age of the oldest publish not yet confirmed by the broker (0 when none)',
      registers: [registry],
    }),
    heartbeatPathUp: new Gauge({
      name: 'orchestrator_heartbeat_path_up',
      help: '1 while every running canary sender gets its canary heartbeats recorded end to end (broker, ingest, store)',
      registers: [registry],
    }),
    heartbeatPathLag: new Gauge({
      name: 'orchestrator_heartbeat_path_lag_seconds',
      help: 'How far behind now the time is up to which heartbeats are proven recorded (nodes are marked OFFLINE only for silence before it)',
      registers: [registry],
    }),
    sweepLastCompleted: new Gauge({
      name: 'orchestrator_sweep_last_completed_timestamp_seconds',
      help: 'Unix time of the last sweep this sweeper completed (held sweeps count; failed ones do not), its start time before the first',
      registers: [registry],
    }),
    heartbeatInterval: new Gauge({
      name: 'orchestrator_heartbeat_interval_seconds',
      help: 'The heartbeat interval the orchestrator advertises to the fleet (agents that declared a longer one keep theirs); 0 while none is needed',
      registers: [registry],
    }),
    fleetHeartbeatRate: new Gauge({
      name: 'orchestrator_fleet_heartbeat_rate',
      help: 'Expected fleet heartbeats per second: ONLINE nodes divided by the advertised interval (what the fleet sends when every agent follows the pace)',
      registers: [registry],
    }),
    sweepInterval: new Gauge({
      name: 'orchestrator_sweep_interval_seconds',
      help: 'HEALTH_CHECK_INTERVAL of this sweeper: the time between two sweeps',
      registers: [registry],
    }),
    ready: new Gauge({
      name: 'orchestrator_ready',
      help: '1 while this process is ready (api: as /readyz says; ingest: consuming, with its store answering), by component',
      labelNames: ['component'] as const,
      registers: [registry],
    }),
    storeUp: new Gauge({
      name: 'orchestrator_store_up',
      help: '1 while the node store answers this process (api: a ping at scrape; ingest: its last write; sweeper: its last sweep), by component',
      labelNames: ['component'] as const,
      registers: [registry],
    }),
    queueMessages: new Gauge({
      name: 'orchestrator_queue_messages',
      help: 'Messages ready in a broker queue (the ingest queue and the dead-letter queue), by queue name',
      labelNames: ['queue'] as const,
      registers: [registry],
    }),
    httpRequests: new Counter({
      name: 'orchestrator_http_requests_total',
      help: 'HTTP requests by route and status',
      labelNames: ['route', 'status'] as const,
      registers: [registry],
    }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
