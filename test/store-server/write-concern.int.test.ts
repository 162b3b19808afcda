import { expect } from 'chai';
import { createMongoNodeStore } from '../../shared/store/mongo-node-store.js';
import { at, insert, nodeEventFor, nodeRecord, refresh, update } from '../contract/node-fixtures.js';
import { mongoUrlFor, requireServices, uniqueName } from '../support/services.js';

type Store = Awaited<ReturnType<typeof createMongoNodeStore>>;

/**
 * Status changes are majority-acknowledged and writes are retryable (docs/operations.md, "MongoDB replica set").
 * The test server is one node, not a replica set: this shows what each write asks for and that the server takes
 * it; a majority surviving a failover, and a write retried on a new primary, need a replica set and are not
 * tested here.
 */
describe('MongoDB write concern of status changes @int', function () {
  before(requireServices('mongodb'));
  let store: Store;
  /** The options of each bulk write the store sent, as mongoose hands them to the driver. */
  let bulkWrites: Array<{ ops: Array<Record<string, unknown>>; options: Record<string, unknown> }>;

  beforeEach(async () => {
    store = await createMongoNodeStore({ url: mongoUrlFor(uniqueName('wc')), historyPoints: 0, serverSelectionTimeoutMs: 2000 });
    await store.ensureIndexes();
    bulkWrites = [];
    store.connection.set('debug', (collection: string, method: string, ops: Array<Record<string, unknown>>, options: Record<string, unknown>) => {
      if (collection === 'nodes' && method === 'bulkWrite') bulkWrites.push({ ops, options });
    });
  });
  afterEach(async () => {
    await store.connection.dropDatabase().catch(() => undefined);
    await store.close();
  });

  it('asks for retryable writes on the connection', () => {
    expect(store.connection.getClient().options.retryWrites).to.equal(true);
  });

  it('writes a registration and a status change with w: majority, and the server applies them', async () => {
    const record = nodeRecord('wc-node', { status: 'ONLINE' });
    await store.write([insert(record)]);
    const offline = nodeEventFor('wc-node', 2);
    const result = await store.write([update('wc-node', record.rev, { status: 'OFFLINE', statusVersion: 2, statusChangedAt: at(180_000) }, [offline])]);

    expect(result.conflicts).to.deep.equal([]);
    expect((await store.get('wc-node'))?.status).to.equal('OFFLINE');
    // The server stops waiting for the majority at the command's deadline (8 s + 30 ms a statement).
    expect(bulkWrites.map((w) => w.options.writeConcern)).to.deep.equal([
      { w: 'majority', wtimeoutMS: 8030 },
      { w: 'majority', wtimeoutMS: 8030 },
    ]);
  });

  it("leaves a command of heartbeat refreshes alone to the URL's or the server's write concern", async () => {
    await store.write([insert(nodeRecord('wc-beat', { status: 'ONLINE', lastHeartbeat: at(0) }))]);
    bulkWrites = [];
    await store.write([refresh('wc-beat', { lastHeartbeat: at(5000) })]);

    expect(bulkWrites).to.have.length(1);
    expect(bulkWrites[0]!.options).to.not.have.property('writeConcern');
    expect((await store.get('wc-beat'))?.lastHeartbeat?.getTime()).to.equal(at(5000).getTime());
  });
});
