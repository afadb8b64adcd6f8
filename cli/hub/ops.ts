import type { Stack } from "@pulumi/pulumi/automation";
import { spawnSync } from "node:child_process";
import type { PreviewStep, StackConfig } from "./decisions";

/**
 * The few Pulumi operations the hub command needs. The real implementation uses the Automation
 * API; tests use a recording implementation, so no Pulumi behaviour is reimplemented.
 */
export interface StackOps {
  readonly stackName: string;
  getConfig(): Promise<StackConfig>;
  setConfig(key: string, value: string, secret: boolean): Promise<void>;
  removeConfig(key: string): Promise<void>;
  preview(onOutput: (line: string) => void): Promise<readonly PreviewStep[]>;
  /**
   * Applies; `onStep` is told when each resource finishes, for the phase timings. `message` goes
   * into the stack's update history (who asked and why, e.g. the autoscaler's decision id).
   */
  up(
    onOutput: (line: string) => void,
    onStep: (step: PreviewStep) => void,
    message?: string,
  ): Promise<readonly PreviewStep[]>;
  outputs(): Promise<Record<string, { readonly value: unknown; readonly secret: boolean }>>;
}

export class HubCommandError extends Error {}

/** Refuses early, with the fix, when the machine cannot run Pulumi at all. */
export function checkPrerequisites(
  env: NodeJS.ProcessEnv = process.env,
  which: (cmd: string) => boolean = onPath,
): void {
  if (!which("pulumi"))
    throw new HubCommandError(
      "the Pulumi CLI is not installed: install it (https://www.pulumi.com/docs/install/), then `pulumi login`.",
    );
  if (!env.DIGITALOCEAN_TOKEN)
    throw new HubCommandError("DIGITALOCEAN_TOKEN is not set: export a DigitalOcean API token with write scope.");
}

function onPath(cmd: string): boolean {
  return spawnSync("sh", ["-c", `command -v ${cmd}`], { stdio: "ignore" }).status === 0;
}

/**
 * The Automation API's stack, or a HubCommandError that says what to do: `whenMissing` for a stack
 * the backend does not have, `pulumi login` when there is no backend session.
 */
export async function selectStack(stackName: string, workDir: string, whenMissing: string): Promise<Stack> {
  // Loaded lazily: the Automation API looks for the CLI as soon as it is used.
  const { LocalWorkspace } = await import("@pulumi/pulumi/automation");
  try {
    return await LocalWorkspace.selectStack({ stackName, workDir });
  } catch (err) {
    const message = (err as Error).message ?? "";
    if (/no stack named|not found/i.test(message))
      throw new HubCommandError(`no stack named "${stackName}": ${whenMissing}`);
    if (/login|credentials|PULUMI_ACCESS_TOKEN/i.test(message))
      throw new HubCommandError("not logged in to a Pulumi backend: run `pulumi login` (or set PULUMI_ACCESS_TOKEN).");
    throw new HubCommandError(message.split("\n")[0]);
  }
}

/** StackOps over Pulumi's Automation API, for a stack of this project. */
export async function automationOps(stackName: string, workDir: string): Promise<StackOps> {
  const stack = await selectStack(
    stackName,
    workDir,
    `create it with \`pulumi stack init ${stackName}\` (stack files here: Pulumi.<name>.yaml).`,
  );
  const step = (m: { op: string; urn: string; type: string }): PreviewStep => ({ op: m.op, urn: m.urn, type: m.type });
  return {
    stackName,
    getConfig: async () => {
      const all = await stack.getAllConfig();
      return Object.fromEntries(
        Object.entries(all).map(([k, v]) => [k, { value: v.value, secret: v.secret === true }]),
      );
    },
    setConfig: async (key, value, secret) => stack.setConfig(key, { value, secret }),
    removeConfig: async (key) => stack.removeConfig(key),
    preview: async (onOutput) => {
      const steps: PreviewStep[] = [];
      await stack.preview({
        onOutput,
        onEvent: (e) => e.resourcePreEvent && steps.push(step(e.resourcePreEvent.metadata)),
      });
      return steps;
    },
    up: async (onOutput, onStep, message) => {
      const steps: PreviewStep[] = [];
      await stack.up({
        onOutput,
        ...(message ? { message } : {}),
        onEvent: (e) => {
          if (e.resOutputsEvent) {
            const s = step(e.resOutputsEvent.metadata);
            steps.push(s);
            onStep(s);
          }
        },
      });
      return steps;
    },
    outputs: async () => stack.outputs(),
  };
}
