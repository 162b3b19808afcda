import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import type { Context } from 'mocha';

export const RABBITMQ_URL = process.env.RABBITMQ_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
export const MONGO_URL = process.env.MONGO_URL ?? 'mongodb://127.0.0.1:27017/orchestrator';
export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

export type ServiceName = 'rabbitmq' | 'mongodb' | 'redis';

const URLS: Record<ServiceName, string> = { rabbitmq: RABBITMQ_URL, mongodb: MONGO_URL, redis: REDIS_URL };
const DEFAULT_PORTS: Record<ServiceName, number> = { rabbitmq: 5672, mongodb: 27017, redis: 6379 };

function reachable(url: string, fallbackPort: number, timeoutMs = 1000): Promise<boolean> {
  const parsed = new URL(url);
  return new Promise((resolve) => {
    const socket = connect({ host: parsed.hostname, port: Number(parsed.port || fallbackPort), timeout: timeoutMs });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
    socket.once('timeout', () => done(false));
  });
}

const cache = new Map<ServiceName, Promise<boolean>>();

/**
 * For integration suites: `before(requireServices('rabbitmq', 'mongodb'))`. Skips the suite with a loud
 * notice when a service does not answer, and fails instead under REQUIRE_SERVICES=1 (set by .ci/run).
 */
export function requireServices(...names: ServiceName[]) {
  return async function (this: Context): Promise<void> {
    const missing: string[] = [];
    for (const name of names) {
      if (!cache.has(name)) cache.set(name, reachable(URLS[name], DEFAULT_PORTS[name]));
      if (!(await cache.get(name))) missing.push(`${name} (${redact(URLS[name])})`);
    }
    if (!missing.length) return;
    const message = `integration services not reachable: ${missing.join(', ')}; run \`npm run services\``;
    if (process.env.REQUIRE_SERVICES === '1') throw new Error(`${message} (REQUIRE_SERVICES=1)`);
    process.stderr.write(`\n  !!! SKIPPING ${this.test?.parent?.fullTitle() ?? 'suite'}: ${message}\n\n`);
    this.skip();
  };
}

function redact(url: string): string {
  return url.replace(/\/\/([^:/@]+):([^@]+)@/, '//$1:***@');
}

/** A short unique name for a test's own queue namespace, database or key prefix. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
}

/** The MongoDB URL of a database of the test's own. */
export function mongoUrlFor(database: string): string {
  const url = new URL(MONGO_URL);
  url.pathname = `/${database.replace(/[^A-Za-z0-9_]/g, '_')}`;
  return url.toString();
}

/** Polls `check` until it returns a truthy value or `timeoutMs` passes (for real-service tests only). */
export async function eventually<T>(check: () => Promise<T | undefined | null | false> | T | undefined | null | false, timeoutMs = 5000, intervalMs = 25): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value) return value as T;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms${lastError ? `: ${(lastError as Error).message}` : ''}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
