import type { OrchestratorConfig } from '../../shared/config.js';
import { createCredentialAuthenticator } from './auth/credential-authenticator.js';
import { createIngest, type Ingest, type IngestDeps } from './ingest.js';

export type IngestAdapters = Pick<IngestDeps, 'bus' | 'store' | 'log' | 'clock' | 'metrics' | 'afterStore'>;

/**
 * Starts an ingest as every deployment runs it (the ingest process, the all-in-one, the test harness): agent
 * authentication as AUTH_MODE says (docs/security.md), consuming until `stop()`.
 */
export async function startIngest(config: OrchestratorConfig, adapters: IngestAdapters): Promise<Ingest> {
  const authenticator = config.auth.mode === 'on' ? createCredentialAuthenticator({ joinToken: config.auth.joinToken! }) : undefined;
  const ingest = createIngest({ ...adapters, config, authenticator });
  adapters.log.info(`Agent authentication ${config.auth.mode}`);
  await ingest.start();
  return ingest;
}
