import amqp, { type ChannelModel, type ConfirmChannel } from 'amqplib';
import { encode } from './bus.js';

/** Why a probe failed, so that the caller can say what to fix. */
export type BrokerProbeFailure =
  /** No TCP connection: wrong host or port, DNS, firewall, broker down. */
  | 'unreachable'
  /** The broker refused the user name or password. */
  | 'credentials'
  /** Logged in, but the virtual host does not exist or the user may not use it. */
  | 'vhost'
  /** The exchange does not exist (nothing declared the topology yet, or another BROKER_NAMESPACE). */
  | 'exchange-missing'
  /** The user may not publish to the exchange. */
  | 'permission'
  /** The broker answered the publish with a nack, or no confirm came in time. */
  | 'no-confirm'
  | 'other';

export type BrokerProbeResult = { ok: true; confirmMs: number } | { ok: false; failure: BrokerProbeFailure; message: string };

/**
 * One connection, one confirmed publish, closed again: whether an agent could publish to `exchange` with the
 * credentials in `url`. It declares nothing. The message goes out with a routing key that no binding matches
 * (not mandatory), so the broker confirms it and drops it: no queue, consumer or store ever sees it.
 */
export async function probeBrokerPublish(options: { url: string; exchange: string; routingKey: string; body: object; timeoutMs: number }): Promise<BrokerProbeResult> {
  let connection: ChannelModel | null = null;
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<BrokerProbeResult>((resolve) => {
    timer = setTimeout(() => resolve({ ok: false, failure: 'unreachable', message: `no answer within ${options.timeoutMs} ms` }), options.timeoutMs);
  });
  const attempt = async (): Promise<BrokerProbeResult> => {
    try {
      connection = await amqp.connect(options.url, { timeout: options.timeoutMs });
      connection.on('error', () => undefined);
    } catch (error) {
      return { ok: false, failure: connectFailure(error), message: (error as Error).message };
    }
    let channel: ConfirmChannel;
    try {
      channel = await connection.createConfirmChannel();
      channel.on('error', () => undefined);
      await channel.checkExchange(options.exchange);
    } catch (error) {
      const code = (error as { code?: number }).code;
      return { ok: false, failure: code === 404 ? 'exchange-missing' : code === 403 ? 'permission' : 'other', message: (error as Error).message };
    }
    const started = performance.now();
    let closedBy: Error | null = null;
    channel.once('error', (error: Error) => {
      closedBy = error;
    });
    return new Promise<BrokerProbeResult>((resolve) => {
      try {
        channel.publish(options.exchange, options.routingKey, encode(options.body), { persistent: false, contentType: 'application/json', mandatory: false }, (error: unknown) => {
          if (!error) return resolve({ ok: true, confirmMs: performance.now() - started });
          const cause = closedBy ?? (error as Error);
          const code = (cause as { code?: number }).code;
          resolve({ ok: false, failure: code === 403 ? 'permission' : 'no-confirm', message: cause.message ?? String(error) });
        });
      } catch (error) {
        resolve({ ok: false, failure: 'other', message: (error as Error).message });
      }
    });
  };
  // Closed once the attempt ends, also when the deadline answered first.
  const run = attempt().finally(() => connection?.close().catch(() => undefined));
  try {
    return await Promise.race([run, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** amqplib reports a refused login only in the text of the handshake error; network errors carry a code. */
function connectFailure(error: unknown): BrokerProbeFailure {
  const { code, message } = error as { code?: string; message?: string };
  if (code && ['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNRESET'].includes(code)) return 'unreachable';
  if (/ACCESS.REFUSED/.test(message ?? '')) return 'credentials';
  if (/NOT.ALLOWED|ConnectionClose/.test(message ?? '')) return 'vhost';
  return 'other';
}
