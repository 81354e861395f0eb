// Drives the console in headless Chromium against a running local stack.
// Run by TestConsole_InHeadlessChromium (console_test.go) with:
//   CONSOLE_URL  http://127.0.0.1:<port>/console
//   AWS_ENDPOINT http://127.0.0.1:<port>   (/_wsgate/drop)
//   SCREENSHOT   where to save the page at the end
//   CHROMIUM     the browser (default /usr/bin/chromium)
// Prints one JSON line of figures; exits non-zero on the first failed check.
import { chromium } from 'playwright-core';

const env = (k, d) => process.env[k] || d || (() => { throw new Error(`${k} is not set`); })();
const consoleURL = env('CONSOLE_URL');
const aws = env('AWS_ENDPOINT');
const TOPIC = 'demo.browser';

function check(ok, what) {
  if (!ok) throw new Error('check failed: ' + what);
}

// PutEvents through the console's own publish endpoint, which signs the
// request with the dev credentials (the local AWS endpoint checks SigV4
// signatures as AWS does, and a browser holds no AWS credentials).
async function putEvent(n) {
  const r = await fetch(new URL('/console/api/publish', consoleURL).href, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ topic: TOPIC, payload: { n }, history: true, published_at: new Date().toISOString() }),
  });
  const body = await r.json();
  check(r.ok && body.id, `PutEvents accepted event ${n}: ${JSON.stringify(body)}`);
  return Date.now();
}

const seqs = (page) => page.$$eval('#events tr.event', (rows) => rows.map((r) => Number(r.dataset.seq)).sort((a, b) => a - b));
const rowFor = (seq) => `#events tr.event[data-topic="${TOPIC}"][data-seq="${seq}"]`;

const browser = await chromium.launch({
  executablePath: env('CHROMIUM', '/usr/bin/chromium'),
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
});
const figures = {};
let failure = null;
const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
const pageErrors = [];
page.on('pageerror', (e) => pageErrors.push(String(e)));
try {
  await page.goto(consoleURL);
  check(await page.isVisible('#mint'), 'the local stack offers dev tokens');

  // Connect with a dev token.
  await page.fill('#mint-sub', 'browser');
  await page.fill('#mint-topics', 'demo.>');
  await page.click('#mint');
  await page.waitForFunction(() => document.getElementById('token').value.split('.').length === 3);
  await page.click('#connect');
  await page.waitForSelector('#state[data-state="connected"]', { timeout: 10000 });

  // Subscribe.
  await page.fill('#topic', TOPIC);
  await page.click('#subscribe');
  await page.waitForSelector(`#subs li[data-pattern="${TOPIC}"]`);
  await page.waitForFunction(() => [...document.querySelectorAll('#log li')].some((li) => li.textContent.includes('"subscribed"')), null, { timeout: 5000 });

  // An event published through PutEvents shows (how fast is a figure,
  // printed, not a check: a loaded machine must not fail the test).
  const sent = await putEvent(1);
  await page.waitForSelector(rowFor(1), { timeout: 10000 });
  figures.first_event_ms = Date.now() - sent;
  check((await page.textContent(`${rowFor(1)} td.payload summary`)).includes('"n":1'), 'the row shows the payload');

  // A forced disconnect: the network drops every connection. Events
  // published meanwhile come back through resume, in order, once.
  const drop = await fetch(aws + '/_wsgate/drop', { method: 'POST', headers: { 'Content-Type': 'application/json' } });
  check(drop.ok && (await drop.json()).dropped >= 1, 'the stack dropped the connection');
  await page.waitForSelector('#state[data-state="reconnecting"]', { timeout: 5000 });
  await putEvent(2);
  await putEvent(3);
  await page.waitForSelector('#state[data-state="connected"]', { timeout: 10000 });
  await putEvent(4);
  await page.waitForSelector(rowFor(4), { timeout: 5000 });
  await page.waitForSelector(rowFor(3), { timeout: 5000 });
  await page.waitForSelector(rowFor(2), { timeout: 5000 });

  // The page's own publish button (PutEvents through the local stack).
  await page.fill('#pub-topic', TOPIC);
  await page.fill('#pub-payload', '{"n":5,"from":"the console"}');
  await page.click('#publish');
  await page.waitForSelector(rowFor(5), { timeout: 5000 });

  await page.waitForTimeout(300); // anything repeated would show by now
  const got = await seqs(page);
  check(JSON.stringify(got) === '[1,2,3,4,5]', `every event once: ${JSON.stringify(got)}`);
  check((await page.$$('#events tr.gap')).length === 0, 'no gap highlighted');
  const counts = await page.textContent('#counts');
  check(/(^|\D)1 reconnect( |$)/.test(counts), `one reconnect counted, in the singular: ${counts}`);
  check(/(^|\D)5 events /.test(counts), `five events counted: ${counts}`);
  figures.counts = counts;

  // Filter and pause work on the table.
  await page.fill('#filter', 'the console');
  check((await page.$$eval('#events tr.event', (rows) => rows.filter((r) => !r.hidden).length)) === 1, 'the filter leaves one row');
  await page.fill('#filter', '');

  // Opened with connect=1 and no token, on the local stack the page mints a
  // dev token for every connect itself, and subscribes.
  const auto = await browser.newPage();
  auto.on('pageerror', (e) => pageErrors.push(String(e)));
  await auto.goto(consoleURL + '?connect=1&subscribe=demo.>');
  await auto.waitForSelector('#state[data-state="connected"]', { timeout: 10000 });
  await auto.waitForFunction(() => [...document.querySelectorAll('#log li')].some((li) => li.textContent.includes('"subscribed"') && li.textContent.includes('demo.>')), null, { timeout: 5000 });
  check(await auto.inputValue('#token') === '', 'no token pasted');
  check((await auto.textContent('#log')).includes('minted a dev token for console'), 'the page minted its own token');
  await putEvent(6);
  await auto.waitForSelector(rowFor(6), { timeout: 5000 });
  await auto.close();
  // Current state: the client's internal pong (the end of its batch) is
  // not shown as a reply, and a topic without state (the gateway answers
  // not_found) shows once: the info line, not the error reply as well.
  await page.fill('#topic', TOPIC);
  await page.click('#state-req');
  await page.waitForFunction(() => [...document.querySelectorAll('#log li.info')].some((li) => li.textContent.includes('has no state')), null, { timeout: 5000 });
  await page.waitForTimeout(200); // a late duplicate would show by now
  check(!(await page.textContent('#log')).includes('"pong"'), 'no internal pong in the log');
  const noState = await page.$$eval('#log li', (lis) => lis.map((li) => `${li.className}: ${li.textContent}`).filter((t) => t.includes('has no state') || t.includes('not_found')));
  check(noState.length === 1 && noState[0].startsWith('info: '), `a topic without state shows once, as info: ${JSON.stringify(noState)}`);
  // A not_found that answers nothing the console asked is still shown.
  await page.fill('#command', JSON.stringify({ type: 'request_current_state', topic: TOPIC, id: 'by-hand' }));
  await page.click('#send');
  await page.waitForFunction(() => [...document.querySelectorAll('#log li.error')].some((li) => li.textContent.includes('"by-hand"') && li.textContent.includes('not_found')), null, { timeout: 5000 });

  // The favicon is served.
  const icon = await fetch(new URL('/favicon.ico', consoleURL).href);
  check(icon.ok && (icon.headers.get('content-type') || '').startsWith('image/'), `favicon.ico: ${icon.status} ${icon.headers.get('content-type')}`);

  // Layout at a desktop and a phone width.
  figures.layout = {};
  for (const width of [1280, 390]) {
    await page.setViewportSize({ width, height: 860 });
    await page.waitForTimeout(100);
    const l = await page.evaluate(() => {
      const box = (el) => el.getBoundingClientRect();
      const first = document.querySelector('#log li');
      const ol = document.getElementById('log');
      const cb = box(document.getElementById('pub-history'));
      const label = document.querySelector('#publish-panel label.inline');
      const text = document.createRange();
      text.selectNodeContents(label);
      const rects = [...text.getClientRects()].filter((r) => r.width > 0);
      const words = rects[rects.length - 1];
      return {
        scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth,
        numbersFit: (() => {
          // A list number sits outside its item unless list-style-position
          // is inside: then the list's left padding must hold the widest.
          if (!first || getComputedStyle(first).listStylePosition === 'inside') return true;
          const c = document.createElement('canvas').getContext('2d');
          c.font = getComputedStyle(first).font;
          return parseFloat(getComputedStyle(ol).paddingLeft) >= c.measureText(`${ol.children.length}. `).width;
        })(),
        checkbox: { top: cb.top, bottom: cb.bottom, right: cb.right }, words: { top: words.top, bottom: words.bottom, left: words.left },
      };
    });
    figures.layout[width] = l;
    if (process.env.SCREENSHOT) await page.screenshot({ path: process.env.SCREENSHOT.replace(/\.png$/, `-${width}.png`), fullPage: true });
    check(l.scrollWidth <= l.innerWidth, `no horizontal overflow at ${width} px: ${l.scrollWidth} > ${l.innerWidth}`);
    check(l.numbersFit, `log numbers fully visible at ${width} px`);
    const mid = (l.checkbox.top + l.checkbox.bottom) / 2;
    check(mid >= l.words.top && mid <= l.words.bottom && l.words.left >= l.checkbox.right - 1, `history checkbox beside its label at ${width} px: ${JSON.stringify(l)}`);
  }
  await page.setViewportSize({ width: 1280, height: 860 });

  check(pageErrors.length === 0, 'no script errors: ' + pageErrors.join('; '));
} catch (e) {
  failure = e;
} finally {
  if (process.env.SCREENSHOT) await page.screenshot({ path: process.env.SCREENSHOT, fullPage: true }).catch(() => {});
  await browser.close();
}
console.log(JSON.stringify(figures));
if (failure) {
  console.error(failure.stack || String(failure));
  process.exit(1);
}
