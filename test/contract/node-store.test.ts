import { createMemoryNodeStore } from '../../shared/store/memory-node-store.js';
import { nodeStoreContract } from './node-store.contract.js';

nodeStoreContract('in-memory', {
  async open() {
    return createMemoryNodeStore({ historyPoints: 120 });
  },
  async destroy(store) {
    await store.close();
  },
});
