import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { createRabbitBus } from '../../shared/bus/rabbit-bus.js';
import { createMemoryLogger } from '../../shared/logger.js';
import { eventually, RABBITMQ_URL, requireServices, uniqueName } from '../support/services.js';
import { busContract } from './bus.contract.js';

const run = promisify(execFile);

/**
 * Closes this bus's own connection on the broker (found by its connection name), as a broker restart or a
 * network cut would. Only ours: other suites may share the broker. False when rabbitmqctl is not usable here.
 */
async function closeConnectionNamed(connectionName: string): Promise<boolean> {
  try {
    const pid = await eventually(async () => {
      const { stdout } = await run('rabbitmqctl', ['list_connections', 'pid', 'client_properties', '-q', '--no-table-headers'], { timeout: 10_000 });
      const line = stdout.split('\n').find((l) => l.includes(`{"connection_name","${connectionName}"}`));
      return line?.split('\t')[0];
    }, 5000, 200);
    await run('rabbitmqctl', ['close_connection', pid, 'test'], { timeout: 10_000 });
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
      if (!(await closeConnectionNamed(connectionName))) return false;
      await eventually(() => !bus.isConnected(), 5000, 10).catch(() => undefined);
      return true;
    },
  });
});
