// Plays an MP4 in headless Chromium and prints what the browser saw as JSON:
// whether it played, its duration and size, and how many audio/video bytes it decoded.
// Usage: node play_mp4.mjs FILE.mp4
import { chromium } from 'playwright-core';
import { pathToFileURL } from 'node:url';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const file = resolve(process.argv[2]);
const dir = mkdtempSync(join(tmpdir(), 'sonora-play-'));
const page = join(dir, 'index.html');
writeFileSync(page, `<!doctype html><video id="v" src="${pathToFileURL(file)}" preload="auto"></video>`);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync',
         '--autoplay-policy=no-user-gesture-required', '--allow-file-access-from-files'],
});
try {
  const p = await browser.newPage();
  await p.goto(pathToFileURL(page).href);
  const result = await p.evaluate(async () => {
    const v = document.getElementById('v');
    const error = () => (v.error ? `media error ${v.error.code}: ${v.error.message}` : null);
    await new Promise((ok) => {
      if (v.readyState >= 1) return ok();
      v.addEventListener('loadedmetadata', ok, { once: true });
      v.addEventListener('error', ok, { once: true });
      setTimeout(ok, 5000);
    });
    if (v.error) return { played: false, error: error() };
    let played = true;
    try { await v.play(); } catch (e) { played = false; }
    await new Promise((ok) => { v.addEventListener('ended', ok, { once: true }); setTimeout(ok, (v.duration + 3) * 1000); });
    return {
      played,
      error: error(),
      duration: v.duration,
      width: v.videoWidth,
      height: v.videoHeight,
      currentTime: v.currentTime,
      ended: v.ended,
      audioBytes: v.webkitAudioDecodedByteCount,
      videoBytes: v.webkitVideoDecodedByteCount,
    };
  });
  console.log(JSON.stringify(result));
} finally {
  await browser.close();
}
