import { writeFileSync } from "node:fs";
import { servingModel } from "../programs/autoscaler/serving-model";
import { servingImage } from "../services/gpu-image";
import { parseSmokeArgs, renderTable, runSmoke, UsageError, USAGE } from "./smoke/checks";
import { measureWake, parseWakeArgs, renderWake, WAKE_USAGE, WakeUsageError, wakeStagesFile } from "./smoke/wake";
import { loadStack, SimulateInputError } from "../simulator/run";

/**
 * `npm run smoke -- --url https://hub.example.com/v1 --key <key>`: checks a running hub route by
 * route, and every refusal that can be seen from outside (missing key, wrong scope, unserved
 * model, rate limit), and names each broken one. See docs/smoke.md.
 */

const EXIT_OK = 0;
const EXIT_USAGE = 1;
const EXIT_BROKEN = 2;

/** `--wake`: the GPU wake, stage by stage (cli/smoke/wake.ts). */
async function wake(argv: readonly string[]): Promise<number> {
  let command;
  try {
    command = parseWakeArgs(argv, process.env);
  } catch (error) {
    if (!(error instanceof WakeUsageError)) throw error;
    process.stderr.write(`smoke: ${error.message}\n${WAKE_USAGE}\n`);
    return EXIT_USAGE;
  }
  const model = command.stack ? modelStages(command.stack) : undefined;
  if (typeof model === "string") {
    process.stderr.write(`smoke: ${model}\n`);
    return EXIT_USAGE;
  }
  const report = await measureWake(
    { ...command.options, model },
    { fetch, now: Date.now, sleep: (ms) => new Promise((r) => setTimeout(r, ms)) },
  );
  if (!report.ok) {
    process.stderr.write(`smoke: wake failed: ${report.problem}\n`);
    return EXIT_BROKEN;
  }
  process.stdout.write(
    command.json
      ? `${JSON.stringify(report, null, 2)}\n`
      : `GPU wake of ${command.options.baseUrl}, answered by ${report.answeredBy}:\n\n${renderWake(report)}\n`,
  );
  if (command.options.stagesOut) {
    writeFileSync(command.options.stagesOut, wakeStagesFile(report, new Date(), command.stack));
    process.stdout.write(
      `stages written to ${command.options.stagesOut}: npm run simulate -- --stages ${command.options.stagesOut} ...\n`,
    );
  }
  return EXIT_OK;
}

/** The model's seconds per stage for a stack file here, with the boot image that stack uses. */
function modelStages(stack: string): Record<string, number> | string {
  try {
    const hub = loadStack(stack, undefined, {});
    const built = servingModel(hub, { image: servingImage(hub) });
    if (!built.ok) return built.reason;
    return Object.fromEntries(built.model.coldStart.stages.map((s) => [s.name, s.seconds]));
  } catch (err) {
    return err instanceof SimulateInputError ? err.problems.join("; ") : String(err);
  }
}

async function main(): Promise<number> {
  if (process.argv.includes("--wake")) return wake(process.argv.slice(2));
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
  const report = await runSmoke(command.options, {
    onStart: showProgress ? (check) => process.stderr.write(`checking ${check.service}…\n`) : undefined,
  });

  if (command.json) {
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  } else {
    process.stdout.write(
      `Inference hub smoke test: ${report.baseUrl} (OCR mode ${report.ocrMode})\n\n${renderTable(report)}\n\n`,
    );
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
