import { MongoClient } from 'mongodb';
import { openEnv, nodeIds, seedNodes } from './lib/env.js';
const env = await openEnv('probe');
const ids = nodeIds(250);
await seedNodes(env.store, ids, () => Date.now());
const client = await MongoClient.connect(env.config.mongoUrl);
const raw = client.db().collection<any>('nodes');
try {
for (const n of [10, 50]) {
  const mk = (k: number) => ({ updateOne: { filter: { _id: ids[k % 250] }, update: { $set: { hostname: 'x' + Date.now(), reregisterRequestedAt: null }, $max: { lastHeartbeat: new Date(), stats: { reportedAt: new Date(), cpuUsage: 1, memoryUsage: 2, diskUsage: 3, containerCount: 4 } } } } });
  let t = performance.now();
  await raw.bulkWrite(Array.from({ length: n }, (_, i) => mk(i)) as any, { ordered: false });
  console.log('distinct', n, ((performance.now() - t) / n).toFixed(1), 'ms/op');
  t = performance.now();
  await raw.bulkWrite(Array.from({ length: n }, (_, i) => mk(i % 5)) as any, { ordered: false });
  console.log('repeating 5 ids', n, ((performance.now() - t) / n).toFixed(1), 'ms/op');
}
} finally {
await client.close();
await env.cleanup();
}
