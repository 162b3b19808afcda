import { MongoClient } from 'mongodb';
import { openEnv, nodeIds, seedNodes } from './lib/env.js';
const env = await openEnv('probe');
const ids = nodeIds(250);
await seedNodes(env.store, ids, () => Date.now());
const client = await MongoClient.connect(env.config.mongoUrl, { monitorCommands: true });
client.on('commandStarted', (e) => { if (e.commandName === 'update') console.log('started update', e.command.updates?.length, JSON.stringify(e.command).length); });
client.on('commandSucceeded', (e) => { if (e.commandName === 'update') console.log('ok update', e.duration); });
client.on('commandFailed', (e) => console.log('failed', e.commandName, e.failure?.message));
const raw = client.db().collection<any>('nodes');
const t0 = performance.now();
setTimeout(async () => { console.log('still waiting after', performance.now() - t0); await client.close(true); await env.cleanup(); process.exit(0); }, 20000).unref();
const mk = (k: number) => ({ updateOne: { filter: { _id: ids[k % 250] }, update: { $set: { hostname: 'x' + Date.now(), reregisterRequestedAt: null }, $max: { lastHeartbeat: new Date() } } } });
for (const n of [60, 100]) {
  const t = performance.now();
  await raw.bulkWrite(Array.from({ length: n }, (_, i) => mk(i)) as any, { ordered: false });
  console.log('raw', n, ((performance.now() - t) / n).toFixed(1), 'ms/op');
}
await client.close();
await env.cleanup();
