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
  failed = report.numFailedTests + (report.numFailedTestSuites > 0 && report.numFailedTests === 0 ? report.numFailedTestSuites : 0);
} else if (status !== 0) {
  console.log("no test report: the typecheck (tsc --noEmit) or vitest itself failed");
  failed = 1;
}
if (status !== 0 && failed === 0) failed = 1;
console.log(`${passed} passed, ${failed} failed`);
process.exit(status !== 0 || failed > 0 ? 1 : 0);
