import { expect } from 'chai';
import mongoose from 'mongoose';
import { nodeSchema, type NodeDocument } from '../../shared/store/mongo-node-store.js';
import { mongoUrlFor, requireServices, uniqueName } from '../support/services.js';

describe('the mongoose Node model on the MongoDB-compatible server @int', function () {
  before(requireServices('mongodb'));
  let connection: mongoose.Connection;
  let Nodes: mongoose.Model<NodeDocument>;
  before(async function () {
    if (this.currentTest?.isPending()) return;
    connection = await mongoose.createConnection(mongoUrlFor(uniqueName('model')), { serverSelectionTimeoutMS: 3000 }).asPromise();
    Nodes = connection.model<NodeDocument>('Node', nodeSchema);
    await Nodes.createCollection();
    await Nodes.createIndexes();
  });
  after(async () => {
    await connection?.dropDatabase().catch(() => undefined);
    await connection?.close();
  });

  it('upserts a node keyed by its nodeId and reads it back', async () => {
    const now = new Date();
    await Nodes.findOneAndUpdate(
      { _id: 'node-1' },
      {
        $set: { hostname: 'game-host-1', ipAddress: '192.168.1.10', maxServers: 20, status: 'ONLINE', lastHeartbeat: now, statusChangedAt: now, statusVersion: 1, rev: 'r1' },
        $setOnInsert: { registeredAt: now },
      },
      { upsert: true, new: true },
    ).exec();
    const node = await Nodes.findById('node-1').lean<NodeDocument>().exec();
    expect(node).to.deep.include({ _id: 'node-1', hostname: 'game-host-1', ipAddress: '192.168.1.10', maxServers: 20, status: 'ONLINE', statusVersion: 1 });
    expect(node!.registeredAt.getTime()).to.equal(now.getTime());
    expect(await Nodes.countDocuments({ status: 'ONLINE' })).to.equal(1);
  });

  it('refuses a document with a status outside ONLINE/OFFLINE', async () => {
    const invalid = new Nodes({
      _id: 'node-2',
      hostname: 'h',
      ipAddress: 'i',
      maxServers: 1,
      status: 'MAYBE',
      registeredAt: new Date(),
      statusChangedAt: new Date(),
      statusVersion: 1,
      rev: 'r',
    });
    const error = await invalid.validate().then(
      () => null,
      (e: Error) => e,
    );
    expect(error?.message).to.match(/status/);
  });

  it('drops unknown filter keys (strictQuery) instead of matching on them', async () => {
    const found = await Nodes.find({ _id: 'node-1', notAField: 'x' } as never)
      .lean()
      .exec();
    expect(found.map((n) => n._id)).to.deep.equal(['node-1']);
  });
});
