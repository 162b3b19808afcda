import type { OrchestratorConfig } from '../../shared/config.js';
import type { Logger } from '../../shared/logger.js';
import { brokerNames, topology } from '../../shared/topology.js';

/**
 * `npm run ingest -- --migrate-queue` (docs/operations.md, "Migrating the ingest queue"): the ingest queue of an
 * earlier version (a classic queue) becomes the declared quorum queue, keeping its messages. Rejects with the
 * error when it cannot.
 */
export async function migrateIngestQueue(config: OrchestratorConfig, log: Logger): Promise<void> {
  const { migrateQueue } = await import('../../shared/bus/rabbit-queue-migration.js');
  const names = brokerNames(config.brokerNamespace);
  const result = await migrateQueue({ url: config.rabbitmqUrl, topology: topology(names), queue: names.queues.ingest, log });
  log.info(
    result.migrated
      ? `${names.queues.ingest} is now declared as this version declares it, with all ${result.held} messages: start the ingests`
      : `${names.queues.ingest} needed no migration`,
  );
}
