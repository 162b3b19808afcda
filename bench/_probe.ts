import { MongoClient } from 'mongodb';
const c = await MongoClient.connect('mongodb://127.0.0.1:27017/', { serverSelectionTimeoutMS: 3000 });
for (const d of process.argv.slice(2)) { const t = Date.now(); await c.db(d).dropDatabase(); console.log('dropped', d, Date.now() - t); }
await c.close();
