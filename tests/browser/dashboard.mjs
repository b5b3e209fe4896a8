// Opens a sonora eval dashboard in headless Chromium with every network request blocked
// and reports, as JSON, what rendered: charts, table rows, videos and whether each video
// loaded (metadata decoded, duration > 0), plus every request the page tried to make, and
// the layout: boxes that overlap their neighbours, content that spills out of its clip card,
// and whether the page is wider than the window.
// Usage: node dashboard.mjs DASHBOARD.html [SCREENSHOT.png] [VIEWPORT_WIDTH]
import { chromium } from 'playwright-core';
import { pathToFileURL } from 'node:url';
import { resolve } from 'node:path';

const file = resolve(process.argv[2]);
const shot = process.argv[3];
const width = Number(process.argv[4] || 1280);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync',
         '--autoplay-policy=no-user-gesture-required'],
});
try {
  const context = await browser.newContext({ viewport: { width, height: 900 } });
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
    // layout: every pair of boxes that should sit side by side or one under another must
    // not intersect; nothing inside a clip card may reach outside it
    const rect = (e) => e.getBoundingClientRect();
    const boxes = [...document.querySelectorAll('h1, h2, h3, p.headline, div.scroll, figure.chart, div.clip')];
    const overlaps = [];
    for (let i = 0; i < boxes.length; i++) {
      for (let j = i + 1; j < boxes.length; j++) {
        const [a, b] = [boxes[i], boxes[j]];
        if (a.contains(b) || b.contains(a)) continue;
        const [ra, rb] = [rect(a), rect(b)];
        const ix = Math.min(ra.right, rb.right) - Math.max(ra.left, rb.left);
        const iy = Math.min(ra.bottom, rb.bottom) - Math.max(ra.top, rb.top);
        if (ix > 1 && iy > 1) overlaps.push(`${a.tagName}.${a.className} / ${b.tagName}.${b.className}`);
      }
    }
    const spills = [];
    for (const c of document.querySelectorAll('div.clip')) {
      const rc = rect(c);
      for (const e of c.querySelectorAll('*')) {
        const r = rect(e);
        if (r.width === 0) continue;
        if (r.left < rc.left - 1 || r.right > rc.right + 1) spills.push(`${e.tagName} in ${c.querySelector('b')?.textContent}`);
      }
    }
    const pageWidth = document.documentElement.scrollWidth;
    return {
      overlaps, spills, pageWidth, viewport: window.innerWidth, boxes: boxes.length,
      headline: document.querySelector('p.headline')?.textContent || null,
      title: document.title,
      charts: document.querySelectorAll('figure.chart svg').length,
      polylines: document.querySelectorAll('figure.chart polyline').length,
      tableRows: document.querySelectorAll('table.compare tr').length,
      scaleRows: document.querySelectorAll('table.scale tr').length,
      videos: loaded,
      text: document.body.innerText.slice(0, 20000),
    };
  });
  if (shot) await page.screenshot({ path: shot, fullPage: true });
  console.log(JSON.stringify({ ...result, requests, errors }));
} finally {
  await browser.close();
}
