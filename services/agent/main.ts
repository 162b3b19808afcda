import { loadAgentConfig } from '../../shared/config.js';
import { failStart, stopOnSignals } from '../../shared/lifecycle.js';
import { createLogger } from '../../shared/logger.js';
import { buildAgent } from './build-agent.js';

async function main(): Promise<void> {
  const config = loadAgentConfig(process.env);
  const log = createLogger(config.log).child({ component: 'agent' });
  const agent = await buildAgent(config, { log });
  stopOnSignals(log, () => agent.stop(), config.heartbeatTimeoutMs);
  log.info(
    `Agent ${config.nodeId} starting: orchestrator ${config.orchestratorUrl}, ${config.rabbitmqUrl ? 'RabbitMQ with HTTP fallback' : 'HTTP only (RABBITMQ_URL not set)'}, ` +
      `heartbeat every ${config.heartbeatIntervalMs / 1000} s`,
  );
  await agent.start();
}

main().catch(failStart);
