import { isIP } from 'node:net';
import { generateCredential } from '../../shared/auth/credentials.js';
import { probeBrokerPublish, type BrokerProbeFailure } from '../../shared/bus/broker-probe.js';
import { ConfigError, loadAgentConfig, redact, splitUrlList, type AgentConfig } from '../../shared/config.js';
import { brokerNames, ROUTING } from '../../shared/topology.js';
import { inspectCredentialFile, type CredentialFileState } from './credential-store.js';
import { hostIdentity } from './host-identity.js';
import { nodeHttpFetch, type HttpFetch } from './http-client.js';
import { networkReason } from './http-transport.js';
import { credentialAuth, noAuth, type RequestAuth } from './request-auth.js';
import { systemStatsSources } from './system-stats-sources.js';

/**
 * The agent's preflight (`npm run agent -- --check`, `node host-agent.mjs --check`; docs/agent.md): the agent's own
 * configuration, then everything it will need, one line per check with what to do about a failure. It registers
 * nothing and writes nothing: the registration is a dry run the orchestrator verifies and does not store, and the
 * broker probe is a publish that no binding routes.
 */

/** ok and warn let the agent work (a warning says what it will lack); fail means it would not; skip: not applicable, or not checkable after an earlier failure. */
export type CheckStatus = 'ok' | 'warn' | 'fail' | 'skip';

export interface CheckResult {
  name: string;
  status: CheckStatus;
  detail: string;
  /** What to do; set on fail and warn. */
  fix?: string;
}

export interface PreflightReport {
  checks: CheckResult[];
  /** No check failed: the agent would work. */
  ok: boolean;
}

export interface PreflightDeps {
  /** The environment `npm run agent` reads; only loadAgentConfig looks at it. */
  env: Record<string, string | undefined>;
  fetch?: HttpFetch;
  resolveHost?: (hostname: string) => Promise<string>;
  probeBroker?: typeof probeBrokerPublish;
  countContainers?: (config: Readonly<AgentConfig>) => Promise<number>;
  /** Epoch ms, compared with the orchestrator's Date header. */
  wallClock?: () => number;
  /** A larger clock offset is warned about (default 5 s). */
  maxClockOffsetMs?: number;
}

const DEFAULT_MAX_CLOCK_OFFSET_MS = 5000;

/** The answer of `POST /api/nodes/register?dryRun=true` (services/api/registration-dry-run.ts). */
interface DryRunAnswer {
  dryRun?: boolean;
  auth?: 'on' | 'off';
  node?: 'free' | 'this-host' | 'taken';
  timeoutSeconds?: number;
}

export async function runPreflight(deps: PreflightDeps): Promise<PreflightReport> {
  const checks: CheckResult[] = [];
  const add = (check: CheckResult) => checks.push(check);
  let config: Readonly<AgentConfig>;
  try {
    config = loadAgentConfig(deps.env);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    add({
      name: 'configuration',
      status: 'fail',
      detail: error.problems.join('; '),
      fix: 'correct the variables named (docs/agent.md, configuration); nothing else can be checked until then',
    });
    return report(checks);
  }
  const fetchImpl = deps.fetch ?? nodeHttpFetch;
  const timeoutMs = config.heartbeatTimeoutMs;
  const seconds = (ms: number) => `${+(ms / 1000).toFixed(3)} s`;
  add({
    name: 'configuration',
    status: 'ok',
    detail:
      `node ${config.nodeId}, heartbeat every ${seconds(config.heartbeatIntervalMs)}, each send may take ${seconds(config.heartbeatTimeoutMs)}, ` +
      `re-registers after ${config.maxHeartbeatFailures} failed beats (${seconds(config.maxHeartbeatFailures * config.heartbeatIntervalMs)})`,
  });

  const credentialFile = await inspectCredentialFile(config.credentialFile);
  add(credentialCheck(config, credentialFile));
  add(await dockerCheck(config, deps.countContainers ?? countRunningContainers));

  // The orchestrator's address, liveness and readiness; its Date header gives the clock offset.
  const url = new URL(config.orchestratorUrl);
  const host = url.hostname.replace(/^\[|\]$/g, '');
  if (isIP(host)) add({ name: 'orchestrator address', status: 'ok', detail: `${host} (an IP address, nothing to resolve)` });
  else {
    try {
      add({ name: 'orchestrator address', status: 'ok', detail: `${host} resolves to ${await (deps.resolveHost ?? resolveHost)(host)}` });
    } catch (error) {
      add({
        name: 'orchestrator address',
        status: 'fail',
        detail: `${host} does not resolve (${(error as Error).message})`,
        fix: "correct the host name in ORCHESTRATOR_URL, or this host's DNS",
      });
    }
  }
  const wallClock = deps.wallClock ?? Date.now;
  const health = await timedGet(fetchImpl, `${config.orchestratorUrl}/healthz`, timeoutMs, wallClock);
  const reachable = health.ok && health.status === 200;
  if (!health.ok) {
    add({
      name: 'orchestrator /healthz',
      status: 'fail',
      detail: `${config.orchestratorUrl}/healthz: ${health.error}`,
      fix: 'check ORCHESTRATOR_URL (scheme, host, port) and that the api runs and is reachable from this host (firewall)',
    });
  } else if (health.status !== 200) {
    add({
      name: 'orchestrator /healthz',
      status: 'fail',
      detail: `HTTP ${health.status} in ${health.ms} ms`,
      fix: "ORCHESTRATOR_URL must be the api's base URL (e.g. http://api-host:8080, no path)",
    });
  } else add({ name: 'orchestrator /healthz', status: 'ok', detail: `HTTP 200 in ${health.ms} ms` });

  if (!reachable) add(skipped('orchestrator /readyz', 'the orchestrator is not reachable'));
  else {
    const ready = await timedGet(fetchImpl, `${config.orchestratorUrl}/readyz`, timeoutMs, wallClock);
    if (ready.ok && ready.status === 200) add({ name: 'orchestrator /readyz', status: 'ok', detail: `ready, HTTP 200 in ${ready.ms} ms` });
    else {
      const down = ready.ok ? ((ready.json as { unavailable?: string[] } | null)?.unavailable ?? []) : [];
      add({
        name: 'orchestrator /readyz',
        status: 'fail',
        detail: ready.ok ? `not ready (HTTP ${ready.status} in ${ready.ms} ms)${down.length ? `: ${down.join(', ')} unavailable` : ''}` : ready.error,
        fix: 'the orchestrator cannot take registrations now: repair what /readyz names (its logs say more), then check again',
      });
    }
  }

  add(reachable ? clockCheck(health, deps.maxClockOffsetMs ?? DEFAULT_MAX_CLOCK_OFFSET_MS) : skipped('clock', 'the orchestrator is not reachable'));
  // One line per broker node; with several, a node that fails while another passed only warns (the agent uses the one that answers).
  const brokerChecks: CheckResult[] = [];
  for (const brokerUrl of config.rabbitmqUrl ? splitUrlList(config.rabbitmqUrl) : [])
    brokerChecks.push(await brokerCheck(config, brokerUrl, deps.probeBroker ?? probeBrokerPublish));
  const anyBrokerOk = brokerChecks.some((c) => c.status === 'ok');
  for (const check of brokerChecks) add(anyBrokerOk && check.status === 'fail' ? { ...check, status: 'warn' } : check);
  if (!config.rabbitmqUrl) add({ name: 'broker', status: 'skip', detail: 'RABBITMQ_URL is not set: the agent sends over HTTP only' });

  if (!reachable) {
    add(skipped('join token', 'the orchestrator is not reachable'));
    add(skipped('node id', 'the orchestrator is not reachable'));
    add(skipped('timing', 'the orchestrator is not reachable'));
  } else {
    const auth = dryRunAuth(config, credentialFile);
    for (const check of await dryRunChecks(config, auth, fetchImpl, timeoutMs)) add(check);
  }
  return report(checks);
}

function report(checks: CheckResult[]): PreflightReport {
  return { checks, ok: checks.every((c) => c.status !== 'fail') };
}

function skipped(name: string, because: string): CheckResult {
  return { name, status: 'skip', detail: `not checked: ${because}` };
}

const LABEL: Record<CheckStatus, string> = { ok: '[ ok ]', warn: '[warn]', fail: '[FAIL]', skip: '[skip]' };

/** One line per check, then a verdict line. */
export function formatReport(result: PreflightReport): string {
  const lines = result.checks.map((c) => `${LABEL[c.status]} ${c.name}: ${c.detail}${c.fix ? ` -> ${c.fix}` : ''}`);
  const failed = result.checks.filter((c) => c.status === 'fail').length;
  const warned = result.checks.filter((c) => c.status === 'warn').length;
  lines.push(
    result.ok
      ? `Preflight passed: the agent would work${warned ? ` (${warned} warning${warned > 1 ? 's' : ''})` : ''}; nothing was registered or changed`
      : `Preflight failed: ${failed} of ${result.checks.length} checks failed; nothing was registered or changed`,
  );
  return `${lines.join('\n')}\n`;
}

function credentialCheck(config: Readonly<AgentConfig>, state: CredentialFileState): CheckResult {
  const name = 'credential file';
  const file = config.credentialFile;
  if (!config.joinToken) return { name, status: 'skip', detail: 'not used: AGENT_JOIN_TOKEN is not set (no agent authentication)' };
  switch (state.kind) {
    case 'unset':
      return {
        name,
        status: 'warn',
        detail: "AGENT_CREDENTIAL_FILE is not set: this node's credential lives in memory and is lost on restart",
        fix: 'set AGENT_CREDENTIAL_FILE (e.g. /var/lib/host-agent/credential); otherwise every restart needs an operator reset of this node id',
      };
    case 'missing':
      return state.creatable
        ? { name, status: 'ok', detail: `${file} does not exist yet; the agent will create it (mode 0600) at its first start` }
        : {
            name,
            status: 'fail',
            detail: `${file} does not exist and cannot be created: ${state.directory} is not writable by this user`,
            fix: `create ${state.directory} and give it to the agent's user (chown, chmod 700)`,
          };
    case 'present':
      return (state.mode & 0o077) === 0
        ? { name, status: 'ok', detail: `${file} is present, mode 0${state.mode.toString(8)}, readable` }
        : { name, status: 'fail', detail: `${file} has mode 0${state.mode.toString(8)}: other users can read this node's credential`, fix: `chmod 600 ${file}` };
    case 'unusable':
      return {
        name,
        status: 'fail',
        detail: `${file} cannot be used: ${state.reason}`,
        fix: /EACCES|EPERM/.test(state.reason)
          ? `give the agent's user read access: chown <agent user> ${file} && chmod 600 ${file}`
          : `restore this node's credential file, or delete it and have an operator reset the node (DELETE /api/nodes/${config.nodeId})`,
      };
  }
}

async function countRunningContainers(config: Readonly<AgentConfig>): Promise<number> {
  return systemStatsSources({ dockerSocket: config.dockerSocket, timeoutMs: Math.max(1, Math.floor(config.heartbeatTimeoutMs / 2)) }).runningContainers();
}

async function dockerCheck(config: Readonly<AgentConfig>, count: (config: Readonly<AgentConfig>) => Promise<number>): Promise<CheckResult> {
  const name = 'docker socket';
  try {
    const running = await count(config);
    return { name, status: 'ok', detail: `${config.dockerSocket} is readable: ${running} running container${running === 1 ? '' : 's'}` };
  } catch (error) {
    return {
      name,
      status: 'warn',
      detail: `cannot read ${config.dockerSocket} (${(error as Error).message}): containers will be reported as 0`,
      fix: "add the agent's user to the docker group or set DOCKER_SOCKET; nothing to do on a host without Docker",
    };
  }
}

async function resolveHost(hostname: string): Promise<string> {
  // Imported here, not at the top: the bundled agent would otherwise load the resolver module at start (docs/benchmarks.md, agent).
  const { lookup } = await import('node:dns/promises');
  return (await lookup(hostname)).address;
}

type Timed = { ok: true; status: number; ms: number; date: string | null; midpoint: number; json: unknown } | { ok: false; error: string };

async function timedGet(fetchImpl: HttpFetch, url: string, timeoutMs: number, wallClock: () => number): Promise<Timed> {
  const sentAt = wallClock();
  const started = performance.now();
  const signal = AbortSignal.timeout(Math.max(1, Math.ceil(timeoutMs)));
  try {
    const response = await fetchImpl(url, { signal, headers: { accept: 'application/json' } });
    const text = await response.text();
    const ms = Math.round(performance.now() - started);
    let json: unknown = null;
    try {
      json = JSON.parse(text);
    } catch {
      /* /healthz answers text */
    }
    return { ok: true, status: response.status, ms, date: response.headers.get('date'), midpoint: (sentAt + wallClock()) / 2, json };
  } catch (error) {
    return { ok: false, error: signal.aborted ? `no answer within ${timeoutMs} ms (HEARTBEAT_TIMEOUT)` : networkReason(error) };
  }
}

/** The Date header has whole seconds: the orchestrator's time lies in [date, date + 1 s), so its middle is compared. */
function clockCheck(health: Timed, maxOffsetMs: number): CheckResult {
  const name = 'clock';
  const date = health.ok && health.date ? Date.parse(health.date) : NaN;
  if (!health.ok || Number.isNaN(date)) return { name, status: 'skip', detail: 'not checked: the orchestrator sent no Date header' };
  const offsetMs = health.midpoint - (date + 500);
  const text = `${Math.abs(offsetMs / 1000).toFixed(1)} s ${offsetMs >= 0 ? 'ahead of' : 'behind'} the orchestrator's (±0.5 s, from its Date header)`;
  if (Math.abs(offsetMs) <= maxOffsetMs) return { name, status: 'ok', detail: `this host's clock is ${text}` };
  return {
    name,
    status: 'warn',
    detail: `this host's clock is ${text}: the stats' reportedAt will be off (liveness is judged on the orchestrator's clock)`,
    fix: 'synchronise the clock with NTP (timedatectl set-ntp true, or chrony)',
  };
}

const BROKER_FIXES: Record<BrokerProbeFailure, (exchange: string) => string> = {
  unreachable: () => 'check the host and port in RABBITMQ_URL and that this host can reach them (firewall); until then the agent sends over HTTP',
  credentials: () => "the broker refused the user name or password: put the agent's broker user and password in RABBITMQ_URL (URL-encode @ : / %)",
  vhost: () => "the virtual host in RABBITMQ_URL does not exist or the user may not use it: correct the URL's path or the user's permissions",
  'exchange-missing': (exchange) =>
    `exchange ${exchange} does not exist: start the orchestrator (it declares the topology) or load rabbitmq/definitions.json, and check BROKER_NAMESPACE`,
  permission: (exchange) => `give the broker user write permission on ${exchange}`,
  'no-confirm': () => 'the broker did not confirm the publish: see its logs (a memory or disk alarm blocks publishers)',
  other: () => 'see the message and the broker logs',
};

async function brokerCheck(config: Readonly<AgentConfig>, url: string, probe: typeof probeBrokerPublish): Promise<CheckResult> {
  const name = `broker ${redact(url)}`;
  const exchange = brokerNames(config.brokerNamespace).exchanges.agentInbound;
  const result = await probe({
    url,
    exchange,
    routingKey: ROUTING.preflight(config.nodeId),
    body: { type: 'agent.preflight', nodeId: config.nodeId, sentAt: new Date().toISOString() },
    timeoutMs: config.heartbeatTimeoutMs,
  });
  if (result.ok) return { name, status: 'ok', detail: `login accepted; a publish to ${exchange} was confirmed in ${Math.round(result.confirmMs)} ms` };
  return { name, status: 'fail', detail: `${result.failure}: ${result.message}`, fix: BROKER_FIXES[result.failure](exchange) };
}

/**
 * The credentials a registration would carry: the stored credential when there is one, else a throwaway one that
 * is never written (the agent creates the real one at its first start).
 */
function dryRunAuth(config: Readonly<AgentConfig>, file: CredentialFileState): RequestAuth {
  if (!config.joinToken) return noAuth;
  const credential = file.kind === 'present' ? file.credential : generateCredential();
  return credentialAuth({ nodeId: config.nodeId, joinToken: config.joinToken, credential });
}

/** Join token, node id and timings, all from one dry-run registration. */
async function dryRunChecks(config: Readonly<AgentConfig>, auth: RequestAuth, fetchImpl: HttpFetch, timeoutMs: number): Promise<CheckResult[]> {
  const identity = hostIdentity(config);
  const body = { nodeId: config.nodeId, hostname: identity.hostname, ipAddress: identity.ipAddress, maxServers: config.maxServers };
  let status: number;
  let answer: DryRunAnswer & { error?: string; message?: string };
  const signal = AbortSignal.timeout(Math.max(1, Math.ceil(timeoutMs)));
  try {
    const response = await fetchImpl(`${config.orchestratorUrl}/api/nodes/register?dryRun=true`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json', ...auth.httpHeaders('agent.register') },
      body: JSON.stringify(body),
      signal,
    });
    status = response.status;
    answer = (await response.json().catch(() => ({}))) as typeof answer;
  } catch (error) {
    const reason = signal.aborted ? `no answer within ${timeoutMs} ms (HEARTBEAT_TIMEOUT)` : networkReason(error);
    return [
      { name: 'join token', status: 'fail', detail: `the dry-run registration failed: ${reason}`, fix: 'check that the orchestrator is reachable, then check again' },
      skipped('node id', 'the dry-run registration failed'),
      skipped('timing', 'the dry-run registration failed'),
    ];
  }
  const refusal = `HTTP ${status}${answer.error ? ` ${answer.error}` : ''}${answer.message ? `: ${answer.message}` : ''}`;
  if (status === 401) {
    return [
      {
        name: 'join token',
        status: 'fail',
        detail: `refused (${refusal})`,
        fix: config.joinToken
          ? "AGENT_JOIN_TOKEN is not the orchestrator's join token: set the value the orchestrator runs with"
          : "the orchestrator requires agent authentication: set AGENT_JOIN_TOKEN to the orchestrator's join token",
      },
      skipped('node id', 'the join token was refused'),
      skipped('timing', 'the join token was refused'),
    ];
  }
  if (status === 403 && answer.error === 'NODE_ID_TAKEN') {
    return [
      { name: 'join token', status: 'ok', detail: 'accepted by the orchestrator (dry run: nothing registered)' },
      {
        name: 'node id',
        status: 'fail',
        detail: `${config.nodeId} is registered with another credential`,
        fix: `set a NODE_ID of its own; or, if this host is that node and lost its credential file, have an operator reset it (DELETE /api/nodes/${config.nodeId})`,
      },
      skipped('timing', 'the node id is taken'),
    ];
  }
  if (status !== 200 || answer.dryRun !== true) {
    const fix =
      status === 200 || status === 201
        ? 'this orchestrator does not know dry-run registrations: update it'
        : status === 400
          ? 'the orchestrator refused the registration body: correct the settings it names (NODE_ID, HOSTNAME, IP_ADDRESS, MAX_SERVERS)'
          : 'the orchestrator cannot take a registration now: check again later, or see its logs';
    return [
      { name: 'join token', status: 'fail', detail: `the dry-run registration was not accepted (${refusal})`, fix },
      skipped('node id', 'the dry run was not accepted'),
      skipped('timing', 'the dry run was not accepted'),
    ];
  }
  const joinCheck: CheckResult =
    answer.auth === 'off'
      ? { name: 'join token', status: 'ok', detail: `authentication is off on the orchestrator${config.joinToken ? ' (AGENT_JOIN_TOKEN is not needed there)' : ''}` }
      : { name: 'join token', status: 'ok', detail: 'accepted by the orchestrator (dry run: nothing registered)' };
  const nodeCheck: CheckResult =
    answer.node === 'taken'
      ? {
          name: 'node id',
          status: 'fail',
          detail: `${config.nodeId} is registered by another host (host name ${identity.hostname} differs from the registered one)`,
          fix: `set a NODE_ID of its own; or, if that host is gone, have an operator reset the node (DELETE /api/nodes/${config.nodeId})`,
        }
      : { name: 'node id', status: 'ok', detail: answer.node === 'this-host' ? `${config.nodeId} is registered by this host` : `${config.nodeId} is free` };
  return [joinCheck, nodeCheck, timingCheck(config, answer.timeoutSeconds)];
}

/**
 * The agent's timings against the orchestrator's timeout: a node that beats less often than the timeout goes
 * OFFLINE between beats; one that needs longer than the timeout to notice failures (interval × failures) is
 * OFFLINE before it re-registers.
 */
export function timingCheck(config: Pick<AgentConfig, 'heartbeatIntervalMs' | 'maxHeartbeatFailures'>, timeoutSeconds: number | undefined): CheckResult {
  const name = 'timing';
  if (timeoutSeconds === undefined) return skipped(name, 'the orchestrator did not say its timeout');
  const interval = config.heartbeatIntervalMs / 1000;
  const noticeAfter = interval * config.maxHeartbeatFailures;
  if (interval >= timeoutSeconds) {
    return {
      name,
      status: 'fail',
      detail: `HEARTBEAT_INTERVAL ${interval} s is not shorter than the orchestrator's timeout of ${timeoutSeconds} s: the node would go OFFLINE between heartbeats`,
      fix: `set HEARTBEAT_INTERVAL to at most a third of ${timeoutSeconds} s`,
    };
  }
  const relation = `HEARTBEAT_INTERVAL × MAX_HEARTBEAT_FAILURES = ${interval} s × ${config.maxHeartbeatFailures} = ${+noticeAfter.toFixed(3)} s`;
  if (noticeAfter > timeoutSeconds) {
    return {
      name,
      status: 'warn',
      detail: `${relation}, longer than the orchestrator's timeout of ${timeoutSeconds} s: after an outage the node is OFFLINE before the agent registers again`,
      fix: `lower MAX_HEARTBEAT_FAILURES or HEARTBEAT_INTERVAL so that their product is at most ${timeoutSeconds} s`,
    };
  }
  return { name, status: 'ok', detail: `${relation}, within the orchestrator's timeout of ${timeoutSeconds} s` };
}
