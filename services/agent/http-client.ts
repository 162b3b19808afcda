import { Agent as HttpAgent, request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';

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

// Kept-alive connections, as fetch keeps them: one per orchestrator, not a handshake per beat.
const agents = { http: new HttpAgent({ keepAlive: true }), https: new HttpsAgent({ keepAlive: true }) };

/**
 * The agent's HTTP client, on node:http. Node's fetch (undici) costs a process some 11 MiB of memory once first
 * used, a fifth of what the whole agent may use on a host (docs/benchmarks.md, agent). A failed connection rejects
 * with Node's own error (`connect ECONNREFUSED 10.0.0.5:8080`); an aborted one with the signal's reason.
 */
export const nodeHttpFetch: HttpFetch = (url, init = {}) =>
  new Promise<HttpAnswer>((resolve, reject) => {
    const target = new URL(url);
    const secure = target.protocol === 'https:';
    const body = init.body === undefined ? undefined : Buffer.from(init.body);
    const request = (secure ? httpsRequest : httpRequest)(
      target,
      {
        method: init.method ?? 'GET',
        headers: { ...init.headers, ...(body ? { 'content-length': String(body.length) } : {}) },
        agent: secure ? agents.https : agents.http,
        signal: init.signal,
      },
      (response) => {
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

function headerValue(headers: IncomingHttpHeaders, name: string): string | null {
  const value = headers[name.toLowerCase()];
  if (value === undefined) return null;
  return Array.isArray(value) ? value.join(', ') : value;
}
