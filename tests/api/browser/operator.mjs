// Drives the dashboard's health rows, job search and failed-job retry in headless chromium.
//
// Usage: node operator.mjs '<json>' where the JSON names baseUrl, token, failedJobId, searchText,
// pageSize and artifactsDir. Prints one JSON line of what it saw; exits non-zero on an error.
import { launchChromium } from "./chromium.mjs";

// The page refreshes every 5 s; a retried job needs a few of them.
const RETRY_TIMEOUT_MS = 60_000;

const config = JSON.parse(process.argv[2]);
const base = config.baseUrl;
const seen = {};
const jobIds = (page) => page.$$eval("table a.mono[href*='/dashboard/jobs/']",
  (links) => links.map((link) => link.textContent.trim()));

const browser = await launchChromium();
try {
  const page = await browser.newPage({ viewport: { width: 1440, height: 1000 } });
  page.setDefaultTimeout(90_000);  // generous: CI machines are slow and busy
  page.on("console", (message) => { if (message.type() === "error") console.error("page:", message.text()); });

  await page.goto(`${base}/dashboard/login`);
  await page.fill("#token", config.token);
  await Promise.all([page.waitForURL(`${base}/dashboard`), page.click("button[type=submit]")]);

  // The overview: one row per stage queue, its cells named by column.
  seen.stageRows = await page.$$eval("#stages tr[data-queue]", (rows) => Object.fromEntries(rows.map((row) => [
    row.dataset.queue,
    Object.fromEntries([...row.querySelectorAll("td[data-col]")].map((cell) => [cell.dataset.col, cell.textContent.trim()])),
  ])));
  seen.waitReasons = await page.$$eval("#waiting tr[data-reason]", (rows) => rows.map((row) => row.dataset.reason));
  await page.screenshot({ path: `${config.artifactsDir}/dashboard-overview.png`, fullPage: true });

  // Search, then the next page: different jobs, all of them matching.
  await page.goto(`${base}/dashboard/jobs`);
  await page.fill("#job-search input[name=q]", config.searchText);
  await page.selectOption("#job-search select[name=limit]", String(config.pageSize));
  await Promise.all([page.waitForURL(/q=/), page.click("#job-search button[type=submit]")]);
  seen.firstPage = await jobIds(page);
  await Promise.all([page.waitForURL(/cursor=/), page.click("a[rel=next]")]);
  seen.secondPage = await jobIds(page);
  seen.nextOnSecond = await page.$$eval("a[rel=next]", (links) => links.length);
  await page.screenshot({ path: `${config.artifactsDir}/dashboard-search.png`, fullPage: true });

  // A failed job shows its traceback; Retry runs it again and the page follows it to success.
  await page.goto(`${base}/dashboard/jobs/${config.failedJobId}`);
  seen.stateBefore = await page.textContent("h1 [data-state]");
  seen.traceback = await page.textContent("#job-traceback pre");
  await page.screenshot({ path: `${config.artifactsDir}/dashboard-failed-job.png`, fullPage: true });
  await Promise.all([page.waitForURL(/done=job_retried/), page.click("button.retry")]);
  seen.flash = await page.textContent(".flash");
  await page.waitForSelector('h1 [data-state="succeeded"]', { timeout: RETRY_TIMEOUT_MS });
  seen.stateAfter = await page.textContent("h1 [data-state]");
  seen.retryButtons = await page.$$eval("button.retry", (buttons) => buttons.length);
  console.log(JSON.stringify(seen));
} finally {
  await browser.close();
}
