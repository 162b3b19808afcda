import type { Request } from 'express';
import { decideAgentAuth, type AgentAction } from '../../../shared/auth/agent-auth.js';
import { secretEquals } from '../../../shared/auth/credentials.js';
import type { Clock } from '../../../shared/clock.js';
import type { OrchestratorConfig } from '../../../shared/config.js';
import { createLogThrottle } from '../../../shared/log-throttle.js';
import type { Logger } from '../../../shared/logger.js';
import type { RateLimiter } from '../../../shared/rate-limit/rate-limiter.js';
import type { NodeStore } from '../../../shared/store/node-store.js';
import type { ApiGuard } from '../app.js';
import { HttpError } from '../http-error.js';
import { createCredentialLookup } from './credential-lookup.js';

export interface ApiGuardOptions {
  config: Pick<OrchestratorConfig, 'auth' | 'rateLimit'>;
  store: NodeStore;
  /** The per-node budget, `config.rateLimit.perNodePerMinute` a minute: Redis (shared by the replicas) or in-memory. */
  rateLimiter: RateLimiter;
  clock: Clock;
  log: Logger;
  /** How long a node's credential hash is cached (default 2000 ms). */
  credentialTtlMs?: number;
}

const REFUSAL_LOG_EVERY_MS = 10_000;

/** `Authorization: Bearer <token>` -> token, else undefined. */
function bearer(req: Request): string | undefined {
  const header = req.get('authorization');
  if (!header) return undefined;
  const match = /^Bearer[ ]+([^\s]+)\s*$/i.exec(header);
  return match ? match[1] : undefined;
}

/**
 * Authentication and rate limiting of the api (docs/security.md): agents' credentials (AUTH_MODE=on), the
 * per-node rate limit (always), and the operator token on reads, the dashboard stream and resets (when set).
 */
export function createApiGuard(options: ApiGuardOptions): ApiGuard & { forget(nodeId: string): void } {
  const { config, store, clock, log, rateLimiter } = options;
  const now = () => clock.now();
  const lookup = createCredentialLookup({ store, ttlMs: options.credentialTtlMs ?? 2000, now });
  // Refusals are attacker-driven: one warning per period and a count of the rest, never the presented secret.
  const refusalLog = createLogThrottle({
    log,
    level: 'warn',
    burst: 1,
    windowMs: REFUSAL_LOG_EVERY_MS,
    now,
    summary: (n, windowMs) => `... and ${n} more requests refused in the last ${windowMs / 1000} s`,
  });

  async function rateLimit(req: Request, nodeId: string): Promise<void> {
    const taken = await rateLimiter.take(nodeId);
    if (taken.ok) {
      // A request the orchestrator fails itself (broker or store unavailable: 5xx) spends nothing of the budget.
      req.res?.once('finish', () => {
        if (req.res!.statusCode >= 500) rateLimiter.refund(nodeId).catch(() => undefined);
      });
      return;
    }
    const seconds = Math.max(1, Math.ceil(taken.retryAfterMs / 1000));
    refusalLog.log(`Rate limit: node ${nodeId} exceeds ${config.rateLimit.perNodePerMinute} requests per minute`);
    throw new HttpError(
      429,
      'RATE_LIMITED',
      `node ${nodeId} exceeds ${config.rateLimit.perNodePerMinute} requests per minute; retry later`,
      {},
      { 'Retry-After': String(seconds) },
    );
  }

  return {
    async agent(req: Request, nodeId: string, action: AgentAction): Promise<string | undefined> {
      if (config.auth.mode === 'off') {
        await rateLimit(req, nodeId);
        return undefined;
      }
      const token = bearer(req);
      if (!token) {
        refusalLog.log(`Refused ${action} for ${nodeId}: no bearer credential`);
        throw new HttpError(401, 'UNAUTHENTICATED', 'missing credential: send Authorization: Bearer <credential>', {}, { 'WWW-Authenticate': 'Bearer realm="agents"' });
      }
      // Registrations are rare and decide ownership: read the node fresh.
      const storedHash = await lookup.get(nodeId, action === 'register');
      const decision = decideAgentAuth({ joinToken: config.auth.joinToken!, action, nodeId, auth: token, storedHash });
      if (!decision.ok) {
        refusalLog.log(`Refused ${action} for ${nodeId}: ${decision.reason}`);
        const headers: Record<string, string> = decision.status === 401 ? { 'WWW-Authenticate': 'Bearer realm="agents", error="invalid_token"' } : {};
        throw new HttpError(decision.status, decision.code, decision.reason, {}, headers);
      }
      // Only authenticated requests spend a node's budget, so nobody can starve another node's budget.
      await rateLimit(req, nodeId);
      if (action === 'register') lookup.forget(nodeId);
      return token;
    },

    async operator(req: Request, access: 'read' | 'reset' = 'read'): Promise<void> {
      const expected = config.auth.operatorToken;
      if (!expected) {
        if (access === 'reset' && config.auth.mode === 'on') throw new HttpError(403, 'OPERATOR_TOKEN_NOT_SET', 'resets need OPERATOR_TOKEN to be set on the api');
        return;
      }
      const query = req.query.token;
      const presented = bearer(req) ?? (typeof query === 'string' && query ? query : undefined);
      if (!presented)
        throw new HttpError(
          401,
          'OPERATOR_TOKEN_REQUIRED',
          'send the operator token: Authorization: Bearer <token> or ?token=',
          {},
          { 'WWW-Authenticate': 'Bearer realm="operator"' },
        );
      if (!secretEquals(presented, expected)) {
        refusalLog.log(`Refused operator ${access} of ${req.method} ${req.path.slice(0, 120)}: wrong operator token`);
        throw new HttpError(403, 'WRONG_OPERATOR_TOKEN', 'wrong operator token');
      }
    },

    forget(nodeId: string): void {
      lookup.forget(nodeId);
    },
  };
}
