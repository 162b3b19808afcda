import { createMemoryBus } from '../../shared/bus/memory-bus.js';
import { busContract } from './bus.contract.js';

busContract('in-memory', {
  async open() {
    return createMemoryBus();
  },
  async close(bus) {
    await bus.close();
  },
  async dropConnection(bus) {
    const memory = bus as ReturnType<typeof createMemoryBus>;
    memory.setConnected(false);
    memory.setConnected(true);
    return true;
  },
});
