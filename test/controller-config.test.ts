import { describe, expect, it } from "vitest";
import { parseControllerFile, type ControllerFile } from "../programs/autoscaler/controller/contract";
import { AUTOSCALER_CONTAINER, autoscalerSpec } from "../services/autoscaler";
import { NODE_IMAGE } from "../services/images";
import { gatekeeperSpec } from "../services/auth";
import { planFromText } from "../cli/plan/runner";
import { mustLoad } from "./helpers/load";

/**
 * The controller's config file as the offline plan renders it for each tier (read back with the
 * controller's own parser), its container, its RAM in the CPU node's fit, and the plan's word on
 * advice mode. Expected figures come from the settings and FACTS.md, not from the renderer.
 */

type Settings = Readonly<Record<string, unknown>>;
const stackText = (settings: Settings, secrets: readonly string[] = []) =>
  `config:\n${Object.entries(settings)
    .map(([k, v]) => `  inference-hub:${k}: ${JSON.stringify(v)}`)
    .join("\n")}\n${secrets.map((k) => `  inference-hub:${k}:\n    secure: v1:c3RhbmQtaW4=\n`).join("")}`;

async function plan(settings: Settings, secrets: readonly string[] = []) {
  const result = await planFromText("mine", "Pulumi.mine.yaml", stackText(settings, secrets));
  if (!result.ok) throw new Error(`refused: ${JSON.stringify(result.document.problems)}`);
  const artifact = result.artifacts.find((a) => a.kind === "autoscaler-config");
  const spec = result.artifacts.find((a) => a.path === `cpu/containers/${AUTOSCALER_CONTAINER}.json`);
  const nodes = (result.document.outputs.nodeAddresses ?? {}) as Record<string, { private: string }>;
  return {
    file: artifact ? parseControllerFile(artifact.content) : undefined,
    text: artifact?.content,
    spec: spec
      ? (JSON.parse(spec.content) as { env: Record<string, string>; secretEnv: Record<string, string> })
      : undefined,
    nodes,
    warnings: result.document.warnings,
  };
}

const replicaIps = (file: ControllerFile) => file.replicas.map((r) => new URL(r.healthUrl).hostname);

describe("the controller's rendered config", () => {
  it("hybrid, GPU off: no replicas, the stack's policy, the CPU stand-in noted, advice mode without repo or token", async () => {
    const { file, warnings } = await plan({ tier: "hybrid" });
    expect(file).toBeDefined();
    expect(file!.stack).toBe("mine");
    expect(file!.tier).toBe("hybrid");
    expect(file!.replicas).toEqual([]);
    expect(file!.fallback).toBe(true);
    // hybrid's preset: gpuMinNodes 0, gpuMaxNodes 1, gpuIdleMinutes 10, 80 %; an H100 at $3.39/h (FACTS.md).
    expect(file!.policy).toMatchObject({
      minNodes: 0,
      maxNodes: 1,
      idleSeconds: 600,
      targetLoad: 0.8,
      nodeHourlyUsd: 3.39,
      gpuWindows: [],
    });
    // The budget less the CPU node and the volumes is what the GPU may spend.
    expect(file!.policy.gpuBudgetUsd).toBeLessThan(400);
    expect(file!.policy.gpuBudgetUsd).toBeGreaterThan(250);
    // Demand is the gatekeeper's allowed count, read on the Docker network by container name.
    expect(file!.demand).toEqual({ metricsUrl: "http://gatekeeper:8080/metrics" });
    // The always-on part: the same budget less what the GPU may spend.
    expect(file!.fixedMonthlyUsd).toBeGreaterThan(0);
    expect(file!.dispatch).toBeNull();
    expect(file!.pin).toBeNull();
    const advice = warnings.find((w) => /advice mode/.test(w.message));
    expect(advice?.keys).toEqual(["autoscalerDispatchRepo", "autoscalerDispatchToken"]);
  });

  it("hybrid, GPU on: the replica's vLLM over the VPC at the address the deploy gave it", async () => {
    const { file, nodes } = await plan(
      {
        tier: "hybrid",
        gpuEnabled: true,
        autoscalerDispatchRepo: "acme/inference-hub",
        autoscalerDispatchRef: "deploy",
      },
      ["autoscalerDispatchToken"],
    );
    expect(file!.replicas).toHaveLength(1);
    expect(file!.replicas[0]).toEqual({
      node: "gpu-0",
      metricsUrl: `http://${nodes["gpu-0"].private}:8000/metrics`,
      healthUrl: `http://${nodes["gpu-0"].private}:8000/health`,
    });
    expect(file!.dispatch).toEqual({ repo: "acme/inference-hub", ref: "deploy", workflow: "autoscale.yml" });
  });

  it("acts (no advice warning) once the repository and the token are set, and keeps the token out of the file", async () => {
    const { text, spec, warnings } = await plan({ tier: "hybrid", autoscalerDispatchRepo: "acme/inference-hub" }, [
      "autoscalerDispatchToken",
      "autoscalerBillingToken",
    ]);
    expect(warnings.some((w) => /advice mode/.test(w.message))).toBe(false);
    expect(text).not.toMatch(/secure|c3RhbmQtaW4|\[secret\]/);
    expect(JSON.parse(text!).billingCrossCheck).toBe(true);
    // The tokens reach the container as secret environment only.
    expect(spec!.secretEnv).toEqual({
      AUTOSCALER_DISPATCH_TOKEN: "autoscalerDispatchToken",
      AUTOSCALER_BILLING_TOKEN: "autoscalerBillingToken",
    });
    expect(Object.keys(spec!.env).some((k) => /TOKEN/.test(k))).toBe(false);
  });

  it("gpu, two replicas: both replicas, the floor of 1", async () => {
    const { file, nodes } = await plan({ tier: "gpu", gpuCount: 2, budgetUsd: 6000 });
    expect(file!.tier).toBe("gpu");
    expect(file!.policy.minNodes).toBe(1);
    expect(file!.policy.maxNodes).toBe(2);
    expect(replicaIps(file!).sort()).toEqual([nodes["gpu-0"].private, nodes["gpu-1"].private].sort());
    expect(file!.fallback).toBe(false);
  });

  it("multigpu: deployed too (it holds the one node, keeps the ledger and the off answer), priced at the 8xH200's rate", async () => {
    const { file } = await plan({ tier: "multigpu" });
    expect(file!.tier).toBe("multigpu");
    expect(file!.policy).toMatchObject({ minNodes: 1, maxNodes: 1, nodeHourlyUsd: 27.52 });
  });

  it("cpu tier, or autoscaler false: no controller, no file", async () => {
    for (const settings of [{ tier: "cpu" }, { tier: "hybrid", autoscaler: false }]) {
      const { file, spec } = await plan(settings);
      expect(file, JSON.stringify(settings)).toBeUndefined();
      expect(spec).toBeUndefined();
    }
  });
});

describe("the controller's container", () => {
  it("runs the bundle from the gatekeeper's pinned Node image, 128 MiB, state on the CPU cache volume", () => {
    const hub = mustLoad({ tier: "hybrid" });
    const spec = autoscalerSpec(hub)!;
    expect(spec.image).toEqual(NODE_IMAGE);
    expect(spec.image).toEqual(gatekeeperSpec(hub).image);
    expect(spec.memoryLimitMiB).toBe(128);
    expect(spec.node).toBe("cpu");
    expect(spec.publishOnPrivateIp).toBeUndefined();
    const state = spec.mounts.find((m) => m.containerPath === "/state");
    expect(state?.hostPath.startsWith("/mnt/cpu-cache/")).toBe(true);
    expect(state?.readOnly).toBeFalsy();
    expect(spec.mounts.filter((m) => m.containerPath !== "/state").every((m) => m.readOnly)).toBe(true);
  });

  it("counts in the CPU node's RAM fit", () => {
    const cpu = (settings: Settings) => mustLoad(settings).nodes.find((n) => n.name === "cpu")!;
    const withIt = cpu({ tier: "hybrid" });
    const without = cpu({ tier: "hybrid", autoscaler: false });
    expect(withIt.workloads.find((w) => w.role === "autoscaler")).toMatchObject({
      program: "autoscaler",
      ramGiB: 0.125,
    });
    expect(withIt.ramNeededGiB! - without.ramNeededGiB!).toBeCloseTo(0.125, 6);
  });

  it("is refused on the cpu tier, naming the setting", () => {
    const loaded = (() => {
      try {
        mustLoad({ tier: "cpu", autoscaler: true });
        return "accepted";
      } catch (err) {
        return (err as Error).message;
      }
    })();
    expect(loaded).toMatch(/autoscaler/);
    expect(loaded).toMatch(/nothing to scale/);
  });
});
