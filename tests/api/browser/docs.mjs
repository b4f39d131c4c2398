// Opens /docs as a signed-in operator with every request off this server refused, as if offline.
//
// Usage: node docs.mjs '<json>' where the JSON names baseUrl and token. Prints one JSON line: the
// operations Swagger UI rendered, requests it tried elsewhere, and the page's console errors (a
// Content-Security-Policy refusal shows there).
import { launchChromium } from "./chromium.mjs";

const config = JSON.parse(process.argv[2]);
const base = config.baseUrl;
const seen = { elsewhere: [], errors: [] };

const browser = await launchChromium();
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(90_000);  // generous: CI machines are slow and busy
  page.on("console", (message) => { if (message.type() === "error") seen.errors.push(message.text()); });
  page.on("pageerror", (error) => seen.errors.push(String(error)));
  await page.route("**/*", (route) => {
    if (new URL(route.request().url()).origin === new URL(base).origin) return route.continue();
    seen.elsewhere.push(route.request().url());
    return route.abort();
  });

  await page.goto(`${base}/dashboard/login`);
  await page.fill("#token", config.token);
  await Promise.all([page.waitForURL(`${base}/dashboard`), page.click("button[type=submit]")]);

  await page.goto(`${base}/docs`);
  await page.waitForSelector(".opblock-summary-path");
  seen.operations = await page.$$eval(".opblock-summary-path", (paths) => paths.map((path) => path.textContent.trim()));
  seen.title = await page.textContent(".info .title");
  console.log(JSON.stringify(seen));
} finally {
  await browser.close();
}
