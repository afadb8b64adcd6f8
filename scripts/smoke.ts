import { parseSmokeArgs, renderTable, runSmoke, UsageError, USAGE } from "./lib/smoke";

/**
 * `npm run smoke -- --url https://hub.example.com/v1 --key <key>`: checks a running hub route by
 * route, and every refusal that can be seen from outside (missing key, wrong scope, unserved
 * model, rate limit), and names each broken one. See docs/smoke.md.
 */

const EXIT_OK = 0;
const EXIT_USAGE = 1;
const EXIT_BROKEN = 2;

async function main(): Promise<number> {
  let command;
  try {
    command = parseSmokeArgs(process.argv.slice(2), process.env);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`smoke: ${error.message} (--help for usage)\n`);
    return EXIT_USAGE;
  }
  if (command.help) {
    process.stdout.write(`${USAGE}\n`);
    return EXIT_OK;
  }

  // Progress only for a person watching: checks on a CPU-only hub can take a minute each.
  const showProgress = !command.json && process.stderr.isTTY;
  const report = await runSmoke(command.options, { onStart: showProgress ? (check) => process.stderr.write(`checking ${check.service}…\n`) : undefined });

  if (command.json) {
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  } else {
    process.stdout.write(`Inference hub smoke test: ${report.baseUrl} (OCR mode ${report.ocrMode})\n\n${renderTable(report)}\n\n`);
    const count = (status: string) => report.checks.filter((c) => c.status === status).length;
    process.stdout.write(`${count("ok")} checks passed, ${count("failed")} failed, ${count("skipped")} skipped.\n`);
  }
  for (const failure of report.failures) process.stderr.write(`smoke: ${failure}\n`);
  return report.ok ? EXIT_OK : EXIT_BROKEN;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    // A bug in the checker itself: one line still, no stack trace for the operator to wade through.
    process.stderr.write(`smoke: internal error: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = EXIT_USAGE;
  },
);
