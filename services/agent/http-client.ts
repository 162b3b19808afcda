import { Agent as HttpAgent, request as httpRequest, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';

/** The part of an HTTP answer the agent reads. The global fetch's Response has it too, so tests may pass fetch. */
export interface HttpAnswer {
  ok: boolean;
  status: number;
  headers: { get(name: string): string | null };
  text(): Promise<string>;
  json(): Promise<unknown>;
}

export interface HttpRequestInit {
  method?: string;
  headers?: Record<string, string>;
  body?: string;
  signal?: AbortSignal;
}

/** How the agent sends HTTP requests: `globalThis.fetch` fits, and so does `nodeHttpFetch`. */
export type HttpFetch = (url: string, init?: HttpRequestInit) => Promise<HttpAnswer>;

type Https = typeof import('node:https');

// Kept-alive connections, as fetch keeps them: one per orchestrator, not a handshake per beat.
const httpAgent = new HttpAgent({ keepAlive: true });

/**
 * node:https (and TLS with it) is loaded with the first https:// request: an orchestrator reached over plain HTTP
 * never needs it, and each module loaded costs the agent memory (docs/benchmarks.md, agent).
 */
let https: Promise<{ request: Https['request']; agent: InstanceType<Https['Agent']> }> | null = null;
const loadHttps = () => (https ??= import('node:https').then(({ Agent, request }) => ({ request, agent: new Agent({ keepAlive: true }) })));

/**
 * The agent's HTTP client, on node:http. Node's fetch (undici) costs a process some 11 MiB of memory once first
 * used, a fifth of what the whole agent may use on a host (docs/benchmarks.md, agent). A failed connection rejects
 * with Node's own error (`connect ECONNREFUSED 10.0.0.5:8080`); an aborted one with the signal's reason.
 */
export const nodeHttpFetch: HttpFetch = async (url, init = {}) => {
  const target = new URL(url);
  const client = target.protocol === 'https:' ? await loadHttps() : { request: httpRequest, agent: httpAgent };
  return new Promise<HttpAnswer>((resolve, reject) => {
    const body = init.body === undefined ? undefined : Buffer.from(init.body);
    const request = client.request(
      target,
      {
        method: init.method ?? 'GET',
        headers: { ...init.headers, ...(body ? { 'content-length': String(body.length) } : {}) },
        agent: client.agent,
        signal: init.signal,
      },
      (response: IncomingMessage) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.once('error', reject);
        response.once('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          const status = response.statusCode ?? 0;
          resolve({
            ok: status >= 200 && status < 300,
            status,
            headers: { get: (name) => headerValue(response.headers, name) },
            text: async () => text,
            json: async () => JSON.parse(text) as unknown,
          });
        });
      },
    );
    request.once('error', (error) => reject(init.signal?.aborted ? (init.signal.reason ?? error) : error));
    request.end(body);
  });
};

function headerValue(headers: IncomingHttpHeaders, name: string): string | null {
  const value = headers[name.toLowerCase()];
  if (value === undefined) return null;
  return Array.isArray(value) ? value.join(', ') : value;
}
