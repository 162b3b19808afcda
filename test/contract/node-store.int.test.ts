import { createMongoNodeStore } from '../../shared/store/mongo-node-store.js';
import type { NodeStore } from '../../shared/store/node-store.js';
import { mongoUrlFor, requireServices, uniqueName } from '../support/services.js';
import { nodeStoreContract } from './node-store.contract.js';

describe('MongoDB node store @int', function () {
  before(requireServices('mongodb'));

  nodeStoreContract('MongoDB', {
    async open() {
      const store = await createMongoNodeStore({ url: mongoUrlFor(uniqueName('store')), historyPoints: 120, serverSelectionTimeoutMs: 2000 });
      await store.ensureIndexes();
      return store;
    },
    async destroy(store: NodeStore) {
      const { connection } = store as NodeStore & { connection: { dropDatabase(): Promise<unknown> } };
      await connection.dropDatabase().catch(() => undefined);
      await store.close();
    },
  });
});
