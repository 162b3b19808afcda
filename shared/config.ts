import { hostname } from 'node:os';
import type { PaceSettings } from './domain/heartbeat-pace.js';
import type { MassSilenceSettings } from './domain/mass-silence.js';
import { parseRedisUrl, RedisUrlError } from './redis-url.js';

/** Thrown at start when the environment is unusable; the message names every bad variable. */
export class ConfigError extends Error {
  readonly code = 'CONFIG_INVALID';
  constructor(readonly problems: string[]) {
    super(`Invalid configuration: ${problems.join('; ')}`);
    this.name = 'ConfigError';
  }
}

export type Env = Record<string, string | undefined>;

/** ENV_FILE, which the all-in-one reads before the rest (it decides where the rest comes from): a path, `none`, or unset. */
export function envFileSetting(env: Env): string | undefined {
  return env.ENV_FILE?.trim() || undefined;
}

const LOG_LEVELS = ['error', 'warn', 'info', 'http', 'verbose', 'debug', 'silly'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Collects every problem before throwing, so one start shows them all. */
class Reader {
  readonly problems: string[] = [];
  constructor(private readonly env: Env) {}

  raw(name: string): string | undefined {
    const value = this.env[name];
    return value === undefined || value.trim() === '' ? undefined : value.trim();
  }

  string(name: string, fallback: string): string {
    return this.raw(name) ?? fallback;
  }

  optionalString(name: string): string | undefined {
    return this.raw(name);
  }

  number(name: string, fallback: number, rule: { positive?: boolean; integer?: boolean; min?: number; max?: number } = {}): number {
    const text = this.raw(name);
    if (text === undefined) return fallback;
    const value = Number(text);
    if (!Number.isFinite(value)) {
      this.problems.push(`${name} must be a number (got "${text}")`);
      return fallback;
    }
    if (rule.positive && value <= 0) this.problems.push(`${name} must be greater than 0 (got ${text})`);
    else if (rule.integer && !Number.isInteger(value)) this.problems.push(`${name} must be a whole number (got ${text})`);
    else if (rule.min !== undefined && value < rule.min) this.problems.push(`${name} must be at least ${rule.min} (got ${text})`);
    else if (rule.max !== undefined && value > rule.max) this.problems.push(`${name} must be at most ${rule.max} (got ${text})`);
    return value;
  }

  boolean(name: string, fallback: boolean): boolean {
    const text = this.raw(name)?.toLowerCase();
    if (text === undefined) return fallback;
    if (['1', 'true', 'yes', 'on'].includes(text)) return true;
    if (['0', 'false', 'no', 'off'].includes(text)) return false;
    this.problems.push(`${name} must be true or false (got "${text}")`);
    return fallback;
  }

  oneOf<T extends string>(name: string, allowed: readonly T[], fallback: T): T {
    const text = this.raw(name);
    if (text === undefined) return fallback;
    if ((allowed as readonly string[]).includes(text)) return text as T;
    this.problems.push(`${name} must be one of ${allowed.join(', ')} (got "${text}")`);
    return fallback;
  }

  url(name: string, fallback: string, protocols: string[]): string {
    const text = this.raw(name) ?? fallback;
    this.checkUrl(name, text, protocols);
    return text;
  }

  /** A comma-separated list of URLs (cluster nodes, tried in order), each checked; returned as given. */
  urlList(name: string, fallback: string, protocols: string[]): string {
    const text = this.raw(name) ?? fallback;
    const entries = text.split(',').map((entry) => entry.trim());
    if (entries.some((entry) => entry === '')) this.problems.push(`${name} has an empty entry in its comma-separated list (got "${redact(text)}")`);
    entries.forEach((entry, i) => {
      if (entry) this.checkUrl(entries.length > 1 ? `${name} entry ${i + 1}` : name, entry, protocols);
    });
    return text;
  }

  /**
   * MONGO_URL: a MongoDB connection string, whose host part may list a replica set's members
   * (`mongodb://a:27017,b:27017/db?replicaSet=rs0`), which is not a WHATWG URL; the driver reads the rest.
   */
  mongoUrl(name: string, fallback: string): string {
    const text = this.raw(name) ?? fallback;
    const match = /^(mongodb|mongodb\+srv):\/\/(?:[^@/?#]*@)?([^/?#]*)(?:[/?#].*)?$/.exec(text);
    if (!match) {
      this.problems.push(`${name} must be a mongodb: or mongodb+srv: URL (got "${redact(text)}")`);
      return text;
    }
    const hosts = match[2]!.split(',');
    const bad = hosts.find((host) => !/^(\[[0-9A-Fa-f:.]+\]|[^:[\]]+)(:\d{1,5})?$/.test(host));
    if (bad !== undefined) this.problems.push(`${name} has a bad host "${bad}" (host or host:port, comma-separated for a replica set; got "${redact(text)}")`);
    else if (match[1] === 'mongodb+srv' && (hosts.length > 1 || hosts[0]!.includes(':'))) this.problems.push(`${name}: a mongodb+srv: URL names one host, without a port`);
    return text;
  }

  /** REDIS_URL: a redis: / rediss: URL, or the Sentinel form (shared/redis-url.ts). */
  redisUrl(name: string, fallback: string): string {
    const text = this.raw(name) ?? fallback;
    try {
      parseRedisUrl(text);
    } catch (error) {
      if (!(error instanceof RedisUrlError)) throw error;
      this.problems.push(`${name} ${error.message} (got "${redact(text)}")`);
    }
    return text;
  }

  private checkUrl(name: string, text: string, protocols: string[]): void {
    try {
      const url = new URL(text);
      if (!protocols.includes(url.protocol)) this.problems.push(`${name} must be a ${protocols.join(' or ')} URL (got "${redact(text)}")`);
    } catch {
      this.problems.push(`${name} must be a URL (got "${redact(text)}")`);
    }
  }

  done<T>(value: T): Readonly<T> {
    if (this.problems.length > 0) throw new ConfigError(this.problems);
    return deepFreeze(value);
  }
}

/** A URL, or a comma-separated list of them, with every password replaced by `***`, for messages and logs. */
export function redact(url: string): string {
  return url
    .split(',')
    .map((entry) => entry.replace(/\/\/([^:/@]*):([^@]+)@/, '//$1:***@'))
    .join(',');
}

/** The URLs of a comma-separated list (RABBITMQ_URL: the broker's cluster nodes, in the order to try them). */
export function splitUrlList(text: string): string[] {
  return text
    .split(',')
    .map((entry) => entry.trim())
    .filter((entry) => entry !== '');
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}

export interface LogConfig {
  level: LogLevel;
  format: 'text' | 'json';
  /** Level of the per-heartbeat "Node stats updated successfully" line: one per heartbeat is too many at info for a large fleet (docs/reference.md). */
  heartbeatLevel: LogLevel;
}

export interface OrchestratorConfig {
  /** One broker URL, or a comma-separated list of cluster nodes (splitUrlList), each checked at start. */
  rabbitmqUrl: string;
  mongoUrl: string;
  /** A redis: / rediss: URL, or the Sentinel form `redis+sentinel://host1:26379,host2:26379/<master-name>` (shared/redis-url.ts). */
  redisUrl: string;
  port: number;
  /** How often the timeout sweep runs (HEALTH_CHECK_INTERVAL, or HEARTBEAT_INTERVAL as the fallback name). */
  sweepIntervalMs: number;
  /** TIMEOUT_MINUTES in milliseconds. */
  timeoutMs: number;
  /**
   * The heartbeat pace (shared/domain/heartbeat-pace.ts): agents that declare their interval are slowed so that
   * the fleet sends at most HEARTBEAT_MAX_RATE heartbeats a second (0: off); the advertised interval moves at most
   * every HEARTBEAT_PACE_MIN_CHANGE_MS, and the sweeper counts the fleet that often.
   */
  pace: PaceSettings;
  log: LogConfig;
  /** Prefix of every exchange and queue name; empty in production, unique per test. */
  brokerNamespace: string;
  /** Prefix of the Redis keys: BullMQ's and the api's rate-limit counters (`<prefix>:rate-limit:<nodeId>`). */
  redisPrefix: string;
  ingest: {
    batchSize: number;
    flushIntervalMs: number;
    prefetch: number;
  };
  /**
   * How often each sweeper and api sends a canary heartbeat along the agents' path (docs/architecture.md):
   * at most a sixth of the timeout, so a break of the path is seen long before a node could time out in it.
   */
  canaryIntervalMs: number;
  sweep: {
    /** Nodes transitioned per store round trip. */
    batchSize: number;
    massSilence: MassSilenceSettings;
  };
  /** Keep this many stats points per node for the dashboard's sparkline... */
  historyPoints: number;
  /** ...at least this far apart (120 x 30 s = the last hour). */
  historyResolutionMs: number;
  auth: { mode: 'off' | 'on'; joinToken?: string; operatorToken?: string };
  rateLimit: { perNodePerMinute: number };
  /** Embedded mode: save the in-memory store here (all-in-one only; unset: its default, `none`: nowhere). */
  stateFile?: string;
  /** The ingest's and the sweeper's own /metrics port (METRICS_PORT), or null for none; the api serves /metrics on PORT. */
  metricsPort: number | null;
}

export function loadOrchestratorConfig(env: Env = process.env): Readonly<OrchestratorConfig> {
  const r = new Reader(env);
  const healthCheck = r.raw('HEALTH_CHECK_INTERVAL') !== undefined ? r.number('HEALTH_CHECK_INTERVAL', 120000, { positive: true }) : undefined;
  const legacy = r.raw('HEARTBEAT_INTERVAL') !== undefined && healthCheck === undefined ? r.number('HEARTBEAT_INTERVAL', 120000, { positive: true }) : undefined;
  if (legacy !== undefined && legacy > 0 && legacy < 1000) {
    // The agent reads the same name in seconds: in a shared env (the all-in-one) "10" meant 10 s, not a sweep every 10 ms.
    r.problems.push(
      `HEARTBEAT_INTERVAL=${r.raw('HEARTBEAT_INTERVAL')} would run the timeout sweep every ${legacy} ms: the orchestrator reads this name in milliseconds ` +
        `(the original's 120000 = 2 min), the agent in seconds; set HEALTH_CHECK_INTERVAL (ms) for the sweep, which then leaves HEARTBEAT_INTERVAL to the agent`,
    );
  }
  const sweepIntervalMs = healthCheck ?? legacy ?? 120000;
  const timeoutMinutes = r.number('TIMEOUT_MINUTES', 3, { positive: true });
  const timeoutMs = Math.round(timeoutMinutes * 60000);
  const level = r.oneOf('LOG_LEVEL', LOG_LEVELS, 'info');
  // Secure by default (docs/security.md): production runs with agent authentication; .env.development turns it off.
  const authMode = r.oneOf('AUTH_MODE', ['off', 'on'] as const, 'on');
  const joinToken = r.optionalString('AGENT_JOIN_TOKEN');
  if (authMode === 'on' && !joinToken) r.problems.push('AGENT_JOIN_TOKEN must be set when AUTH_MODE=on (the default; set AUTH_MODE=off to run without agent authentication)');
  checkSecret(r, 'AGENT_JOIN_TOKEN', joinToken);
  const operatorToken = r.optionalString('OPERATOR_TOKEN');
  checkSecret(r, 'OPERATOR_TOKEN', operatorToken);
  const config: OrchestratorConfig = {
    rabbitmqUrl: r.urlList('RABBITMQ_URL', 'amqp://guest:guest@127.0.0.1:5672', ['amqp:', 'amqps:']),
    mongoUrl: r.mongoUrl('MONGO_URL', 'mongodb://127.0.0.1:27017/orchestrator'),
    redisUrl: r.redisUrl('REDIS_URL', 'redis://127.0.0.1:6379'),
    port: r.number('PORT', 8080, { integer: true, min: 0, max: 65535 }),
    sweepIntervalMs,
    timeoutMs,
    pace: {
      maxRate: r.number('HEARTBEAT_MAX_RATE', 100, { min: 0 }),
      minChangeMs: r.number('HEARTBEAT_PACE_MIN_CHANGE_MS', 60_000, { positive: true, integer: true }),
    },
    log: {
      level,
      format: r.oneOf('LOG_FORMAT', ['text', 'json'] as const, 'text'),
      heartbeatLevel: r.oneOf('LOG_HEARTBEATS', LOG_LEVELS, 'debug'),
    },
    brokerNamespace: r.string('BROKER_NAMESPACE', ''),
    redisPrefix: r.string('REDIS_PREFIX', 'orchestrator'),
    ingest: {
      batchSize: r.number('INGEST_BATCH_SIZE', 500, { positive: true, integer: true }),
      flushIntervalMs: r.number('INGEST_FLUSH_MS', 50, { positive: true }),
      prefetch: r.number('INGEST_PREFETCH', 10000, { positive: true, integer: true, max: 65535 }),
    },
    canaryIntervalMs: r.number(
      'CANARY_INTERVAL_MS',
      Math.max(Math.min(100, Math.floor(timeoutMs / 6)), Math.min(5000, Math.round(timeoutMs / 10), Math.round(sweepIntervalMs / 2))),
      { positive: true, integer: true },
    ),
    sweep: {
      batchSize: r.number('SWEEP_BATCH_SIZE', 500, { positive: true, integer: true }),
      massSilence: {
        enabled: r.boolean('MASS_SILENCE_GUARD', true),
        share: r.number('MASS_SILENCE_SHARE', 0.5, { positive: true, max: 1 }),
        minNodes: r.number('MASS_SILENCE_MIN_NODES', 4, { integer: true, min: 1 }),
        holdMs: r.number('MASS_SILENCE_HOLD_MS', 2 * timeoutMs, { positive: true }),
      },
    },
    historyPoints: r.number('HISTORY_POINTS', 120, { integer: true, min: 0, max: 10000 }),
    historyResolutionMs: r.number('HISTORY_RESOLUTION_MS', 30000, { integer: true, min: 1 }),
    auth: { mode: authMode, joinToken, operatorToken },
    rateLimit: { perNodePerMinute: r.number('RATE_LIMIT_PER_NODE_PER_MINUTE', 120, { positive: true, integer: true }) },
    stateFile: r.optionalString('STATE_FILE'),
    metricsPort: r.raw('METRICS_PORT') === undefined ? null : r.number('METRICS_PORT', 0, { integer: true, min: 0, max: 65535 }),
  };
  if (timeoutMs > 0 && config.canaryIntervalMs > 0 && config.canaryIntervalMs * 6 > timeoutMs) {
    r.problems.push(`CANARY_INTERVAL_MS must be at most a sixth of the timeout (${Math.floor(timeoutMs / 6)} ms), got ${config.canaryIntervalMs}`);
  }
  return r.done(config);
}

/** Secrets: long enough not to be guessed, short enough for a header; the message never shows the value. */
function checkSecret(r: Reader, name: string, value: string | undefined): void {
  if (value === undefined) return;
  if (value.length < 16) r.problems.push(`${name} must be at least 16 characters (got ${value.length})`);
  else if (value.length > 256) r.problems.push(`${name} must be at most 256 characters (got ${value.length})`);
}

export interface AgentConfig {
  nodeId: string;
  orchestratorUrl: string;
  /** As the orchestrator's: one broker URL or a comma-separated list of cluster nodes. */
  rabbitmqUrl?: string;
  heartbeatIntervalMs: number;
  heartbeatTimeoutMs: number;
  maxHeartbeatFailures: number;
  maxServers: number;
  hostname?: string;
  ipAddress?: string;
  dockerSocket: string;
  log: LogConfig;
  brokerNamespace: string;
  /** Registration back-off: first wait, factor, attempts before settling at the longest wait. */
  registration: { firstDelayMs: number; attempts: number; jitter: number };
  /** Random offset (0..1 of the interval) before the periodic schedule starts. */
  startSpread: number;
  joinToken?: string;
  /** Where the per-node credential is kept between restarts. */
  credentialFile?: string;
}

export function loadAgentConfig(env: Env = process.env): Readonly<AgentConfig> {
  const r = new Reader(env);
  const interval = r.number('HEARTBEAT_INTERVAL', 60, { positive: true });
  const timeout = r.number('HEARTBEAT_TIMEOUT', 10, { positive: true });
  if (timeout > 0 && interval > 0 && timeout >= interval) {
    r.problems.push(`HEARTBEAT_TIMEOUT must be shorter than HEARTBEAT_INTERVAL (got ${timeout} s and ${interval} s)`);
  }
  const nodeId = r.string('NODE_ID', hostname());
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(nodeId)) r.problems.push(`NODE_ID must be 1-64 characters of A-Z a-z 0-9 . _ - (got "${nodeId}")`);
  const rabbit = r.optionalString('RABBITMQ_URL');
  checkSecret(r, 'AGENT_JOIN_TOKEN', r.optionalString('AGENT_JOIN_TOKEN'));
  const config: AgentConfig = {
    nodeId,
    orchestratorUrl: r.url('ORCHESTRATOR_URL', 'http://127.0.0.1:8080', ['http:', 'https:']).replace(/\/+$/, ''),
    rabbitmqUrl: rabbit === undefined ? undefined : r.urlList('RABBITMQ_URL', rabbit, ['amqp:', 'amqps:']),
    heartbeatIntervalMs: Math.round(interval * 1000),
    heartbeatTimeoutMs: Math.round(timeout * 1000),
    maxHeartbeatFailures: r.number('MAX_HEARTBEAT_FAILURES', 3, { positive: true, integer: true }),
    maxServers: r.number('MAX_SERVERS', 20, { integer: true, min: 0 }),
    hostname: r.optionalString('HOSTNAME'),
    ipAddress: r.optionalString('IP_ADDRESS'),
    dockerSocket: r.string('DOCKER_SOCKET', '/var/run/docker.sock'),
    log: {
      level: r.oneOf('LOG_LEVEL', LOG_LEVELS, 'info'),
      format: r.oneOf('LOG_FORMAT', ['text', 'json'] as const, 'text'),
      heartbeatLevel: 'info',
    },
    brokerNamespace: r.string('BROKER_NAMESPACE', ''),
    registration: {
      firstDelayMs: r.number('REGISTER_FIRST_DELAY_MS', 5000, { positive: true }),
      attempts: r.number('REGISTER_ATTEMPTS', 5, { positive: true, integer: true }),
      jitter: r.number('REGISTER_JITTER', 0.1, { min: 0, max: 1 }),
    },
    startSpread: r.number('HEARTBEAT_START_SPREAD', 0, { min: 0, max: 1 }),
    joinToken: r.optionalString('AGENT_JOIN_TOKEN'),
    credentialFile: r.optionalString('AGENT_CREDENTIAL_FILE'),
  };
  return r.done(config);
}
