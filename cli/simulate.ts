import { parseArgs } from "node:util";
import { chooseStack } from "./hub/stack-choice";
import { availableStacks, PROJECT_ROOT } from "./plan/stack-files";
import { existsSync, readFileSync } from "node:fs";
import type { BootImage, MeasuredStage, ServingOverrides } from "../programs/autoscaler/serving-model";
import { humanReport, jsonDocument, stageComparisonText } from "../simulator/report";
import { loadStack, simulate, SimulateInputError, SimulateOptions } from "../simulator/run";
import { measuredStages, parseStagesFile, StagesFileError } from "../simulator/stages";
import { TRACE_FORMATS, TraceError, TraceFormat } from "../simulator/traces";

const USAGE = `usage: npm run simulate -- --trace FILE [--format azure|mooncake|servegen] [--stack NAME] [--json] [options]
       npm run simulate -- --compare-stages [--stack NAME] [--stages FILE]   the modelled wake, stage by stage, per variant
  --trace FILE              request trace: Azure CSV, Mooncake JSONL or a ServeGen 10-minute rate series
  --format F                azure | mooncake | servegen (default: from the file name and first line)
  --stack NAME              replay against Pulumi.NAME.yaml (else $PULUMI_STACK, else the stack \`pulumi stack select\` chose); --config-file PATH for any stack file
  --set KEY=VALUE           override a setting for this run, as pulumi config set would (repeatable), e.g. --set gpuMaxNodes=3
  --json                    one JSON document (a "policies" array) instead of the table
  --seed N                  seed for a rate series' arrivals (default 1)
  --start ISO               wall-clock time of the trace's t = 0 (default 2026-01-05T00:00:00Z, a Monday)
  --rate-scale X            multiply a rate series' rps by X (keeps its shape)
  --days A-B                replay only days A..B (from t = 0 of a rate series, else from the first request)
  --cold-start-s S          wake request to traffic, seconds (default: the catalogue's stages)
  --pipeline-s S            the unbilled pipeline part of it, seconds
  --replica-tokens-per-s T  one replica's throughput (default: the catalogue's measured figure)
  --image base|baked        what a GPU node boots (default: baked when the stack names a snapshot)
  --actuator A              github | pulumi-deployments | github-before (the workflow before the trim); default: the stack's
  --model-before            the wake as modelled before the baked image and fast weights (BF16 + online FP8 read
                            through mmap, the GPU base image, the untrimmed workflow): today's deployments
  --stages FILE             measured wake stages (npm run smoke -- --wake, npm run hub -- gpu on --stages-out) in place of the model's
  --hold-share X            share of requests (0 to 1) that ask to wait for a waking GPU (X-Hub-Wait); default 0
  --hold-s S                how long they wait, seconds (default and ceiling: the stack's gpuHoldMaxSeconds)
  --input-tokens N, --output-tokens N   lengths for traces without them (default: the model's typical lengths)
  --no-sweep                skip the reactive idle-time sweep`;

function fail(problems: readonly string[]): never {
  process.stderr.write(
    `simulate: ${problems.length} problem${problems.length === 1 ? "" : "s"}:\n${problems.map((p) => `  - ${p}`).join("\n")}\n${USAGE}\n`,
  );
  process.exit(1);
}

function positive(name: string, text: string | undefined, problems: string[], integer = false): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n))) {
    problems.push(`--${name} ${JSON.stringify(text)} is not a ${integer ? "whole number" : "number"} above 0`);
    return undefined;
  }
  return n;
}

function main(): void {
  let values: Record<string, string | boolean | string[] | undefined>;
  try {
    ({ values } = parseArgs({
      options: {
        trace: { type: "string" },
        format: { type: "string" },
        stack: { type: "string" },
        "config-file": { type: "string" },
        set: { type: "string", multiple: true },
        json: { type: "boolean", default: false },
        seed: { type: "string" },
        start: { type: "string" },
        "rate-scale": { type: "string" },
        days: { type: "string" },
        "cold-start-s": { type: "string" },
        "pipeline-s": { type: "string" },
        "replica-tokens-per-s": { type: "string" },
        "input-tokens": { type: "string" },
        "output-tokens": { type: "string" },
        "no-sweep": { type: "boolean", default: false },
        image: { type: "string" },
        actuator: { type: "string" },
        stages: { type: "string" },
        "hold-share": { type: "string" },
        "hold-s": { type: "string" },
        "compare-stages": { type: "boolean", default: false },
        "model-before": { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    fail([(err as Error).message]);
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const problems: string[] = [];
  const str = (k: string) => values[k] as string | undefined;
  const compare = values["compare-stages"] === true;
  if (!str("trace") && !compare) problems.push("--trace FILE is required (or --compare-stages)");
  const image = str("image");
  if (image !== undefined && image !== "base" && image !== "baked")
    problems.push(`--image ${JSON.stringify(image)} is not base or baked`);
  const actuator = str("actuator");
  if (actuator !== undefined && !["github", "pulumi-deployments", "github-before"].includes(actuator))
    problems.push(`--actuator ${JSON.stringify(actuator)} is not github, pulumi-deployments or github-before`);
  const before = values["model-before"] === true;
  if (before && (image !== undefined || actuator !== undefined))
    problems.push("--model-before sets the image and the actuator itself; drop --image / --actuator");
  let holdShare: number | undefined;
  if (str("hold-share") !== undefined) {
    holdShare = Number(str("hold-share"));
    if (!Number.isFinite(holdShare) || holdShare < 0 || holdShare > 1)
      problems.push(`--hold-share ${JSON.stringify(str("hold-share"))} is not a share from 0 to 1`);
  }
  const holdSeconds = positive("hold-s", str("hold-s"), problems);
  if (holdSeconds !== undefined && holdShare === undefined)
    problems.push("--hold-s goes with --hold-share (the share of requests that wait)");
  let measured: MeasuredStage[] | undefined;
  const stagesPath = str("stages");
  if (stagesPath !== undefined) {
    if (!existsSync(stagesPath)) problems.push(`--stages ${stagesPath}: no such file`);
    else {
      try {
        measured = measuredStages(parseStagesFile(readFileSync(stagesPath, "utf8"), stagesPath));
      } catch (err) {
        if (err instanceof StagesFileError) problems.push(...err.problems.map((p) => `--stages ${err.file}: ${p}`));
        else throw err;
      }
    }
  }
  const format = str("format");
  if (format !== undefined && !(TRACE_FORMATS as readonly string[]).includes(format))
    problems.push(`--format ${JSON.stringify(format)} is not one of ${TRACE_FORMATS.join(", ")}`);
  const sets: Record<string, string> = {};
  for (const pair of (values.set as string[] | undefined) ?? []) {
    const at = pair.indexOf("=");
    if (at <= 0) problems.push(`--set ${JSON.stringify(pair)} is not KEY=VALUE (e.g. --set gpuMaxNodes=3)`);
    else sets[pair.slice(0, at)] = pair.slice(at + 1);
  }
  let startMs: number | undefined;
  if (str("start") !== undefined) {
    startMs = Date.parse(str("start")!);
    if (!Number.isFinite(startMs))
      problems.push(`--start ${JSON.stringify(str("start"))} is not an ISO date-time such as 2026-01-05T00:00:00Z`);
  }
  const seed = positive("seed", str("seed"), problems, true);
  const rateScale = positive("rate-scale", str("rate-scale"), problems);
  const coldStartSeconds = positive("cold-start-s", str("cold-start-s"), problems);
  const pipelineSeconds = positive("pipeline-s", str("pipeline-s"), problems);
  if (coldStartSeconds !== undefined && pipelineSeconds !== undefined && pipelineSeconds >= coldStartSeconds)
    problems.push(
      `--pipeline-s ${pipelineSeconds} must be below --cold-start-s ${coldStartSeconds} (the pipeline is part of the cold start)`,
    );
  const replicaTokensPerSecond = positive("replica-tokens-per-s", str("replica-tokens-per-s"), problems);
  const typicalInputTokens = positive("input-tokens", str("input-tokens"), problems, true);
  const typicalOutputTokens = positive("output-tokens", str("output-tokens"), problems, true);
  let days: { from: number; to: number } | undefined;
  if (str("days") !== undefined) {
    const m = /^(\d+)-(\d+)$/.exec(str("days")!);
    if (!m || Number(m[1]) > Number(m[2]))
      problems.push(`--days ${JSON.stringify(str("days"))} is not FROM-TO in whole days, e.g. 7-13`);
    else days = { from: Number(m[1]), to: Number(m[2]) };
  }
  if (str("stack") && str("config-file")) problems.push("give --stack or --config-file, not both");
  const configFile = str("config-file");
  // The hub's one --stack rule (cli/hub/stack-choice.ts), unless a file is named.
  let stackName = configFile
    ? (/^Pulumi\.(.+)\.ya?ml$/.exec(configFile.split("/").pop() ?? "")?.[1] ?? configFile)
    : "";
  if (!configFile) {
    try {
      stackName = chooseStack(str("stack"), PROJECT_ROOT, availableStacks()).name;
    } catch (err) {
      problems.push((err as Error).message);
    }
  }
  if (problems.length) fail(problems);
  if (compare) {
    try {
      const hub = loadStack(stackName, configFile, sets);
      process.stdout.write(`${stageComparisonText(hub, stackName, measured)}\n`);
      return;
    } catch (err) {
      if (err instanceof SimulateInputError) fail(err.problems);
      throw err;
    }
  }
  const options: SimulateOptions = {
    tracePath: str("trace")!,
    format: format as TraceFormat | undefined,
    stack: stackName,
    configFile,
    sets,
    seed,
    startMs,
    rateScale,
    days,
    serving: {
      coldStartSeconds,
      pipelineSeconds,
      replicaTokensPerSecond,
      typicalInputTokens,
      typicalOutputTokens,
      ...(before
        ? { image: "base", actuator: "github-before", bf16OnlineWeights: true }
        : { image: image as BootImage | undefined, actuator: actuator as ServingOverrides["actuator"] }),
      measured,
    },
    hold: holdShare !== undefined ? { share: holdShare, seconds: holdSeconds } : undefined,
    sweep: !values["no-sweep"],
  };
  try {
    const sim = simulate(options);
    process.stdout.write(values.json ? `${JSON.stringify(jsonDocument(sim), null, 2)}\n` : `${humanReport(sim)}\n`);
  } catch (err) {
    if (err instanceof TraceError) {
      process.stderr.write(`simulate: ${err.message}\n`);
      process.exit(1);
    }
    if (err instanceof SimulateInputError) fail(err.problems);
    // A bug, not bad input: say so plainly, without a stack trace unless asked for.
    process.stderr.write(`simulate: internal error: ${(err as Error).message ?? String(err)}\n`);
    if (process.env.SIMULATE_DEBUG) process.stderr.write(`${(err as Error).stack}\n`);
    process.exit(2);
  }
}

main();
