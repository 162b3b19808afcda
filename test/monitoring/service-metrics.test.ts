import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { createMemoryBus, type MemoryBus } from '../../shared/bus/memory-bus.js';
import { manualClock, systemClock } from '../../shared/clock.js';
import { loadOrchestratorConfig } from '../../shared/config.js';
import { createFleetPaceReader } from '../../shared/fleet-pace-reader.js';
import { createMemoryLogger } from '../../shared/logger.js';
import { createMetrics, type Metrics } from '../../shared/metrics.js';
import { createMemoryScheduler } from '../../shared/scheduler/memory-scheduler.js';
import { createMemoryNodeStore } from '../../shared/store/memory-node-store.js';
import { StoreUnavailableError, type NodeStore } from '../../shared/store/node-store.js';
import { brokerNames, ROUTING, topology } from '../../shared/topology.js';
import { createApp } from '../../services/api/app.js';
import { createIngest } from '../../services/ingest/ingest.js';
import { createSweeper } from '../../services/sweeper/sweeper.js';
import { eventually } from '../support/services.js';
import { fleetOffline, seedFleet } from '../dashboard/fleet-fixture.js';

/**
 * The gauges monitoring/alerts.yml needs beyond the counters: readiness, the store as each process sees it, the
 * sweeper's last completed sweep and interval, and the depth of the queues operators watch.
 */

const ENV = { AUTH_MODE: 'off', TIMEOUT_MINUTES: '1', HEALTH_CHECK_INTERVAL: '20', INGEST_FLUSH_MS: '5', BROKER_NAMESPACE: 'metrics-test' };
const config = loadOrchestratorConfig(ENV);
const names = brokerNames(config.brokerNamespace);

/** A store that refuses every call with StoreUnavailableError while `down` is set, like MongoDB during a restart. */
function switchableStore(store: NodeStore) {
  const state = { down: false };
  const wrapped = { ...store } as Record<string, unknown>;
  for (const [key, value] of Object.entries(store)) {
    if (typeof value !== 'function') continue;
    wrapped[key] = async (...args: unknown[]) => {
      if (state.down) throw new StoreUnavailableError('store unavailable (test)');
      return (value as (...a: unknown[]) => Promise<unknown>).apply(store, args);
    };
  }
  return { store: wrapped as unknown as NodeStore, state };
}

async function gauge(metrics: Metrics, name: string, labels: Record<string, string> = {}): Promise<number | undefined> {
  const metric = (await metrics.registry.getMetricsAsJSON()).find((m) => m.name === name);
  return metric?.values.find((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l))?.value;
}

describe('service metrics for the alert rules', () => {
  describe('sweeper', () => {
    it('shows its interval, its start as the last completed sweep until one completes, then each completed sweep but no failed one', async () => {
      const clock = manualClock(Date.UTC(2026, 0, 1, 12, 0, 0));
      const start = clock.now();
      const bus = createMemoryBus();
      const { store, state } = switchableStore(createMemoryNodeStore({ historyPoints: 0 }));
      const metrics = createMetrics();
      const sweeper = createSweeper({ bus, store, scheduler: createMemoryScheduler(), log: createMemoryLogger('error'), clock, metrics, config });
      state.down = true;
      await sweeper.start();
      try {
        expect(await gauge(metrics, 'orchestrator_sweep_interval_seconds')).to.equal(0.02);
        expect(await gauge(metrics, 'orchestrator_sweep_last_completed_timestamp_seconds')).to.equal(start / 1000);
        await eventually(async () => (await gauge(metrics, 'orchestrator_store_up', { component: 'sweeper' })) === 0);
        clock.advance(60_000);
        await new Promise((resolve) => setTimeout(resolve, 60));
        expect(await gauge(metrics, 'orchestrator_sweep_last_completed_timestamp_seconds'), 'failed sweeps').to.equal(start / 1000);

        state.down = false;
        await eventually(async () => (await gauge(metrics, 'orchestrator_sweep_last_completed_timestamp_seconds')) === (start + 60_000) / 1000);
        expect(await gauge(metrics, 'orchestrator_store_up', { component: 'sweeper' })).to.equal(1);
      } finally {
        await sweeper.stop();
        await bus.close();
      }
    });
  });

  describe('sweeper: the heartbeat pace', () => {
    it('shows the interval it advertises and the fleet rate that gives, from its count of the ONLINE nodes', async () => {
      const clock = manualClock(Date.UTC(2026, 0, 1, 12, 0, 0));
      const store = createMemoryNodeStore({ historyPoints: 0 });
      await seedFleet(store, 700, clock.now(), 700, 0);
      const online = Array.from({ length: 700 }, (_, i) => i).filter((i) => !fleetOffline(i)).length; // 600
      const paced = loadOrchestratorConfig({ ...ENV, HEARTBEAT_MAX_RATE: '4' });
      const bus = createMemoryBus();
      const metrics = createMetrics();
      const sweeper = createSweeper({ bus, store, scheduler: createMemoryScheduler(), log: createMemoryLogger('error'), clock, metrics, config: paced });
      await sweeper.start();
      try {
        // ceil(600 / 4) = 150 s, and 600 nodes every 150 s are 4 beats/s.
        await eventually(async () => (await gauge(metrics, 'orchestrator_heartbeat_interval_seconds')) === Math.ceil(online / 4));
        expect(await gauge(metrics, 'orchestrator_fleet_heartbeat_rate')).to.equal(online / Math.ceil(online / 4));
      } finally {
        await sweeper.stop();
        await bus.close();
      }
    });

    it('shows 0 for both with adaptation off (HEARTBEAT_MAX_RATE=0)', async () => {
      const clock = manualClock(Date.UTC(2026, 0, 1, 12, 0, 0));
      const store = createMemoryNodeStore({ historyPoints: 0 });
      await seedFleet(store, 70, clock.now(), 70, 0);
      const bus = createMemoryBus();
      const metrics = createMetrics();
      const off = loadOrchestratorConfig({ ...ENV, HEARTBEAT_MAX_RATE: '0' });
      const sweeper = createSweeper({ bus, store, scheduler: createMemoryScheduler(), log: createMemoryLogger('error'), clock, metrics, config: off });
      await sweeper.start();
      try {
        await eventually(async () => (await gauge(metrics, 'orchestrator_sweep_last_completed_timestamp_seconds')) === clock.now() / 1000);
        clock.advance(off.sweepIntervalMs);
        await eventually(async () => (await gauge(metrics, 'orchestrator_sweep_last_completed_timestamp_seconds')) === clock.now() / 1000);
        expect(await store.fleetPace()).to.equal(null);
        expect(await gauge(metrics, 'orchestrator_heartbeat_interval_seconds')).to.equal(0);
        expect(await gauge(metrics, 'orchestrator_fleet_heartbeat_rate')).to.equal(0);
      } finally {
        await sweeper.stop();
        await bus.close();
      }
    });
  });

  describe('ingest', () => {
    it('is ready while it consumes with its store answering; not ready, with the store down, during a store outage; not ready without the broker', async () => {
      const bus = createMemoryBus();
      const { store, state } = switchableStore(createMemoryNodeStore({ historyPoints: 0 }));
      const metrics = createMetrics();
      const ingest = createIngest({ bus, store, log: createMemoryLogger('error'), clock: systemClock, metrics, config });
      await ingest.start();
      const register = async (nodeId: string) => {
        const id = randomUUID();
        const body = { id, type: 'agent.register', version: 1, sentAt: new Date().toISOString(), nodeId, payload: { nodeId, hostname: 'h', ipAddress: '10.0.0.1', maxServers: 1 } };
        await bus.publish(names.exchanges.agentInbound, ROUTING.register(nodeId), body, { messageId: id });
      };
      try {
        expect(await gauge(metrics, 'orchestrator_ready', { component: 'ingest' })).to.equal(1);
        expect(await gauge(metrics, 'orchestrator_store_up', { component: 'ingest' })).to.equal(1);

        state.down = true;
        await register('node-1');
        await eventually(async () => (await gauge(metrics, 'orchestrator_store_up', { component: 'ingest' })) === 0);
        expect(await gauge(metrics, 'orchestrator_ready', { component: 'ingest' })).to.equal(0);

        state.down = false;
        await eventually(async () => (await gauge(metrics, 'orchestrator_ready', { component: 'ingest' })) === 1, 8000);
        expect(await gauge(metrics, 'orchestrator_store_up', { component: 'ingest' })).to.equal(1);

        bus.setConnected(false);
        expect(await gauge(metrics, 'orchestrator_ready', { component: 'ingest' })).to.equal(0);
        expect(await gauge(metrics, 'orchestrator_store_up', { component: 'ingest' })).to.equal(1);
      } finally {
        bus.setConnected(true);
        await ingest.stop();
        await bus.close();
      }
    });
  });

  describe('api', () => {
    let bus: MemoryBus;
    let state: { down: boolean };
    let store: NodeStore;
    let server: Server;
    let url: string;

    beforeEach(async () => {
      bus = createMemoryBus();
      await bus.declareTopology(topology(names));
      const switchable = switchableStore(createMemoryNodeStore({ historyPoints: 0 }));
      state = switchable.state;
      store = switchable.store;
      const fleetPace = createFleetPaceReader({ store, clock: systemClock, settings: config.pace, cacheMs: 0 });
      const app = createApp({ bus, store, names, log: createMemoryLogger('error'), clock: systemClock, metrics: createMetrics(), fleetPace });
      server = await new Promise<Server>((resolve) => {
        const s = app.listen(0, '127.0.0.1', () => resolve(s));
      });
      url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    });
    afterEach(async () => {
      bus.unblock();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      await bus.close();
    });

    /** The samples of one metric in the /metrics text, by their label string. */
    const scrape = async (name: string) => {
      const text = await (await fetch(`${url}/metrics`)).text();
      const samples: Record<string, number> = {};
      for (const line of text.split('\n')) {
        const m = /^(\w+)(\{[^}]*\})? (\S+)$/.exec(line);
        if (m && m[1] === name) samples[m[2] ?? ''] = Number(m[3]);
      }
      return samples;
    };

    it('shows at each scrape the messages ready in the ingest queue and in the dead-letter queue', async () => {
      await bus.publish(names.exchanges.deadLetter, '', Buffer.from('{"refused":1}'));
      await bus.publish(names.exchanges.deadLetter, '', Buffer.from('{"refused":2}'));
      await bus.publish(names.exchanges.agentInbound, ROUTING.heartbeat('node-1'), Buffer.from('{}'));

      expect(await scrape('orchestrator_queue_messages')).to.deep.equal({
        [`{queue="${names.queues.ingest}"}`]: 1,
        [`{queue="${names.queues.deadLetter}"}`]: 2,
      });
    });

    it('shows the heartbeat pace the sweeper stored: the advertised interval and the fleet rate it gives', async () => {
      expect(await scrape('orchestrator_heartbeat_interval_seconds'), 'before the sweeper stored one').to.deep.equal({ '': 0 });
      await store.setFleetPace({ intervalSeconds: 120, fleetSize: 12_000, changedAt: Date.now(), onlineNodes: 11_760, countedAt: Date.now() });
      expect(await scrape('orchestrator_heartbeat_interval_seconds')).to.deep.equal({ '': 120 });
      expect(await scrape('orchestrator_fleet_heartbeat_rate')).to.deep.equal({ '': 98 });
    });

    it('is ready with the store up while /readyz says so, and not ready while the broker blocks or the store fails', async () => {
      expect(await scrape('orchestrator_ready')).to.deep.equal({ '{component="api"}': 1 });
      expect(await scrape('orchestrator_store_up')).to.deep.equal({ '{component="api"}': 1 });

      bus.block('low on memory');
      expect(await scrape('orchestrator_ready')).to.deep.equal({ '{component="api"}': 0 });
      expect((await fetch(`${url}/readyz`)).status).to.equal(503);
      bus.unblock();

      state.down = true;
      expect(await scrape('orchestrator_ready')).to.deep.equal({ '{component="api"}': 0 });
      expect(await scrape('orchestrator_store_up')).to.deep.equal({ '{component="api"}': 0 });
      expect((await fetch(`${url}/readyz`)).status).to.equal(503);
    });
  });
});
