// A hostile page on another port of the same host tries to act for a signed-in operator.
//
// Usage: node cross_origin.mjs '<json>' where the JSON names baseUrl, token, evilUrl, targetJob and
// controlJob. Signs in, visits evilUrl (which auto-submits a cancel of targetJob to the dashboard),
// records what the dashboard answered that post and whether the browser sent the session cookie with
// it, then cancels controlJob with the dashboard's own button. Prints one JSON line of what it saw.
import { launchChromium } from "./chromium.mjs";

const config = JSON.parse(process.argv[2]);
const base = config.baseUrl;
const seen = {};

const browser = await launchChromium();
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(90_000);  // generous: CI machines are slow and busy

  await page.goto(`${base}/dashboard/login`);
  await page.fill("#token", config.token);
  await Promise.all([page.waitForURL(`${base}/dashboard`), page.click("button[type=submit]")]);

  // The hostile page posts its form on load; the dashboard's answer to that post is what counts.
  const forgedPath = `/dashboard/jobs/${config.targetJob}/cancel`;
  const [forged] = await Promise.all([
    page.waitForResponse((response) => response.url().endsWith(forgedPath) && response.request().method() === "POST"),
    page.goto(config.evilUrl),
  ]);
  seen.forgedStatus = forged.status();
  seen.cookieSent = ((await forged.request().allHeaders()).cookie || "").includes("framequeue_session=");

  // The operator's own click, in the same browser and session, does cancel.
  await page.goto(`${base}/dashboard/jobs/${config.controlJob}`);
  page.once("dialog", (dialog) => dialog.accept());
  await Promise.all([
    page.waitForURL(/done=cancelled/),
    page.click('form[action$="/cancel"] button'),
  ]);
  seen.controlFlash = (await page.textContent(".flash")).trim();
  console.log(JSON.stringify(seen));
} finally {
  await browser.close();
}
