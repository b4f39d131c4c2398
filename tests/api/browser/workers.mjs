// Opens the dashboard's worker list in the system's headless chromium and follows the running job's link.
//
// Usage: node workers.mjs '<json>' where the JSON names baseUrl, token, jobId and artifactsDir.
// Prints one JSON line of what it saw; exits non-zero (with the error) otherwise.
import { launchChromium } from "./chromium.mjs";

const config = JSON.parse(process.argv[2]);
const base = config.baseUrl;
const seen = {};

const browser = await launchChromium();
try {
  const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
  page.setDefaultTimeout(90_000);  // generous: CI machines are slow and busy
  page.on("console", (message) => { if (message.type() === "error") console.error("page:", message.text()); });

  // Signed in from the overview, the operator follows the header's link to the worker list.
  await page.goto(`${base}/dashboard`);
  await page.fill("#token", config.token);
  await Promise.all([page.waitForURL(`${base}/dashboard`), page.click("button[type=submit]")]);
  await Promise.all([page.waitForURL("**/dashboard/workers"), page.click('header a[href$="/dashboard/workers"]')]);

  const row = page.locator(`#workers tr.worker:has([data-job="${config.jobId}"])`);
  await row.waitFor();
  seen.host = await row.getAttribute("data-host");
  seen.pid = await row.getAttribute("data-pid");
  seen.stages = await row.locator("td.stages").textContent();
  seen.badge = await row.locator(".badge").getAttribute("data-state");
  seen.jobLinks = await row.locator("td.current-jobs a").allTextContents();
  await page.screenshot({ path: `${config.artifactsDir}/dashboard-workers.png`, fullPage: true });

  await Promise.all([page.waitForURL(`**/dashboard/jobs/${config.jobId}`), row.locator("td.current-jobs a").click()]);
  seen.jobPageUrl = new URL(page.url()).pathname;
  seen.jobPageTitle = await page.textContent("h1");
  console.log(JSON.stringify(seen));
} finally {
  await browser.close();
}
