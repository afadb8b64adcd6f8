import { copyFileSync, readFileSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import type { EngineEvent, Stack } from "@pulumi/pulumi/automation";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadHubConfig, loadStackFile, readStackFile } from "../stacks";
import { builtPulumiVersion } from "../tools/pulumi-cli";
import { RUNNER, runToEnd } from "./helpers/cli";
import { readJson, ROOT } from "./helpers/load";
import { EngineRig, REAL_ENGINE_MISSING, startEngineRig, TEST_SSH_PUBLIC_KEY } from "./helpers/real-engine";

/**
 * The real Pulumi engine (the CLI built at the pinned SDK's version) on every shipped stack file,
 * as a user has it: the CLI validates the config against Pulumi.yaml, the program runs inline
 * through the Automation API, and the STAND-IN provider plugins (test/helpers/stand-in-plugins)
 * answer for the providers, which CI cannot have. So this sees what the engine decides (config
 * requiredness, types and secrets, which resources the program registers, errors as a user reads
 * them) and nothing a real provider would (docs/pulumi-engine.md).
 */

const missing = REAL_ENGINE_MISSING;
const CI = process.env.CI === "true";
if (missing) console.warn(`real-engine tests skipped: ${missing}`);

// In CI a missing CLI is a failure: the suite would otherwise silently lose its real-engine checks.
it.runIf(Boolean(missing) && CI)("the Pulumi CLI is built (required in CI)", () => {
  expect(missing).toBeUndefined();
});

it.runIf(!missing || CI)("the built Pulumi CLI is the version of the pinned @pulumi/pulumi", () => {
  const pinned = readJson<{ dependencies: Record<string, string> }>(path.join(ROOT, "package.json")).dependencies[
    "@pulumi/pulumi"
  ];
  const installed = readJson<{ version: string }>(path.join(ROOT, "node_modules/@pulumi/pulumi/package.json")).version;
  expect(installed).toBe(pinned);
  expect(builtPulumiVersion()).toBe(pinned);
});

/** A JavaScript stack frame ("    at fn (/path/file.js:12:34)"). */
const STACK_FRAME = /^\s+at .*:\d+:\d+\)?$/m;

interface Step {
  readonly op: string;
  readonly urn: string;
  readonly type: string;
}

/**
 * Preview, collecting the engine's steps, the errors it reports (what a user reads under
 * "Diagnostics") and everything it printed; a failure is returned, not thrown.
 */
async function preview(stack: Stack): Promise<{ ok: boolean; steps: Step[]; errors: string; output: string }> {
  const steps: Step[] = [];
  let errors = "";
  let output = "";
  const onEvent = (e: EngineEvent) => {
    if (e.resourcePreEvent) steps.push(e.resourcePreEvent.metadata);
    if (e.diagnosticEvent?.severity === "error") errors += e.diagnosticEvent.message;
  };
  try {
    await stack.preview({ onEvent, onOutput: (line) => (output += line) });
    return { ok: true, steps, errors, output };
  } catch (err) {
    return { ok: false, steps, errors, output: `${output}\n${(err as Error).message}` };
  }
}

/** The resources the program registers, by URN: the stack and the engine's default providers are the engine's own. */
const programUrns = (steps: readonly Step[]) =>
  steps
    .filter(
      (s) =>
        s.type !== "pulumi:pulumi:Stack" &&
        !(s.type.startsWith("pulumi:providers:") && /::default(_\d+)*$/.test(s.urn)),
    )
    .map((s) => s.urn)
    .sort();

describe.skipIf(Boolean(missing))(
  "every shipped stack, previewed by the real Pulumi engine (stand-in providers)",
  { timeout: 300_000 },
  () => {
    let rig: EngineRig;
    beforeAll(async () => {
      rig = await startEngineRig();
    }, 120_000);
    afterAll(() => rig?.close());

    const stackFile = (name: string) => path.join(rig.projectDir, `Pulumi.${name}.yaml`);

    const SHIPPED: {
      label: string;
      stack: string;
      from?: string;
      settings?: Record<string, string>;
      /** A URN the setting must add. */
      registers?: RegExp;
    }[] = [
      { label: "cpu", stack: "cpu" },
      { label: "gpu", stack: "gpu" },
      { label: "hybrid (GPU off)", stack: "hybrid" },
      // The hybrid file as a user turns the GPU on, as its own comment says: pulumi config set gpuEnabled true
      { label: "hybrid with the GPU on", stack: "hybrid-on", from: "hybrid", settings: { gpuEnabled: "true" } },
      // No shipped file turns the sandbox on: its node, firewall and exporter, as `pulumi config set sandbox on` would.
      {
        label: "cpu with the sandbox on",
        stack: "cpu-sandbox",
        from: "cpu",
        settings: { sandbox: "on" },
        registers: /::sandbox-node-exporter$/,
      },
      { label: "multigpu", stack: "multigpu" },
      { label: "local", stack: "local" },
      // Not k8s: the stand-ins cannot serve @pulumi/kubernetes (yaml/v2 ConfigFile is a component the
      // real plugin constructs by fetching the manifest; no replacement rules for its kinds). Its
      // objects go through a real kube-apiserver instead (test/k8s-apiserver.test.ts); docs/kubernetes.md.
    ];

    // One stack each, so the engine previews them side by side (the Automation API keeps inline programs apart).
    describe.concurrent("as shipped", () => {
      for (const shipped of SHIPPED) {
        it(`${shipped.label}: the CLI takes the stack file as shipped, and the engine registers exactly what the offline plan shows`, async () => {
          if (shipped.from) copyFileSync(stackFile(shipped.from), stackFile(shipped.stack));
          const stack = await rig.stack(shipped.stack);
          for (const [key, value] of Object.entries(shipped.settings ?? {})) await stack.setConfig(key, { value });
          const result = await preview(stack);
          expect(result.output).not.toMatch(/missing configuration value/);
          expect(result.ok, result.output).toBe(true);
          expect(result.steps.every((s) => s.op === "create")).toBe(true);
          if (shipped.registers)
            expect(programUrns(result.steps).some((urn) => shipped.registers!.test(urn))).toBe(true);

          // The offline plan (Pulumi's mock engine) of the same file, as `npm run plan` prints it.
          const planRun = await runToEnd(process.execPath, [
            RUNNER,
            "plan",
            "--config-file",
            stackFile(shipped.stack),
            "--json",
          ]);
          expect(planRun.status, planRun.stderr).toBe(0);
          const plan = JSON.parse(planRun.stdout) as { resources: { urn: string }[] };
          expect(programUrns(result.steps)).toEqual(plan.resources.map((r) => r.urn).sort());
        });
      }
    });

    it("Pulumi.yaml's declared defaults change nothing a tier preset decides (the config the CLI hands the program)", async () => {
      for (const name of ["cpu", "gpu", "hybrid", "multigpu", "local", "k8s"]) {
        const stack = await rig.stack(name);
        // What the CLI hands the program: the stack file's keys plus Pulumi.yaml's defaults.
        const engine = Object.fromEntries(Object.entries(await stack.getAllConfig()).map(([k, v]) => [k, v.value]));
        const fromEngine = loadHubConfig(engine);
        const file = readStackFile(readFileSync(stackFile(name), "utf8"), name);
        if (!file.ok || !fromEngine.ok) throw new Error(`${name} does not load`);
        const fromFile = loadStackFile(file.file);
        if (!fromFile.ok) throw new Error(`${name} does not load from its file`);
        expect(Object.keys(engine).length, name).toBeGreaterThan(Object.keys(file.file.config).length);
        expect(fromEngine.config, name).toEqual(fromFile.config);
      }
    });

    it("refuses a secret setting stored in the clear, without showing it, and takes it encrypted", async () => {
      const value = "clear-text-hub-key-0123456789";
      writeFileSync(
        stackFile("clear-secret"),
        `config:\n  inference-hub:tier: local\n  inference-hub:hubApiKey: ${value}\n`,
      );
      const stack = await rig.stack("clear-secret");
      const refused = await preview(stack);
      expect(refused.ok).toBe(false);
      expect(refused.errors).toMatch(/hubApiKey = \(not shown\): is a secret setting stored in the clear/);
      expect(refused.output).not.toContain(value);
      expect(refused.errors).not.toMatch(STACK_FRAME);

      await stack.removeConfig("hubApiKey");
      await stack.setConfig("hubApiKey", { value, secret: true });
      expect(readFileSync(stackFile("clear-secret"), "utf8")).not.toContain(value);
      const taken = await preview(stack);
      expect(taken.ok, taken.output).toBe(true);
      expect(taken.output).not.toContain(value);
    });

    it("refuses a wrong type: the CLI itself for a declared setting, the program for the others, both naming the setting", async () => {
      writeFileSync(
        stackFile("bad-types"),
        "config:\n  inference-hub:tier: local\n  inference-hub:rateLimitPerMinute: lots\n",
      );
      const declared = await preview(await rig.stack("bad-types"));
      expect(declared.ok).toBe(false);
      expect(declared.output).toMatch(/configuration key 'rateLimitPerMinute' must be of type 'integer'/);

      writeFileSync(
        stackFile("bad-types"),
        "config:\n  inference-hub:tier: local\n  inference-hub:cpuCacheGiB: lots\n",
      );
      const undeclared = await preview(await rig.stack("bad-types"));
      expect(undeclared.ok).toBe(false);
      expect(undeclared.errors).toMatch(/cpuCacheGiB = "lots": is not a whole number/);
      expect(undeclared.errors).not.toMatch(STACK_FRAME);
    });

    it("k8s: a failed lookup of the region's DOKS versions shows its cause, no stack trace, before anything of the cluster", async () => {
      // What the real digitalocean provider answers without network (its getSshKeys answer, docs/pulumi-engine.md), for this invoke.
      const message =
        'invoking digitalocean:index/getKubernetesVersions:getKubernetesVersions: 1 error occurred:\n\t* Error retrieving Kubernetes versions: Get "https://api.digitalocean.com/v2/kubernetes/options": dial tcp: lookup api.digitalocean.com on 10.255.255.53:53: no such host\n\n';
      const stack = await rig.stack("k8s", {
        env: {
          STAND_IN_FAIL_INVOKE: JSON.stringify({
            token: "digitalocean:index/getKubernetesVersions:getKubernetesVersions",
            message,
          }),
        },
      });
      const result = await preview(stack);
      expect(result.ok).toBe(false);
      expect(result.errors).toMatch(
        /stack k8s: could not list the DOKS versions tor1 offers \(Error retrieving Kubernetes versions: [^\n]*no such host\)\. Check DIGITALOCEAN_TOKEN/,
      );
      expect(result.errors).not.toMatch(STACK_FRAME);
      expect(
        result.steps.filter((s) => s.type.startsWith("digitalocean:") || s.type.startsWith("kubernetes:")),
      ).toEqual([]);
    });

    it("shows the cause of a failed provider call, not only its first line, and no stack trace", async () => {
      // The real digitalocean provider's answer without network or token, from the deploy rehearsal (docs/pulumi-engine.md).
      const message =
        'invoking digitalocean:index/getSshKeys:getSshKeys: 1 error occurred:\n\t* Unable to load records: Error retrieving ssh keys: Get "https://api.digitalocean.com/v2/account/keys?page=1&per_page=200": dial tcp: lookup api.digitalocean.com on 10.255.255.53:53: no such host\n\n';
      writeFileSync(
        stackFile("no-account"),
        `config:\n  inference-hub:tier: cpu\n  inference-hub:sshPublicKey: ${TEST_SSH_PUBLIC_KEY}\n`,
      );
      const stack = await rig.stack("no-account", {
        env: { STAND_IN_FAIL_INVOKE: JSON.stringify({ token: "digitalocean:index/getSshKeys:getSshKeys", message }) },
      });
      const result = await preview(stack);
      expect(result.ok).toBe(false);
      expect(result.errors).toMatch(
        /could not list the DigitalOcean account's SSH keys[^\n]*\(Unable to load records: [^\n]*no such host\)/,
      );
      expect(result.errors).not.toMatch(STACK_FRAME);
    });
  },
);
