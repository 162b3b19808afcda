import { randomUUID } from 'node:crypto';
import type { Bus } from '../../shared/bus/bus.js';
import type { Clock } from '../../shared/clock.js';
import type { OrchestratorConfig } from '../../shared/config.js';
import { createCanarySender } from '../../shared/canary/canary-sender.js';
import { createEventPublisher } from '../../shared/events/event-publisher.js';
import type { Logger } from '../../shared/logger.js';
import type { Metrics } from '../../shared/metrics.js';
import { createOutageLog } from '../../shared/outage-log.js';
import type { Scheduler } from '../../shared/scheduler/scheduler.js';
import type { NodeStore } from '../../shared/store/node-store.js';
import { brokerNames, ROUTING, topology } from '../../shared/topology.js';
import { createFleetPaceKeeper } from './fleet-pace.js';
import { createSweep, type SweepDeps } from './sweep.js';

export const SWEEP_JOB = 'sweep';

/**
 * How long a sweep's lease in the store lasts without renewal: half the sweep interval, at least 5 s, like the
 * scheduler's job lock, so a killed sweeper's lease frees the next sweep as soon as the scheduler would.
 */
export function sweepLeaseMs(sweepIntervalMs: number): number {
  return Math.max(5_000, Math.floor(sweepIntervalMs / 2));
}

export interface SweeperDeps {
  bus: Bus;
  store: NodeStore;
  scheduler: Scheduler;
  log: Logger;
  clock: Clock;
  metrics: Metrics;
  config: Pick<OrchestratorConfig, 'timeoutMs' | 'sweep' | 'sweepIntervalMs' | 'brokerNamespace' | 'canaryIntervalMs'> & Partial<Pick<OrchestratorConfig, 'pace'>>;
  afterMark?: SweepDeps['afterMark'];
}

/** The sweeper: runs the timeout sweep on the scheduler every HEALTH_CHECK_INTERVAL. */
export function createSweeper(deps: SweeperDeps) {
  const { bus, store, scheduler, log, clock, metrics, config } = deps;
  const names = brokerNames(config.brokerNamespace);
  const events = createEventPublisher({ bus, store, exchange: names.exchanges.nodeEvents, log, metrics });
  const sweep = createSweep({
    store,
    bus,
    events,
    nodeEventsExchange: names.exchanges.nodeEvents,
    log,
    clock,
    metrics,
    config: { timeoutMs: config.timeoutMs, sweep: config.sweep },
    afterMark: deps.afterMark,
    onCoverage: (coverage) => {
      metrics.heartbeatPathUp.set(coverage.state === 'up' ? 1 : 0);
      metrics.heartbeatPathLag.set(coverage.coveredUntil === null ? -1 : Math.max(0, clock.now() - coverage.coveredUntil) / 1000);
    },
  });
  // Proves, for the sweeps, that agents' heartbeats published to the broker are recorded (docs/architecture.md).
  const canary = createCanarySender({
    kind: 'sweeper',
    intervalMs: config.canaryIntervalMs,
    send: (message) => bus.publish(names.exchanges.agentInbound, ROUTING.canary(message.senderId), message, { messageId: message.id }),
    store,
    clock,
    log,
  });
  const keepPace = config.pace ? createFleetPaceKeeper({ store, clock, log, metrics, settings: config.pace }) : null;
  const paceOutage = createOutageLog({ log, what: 'Heartbeat pace not updated, agents keep the last one', now: () => clock.now() });
  const sweepOutage = createOutageLog({
    log,
    what: 'Sweep failed, will retry at the next interval',
    level: 'error',
    now: () => clock.now(),
    recoveredLine: () => 'Store reachable again: sweeping',
  });

  const leaseHolder = `sweeper-${randomUUID()}`;
  const leaseMs = sweepLeaseMs(config.sweepIntervalMs);
  const takeLease = () => store.takeSweepLease(leaseHolder, new Date(clock.now()), new Date(clock.now() + leaseMs));

  /**
   * One sweep at a time cluster-wide: the scheduler runs one job at a time, and the store's lease fences it, since
   * a Redis failover can lose the record of the job in flight (asynchronous replication) and start the next one
   * beside it. A run that finds the lease held skips its sweep; the holder renews it while it sweeps.
   */
  async function run(): Promise<void> {
    let held: boolean;
    try {
      held = await takeLease();
    } catch (error) {
      sweepOutage.failed(error);
      metrics.storeUp.set({ component: 'sweeper' }, 0);
      return;
    }
    if (!held) {
      log.debug('Sweep skipped: another sweeper holds the sweep lease');
      return;
    }
    const renewal = setInterval(() => void takeLease().catch(() => undefined), Math.max(500, Math.floor(leaseMs / 3)));
    renewal.unref();
    try {
      await sweepUnderLease();
    } finally {
      clearInterval(renewal);
      await store.releaseSweepLease(leaseHolder).catch(() => undefined);
    }
  }

  async function sweepUnderLease(): Promise<void> {
    // Its start and end, for whoever checks one sweep at a time.
    const started = clock.now();
    log.debug('Sweep started', { sweepStartedAt: started });
    try {
      await sweep();
      log.debug('Sweep ended', { sweepStartedAt: started, durationMs: clock.now() - started });
      sweepOutage.recovered();
      metrics.sweepLastCompleted.set(clock.now() / 1000);
    } catch (error) {
      log.debug('Sweep ended', { sweepStartedAt: started, durationMs: clock.now() - started, failed: true });
      sweepOutage.failed(error);
    }
    metrics.storeUp.set({ component: 'sweeper' }, sweepOutage.since() === null ? 1 : 0);
    // After the sweep, so it never delays a detection.
    if (keepPace) {
      await keepPace().then(
        () => paceOutage.recovered(),
        (error: unknown) => paceOutage.failed(error),
      );
    }
  }

  return {
    sweep,
    keepPace,
    async start(): Promise<void> {
      await bus.declareTopology(topology(names)).catch((error: Error) => log.warn(`Broker topology not declared yet: ${error.message}`));
      canary.start();
      // "No sweep for 3 intervals" (monitoring/alerts.yml) counts from the start until the first sweep completes.
      metrics.sweepInterval.set(config.sweepIntervalMs / 1000);
      metrics.sweepLastCompleted.set(clock.now() / 1000);
      await scheduler.every(SWEEP_JOB, config.sweepIntervalMs, run);
      log.info(`Sweeper scheduled every ${config.sweepIntervalMs} ms; nodes time out after ${config.timeoutMs} ms`);
    },
    async stop(): Promise<void> {
      await scheduler.close();
      await canary.stop();
    },
  };
}
