// Drives the system chromium (headless) with puppeteer-core: opens one URL, waits for
// the page to set window.hwsimResult = {exitCode, stdout, stderr}, prints the program's
// stdout and stderr as its own and exits with the program's exit code.
// usage: node chromium_driver.mjs --chromium PATH --user-data-dir DIR --url URL
// Nothing is downloaded: puppeteer-core has no browser of its own.
import process from "node:process";
import puppeteer from "puppeteer-core";

const FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-extensions", "--no-first-run", "--disable-dev-shm-usage"];

function option(name) {
  const index = process.argv.indexOf(name);
  if (index < 0 || index + 1 >= process.argv.length) {
    process.stderr.write(`chromium_driver: missing ${name}\n`);
    process.exit(2);
  }
  return process.argv[index + 1];
}

const browser = await puppeteer.launch({
  executablePath: option("--chromium"),
  headless: true,
  pipe: true,                    // DevTools over a pipe: no debugging port is opened
  userDataDir: option("--user-data-dir"),
  args: FLAGS,
  ignoreDefaultArgs: ["--enable-automation"],
});
let exitCode = 70;
try {
  const page = await browser.newPage();
  page.on("pageerror", (error) => process.stderr.write(`page error: ${error.message}\n`));
  page.on("console", (message) => {
    if (message.type() === "error") process.stderr.write(`console: ${message.text()}\n`);
  });
  await page.goto(option("--url"), { waitUntil: "load" });
  // No timeout here: the Python runner kills this whole process group at its timeout.
  await page.waitForFunction("window.hwsimResult !== undefined", { timeout: 0, polling: 50 });
  const result = await page.evaluate(() => window.hwsimResult);
  process.stdout.write(result.stdout);
  process.stderr.write(result.stderr);
  if (!result.crossOriginIsolated) {
    process.stderr.write("chromium_driver: page not cross-origin isolated (timer resolution 100 us)\n");
  }
  exitCode = result.exitCode;
} catch (error) {
  process.stderr.write(`chromium_driver: ${error && error.stack ? error.stack : error}\n`);
} finally {
  await browser.close();
}
process.exitCode = exitCode;
