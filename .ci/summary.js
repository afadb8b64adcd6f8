// Turns vitest's JSON report into the plain closing line CI reads: "N passed, N failed".
// A typecheck failure stops `npm test` before vitest writes a report: that counts as one failure.
const fs = require("node:fs");
const [file, statusText] = process.argv.slice(2);
const status = Number(statusText);
let passed = 0;
let failed = 0;
if (fs.existsSync(file)) {
  const report = JSON.parse(fs.readFileSync(file, "utf8"));
  passed = report.numPassedTests;
  failed = report.numFailedTests;
  // A file whose hook failed (beforeAll: a rig that did not start) has its tests reported as
  // skipped, not failed: count each test that did not run there as failed.
  for (const file of report.testResults ?? []) {
    const statuses = (file.assertionResults ?? []).map((a) => a.status);
    if (file.status === "failed" && !statuses.includes("failed"))
      failed += Math.max(1, statuses.filter((s) => s !== "passed").length);
  }
} else if (status !== 0) {
  console.log("no test report: the typecheck (tsc --noEmit) or vitest itself failed");
  failed = 1;
}
if (status !== 0 && failed === 0) failed = 1;
console.log(`${passed} passed, ${failed} failed`);
process.exit(status !== 0 || failed > 0 ? 1 : 0);
