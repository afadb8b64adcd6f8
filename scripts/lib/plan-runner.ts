import { existsSync, readdirSync, readFileSync } from "node:fs";
import * as path from "node:path";
import { takeArtifacts } from "../../infra/artifacts";
import { offlineEnvironment } from "../../infra/environment";
import { hubProgram } from "../../infra/program";
import { loadHubConfig, Problem, readStackFile, Warning } from "../../stacks";
import { presentInput, runUnderMocks, RecordedResource } from "./mock-engine";
import { buildPlanDocument, FailedPlanDocument, PLAN_SCHEMA_VERSION, PlanArtifact, PlanDocument } from "./plan-document";

export const PROJECT_ROOT = path.resolve(__dirname, "../..");

export function stackFilePath(stack: string): string {
  return path.join(PROJECT_ROOT, `Pulumi.${stack}.yaml`);
}

export function availableStacks(): string[] {
  return readdirSync(PROJECT_ROOT)
    .map((f) => /^Pulumi\.(.+)\.yaml$/.exec(f)?.[1])
    .filter((s): s is string => s !== undefined)
    .sort();
}

export type PlanResult =
  | { ok: true; document: PlanDocument; artifacts: readonly PlanArtifact[]; resources: readonly RecordedResource[] }
  | { ok: false; document: FailedPlanDocument };

const failed = (stack: string, configFile: string, problems: Problem[], warnings: Warning[] = []): PlanResult => ({
  ok: false,
  document: { schemaVersion: PLAN_SCHEMA_VERSION, ok: false, stack, configFile, problems, warnings },
});

/** Reads a stack file's text, validates it, and runs the program under mocks. */
export async function planFromText(stack: string, configFile: string, text: string): Promise<PlanResult> {
  const file = readStackFile(text, configFile);
  if (!file.ok) return failed(stack, configFile, file.problems);
  const loaded = loadHubConfig(file.file.config, file.file.secretKeys);
  if (!loaded.ok) return failed(stack, configFile, loaded.problems, loaded.warnings);
  takeArtifacts();
  // Offline: no address lookup, no account listing, nothing written to the user's home.
  const run = await runUnderMocks(() => hubProgram(offlineEnvironment()), stack, { ...file.file.config }, file.file.secretKeys);
  const artifacts: PlanArtifact[] = [];
  for (const a of takeArtifacts()) {
    const content = await presentInput(a.content);
    artifacts.push({ kind: a.kind, node: a.node, path: a.path, content: typeof content === "string" ? content : JSON.stringify(content, null, 2) });
  }
  // Keys are a secret the plan cannot read; it can still see whether any are configured.
  const noKeys: Warning[] = file.file.secretKeys.includes("inference-hub:apiKeys") ? [] : [{ keys: ["apiKeys"], message: "no API keys: the gatekeeper refuses every request. Create one: npm run hub -- keys create --name <who> --scopes llm,ocr,stt,tts --stack <name>" }];
  const hub = { ...loaded.config, warnings: [...loaded.config.warnings, ...noKeys] };
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
    return failed(stack, configFile, [{ keys: ["--stack"], value: stack, message: `has no stack file (${path.relative(process.cwd(), configFile) || configFile} does not exist).`, fix: `Stacks here: ${known.join(", ")}; or pass --config-file PATH.` }]);
  }
  return planFromText(stack, configFile, readFileSync(configFile, "utf8"));
}
