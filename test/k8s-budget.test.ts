import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { budgetReplicaCap } from "../programs/autoscaler/budget-cap";
import { Controller } from "../programs/autoscaler/controller/controller";
import { parseControllerFile } from "../programs/autoscaler/controller/contract";
import { MemoryLogger } from "../programs/autoscaler/controller/log";
import { httpFetcher, parseSeries } from "../programs/autoscaler/controller/signals";
import { JsonStore } from "../programs/autoscaler/controller/store";
import { decide, initialState } from "../programs/autoscaler/decision";
import type { PolicyConfig } from "../programs/autoscaler/types";
import { kubernetesManifests } from "../infra/kubernetes/manifests";
import { controllerFile, demandText, MetricsStandIn } from "./helpers/autoscaler";
import { mustLoad } from "./helpers/load";
import { standInVolumeIds } from "./helpers/k8s-volume-ids";

/**
 * The k8s tier's budget guard: KEDA's ceiling is the controller's budgetReplicaCap, published from
 * its ledger; the ledger counts a StatefulSet slot while its pod exists.
 */

const policy = (p: Partial<PolicyConfig>): PolicyConfig => ({
  minNodes: 0,
  maxNodes: 4,
  idleSeconds: 600,
  targetLoad: 0.8,
  predictive: false,
  windows: [],
  replicaCapacity: 30,
  coldStartSeconds: 600,
  restartCostSeconds: 600,
  nodeHourlyUsd: 3.39,
  gpuBudgetUsd: 500,
  ...p,
});

describe("the budget ceiling", () => {
  it("lets the GPU wake exactly when the droplet controller's decision would wake it", () => {
    fc.assert(
      fc.property(
        fc.double({ min: 0, max: 2000, noNaN: true }),
        fc.double({ min: 0, max: 2000, noNaN: true }),
        fc.double({ min: 0.5, max: 30, noNaN: true }),
        fc.integer({ min: 1, max: 8 }),
        (budget, spent, hourly, max) => {
          const p = policy({ gpuBudgetUsd: budget, nodeHourlyUsd: hourly, maxNodes: max });
          const d = decide(
            p,
            {
              nowMs: Date.parse("2026-12-10T10:00:00Z"),
              nodes: { ready: 0, starting: 0, draining: 0 },
              coderRequests: 1,
              replicas: [],
              monthToDateUsd: spent,
            },
            initialState(0),
          );
          expect(d.wantedNodes >= 1, `${d.reason}: ${d.message}`).toBe(budgetReplicaCap(p, spent) >= 1);
        },
      ),
      { numRuns: 300 },
    );
  });

  it("never passes the budget within the next hour, never goes below the floor, never above the maximum", () => {
    fc.assert(
      fc.property(
        fc.double({ min: 0, max: 5000, noNaN: true }),
        fc.double({ min: 0, max: 5000, noNaN: true }),
        fc.integer({ min: 0, max: 3 }),
        fc.integer({ min: 3, max: 16 }),
        (budget, spent, min, max) => {
          const p = policy({ gpuBudgetUsd: budget, minNodes: min, maxNodes: max });
          const cap = budgetReplicaCap(p, spent);
          expect(cap).toBeGreaterThanOrEqual(min);
          expect(cap).toBeLessThanOrEqual(max);
          if (cap > min) expect(spent + cap * p.nodeHourlyUsd).toBeLessThanOrEqual(budget + 1e-6);
          if (cap < max && spent < budget) expect(spent + (cap + 1) * p.nodeHourlyUsd).toBeGreaterThan(budget);
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe("the controller in the k8s tier", () => {
  let dir: string;
  let traefik: MetricsStandIn;
  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), "k8s-ctl-"));
    traefik = await MetricsStandIn.start(demandText({ allowed: 0 }));
  });
  afterAll(async () => {
    await traefik.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("renders a file the controller accepts: slots for every replica, no dispatch, the tier named", () => {
    const hub = mustLoad({ tier: "k8s" });
    const { files } = kubernetesManifests({
      hub,
      secrets: { alertSmtpPassword: false, alertWebhookUrl: false },
      volumeIds: standInVolumeIds(hub),
    });
    const text = files.find((f) => f.path.endsWith("/autoscaler.json"))!.content as string;
    const file = parseControllerFile(text);
    expect(file).toMatchObject({ tier: "k8s", dispatch: null, kubernetes: { replicaSlots: true } });
    expect(file.replicas.map((r) => new URL(r.healthUrl).hostname)).toEqual(
      [0, 1, 2, 3].map((i) => `coder-${i}.coder-replicas.inference-hub.svc.cluster.local`),
    );
    // The cluster autoscaler's unneeded time (5 min) is billed after a pod goes: the teardown counts it.
    expect(file.timing.destroySeconds).toBeGreaterThanOrEqual(300);
  });

  it("bills only the slots whose pods exist, and publishes the ceiling KEDA reads", async () => {
    let now = Date.parse("2026-12-10T10:00:00Z");
    const hosts = [
      "coder-0.coder-replicas.inference-hub.svc.cluster.local",
      "coder-1.coder-replicas.inference-hub.svc.cluster.local",
    ];
    const file = controllerFile({
      demandUrl: traefik.url,
      tier: "k8s",
      dispatch: null,
      kubernetes: { replicaSlots: true },
      policy: {
        ...controllerFile({ demandUrl: traefik.url }).policy,
        maxNodes: 2,
        nodeHourlyUsd: 3.6,
        gpuBudgetUsd: 10,
      },
      replicas: hosts.map((h, i) => ({
        node: `gpu-${i}`,
        metricsUrl: `http://${h}:8000/metrics`,
        healthUrl: `http://${h}:8000/health`,
      })),
    });
    const configFile = path.join(dir, "autoscaler.json");
    writeFileSync(configFile, JSON.stringify(file));
    const exists = new Set([hosts[0]]);
    const controller = await Controller.start({
      configFile,
      store: new JsonStore(path.join(dir, "state")),
      fetcher: httpFetcher,
      clock: () => now,
      log: new MemoryLogger(),
      resolveHost: async (h) => exists.has(h),
    });
    const gauge = async (name: string) => parseSeries(await controller.metrics.text()).get(name)?.[0]?.value;
    await controller.requestTick();
    now += 3600_000;
    const status = await controller.requestTick();
    // One pod for an hour (plus the node's creation before it appeared): about $3.60 + 120 s, not two nodes' worth.
    expect(status!.ledger.monthToDateUsd).toBeGreaterThan(3.6);
    expect(status!.ledger.monthToDateUsd).toBeLessThan(3.6 * 1.1);
    // $10 budget, ~$3.7 spent, $3.60 per node-hour: one more hour of one node fits, two do not.
    expect(await gauge("hub_autoscaler_budget_max_replicas")).toBe(1);
    now += 2 * 3600_000;
    await controller.requestTick();
    expect(await gauge("hub_autoscaler_budget_max_replicas")).toBe(0);
  });
});
