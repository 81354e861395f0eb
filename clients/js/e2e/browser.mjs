// Runs the end-to-end scenario in headless Chromium: the harness serves a
// page that imports the client bundle and scenario.mjs as ES modules and
// runs them against the local stack; this script waits for its outcome.
// Started by e2e_test.go with E2E_API and CHROMIUM. Prints one JSON line
// of figures; exits non-zero on the first failed check.
import { chromium } from 'playwright-core';

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
});
let code = 0;
try {
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => console.error('page:', m.text()));
  await page.goto(process.env.E2E_API + '/');
  await page.waitForFunction(() => window.outcome, null, { timeout: 150000, polling: 100 });
  const outcome = await page.evaluate(() => window.outcome);
  if (!outcome.ok) throw new Error(outcome.error);
  if (errors.length) throw new Error('script errors: ' + errors.join('; '));
  console.log(JSON.stringify({ ...outcome.figures, userAgent: await page.evaluate(() => navigator.userAgent) }));
} catch (e) {
  console.error(e.stack || String(e));
  code = 1;
} finally {
  await browser.close();
}
process.exit(code);
