// The talk page of `diva serve` in headless Chromium (tests/serve.rs):
//   node page_test.js URL SPEECH.wav SCREENSHOT.png
// The microphone is Chromium's fake capture device playing SPEECH.wav; the
// test holds the talk button, releases it, waits for the streamed reply, then
// does the same through the file-upload path. Prints one JSON object.
const { chromium } = require("playwright-core");
const [url, audio, shot, abShot] = process.argv.slice(2);

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: [
      "--no-sandbox",
      "--use-fake-ui-for-media-stream",
      "--use-fake-device-for-media-stream",
      `--use-file-for-fake-audio-capture=${audio}`,
    ],
  });
  const out = {};
  try {
    const page = await browser.newPage();
    const logs = [];
    page.on("console", (m) => logs.push(m.text()));
    await page.goto(url);
    const box = await (await page.$("#talk")).boundingBox();
    await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
    await page.mouse.down();
    await page.waitForTimeout(3500);
    await page.mouse.up();
    await page.waitForSelector('#status[data-done="1"]', { timeout: 180000 });
    out.mic_reply = await page.textContent("#reply");
    out.mic_status = await page.textContent("#status");
    await page.screenshot({ path: shot, fullPage: true });
    await page.evaluate(() => delete document.getElementById("status").dataset.done);
    await page.setInputFiles("#file", audio);
    await page.waitForSelector('#status[data-done="1"]', { timeout: 180000 });
    out.file_reply = await page.textContent("#reply");
    out.file_status = await page.textContent("#status");
    out.console = logs;
    if (abShot) {
      // The blind A/B page: ask by upload, both replies appear, vote left.
      await page.goto(url.replace(/\/$/, "") + "/ab");
      await page.setInputFiles("#file", audio);
      await page.waitForSelector("#vote-left:not([disabled])", { timeout: 180000 });
      out.ab_left = await page.textContent("#left");
      out.ab_right = await page.textContent("#right");
      await page.screenshot({ path: abShot, fullPage: true });
      await page.click("#vote-left");
      await page.waitForSelector('#status[data-voted="1"]', { timeout: 30000 });
      out.ab_status = await page.textContent("#status");
    }
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify(out));
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
