import { loadOrchestratorConfig } from '../../shared/config.js';
import { failStart, stopOnSignals } from '../../shared/lifecycle.js';
import { createLogger } from '../../shared/logger.js';
import { startAllInOne } from './all-in-one.js';
import { loadEnvWithFile } from './env-file.js';

async function main(): Promise<void> {
  const { env, file } = loadEnvWithFile(process.env);
  const log = createLogger(loadOrchestratorConfig(env).log).child({ component: 'all-in-one' });
  log.info(file ? `Settings from ${file} (environment variables override it)` : 'No env file read: built-in defaults apply');
  const app = await startAllInOne({ env, log });
  // The agent may use most of HEARTBEAT_TIMEOUT to announce its shutdown; the rest needs a few seconds.
  stopOnSignals(log, () => app.stop(), app.agentConfig.heartbeatTimeoutMs + 10_000);
  log.info(`Dashboard: ${app.url}/ (local agent ${app.agentConfig.nodeId}; other agents: ORCHESTRATOR_URL=${app.url} npm run agent)`);
}

main().catch(failStart);
