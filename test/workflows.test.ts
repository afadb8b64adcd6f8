import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import * as path from "node:path";
import { validateWorkflow } from "@action-validator/core";
import { parse, stringify } from "yaml";
import { describe, expect, it } from "vitest";
import { ROOT } from "./helpers/load";

/**
 * The GitHub Actions workflows, checked offline. @action-validator/core (0.6.0) validates a
 * workflow against SchemaStore's github-workflow.json, compiled into its wasm: no network.
 */

const DIR = path.join(ROOT, ".github/workflows");
const FILES = readdirSync(DIR)
  .filter((f) => /\.ya?ml$/.test(f))
  .sort();
const text = (file: string) => readFileSync(path.join(DIR, file), "utf8");

interface Step {
  readonly uses?: string;
  readonly run?: string;
  readonly if?: string;
  readonly with?: Record<string, unknown>;
}
interface Job {
  readonly "runs-on"?: string;
  readonly if?: string;
  readonly needs?: string | readonly string[];
  readonly uses?: string;
  readonly environment?: string | { readonly name: string };
  readonly concurrency?: string | { readonly group: string; readonly "cancel-in-progress"?: boolean };
  readonly permissions?: Record<string, string>;
  readonly strategy?: { readonly matrix?: Record<string, unknown> };
  readonly steps?: readonly Step[];
}
interface Workflow {
  readonly on: Record<string, unknown>;
  readonly permissions?: Record<string, string>;
  readonly jobs: Record<string, Job>;
}
const workflow = (file: string) => parse(text(file)) as Workflow;
const steps = (w: Workflow) => Object.values(w.jobs).flatMap((j) => j.steps ?? []);
const runs = (job: Job) => (job.steps ?? []).map((s) => s.run ?? "").join("\n");
const pulumiSteps = (job: Job) => (job.steps ?? []).filter((s) => s.uses?.startsWith("pulumi/actions@"));
const errorsOf = (source: string) => validateWorkflow(source).errors;

describe("every workflow validates against the GitHub workflow schema", () => {
  it("there are the three pipelines", () => {
    expect(FILES).toEqual(expect.arrayContaining(["deploy.yml", "gpu-windows.yml", "pr.yml"]));
  });

  for (const file of FILES) {
    it(file, () => {
      expect(errorsOf(text(file))).toEqual([]);
    });
  }

  it("the npm CLI (`npx action-validator <file>`) agrees, offline", () => {
    const bin = path.join(ROOT, "node_modules/.bin/action-validator");
    const good = spawnSync(bin, [path.join(DIR, "pr.yml")], { encoding: "utf8", timeout: 30_000 });
    expect(good.status, good.stderr).toBe(0);
  });
});

describe("the validator rejects broken workflows", () => {
  it("a misspelt trigger (on: pull_requst)", () => {
    const broken = text("pr.yml").replace(/^on:\n {2}pull_request:\n/m, "on: pull_requst\n");
    expect(broken).toContain("on: pull_requst");
    const errors = errorsOf(broken);
    expect(errors.length).toBeGreaterThan(0);
    expect(JSON.stringify(errors)).toContain('"/on"');
  });

  it("a job without runs-on", () => {
    const doc = workflow("deploy.yml") as unknown as { jobs: Record<string, Record<string, unknown>> };
    delete doc.jobs.select["runs-on"];
    const errors = errorsOf(stringify(doc));
    expect(JSON.stringify(errors)).toContain("/jobs/select/runs-on");
  });

  it("a misspelt job key, a bad permission level, a concurrency without group, a bad input type", () => {
    const job = (extra: string) =>
      `on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n${extra}    steps:\n      - run: npm test\n`;
    expect(errorsOf(job(""))).toEqual([]);
    expect(errorsOf(job("    enviroment: production-hybrid\n")).length).toBeGreaterThan(0);
    expect(errorsOf(job("    permissions:\n      contents: readd\n")).length).toBeGreaterThan(0);
    expect(errorsOf(job("    concurrency:\n      cancel-in-progress: false\n")).length).toBeGreaterThan(0);
    const dispatch = text("deploy.yml").replace("type: choice", "type: choise");
    expect(errorsOf(dispatch).length).toBeGreaterThan(0);
  });

  it("the CLI exits 1 on a broken file", () => {
    const bin = path.join(ROOT, "node_modules/.bin/action-validator");
    const r = spawnSync(bin, [path.join(ROOT, "test/fixtures/github/broken-workflow.yml")], {
      encoding: "utf8",
      timeout: 30_000,
    });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("runs-on");
  });
});

describe("structural rules", () => {
  // A tag (v6, v6.0.2, v0.10.0) or a full commit SHA; never a branch such as main or master.
  const PINNED = /^[\w.-]+\/[\w.-]+(?:\/[\w./-]+)?@(?:v?\d+(?:\.\d+){0,2}|[0-9a-f]{40})$/;

  for (const file of FILES) {
    it(`${file}: every third-party action is pinned to a version tag or a SHA`, () => {
      const uses = [
        ...steps(workflow(file)).map((s) => s.uses),
        ...Object.values(workflow(file).jobs).map((j) => j.uses),
      ].filter((u): u is string => u !== undefined && !u.startsWith("./"));
      expect(uses.length).toBeGreaterThan(0);
      for (const u of uses) {
        expect(u, `${file}: ${u}`).toMatch(PINNED);
        expect(u, `${file}: ${u}`).not.toMatch(/@(main|master|latest|HEAD)$/);
      }
    });
  }

  it("the pin check itself refuses branches", () => {
    for (const bad of ["actions/checkout@main", "pulumi/actions@master", "owner/repo", "owner/repo@feature/x"])
      expect(bad).not.toMatch(PINNED);
    for (const good of [
      "actions/checkout@v6.0.2",
      "pulumi/actions@v7",
      "webfactory/ssh-agent@v0.10.0",
      `a/b@${"0".repeat(40)}`,
    ])
      expect(good).toMatch(PINNED);
  });

  it("the PR workflow runs npm test, the plan diff and a sticky comment, with minimal permissions", () => {
    const w = workflow("pr.yml");
    expect(Object.keys(w.on)).toEqual(["pull_request"]);
    expect(w.permissions).toEqual({ contents: "read" });
    for (const job of Object.values(w.jobs))
      for (const [scope, level] of Object.entries(job.permissions ?? {}))
        expect(`${scope}: ${level}`).toMatch(/^(contents: read|pull-requests: write)$/);
    expect(runs(w.jobs.test)).toMatch(/^npm test$/m);

    const diff = w.jobs["plan-diff"];
    const checkouts = (diff.steps ?? []).filter((s) => s.uses?.startsWith("actions/checkout@"));
    expect(checkouts[1].with).toMatchObject({ ref: "${{ github.base_ref }}", path: "base" });
    for (const stack of ["cpu", "gpu", "hybrid", "multigpu"]) expect(runs(diff)).toContain(stack);
    expect(runs(diff)).toContain('npm run -s plan -- --stack "$stack" --json');
    expect(runs(diff)).toContain("npm run -s plan-diff -- --base-dir plans/base --head-dir plans/head");
    expect(runs(diff)).toContain("--fail-on-volume-risk");
    const sticky = (diff.steps ?? []).filter((s) => s.uses?.startsWith("marocchino/sticky-pull-request-comment@"));
    expect(sticky).toHaveLength(1);
    expect(sticky[0].uses).toMatch(/@v\d+\.\d+\.\d+$/);
    expect(sticky[0].with).toMatchObject({ header: "plan-diff", path: "plan-diff.md" });
  });

  it("pulumi preview runs per stack, only with a Pulumi token, and comments on the PR", () => {
    const w = workflow("pr.yml");
    const preview = w.jobs.preview;
    expect(preview.if).toBe("needs.pulumi-gate.outputs.enabled == 'true'");
    expect(text("pr.yml")).toContain("PULUMI_ACCESS_TOKEN: ${{ secrets.PULUMI_ACCESS_TOKEN }}");
    expect(preview.strategy?.matrix?.stack).toBeDefined();
    expect(pulumiSteps(preview)[0].with).toMatchObject({
      command: "preview",
      "stack-name": "${{ matrix.stack }}",
      "comment-on-pr": true,
    });
    // The key is loaded only when the secret exists.
    const agent = (preview.steps ?? []).find((s) => s.uses?.startsWith("webfactory/ssh-agent@"));
    expect(agent?.if).toBe("env.HAS_SSH_KEY == 'true'");
  });

  it("deploy jobs run in a protected environment, one update per stack at a time", () => {
    const w = workflow("deploy.yml");
    expect(Object.keys(w.on).sort()).toEqual(["push", "workflow_dispatch"]);
    const deployJobs = Object.entries(w.jobs).filter(([, j]) => pulumiSteps(j).some((s) => s.with?.command === "up"));
    expect(deployJobs.map(([id]) => id)).toEqual(["up"]);
    for (const [, job] of deployJobs) {
      expect(job.environment).toBe("production-${{ matrix.stack }}");
      expect(job.concurrency).toEqual({ group: "pulumi-${{ matrix.stack }}", "cancel-in-progress": false });
      // Tests and the offline plan (which refuses a bad config) come before the up.
      const all = job.steps ?? [];
      const at = (pred: (s: Step) => boolean) => all.findIndex(pred);
      const up = at((s) => s.with?.command === "up");
      expect(at((s) => s.run === "npm test")).toBeGreaterThan(-1);
      expect(at((s) => s.run === "npm test")).toBeLessThan(up);
      expect(at((s) => s.run?.startsWith("npm run plan -- --stack") ?? false)).toBeLessThan(up);
      expect(at((s) => s.uses?.startsWith("webfactory/ssh-agent@") ?? false)).toBeLessThan(up);
    }
  });

  it("the GPU-windows schedule shares the hybrid deploy's concurrency group and has an environment", () => {
    const deploy = workflow("deploy.yml").jobs.up;
    const hybridGroup = (deploy.concurrency as { group: string }).group.replace("${{ matrix.stack }}", "hybrid");
    const windows = workflow("gpu-windows.yml");
    expect((windows.on.schedule as { cron: string }[])[0].cron).toBe("*/15 * * * *");
    expect(Object.keys(windows.on)).toContain("workflow_dispatch");
    for (const job of Object.values(windows.jobs)) {
      expect(job.concurrency).toEqual({ group: hybridGroup, "cancel-in-progress": false });
      expect(job.environment).toBeTruthy();
      expect(runs(job)).toContain("npm run hub -- gpu sync --stack hybrid");
    }
  });

  it("every Pulumi CLI is the release of the @pulumi/pulumi SDK in package.json", () => {
    const sdk = (
      JSON.parse(readFileSync(path.join(ROOT, "package.json"), "utf8")) as { dependencies: Record<string, string> }
    ).dependencies["@pulumi/pulumi"];
    for (const file of FILES) {
      for (const step of steps(workflow(file)).filter((s) => s.uses?.startsWith("pulumi/actions@")))
        expect(step.with?.["pulumi-version"], file).toBe(sdk);
    }
  });

  it("secrets reach steps only through env, never interpolated into a shell script", () => {
    for (const file of FILES)
      for (const step of steps(workflow(file))) expect(step.run ?? "", file).not.toContain("${{ secrets.");
  });
});
