// Drives the framequeue dashboard in the system's headless chromium, as an operator would.
//
// Usage: node dashboard.mjs '<json>' where the JSON names baseUrl, token, jobId, messageId,
// artifactsDir, and the queues of the image and frames stages (imageQueue, framesQueue). Prints one JSON line of what it saw; exits non-zero (with the error) otherwise.
import { launchChromium } from "./chromium.mjs";

// The first job of a test session waits for the worker to load every tiny model.
const JOB_TIMEOUT_MS = 200_000;

const config = JSON.parse(process.argv[2]);
const base = config.baseUrl;
const seen = { dialogs: [] };

const browser = await launchChromium();
try {
  const page = await browser.newPage({ viewport: { width: 1440, height: 1000 } });
  page.setDefaultTimeout(90_000);  // generous: CI machines are slow and busy
  page.on("console", (message) => { if (message.type() === "error") console.error("page:", message.text()); });

  // A page asked for before signing in leads to the login form, and back to the page after it.
  await page.goto(`${base}/dashboard/jobs/${config.jobId}`);
  seen.loginUrl = new URL(page.url()).pathname;
  await page.fill("#token", config.token);
  await Promise.all([page.waitForURL(`**/dashboard/jobs/${config.jobId}`), page.click("button[type=submit]")]);
  seen.cookieReadableByScripts = await page.evaluate(() => document.cookie.includes("framequeue_session"));

  // The page refreshes itself until the job has succeeded; its image artifact is previewed.
  await page.waitForSelector('h1 [data-state="succeeded"]', { timeout: JOB_TIMEOUT_MS });
  seen.state = await page.textContent("h1 [data-state]");
  await page.waitForFunction(() => document.body.dataset.refreshedAt, null, { timeout: 60_000 });
  seen.refreshed = true;
  seen.stages = await page.$$eval("#stages tr[data-stage]", (rows) => rows.map((row) => row.dataset.stage));
  await page.waitForFunction(() => {
    const img = document.querySelector('figure[data-artifact="image"] img');
    return img && img.complete && img.naturalWidth > 0;
  });
  seen.imageWidth = await page.$eval('figure[data-artifact="image"] img', (img) => img.naturalWidth);
  await page.screenshot({ path: `${config.artifactsDir}/dashboard-job.png`, fullPage: true });

  // The failed message is listed with its reason; requeueing it reports back.
  await page.goto(`${base}/dashboard/failed?queue=${config.imageQueue}`);
  const row = page.locator(`tr.dead-letter[data-message-id="${config.messageId}"]`);
  seen.reason = await row.locator("pre.reason").textContent();
  await page.screenshot({ path: `${config.artifactsDir}/dashboard-failed.png`, fullPage: true });
  await Promise.all([
    page.waitForResponse((response) => response.url().includes("done=requeued")),
    row.locator("button.requeue").click(),
  ]);
  seen.flash = await page.textContent(".flash");

  // A destructive action asks first; dismissed, nothing happens.
  await page.goto(`${base}/dashboard`);
  page.once("dialog", (dialog) => { seen.dialogs.push(dialog.message()); dialog.dismiss(); });
  await page.click(`tr[data-queue="${config.framesQueue}"] button.danger`);
  await page.waitForTimeout(300);
  seen.urlAfterDismiss = new URL(page.url()).pathname + new URL(page.url()).search;

  await page.waitForSelector("#throughput svg rect.ok", { state: "attached" });
  seen.counts = await page.$$eval("[data-count]", (links) =>
    Object.fromEntries(links.map((link) => [link.dataset.count, Number(link.querySelector("b").textContent)])));
  await page.screenshot({ path: `${config.artifactsDir}/dashboard.png`, fullPage: true });
  seen.html = await page.content();
  console.log(JSON.stringify(seen));
} finally {
  await browser.close();
}
