import type { OrchestratorConfig } from '../../shared/config.js';
import { createSweeper, type SweeperDeps } from './sweeper.js';

export type SweeperAdapters = Omit<SweeperDeps, 'config'>;

/** Starts a sweeper as every deployment runs it (the sweeper process, the all-in-one, the test harness), until `stop()`. */
export async function startSweeper(config: OrchestratorConfig, adapters: SweeperAdapters): Promise<{ stop(): Promise<void> }> {
  const sweeper = createSweeper({ ...adapters, config });
  await sweeper.start();
  return sweeper;
}
