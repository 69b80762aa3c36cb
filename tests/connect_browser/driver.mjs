// Drives Debian's Chromium (playwright-core, executablePath: no browser download) through
// @nangohq/frontend's auth() popup flows against a live freshtoken API.
//
// Input: one JSON object on argv[2]: {chromium, pageUrl, apiUrl, mockUrl, flows: [{name, token,
// key, mock: {...config switches}, options: {...auth() options}}]}. Output: one JSON line {results: {name: {ok|error, popups}}}.
// Mock provider switches are set over its HTTP control API before each flow.
import { chromium } from 'playwright-core';

const input = JSON.parse(process.argv[2]);
const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];

async function configureMock(changes) {
  const response = await fetch(`${input.mockUrl}/_mock/config`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(changes),
  });
  if (!response.ok) throw new Error(`mock config failed: ${response.status}`);
}

const browser = await chromium.launch({
  executablePath: input.chromium,
  headless: true,
  args: FLAGS,
  timeout: 30000,
});
const results = {};
try {
  const context = await browser.newContext();
  const page = await context.newPage();
  const popups = [];
  context.on('page', (p) => {
    const record = { urls: [] };
    popups.push(record);
    // Every document request of the popup, redirects included (paths only: no codes).
    p.on('request', (request) => {
      if (request.isNavigationRequest() && request.frame() === p.mainFrame()) {
        record.urls.push(new URL(request.url()).pathname);
      }
    });
    p.on('load', async () => {
      try {
        record.oauthError = await p.evaluate(() =>
          '__nangoOAuthError' in window ? window.__nangoOAuthError : undefined,
        );
      } catch {
        // the page closed itself (success) before it could be read
      }
    });
  });
  await page.goto(input.pageUrl);
  await page.waitForFunction(() => window.sdkReady === true, null, { timeout: 15000 });
  for (const flow of input.flows) {
    await configureMock({
      deny_consent: false,
      tamper_state: false,
      reissue_used_code: false,
      corrupt_code_challenge: false,
      ...(flow.mock || {}),
    });
    const before = popups.length;
    const outcome = await page.evaluate(
      ([host, token, key, options]) => window.connectWith(host, token, key, 20000, options),
      [input.apiUrl, flow.token, flow.key, flow.options || null],
    );
    // Give a failed flow's page a moment to load so its __nangoOAuthError can be read.
    await new Promise((r) => setTimeout(r, 300));
    results[flow.name] = { ...outcome, popups: popups.slice(before) };
  }
  await context.close();
} finally {
  await browser.close();
}
console.log(JSON.stringify({ results }));
