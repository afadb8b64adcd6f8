import { existsSync, readFileSync } from "node:fs";
import { gpuBootImage } from "../../services/gpu-image";
import * as path from "node:path";
import { takeArtifacts } from "../../infra/artifacts";
import { offlineEnvironment } from "../../infra/environment";
import { withOfflineStandIns } from "../../infra/offline-secrets";
import { hubProgram } from "../../infra/program";
import { NO_ALERT_RECEIVER_WARNING } from "../../services/monitoring";
import {
  isNonEmpty,
  isSecretSettingName,
  loadStackFile,
  PROJECT,
  Problem,
  Problems,
  presentableProblem,
  presentableWarning,
  readStackFile,
  Warning,
} from "../../stacks";
import { withEnvironments, type EscOpen } from "./esc";
import { presentArtifact, runUnderMocks, RecordedResource } from "./mock-engine";
import { buildPlanDocument, FailedPlanDocument, PLAN_SCHEMA_VERSION, PlanArtifact, PlanDocument } from "./document";

import { availableStacks } from "./stack-files";
export { availableStacks, PROJECT_ROOT, stackFilePath } from "./stack-files";

export type PlanResult =
  | { ok: true; document: PlanDocument; artifacts: readonly PlanArtifact[]; resources: readonly RecordedResource[] }
  | { ok: false; document: FailedPlanDocument };

/** The plan broke, not the stack file: `npm run plan` says so and exits 2, without a stack trace. */
export class PlanInternalError extends Error {
  override name = "PlanInternalError";
}

/** Long past the 5 s a 64-GPU-node stack takes: only a program that never settles reaches it. */
export const PROGRAM_TIMEOUT_MS = 120_000;

/** Every refusal goes out through here: at least one problem, and nothing a refusal must not print. */
const failed = (
  stack: string,
  configFile: string,
  problems: Problems,
  warnings: readonly Warning[] = [],
): PlanResult => ({
  ok: false,
  document: {
    schemaVersion: PLAN_SCHEMA_VERSION,
    ok: false,
    stack,
    configFile,
    problems: [presentableProblem(problems[0]), ...problems.slice(1).map(presentableProblem)],
    warnings: warnings.map(presentableWarning),
  },
});

/** Turns of the event loop after the run, for a rejection that surfaces only once the run looks done. */
const SETTLE_TURNS = 5;
const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * Runs `body` until it settles, a promise inside it is rejected without a handler (a program that
 * throws inside `apply` under the mock engine does exactly that: the run then never finishes, or
 * finishes without the resource), or the timeout passes. Any of the last two is a failure.
 */
async function settled<T>(body: () => Promise<T>, timeoutMs: number): Promise<T> {
  let stop!: (reason: unknown) => void;
  const broken = new Promise<never>((_, reject) => (stop = reject));
  let rejection: { reason: unknown } | undefined;
  const onRejection = (reason: unknown) => {
    rejection ??= { reason };
    stop(reason);
  };
  process.on("unhandledRejection", onRejection);
  const timer = setTimeout(
    () =>
      stop(
        new PlanInternalError(
          `the program did not finish within ${Math.round(timeoutMs / 1000)} s under Pulumi's mock engine`,
        ),
      ),
    timeoutMs,
  );
  try {
    const value = await Promise.race([body(), broken]);
    for (let i = 0; i < SETTLE_TURNS && !rejection; i++) await nextTurn();
    if (rejection) throw rejection.reason;
    return value;
  } finally {
    clearTimeout(timer);
    process.off("unhandledRejection", onRejection);
  }
}

/** A program failure as a refusal, when the program named the settings at fault, or else as an internal error. */
function fromProgramFailure(reason: unknown): Problems {
  const problems = (reason as { problems?: unknown } | null)?.problems;
  if (Array.isArray(problems) && isNonEmpty(problems as Problem[])) return problems as unknown as Problems;
  if (reason instanceof PlanInternalError) throw reason;
  const message = reason instanceof Error ? reason.message : String(reason);
  throw new PlanInternalError(`the program failed under Pulumi's mock engine: ${message.split("\n")[0].slice(0, 500)}`);
}

export interface PlanOptions {
  /** The program to run; tests swap in a failing one. @default - the hub's program */
  readonly program?: () => Record<string, unknown> | Promise<Record<string, unknown>>;
  /** @default - PROGRAM_TIMEOUT_MS */
  readonly timeoutMs?: number;
  /** Opens the ESC environments a stack file imports. @default - the esc CLI on PATH */
  readonly esc?: EscOpen;
}

/** Reads a stack file's text, validates it, and runs the program under mocks. Always settles. */
export async function planFromText(
  stack: string,
  configFile: string,
  text: string,
  options: PlanOptions = {},
): Promise<PlanResult> {
  const read = readStackFile(text, configFile);
  if (!read.ok) return failed(stack, configFile, read.problems);
  // ESC environments (`environment:`): opened with esc when it can, else a warning says what the plan could not see.
  const withEnv = await withEnvironments(read.file, options.esc);
  const file = { ...withEnv.file, warnings: [...withEnv.file.warnings, ...withEnv.warnings] };
  const loaded = loadStackFile(file);
  if (!loaded.ok) return failed(stack, configFile, loaded.problems, loaded.warnings);
  const { config, secretKeys } = file;
  const standIns = secretKeys
    .filter((k) => k.startsWith(`${PROJECT}:`))
    .map((k) => k.slice(PROJECT.length + 1))
    .filter(isSecretSettingName);
  takeArtifacts();
  let run: Awaited<ReturnType<typeof runUnderMocks>>;
  const artifacts: PlanArtifact[] = [];
  try {
    run = await withOfflineStandIns(standIns, () =>
      settled(async () => {
        const result = await runUnderMocks(
          options.program ?? (() => hubProgram(offlineEnvironment())),
          stack,
          { ...config },
          secretKeys,
        );
        for (const a of takeArtifacts()) artifacts.push(await presentArtifact(a));
        return result;
      }, options.timeoutMs ?? PROGRAM_TIMEOUT_MS),
    );
  } catch (reason) {
    return failed(stack, configFile, fromProgramFailure(reason), loaded.config.warnings);
  }
  // Keys are a secret the plan cannot read; it can still see whether any are configured.
  const noKeys: Warning[] = secretKeys.includes(`${PROJECT}:apiKeys`)
    ? []
    : [
        {
          keys: ["apiKeys"],
          message:
            "no API keys declared: nobody can use the hub or create a key. Declare the first admin key: npm run hub -- keys create --bootstrap --name admin --scopes admin --stack <name>; then create client keys at runtime with npm run hub -- keys create",
        },
      ];
  const noReceiver: Warning[] =
    loaded.config.monitoring && !loaded.config.monitoring.email && !secretKeys.includes(`${PROJECT}:alertWebhookUrl`)
      ? [{ keys: ["alertEmail", "alertWebhookUrl"], message: NO_ALERT_RECEIVER_WARNING }]
      : [];
  const boot = gpuBootImage(loaded.config);
  const staleImage: Warning[] =
    boot?.kind === "stale" ? [{ keys: ["gpuSnapshotName", "gpuSnapshotId"], message: boot.why }] : [];
  const hub = {
    ...loaded.config,
    warnings: [...loaded.config.warnings, ...noKeys, ...noReceiver, ...staleImage].map(presentableWarning),
  };
  const document = buildPlanDocument({
    stack,
    configFile,
    hub,
    overrides: loaded.overrides,
    resources: run.resources,
    artifacts,
    outputs: run.outputs,
  });
  return { ok: true, document, artifacts, resources: run.resources };
}

export async function planFromFile(stack: string, configFile: string): Promise<PlanResult> {
  if (!existsSync(configFile)) {
    const known = availableStacks();
    return failed(stack, configFile, [
      {
        keys: ["--stack"],
        value: stack,
        message: `has no stack file (${path.relative(process.cwd(), configFile) || configFile} does not exist).`,
        fix: `Stacks here: ${known.join(", ")}; or pass --config-file PATH.`,
      },
    ]);
  }
  return planFromText(stack, configFile, readFileSync(configFile, "utf8"));
}
