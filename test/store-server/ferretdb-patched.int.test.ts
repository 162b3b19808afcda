import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';
import mongoose from 'mongoose';
import { mongoUrlFor, requireServices, uniqueName } from '../support/services.js';

/**
 * The MongoDB-compatible server at MONGO_URL itself, on the operations stock FerretDB 1.24 (SQLite) gets wrong:
 * an update command of many statements, many concurrent update commands (both waited forever for a pooled
 * connection), lookups by _id that scanned the collection, range queries that decoded every document, and
 * secondary indexes that every write kept but no query read. tools/ferretdb patches them (see its README).
 * Against a real MongoDB the same tests pass at once. Every operation runs under a deadline and fails instead
 * of hanging; a timed-out client is closed, which lets the server drop the stuck commands.
 */

const { MongoClient } = mongoose.mongo;
type Client = mongoose.mongo.MongoClient;
type Db = mongoose.mongo.Db;

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '../..');
const PATCHES = ['sqlite-id-index-expression', 'sqlite-id-pushdown-all-filters', 'sqlite-prefilter-pushdown', 'sqlite-secondary-indexes-unbuilt', 'update-close-per-statement'];

/** `work(db)` on a client of its own, rejected after `ms` (the client is then closed at once). */
async function withDeadline<T>(url: string, ms: number, what: string, work: (db: Db) => Promise<T>): Promise<T> {
  const client: Client = new MongoClient(url, { serverSelectionTimeoutMS: 3000, maxPoolSize: 100 });
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([client.connect().then(() => work(client.db())), deadline]);
  } finally {
    clearTimeout(timer);
    await client.close(true).catch(() => undefined);
  }
}

const id = (prefix: string, i: number) => `${prefix}-${String(i).padStart(6, '0')}`;

type Doc = { _id: string; n: number; at: Date };

async function insertDocs(db: Db, collection: string, prefix: string, from: number, to: number): Promise<void> {
  for (let i = from; i < to; i += 1000) {
    const docs = Array.from({ length: Math.min(1000, to - i) }, (_, k) => ({ _id: id(prefix, i + k), n: 0, at: new Date() }));
    await db.collection<Doc>(collection).insertMany(docs, { ordered: false });
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

/** Median ms of an updateOne and of a findOne by _id over `samples` random documents of the first `count`. */
async function lookupCost(db: Db, collection: string, prefix: string, count: number, samples = 30): Promise<{ update: number; find: number }> {
  const coll = db.collection<Doc>(collection);
  const update: number[] = [];
  const find: number[] = [];
  for (let s = 0; s < samples; s++) {
    const key = id(prefix, Math.floor(Math.random() * count));
    let t0 = performance.now();
    const res = await coll.updateOne({ _id: key }, { $inc: { n: 1 } });
    update.push(performance.now() - t0);
    expect(res.matchedCount, `updateOne ${key}`).to.equal(1);
    t0 = performance.now();
    expect(await coll.findOne({ _id: key }), `findOne ${key}`).to.not.equal(null);
    find.push(performance.now() - t0);
  }
  return { update: median(update), find: median(find) };
}

describe('the MongoDB-compatible store server (patched embedded FerretDB) @int', function () {
  this.timeout(60_000);
  before(requireServices('mongodb'));

  const url = mongoUrlFor(uniqueName('ferret-patched'));
  let isFerret = false;

  before(async function () {
    if (this.currentTest?.isPending()) return;
    const info = await withDeadline(url, 10_000, 'buildInfo', (db) => db.admin().command({ buildInfo: 1 }));
    isFerret = 'ferretdbVersion' in info;
  });

  after(async () => {
    await withDeadline(url, 10_000, 'dropDatabase', (db) => db.dropDatabase()).catch(() => undefined);
  });

  it('applies one update command of 500 statements, within 10 s', async () => {
    await withDeadline(url, 10_000, 'insert 500 documents', (db) => insertDocs(db, 'statements', 'st', 0, 500));
    const t0 = Date.now();
    const res = await withDeadline(url, 10_000, 'update command of 500 statements', (db) =>
      db.command({ update: 'statements', updates: Array.from({ length: 500 }, (_, i) => ({ q: { _id: id('st', i) }, u: { $inc: { n: 1 } } })) }),
    );
    process.stdout.write(`      (500 statements in ${Date.now() - t0} ms)\n`);
    expect(res).to.include({ n: 500, nModified: 500 });
    const updated = await withDeadline(url, 10_000, 'count', (db) => db.collection('statements').countDocuments({ n: 1 }));
    expect(updated).to.equal(500);
  });

  it('applies 40 concurrent update commands of 10 statements each, within 10 s', async () => {
    await withDeadline(url, 10_000, 'insert 400 documents', (db) => insertDocs(db, 'concurrent', 'cc', 0, 400));
    const t0 = Date.now();
    const results = await withDeadline(url, 10_000, '40 concurrent update commands', (db) =>
      Promise.all(
        Array.from({ length: 40 }, (_, c) =>
          db.command({ update: 'concurrent', updates: Array.from({ length: 10 }, (_, i) => ({ q: { _id: id('cc', c * 10 + i) }, u: { $inc: { n: 1 } } })) }),
        ),
      ),
    );
    process.stdout.write(`      (40 x 10 statements in ${Date.now() - t0} ms)\n`);
    expect(results.map((r) => r.n)).to.deep.equal(Array(40).fill(10));
    const updated = await withDeadline(url, 10_000, 'count', (db) => db.collection('concurrent').countDocuments({ n: 1 }));
    expect(updated).to.equal(400);
  });

  it('answers a find by _id from the _id index, and updates and deletes by _id (cost printed at 1k and 20k documents)', async () => {
    await withDeadline(url, 30_000, 'lookups', async (db) => {
      await insertDocs(db, 'lookups', 'lk', 0, 1000);
      const small = await lookupCost(db, 'lookups', 'lk', 1000);
      await insertDocs(db, 'lookups', 'lk', 1000, 20_000);
      const large = await lookupCost(db, 'lookups', 'lk', 20_000);
      const ms = (v: number) => `${v.toFixed(1)} ms`;
      process.stdout.write(`      (updateOne ${ms(small.update)} at 1k, ${ms(large.update)} at 20k; findOne ${ms(small.find)} at 1k, ${ms(large.find)} at 20k)\n`);

      const lookups = db.collection<Doc>('lookups');
      const plan = await lookups.find({ _id: id('lk', 19_999) }).explain();
      if (isFerret) {
        // FerretDB (SQLite) explains with SQLite's EXPLAIN QUERY PLAN: SEARCH ... USING INDEX, or SCAN without it.
        const steps = (plan.queryPlanner as { Plan?: string[] } | undefined)?.Plan ?? [];
        expect(steps.join('\n'), 'query plan of a find by _id').to.match(/SEARCH .* USING INDEX/);
      } else {
        expect(JSON.stringify(plan.queryPlanner ?? plan), 'query plan of a find by _id').to.not.include('COLLSCAN');
      }

      const deleted = await lookups.deleteOne({ _id: id('lk', 12_345) });
      expect(deleted.deletedCount).to.equal(1);
      expect(await lookups.findOne({ _id: id('lk', 12_345) })).to.equal(null);
    });
  });

  it('answers an _id $in and an _id equality with other conditions from the _id index, with exactly the matching documents', async () => {
    await withDeadline(url, 30_000, 'pushdown', async (db) => {
      await insertDocs(db, 'pushdown', 'pd', 0, 2000);
      const coll = db.collection<Doc>('pushdown');
      await coll.updateMany({ _id: { $in: [id('pd', 7), id('pd', 8)] } }, { $set: { n: 1 } });
      const plans = [await coll.find({ _id: { $in: [id('pd', 7), id('pd', 1999)] } }).explain(), await coll.find({ _id: id('pd', 7), n: 1 }).explain()];
      for (const plan of plans) {
        if (isFerret) expect(((plan.queryPlanner as { Plan?: string[] } | undefined)?.Plan ?? []).join('\n')).to.match(/SEARCH .* USING INDEX/);
        else expect(JSON.stringify(plan.queryPlanner ?? plan)).to.not.include('COLLSCAN');
      }
      // The whole filter still applies to the rows the index selects.
      expect((await coll.find({ _id: { $in: [id('pd', 7), id('pd', 9), 'absent'] } }).toArray()).map((d) => d._id).sort()).to.deep.equal([id('pd', 7), id('pd', 9)]);
      expect((await coll.find({ _id: { $in: [id('pd', 7), id('pd', 9)] }, n: 1 }).toArray()).map((d) => d._id)).to.deep.equal([id('pd', 7)]);
      expect(await coll.findOne({ _id: id('pd', 9), n: 1 })).to.equal(null);
      const conditional = await coll.bulkWrite(
        [id('pd', 7), id('pd', 8), id('pd', 9)].map((_id) => ({ updateOne: { filter: { _id, n: 1 }, update: { $set: { n: 2 } } } })),
        { ordered: false },
      );
      expect(conditional.matchedCount, 'only the documents whose other conditions hold').to.equal(2);
    });
  });

  it('answers string equalities, date comparisons and their $or with exactly the matching documents, arrays and other types included', async () => {
    await withDeadline(url, 30_000, 'prefilter', async (db) => {
      const [old, cutoff, young] = [new Date(1_000_000), new Date(2_000_000), new Date(3_000_000)];
      const coll = db.collection<Record<string, unknown>>('prefilter');
      // Every kind of stored value a pushed-down comparison could wrongly leave out: arrays (MongoDB matches their
      // elements), a missing field, null, a number with a date's milliseconds, a string.
      await coll.insertMany([
        { _id: 'a', status: 'ONLINE', last: old },
        { _id: 'b', status: 'ONLINE', last: young },
        { _id: 'c', status: 'OFFLINE', last: old },
        { _id: 'd', status: ['ONLINE', 'X'], last: old },
        { _id: 'e', status: 'ONLINE', last: [young, old] },
        { _id: 'f', status: 'ONLINE' },
        { _id: 'g', status: 'ONLINE', last: null },
        { _id: 'h', status: 'ONLINE', last: old.getTime() },
        { _id: 'i', status: 'ONLINE', last: 'old' },
        { _id: 'j', status: 'ONLINE', expiresAt: old, last: young },
        { _id: 'k', status: 'ONLINE', expiresAt: null, last: old },
      ] as never);
      const ids = async (filter: Record<string, unknown>) => (await coll.find(filter, { sort: { _id: 1 } }).toArray()).map((d) => d._id);
      const expiry = { status: 'ONLINE', $or: [{ expiresAt: { $lt: cutoff } }, { expiresAt: null, last: { $lt: cutoff } }] };

      expect(await ids({ status: 'ONLINE', last: { $lt: cutoff } })).to.deep.equal(['a', 'd', 'e', 'k']);
      expect(await ids(expiry)).to.deep.equal(['a', 'd', 'e', 'j', 'k']);
      expect(await ids({ last: { $gt: old, $lte: young } })).to.deep.equal(['b', 'e', 'j']);
      expect(await ids({ last: old })).to.deep.equal(['a', 'c', 'd', 'e', 'k']);
      expect(await ids({ status: { $eq: 'OFFLINE' } })).to.deep.equal(['c']);
      expect(await ids({ $and: [{ status: 'ONLINE' }, { last: { $gte: young } }] })).to.deep.equal(['b', 'e', 'j']);
      expect(await coll.countDocuments(expiry)).to.equal(5);
      expect((await coll.updateMany({ status: 'ONLINE', last: { $lt: cutoff } }, { $set: { hit: true } })).modifiedCount).to.equal(4);
      expect(await ids({ hit: true })).to.deep.equal(['a', 'd', 'e', 'k']);

      // $exists, also on a path into an array of documents (the outbox drain's query).
      await coll.insertMany([
        { _id: 'o1', outbox: [] },
        { _id: 'o2', outbox: [{ eventId: 'x' }] },
        { _id: 'o3', outbox: [{ other: 1 }] },
        { _id: 'o4', outbox: { eventId: 'y' } },
        { _id: 'o5', outbox: null },
        { _id: 'o6', outbox: [{ other: 2 }, { eventId: 'w' }] },
      ] as never);
      expect(await ids({ 'outbox.eventId': { $exists: true } })).to.deep.equal(['o2', 'o4', 'o6']);
      expect(await ids({ outbox: { $exists: true }, _id: { $gte: 'o' } })).to.deep.equal(['o1', 'o2', 'o3', 'o4', 'o5', 'o6']);
      expect(await ids({ expiresAt: { $exists: true } })).to.deep.equal(['j', 'k']);

      if (isFerret) {
        // The rows that cannot match are left out in SQL, before the server decodes them.
        const where = async (filter: Record<string, unknown>) => String((((await coll.find(filter).explain()).queryPlanner ?? {}) as { Where?: string }).Where ?? '');
        expect(await where(expiry), 'WHERE clause of the expiry query').to.include('json_extract');
        expect(await where({ 'outbox.eventId': { $exists: true } }), 'WHERE clause of the outbox drain').to.include('json_array_length');
        expect(await where({ last: { $exists: false } }), 'WHERE clause of a filter it does not push down').to.equal('');
        expect(await where({ _id: 'a', status: 'ONLINE' }), 'WHERE clause of a filter the _id index serves').to.not.include('json_extract');
      }
    });
  });

  it('keeps declared indexes: lists and drops them, enforces a unique one, and builds no SQLite index for a non-unique one', async () => {
    await withDeadline(url, 30_000, 'indexes', async (db) => {
      const coll = db.collection<{ _id: string; status: string; host: string }>('indexes');
      await coll.insertMany([
        { _id: 'a', status: 'ONLINE', host: 'h1' },
        { _id: 'b', status: 'OFFLINE', host: 'h2' },
      ]);
      await coll.createIndex({ status: 1, last: 1 }, { name: 'status_last' });
      await coll.createIndex({ host: 1 }, { name: 'host_unique', unique: true });
      expect((await coll.listIndexes().toArray()).map((i) => i.name).sort()).to.deep.equal(['_id_', 'host_unique', 'status_last']);
      let refused: unknown = null;
      await coll.insertOne({ _id: 'c', status: 'ONLINE', host: 'h1' }).catch((error: unknown) => (refused = error));
      expect(String(refused), 'a duplicate of a unique index').to.match(/E11000|duplicate key/i);
      expect(await coll.updateOne({ _id: 'b', status: 'OFFLINE' }, { $set: { status: 'ONLINE' } })).to.include({ matchedCount: 1, modifiedCount: 1 });
      expect((await coll.find({ status: 'ONLINE' }, { sort: { _id: 1 } }).toArray()).map((d) => d._id)).to.deep.equal(['a', 'b']);
      if (isFerret) {
        // collStats sizes the SQLite indexes: the unique ones, not the non-unique one, which has none.
        const sizes = Object.keys(((await db.command({ collStats: 'indexes' })) as { indexSizes?: Record<string, number> }).indexSizes ?? {}).sort();
        expect(sizes, 'indexes with a SQLite index').to.deep.equal(['_id_', 'host_unique']);
      }
      await coll.dropIndex('status_last');
      expect((await coll.listIndexes().toArray()).map((i) => i.name).sort()).to.deep.equal(['_id_', 'host_unique']);
    });
  });

  it('names its patches when it is the embedded FerretDB (buildInfo and the `version` subcommand)', async function () {
    if (!isFerret) this.skip(); // a real MongoDB: nothing patched to report
    const info = await withDeadline(url, 10_000, 'buildInfo', (db) => db.admin().command({ buildInfo: 1 }));
    const reported = String((info.buildEnvironment as Record<string, unknown> | undefined)?.['ferretdb-embedded.patches'] ?? '');
    expect(reported.split(','), `buildInfo.buildEnvironment of the server at MONGO_URL (${info.ferretdbVersion}) should name the patches of tools/ferretdb`).to.include.members(
      PATCHES,
    );

    const bin = (await run('bash', [resolve(ROOT, 'scripts/ferretdb.sh'), 'path'], { cwd: ROOT })).stdout.trim();
    if (!existsSync(bin)) return; // built elsewhere: the server's own answer above is what counts
    const { stdout } = await run(bin, ['version'], { timeout: 10_000 });
    process.stdout.write(`      (${stdout.trim()})\n`);
    expect(stdout).to.match(/^FerretDB v\d+\.\d+\.\d+ \(SQLite\) patched: /);
    for (const name of PATCHES) expect(stdout).to.include(name);
  });
});
