import { paceSettingsOf } from './heartbeat-pace.js';
import { nodeHttpFetch, type HttpAnswer, type HttpFetch } from './http-client.js';
import type { RequestAuth } from './request-auth.js';
import { TransportError, type OutboundMessage, type PaceSettings, type SendOptions, type Transport } from './transport.js';

export interface HttpTransportDeps {
  /** ORCHESTRATOR_URL without a trailing slash. */
  baseUrl: string;
  auth: RequestAuth;
  /** Default: nodeHttpFetch; tests pass a fake. */
  fetch?: HttpFetch;
}

/** The original system's endpoints (docs/reference.md, HTTP API): the envelope's payload is the request body. */
function requestFor(message: OutboundMessage): { path: string; body: unknown } {
  const node = encodeURIComponent(message.nodeId);
  switch (message.type) {
    case 'agent.register':
      return { path: '/api/nodes/register', body: message.payload };
    case 'agent.heartbeat':
      return { path: `/api/nodes/${node}/stats`, body: message.payload };
    case 'agent.shutdown':
      return { path: `/api/nodes/${node}/shutdown`, body: message.payload };
  }
}

/**
 * HTTP to the api: accepted on 2xx, with the pace settings of the answer's body if it has them; 404 on stats means
 * the orchestrator forgot the node.
 */
export function createHttpTransport(deps: HttpTransportDeps): Transport {
  const fetchImpl = deps.fetch ?? nodeHttpFetch;
  return {
    name: 'http',
    async send(message: OutboundMessage, options: SendOptions): Promise<PaceSettings | undefined> {
      const { path, body } = requestFor(message);
      const timeoutMs = Math.max(1, Math.ceil(options.timeoutMs)); // AbortSignal.timeout takes whole ms only
      const timeout = AbortSignal.timeout(timeoutMs);
      const signal = options.signal ? AbortSignal.any([timeout, options.signal]) : timeout;
      let response: HttpAnswer;
      let text: string;
      try {
        response = await fetchImpl(`${deps.baseUrl}${path}`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', accept: 'application/json', ...deps.auth.httpHeaders(message.type) },
          body: JSON.stringify(body),
          signal,
        });
        text = await response.text();
      } catch (error) {
        if (timeout.aborted) throw new TransportError('TIMEOUT', `HTTP request timed out after ${timeoutMs} ms`, { cause: error });
        if (options.signal?.aborted) throw new TransportError('UNAVAILABLE', 'HTTP request cancelled', { cause: error });
        throw new TransportError('UNAVAILABLE', `HTTP request failed: ${networkReason(error)}`, { cause: error });
      }
      if (response.ok) return message.type === 'agent.shutdown' ? undefined : paceOf(text);
      const what = `HTTP ${response.status}${summary(text)}`;
      if (response.status === 404 && message.type === 'agent.heartbeat') {
        throw new TransportError('NODE_NOT_REGISTERED', `${what} (node ${message.nodeId} is not registered)`);
      }
      if (response.status === 503 || response.status === 429 || response.status >= 500) {
        throw new TransportError('UNAVAILABLE', what, { retryAfterMs: retryAfterMs(response.headers.get('retry-after')) });
      }
      throw new TransportError('REFUSED', what);
    },
  };
}

/** An answer without a JSON body, or without the fields, carries no pace: an orchestrator that sets none. */
function paceOf(text: string): PaceSettings | undefined {
  if (!text) return undefined;
  try {
    return paceSettingsOf(JSON.parse(text));
  } catch {
    return undefined;
  }
}

/** Why a request failed to connect (ECONNREFUSED, ENOTFOUND, ...): fetch puts it in the cause of its generic "fetch failed". */
export function networkReason(error: unknown): string {
  const cause = (error as { cause?: { message?: string } })?.cause;
  return cause?.message ?? (error as Error)?.message ?? String(error);
}

function summary(text: string): string {
  if (!text) return '';
  try {
    const parsed = JSON.parse(text) as { error?: unknown; message?: unknown; reason?: unknown };
    const detail = parsed?.error ?? parsed?.message;
    // The api names a broker alarm in `reason` (503 BROKER_BLOCKED): worth the agent's log line.
    const reason = typeof parsed?.reason === 'string' ? ` (${parsed.reason})` : '';
    if (detail !== undefined) return `: ${typeof detail === 'string' ? detail : JSON.stringify(detail)}${reason}`.slice(0, 300);
    return '';
  } catch {
    /* not JSON: show the start of it */
  }
  return `: ${text.slice(0, 200)}`;
}

/** Retry-After as a number of seconds or as an HTTP date: a server may send either form. */
export function retryAfterMs(header: string | null, now = Date.now()): number | undefined {
  if (!header) return undefined;
  const seconds = Number(header);
  if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000;
  const at = Date.parse(header);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}
