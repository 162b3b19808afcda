import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { createRabbitBus } from '../../shared/bus/rabbit-bus.js';
import { createMemoryLogger } from '../../shared/logger.js';
import { eventually, RABBITMQ_URL, requireServices, uniqueName } from '../support/services.js';
import { busContract } from './bus.contract.js';

const run = promisify(execFile);

/**
 * Closes this bus's own connections on the broker (found by their connection names: "<name> (publish)" and
 * "<name> (consume)"), as a broker restart or a network cut would. Only ours: other suites may share the
 * broker. False when rabbitmqctl is not usable here.
 */
async function closeConnectionsNamed(connectionName: string): Promise<boolean> {
  try {
    const pids = await eventually(
      async () => {
        const { stdout } = await run('rabbitmqctl', ['list_connections', 'pid', 'client_properties', '-q', '--no-table-headers'], { timeout: 10_000 });
        const ours = stdout
          .split('\n')
          .filter((l) => l.includes(`{"connection_name","${connectionName} (`))
          .map((l) => l.split('\t')[0]!);
        return ours.length === 2 ? ours : undefined;
      },
      5000,
      200,
    );
    await Promise.all(pids.map((pid) => run('rabbitmqctl', ['close_connection', pid, 'test'], { timeout: 10_000 })));
    return true;
  } catch {
    return false;
  }
}

describe('RabbitMQ bus @int', function () {
  before(requireServices('rabbitmq'));

  const connectionName = uniqueName('bus-contract');
  busContract('RabbitMQ', {
    async open() {
      return createRabbitBus({ url: RABBITMQ_URL, log: createMemoryLogger('warn'), name: connectionName, initialMaxRetries: 3, maxReconnectDelayMs: 500 });
    },
    async close(bus) {
      await bus.close();
    },
    async dropConnection(bus) {
      if (!(await closeConnectionsNamed(connectionName))) return false;
      await eventually(() => !bus.isConnected(), 5000, 10).catch(() => undefined);
      return true;
    },
  });
});
