import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import type { Context } from 'mocha';
import { chromium, type Browser, type Page } from 'playwright-core';
import { createMemoryLogger } from '../../shared/logger.js';
import type { NodeEvent } from '../../shared/messages/index.js';
import { expectedRate, fleetInterval } from '../../shared/domain/heartbeat-pace.js';
import { ROUTING } from '../../shared/topology.js';
import { startAllInOne, type AllInOne } from '../../services/all-in-one/all-in-one.js';
import { startOrchestrator, type Harness } from '../support/orchestrator.js';
import { requireServices } from '../support/services.js';
import { fleetHostname, fleetNodeId, fleetOffline, seedFleet } from '../dashboard/fleet-fixture.js';
import { openSse } from '../dashboard/sse-reader.js';

/** Debian's `chromium` package (.ci/run installs it); CHROMIUM_PATH points elsewhere. */
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const SCREENSHOTS = fileURLToPath(new URL('../../artifacts/screenshots/', import.meta.url));
const NODE_ID = 'browser-node';

/** The little of the DOM these page functions use (the project compiles without the DOM library). */
interface PageElement {
  textContent: string | null;
  getAttribute(name: string): string | null;
}
interface PageGlobals {
  document: { querySelector(selector: string): PageElement | null; querySelectorAll(selector: string): ArrayLike<PageElement> };
  performance: { getEntriesByName(name: string): Array<{ startTime: number }> };
  notReloaded?: boolean;
}

function requireChromium(this: Context): void {
  if (existsSync(CHROMIUM)) return;
  const message = `Chromium not found at ${CHROMIUM}: install it with \`apt-get install -y chromium\` (or set CHROMIUM_PATH)`;
  if (process.env.REQUIRE_SERVICES === '1') throw new Error(`${message} (REQUIRE_SERVICES=1)`);
  process.stderr.write(`\n  !!! SKIPPING ${this.test?.parent?.fullTitle() ?? 'browser tests'}: ${message}\n\n`);
  this.skip();
}

/** Waits until the element's text is `text`; the page updates itself, nothing here reloads it. */
async function waitForText(page: Page, testId: string, text: string, timeoutMs: number): Promise<void> {
  await page.waitForFunction(
    ([selector, expected]) => (globalThis as unknown as PageGlobals).document.querySelector(selector)?.textContent?.trim() === expected,
    [`[data-testid="${testId}"]`, text] as const,
    { timeout: timeoutMs },
  );
}

/** The live dashboard in a real browser: a node going OFFLINE shows on its row and in the feed without a reload. */
describe('dashboard in headless Chromium @int', function () {
  this.timeout(60_000);
  const log = createMemoryLogger('info');
  let app: AllInOne | undefined;
  let browser: Browser | undefined;

  before(requireChromium);
  before(async () => {
    app = await startAllInOne({
      env: {
        PORT: '0',
        STATE_FILE: 'none',
        AUTH_MODE: 'off',
        NODE_ID,
        // Generous next to the 1 s heartbeat, so that a busy machine does not time the node out on its own:
        // the test stops the agent, whose shutdown turns the node OFFLINE at once.
        TIMEOUT_MINUTES: '0.25',
        HEALTH_CHECK_INTERVAL: '500',
        HEARTBEAT_INTERVAL: '1',
        HEARTBEAT_TIMEOUT: '0.5',
        LOG_LEVEL: 'info',
      },
      log,
    });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
  });

  after(async () => {
    await browser?.close();
    await app?.stop();
  });

  it('shows the local node ONLINE, then OFFLINE with a node.offline event in the feed once its agent stops, without reloading', async () => {
    const page = await browser!.newPage({ viewport: { width: 1280, height: 800 } });
    const errors: string[] = [];
    page.on('pageerror', (error) => errors.push(error.message));
    await page.goto(`${app!.url}/`);

    await waitForText(page, `node-status-${NODE_ID}`, 'ONLINE', 15_000);
    await page.evaluate(() => Object.assign(globalThis, { notReloaded: true }));
    const shownBefore = await page.locator('[data-testid="event-item"]').evaluateAll((items) => items.map((item) => item.getAttribute('data-event-id')));

    await app!.agent.stop();

    await waitForText(page, `node-status-${NODE_ID}`, 'OFFLINE', 15_000);
    // The row changes with the event; the counts follow within a second.
    await waitForText(page, 'count-offline', '1', 5_000);
    const notShownBefore = shownBefore.map((id) => `:not([data-event-id="${id}"])`).join('');
    const offlineEvent = page.locator(`[data-testid="event-feed"] [data-testid="event-item"][data-type="node.offline"][data-node-id="${NODE_ID}"]${notShownBefore}`);
    await offlineEvent.waitFor({ state: 'visible', timeout: 15_000 });
    expect(await offlineEvent.textContent()).to.contain('agent announced shutdown');
    expect(await page.evaluate(() => (globalThis as unknown as PageGlobals).notReloaded), 'the page was not reloaded').to.equal(true);
    expect(errors, 'script errors on the page').to.deep.equal([]);

    mkdirSync(SCREENSHOTS, { recursive: true });
    await page.screenshot({ path: `${SCREENSHOTS}dashboard-node-offline.png`, fullPage: true });
    // The same page at a phone's width, for a look at the narrow layout.
    await page.setViewportSize({ width: 390, height: 844 });
    await page.screenshot({ path: `${SCREENSHOTS}dashboard-node-offline-phone.png`, fullPage: true });
    expect(existsSync(`${SCREENSHOTS}dashboard-node-offline.png`)).to.equal(true);
  });
});

/** The node ids of the table's rows, in order. */
function rowIds(page: Page): Promise<string[]> {
  return page.evaluate(() => Array.from((globalThis as unknown as PageGlobals).document.querySelectorAll('#node-rows tr')).map((tr) => tr.getAttribute('data-node-id') ?? ''));
}

/** Every <tr> in the document (header row included). */
function domRows(page: Page): Promise<number> {
  return page.evaluate(() => (globalThis as unknown as PageGlobals).document.querySelectorAll('tr').length);
}

/** Waits until the table shows exactly `ids` (the page applies a new query by opening a new stream). */
async function waitForRows(page: Page, ids: string[], timeoutMs = 15_000): Promise<void> {
  await page.waitForFunction(
    (expected) => {
      const shown = Array.from((globalThis as unknown as PageGlobals).document.querySelectorAll('#node-rows tr')).map((tr) => tr.getAttribute('data-node-id'));
      return shown.length === expected.length && shown.every((id, i) => id === expected[i]);
    },
    ids,
    { timeout: timeoutMs },
  );
}

/**
 * Waits until the api has read the fleet: a stream opened before that answers 503 after 10 s (on a busy
 * machine the test server's first read of 20,000 documents may run into the store's deadline and be retried).
 */
async function waitForFleetRead(url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const stream = await openSse(`${url}/api/stream?limit=1`);
    try {
      if (stream.status === 200) {
        await stream.next('snapshot', 10_000);
        return;
      }
    } finally {
      stream.close();
    }
    if (Date.now() > deadline) throw new Error(`the api had not read the fleet within ${timeoutMs / 1000} s (stream: HTTP ${stream.status})`);
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

const FLEET = 20_000;
const OFFLINE = Array.from({ length: FLEET }, (_, i) => i).filter(fleetOffline).length;
const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i);
const ids = (indexes: number[]) => indexes.map(fleetNodeId);
const format = (n: number) => n.toLocaleString('en-US');
const ONLINE = FLEET - OFFLINE;
const PACE = { intervalSeconds: fleetInterval(ONLINE, 100), fleetSize: ONLINE, onlineNodes: ONLINE };

/**
 * The dashboard at fleet size, on the real broker and store: 20,000 node documents inserted straight into
 * the store of the test's own database before the api starts (it reads the fleet once, then keeps its index
 * fresh from node.events and from re-reading the rows pages show).
 */
describe('dashboard in headless Chromium with a 20,000-node fleet @int', function () {
  this.timeout(60_000);
  let seeded: Harness | undefined;
  let h: Harness | undefined;
  let browser: Browser | undefined;
  let page: Page;
  const timings: string[] = [];

  before(requireChromium);
  before(requireServices('rabbitmq', 'mongodb', 'redis'));
  before(async function () {
    this.timeout(120_000);
    // A harness without api, ingest or sweeper owns the database (nobody marks the seeded nodes meanwhile) ...
    seeded = await startOrchestrator({ api: false, ingests: 0, sweepers: 0 });
    let t0 = performance.now();
    await seedFleet(seeded.store, FLEET);
    timings.push(`seeded ${format(FLEET)} nodes in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    // The pace the sweeper would have stored for this fleet at the default HEARTBEAT_MAX_RATE (no sweeper runs here).
    const counted = Date.now();
    await seeded.store.setFleetPace({ ...PACE, changedAt: counted, countedAt: counted });
    // ... and the api starts on it: it reads the fleet once; a stream's snapshot waits for that read.
    t0 = performance.now();
    h = await startOrchestrator({ shareWith: seeded, ingests: 0, sweepers: 0 });
    await waitForFleetRead(h.url, 90_000);
    timings.push(`api started and read the fleet in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
    page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  });

  after(async () => {
    if (timings.length) process.stdout.write(`      (${timings.join('; ')})\n`);
    await browser?.close();
    await h?.stop({ keepData: true });
    await seeded?.stop();
  });

  it('paints the first page quickly and holds one page of rows in the DOM, with the fleet counts', async () => {
    const errors: string[] = [];
    page.on('pageerror', (error) => errors.push(error.message));
    const t0 = Date.now();
    await page.goto(`${h!.url}/`);
    await page.locator('#node-rows tr').first().waitFor({ state: 'visible', timeout: 30_000 });
    const wallMs = Date.now() - t0;
    await page.waitForFunction(() => (globalThis as unknown as PageGlobals).performance.getEntriesByName('dashboard:first-rows').length > 0, undefined, { timeout: 5000 });
    const firstRowsMs = await page.evaluate(() => (globalThis as unknown as PageGlobals).performance.getEntriesByName('dashboard:first-rows')[0]!.startTime);
    // Printed, not asserted: this machine is shared (bench/dashboard.ts measures it).
    timings.push(`first paint ${firstRowsMs.toFixed(0)} ms from navigation start (${wallMs} ms around page.goto)`);

    await waitForRows(page, ids(range(0, 50)));
    await waitForText(page, 'count-total', format(FLEET), 5000);
    await waitForText(page, 'count-offline', format(OFFLINE), 5000);
    await waitForText(page, 'count-online', format(FLEET - OFFLINE), 5000);
    await waitForText(page, 'pager-range', `1–50 of ${format(FLEET)}`, 5000);
    expect(await domRows(page), '<tr> in the DOM').to.be.at.most(200);
    expect(errors, 'script errors on the page').to.deep.equal([]);
  });

  it("shows the fleet's heartbeat pace and each ONLINE row's deadline, by its own timeout or the default one", async () => {
    const rate = Math.round(expectedRate({ ...PACE, changedAt: 0, countedAt: 0 }));
    await waitForText(page, 'heartbeat-pace', `every ${PACE.intervalSeconds} s, fleet of ${format(ONLINE)}, ${format(rate)} beats/s`, 10_000);
    // fleet-00002 is ONLINE on the default timeout; fleet-00001 is given a timeout of its own, as a paced node is.
    const own = fleetNodeId(1);
    const before = (await h!.store.get(own))!;
    const ownTimeoutMs = 3 * PACE.intervalSeconds * 1000;
    const ownDeadline = new Date(before.lastHeartbeat!.getTime() + ownTimeoutMs);
    await h!.store.write([
      { kind: 'update', nodeId: own, expectedRev: before.rev, newRev: randomUUID(), set: { timeoutMs: ownTimeoutMs, expiresAt: ownDeadline }, pushOutbox: [] },
    ]);
    const onDefault = (await h!.store.get(fleetNodeId(2)))!;
    const expected = await page.evaluate(
      (isos) => isos.map((iso) => 'deadline ' + new Date(iso).toLocaleString()),
      [new Date(onDefault.lastHeartbeat!.getTime() + h!.config.timeoutMs).toISOString(), ownDeadline.toISOString()],
    );
    await waitForText(page, `node-deadline-${fleetNodeId(2)}`, expected[0]!, 5000);
    // The row is re-read within the refresh interval (5 s).
    await waitForText(page, `node-deadline-${own}`, expected[1]!, 12_000);
    // An OFFLINE row has no deadline.
    const offline = range(0, 50).find(fleetOffline)!;
    await waitForText(page, `node-deadline-${fleetNodeId(offline)}`, '', 5000);
  });

  it('finds a node by id and by host name, with the counts of the search', async () => {
    await page.fill('[data-testid="node-search"]', 'FLEET-12345');
    await waitForRows(page, ['fleet-12345']);
    await page.fill('[data-testid="node-search"]', fleetHostname(7777).split('.').slice(0, 2).join('.')); // host-7777.rack-27
    await waitForRows(page, ['fleet-07777']);
    // rack-10. holds every 50th node from 10: 400 nodes, every seventh of them OFFLINE.
    await page.fill('[data-testid="node-search"]', 'rack-10.');
    const rack10 = range(0, FLEET).filter((i) => i % 50 === 10);
    await waitForRows(page, ids(rack10.slice(0, 50)));
    await waitForText(page, 'pager-range', `1–50 of ${format(rack10.length)}`, 5000);
    const offline = rack10.filter(fleetOffline);
    await waitForText(page, 'filter-OFFLINE', `Offline${format(offline.length)}`, 5000);
    await waitForText(page, 'filter-ALL', `All${format(rack10.length)}`, 5000);
    expect(await page.evaluate(() => (globalThis as unknown as { location: { hash: string } }).location.hash)).to.equal('#q=rack-10.');
  });

  it('filters the search by status, and pages through the result', async () => {
    await page.click('[data-testid="filter-OFFLINE"]');
    const rack10Offline = range(0, FLEET).filter((i) => i % 50 === 10 && fleetOffline(i));
    await waitForRows(page, ids(rack10Offline.slice(0, 50)));
    expect(rack10Offline.length).to.be.greaterThan(50);
    await waitForText(page, 'pager-range', `1–50 of ${format(rack10Offline.length)} offline`, 5000);
    await page.click('[data-testid="page-next"]');
    await waitForRows(page, ids(rack10Offline.slice(50, 100)));
    await waitForText(page, 'pager-range', `51–${Math.min(100, rack10Offline.length)} of ${format(rack10Offline.length)} offline`, 5000);

    // The whole fleet's OFFLINE nodes, 100 a page, and the last of those pages.
    await page.fill('[data-testid="node-search"]', '');
    await page.selectOption('[data-testid="page-size"]', '100');
    const offline = range(0, FLEET).filter(fleetOffline);
    await waitForText(page, 'pager-range', `1–100 of ${format(offline.length)} offline`, 10_000);
    await waitForRows(page, ids(offline.slice(0, 100)));
    expect(await domRows(page), '<tr> in the DOM').to.be.at.most(200);
    // A link to a page: the view lives in the #fragment.
    const lastPage = Math.ceil(offline.length / 100);
    await page.evaluate((hash) => Object.assign((globalThis as unknown as { location: { hash: string } }).location, { hash }), `#status=OFFLINE&size=100&page=${lastPage}`);
    await waitForRows(page, ids(offline.slice((lastPage - 1) * 100)));
    await waitForText(page, 'pager-range', `${format((lastPage - 1) * 100 + 1)}–${format(offline.length)} of ${format(offline.length)} offline`, 5000);
    expect(await page.locator('[data-testid="page-next"]').isDisabled()).to.equal(true);
  });

  it('shows a status change of a row at once and its new stats within the refresh interval, then looks right', async () => {
    await page.click('[data-testid="filter-ALL"]');
    await page.selectOption('[data-testid="page-size"]', '50');
    await waitForRows(page, ids(range(0, 50)));

    // The sweeper's node.offline for fleet-00003 (stored first, then published, as the sweeper does).
    const nodeId = fleetNodeId(3);
    const current = (await h!.store.get(nodeId))!;
    const at = new Date();
    await h!.store.write([
      { kind: 'update', nodeId, expectedRev: current.rev, newRev: randomUUID(), set: { status: 'OFFLINE', statusVersion: 2, statusChangedAt: at }, pushOutbox: [] },
    ]);
    const event: NodeEvent = {
      eventId: randomUUID(),
      type: 'node.offline',
      version: 1,
      nodeId,
      status: 'OFFLINE',
      previousStatus: 'ONLINE',
      statusVersion: 2,
      lastHeartbeat: current.lastHeartbeat!.toISOString(),
      occurredAt: at.toISOString(),
      reason: 'timeout',
    };
    await h!.bus.publish(h!.names.exchanges.nodeEvents, ROUTING.nodeOffline, event, { messageId: event.eventId });
    await waitForText(page, `node-status-${nodeId}`, 'OFFLINE', 5000);
    await waitForText(page, 'count-offline', format(OFFLINE + 1), 5000);

    // A heartbeat with new stats for a node on the page: re-read within the refresh interval (5 s).
    const shown = fleetNodeId(5);
    const before = (await h!.store.get(shown))!;
    const beat = new Date();
    await h!.store.write([
      {
        kind: 'update',
        nodeId: shown,
        expectedRev: before.rev,
        newRev: randomUUID(),
        set: { lastHeartbeat: beat, stats: { cpuUsage: 97, memoryUsage: 88, diskUsage: 40, containerCount: 19, reportedAt: beat } },
        pushOutbox: [],
      },
    ]);
    await page.waitForFunction(
      (selector) => (globalThis as unknown as PageGlobals).document.querySelector(selector)?.textContent?.includes('97%') === true,
      `[data-testid="node-cpu-${shown}"]`,
      { timeout: 12_000 },
    );
    expect(await rowIds(page)).to.deep.equal(ids(range(0, 50)));
    expect(await domRows(page), '<tr> in the DOM').to.be.at.most(200);

    mkdirSync(SCREENSHOTS, { recursive: true });
    await page.screenshot({ path: `${SCREENSHOTS}dashboard-fleet-20k.png` });
    await page.fill('[data-testid="node-search"]', 'rack-10.');
    await waitForRows(
      page,
      ids(
        range(0, FLEET)
          .filter((i) => i % 50 === 10)
          .slice(0, 50),
      ),
    );
    await page.screenshot({ path: `${SCREENSHOTS}dashboard-fleet-20k-search.png` });
    expect(existsSync(`${SCREENSHOTS}dashboard-fleet-20k.png`)).to.equal(true);
  });
});
