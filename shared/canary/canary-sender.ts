import { randomUUID } from 'node:crypto';
import type { Clock } from '../clock.js';
import type { CanaryRecord } from '../domain/path-coverage.js';
import type { Logger } from '../logger.js';
import type { CanaryMessage } from '../messages/index.js';
import { createOutageLog } from '../outage-log.js';
import type { NodeStore } from '../store/node-store.js';

export interface CanarySenderDeps {
  /** Unique per process: `<kind>-<random>`. */
  senderId?: string;
  kind: CanaryRecord['kind'];
  intervalMs: number;
  /** Sends the canary along the path agents' heartbeats take from this process (the same exchange, and for the api the same gateway). */
  send(message: CanaryMessage): Promise<void>;
  store: NodeStore;
  clock: Clock;
  log: Logger;
}

/**
 * Sends a canary heartbeat every `intervalMs`, and says in the store, directly, that this sender runs, so the
 * sweeper can tell a sender whose canaries no longer arrive (a broken path) from one that has stopped
 * (docs/architecture.md, "The heartbeat path and its canary").
 */
export function createCanarySender(deps: CanarySenderDeps) {
  const senderId = deps.senderId ?? `${deps.kind}-${randomUUID().slice(0, 8)}`;
  const storeOutage = createOutageLog({ log: deps.log, what: `Canary sender ${senderId} cannot record that it runs`, now: () => deps.clock.now() });
  const sendOutage = createOutageLog({ log: deps.log, what: `Canary heartbeats from ${senderId} are not getting onto the heartbeat path`, now: () => deps.clock.now() });
  let timer: NodeJS.Timeout | null = null;
  // The first failed send since the last canary that got onto the path: the next one that does says so.
  let failedSince: number | null = null;
  let running: Promise<void> | null = null;

  async function tick(): Promise<void> {
    const now = deps.clock.now();
    await deps.store.recordCanarySender({ senderId, kind: deps.kind, intervalMs: deps.intervalMs, aliveAt: new Date(now) }).then(
      () => storeOutage.recovered(),
      (error: unknown) => storeOutage.failed(error),
    );
    const message: CanaryMessage = {
      id: randomUUID(),
      type: 'orchestrator.canary',
      version: 1,
      sentAt: new Date(now).toISOString(),
      senderId,
      kind: deps.kind,
      intervalMs: deps.intervalMs,
      ...(failedSince !== null ? { failedSince: new Date(failedSince).toISOString() } : {}),
    };
    await deps.send(message).then(
      () => {
        failedSince = null;
        sendOutage.recovered();
      },
      (error: unknown) => {
        failedSince ??= now;
        sendOutage.failed(error);
      },
    );
  }

  function schedule(): void {
    timer = setTimeout(() => {
      // One canary at a time: a send held up by the broker must not pile up more behind it.
      running ??= tick().finally(() => {
        running = null;
      });
      schedule();
    }, deps.intervalMs);
    timer.unref?.();
  }

  return {
    senderId,
    tick,
    start(): void {
      if (timer) return;
      running = tick().finally(() => {
        running = null;
      });
      schedule();
    },
    /** Stops sending and removes this sender's record, so the sweeper does not wait for it to go stale. */
    async stop(): Promise<void> {
      if (timer) clearTimeout(timer);
      timer = null;
      // A send that fails has been logged by the sender; stopping only waits for it to end.
      await running?.catch(() => undefined);
      await deps.store.removeCanarySender(senderId).catch((error: unknown) => storeOutage.failed(error));
    },
  };
}

export type CanarySender = ReturnType<typeof createCanarySender>;
