import express, { type NextFunction, type Request, type Response } from 'express';
import { BrokerBlockedError, BusUnavailableError, type Bus } from '../../shared/bus/bus.js';
import type { Clock } from '../../shared/clock.js';
import type { Logger } from '../../shared/logger.js';
import type { Metrics } from '../../shared/metrics.js';
import { describeIssues, heartbeatBodySchema, invalidFields, isValidNodeId, registerBodySchema, shutdownBodySchema } from '../../shared/messages/index.js';
import { StoreUnavailableError, type NodeStore } from '../../shared/store/node-store.js';
import type { BrokerNames } from '../../shared/topology.js';
import { createCanarySender, type CanarySender } from '../../shared/canary/canary-sender.js';
import { pathCoverage } from '../../shared/domain/path-coverage.js';
import { expectedRate, nodePace, type NodePace, type PaceSettings } from '../../shared/domain/heartbeat-pace.js';
import { createFleetPaceReader, type FleetPaceReader } from '../../shared/fleet-pace-reader.js';
import { createAgentGateway } from './agent-gateway.js';
import { HttpError } from './http-error.js';
import { createKnownNodes } from './known-nodes.js';
import { toNodeView } from './node-view.js';
import { dryRunAnswer, isDryRun } from './registration-dry-run.js';

export interface ReadinessCheck {
  name: string;
  check(): Promise<boolean>;
}

export interface ApiDeps {
  bus: Bus;
  store: NodeStore;
  names: BrokerNames;
  log: Logger;
  clock: Clock;
  metrics: Metrics;
  /** Extra dependencies /readyz reports on (e.g. Redis in the all-in-one mode). */
  readiness?: ReadinessCheck[];
  /** Mounts more routes (the dashboard) before the error handler. */
  extend?: (app: express.Express) => void;
  /** Hooks for authentication and rate limiting (docs/security.md). */
  guard?: ApiGuard;
  /** Sends a canary heartbeat through the gateway this often, proving the HTTP path to the sweeper (CANARY_INTERVAL_MS). */
  canaryIntervalMs?: number;
  /** TIMEOUT_MINUTES in ms, told to an agent's dry-run registration so that it can check its own timings. */
  timeoutMs?: number;
  /** The heartbeat pace told to agents that declare their interval (HEARTBEAT_MAX_RATE; absent: each keeps its own). */
  pace?: PaceSettings;
  /** Reads the fleet's pace (default: from the store, cached); shared with the dashboard. */
  fleetPace?: FleetPaceReader;
}

export type ApiApp = express.Express & {
  /** Stops what the api runs in the background (its canary sender); the HTTP server is the caller's. */
  stopBackground(): Promise<void>;
};

/** Per-request checks that agent authentication and rate limiting plug into (docs/security.md). */
export interface ApiGuard {
  /** Returns the message auth to forward, or throws an HttpError (401/403/429). */
  agent(req: Request, nodeId: string, action: 'register' | 'heartbeat' | 'shutdown'): Promise<string | undefined>;
  /** Reads and the dashboard stream ('read'), or an operator's reset of a node ('reset'); throws an HttpError (401/403). */
  operator(req: Request, access?: 'read' | 'reset'): Promise<void>;
  /** Drops what the guard cached about a node (after a reset). */
  forget?(nodeId: string): void;
}

const BODY_LIMIT = '16kb';
/** Nodes whose last told pace this api remembers; past it the memory starts again (and each is told once more). */
const MAX_TOLD = 200_000;
/** The pace fields of an answer (seconds, as the agent reads them). */
const paceFields = (pace: NodePace) => ({ heartbeatInterval: pace.heartbeatInterval, timeout: pace.timeout, fleetSize: pace.fleetSize });
const paceKey = (pace: NodePace) => `${pace.heartbeatInterval}/${pace.timeout}`;
/** What a 503 for an unavailable dependency tells the client to wait. */
const RETRY_AFTER = { 'Retry-After': '5' };

function nodeIdParam(req: Request): string {
  const nodeId = req.params.nodeId;
  if (!isValidNodeId(nodeId)) throw new HttpError(400, 'INVALID_NODE_ID', 'nodeId must be 1-64 characters of A-Z a-z 0-9 . _ -', { invalid: ['nodeId'] });
  return nodeId;
}

function validate<T>(schema: { safeParse(v: unknown): { success: true; data: T } | { success: false; error: import('zod').ZodError } }, body: unknown): T {
  if (body === undefined || body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw new HttpError(400, 'INVALID_BODY', 'request body must be a JSON object', { invalid: ['(body)'] });
  }
  const result = schema.safeParse(body);
  if (!result.success) throw new HttpError(400, 'INVALID_BODY', describeIssues(result.error), { invalid: invalidFields(result.error) });
  return result.data;
}

/** The api: the original agent endpoints as a gateway to the broker, plus reads, health and metrics. */
export function createApp(deps: ApiDeps): ApiApp {
  const { bus, store, names, log, clock, metrics } = deps;
  const gateway = createAgentGateway({ bus, names, clock });
  let canary: CanarySender | null = null;
  if (deps.canaryIntervalMs) {
    canary = createCanarySender({ kind: 'api', intervalMs: deps.canaryIntervalMs, send: (message) => gateway.canary(message), store, clock, log });
    canary.start();
  }
  const knownNodes = createKnownNodes({ store, ttlMs: 2000, now: () => clock.now() });
  const fleetPace = deps.fleetPace ?? (deps.pace ? createFleetPaceReader({ store, clock, settings: deps.pace }) : null);
  /**
   * The pace this process last told each node (per process: a replica that does not know tells again). A
   * stats answer carries the pace only when it changed since, and the message then carries it too, so the
   * ingest stores that deadline with that heartbeat, before the agent can slow down.
   */
  const told = new Map<string, string>();
  async function paceFor(declaredSeconds: number): Promise<NodePace> {
    return nodePace(declaredSeconds, (await fleetPace?.current()) ?? null, deps.timeoutMs ?? 180_000);
  }
  function rememberTold(nodeId: string, pace: NodePace | null): void {
    if (!pace) return void told.delete(nodeId);
    if (told.size >= MAX_TOLD) told.clear();
    told.set(nodeId, paceKey(pace));
  }
  const guard = deps.guard;
  const app = express();
  app.disable('x-powered-by');
  app.set('query parser', 'simple');

  app.use((req, res, next) => {
    res.on('finish', () => metrics.httpRequests.inc({ route: (req.route?.path as string | undefined) ?? 'other', status: String(res.statusCode) }));
    next();
  });
  app.use(express.json({ limit: BODY_LIMIT, strict: true, type: ['application/json', 'application/*+json'] }));

  app.post('/api/nodes/register', async (req, res) => {
    const body = validate(registerBodySchema, req.body);
    const auth = await guard?.agent(req, body.nodeId, 'register');
    // The agent's preflight: authenticated and checked like a registration, then answered without sending or storing anything.
    if (isDryRun(req.query)) {
      const stored = await store.get(body.nodeId);
      res.status(200).json(dryRunAnswer({ body, stored, auth, timeoutMs: deps.timeoutMs }));
      return;
    }
    // An agent that declared its interval is told its pace; one that did not gets the original answer.
    const pace = body.heartbeatInterval === undefined ? null : await paceFor(body.heartbeatInterval);
    await gateway.register(body, auth, pace);
    knownNodes.remember(body.nodeId, body.heartbeatInterval === undefined ? null : Math.round(body.heartbeatInterval * 1000));
    rememberTold(body.nodeId, pace);
    res.status(201).json({ nodeId: body.nodeId, accepted: true, message: `Node ${body.nodeId} registered`, ...(pace ? paceFields(pace) : {}) });
  });

  app.post('/api/nodes/:nodeId/stats', async (req, res) => {
    const nodeId = nodeIdParam(req);
    const body = validate(heartbeatBodySchema, req.body);
    const auth = await guard?.agent(req, nodeId, 'heartbeat');
    const known = await knownNodes.lookup(nodeId);
    if (!known) {
      throw new HttpError(404, 'NODE_NOT_REGISTERED', `node ${nodeId} is not registered; register it first`);
    }
    const pace = known.declaredIntervalMs === null ? null : await paceFor(known.declaredIntervalMs / 1000);
    const changed = pace !== null && told.get(nodeId) !== paceKey(pace) ? pace : null;
    await gateway.heartbeat(nodeId, body, auth, changed);
    if (changed) rememberTold(nodeId, changed);
    res.status(200).json({ nodeId, accepted: true, ...(changed ? paceFields(changed) : {}) });
  });

  app.post('/api/nodes/:nodeId/shutdown', async (req, res) => {
    const nodeId = nodeIdParam(req);
    const body = validate(shutdownBodySchema, req.body ?? {});
    const auth = await guard?.agent(req, nodeId, 'shutdown');
    if (!(await knownNodes.isKnown(nodeId))) throw new HttpError(404, 'NODE_NOT_REGISTERED', `node ${nodeId} is not registered`);
    await gateway.shutdown(nodeId, body, auth);
    knownNodes.forget(nodeId);
    rememberTold(nodeId, null);
    res.status(200).json({ nodeId, accepted: true });
  });

  app.get('/api/nodes', async (req, res) => {
    await guard?.operator(req);
    const status = req.query.status;
    if (status !== undefined && status !== 'ONLINE' && status !== 'OFFLINE') {
      throw new HttpError(400, 'INVALID_STATUS', 'status must be ONLINE or OFFLINE', { invalid: ['status'] });
    }
    const nodes = await store.list(status ? { status } : {});
    res.json(nodes.map(toNodeView));
  });

  app.get('/api/nodes/:nodeId', async (req, res) => {
    await guard?.operator(req);
    const nodeId = nodeIdParam(req);
    const node = await store.get(nodeId);
    if (!node) throw new HttpError(404, 'NODE_NOT_FOUND', `node ${nodeId} not found`);
    res.json(toNodeView(node));
  });

  // Operator reset (docs/security.md): forgets the node and its credential, so its id can register anew.
  app.delete('/api/nodes/:nodeId', async (req, res) => {
    await guard?.operator(req, 'reset');
    const nodeId = nodeIdParam(req);
    const deleted = await store.delete(nodeId);
    knownNodes.forget(nodeId);
    rememberTold(nodeId, null);
    guard?.forget?.(nodeId);
    if (!deleted) throw new HttpError(404, 'NODE_NOT_FOUND', `node ${nodeId} not found`);
    log.info(`Node ${nodeId} reset by an operator (record and credential removed)`);
    res.status(204).end();
  });

  app.get('/healthz', (_req, res) => {
    res.type('text/plain').send('ok');
  });

  /** What /readyz answers and the metrics show: each check, and readiness as their conjunction. */
  async function checkReadiness(): Promise<Record<string, boolean>> {
    // A broker that blocks publishers (memory or disk alarm) takes no agent message: not ready, and named.
    const checks: Record<string, boolean> = { broker: bus.isConnected() && !bus.publishState().blocked };
    checks.store = await store.ping().then(
      () => true,
      () => false,
    );
    for (const extra of deps.readiness ?? []) checks[extra.name] = await extra.check().catch(() => false);
    return checks;
  }

  app.get('/readyz', async (_req, res) => {
    const publishing = bus.publishState();
    const checks = await checkReadiness();
    const guardState = checks.store ? await store.guardState().catch(() => null) : null;
    // Whether heartbeats are recorded end to end: shown, not a reason to stop taking them (the sweeper holds).
    const path = checks.store
      ? await store.canaries().then(
          (records) => pathCoverage(records, clock.now()),
          () => null,
        )
      : null;
    const down = Object.entries(checks)
      .filter(([, ok]) => !ok)
      .map(([name]) => name);
    res.status(down.length ? 503 : 200).json({
      ready: down.length === 0,
      unavailable: down,
      checks,
      brokerBlocked: publishing.blocked,
      ...(publishing.blocked ? { brokerBlockedReason: publishing.reason, brokerBlockedSince: new Date(publishing.since).toISOString() } : {}),
      clusterDegraded: Boolean(guardState?.heldSince),
      ...(guardState?.heldSince ? { degradedSince: guardState.heldSince.toISOString() } : {}),
      heartbeatPath: path
        ? {
            state: path.state,
            ...(path.reason ? { reason: path.reason } : {}),
            coveredUntil: path.coveredUntil === null ? null : new Date(path.coveredUntil).toISOString(),
            senders: path.senders,
          }
        : { state: 'unknown' },
    });
  });

  app.get('/metrics', async (_req, res) => {
    const publishing = bus.publishState();
    metrics.brokerBlocked.set(publishing.blocked ? 1 : 0);
    metrics.brokerUnconfirmed.set(publishing.backlog.unconfirmed);
    metrics.brokerOldestUnconfirmed.set(publishing.backlog.oldestMs / 1000);
    const checks = await checkReadiness();
    metrics.ready.set({ component: 'api' }, Object.values(checks).every(Boolean) ? 1 : 0);
    metrics.storeUp.set({ component: 'api' }, checks.store ? 1 : 0);
    // The queues operators watch: a backlog before the ingest, and refused messages (monitoring/alerts.yml).
    for (const queue of [names.queues.ingest, names.queues.deadLetter]) {
      await bus.queueDepth(queue).then(
        (depth) => metrics.queueMessages.set({ queue }, depth),
        () => metrics.queueMessages.remove({ queue }),
      );
    }
    try {
      const counts = await store.countByStatus();
      metrics.nodesByStatus.set({ status: 'ONLINE' }, counts.ONLINE);
      metrics.nodesByStatus.set({ status: 'OFFLINE' }, counts.OFFLINE);
      const guardState = await store.guardState();
      metrics.clusterDegraded.set(guardState.heldSince ? 1 : 0);
      const pace = await fleetPace?.current();
      if (pace) {
        metrics.heartbeatInterval.set(pace.intervalSeconds);
        metrics.fleetHeartbeatRate.set(expectedRate(pace));
      }
    } catch {
      // Store down: serve the process metrics anyway.
    }
    res.type(metrics.registry.contentType).send(await metrics.registry.metrics());
  });

  deps.extend?.(app);

  app.use((_req, _res, next) => next(new HttpError(404, 'NOT_FOUND', 'no such endpoint')));

  // The one error middleware: maps error codes to statuses; nothing else writes error responses.
  app.use((error: unknown, req: Request, res: Response, _next: NextFunction) => {
    let http: HttpError;
    if (error instanceof HttpError) http = error;
    else if ((error as { type?: string }).type === 'entity.too.large') http = new HttpError(413, 'BODY_TOO_LARGE', `request body exceeds ${BODY_LIMIT}`);
    else if ((error as { type?: string }).type === 'entity.parse.failed') http = new HttpError(400, 'MALFORMED_JSON', 'request body is not valid JSON');
    else if ((error as { type?: string }).type === 'encoding.unsupported' || (error as { type?: string }).type === 'charset.unsupported') {
      http = new HttpError(415, 'UNSUPPORTED_ENCODING', 'unsupported body encoding');
    } else if ((error as { status?: number }).status && (error as { status: number }).status < 500) {
      http = new HttpError((error as { status: number }).status, 'BAD_REQUEST', (error as Error).message);
    } else if (error instanceof StoreUnavailableError) {
      http = new HttpError(503, 'STORE_UNAVAILABLE', 'the node store is unavailable', {}, RETRY_AFTER);
    } else if (error instanceof BrokerBlockedError) {
      // Answered at once while the broker blocks publishers (an alarm), not when the client gives up.
      http = new HttpError(
        503,
        'BROKER_BLOCKED',
        `cannot accept now: the message broker is blocking publishes (${error.reason})`,
        { reason: error.reason, blockedSince: new Date(error.since).toISOString() },
        RETRY_AFTER,
      );
    } else if (error instanceof BusUnavailableError) {
      http = new HttpError(503, 'BROKER_UNAVAILABLE', 'cannot accept now: the message broker is unavailable', {}, RETRY_AFTER);
    } else {
      log.error(`Unexpected error on ${req.method} ${req.path}: ${(error as Error)?.message}`);
      http = new HttpError(500, 'INTERNAL', 'internal error');
    }
    for (const [name, value] of Object.entries(http.headers)) res.setHeader(name, value);
    res.status(http.status).json({ error: http.code, message: http.message, ...http.details });
  });

  return Object.assign(app, { stopBackground: async () => canary?.stop() });
}
