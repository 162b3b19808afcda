import { existsSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import type { Context } from 'mocha';
import { chromium, type Browser, type Page } from 'playwright-core';
import { createMemoryLogger } from '../../shared/logger.js';
import { startAllInOne, type AllInOne } from '../../services/all-in-one/all-in-one.js';

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
interface PageGlobals {
  document: { querySelector(selector: string): { textContent: string | null } | null };
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

/** Issue 5, must show 3: the live dashboard in a real browser. */
describe('dashboard in headless Chromium', function () {
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
