import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, closeSync, cpSync, existsSync, mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { freePort, leftBehind, portOpen, startPrivateFerret, waitForPort, type PrivateFerret } from '../support/private-services.js';

/**
 * A cluster on this machine, for the cluster fault test: three RabbitMQ nodes joined into one cluster with the
 * project's definitions, a Redis primary with one replica watched by three Sentinels, and a private FerretDB.
 * Every process runs in a process group of its own on ports of its own, with its data in one temp dir; all of it
 * is registered with `leftBehind`, so it is killed and removed on exit also when a test is interrupted. The shared
 * services on the default ports (and the shared node rabbit@<host>) are never touched.
 */

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '../..');
const RABBIT_BIN = '/usr/lib/rabbitmq/bin';
const DEFINITIONS = join(ROOT, 'rabbitmq/definitions.json');
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A process the harness started in a group of its own, with its output in a log file; can be started again. */
class GroupProcess {
  private child: ChildProcess | null = null;
  private exited: Promise<void> = Promise.resolve();

  constructor(
    readonly name: string,
    private readonly command: string,
    private readonly args: string[],
    private readonly env: NodeJS.ProcessEnv,
    /** Its working directory (where a crash dump would go), and its output in `output.log` there. */
    private readonly dir: string,
    private readonly logName = 'output.log',
  ) {}

  start(): void {
    if (this.running()) throw new Error(`${this.name} is already running`);
    const out = openSync(join(this.dir, this.logName), 'a');
    const child = spawn(this.command, this.args, { cwd: this.dir, env: this.env, stdio: ['ignore', out, out], detached: true });
    closeSync(out);
    leftBehind.group(child.pid);
    this.exited = new Promise<void>((r) => child.once('exit', () => r()));
    child.once('exit', () => leftBehind.groupStopped(child.pid));
    child.on('error', () => undefined);
    this.child = child;
  }

  running(): boolean {
    return !!this.child && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Resolves once the process has exited (at once when it is not running). */
  waitForExit(timeoutMs: number): Promise<boolean> {
    if (!this.running()) return Promise.resolve(true);
    return Promise.race([this.exited.then(() => true), sleep(timeoutMs).then(() => false)]);
  }

  /** Signals the whole group and waits for the process to exit. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.child;
    if (!child || !this.running()) return;
    try {
      process.kill(-child.pid!, signal);
    } catch {
      /* gone */
    }
    if (!(await this.waitForExit(15_000)) && signal !== 'SIGKILL') await this.kill('SIGKILL');
  }
}

// ---------------------------------------------------------------------------------------------------------------
// RabbitMQ
// ---------------------------------------------------------------------------------------------------------------

class NodeExitedAtStart extends Error {
  readonly code = 'NODE_EXITED_AT_START';
}

export interface RabbitNode {
  /** Erlang node name, `cluster-<port>@localhost`. */
  readonly name: string;
  readonly port: number;
  readonly url: string;
  running(): boolean;
  /** `rabbitmqctl -n <node> <args>`; resolves with its stdout. */
  ctl(...args: string[]): Promise<string>;
  /** `rabbitmqctl stop`: a clean shutdown of the node; resolves once its process has exited. */
  stop(): Promise<void>;
  /** SIGKILL of the node's process group (a crash). */
  kill(): Promise<void>;
  /** Starts the node again over its data; resolves once it runs and AMQP answers. */
  start(): Promise<void>;
}

export interface RabbitCluster {
  readonly nodes: RabbitNode[];
  /** Every node's AMQP URL, comma-separated, beginning with node `first` (so clients spread over the nodes). */
  urls(first?: number): string;
  /** The running nodes as `rabbitmqctl cluster_status` of a running node reports them. */
  runningNodes(): Promise<string[]>;
  /** The node that leads a quorum queue, and its members (`rabbitmqctl list_queues name type leader members`). */
  queueLeader(queue: string): Promise<{ type: string; leader: RabbitNode | null; members: string[] }>;
  close(): Promise<void>;
}

async function startRabbitNode(base: string, port: number): Promise<RabbitNode> {
  if ((await portOpen(port)) || (await portOpen(port + 20000))) throw new Error(`port ${port} or ${port + 20000} is already in use`);
  const name = `cluster-${port}@localhost`;
  const dir = join(base, `rabbit-${port}`);
  mkdirSync(dir, { recursive: true });
  // No plugins: no management (15672) or prometheus (15692) listener that could collide with the shared node's.
  writeFileSync(join(dir, 'enabled_plugins'), '[].\n');
  writeFileSync(join(dir, 'rabbitmq.conf'), [`listeners.tcp.default = ${port}`, 'log.file.level = info', 'log.console = false', ''].join('\n'));
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    // Every node and the CLI read the one Erlang cookie from this HOME.
    HOME: base,
    RABBITMQ_NODENAME: name,
    RABBITMQ_NODE_PORT: String(port),
    RABBITMQ_DIST_PORT: String(port + 20000),
    RABBITMQ_MNESIA_BASE: join(dir, 'mnesia'),
    RABBITMQ_LOG_BASE: join(dir, 'log'),
    RABBITMQ_ENABLED_PLUGINS_FILE: join(dir, 'enabled_plugins'),
    RABBITMQ_PID_FILE: join(dir, 'rabbit.pid'),
    RABBITMQ_CONFIG_FILE: join(dir, 'rabbitmq.conf'),
    RABBITMQ_ADVANCED_CONFIG_FILE: join(dir, 'advanced.config'),
    RABBITMQ_CONF_ENV_FILE: join(dir, 'rabbitmq-env.conf'),
    ERL_CRASH_DUMP: join(dir, 'erl_crash.dump'),
  };
  const server = new GroupProcess(name, `${RABBIT_BIN}/rabbitmq-server`, [], env, dir);
  const ctl = async (...args: string[]) => (await run(`${RABBIT_BIN}/rabbitmqctl`, ['-n', name, ...args], { env, timeout: 120_000 })).stdout;

  async function start(): Promise<void> {
    server.start();
    const deadline = Date.now() + 90_000;
    for (;;) {
      try {
        // Fails at once while the Erlang node is not up yet; waits while it boots.
        await ctl('await_startup', '--timeout', '90');
        break;
      } catch (error) {
        if (!server.running()) throw new NodeExitedAtStart(`RabbitMQ node ${name} exited at start (logs in ${dir})`);
        if (Date.now() > deadline) throw new Error(`RabbitMQ node ${name} did not start: ${(error as Error).message}`);
        await sleep(500);
      }
    }
    await waitForPort(port, 30_000);
  }

  await start();
  return {
    name,
    port,
    url: `amqp://guest:guest@127.0.0.1:${port}`,
    running: () => server.running(),
    ctl,
    async stop() {
      await ctl('stop').catch(() => undefined);
      if (!(await server.waitForExit(30_000))) await server.kill('SIGKILL');
    },
    kill: () => server.kill('SIGKILL'),
    start,
  };
}

async function startRabbitCluster(base: string, size: number): Promise<RabbitCluster> {
  // One cookie for all: written before any node starts, read-only as Erlang demands.
  const cookie = join(base, '.erlang.cookie');
  writeFileSync(cookie, randomBytes(20).toString('hex').toUpperCase());
  chmodSync(cookie, 0o400);
  const taken = new Set<number>();
  /**
   * A free port can be taken between the check and the node's start (the distribution port, port + 20000, lies
   * in the range the kernel hands out to outgoing connections): the node then exits at once, and is started
   * again on other ports.
   */
  const startOnFreePorts = async (): Promise<RabbitNode> => {
    for (let attempt = 1; ; attempt++) {
      let port = await freePort();
      while (taken.has(port)) port = await freePort();
      taken.add(port);
      try {
        return await startRabbitNode(base, port);
      } catch (error) {
        if (!(error instanceof NodeExitedAtStart) || attempt === 3) throw error;
      }
    }
  };
  const nodes = await Promise.all(Array.from({ length: size }, startOnFreePorts));
  const [seed, ...others] = nodes;
  // One at a time: each joins the cluster the seed and the nodes before it already form.
  for (const node of others) {
    await node.ctl('stop_app');
    await node.ctl('reset');
    await node.ctl('join_cluster', seed!.name);
    await node.ctl('start_app');
    await waitForPort(node.port, 30_000);
  }
  // After the join, so that the quorum queues get a member on every node.
  await seed!.ctl('import_definitions', DEFINITIONS);

  const anyRunning = () => {
    const node = nodes.find((n) => n.running());
    if (!node) throw new Error('no RabbitMQ node of the cluster is running');
    return node;
  };
  return {
    nodes,
    urls: (first = 0) => nodes.map((_, i) => nodes[(first + i) % nodes.length]!.url).join(','),
    async runningNodes() {
      const status = JSON.parse(await anyRunning().ctl('cluster_status', '--formatter', 'json')) as { running_nodes: string[] };
      return status.running_nodes;
    },
    async queueLeader(queue) {
      const rows = JSON.parse(await anyRunning().ctl('list_queues', '-q', 'name', 'type', 'leader', 'members', '--formatter', 'json')) as Array<{
        name: string;
        type: string;
        leader?: string;
        members?: string[] | string;
      }>;
      const row = rows.find((r) => r.name === queue);
      if (!row) throw new Error(`queue ${queue} not found`);
      return {
        type: row.type,
        leader: nodes.find((n) => n.name === row.leader) ?? null,
        members: Array.isArray(row.members) ? row.members : [],
      };
    },
    async close() {
      await Promise.all(nodes.map((n) => n.kill()));
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Redis with Sentinel
// ---------------------------------------------------------------------------------------------------------------

export interface RedisServer {
  readonly port: number;
  running(): boolean;
  /** SIGKILL (a crash: no persistence, its data is gone). */
  kill(): Promise<void>;
  /** Starts it again; a server that began as the replica begins as a replica of the first primary again. */
  start(): Promise<void>;
  /** `INFO replication`'s role: 'master' or 'slave'. */
  role(): Promise<string>;
}

export interface RedisSentinels {
  /** The primary's name, as the Sentinels monitor it. */
  readonly masterName: string;
  /** [the first primary, its replica]. */
  readonly servers: RedisServer[];
  readonly sentinelPorts: number[];
  /** REDIS_URL in the Sentinel form: `redis+sentinel://127.0.0.1:<s1>,127.0.0.1:<s2>,127.0.0.1:<s3>/<masterName>`. */
  readonly url: string;
  /** The server every running Sentinel names as the primary, or null while they disagree (or one does not answer). */
  agreedPrimary(): Promise<RedisServer | null>;
  /** How many other Sentinels and replicas each Sentinel knows of the primary. */
  sentinelView(): Promise<Array<{ otherSentinels: number; replicas: number }>>;
  /** `SENTINEL FAILOVER <masterName>` on the first Sentinel. */
  failover(): Promise<void>;
  close(): Promise<void>;
}

async function redisCommand(port: number, ...args: string[]): Promise<unknown> {
  const client = new Redis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 0, connectTimeout: 2000, enableOfflineQueue: false, retryStrategy: () => null });
  client.on('error', () => undefined);
  try {
    await client.connect();
    return await client.call(args[0]!, ...args.slice(1));
  } finally {
    client.disconnect();
  }
}

async function startRedisSentinels(base: string): Promise<RedisSentinels> {
  const masterName = 'cluster-primary';
  const [primaryPort, replicaPort, ...sentinelPorts] = [await freePort(), await freePort(), await freePort(), await freePort(), await freePort()];
  const dir = join(base, 'redis');
  mkdirSync(dir, { recursive: true });

  const server = (port: number, replicaOf: number | null): RedisServer => {
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--dbfilename', `dump-${port}.rdb`];
    if (replicaOf !== null) args.push('--replicaof', '127.0.0.1', String(replicaOf));
    const p = new GroupProcess(`redis-${port}`, 'redis-server', args, process.env, dir, `redis-${port}.log`);
    return {
      port,
      running: () => p.running(),
      kill: () => p.kill('SIGKILL'),
      async start() {
        p.start();
        await waitForPort(port);
      },
      async role() {
        const info = String(await redisCommand(port, 'INFO', 'replication'));
        return /role:(\w+)/.exec(info)?.[1] ?? 'unknown';
      },
    };
  };
  const servers = [server(primaryPort!, null), server(replicaPort!, primaryPort!)];
  await Promise.all(servers.map((s) => s.start()));

  const sentinels = sentinelPorts.map((port) => {
    // Sentinel rewrites its config file as it learns the others and after failovers: one file each.
    const conf = join(dir, `sentinel-${port}.conf`);
    writeFileSync(
      conf,
      [
        `port ${port}`,
        'bind 127.0.0.1',
        `dir ${dir}`,
        `sentinel monitor ${masterName} 127.0.0.1 ${primaryPort} 2`,
        // Short enough for a test, long enough that a busy 2-core machine does not look like a dead primary.
        `sentinel down-after-milliseconds ${masterName} 2000`,
        `sentinel failover-timeout ${masterName} 10000`,
        `sentinel parallel-syncs ${masterName} 1`,
        '',
      ].join('\n'),
    );
    return new GroupProcess(`sentinel-${port}`, 'redis-sentinel', [conf], process.env, dir, `sentinel-${port}.log`);
  });
  for (const s of sentinels) s.start();
  await Promise.all(sentinelPorts.map((port) => waitForPort(port)));

  const view = () =>
    Promise.all(
      sentinelPorts.map(async (port) => {
        const fields = (await redisCommand(port, 'SENTINEL', 'MASTER', masterName)) as string[];
        const get = (key: string) => Number(fields[fields.indexOf(key) + 1]);
        return { otherSentinels: get('num-other-sentinels'), replicas: get('num-slaves') };
      }),
    );
  // The Sentinels find each other through the primary (hello messages every 2 s): until then none could fail over.
  const deadline = Date.now() + 30_000;
  for (;;) {
    const known = await view().catch(() => []);
    if (known.length === sentinelPorts.length && known.every((v) => v.otherSentinels === sentinelPorts.length - 1 && v.replicas === 1)) break;
    if (Date.now() > deadline) throw new Error(`the Sentinels did not find each other and the replica within 30 s: ${JSON.stringify(known)}`);
    await sleep(250);
  }

  return {
    masterName,
    servers,
    sentinelPorts,
    url: `redis+sentinel://${sentinelPorts.map((p) => `127.0.0.1:${p}`).join(',')}/${masterName}`,
    async agreedPrimary() {
      const named = await Promise.all(
        sentinelPorts.map((port) => redisCommand(port, 'SENTINEL', 'GET-MASTER-ADDR-BY-NAME', masterName).then((addr) => Number((addr as string[])[1]))),
      ).catch(() => []);
      if (named.length !== sentinelPorts.length || new Set(named).size !== 1) return null;
      return servers.find((s) => s.port === named[0]) ?? null;
    },
    sentinelView: view,
    async failover() {
      await redisCommand(sentinelPorts[0]!, 'SENTINEL', 'FAILOVER', masterName);
    },
    async close() {
      await Promise.all([...sentinels.map((s) => s.kill('SIGKILL')), ...servers.map((s) => s.kill())]);
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// The whole cluster
// ---------------------------------------------------------------------------------------------------------------

export interface Cluster {
  rabbit: RabbitCluster;
  redis: RedisSentinels;
  ferret: PrivateFerret;
  /** How long forming took (ms). */
  formedInMs: number;
  /** The temp dir with every node's data and logs (removed by close()). */
  dir: string;
  /**
   * Stops everything it started and removes its data; with `keepLogsIn`, the RabbitMQ, Redis and Sentinel logs
   * are copied there first.
   */
  close(options?: { keepLogsIn?: string }): Promise<void>;
}

/** Forms the cluster: everything starts in parallel, then the RabbitMQ nodes join one by one. */
export async function formCluster(options: { rabbitNodes?: number } = {}): Promise<Cluster> {
  const startedAt = Date.now();
  const dir = mkdtempSync(join(tmpdir(), 'cluster-'));
  leftBehind.dir(dir);
  const started: { rabbit?: RabbitCluster; redis?: RedisSentinels; ferret?: PrivateFerret } = {};
  const close: Cluster['close'] = async ({ keepLogsIn } = {}) => {
    const closing = [started.rabbit?.close(), started.redis?.close(), started.ferret?.close()].filter((p): p is Promise<void> => p !== undefined);
    await Promise.all(closing.map((p) => p.catch(() => undefined)));
    if (keepLogsIn) copyLogs(dir, keepLogsIn);
    // A stopped node's helper processes (the Erlang VM's children) may still be writing their last lines.
    rmSync(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 200 });
    leftBehind.dirRemoved(dir);
  };
  try {
    const results = await Promise.allSettled([
      startRabbitCluster(dir, options.rabbitNodes ?? 3).then((r) => (started.rabbit = r)),
      startRedisSentinels(dir).then((r) => (started.redis = r)),
      freePort().then((port) => startPrivateFerret({ port }).then((f) => (started.ferret = f))),
    ]);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  } catch (error) {
    await close({ keepLogsIn: join(ROOT, '.cache/cluster/forming') });
    throw error;
  }
  return { rabbit: started.rabbit!, redis: started.redis!, ferret: started.ferret!, formedInMs: Date.now() - startedAt, dir, close };
}

/** The nodes' log files (not their data), for whoever reads a failure. */
function copyLogs(from: string, to: string): void {
  if (!existsSync(from)) return;
  mkdirSync(to, { recursive: true });
  cpSync(from, to, { recursive: true, filter: (src) => !/[/\\]mnesia([/\\]|$)|\.rdb$|\.erlang\.cookie$/.test(src) });
}
