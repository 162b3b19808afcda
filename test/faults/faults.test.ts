import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { NodeStore } from '../../shared/store/node-store.js';
import { freePort, startPrivateFerret, startPrivateRabbit, startPrivateRedis, type PrivateFerret, type PrivateRabbit, type PrivateRedis } from '../support/private-services.js';
import { confirmedButNotStored, openStore, ROOT, ServiceProcess, SimFleet, sleep, subscribeEvents, until } from './rig.js';

const run = promisify(execFile);
const LOG_DIR = join(ROOT, '.cache/faults');

/**
 * The fault-injection suite: real processes of every service (`npm run ingest|sweeper|api|agent`)
 * on private RabbitMQ, Redis and FerretDB instances, a fleet of simulated agents heartbeating over AMQP and
 * HTTP plus two real agents, and one fault after another while it all runs. Every fault prints one row.
 */

// TIMEOUT_MINUTES=0.5, as in .env.development: longer than a restart of an npm+tsx process on a busy
// 2-core machine (~10-20 s), so that the HTTP agents survive the api restart, which no ingest liveness covers.
const TIMEOUT_MS = 30_000;
const BROKER_OUTAGE_MS = TIMEOUT_MS + 5000;
const SWEEP_MS = 500;
const MAX_LOG_LINES_PER_SECOND = 20;
const RECOVERY_LIMIT_MS = 40_000;
/** Broker alarms are held for longer than two timeouts: no node may go OFFLINE for the silence they cause. */
const ALARM_MS = 2 * TIMEOUT_MS + 5000;
/** The agents' HEARTBEAT_TIMEOUT (their HTTP timeout): during an alarm the api must answer every request within it. */
const AGENT_HEARTBEAT_TIMEOUT_MS = 800;

/** How the api answered the simulated HTTP agents during a fault. */
interface ApiAnswers {
  requests: number;
  /** Requests by the api's answer ('none': no answer). */
  byStatus: Record<string, number>;
  /** 503 answers, and their latency. */
  unavailable: number;
  p50Ms: number | null;
  maxMs: number | null;
  /** Requests not answered within the agents' HEARTBEAT_TIMEOUT (any status, or none). */
  held: number;
}

interface Row {
  fault: string;
  confirmed: number;
  lost: number;
  falseOffline: number;
  duplicates: number;
  recoveryMs: number | null;
  maxLogLinesPerSecond: number;
  noisiest: string;
  /** Only for faults that say how the api answered meanwhile. */
  api?: ApiAnswers;
}

describe('fault injection @int @faults', function () {
  this.timeout(120_000);
  const rows: Row[] = [];
  let rabbit: PrivateRabbit;
  let redis: PrivateRedis;
  let ferret: PrivateFerret;
  let store: NodeStore;
  let apiUrl: string;
  let sweeperMetricsUrl: string;
  let fleet: SimFleet;
  let events: Awaited<ReturnType<typeof subscribeEvents>>;
  const procs: Record<string, ServiceProcess> = {};
  const realAgents = ['real-amqp', 'real-http'];

  before(async function () {
    this.timeout(240_000);
    const [rabbitPort, redisPort, ferretPort, apiPort, metricsPort] = [await freePort(), await freePort(), await freePort(), await freePort(), await freePort()];
    [rabbit, redis, ferret] = await Promise.all([startPrivateRabbit({ port: rabbitPort }), startPrivateRedis({ port: redisPort }), startPrivateFerret({ port: ferretPort })]);
    apiUrl = `http://127.0.0.1:${apiPort}`;
    sweeperMetricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
    const env = {
      RABBITMQ_URL: rabbit.url,
      MONGO_URL: ferret.urlFor('faults'),
      REDIS_URL: redis.url,
      PORT: String(apiPort),
      TIMEOUT_MINUTES: String(TIMEOUT_MS / 60_000),
      HEALTH_CHECK_INTERVAL: String(SWEEP_MS),
      LOG_FORMAT: 'json',
      LOG_LEVEL: 'info',
      AUTH_MODE: 'off',
    };
    procs.api = new ServiceProcess('api', 'api', env).start();
    procs.ingestA = new ServiceProcess('ingest-a', 'ingest', env).start();
    procs.ingestB = new ServiceProcess('ingest-b', 'ingest', env);
    procs.sweeper = new ServiceProcess('sweeper', 'sweeper', { ...env, METRICS_PORT: String(metricsPort) }).start();
    const agentEnv = {
      ORCHESTRATOR_URL: apiUrl,
      HEARTBEAT_INTERVAL: '1',
      HEARTBEAT_TIMEOUT: String(AGENT_HEARTBEAT_TIMEOUT_MS / 1000),
      MAX_HEARTBEAT_FAILURES: '3',
      REGISTER_FIRST_DELAY_MS: '250',
      LOG_FORMAT: 'json',
      DOCKER_SOCKET: '/nonexistent/docker.sock',
    };
    store = await openStore(ferret.urlFor('faults'));
    expect(await until(async () => (await fetch(`${apiUrl}/readyz`)).status === 200, 90_000, 500), 'api ready').to.not.equal(null);
    events = await subscribeEvents(rabbit.url, '');
    procs.realAmqp = new ServiceProcess('agent real-amqp', 'agent', { ...agentEnv, NODE_ID: 'real-amqp', RABBITMQ_URL: rabbit.url }).start();
    procs.realHttp = new ServiceProcess('agent real-http', 'agent', { ...agentEnv, NODE_ID: 'real-http' }).start();
    fleet = new SimFleet({ rabbitUrl: rabbit.url, apiUrl, namespace: '', amqp: 16, http: 8, intervalMs: 500 });
    await fleet.start();
    const all = [...fleet.nodes.map((n) => n.nodeId), ...realAgents];
    const ok = await until(async () => (await store.list({ status: 'ONLINE' })).filter((n) => n.stats).length === all.length, 90_000, 500);
    expect(ok, 'every node ONLINE with stats').to.not.equal(null);
    await sleep(3000);
  });

  after(async function () {
    this.timeout(60_000);
    if (rows.length) printTable(rows);
    // Every process's output, for whoever reads a failure.
    mkdirSync(LOG_DIR, { recursive: true });
    for (const p of Object.values(procs))
      writeFileSync(join(LOG_DIR, `${p.name.replace(/\W+/g, '-')}.log`), p.lines.map((l) => `${new Date(l.at).toISOString()} ${l.text}`).join('\n'));
    console.log(`  process logs in ${LOG_DIR}`);
    await fleet?.stop().catch(() => undefined);
    await events?.close().catch(() => undefined);
    for (const p of Object.values(procs)) await p.kill('SIGKILL');
    await store?.close().catch(() => undefined);
    await Promise.all([rabbit?.stop(), redis?.stop(), ferret?.close()].map((p) => p?.catch(() => undefined)));
  });

  function allNodeIds(): string[] {
    return [...fleet.nodes.map((n) => n.nodeId), ...realAgents];
  }

  async function sweepCount(): Promise<number> {
    const text = await (await fetch(sweeperMetricsUrl, { signal: AbortSignal.timeout(1000) })).text();
    const line = text.split('\n').find((l) => l.startsWith('orchestrator_sweep_duration_seconds_count'));
    return Number(line?.split(' ').at(-1) ?? NaN);
  }

  /** What still does not work (the last check that failed) when recovery times out. */
  let pending = '';

  /** Every service works again: the api is ready, every node has a heartbeat stored after `since`, and the sweeper sweeps. */
  async function recovered(since: number): Promise<number | null> {
    return until(
      async () => {
        pending = 'api /readyz';
        const ready = await fetch(`${apiUrl}/readyz`, { signal: AbortSignal.timeout(2000) });
        if (ready.status !== 200) return ((pending = `api /readyz ${ready.status} ${await ready.text()}`), false);
        pending = 'store';
        const nodes = await store.list();
        const fresh = new Set(nodes.filter((n) => n.status === 'ONLINE' && (n.lastHeartbeat?.getTime() ?? 0) > since).map((n) => n.nodeId));
        const stale = allNodeIds().filter((id) => !fresh.has(id));
        if (stale.length) return ((pending = `no new heartbeat stored for ${stale.join(', ')}`), false);
        pending = 'sweeper metrics';
        const before = await sweepCount();
        await sleep(SWEEP_MS + 300);
        if (!((await sweepCount()) > before)) return ((pending = 'sweeper not sweeping'), false);
        return true;
      },
      RECOVERY_LIMIT_MS,
      250,
    );
  }

  /** Nodes whose newest confirmed heartbeat never reaches the store (the fleet frozen meanwhile, well inside the timeout). */
  const lostHeartbeats = async () => (await confirmedButNotStored([fleet], store, TIMEOUT_MS / 2, 100)).length;

  /**
   * Runs one fault: `inject` breaks something and resolves when it has been repaired (the service is back or
   * restarted), then recovery, loss, false offlines, duplicates and the log rate are measured.
   */
  async function runFault(fault: string, inject: () => Promise<void>, options: { api?: () => ApiAnswers } = {}): Promise<Row> {
    const startedAt = Date.now();
    const confirmedBefore = fleet.confirmed;
    const offlineBefore = events.events.filter((e) => e.type === 'node.offline' || e.type === 'node.online').length;
    await inject();
    const clearedAt = Date.now();
    const recoveryMs = await recovered(clearedAt);
    if (recoveryMs === null) console.log(`    not recovered after ${RECOVERY_LIMIT_MS / 1000} s: ${pending}`);
    const recoveredAt = Date.now();
    const lost = await lostHeartbeats();
    await sleep(SWEEP_MS * 2); // events of the last sweeps
    const falseOffline = events.events.filter((e) => e.type === 'node.offline' || e.type === 'node.online').length - offlineBefore;
    let maxRate = 0;
    let noisiest = '-';
    for (const p of Object.values(procs)) {
      const rate = p.maxLinesPerSecond(startedAt, recoveredAt);
      if (rate > maxRate) [maxRate, noisiest] = [rate, p.name];
    }
    const row: Row = {
      fault,
      confirmed: fleet.confirmed - confirmedBefore,
      lost,
      falseOffline,
      duplicates: events.duplicateTransitions(),
      recoveryMs,
      maxLogLinesPerSecond: maxRate,
      noisiest,
      api: options.api?.(),
    };
    rows.push(row);
    console.log(`    ${formatRow(row)}`);
    return row;
  }

  function expectHealthy(row: Row): void {
    expect(row.recoveryMs, 'recovered without a manual restart').to.not.equal(null);
    expect(row.lost, 'confirmed heartbeats missing from the store').to.equal(0);
    expect(row.falseOffline, 'node.offline/node.online for nodes that kept heartbeating').to.equal(0);
    expect(row.duplicates, 'duplicate transitions').to.equal(0);
    expect(row.maxLogLinesPerSecond, `log lines per second (${row.noisiest})`).to.be.at.most(MAX_LOG_LINES_PER_SECOND);
  }

  it('survives the broker stopped for longer than the timeout and started again (rabbitmqctl stop_app / start_app)', async () => {
    expectHealthy(
      await runFault(`broker stop_app/start_app (${BROKER_OUTAGE_MS / 1000} s)`, async () => {
        await rabbit.stopApp();
        await sleep(BROKER_OUTAGE_MS);
        await rabbit.startApp();
      }),
    );
  });

  it('survives every broker connection killed (rabbitmqctl close_all_connections)', async () => {
    expectHealthy(await runFault('broker close_all_connections', () => rabbit.closeAllConnections()));
  });

  it('survives the only ingest killed with SIGKILL mid-batch and restarted', async () => {
    expectHealthy(
      await runFault('ingest SIGKILL + restart', async () => {
        await procs.ingestA!.kill('SIGKILL');
        procs.ingestA!.start();
      }),
    );
  });

  it('survives one of two ingests killed with SIGKILL', async () => {
    procs.ingestB!.start();
    await until(() => procs.ingestB!.lines.length > 0, 30_000);
    await sleep(3000);
    expectHealthy(await runFault('one of two ingests SIGKILL', () => procs.ingestA!.kill('SIGKILL')));
    procs.ingestA!.start();
  });

  it('survives the sweeper killed with SIGKILL and restarted', async () => {
    expectHealthy(
      await runFault('sweeper SIGKILL + restart', async () => {
        await procs.sweeper!.kill('SIGKILL');
        await sleep(1000);
        procs.sweeper!.start();
      }),
    );
  });

  it('survives Redis restarted (its data lost: no persistence)', async () => {
    expectHealthy(await runFault('Redis restart', () => redis.restart()));
  });

  it('survives the MongoDB-compatible server stopped and started', async () => {
    expectHealthy(
      await runFault('FerretDB stop/start (6 s)', async () => {
        await ferret.stop();
        await sleep(6000);
        await ferret.start();
      }),
    );
  });

  it('survives the api killed and restarted while agents use HTTP', async () => {
    expectHealthy(
      await runFault('api SIGKILL + restart', async () => {
        await procs.api!.kill('SIGKILL');
        await sleep(1000);
        procs.api!.start();
      }),
    );
  });

  /** How the api answered the simulated HTTP agents' requests sent within [from, to]. */
  function apiAnswers(from: number, to: number): ApiAnswers {
    const sent = fleet.httpRequests.filter((r) => r.at >= from && r.at <= to);
    const unavailable = sent
      .filter((r) => r.status === 503)
      .map((r) => r.ms)
      .sort((a, b) => a - b);
    const byStatus: Record<string, number> = {};
    for (const r of sent) byStatus[String(r.status ?? 'none')] = (byStatus[String(r.status ?? 'none')] ?? 0) + 1;
    return {
      requests: sent.length,
      byStatus,
      unavailable: unavailable.length,
      p50Ms: unavailable.length ? unavailable[Math.floor((unavailable.length - 1) / 2)]! : null,
      maxMs: unavailable.at(-1) ?? null,
      held: sent.filter((r) => r.status === null || r.ms > AGENT_HEARTBEAT_TIMEOUT_MS).length,
    };
  }

  /** Whether the private node has a local alarm (rabbitmq-diagnostics check_local_alarms fails then). */
  const alarmInEffect = () =>
    rabbit.diagnostics('check_local_alarms').then(
      () => false,
      () => true,
    );

  /**
   * Raises a broker alarm, holds it for ALARM_MS and clears it (also when something in between fails). Every
   * publisher is blocked meanwhile: agents' heartbeats fail (AMQP at once, HTTP with a 503) and so do the
   * canaries, so the sweeper must hold every node ONLINE, and give each a full timeout after it.
   */
  async function alarmFault(fault: string, raise: () => Promise<void>, clear: () => Promise<void>): Promise<Row> {
    const window = { from: 0, to: 0 };
    const row = await runFault(
      fault,
      async () => {
        window.from = Date.now();
        try {
          await raise();
          expect(await until(alarmInEffect, 30_000, 250), 'the broker reports the alarm').to.not.equal(null);
          await sleep(ALARM_MS - (Date.now() - window.from));
        } finally {
          window.to = Date.now();
          await clear();
        }
        expect(await until(async () => !(await alarmInEffect()), 30_000, 250), 'the alarm clears').to.not.equal(null);
      },
      { api: () => apiAnswers(window.from, window.to) },
    );
    expect(row.api!.unavailable, 'the api answered 503 during the alarm').to.be.above(0);
    expect(row.api!.held, `requests to the api not answered within the agents' HEARTBEAT_TIMEOUT (${AGENT_HEARTBEAT_TIMEOUT_MS} ms)`).to.equal(0);
    return row;
  }

  it(`survives a memory alarm held for ${ALARM_MS / 1000} s (set_vm_memory_high_watermark absolute 1), answering HTTP agents with prompt 503s`, async function () {
    this.timeout(ALARM_MS + 150_000);
    expectHealthy(
      await alarmFault(
        `memory alarm (${ALARM_MS / 1000} s)`,
        () => rabbit.ctl('set_vm_memory_high_watermark', 'absolute', '1').then(() => undefined),
        () => rabbit.ctl('set_vm_memory_high_watermark', '0.4').then(() => undefined),
      ),
    );
  });

  it(`survives a disk alarm held for ${ALARM_MS / 1000} s (set_disk_free_limit above the free space), answering HTTP agents with prompt 503s`, async function () {
    this.timeout(ALARM_MS + 150_000);
    expectHealthy(
      await alarmFault(
        `disk alarm (${ALARM_MS / 1000} s)`,
        async () => {
          // What df reports free where the node keeps its data, and then some: the limit is above it.
          const free = Number((await run('df', ['-B1', '--output=avail', rabbit.dataDir])).stdout.trim().split('\n').at(-1));
          expect(free, 'free bytes (df)').to.be.above(0);
          await rabbit.ctl('set_disk_free_limit', String(2 * free + 1_000_000_000));
        },
        () => rabbit.ctl('set_disk_free_limit', '50MB').then(() => undefined),
      ),
    );
  });

  it('published no node.offline at all for the fleet that kept heartbeating through every fault, and no duplicate', async () => {
    const offline = events.events.filter((e) => e.type === 'node.offline');
    expect(offline.map((e) => `${e.nodeId}:${e.reason}`)).to.deep.equal([]);
    expect(events.duplicateTransitions()).to.equal(0);
    for (const p of [procs.api!, procs.ingestA!, procs.ingestB!, procs.sweeper!]) expect(p.running(), `${p.name} still running`).to.equal(true);
  });
});

function formatApi(a: ApiAnswers | undefined): string {
  if (!a) return '-';
  const ms = (x: number | null) => (x === null ? '-' : String(x));
  const others = Object.entries(a.byStatus)
    .filter(([status]) => status !== '503')
    .map(([status, n]) => `${status} ×${n}`)
    .join(', ');
  return `503 ×${a.unavailable} (p50 ${ms(a.p50Ms)} ms, max ${ms(a.maxMs)} ms), held ${a.held} of ${a.requests}${others ? ` (others: ${others})` : ''}`;
}

function formatRow(r: Row): string {
  const rec = r.recoveryMs === null ? 'NOT RECOVERED' : `${(r.recoveryMs / 1000).toFixed(1)} s`;
  return (
    `${r.fault.padEnd(34)} confirmed ${String(r.confirmed).padStart(5)}  lost ${r.lost}  false offline ${r.falseOffline}  ` +
    `duplicates ${r.duplicates}  recovery ${rec.padStart(6)}  max log ${r.maxLogLinesPerSecond}/s (${r.noisiest})` +
    (r.api ? `  api meanwhile: ${formatApi(r.api)}` : '')
  );
}

function printTable(rows: Row[]): void {
  const header = [
    'fault',
    'confirmed',
    'lost',
    'false offline',
    'dup transitions',
    'recovery',
    'max log lines/s',
    `api during the fault (held: over ${AGENT_HEARTBEAT_TIMEOUT_MS} ms)`,
  ];
  const body = rows.map((r) => [
    r.fault,
    String(r.confirmed),
    String(r.lost),
    String(r.falseOffline),
    String(r.duplicates),
    r.recoveryMs === null ? 'NOT RECOVERED' : `${(r.recoveryMs / 1000).toFixed(1)} s`,
    `${r.maxLogLinesPerSecond} (${r.noisiest})`,
    formatApi(r.api),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  console.log(`\n  Fault-injection results (heartbeats lost = confirmed to an agent but not in the store)`);
  console.log(`  ${line(header)}`);
  console.log(`  ${line(widths.map((w) => '-'.repeat(w)))}`);
  for (const b of body) console.log(`  ${line(b)}`);
}
