import type { Consumer } from '../../shared/bus/bus.js';
import type { NodeRecord } from '../../shared/store/node-record.js';
import { HEADERS } from '../../shared/topology.js';
import type { Harness } from '../support/orchestrator.js';

export const JOIN_TOKEN = 'test-join-token-0123456789';
export const OPERATOR_TOKEN = 'test-operator-token-0123456789';

export interface DeadLetter {
  routingKey: string;
  messageId?: string;
  reason: string;
  body: string;
}

/** Reads the harness's dead-letter queue (names.queues.deadLetter) as a consumer would. */
export async function readDeadLetters(h: Harness): Promise<{ letters: DeadLetter[]; close(): Promise<void> }> {
  const letters: DeadLetter[] = [];
  const consumer: Consumer = await h.bus.consume(
    h.names.queues.deadLetter,
    (d) => {
      letters.push({ routingKey: d.routingKey, messageId: d.messageId, reason: String(d.headers[HEADERS.refusalReason] ?? ''), body: d.body.toString('utf8') });
      d.ack();
    },
    { prefetch: 500 },
  );
  return { letters, close: () => consumer.cancel() };
}

/** Every stored node, comparable as a whole (rev included: any write shows). */
export async function snapshotNodes(h: Harness): Promise<Record<string, unknown>> {
  const nodes = await h.store.list();
  const byId: Record<string, unknown> = {};
  for (const n of nodes.sort((a, b) => a.nodeId.localeCompare(b.nodeId))) byId[n.nodeId] = JSON.parse(JSON.stringify(n as NodeRecord));
  return byId;
}

export async function post(url: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; json: Record<string, unknown>; headers: Headers }> {
  const response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: typeof body === 'string' ? body : JSON.stringify(body) });
  const text = await response.text();
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch {
    /* not JSON */
  }
  return { status: response.status, json, headers: response.headers };
}

export const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
