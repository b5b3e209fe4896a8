// Drives sonora's playground page in headless Chromium: enters the API key, creates a
// video through the form, waits for it to complete in the list, plays it, then extends
// it with the page's button. Prints what the page and the video element showed as JSON.
// Usage: node playground.mjs BASE_URL KEY
import { chromium } from 'playwright-core';

const [base, key] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync',
         '--autoplay-policy=no-user-gesture-required'],
});
try {
  const p = await browser.newPage();
  const errors = [];
  p.on('pageerror', (e) => errors.push(String(e)));
  await p.goto(base + '/');
  await p.fill('#key', key);
  await p.dispatchEvent('#key', 'change');
  await p.fill('#prompt', 'a red ball falls and bounces');
  await p.click('#go');
  const card = p.locator('.video[data-status="completed"]').first();
  await card.waitFor({ timeout: 60000 });
  const id = await card.getAttribute('data-id');
  const played = await card.locator('video').evaluate(async (v) => {
    await new Promise((ok) => {
      if (v.readyState >= 1) return ok();
      v.addEventListener('loadedmetadata', ok, { once: true });
      v.addEventListener('error', ok, { once: true });
      setTimeout(ok, 10000);
    });
    if (v.error) return { error: `media error ${v.error.code}` };
    await v.play();
    await new Promise((ok) => { v.addEventListener('ended', ok, { once: true }); setTimeout(ok, (v.duration + 3) * 1000); });
    return {
      duration: v.duration, width: v.videoWidth, height: v.videoHeight, ended: v.ended,
      audioBytes: v.webkitAudioDecodedByteCount, videoBytes: v.webkitVideoDecodedByteCount,
    };
  });
  await p.fill('#seconds', '1');
  await card.locator('button.extend').click();
  const extended = p.locator('.video[data-status="completed"]', { hasText: 'from' }).first();
  await extended.waitFor({ timeout: 60000 });
  const extendedText = await extended.innerText();
  const model = await p.locator('#model').innerText();
  const error = await p.locator('#error').innerText();
  console.log(JSON.stringify({ id, played, extendedText, model, error, pageErrors: errors }));
} finally {
  await browser.close();
}
