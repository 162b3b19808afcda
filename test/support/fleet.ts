import type { Harness } from './orchestrator.js';
import { registerBody, statsBody } from './orchestrator.js';

/** Simulated agents heartbeating over AMQP through a harness; agents can be silenced one by one. */
export async function startFleet(h: Harness, nodeIds: string[], options: { intervalMs?: number; clockOffsetMs?: number } = {}) {
  const intervalMs = options.intervalMs ?? 200;
  const offset = options.clockOffsetMs ?? 0;
  const silent = new Set<string>();
  let confirmed = 0;
  const agentTime = () => new Date(Date.now() + offset).toISOString();
  await Promise.all(nodeIds.map((id) => h.publishAgent('agent.register', id, registerBody(id), { sentAt: agentTime() })));
  const beat = async () => {
    await Promise.all(
      nodeIds
        .filter((id) => !silent.has(id))
        .map((id) =>
          h
            .publishAgent('agent.heartbeat', id, statsBody({ timestamp: agentTime() }), { sentAt: agentTime() })
            .then(() => confirmed++)
            .catch(() => undefined),
        ),
    );
  };
  const timer = setInterval(() => void beat(), intervalMs);
  return {
    silence(ids: string[]) {
      for (const id of ids) silent.add(id);
    },
    resume(ids: string[]) {
      for (const id of ids) silent.delete(id);
    },
    confirmed: () => confirmed,
    stop() {
      clearInterval(timer);
    },
  };
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
