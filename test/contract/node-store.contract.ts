import { expect } from 'chai';
import type { ExpiryQuery, NodeRecord } from '../../shared/store/node-record.js';
import type { NodeStore } from '../../shared/store/node-store.js';
import { at, insert, nodeEventFor, nodeRecord, refresh, T0, update, type NodeLate } from './node-fixtures.js';

export interface NodeStoreFactory {
  /** Opens the adapter on an empty store of the suite's own. */
  open(): Promise<NodeStore>;
  /** Removes everything the suite created (database, files) and closes the store. */
  destroy(store: NodeStore): Promise<void>;
}

/** Asserts every Date-typed field of a record is a real Date (not a string or a number). */
function expectDates(record: NodeRecord): void {
  expect(record.registeredAt, 'registeredAt').to.be.instanceOf(Date);
  expect(record.statusChangedAt, 'statusChangedAt').to.be.instanceOf(Date);
  if (record.lastHeartbeat !== null) expect(record.lastHeartbeat, 'lastHeartbeat').to.be.instanceOf(Date);
  if (record.reregisterRequestedAt !== null) expect(record.reregisterRequestedAt, 'reregisterRequestedAt').to.be.instanceOf(Date);
  if (record.stats) expect(record.stats.reportedAt, 'stats.reportedAt').to.be.instanceOf(Date);
}

/**
 * The node store port's contract: what ingest, sweeper and api rely on (the in-memory store must behave like
 * the MongoDB one, or the all-in-one mode would show behaviour production does not have). Every adapter
 * runs it, so the embedded mode cannot behave differently from MongoDB.
 */
export function nodeStoreContract(adapter: string, factory: NodeStoreFactory): void {
  describe(`NodeStore contract: ${adapter}`, function () {
    let store: NodeStore;

    before(async () => {
      store = await factory.open();
    });
    beforeEach(async () => {
      await store.deleteAll();
    });
    after(async () => {
      if (store) await factory.destroy(store);
    });

    describe('reading', () => {
      it('returns an inserted node field for field, with every time as a Date', async () => {
        const record = nodeRecord('node-1', { credentialHash: 'abc', outbox: [nodeEventFor('node-1', 2)] });
        await store.write([insert(record)]);

        const found = await store.get('node-1');

        expect(found).to.deep.equal(record);
        expectDates(found!);
      });

      it('returns null for a node it does not hold', async () => {
        expect(await store.get('nobody')).to.equal(null);
      });

      it('keeps null times and null stats as null', async () => {
        await store.write([insert(nodeRecord('bare', { lastHeartbeat: null, stats: null, clockSkewMs: null, reregisterRequestedAt: null }))]);

        const found = await store.get('bare');

        expect(found).to.deep.include({ lastHeartbeat: null, stats: null, clockSkewMs: null, reregisterRequestedAt: null });
        expect((await store.histories(['bare'], at(0))).get('bare')).to.deep.equal([]);
      });

      it('returns the nodes it holds from a list of ids, keyed by id', async () => {
        await store.write([insert(nodeRecord('a')), insert(nodeRecord('b')), insert(nodeRecord('c'))]);

        const found = await store.getMany(['a', 'c', 'missing']);

        expect([...found.keys()].sort()).to.deep.equal(['a', 'c']);
        expect(found.get('c')!.nodeId).to.equal('c');
        for (const record of found.values()) expectDates(record);
        expect((await store.getMany([])).size).to.equal(0);
      });

      it('lists every node sorted by id in byte order, or only those of one status', async () => {
        // Mixed case and the three punctuation marks of the id alphabet: MongoDB sorts _id by bytes.
        const ids = ['b', 'a_1', 'B', 'a.1', 'a-1', 'A', 'a', 'node-10', 'node-9'];
        await store.write(ids.map((id, i) => insert(nodeRecord(id, { status: i % 2 ? 'OFFLINE' : 'ONLINE' }))));

        const all = await store.list();
        const offline = await store.list({ status: 'OFFLINE' });

        expect(all.map((n) => n.nodeId)).to.deep.equal(['A', 'B', 'a', 'a-1', 'a.1', 'a_1', 'b', 'node-10', 'node-9']);
        expect(offline.map((n) => n.nodeId)).to.deep.equal(['A', 'a.1', 'a_1', 'node-10']);
        for (const record of all) expectDates(record);
      });

      it('scans every node in pages of at most the page size, each once', async () => {
        const ids = Array.from({ length: 23 }, (_, i) => `scan-${i}`);
        await store.write(ids.map((id) => insert(nodeRecord(id))));

        const pages: string[][] = [];
        for await (const page of store.scan(10)) pages.push(page.map((n) => n.nodeId));

        expect(pages.map((p) => p.length)).to.deep.equal([10, 10, 3]);
        expect(pages.flat().sort()).to.deep.equal([...ids].sort());
      });

      it('hands out copies: changing a returned record changes nothing stored', async () => {
        await store.write([insert(nodeRecord('node-1'))]);
        const first = (await store.get('node-1'))!;

        first.status = 'OFFLINE';
        first.stats!.cpuUsage = 99;

        expect(await store.get('node-1')).to.deep.include({ status: 'ONLINE' });
        expect((await store.get('node-1'))!.stats!.cpuUsage).to.equal(12.5);
      });
    });

    describe('writing', () => {
      it('applies an update whose expectedRev is current, once, and gives the node the new rev', async () => {
        const record = nodeRecord('node-1');
        await store.write([insert(record)]);
        const change = update('node-1', record.rev, { status: 'OFFLINE', statusVersion: 2, statusChangedAt: at(5000) });

        const first = await store.write([change]);
        const again = await store.write([{ ...change, newRev: 'another' }]);

        expect(first.conflicts).to.deep.equal([]);
        expect(again.conflicts, 'the same expectedRev a second time').to.deep.equal(['node-1']);
        const stored = (await store.get('node-1'))!;
        expect(stored).to.deep.include({ status: 'OFFLINE', statusVersion: 2, rev: change.newRev });
        expect(stored.statusChangedAt).to.deep.equal(at(5000));
        expect(stored.hostname, 'fields not in the update are kept').to.equal('node-1.example');
      });

      it('refuses an update computed from a stale rev as a conflict and leaves the node as it was', async () => {
        const record = nodeRecord('node-1');
        await store.write([insert(record)]);
        await store.write([update('node-1', record.rev, { lastHeartbeat: at(10_000) })]);

        const result = await store.write([update('node-1', record.rev, { status: 'OFFLINE' })]);

        expect(result.conflicts).to.deep.equal(['node-1']);
        expect(await store.get('node-1')).to.deep.include({ status: 'ONLINE', lastHeartbeat: at(10_000) });
      });

      it('treats an update of a node it does not hold as a conflict', async () => {
        const result = await store.write([update('ghost', 'any', { status: 'OFFLINE' })]);

        expect(result.conflicts).to.deep.equal(['ghost']);
        expect(await store.get('ghost')).to.equal(null);
      });

      it('reports an insert over an existing id as a conflict without throwing, keeping the stored node', async () => {
        const original = nodeRecord('node-1', { hostname: 'first' });
        await store.write([insert(original)]);

        const result = await store.write([insert(nodeRecord('node-1', { hostname: 'second' }))]);

        expect(result.conflicts).to.deep.equal(['node-1']);
        expect(await store.get('node-1')).to.deep.equal(original);
      });

      it('applies the writes of a mixed batch that can apply and names only the ones that conflicted', async () => {
        const [a, b, d] = [nodeRecord('a'), nodeRecord('b'), nodeRecord('d')];
        await store.write([insert(a), insert(b), insert(d)]);
        const applyA = update('a', a.rev, { maxServers: 1 });
        const staleB = update('b', 'stale-rev', { maxServers: 2 });
        const insertC = nodeRecord('c');
        const duplicateD = nodeRecord('d', { hostname: 'duplicate' });

        const result = await store.write([applyA, staleB, insert(insertC), insert(duplicateD)]);

        expect(result.conflicts).to.have.members(['b', 'd']);
        expect(result.conflicts).to.have.length(2);
        expect(result.roundTrips).to.be.at.least(1);
        const stored = await store.getMany(['a', 'b', 'c', 'd']);
        expect(stored.get('a')).to.deep.include({ maxServers: 1, rev: applyA.newRev });
        expect(stored.get('b')).to.deep.include({ maxServers: 20, rev: b.rev });
        expect(stored.get('c')).to.deep.equal(insertC);
        expect(stored.get('d')).to.deep.include({ hostname: 'd.example', rev: d.rev });
      });

      it('applies a batch of thousands of writes (a backlog coalesced into one batch) and names the one that conflicted', async function () {
        this.timeout(60_000);
        const records = Array.from({ length: 2500 }, (_, i) => nodeRecord(`bulk-${String(i).padStart(4, '0')}`));
        expect((await store.write(records.map(insert))).conflicts).to.deep.equal([]);

        const changes = records.map((r, i) => update(r.nodeId, i === 1717 ? 'stale-rev' : r.rev, { maxServers: 7 }));
        const result = await store.write(changes);

        expect(result.conflicts).to.deep.equal(['bulk-1717']);
        expect((await store.getMany(['bulk-0000', 'bulk-2499', 'bulk-1717'])).get('bulk-2499')!.maxServers).to.equal(7);
        expect((await store.get('bulk-1717'))!.maxServers).to.equal(20);
      });

      it('answers an empty batch with no conflicts', async () => {
        expect((await store.write([])).conflicts).to.deep.equal([]);
      });

      it('keeps one history point per step, the first, and shows the last HISTORY_POINTS steps', async () => {
        // The suites open their stores with 120 points of 30 s (the defaults).
        const settings = { points: 120, resolutionMs: 30_000 };
        const record = nodeRecord('node-1');
        await store.write([insert(record)]);
        let rev = record.rev;
        const beats = settings.points + 10;
        for (let i = 0; i < beats; i++) {
          const t = at(i * settings.resolutionMs);
          const change = { ...update('node-1', rev, {}), historyPoint: { t, cpu: i, mem: 50 } };
          expect((await store.write([change])).conflicts).to.deep.equal([]);
          rev = change.newRev;
        }
        // A second point for a step that has one changes nothing, whether older or newer.
        for (const offset of [-1, 1]) {
          const t = at(20 * settings.resolutionMs + 1 + offset);
          await store.write([refresh('node-1', { historyPoint: { t, cpu: -1, mem: -1 } })]);
        }
        const until = at((beats - 1) * settings.resolutionMs);

        const stored = (await store.histories(['node-1'], until)).get('node-1')!;

        expect(stored).to.have.length(settings.points);
        expect(stored.map((p) => p.cpu)).to.deep.equal(Array.from({ length: settings.points }, (_, i) => i + 10));
        for (const point of stored) expect(point.t, 'history[].t').to.be.instanceOf(Date);
        // Later, the window moves on.
        const later = (await store.histories(['node-1'], at((beats + 59) * settings.resolutionMs))).get('node-1')!;
        expect(later.map((p) => p.cpu)).to.deep.equal(Array.from({ length: 60 }, (_, i) => i + 70));
      });

      it('keeps the history when an update does not name it, and stores no point of a write that did not apply', async () => {
        const record = nodeRecord('node-1');
        await store.write([insert(record)]);
        const point = { t: at(0), cpu: 10, mem: 40 };
        const first = { ...update('node-1', record.rev, {}), historyPoint: point };
        await store.write([first]);

        await store.write([update('node-1', first.newRev, { lastHeartbeat: at(1000) })]);
        const later = { t: at(60_000), cpu: 99, mem: 99 };
        const stale = { ...update('node-1', record.rev, {}), historyPoint: later };
        expect((await store.write([stale])).conflicts).to.deep.equal(['node-1']);
        await store.write([insert(nodeRecord('node-2', { status: 'OFFLINE' }))]);
        const refused = refresh('node-2', { historyPoint: later });
        expect((await store.write([refused])).conflicts).to.deep.equal(['node-2']);

        const histories = await store.histories(['node-1', 'node-2', 'nobody'], at(60_000));
        expect(histories.get('node-1')).to.deep.equal([point]);
        expect(histories.get('node-2')).to.deep.equal([]);
        expect(histories.get('nobody')).to.deep.equal([]);
      });

      it('forgets the history of a node it deletes', async () => {
        const record = nodeRecord('node-1');
        await store.write([insert(record), insert(nodeRecord('node-10'))]);
        const point = { t: at(0), cpu: 10, mem: 40 };
        await store.write([{ ...update('node-1', record.rev, {}), historyPoint: point }, refresh('node-10', { historyPoint: point })]);

        await store.delete('node-1');
        await store.write([insert(nodeRecord('node-1'))]);

        const histories = await store.histories(['node-1', 'node-10'], at(0));
        expect(histories.get('node-1')).to.deep.equal([]);
        expect(histories.get('node-10'), 'another node whose id starts the same').to.deep.equal([point]);
      });

      it('deletes one node, saying whether it was there', async () => {
        await store.write([insert(nodeRecord('a')), insert(nodeRecord('b'))]);

        expect(await store.delete('a')).to.equal(true);
        expect(await store.delete('a')).to.equal(false);
        expect((await store.list()).map((n) => n.nodeId)).to.deep.equal(['b']);
      });

      it('deletes every node, canary record and guard state at once', async () => {
        await store.write([insert(nodeRecord('a')), insert(nodeRecord('b'))]);
        await store.recordCanarySender({ senderId: 'sweeper-1', kind: 'sweeper', intervalMs: 1000, aliveAt: at(1000) });
        await store.setGuardState({ heldSince: at(0), eventId: 'e-1' });

        await store.deleteAll();

        expect(await store.list()).to.deep.equal([]);
        expect(await store.canaries()).to.deep.equal([]);
        expect(await store.guardState()).to.deep.equal({ heldSince: null, eventId: null });
      });
    });

    describe('heartbeat refresh (written without a read)', () => {
      it('moves lastHeartbeat and stats forward and keeps the rev, on an ONLINE node', async () => {
        const record = nodeRecord('node-1');
        await store.write([insert(record)]);

        const result = await store.write([refresh('node-1', { lastHeartbeat: at(5000), stats: { ...record.stats!, cpuUsage: 77, reportedAt: at(4000) } })]);
        const older = await store.write([refresh('node-1', { lastHeartbeat: at(3000), stats: { ...record.stats!, cpuUsage: 11, reportedAt: at(2000) } })]);

        const stored = (await store.get('node-1'))!;
        expect(result.conflicts).to.deep.equal([]);
        expect(older.conflicts, 'an older refresh applies, but moves nothing back').to.deep.equal([]);
        expect(stored.lastHeartbeat).to.deep.equal(at(5000));
        expect(stored.stats).to.deep.include({ cpuUsage: 77, reportedAt: at(4000) });
        expect(stored.rev).to.equal(record.rev);
        expectDates(stored);
      });

      it('does not apply to an OFFLINE node or a node it does not hold, and names both as conflicts', async () => {
        const down = nodeRecord('down', { status: 'OFFLINE', statusVersion: 2 });
        await store.write([insert(down), insert(nodeRecord('up'))]);

        const result = await store.write([refresh('down', { lastHeartbeat: at(9000) }), refresh('ghost'), refresh('up', { lastHeartbeat: at(9000) })]);

        expect(result.conflicts.sort()).to.deep.equal(['down', 'ghost']);
        expect(await store.get('down')).to.deep.equal(down);
        expect(await store.get('ghost')).to.equal(null);
        expect((await store.get('up'))!.lastHeartbeat).to.deep.equal(at(9000));
      });

      it('applies only while the stored clock baseline is at least the minimum, and lowers it to the offset given', async () => {
        await store.write([insert(nodeRecord('a', { clockSkewMs: 500 })), insert(nodeRecord('b', { clockSkewMs: 500 })), insert(nodeRecord('c', { clockSkewMs: null }))]);

        const result = await store.write([
          refresh('a', { clockSkewMs: 400, minClockSkewMs: 500 }),
          refresh('b', { clockSkewMs: 600, minClockSkewMs: 501, lastHeartbeat: at(9000) }),
          refresh('c', { clockSkewMs: 300, minClockSkewMs: -1_000_000 }),
        ]);

        expect(result.conflicts.sort(), 'b: a message sat in a backlog; c: no baseline yet').to.deep.equal(['b', 'c']);
        expect((await store.get('a'))!.clockSkewMs).to.equal(400);
        expect((await store.get('b'))!).to.deep.include({ clockSkewMs: 500, lastHeartbeat: at(0) });
        expect((await store.get('c'))!.clockSkewMs).to.equal(null);
        await store.write([refresh('a', { clockSkewMs: 450, minClockSkewMs: 0 })]);
        expect((await store.get('a'))!.clockSkewMs, 'the baseline only moves down').to.equal(400);
      });

      it('applies only while the node holds the credential named', async () => {
        await store.write([insert(nodeRecord('a', { credentialHash: 'sha256:right' })), insert(nodeRecord('b', { credentialHash: null }))]);

        const result = await store.write([
          refresh('a', { credentialHash: 'sha256:wrong', lastHeartbeat: at(9000) }),
          refresh('b', { credentialHash: 'sha256:right', lastHeartbeat: at(9000) }),
        ]);
        const right = await store.write([refresh('a', { credentialHash: 'sha256:right', lastHeartbeat: at(9000) })]);

        expect(result.conflicts.sort()).to.deep.equal(['a', 'b']);
        expect((await store.get('b'))!.lastHeartbeat).to.deep.equal(at(0));
        expect(right.conflicts).to.deep.equal([]);
        expect((await store.get('a'))!.lastHeartbeat).to.deep.equal(at(9000));
      });

      it('loses to a transition that lands first: the refresh of a node just marked OFFLINE is a conflict', async () => {
        const record = nodeRecord('node-1');
        await store.write([insert(record)]);
        const offline = { ...update('node-1', record.rev, { status: 'OFFLINE', statusVersion: 2 }), silentBefore: at(1) };
        await store.write([offline]);

        const result = await store.write([refresh('node-1', { lastHeartbeat: at(9000) })]);

        expect(result.conflicts).to.deep.equal(['node-1']);
        expect((await store.get('node-1'))!).to.deep.include({ status: 'OFFLINE', lastHeartbeat: at(0) });
      });
    });

    describe('late heartbeats (written without a read)', () => {
      const late = (nodeId: string, reportedAt: number, overrides: Partial<Omit<NodeLate, 'kind' | 'nodeId' | 'stats'>> = {}): NodeLate => ({
        kind: 'late',
        nodeId,
        stats: { ...nodeRecord(nodeId).stats!, cpuUsage: 66, reportedAt: at(reportedAt) },
        ...overrides,
      });

      it('stores newer stats of an ONLINE node whose baseline is below the bound, and nothing else', async () => {
        const record = nodeRecord('node-1', { clockSkewMs: 500 });
        await store.write([insert(record)]);

        const result = await store.write([late('node-1', 4000, { clockSkewBelowMs: 501 })]);
        const older = await store.write([late('node-1', 2000, { clockSkewBelowMs: 501 })]);

        expect(result.conflicts).to.deep.equal([]);
        expect(older.conflicts, 'older stats apply, but move nothing back').to.deep.equal([]);
        const stored = (await store.get('node-1'))!;
        expect(stored.stats).to.deep.include({ cpuUsage: 66, reportedAt: at(4000) });
        expect(stored).to.deep.include({ lastHeartbeat: record.lastHeartbeat, clockSkewMs: 500, rev: record.rev, status: 'ONLINE', statusVersion: 1 });
        expectDates(stored);
      });

      it('does not apply at or above the bound, to a node without a baseline, an OFFLINE node, one it does not hold or with another credential: conflicts', async () => {
        await store.write([
          insert(nodeRecord('on-time', { clockSkewMs: 500 })),
          insert(nodeRecord('no-baseline', { clockSkewMs: null })),
          insert(nodeRecord('down', { status: 'OFFLINE', statusVersion: 2, clockSkewMs: 0 })),
          insert(nodeRecord('other-key', { clockSkewMs: 0, credentialHash: 'sha256:right' })),
          insert(nodeRecord('http', { clockSkewMs: null })),
        ]);

        const result = await store.write([
          late('on-time', 4000, { clockSkewBelowMs: 500 }),
          late('no-baseline', 4000, { clockSkewBelowMs: 1_000_000 }),
          late('down', 4000, { clockSkewBelowMs: 1 }),
          late('ghost', 4000),
          late('other-key', 4000, { clockSkewBelowMs: 1, credentialHash: 'sha256:wrong' }),
          late('http', 4000),
        ]);

        expect(result.conflicts.sort()).to.deep.equal(['down', 'ghost', 'no-baseline', 'on-time', 'other-key']);
        for (const nodeId of ['on-time', 'no-baseline', 'down', 'other-key']) expect((await store.get(nodeId))!.stats!.cpuUsage, nodeId).to.not.equal(66);
        expect(await store.get('ghost')).to.equal(null);
        expect((await store.get('http'))!.stats!.cpuUsage, 'no bound (over HTTP): ONLINE is enough').to.equal(66);
      });
    });

    describe('outbox', () => {
      it('appends events pushed with updates, keeping the ones already there', async () => {
        const record = nodeRecord('node-1');
        const [e2, e3, e4] = [
          nodeEventFor('node-1', 2),
          nodeEventFor('node-1', 3, { type: 'node.online', status: 'ONLINE', previousStatus: 'OFFLINE', reason: 'heartbeat' }),
          nodeEventFor('node-1', 4),
        ];
        await store.write([insert(record)]);
        const first = update('node-1', record.rev, { statusVersion: 2 }, [e2]);
        await store.write([first]);

        await store.write([update('node-1', first.newRev, { statusVersion: 4 }, [e3, e4])]);

        expect((await store.get('node-1'))!.outbox).to.deep.equal([e2, e3, e4]);
      });

      it('does not push the events of an update that conflicted', async () => {
        const record = nodeRecord('node-1');
        await store.write([insert(record)]);

        await store.write([update('node-1', 'stale', { statusVersion: 2 }, [nodeEventFor('node-1', 2)])]);

        expect((await store.get('node-1'))!.outbox).to.deep.equal([]);
      });

      it('removes published events exactly as stored and keeps the others, without changing the rev', async () => {
        const [e2, e3] = [nodeEventFor('node-1', 2), nodeEventFor('node-1', 3, { previousStatus: null, lastHeartbeat: null })];
        const record = nodeRecord('node-1', { outbox: [e2, e3] });
        await store.write([insert(record)]);
        const asRead = (await store.get('node-1'))!.outbox;

        await store.removeFromOutbox([{ nodeId: 'node-1', events: [asRead[1]!] }]);
        const afterFirst = (await store.get('node-1'))!;
        await store.removeFromOutbox([{ nodeId: 'node-1', events: [e2] }]);
        const afterSecond = (await store.get('node-1'))!;

        expect(afterFirst.outbox).to.deep.equal([e2]);
        expect(afterSecond.outbox).to.deep.equal([]);
        expect(afterSecond.rev, 'a transition computed before the removal must still apply').to.equal(record.rev);
      });

      it('ignores removal of events that are not in the outbox, or of a node it does not hold', async () => {
        const e2 = nodeEventFor('node-1', 2);
        await store.write([insert(nodeRecord('node-1', { outbox: [e2] }))]);

        await store.removeFromOutbox([{ nodeId: 'node-1', events: [nodeEventFor('node-1', 2)] }]);
        await store.removeFromOutbox([{ nodeId: 'ghost', events: [e2] }]);
        await store.removeFromOutbox([{ nodeId: 'node-1', events: [] }]);
        await store.removeFromOutbox([]);

        expect((await store.get('node-1'))!.outbox).to.deep.equal([e2]);
      });

      it('removes the published events of many nodes in one call, keeping the others of each node', async () => {
        const [a2, a3, b2, c2] = [nodeEventFor('a', 2), nodeEventFor('a', 3), nodeEventFor('b', 2), nodeEventFor('c', 2)];
        const [a, b, c] = [nodeRecord('a', { outbox: [a2, a3] }), nodeRecord('b', { outbox: [b2] }), nodeRecord('c', { outbox: [c2] })];
        await store.write([insert(a), insert(b), insert(c)]);

        await store.removeFromOutbox([
          { nodeId: 'a', events: [a2] },
          { nodeId: 'b', events: [b2] },
          { nodeId: 'ghost', events: [c2] },
        ]);

        const stored = await store.getMany(['a', 'b', 'c']);
        expect(stored.get('a')).to.deep.include({ outbox: [a3], rev: a.rev });
        expect(stored.get('b')).to.deep.include({ outbox: [], rev: b.rev });
        expect(stored.get('c')!.outbox).to.deep.equal([c2]);
        expect((await store.findWithOutbox(10)).map((n) => n.nodeId).sort(), 'an emptied outbox is not pending').to.deep.equal(['a', 'c']);
      });

      it('finds only the nodes with unpublished events, at most the limit', async () => {
        await store.write([
          insert(nodeRecord('a', { outbox: [nodeEventFor('a', 2)] })),
          insert(nodeRecord('b')),
          insert(nodeRecord('c', { outbox: [nodeEventFor('c', 2), nodeEventFor('c', 3)] })),
          insert(nodeRecord('d', { outbox: [nodeEventFor('d', 2)] })),
        ]);

        const all = await store.findWithOutbox(10);
        const limited = await store.findWithOutbox(2);

        expect(all.map((n) => n.nodeId).sort()).to.deep.equal(['a', 'c', 'd']);
        expect(all.find((n) => n.nodeId === 'c')!.outbox).to.have.length(2);
        expect(limited).to.have.length(2);
        for (const record of all) expectDates(record);
      });
    });

    describe('expiry queries', () => {
      /** Nodes without their own timeout, judged by lastHeartbeat alone: silent since before `before` (default timeout 0). */
      const silentSince = (before: Date): ExpiryQuery => ({ coveredUntil: before, defaultTimeoutMs: 0 });
      const cutoff = silentSince(at(0));
      beforeEach(async () => {
        await store.write([
          insert(nodeRecord('fresh', { lastHeartbeat: at(5000) })),
          insert(nodeRecord('at-cutoff', { lastHeartbeat: at(0) })),
          insert(nodeRecord('old', { lastHeartbeat: at(-60_000) })),
          insert(nodeRecord('oldest', { lastHeartbeat: at(-600_000) })),
          insert(nodeRecord('older', { lastHeartbeat: at(-120_000) })),
          insert(nodeRecord('offline-old', { status: 'OFFLINE', lastHeartbeat: at(-900_000) })),
          insert(nodeRecord('never', { lastHeartbeat: null })),
        ]);
      });

      /** Every page of findExpired, as node ids. */
      async function expiredPages(before: Date, pageSize: number): Promise<string[][]> {
        const pages: string[][] = [];
        for await (const page of store.findExpired(silentSince(before), pageSize)) pages.push(page.map((n) => n.nodeId));
        return pages;
      }

      it('finds the ONLINE nodes whose last heartbeat is before the cutoff, oldest first', async () => {
        const expired: NodeRecord[] = [];
        for await (const page of store.findExpired(cutoff, 100)) expired.push(...page);

        expect(expired.map((n) => n.nodeId)).to.deep.equal(['oldest', 'older', 'old']);
        for (const record of expired) expectDates(record);
      });

      it('hands them out in pages of at most the page size, oldest first, and none when there are none', async () => {
        expect(await expiredPages(at(0), 2)).to.deep.equal([['oldest', 'older'], ['old']]);
        expect(await expiredPages(at(0), 3)).to.deep.equal([['oldest', 'older', 'old']]);
        expect(await expiredPages(at(0), 1)).to.deep.equal([['oldest'], ['older'], ['old']]);
        expect(await expiredPages(at(-10_000_000), 2)).to.deep.equal([]);
      });

      it('stops reading when the loop stops, and a later query sees the nodes marked meanwhile', async () => {
        const first: string[] = [];
        for await (const page of store.findExpired(cutoff, 2)) {
          first.push(...page.map((n) => n.nodeId));
          break;
        }
        const oldest = (await store.get('oldest'))!;
        await store.write([update('oldest', oldest.rev, { status: 'OFFLINE', statusVersion: 2 })]);

        expect(first).to.deep.equal(['oldest', 'older']);
        expect(await expiredPages(at(0), 2)).to.deep.equal([['older', 'old']]);
      });

      it('counts the same nodes it would find', async () => {
        expect(await store.countExpired(cutoff)).to.equal(3);
        expect(await store.countExpired(silentSince(at(-100_000)))).to.equal(2);
        expect(await store.countExpired(silentSince(at(-10_000_000)))).to.equal(0);
      });

      it('counts nodes by status', async () => {
        expect(await store.countByStatus()).to.deep.equal({ ONLINE: 6, OFFLINE: 1 });
      });

      it('counts the ONLINE nodes, or only up to a limit', async () => {
        expect(await store.countOnline()).to.equal(6);
        expect(await store.countOnline(4)).to.equal(4);
        expect(await store.countOnline(6)).to.equal(6);
        expect(await store.countOnline(100)).to.equal(6);
      });

      it('judges a node without its own timeout by its last heartbeat plus the default timeout', async () => {
        const query: ExpiryQuery = { coveredUntil: at(0), defaultTimeoutMs: 100_000 };

        const found: string[] = [];
        for await (const page of store.findExpired(query, 10)) found.push(...page.map((n) => n.nodeId));

        expect(found).to.deep.equal(['oldest', 'older']);
        expect(await store.countExpired(query)).to.equal(2);
      });
    });

    describe('per-node deadlines', () => {
      const TIMEOUT = 30_000;
      /** A node with its own timeout, its deadline stored as a heartbeat write stores it. */
      const ownTimeout = (nodeId: string, lastHeartbeat: Date, timeoutMs: number, overrides: Partial<NodeRecord> = {}) =>
        nodeRecord(nodeId, {
          lastHeartbeat,
          declaredIntervalMs: 1000,
          intervalMs: timeoutMs / 3,
          timeoutMs,
          expiresAt: new Date(lastHeartbeat.getTime() + timeoutMs),
          ...overrides,
        });
      async function expiredIds(query: ExpiryQuery): Promise<string[]> {
        const found: string[] = [];
        for await (const page of store.findExpired(query, 2)) found.push(...page.map((n) => n.nodeId));
        return found;
      }

      it('finds a node with its own timeout by its own deadline, and one without by the default, in one query', async () => {
        await store.write([
          // Silent 60 s: past the default timeout, not past its own 120 s.
          insert(ownTimeout('long-alive', at(-60_000), 120_000)),
          insert(ownTimeout('long-expired', at(-130_000), 120_000)),
          insert(nodeRecord('default-expired', { lastHeartbeat: at(-60_000) })),
          insert(nodeRecord('default-alive', { lastHeartbeat: at(-10_000) })),
        ]);
        const query: ExpiryQuery = { coveredUntil: at(0), defaultTimeoutMs: TIMEOUT };

        expect(await expiredIds(query)).to.deep.equal(['long-expired', 'default-expired']);
        expect(await store.countExpired(query)).to.equal(2);
      });

      it('leaves out nodes whose own timeout is longer than the query allows (a full timeout after a break of the path)', async () => {
        await store.write([insert(ownTimeout('long', at(-130_000), 120_000)), insert(ownTimeout('short', at(-130_000), 60_000))]);

        expect(await expiredIds({ coveredUntil: at(0), defaultTimeoutMs: TIMEOUT, maxTimeoutMs: 90_000 })).to.deep.equal(['short']);
        expect(await store.countExpired({ coveredUntil: at(0), defaultTimeoutMs: TIMEOUT, maxTimeoutMs: 120_000 })).to.equal(2);
      });

      it('moves the deadline forward with each refresh of a node that holds the timeout the refresh assumes', async () => {
        await store.write([insert(ownTimeout('paced', at(-100_000), 120_000))]);
        const pace = { intervalMs: 40_000, timeoutMs: 120_000 };

        const { conflicts } = await store.write([refresh('paced', { lastHeartbeat: at(-10_000), pace })]);

        expect(conflicts).to.deep.equal([]);
        const stored = (await store.get('paced'))!;
        expect(stored.expiresAt).to.deep.equal(at(110_000));
        expect(stored.timeoutMs).to.equal(120_000);
        expect(await expiredIds({ coveredUntil: at(100_000), defaultTimeoutMs: TIMEOUT })).to.deep.equal([]);
      });

      it('refuses, as a conflict, a refresh that assumes another pace or meets a pending shorter timeout', async () => {
        await store.write([insert(ownTimeout('paced', at(0), 120_000)), insert(ownTimeout('pending', at(0), 120_000, { pendingTimeoutMs: 60_000 })), insert(nodeRecord('legacy'))]);

        const { conflicts } = await store.write([
          refresh('paced', { lastHeartbeat: at(1000) }),
          refresh('pending', { lastHeartbeat: at(1000), pace: { intervalMs: 40_000, timeoutMs: 120_000 } }),
          refresh('legacy', { lastHeartbeat: at(1000), pace: { intervalMs: 40_000, timeoutMs: 120_000 } }),
        ]);

        expect([...conflicts].sort()).to.deep.equal(['legacy', 'paced', 'pending']);
        expect((await store.get('paced'))!.lastHeartbeat).to.deep.equal(at(0));
      });

      it('applies a refresh that assumes no pace to a node without one, and stores no deadline for it', async () => {
        await store.write([insert(nodeRecord('legacy'))]);

        const { conflicts } = await store.write([refresh('legacy', { lastHeartbeat: at(5000), pace: { intervalMs: null, timeoutMs: null } })]);

        expect(conflicts).to.deep.equal([]);
        const stored = (await store.get('legacy'))!;
        expect(stored.lastHeartbeat).to.deep.equal(at(5000));
        expect(stored.expiresAt ?? null).to.equal(null);
      });

      it('moves a deadline only forward on a guarded update, and clears it when the node goes back to the default timeout', async () => {
        await store.write([insert(ownTimeout('paced', at(0), 120_000))]);
        let node = (await store.get('paced'))!;
        // Computed from an older read: the deadline stays where a later heartbeat put it.
        await store.write([update('paced', node.rev, { timeoutMs: 60_000, expiresAt: at(60_000) })]);
        node = (await store.get('paced'))!;
        expect(node.expiresAt).to.deep.equal(at(120_000));
        expect(node.timeoutMs).to.equal(60_000);

        await store.write([update('paced', node.rev, { declaredIntervalMs: null, intervalMs: null, timeoutMs: null, expiresAt: null })]);

        const legacy = (await store.get('paced'))!;
        expect(legacy.expiresAt ?? null).to.equal(null);
        expect(legacy.timeoutMs ?? null).to.equal(null);
        expect(await expiredIds({ coveredUntil: at(40_000), defaultTimeoutMs: TIMEOUT })).to.deep.equal(['paced']);
      });

      it('marks a node with its own timeout only while it is still silent since before its own cutoff', async () => {
        await store.write([insert(ownTimeout('paced', at(-130_000), 120_000))]);
        const node = (await store.get('paced'))!;
        await store.write([refresh('paced', { lastHeartbeat: at(-1000), pace: { intervalMs: 40_000, timeoutMs: 120_000 } })]);

        const { conflicts } = await store.write([{ ...update('paced', node.rev, { status: 'OFFLINE', statusVersion: 2 }), silentBefore: at(-120_000) }]);

        expect(conflicts).to.deep.equal(['paced']);
        expect((await store.get('paced'))!.status).to.equal('ONLINE');
      });
    });

    describe('orchestrator state', () => {
      it('records a canary sender, keeping when it first ran, and the arrivals of its canaries, moving only forward', async () => {
        await store.recordCanarySender({ senderId: 'sweeper-1', kind: 'sweeper', intervalMs: 1000, aliveAt: at(1000) });
        await store.recordCanarySender({ senderId: 'sweeper-1', kind: 'sweeper', intervalMs: 1000, aliveAt: at(2000) });
        await store.recordCanaryArrival({ senderId: 'sweeper-1', kind: 'sweeper', intervalMs: 1000, sentAt: at(1900), pathSince: at(1900) });
        await store.recordCanaryArrival({ senderId: 'sweeper-1', kind: 'sweeper', intervalMs: 1000, sentAt: at(1500), pathSince: at(1900) });

        const [record] = await store.canaries();

        expect(record).to.deep.equal({
          senderId: 'sweeper-1',
          kind: 'sweeper',
          intervalMs: 1000,
          firstAliveAt: at(1000),
          aliveAt: at(2000),
          sentAt: at(1900),
          pathSince: at(1900),
        });
        expect(record!.aliveAt).to.be.instanceOf(Date);
      });

      it('creates the record of a sender from its first arrival, lists every sender, and removes one', async () => {
        await store.recordCanaryArrival({ senderId: 'api-1', kind: 'api', intervalMs: 500, sentAt: at(3000), pathSince: null });
        await store.recordCanarySender({ senderId: 'sweeper-1', kind: 'sweeper', intervalMs: 1000, aliveAt: at(1000) });

        const listed = (await store.canaries()).sort((a, b) => a.senderId.localeCompare(b.senderId));

        expect(listed.map((r) => [r.senderId, r.kind, r.sentAt])).to.deep.equal([
          ['api-1', 'api', at(3000)],
          ['sweeper-1', 'sweeper', null],
        ]);
        await store.removeCanarySender('api-1');
        expect((await store.canaries()).map((r) => r.senderId)).to.deep.equal(['sweeper-1']);
      });

      it('keeps canary records apart from the nodes', async () => {
        await store.recordCanarySender({ senderId: 'sweeper-1', kind: 'sweeper', intervalMs: 1000, aliveAt: at(1000) });

        expect(await store.list()).to.deep.equal([]);
        expect(await store.countByStatus()).to.deep.equal({ ONLINE: 0, OFFLINE: 0 });
      });

      it('starts with an empty mass-silence guard, then keeps and clears the state it is given', async () => {
        expect(await store.guardState()).to.deep.equal({ heldSince: null, eventId: null });

        await store.setGuardState({ heldSince: at(42), eventId: 'e-1' });
        const held = await store.guardState();
        await store.setGuardState({ heldSince: null, eventId: null });

        expect(held).to.deep.equal({ heldSince: at(42), eventId: 'e-1' });
        expect(held.heldSince).to.be.instanceOf(Date);
        expect(await store.guardState()).to.deep.equal({ heldSince: null, eventId: null });
      });

      it('gives the sweep lease to one holder at a time: renewable by it, free again once released or expired', async () => {
        expect(await store.takeSweepLease('sweeper-a', at(0), at(5000)), 'free').to.equal(true);
        expect(await store.takeSweepLease('sweeper-b', at(1000), at(6000)), 'held by a').to.equal(false);
        expect(await store.takeSweepLease('sweeper-a', at(2000), at(7000)), 'renewed by its holder').to.equal(true);
        expect(await store.takeSweepLease('sweeper-b', at(6999), at(9000)), 'not yet expired').to.equal(false);
        expect(await store.takeSweepLease('sweeper-b', at(7000), at(12_000)), 'expired').to.equal(true);

        await store.releaseSweepLease('sweeper-a');
        expect(await store.takeSweepLease('sweeper-a', at(8000), at(13_000)), 'a release by another changes nothing').to.equal(false);
        await store.releaseSweepLease('sweeper-b');
        expect(await store.takeSweepLease('sweeper-a', at(8000), at(13_000)), 'released').to.equal(true);
        expect(await store.list(), 'apart from the nodes').to.deep.equal([]);
      });

      it('gives the sweep lease to exactly one of many holders asking at once', async () => {
        const taken = await Promise.all(['a', 'b', 'c', 'd', 'e'].map((h) => store.takeSweepLease(`sweeper-${h}`, at(0), at(5000))));
        expect(taken.filter(Boolean)).to.have.length(1);
      });

      it('starts with no fleet pace, then keeps the one it is given', async () => {
        expect(await store.fleetPace()).to.equal(null);
        const pace = { intervalSeconds: 8, fleetSize: 40, changedAt: T0, onlineNodes: 41, countedAt: T0 + 60_000 };

        await store.setFleetPace(pace);
        await store.setFleetPace({ ...pace, onlineNodes: 42 });

        expect(await store.fleetPace()).to.deep.equal({ ...pace, onlineNodes: 42 });
        expect(await store.list(), 'apart from the nodes').to.deep.equal([]);
        await store.deleteAll();
        expect(await store.fleetPace()).to.equal(null);
      });

      it('answers a ping while it is reachable', async () => {
        await store.ping();
      });
    });
  });
}
