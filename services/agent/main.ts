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

/** `--check`: the preflight (docs/agent.md); exit 0 when the agent would work, 1 otherwise. */
async function check(): Promise<void> {
  // Loaded only here: the agent itself never needs the preflight's probes.
  const { formatReport, runPreflight } = await import('./preflight.js');
  const report = await runPreflight({ env: process.env });
  // Exits once the report is written: a pipe is written asynchronously, and probes may leave keep-alive sockets open.
  process.stdout.write(formatReport(report), () => process.exit(report.ok ? 0 : 1));
}

(process.argv.slice(2).includes('--check') ? check() : main()).catch(failStart);
