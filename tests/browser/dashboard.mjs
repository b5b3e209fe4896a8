// Opens a sonora eval dashboard in headless Chromium with every network request blocked
// and reports, as JSON, what rendered: charts, table rows, videos and whether each video
// loaded (metadata decoded, duration > 0), plus every request the page tried to make.
// Usage: node dashboard.mjs DASHBOARD.html [SCREENSHOT.png]
import { chromium } from 'playwright-core';
import { pathToFileURL } from 'node:url';
import { resolve } from 'node:path';

const file = resolve(process.argv[2]);
const shot = process.argv[3];
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync',
         '--autoplay-policy=no-user-gesture-required'],
});
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const requests = [];
  await context.route('**/*', (route) => {
    const url = route.request().url();
    if (url.startsWith('file:') || url.startsWith('data:')) return route.continue();
    requests.push(url);
    return route.abort();
  });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  await page.goto(pathToFileURL(file).href);
  const result = await page.evaluate(async () => {
    const videos = [...document.querySelectorAll('video')];
    const loaded = await Promise.all(videos.map((v) => new Promise((ok) => {
      const done = () => ok({ readyState: v.readyState, duration: v.duration, width: v.videoWidth, error: v.error ? v.error.code : null });
      if (v.readyState >= 1) return done();
      v.addEventListener('loadedmetadata', done, { once: true });
      v.addEventListener('error', done, { once: true });
      setTimeout(done, 10000);
    })));
    return {
      title: document.title,
      charts: document.querySelectorAll('figure.chart svg').length,
      polylines: document.querySelectorAll('figure.chart polyline').length,
      tableRows: document.querySelectorAll('section.suite > table tr').length,
      videos: loaded,
      text: document.body.innerText.slice(0, 20000),
    };
  });
  if (shot) await page.screenshot({ path: shot, fullPage: false });
  console.log(JSON.stringify({ ...result, requests, errors }));
} finally {
  await browser.close();
}
