import { expect } from 'chai';
import type { IngestLiveness } from '../../shared/store/node-record.js';
import { ingestCoverage } from '../../services/sweeper/ingest-coverage.js';

const NOW = Date.UTC(2026, 0, 1, 12, 0, 0);
const STALE_MS = 15_000;

function record(instanceId: string, healthySinceAgoMs: number | null, lastSeenAgoMs: number): IngestLiveness {
  return { instanceId, healthySince: healthySinceAgoMs === null ? null : new Date(NOW - healthySinceAgoMs), lastSeenAt: new Date(NOW - lastSeenAgoMs) };
}

describe('ingestCoverage', () => {
  it('is not healthy without any ingest record', () => {
    expect(ingestCoverage([], NOW, STALE_MS)).to.deep.equal({ healthy: false, healthySince: null, seenUntil: null });
  });

  it('vouches for an ingest that refreshed its record recently: healthy since its healthySince, seen until its last refresh', () => {
    expect(ingestCoverage([record('a', 600_000, 2000)], NOW, STALE_MS)).to.deep.equal({ healthy: true, healthySince: NOW - 600_000, seenUntil: NOW - 2000 });
  });

  it('ignores a record older than the staleness limit (the ingest died without saying so)', () => {
    expect(ingestCoverage([record('a', 600_000, STALE_MS + 1)], NOW, STALE_MS).healthy).to.equal(false);
  });

  it('counts a record exactly at the staleness limit', () => {
    expect(ingestCoverage([record('a', 600_000, STALE_MS)], NOW, STALE_MS).healthy).to.equal(true);
  });

  it('ignores a fresh record that says the ingest cannot consume or store', () => {
    expect(ingestCoverage([record('a', null, 0)], NOW, STALE_MS).healthy).to.equal(false);
  });

  it('takes the earliest healthySince and the latest refresh of several healthy ingests', () => {
    const coverage = ingestCoverage([record('a', 60_000, 3000), record('b', 600_000, 4000), record('c', 10_000, 1000)], NOW, STALE_MS);

    expect(coverage).to.deep.equal({ healthy: true, healthySince: NOW - 600_000, seenUntil: NOW - 1000 });
  });

  it('lets neither a stale nor an unhealthy record stretch the coverage', () => {
    const coverage = ingestCoverage([record('recovering', 5000, 500), record('dead', 3_600_000, 60_000), record('stuck', null, 0)], NOW, STALE_MS);

    expect(coverage).to.deep.equal({ healthy: true, healthySince: NOW - 5000, seenUntil: NOW - 500 });
  });

  it('never vouches for time after now, whatever a record claims', () => {
    expect(ingestCoverage([record('clock-ahead', 60_000, -30_000)], NOW, STALE_MS).seenUntil).to.equal(NOW);
  });
});
