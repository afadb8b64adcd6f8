import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import * as path from "node:path";
import { validateWorkflow } from "@action-validator/core";
import { parse } from "yaml";
import { describe, expect, it } from "vitest";
import { requestProblem } from "../cli/hub/scale";
import { loadStackFile, readStackFile } from "../stacks";
import { ROOT } from "./helpers/load";

/**
 * .github/workflows/autoscale.yml, what the controller dispatches (contract: POST
 * /repos/{owner}/{repo}/actions/workflows/autoscale.yml/dispatches with inputs stack, nodes,
 * reason, decision_id, all strings), checked offline: the schema (@action-validator/core), the
 * shared concurrency group, and its input check run by bash.
 */

const DIR = path.join(ROOT, ".github/workflows");
const text = (file: string) => readFileSync(path.join(DIR, file), "utf8");
interface Step {
  readonly name?: string;
  readonly id?: string;
  readonly if?: string;
  readonly uses?: string;
  readonly run?: string;
  readonly with?: Record<string, unknown>;
}
interface Job {
  readonly environment?: string;
  readonly concurrency?: { readonly group: string; readonly "cancel-in-progress"?: boolean };
  readonly env?: Record<string, string>;
  readonly steps: readonly Step[];
}
const workflow = (file: string) =>
  parse(text(file)) as {
    on: Record<string, { inputs?: Record<string, { type: string; required?: boolean; options?: string[] }> }>;
    jobs: Record<string, Job>;
  };
const autoscale = workflow("autoscale.yml");
const job = autoscale.jobs.scale;

describe("autoscale.yml", () => {
  it("validates against the GitHub workflow schema", () => {
    expect(validateWorkflow(text("autoscale.yml")).errors).toEqual([]);
  });

  it("takes exactly the dispatch contract's inputs, and only a dispatch starts it", () => {
    expect(Object.keys(autoscale.on)).toEqual(["workflow_dispatch"]);
    const inputs = autoscale.on.workflow_dispatch.inputs!;
    expect(Object.keys(inputs)).toEqual(["stack", "nodes", "reason", "decision_id"]);
    expect(inputs.stack).toMatchObject({ type: "choice", required: true });
    expect(inputs.nodes).toMatchObject({ type: "string", required: true });
  });

  it("offers every shipped stack of a GPU tier, and no other", () => {
    const gpuStacks = ["cpu", "gpu", "hybrid", "multigpu", "local"].filter((name) => {
      const file = path.join(ROOT, `Pulumi.${name}.yaml`);
      if (!existsSync(file)) return false;
      const read = readStackFile(readFileSync(file, "utf8"), file);
      if (!read.ok) return false;
      const loaded = loadStackFile(read.file);
      return loaded.ok && loaded.config.gpu !== undefined;
    });
    expect(gpuStacks.length).toBeGreaterThan(0);
    expect(autoscale.on.workflow_dispatch.inputs!.stack.options).toEqual(gpuStacks);
  });

  it("runs in the deploy's environment and in the one concurrency group every pipeline of the stack shares", () => {
    const deploy = workflow("deploy.yml").jobs.up;
    expect(job.environment).toBe(deploy.environment!.replace("matrix.stack", "inputs.stack"));
    expect(job.concurrency).toEqual({
      group: deploy.concurrency!.group.replace("matrix.stack", "inputs.stack"),
      "cancel-in-progress": false,
    });
    const windows = Object.values(workflow("gpu-windows.yml").jobs)[0];
    expect(windows.concurrency).toEqual({
      group: job.concurrency!.group.replace("${{ inputs.stack }}", "hybrid"),
      "cancel-in-progress": false,
    });
    // The same secrets as the deploy, through env only.
    for (const name of ["PULUMI_ACCESS_TOKEN", "DIGITALOCEAN_TOKEN"]) expect(job.env![name]).toBe(deploy.env![name]);
    expect(job.steps.find((s) => s.uses?.startsWith("webfactory/ssh-agent@"))?.with).toEqual({
      "ssh-private-key": "${{ secrets.SSH_PRIVATE_KEY }}",
    });
  });

  it("runs gpu scale with the contract's arguments, inputs reaching the shell only through env", () => {
    const scale = job.steps.at(-1)!;
    expect(scale.run).toBe(
      'npm run hub -- gpu scale "$NODES" --stack "$STACK" --reason "$REASON" ${DECISION_ID:+--decision-id "$DECISION_ID"}',
    );
    expect(job.env).toMatchObject({
      STACK: "${{ inputs.stack }}",
      NODES: "${{ inputs.nodes }}",
      REASON: "${{ inputs.reason }}",
      DECISION_ID: "${{ inputs.decision_id }}",
    });
    for (const step of job.steps) expect(step.run ?? "").not.toMatch(/\$\{\{/);
    // The CLI needs the Pulumi CLI on the PATH before it runs.
    expect(job.steps.findIndex((s) => s.uses?.startsWith("pulumi/actions@"))).toBeLessThan(job.steps.length - 1);
  });

  it("a wake installs nothing it can restore: node_modules from the cache keyed on the lockfile, npm ci only on a miss", () => {
    const restore = job.steps.find((s) => s.uses?.startsWith("actions/cache@"));
    expect(restore?.with).toMatchObject({ path: "node_modules" });
    expect(String(restore?.with?.key)).toContain("hashFiles('package-lock.json')");
    const install = job.steps.find((s) => s.run?.startsWith("npm ci"));
    expect(install?.if).toBe(`steps.${restore?.id}.outputs.cache-hit != 'true'`);
    if (!install || !restore) throw new Error("pr.yml has no npm ci step or no cache step");
    expect(job.steps.indexOf(install)).toBeGreaterThan(job.steps.indexOf(restore));
  });

  describe("its input check, run by bash, agrees with the hub command's own", () => {
    const check = job.steps.find((s) => s.name === "Check the inputs")!.run!;
    const run = (env: Record<string, string>) =>
      spawnSync("bash", ["-e", "-c", check], {
        env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...env },
        encoding: "utf8",
      });
    const good = { STACK: "hybrid", NODES: "1", REASON: "wake-on-demand", DECISION_ID: "d-2026-12-02T10:00:00Z-1" };

    it("passes what the controller sends, and an empty decision id", () => {
      expect(run(good).status, run(good).stdout).toBe(0);
      expect(run({ ...good, DECISION_ID: "" }).status).toBe(0);
      expect(requestProblem({ nodes: 1, reason: good.REASON, decisionId: good.DECISION_ID })).toBeUndefined();
    });

    const bad: [string, Record<string, string>][] = [
      ["an unknown stack", { STACK: "cpu" }],
      ["nodes with a command", { NODES: "1; curl evil" }],
      ["nodes not a number", { NODES: "one" }],
      ["an empty node count", { NODES: "" }],
      ["a reason with a command substitution", { REASON: "$(id)" }],
      ["a reason with a newline", { REASON: "a\nb" }],
      ["a decision id with a space", { DECISION_ID: "a b" }],
    ];
    for (const [what, change] of bad) {
      it(`refuses ${what}`, () => {
        const r = run({ ...good, ...change });
        expect(r.status).toBe(1);
        expect(r.stdout).toMatch(/::error::/);
        // The words the check refuses, the CLI refuses too.
        if (change.REASON !== undefined || change.DECISION_ID !== undefined) {
          expect(
            requestProblem({
              nodes: 1,
              reason: change.REASON ?? good.REASON,
              decisionId: change.DECISION_ID ?? good.DECISION_ID,
            }),
          ).toBeDefined();
        }
      });
    }
  });
});

describe("deploy.yml keeps the GPU as the stack runs it", () => {
  it("gpu keep runs after the Pulumi CLI is installed and before the windows' sync and the up", () => {
    const steps = workflow("deploy.yml").jobs.up.steps;
    const at = (pred: (s: Step) => boolean) => steps.findIndex(pred);
    const keep = at((s) => s.run === 'npm run hub -- gpu keep --stack "$STACK"');
    expect(keep).toBeGreaterThan(
      at((s) => s.uses?.startsWith("pulumi/actions@") === true && s.with?.command === undefined),
    );
    expect(keep).toBeLessThan(at((s) => s.run?.includes("gpu sync") === true));
    expect(keep).toBeLessThan(at((s) => s.with?.command === "up"));
  });
});
