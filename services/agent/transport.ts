import type { HeartbeatMessage, RegisterMessage, ShutdownMessage } from '../../shared/messages/index.js';

/** What the agent sends: the shared envelopes (the HTTP transport sends their original bodies). */
export type OutboundMessage = RegisterMessage | HeartbeatMessage | ShutdownMessage;

export type TransportName = 'amqp' | 'http';

/**
 * What the orchestrator tells an agent that declared its interval (docs/agent.md, heartbeat pace), in seconds: the
 * register answer over HTTP, a stats answer when it changed, or `control.settings` over AMQP (heartbeat-pace.ts).
 */
export interface PaceSettings {
  heartbeatInterval: number;
  timeout: number;
  fleetSize?: number;
}

export interface SendOptions {
  /** How long one transport may take to accept the message. */
  timeoutMs: number;
  /** Cancels the send (the agent is stopping). */
  signal?: AbortSignal;
}

/**
 * One way to the orchestrator. `send` resolves once the message is accepted (broker confirm or HTTP 2xx), with
 * the pace settings the answer carried, if any (an HTTP answer to a registration or a heartbeat).
 */
export interface Transport {
  readonly name: TransportName;
  send(message: OutboundMessage, options: SendOptions): Promise<PaceSettings | undefined>;
}

export type TransportErrorCode = 'TIMEOUT' | 'UNAVAILABLE' | 'REFUSED' | 'NODE_NOT_REGISTERED';

/** A message was not accepted. `retryAfterMs` comes from an HTTP 503's Retry-After. */
export class TransportError extends Error {
  constructor(
    readonly code: TransportErrorCode,
    message: string,
    options: { cause?: unknown; retryAfterMs?: number } = {},
  ) {
    super(message, { cause: options.cause });
    this.name = 'TransportError';
    this.retryAfterMs = options.retryAfterMs;
  }
  readonly retryAfterMs?: number;
}

/** The orchestrator does not know this node (HTTP 404 on stats): re-register at once. */
export function isNodeNotRegistered(error: unknown): boolean {
  return error instanceof TransportError && error.code === 'NODE_NOT_REGISTERED';
}

export function reasonOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
