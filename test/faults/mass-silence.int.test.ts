import { expect } from 'chai';
import { sleep, startFleet } from '../support/fleet.js';
import { startOrchestrator, type Harness } from '../support/orchestrator.js';
import { eventually, requireServices } from '../support/services.js';

const TIMEOUT_MS = 1000;
const nodeIds = Array.from({ length: 10 }, (_, i) => `quiet-${i}`);

async function readyz(h: Harness): Promise<{ status: number; clusterDegraded: boolean }> {
  const res = await fetch(`${h.url}/readyz`);
  const body = (await res.json()) as { clusterDegraded: boolean };
  return { status: res.status, clusterDegraded: body.clusterDegraded };
}

async function degradedMetric(h: Harness): Promise<number> {
  const text = await (await fetch(`${h.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('orchestrator_cluster_degraded'));
  return Number(line?.split(' ').at(-1));
}

/**
 * The ingest keeps running while the agents go quiet: pausing the ingest would make the sweeper hold anyway
 * (its canaries stop arriving, docs/architecture.md), so it would not exercise the guard.
 */
describe('mass-silence guard @int', function () {
  this.timeout(30_000);
  before(requireServices('rabbitmq', 'mongodb', 'redis'));
  let h: Harness | undefined;
  let fleet: Awaited<ReturnType<typeof startFleet>> | undefined;
  afterEach(async () => {
    fleet?.stop();
    fleet = undefined;
    await h?.stop();
    h = undefined;
  });

  async function onlineFleet(holdMs: number) {
    h = await startOrchestrator({ env: { AUTH_MODE: 'off', MASS_SILENCE_GUARD: 'true', MASS_SILENCE_HOLD_MS: String(holdMs) } });
    const events = await h.subscribe(['node.offline', 'cluster.degraded']);
    fleet = await startFleet(h, nodeIds, { intervalMs: 200 });
    const harness = h;
    await eventually(async () => (await harness.store.list({ status: 'ONLINE' })).length === nodeIds.length, 10_000);
    // Past the ingest's start-up hold, so the sweeps that follow are real decisions.
    await sleep(TIMEOUT_MS + 500);
    return { h: harness, events, fleet: fleet };
  }

  it('marks none of 10 nodes OFFLINE when all go silent at once, publishes one cluster.degraded and reports it in /readyz and the metrics', async () => {
    const { h, events, fleet } = await onlineFleet(60_000);
    fleet.silence(nodeIds);
    await eventually(() => events.ofType('cluster.degraded').length >= 1, 5000);
    await sleep(3 * TIMEOUT_MS); // many sweeps while the silence lasts
    expect(events.ofType('node.offline'), 'no node.offline').to.have.length(0);
    expect(events.ofType('cluster.degraded'), 'exactly one cluster.degraded').to.have.length(1);
    expect(await h.store.list({ status: 'ONLINE' })).to.have.length(10);
    expect(await readyz(h)).to.deep.equal({ status: 200, clusterDegraded: true });
    expect(await degradedMetric(h)).to.equal(1);
  });

  it('marks the 2 silent nodes of 10 OFFLINE as usual, with no cluster.degraded', async () => {
    const { h, events, fleet } = await onlineFleet(60_000);
    const silent = nodeIds.slice(0, 2);
    fleet.silence(silent);
    await eventually(() => events.ofType('node.offline').length >= 2, TIMEOUT_MS + 4000);
    await sleep(1000);
    expect(
      events
        .ofType('node.offline')
        .map((e) => e.nodeId)
        .sort(),
    ).to.deep.equal(silent);
    expect(events.ofType('cluster.degraded')).to.have.length(0);
    expect((await readyz(h)).clusterDegraded).to.equal(false);
    expect(await degradedMetric(h)).to.equal(0);
  });

  it('marks them OFFLINE once the silence outlasts the hold period, and clears the degraded state', async () => {
    const holdMs = 2000;
    const { h, events, fleet } = await onlineFleet(holdMs);
    fleet.silence(nodeIds);
    await eventually(() => events.ofType('cluster.degraded').length === 1, 5000);
    const heldAt = Date.now();
    await eventually(() => events.ofType('node.offline').length === 10, holdMs + 5000);
    expect(Date.now() - heldAt, 'not before the hold period').to.be.at.least(holdMs - 300);
    expect(new Set(events.ofType('node.offline').map((e) => e.nodeId)).size).to.equal(10);
    expect(events.ofType('node.offline').every((e) => e.reason === 'timeout')).to.equal(true);
    await eventually(async () => !(await readyz(h)).clusterDegraded, 3000);
    expect(await degradedMetric(h)).to.equal(0);
    expect(events.ofType('cluster.degraded'), 'still one cluster.degraded').to.have.length(1);
  });
});
