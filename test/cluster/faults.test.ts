import { expect } from 'chai';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createRabbitBus } from '../../shared/bus/rabbit-bus.js';
import { loadOrchestratorConfig } from '../../shared/config.js';
import { createMemoryLogger } from '../../shared/logger.js';
import type { NodeStore } from '../../shared/store/node-store.js';
import { QUEUES, topology } from '../../shared/topology.js';
import { confirmedButNotStored, openStore, ROOT, ServiceProcess, SimFleet, sleep, subscribeEvents, until } from '../faults/rig.js';
import { freePort, leftBehind } from '../support/private-services.js';
import { formCluster, type Cluster, type RabbitNode, type RedisServer } from './cluster.js';

/**
 * The cluster fault test: 2 ingests, 2 sweepers and 2 apis (`npm run ingest|sweeper|api`) against a 3-node
 * RabbitMQ cluster (the ingest queue a quorum queue), a Redis primary and replica under three Sentinels, and a
 * FerretDB; a simulated fleet spread over the three broker nodes and over both apis; then one fault after
 * another, each with recovery before the next. Every fault prints one row: heartbeats confirmed to an agent (or
 * answered 2xx) but missing from the store, node.offline/node.online for nodes that kept heartbeating, duplicate
 * transitions, and the time until everything worked again.
 */

const LOG_DIR = join(ROOT, '.cache/cluster');
const TIMEOUT_MS = 30_000;
const SWEEP_MS = 1000;
const HEARTBEAT_MS = 3000;
/** Simulated agents per broker node (AMQP), and over HTTP (both apis, behind a simulated load balancer). */
const AMQP_PER_BROKER = 60;
const HTTP_AGENTS = 40;
/** The minority is held for longer than the timeout: no node may go OFFLINE for the silence it causes. */
const MINORITY_MS = TIMEOUT_MS + 5000;
const RECOVERY_LIMIT_MS = 60_000;
const INGEST_QUEUE = QUEUES.ingest;

interface Row {
  fault: string;
  confirmed: number;
  lost: number;
  falseOffline: number;
  duplicates: number;
  recoveryMs: number | null;
  /** What the fault did, as measured (new leader, failover time, publishes refused ...). */
  notes: string;
}

/** What the working tree must provide for this test; each missing piece is named, nothing is simulated instead. */
function missingFeatures(): string[] {
  const missing: string[] = [];
  const ingest = topology().queues.find((q) => q.name === INGEST_QUEUE);
  if (ingest?.arguments['x-queue-type'] !== 'quorum') missing.push(`the ingest queue as a quorum queue (shared/topology.ts: ${INGEST_QUEUE} with x-queue-type quorum)`);
  const env = { AUTH_MODE: 'off', RABBITMQ_URL: 'amqp://127.0.0.1:1,amqp://127.0.0.1:2', REDIS_URL: 'redis+sentinel://127.0.0.1:1,127.0.0.1:2/primary' };
  try {
    loadOrchestratorConfig(env);
  } catch (error) {
    const message = (error as Error).message;
    if (message.includes('RABBITMQ_URL')) missing.push(`RABBITMQ_URL as a comma-separated list of brokers (shared/config.ts): ${message}`);
    if (message.includes('REDIS_URL')) missing.push(`REDIS_URL in the Sentinel form (shared/config.ts): ${message}`);
  }
  return missing;
}

describe('cluster faults @int @cluster', function () {
  this.timeout(180_000);
  const rows: Row[] = [];
  let cluster: Cluster;
  let store: NodeStore;
  let fleets: SimFleet[] = [];
  let events: Awaited<ReturnType<typeof subscribeEvents>>;
  const apiUrls: string[] = [];
  const metricsUrls: string[] = [];
  const procs: Record<string, ServiceProcess> = {};
  let failed = false;

  /** Starts (or restarts) a service process; its process group is killed on exit whatever happens. */
  function start(proc: ServiceProcess): ServiceProcess {
    proc.start();
    leftBehind.group(proc.child?.pid);
    return proc;
  }

  before(async function () {
    this.timeout(300_000);
    const missing = missingFeatures();
    if (missing.length) throw new Error(`this test waits for:\n  - ${missing.join('\n  - ')}`);
    rmSync(join(LOG_DIR, 'nodes'), { recursive: true, force: true });

    cluster = await formCluster();
    console.log(`    cluster formed in ${(cluster.formedInMs / 1000).toFixed(1)} s: RabbitMQ ${cluster.rabbit.nodes.map((n) => `${n.name}:${n.port}`).join(', ')}`);
    console.log(
      `    Redis primary :${cluster.redis.servers[0]!.port}, replica :${cluster.redis.servers[1]!.port}, Sentinels ${cluster.redis.url}; FerretDB :${cluster.ferret.port}`,
    );
    const { rabbit, redis, ferret } = cluster;

    // The bus must move on to the next broker of its list when one does not answer (here: the first).
    const probe = await createRabbitBus({
      url: `amqp://guest:guest@127.0.0.1:${await freePort()},${rabbit.nodes[0]!.url}`,
      log: createMemoryLogger('error'),
      initialMaxRetries: 5,
      maxReconnectDelayMs: 500,
    })
      .then((bus) => bus.close().then(() => ''))
      .catch((error: Error) => error.message);
    if (probe) throw new Error(`this test waits for a bus that connects to the next broker of RABBITMQ_URL's list (shared/bus/rabbit-bus.ts): ${probe}`);

    const queue = await rabbit.queueLeader(INGEST_QUEUE);
    expect(queue.type, `${INGEST_QUEUE} type`).to.equal('quorum');
    expect(queue.members, `${INGEST_QUEUE} members`).to.have.length(3);

    const env = {
      MONGO_URL: ferret.urlFor('cluster'),
      REDIS_URL: redis.url,
      TIMEOUT_MINUTES: String(TIMEOUT_MS / 60_000),
      HEALTH_CHECK_INTERVAL: String(SWEEP_MS),
      LOG_FORMAT: 'json',
      LOG_LEVEL: 'info',
      AUTH_MODE: 'off',
    };
    // Each replica begins its broker list at another node, so the connections spread over the cluster.
    for (const [i, key] of ['A', 'B'].entries()) {
      const [apiPort, metricsPort] = [await freePort(), await freePort()];
      apiUrls.push(`http://127.0.0.1:${apiPort}`);
      metricsUrls.push(`http://127.0.0.1:${metricsPort}/metrics`);
      procs[`ingest${key}`] = start(new ServiceProcess(`ingest-${key.toLowerCase()}`, 'ingest', { ...env, RABBITMQ_URL: rabbit.urls(i) }));
      // At debug level a sweeper logs each sweep's start and end: one sweep at a time is checked from them.
      procs[`sweeper${key}`] = start(
        new ServiceProcess(`sweeper-${key.toLowerCase()}`, 'sweeper', { ...env, LOG_LEVEL: 'debug', RABBITMQ_URL: rabbit.urls(i + 1), METRICS_PORT: String(metricsPort) }),
      );
      procs[`api${key}`] = start(new ServiceProcess(`api-${key.toLowerCase()}`, 'api', { ...env, RABBITMQ_URL: rabbit.urls(i + 2), PORT: String(apiPort) }));
    }
    store = await openStore(ferret.urlFor('cluster'));
    for (const url of apiUrls) expect(await until(async () => (await fetch(`${url}/readyz`)).status === 200, 120_000, 500), `${url} ready`).to.not.equal(null);
    events = await subscribeEvents(rabbit.urls(2), '', { 'x-queue-type': 'quorum' });
    fleets = [
      ...rabbit.nodes.map(
        (_, i) => new SimFleet({ rabbitUrl: rabbit.urls(i), apiUrl: apiUrls[0]!, namespace: '', amqp: AMQP_PER_BROKER, http: 0, intervalMs: HEARTBEAT_MS, idPrefix: `broker${i}` }),
      ),
      new SimFleet({ rabbitUrl: rabbit.urls(0), apiUrl: apiUrls[0]!, apiUrls, namespace: '', amqp: 0, http: HTTP_AGENTS, intervalMs: HEARTBEAT_MS, idPrefix: 'web' }),
    ];
    await Promise.all(fleets.map((f) => f.start()));
    const all = allNodeIds();
    console.log(`    ${all.length} simulated agents: ${AMQP_PER_BROKER} on each broker node, ${HTTP_AGENTS} over HTTP; heartbeat every ${HEARTBEAT_MS / 1000} s`);
    const online = await until(async () => (await store.list({ status: 'ONLINE' })).filter((n) => n.stats).length === all.length, 120_000, 1000);
    expect(online, 'every simulated node ONLINE with stats').to.not.equal(null);
    await sleep(HEARTBEAT_MS);
  });

  afterEach(function () {
    if (this.currentTest?.state === 'failed') failed = true;
  });

  after(async function () {
    this.timeout(120_000);
    if (rows.length) printTable(rows);
    mkdirSync(LOG_DIR, { recursive: true });
    for (const p of Object.values(procs))
      writeFileSync(join(LOG_DIR, `${p.name.replace(/\W+/g, '-')}.log`), p.lines.map((l) => `${new Date(l.at).toISOString()} ${l.text}`).join('\n'));
    console.log(`  process logs in ${LOG_DIR}${failed || !rows.length ? ", and the brokers', Redis' and Sentinels' logs in " + join(LOG_DIR, 'nodes') : ''}`);
    await Promise.all(fleets.map((f) => f.stop().catch(() => undefined)));
    await events?.close().catch(() => undefined);
    for (const p of Object.values(procs)) {
      const pid = p.child?.pid;
      await p.kill('SIGKILL');
      leftBehind.groupStopped(pid);
    }
    await store?.close().catch(() => undefined);
    await cluster?.close({ keepLogsIn: failed || !rows.length ? join(LOG_DIR, 'nodes') : undefined });
  });

  function allNodeIds(): string[] {
    return fleets.flatMap((f) => f.nodes.map((n) => n.nodeId));
  }

  const sum = (pick: (f: SimFleet) => number) => fleets.reduce((total, f) => total + pick(f), 0);

  /** Each simulated fleet's counts, for a recovery that does not come. */
  const fleetState = () =>
    fleets
      .map(
        (f) =>
          `${f.nodes[0]?.nodeId.replace(/-\d+$/, '')}: confirmed ${f.confirmed}, failed ${f.failed}, waiting on a send ${f.nodes.filter((n) => n.inFlight !== null).length}, failures ${JSON.stringify([...f.failures])}`,
      )
      .join('; ');

  /** Sweeps completed by both sweepers together (their /metrics); a sweeper that does not answer counts none. */
  async function sweepCount(): Promise<number> {
    let total = 0;
    for (const url of metricsUrls) {
      const text = await fetch(url, { signal: AbortSignal.timeout(1000) })
        .then((r) => r.text())
        .catch(() => '');
      const line = text.split('\n').find((l) => l.startsWith('orchestrator_sweep_duration_seconds_count'));
      total += Number(line?.split(' ').at(-1) ?? 0);
    }
    return total;
  }

  /** How long until a sweep completes after now (ms), or null. */
  async function nextSweepMs(limitMs: number): Promise<number | null> {
    const before = await sweepCount();
    return until(async () => (await sweepCount()) > before, limitMs, 100);
  }

  /**
   * Waits until every Sentinel names `server` the primary, then until a sweep completes: when the Sentinels agreed
   * (ms after `since`) and when sweeps resumed (ms after the agreement), or null for what did not happen.
   */
  async function failedOverTo(server: RedisServer, since: number): Promise<{ agreedMs: number | null; sweepsMs: number | null }> {
    let sweepsBefore = 0;
    const agreed = await until(
      async () => {
        sweepsBefore = await sweepCount();
        return (await cluster.redis.agreedPrimary()) === server;
      },
      60_000,
      100,
    );
    if (agreed === null) return { agreedMs: null, sweepsMs: null };
    const agreedAt = Date.now();
    const resumed = await until(async () => (await sweepCount()) > sweepsBefore, 60_000, 100);
    return { agreedMs: agreedAt - since, sweepsMs: resumed === null ? null : Date.now() - agreedAt };
  }

  /**
   * Both sweepers' sweeps that started at or after `since`, from their "Sweep started" / "Sweep ended" lines, and
   * the pairs that overlapped (a sweep that started before the one before it ended, in either process).
   */
  function sweepsSince(since: number, switchedBy: number): { sweeps: number; overlaps: string[]; acrossTheSwitch: number } {
    const sweeps: Array<{ proc: string; start: number; end: number }> = [];
    for (const proc of [procs.sweeperA!, procs.sweeperB!]) {
      for (const { text } of proc.lines) {
        if (!text.includes('"Sweep ended"')) continue;
        const line = JSON.parse(text) as { sweepStartedAt: number; durationMs: number };
        if (line.sweepStartedAt >= since) sweeps.push({ proc: proc.name, start: line.sweepStartedAt, end: line.sweepStartedAt + line.durationMs });
      }
    }
    sweeps.sort((a, b) => a.start - b.start);
    const pairs = sweeps
      .slice(1)
      .map((sweep, i) => [sweeps[i]!, sweep] as const)
      .filter(([before, sweep]) => sweep.start < before.end);
    // The ones in flight when the primary switched: the scheduler alone could overlap those (asynchronous replication).
    const acrossTheSwitch = pairs.filter(([before]) => before.start <= switchedBy).length;
    const overlaps = pairs.map(
      ([before, sweep]) => `${before.proc} ${new Date(before.start).toISOString()}+${before.end - before.start} ms and ${sweep.proc} ${new Date(sweep.start).toISOString()}`,
    );
    return { sweeps: sweeps.length, overlaps, acrossTheSwitch };
  }

  let pending = '';

  /** Everything works again: both apis ready, every node has a heartbeat stored after `since`, sweeps run. */
  async function recovered(since: number): Promise<number | null> {
    return until(
      async () => {
        for (const url of apiUrls) {
          pending = `${url}/readyz`;
          const ready = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(2000) });
          if (ready.status !== 200) return ((pending = `${url}/readyz ${ready.status} ${await ready.text()}`), false);
        }
        pending = 'store';
        const nodes = await store.list();
        const fresh = new Set(nodes.filter((n) => n.status === 'ONLINE' && (n.lastHeartbeat?.getTime() ?? 0) > since).map((n) => n.nodeId));
        const stale = allNodeIds().filter((id) => !fresh.has(id));
        if (stale.length) return ((pending = `no new heartbeat stored for ${stale.length} nodes (${stale.slice(0, 5).join(', ')} ...); ${fleetState()}`), false);
        pending = 'sweeps';
        if ((await nextSweepMs(SWEEP_MS * 3)) === null) return ((pending = 'no sweep completed'), false);
        return true;
      },
      RECOVERY_LIMIT_MS,
      500,
    );
  }

  /** Nodes whose newest confirmed heartbeat never reaches the store (the fleet frozen meanwhile, well inside the timeout). */
  const lostHeartbeats = async () => (await confirmedButNotStored(fleets, store, TIMEOUT_MS / 2, 250)).length;

  /**
   * Runs one fault: `inject` breaks something and resolves once it is repaired (or the cluster has taken over),
   * with a note on what it measured; then recovery, loss, false offlines and duplicates are measured.
   */
  async function runFault(fault: string, inject: () => Promise<string>): Promise<Row> {
    const confirmedBefore = sum((f) => f.confirmed);
    // Distinct events: an event published again from the outbox, or redelivered, keeps its eventId.
    const transitions = () => new Set(events.events.filter((e) => e.type === 'node.offline' || e.type === 'node.online').map((e) => e.eventId));
    const transitionsBefore = transitions();
    const notes = await inject();
    const recoveryMs = await recovered(Date.now());
    if (recoveryMs === null) console.log(`    not recovered after ${RECOVERY_LIMIT_MS / 1000} s: ${pending}`);
    const lost = await lostHeartbeats();
    await sleep(SWEEP_MS * 2); // events of the last sweeps
    const row: Row = {
      fault,
      confirmed: sum((f) => f.confirmed) - confirmedBefore,
      lost,
      falseOffline: [...transitions()].filter((id) => !transitionsBefore.has(id)).length,
      duplicates: events.duplicateTransitions(),
      recoveryMs,
      notes,
    };
    rows.push(row);
    console.log(`    ${formatRow(row)}`);
    return row;
  }

  function expectHealthy(row: Row): void {
    expect(row.recoveryMs, `recovered without a manual restart (${pending})`).to.not.equal(null);
    expect(row.lost, 'confirmed heartbeats missing from the store').to.equal(0);
    expect(row.falseOffline, 'node.offline/node.online for nodes that kept heartbeating').to.equal(0);
    expect(row.duplicates, 'duplicate transitions').to.equal(0);
  }

  const seconds = (ms: number | null) => (ms === null ? 'never' : `${(ms / 1000).toFixed(1)} s`);

  let firstStopped: RabbitNode;

  it('loses nothing and marks no node OFFLINE when the broker node leading the ingest quorum queue stops', async () => {
    const { rabbit } = cluster;
    expectHealthy(
      await runFault('broker: quorum leader stopped', async () => {
        const { leader } = await rabbit.queueLeader(INGEST_QUEUE);
        expect(leader, 'the quorum queue has a leader').to.not.equal(null);
        firstStopped = leader!;
        const stoppedAt = Date.now();
        await leader!.stop();
        let next: RabbitNode | null = null;
        const electedMs = await until(async () => {
          next = (await rabbit.queueLeader(INGEST_QUEUE)).leader;
          return next && next !== leader;
        }, 30_000);
        expect(electedMs, 'a new leader is elected').to.not.equal(null);
        return `stopped ${leader!.name}; ${next!.name} leads (seen ${seconds(Date.now() - stoppedAt)} after \`rabbitmqctl stop\` began)`;
      }),
    );
  });

  it(`refuses publishes visibly while only a minority of the brokers runs (${MINORITY_MS / 1000} s), and recovers when both stopped nodes start again`, async function () {
    this.timeout(MINORITY_MS + 240_000);
    const { rabbit } = cluster;
    let during = { amqpFailed: 0, httpRequests: 0, http503: 0, confirmed: 0 };
    expectHealthy(
      await runFault(`broker: minority ${MINORITY_MS / 1000} s, then both restarted`, async () => {
        const second = rabbit.nodes.find((n) => n.running())!;
        const survivor = rabbit.nodes.find((n) => n.running() && n !== second)!;
        await second.stop();
        // Publishes in flight when the quorum went are settled within the agents' confirm timeout (2 s).
        await sleep(5000);
        const from = Date.now();
        const [failedBefore, confirmedBefore] = [sum((f) => (f.nodes[0]?.transport === 'amqp' ? f.failed : 0)), sum((f) => f.confirmed)];
        await sleep(MINORITY_MS - 5000);
        const to = Date.now();
        const http = fleets.flatMap((f) => f.httpRequests).filter((r) => r.at >= from && r.at <= to);
        during = {
          amqpFailed: sum((f) => (f.nodes[0]?.transport === 'amqp' ? f.failed : 0)) - failedBefore,
          httpRequests: http.length,
          http503: http.filter((r) => r.status === 503).length,
          confirmed: sum((f) => f.confirmed) - confirmedBefore,
        };
        const restartedAt = Date.now();
        await Promise.all([firstStopped.start(), second.start()]);
        const running = await rabbit.runningNodes();
        expect(running.sort(), 'cluster_status: running nodes after the restart').to.deep.equal(rabbit.nodes.map((n) => n.name).sort());
        return (
          `only ${survivor.name} ran; meanwhile AMQP publishes failed ×${during.amqpFailed}, api 503 ×${during.http503} of ${during.httpRequests}, ` +
          `confirmed ${during.confirmed}; both nodes back in ${seconds(Date.now() - restartedAt)}`
        );
      }),
    );
    expect(during.amqpFailed, 'AMQP publishes refused during the minority').to.be.above(0);
    expect(during.http503, 'the apis answered 503 during the minority').to.be.above(0);
    expect(during.confirmed, 'heartbeats confirmed while no quorum could store them').to.equal(0);
    const queue = await rabbit.queueLeader(INGEST_QUEUE);
    expect(queue.leader, 'the quorum queue has a leader again').to.not.equal(null);
    expect(queue.members, 'the quorum queue has a member on every node again').to.have.length(3);
  });

  /** Where the Redis faults' sweeps are counted from, and when the Sentinels agreed on the new primary. */
  let sweepsFrom = 0;
  let switchedBy = 0;
  /** One sweep at a time, also across the switch: the store's sweep lease fences the scheduler's Redis lock. */
  function expectOneSweepAtATime(): void {
    const { sweeps, overlaps, acrossTheSwitch } = sweepsSince(sweepsFrom, switchedBy);
    expect(sweeps, 'sweeps recorded by the two sweepers since the fault').to.be.above(0);
    expect(overlaps, `sweeps that overlapped (${acrossTheSwitch} of them in flight at the switch)`).to.deep.equal([]);
    rows.at(-1)!.notes += `; ${sweeps} sweeps since, none overlapping`;
  }

  it('loses nothing and keeps sweeping when Redis fails over (SENTINEL FAILOVER)', async () => {
    const { redis } = cluster;
    expectHealthy(
      await runFault('Redis: SENTINEL FAILOVER', async () => {
        const [primary, replica] = [(await redis.agreedPrimary())!, redis.servers[1]!];
        expect(primary, 'the first primary').to.equal(redis.servers[0]);
        const startedAt = Date.now();
        sweepsFrom = startedAt;
        await redis.failover();
        const { agreedMs, sweepsMs } = await failedOverTo(replica, startedAt);
        switchedBy = startedAt + (agreedMs ?? 0);
        expect(agreedMs, 'every Sentinel names the replica the primary').to.not.equal(null);
        expect(sweepsMs, 'sweeps resume after the failover').to.not.equal(null);
        expect(await until(async () => (await primary.role()) === 'slave', 30_000), 'the old primary became a replica').to.not.equal(null);
        return `primary :${primary.port} → :${replica.port}: the Sentinels agreed ${seconds(agreedMs)} after the command, sweeps resumed ${seconds(sweepsMs)} after that`;
      }),
    );
    expectOneSweepAtATime();
  });

  it('loses nothing and keeps sweeping when the new Redis primary is killed (SIGKILL) and Sentinel fails over again', async () => {
    const { redis } = cluster;
    expectHealthy(
      await runFault('Redis: new primary SIGKILL', async () => {
        const primary = (await redis.agreedPrimary())!;
        const other = redis.servers.find((s) => s !== primary)!;
        expect(primary, 'the primary after the failover').to.equal(redis.servers[1]);
        const killedAt = Date.now();
        sweepsFrom = killedAt;
        await primary.kill();
        const { agreedMs, sweepsMs } = await failedOverTo(other, killedAt);
        switchedBy = killedAt + (agreedMs ?? 0);
        expect(agreedMs, `every Sentinel names :${other.port} the primary`).to.not.equal(null);
        expect(sweepsMs, 'sweeps resume after the failover').to.not.equal(null);
        // Back as a replica of the current primary (its start arguments name the first server).
        await primary.start();
        expect(await until(async () => (await primary.role()) === 'slave', 30_000), 'the killed server is back as a replica').to.not.equal(null);
        return `killed :${primary.port}: the Sentinels agreed on :${other.port} ${seconds(agreedMs)} after the kill, sweeps resumed ${seconds(sweepsMs)} after that; :${primary.port} back as a replica`;
      }),
    );
    expectOneSweepAtATime();
  });

  it('loses nothing when one api is killed (SIGKILL) while agents use HTTP', async () => {
    const api = procs.apiA!;
    let answered = { ok: 0, all: 0 };
    expectHealthy(
      await runFault('api SIGKILL (one of two) + restart', async () => {
        const from = Date.now();
        const pid = api.child?.pid;
        await api.kill('SIGKILL');
        leftBehind.groupStopped(pid);
        // The agents' requests meanwhile: the load balancer (the simulated agents) sends them to the other api.
        await sleep(2 * HEARTBEAT_MS);
        const http = fleets.flatMap((f) => f.httpRequests).filter((r) => r.at >= from);
        answered = { ok: http.filter((r) => r.status !== null && r.status < 300).length, all: http.length };
        start(api);
        const readyMs = await until(async () => (await fetch(`${apiUrls[0]}/readyz`)).status === 200, 120_000, 500);
        return `while it was down ${answered.ok} of ${answered.all} HTTP requests answered 2xx; restarted, ready after ${seconds(readyMs)}`;
      }),
    );
    expect(answered.ok, 'HTTP heartbeats accepted by the other api').to.be.above(0);
  });

  it('published no node.offline at all for the fleet that kept heartbeating through every fault, and no duplicate', async () => {
    const offline = events.events.filter((e) => e.type === 'node.offline');
    expect(offline.map((e) => `${e.nodeId}:${e.reason}`)).to.deep.equal([]);
    expect(events.duplicateTransitions()).to.equal(0);
    for (const p of Object.values(procs)) expect(p.running(), `${p.name} still running`).to.equal(true);
  });
});

function formatRow(r: Row): string {
  const rec = r.recoveryMs === null ? 'NOT RECOVERED' : `${(r.recoveryMs / 1000).toFixed(1)} s`;
  return `${r.fault.padEnd(40)} confirmed ${String(r.confirmed).padStart(5)}  lost ${r.lost}  false offline ${r.falseOffline}  duplicates ${r.duplicates}  recovery ${rec.padStart(6)}  ${r.notes}`;
}

function printTable(rows: Row[]): void {
  const header = ['fault', 'confirmed', 'lost', 'false offline', 'dup transitions', 'recovery', 'what happened'];
  const body = rows.map((r) => [
    r.fault,
    String(r.confirmed),
    String(r.lost),
    String(r.falseOffline),
    String(r.duplicates),
    r.recoveryMs === null ? 'NOT RECOVERED' : `${(r.recoveryMs / 1000).toFixed(1)} s`,
    r.notes,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  console.log(`\n  Cluster fault results (heartbeats lost = confirmed to an agent or answered 2xx, but not in the store)`);
  console.log(`  ${line(header)}`);
  console.log(`  ${line(widths.map((w) => '-'.repeat(w)))}`);
  for (const b of body) console.log(`  ${line(b)}`);
}
