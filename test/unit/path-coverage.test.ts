import { expect } from 'chai';
import { canaryArrived, offlineCutoff, pathCoverage, stalledAfterMs, type CanaryRecord } from '../../shared/domain/path-coverage.js';

const T0 = Date.UTC(2026, 0, 1, 12, 0, 0);
const INTERVAL = 1000;
const TIMEOUT = 30_000;

function sender(senderId: string, over: Partial<CanaryRecord> = {}): CanaryRecord {
  return { senderId, kind: 'sweeper', intervalMs: INTERVAL, firstAliveAt: new Date(T0 - 600_000), aliveAt: new Date(T0), sentAt: new Date(T0 - 500), pathSince: null, ...over };
}

describe('heartbeat path coverage', () => {
  describe('canary arrival', () => {
    const STALL = stalledAfterMs(TIMEOUT);
    const on = (sentAt: number, failedBefore = false) => ({ sentAt, arrivedAt: sentAt + 200, failedBefore });

    it('moves the send time forward and keeps the run while canaries make the trip in time', () => {
      expect(canaryArrived(sender('s', { sentAt: new Date(T0 - 60_000) }), on(T0), STALL)).to.deep.equal({ sentAt: new Date(T0), pathSince: null });
    });

    it('ignores a canary older than the newest that arrived', () => {
      expect(canaryArrived(sender('s', { sentAt: new Date(T0) }), on(T0 - 1000), STALL)).to.equal(null);
    });

    it('starts a new run, from its arrival, when the sender could not get earlier canaries onto the path', () => {
      expect(canaryArrived(sender('s', { sentAt: new Date(T0 - 3000) }), on(T0, true), STALL)).to.deep.equal({ sentAt: new Date(T0), pathSince: new Date(T0 + 200) });
      expect(canaryArrived(null, on(T0, true), STALL)!.pathSince).to.deep.equal(new Date(T0 + 200));
      expect(canaryArrived(null, on(T0), STALL)!.pathSince).to.equal(null);
    });

    it('starts a new run when a canary arrives stalled (an ingest stopped, a store refusing writes), and keeps it once they are in time again', () => {
      const stalled = canaryArrived(sender('s'), { sentAt: T0, arrivedAt: T0 + STALL + 1, failedBefore: false }, STALL)!;
      const next = canaryArrived({ sentAt: stalled.sentAt, pathSince: stalled.pathSince }, on(T0 + STALL + 500), STALL)!;

      expect(stalled.pathSince).to.deep.equal(new Date(T0 + STALL + 1));
      expect(next.pathSince).to.deep.equal(new Date(T0 + STALL + 1));
      expect(stalledAfterMs(1000), 'at least 2 s').to.equal(2000);
      expect(stalledAfterMs(180_000), 'a third of the timeout').to.equal(60_000);
    });
  });

  describe('coverage', () => {
    it('is proven up to the oldest of the running senders newest arrivals', () => {
      const coverage = pathCoverage([sender('a', { sentAt: new Date(T0 - 200) }), sender('b', { kind: 'api', sentAt: new Date(T0 - 900) })], T0);

      expect(coverage).to.deep.equal({ state: 'up', reason: null, coveredUntil: T0 - 900, since: null, senders: 2 });
      expect(offlineCutoff(coverage, TIMEOUT)).to.deep.equal({ cutoff: T0 - 900 - TIMEOUT });
    });

    it('leaves out a sender that stopped saying it runs, and one just started whose first canary is still on its way', () => {
      const coverage = pathCoverage(
        [
          sender('a'),
          sender('gone', { aliveAt: new Date(T0 - 5 * INTERVAL), sentAt: new Date(T0 - 60_000) }),
          sender('new', { firstAliveAt: new Date(T0 - 2 * INTERVAL), sentAt: null }),
        ],
        T0,
      );

      expect(coverage).to.include({ state: 'up', coveredUntil: T0 - 500, senders: 1 });
    });

    it('is down when a running sender gets nothing through, and marks only silence that lies within the time proven before', () => {
      const coverage = pathCoverage([sender('a'), sender('blocked', { kind: 'api', sentAt: new Date(T0 - 20_000) })], T0);
      const slow = pathCoverage([sender('a'), sender('slow', { sentAt: new Date(T0 - 5000) })], T0);

      expect(coverage.state).to.equal('down');
      expect(coverage.reason).to.match(/api blocked .* 20 s ago/);
      expect(offlineCutoff(coverage, TIMEOUT)).to.deep.equal({ cutoff: T0 - 20_000 - TIMEOUT });
      expect(slow.state, 'a few intervals behind is slow, not down').to.equal('up');
      expect(offlineCutoff(slow, TIMEOUT), 'but marks only up to what arrived').to.deep.equal({ cutoff: T0 - 5000 - TIMEOUT });
    });

    it('holds every node while no canary ever made the trip', () => {
      const coverage = pathCoverage([sender('a', { sentAt: null })], T0);

      expect(coverage).to.include({ state: 'down', coveredUntil: null });
      expect(offlineCutoff(coverage, TIMEOUT)).to.have.property('held', 'path-down');
      expect(offlineCutoff(pathCoverage([], T0), TIMEOUT)).to.have.property('held', 'path-down');
    });

    it('gives every node a full timeout after a break, then marks again', () => {
      const back = T0 - 10_000;
      const recovering = pathCoverage([sender('a', { sentAt: new Date(T0), pathSince: new Date(back) })], T0);
      const later = pathCoverage(
        [sender('a', { aliveAt: new Date(back + TIMEOUT + 1000), sentAt: new Date(back + TIMEOUT + 1000), pathSince: new Date(back) })],
        back + TIMEOUT + 1000,
      );

      expect(offlineCutoff(recovering, TIMEOUT)).to.have.property('held', 'path-recovering');
      expect(offlineCutoff(later, TIMEOUT)).to.deep.equal({ cutoff: back + 1000 });
    });
  });
});
