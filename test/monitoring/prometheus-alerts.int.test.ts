import { expect } from 'chai';
import { createRabbitBus } from '../../shared/bus/rabbit-bus.js';
import { createMemoryLogger } from '../../shared/logger.js';
import { createMongoNodeStore } from '../../shared/store/mongo-node-store.js';
import type { NodeStore } from '../../shared/store/node-store.js';
import { brokerNames } from '../../shared/topology.js';
import { spawnAgentProcess, signalGroup } from '../agent-int/support.js';
import { ServiceProcess } from '../faults/rig.js';
import { startPrometheus, requireCommand, type PrivatePrometheus, type PrometheusAlert } from '../support/prometheus.js';
import { freePort } from '../support/private-services.js';
import { deleteRedisKeys } from '../support/redis-keys.js';
import { eventually, mongoUrlFor, RABBITMQ_URL, REDIS_URL, requireServices, uniqueName } from '../support/services.js';

/** Timings scaled down so that each alert fires within seconds: timeout 3 s, a sweep every second. */
const TIMEOUT_MINUTES = 0.05;
const SWEEP_MS = 1000;

/**
 * monitoring/alerts.yml in a real Prometheus (monitoring/prometheus.yml with a 1 s scrape and evaluation interval),
 * scraping the real api, ingest and sweeper processes, started as `npm run <service>` against the real RabbitMQ,
 * Redis and MongoDB with a namespace, prefix and database of their own.
 */
describe('monitoring: the alert rules in a real Prometheus @int', function () {
  this.timeout(120_000);
  const namespace = uniqueName('prom');
  const database = namespace.replace(/-/g, '_');
  const nodeId = `${namespace}-node`;
  const procs: Record<string, ServiceProcess> = {};
  let agent: ReturnType<typeof spawnAgentProcess> | undefined;
  let prometheus: PrivatePrometheus | undefined;
  let apiUrl = '';

  before(requireServices('rabbitmq', 'mongodb', 'redis'));
  before(requireCommand('prometheus'));

  before(async function () {
    this.timeout(90_000);
    const [apiPort, ingestPort, sweeperPort, prometheusPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
    apiUrl = `http://127.0.0.1:${apiPort}`;
    const env = {
      RABBITMQ_URL,
      MONGO_URL: mongoUrlFor(database),
      REDIS_URL,
      BROKER_NAMESPACE: namespace,
      REDIS_PREFIX: `test:${namespace}`,
      TIMEOUT_MINUTES: String(TIMEOUT_MINUTES),
      HEALTH_CHECK_INTERVAL: String(SWEEP_MS),
      MASS_SILENCE_GUARD: 'false',
      AUTH_MODE: 'off',
      LOG_LEVEL: 'warn',
    };
    procs.api = new ServiceProcess('api', 'api', { ...env, PORT: String(apiPort) }).start();
    procs.ingest = new ServiceProcess('ingest', 'ingest', { ...env, METRICS_PORT: String(ingestPort) }).start();
    procs.sweeper = new ServiceProcess('sweeper', 'sweeper', { ...env, METRICS_PORT: String(sweeperPort) }).start();
    prometheus = await startPrometheus({
      port: prometheusPort,
      intervalSeconds: 1,
      targets: { api: [`127.0.0.1:${apiPort}`], ingest: [`127.0.0.1:${ingestPort}`], sweeper: [`127.0.0.1:${sweeperPort}`] },
    });
    await eventually(async () => (await fetch(`${apiUrl}/readyz`)).status === 200, 60_000, 250).catch((error: Error) => {
      throw new Error(`api not ready: ${error.message}\n${logs()}`);
    });
    agent = spawnAgentProcess({ NODE_ID: nodeId, ORCHESTRATOR_URL: apiUrl, RABBITMQ_URL, BROKER_NAMESPACE: namespace }, 'node');
    await eventually(async () => ((await (await fetch(`${apiUrl}/api/nodes/${nodeId}`)).json()) as { status?: string }).status === 'ONLINE', 30_000, 200);
    await eventually(
      async () => {
        const targets = await prometheus!.targets();
        return targets.length === 3 && targets.every((t) => t.health === 'up');
      },
      20_000,
      250,
    ).catch(async (error: Error) => {
      throw new Error(`targets not all up: ${error.message}: ${JSON.stringify(await prometheus!.targets())}\n${prometheus!.output()}`);
    });
  });

  after(async function () {
    this.timeout(60_000);
    if (agent) signalGroup(agent.child, 'SIGKILL');
    await prometheus?.stop();
    for (const p of Object.values(procs)) await p.kill('SIGKILL');
    const bus = await createRabbitBus({ url: RABBITMQ_URL, log: createMemoryLogger('error'), name: `cleanup-${namespace}`, initialMaxRetries: 1 }).catch(() => null);
    if (bus) {
      const names = brokerNames(namespace);
      for (const q of Object.values(names.queues)) await bus.deleteQueue(q).catch(() => undefined);
      for (const e of Object.values(names.exchanges)) await bus.deleteExchange(e).catch(() => undefined);
      await bus.close();
    }
    await deleteRedisKeys(REDIS_URL, `test:${namespace}`);
    const store = (await createMongoNodeStore({ url: mongoUrlFor(database), historyPoints: 0, historyResolutionMs: 1000, serverSelectionTimeoutMs: 2000 }).catch(() => null)) as
      (NodeStore & { connection?: { dropDatabase(): Promise<void> } }) | null;
    await store?.connection?.dropDatabase().catch(() => undefined);
    await store?.close();
  });

  function logs(): string {
    return Object.values(procs)
      .map(
        (p) =>
          `--- ${p.name}\n${p.lines
            .slice(-20)
            .map((l) => l.text)
            .join('\n')}`,
      )
      .join('\n');
  }

  /** Waits until Prometheus reports the alert as firing, and returns it. */
  async function firing(alertname: string, timeoutMs: number): Promise<PrometheusAlert> {
    let seen: PrometheusAlert[] = [];
    try {
      return await eventually(
        async () => {
          seen = await prometheus!.alerts();
          return seen.find((a) => a.labels.alertname === alertname && a.state === 'firing');
        },
        timeoutMs,
        250,
      );
    } catch {
      throw new Error(`${alertname} not firing within ${timeoutMs} ms; alerts: ${JSON.stringify(seen)}\n${logs()}`);
    }
  }

  const active = async (alertname: string) => (await prometheus!.alerts()).filter((a) => a.labels.alertname === alertname);

  it("fires OrchestratorNodeOffline once a stopped agent's node times out, naming its runbook", async () => {
    expect(await active('OrchestratorNodeOffline'), 'while the node is ONLINE').to.deep.equal([]);

    // Killed, as by a crash or a power cut: no shutdown announcement, the node just falls silent.
    signalGroup(agent!.child, 'SIGKILL');
    await agent!.exited;
    const alert = await firing('OrchestratorNodeOffline', 30_000);

    expect(((await (await fetch(`${apiUrl}/api/nodes/${nodeId}`)).json()) as { status: string }).status).to.equal('OFFLINE');
    expect(alert.labels).to.include({ severity: 'warning', status: 'OFFLINE', job: 'api' });
    expect(alert.annotations.summary).to.equal('1 node(s) OFFLINE');
    expect(alert.annotations.runbook_url).to.equal('docs/operations.md#orchestratornodeoffline');
  });

  it('fires OrchestratorNoSweep 3 sweep intervals after the sweeper stops', async () => {
    expect(await active('OrchestratorNoSweep'), 'while the sweeper sweeps').to.deep.equal([]);

    await procs.sweeper!.kill('SIGTERM');
    const alert = await firing('OrchestratorNoSweep', 30_000);

    expect(alert.labels).to.include({ severity: 'critical' });
    expect(alert.annotations.runbook_url).to.equal('docs/operations.md#orchestratornosweep-and-orchestratorsweepermissing');
    // The alert's value is the time since the last completed sweep: more than 3 intervals.
    expect(Number(alert.value)).to.be.greaterThan((3 * SWEEP_MS) / 1000);
  });
});
