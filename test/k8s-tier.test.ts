import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { chooseDoksVersion } from "../infra/kubernetes/cluster";
import { kubernetesManifests, kubernetesSpecs } from "../infra/kubernetes/manifests";
import { KubeObject, NAME_LABEL } from "../infra/kubernetes/model";
import { kubernetesColdStart } from "../infra/kubernetes/scaling";
import { filesUnder, isFilesMount } from "../infra/kubernetes/workloads";
import { routeTable } from "../services/routes";
import { METRIC_NAMES as GATEKEEPER_METRICS, OUTCOMES } from "../programs/gatekeeper/metrics";
import { servingModel } from "../programs/autoscaler/serving-model";
import { findCpuSize, findGpuSize, HOURS_PER_MONTH } from "../stacks/catalogue/droplets";
import { DOKS_PRICES } from "../stacks/catalogue/kubernetes";
import { VOLUME_PRICE_PER_GIB_MONTH } from "../stacks/catalogue/storage";
import { DOKS_NODE_RESERVED_GIB } from "../stacks/kubernetes";
import { loadSettings, mustLoad } from "./helpers/load";
import { runProgram } from "./helpers/mock-run";
import { cfg } from "./helpers/recording-ops";
import { decideGpu, decideTier } from "../cli/hub/decisions";
import { PROMTOOL_BINARY, runToolAsync } from "./helpers/prometheus-tools";
import { KEDA_FORMULA_BINARY } from "../tools/kube";
import { standInVolumeIds } from "./helpers/k8s-volume-ids";

/** The k8s tier as a user meets it: what the plan accepts and refuses, what it costs, what it exposes and where its secrets go. */

const render = (settings: Record<string, unknown>) => {
  const hub = mustLoad(settings);
  return {
    hub,
    ...kubernetesManifests({
      hub,
      secrets: { alertSmtpPassword: false, alertWebhookUrl: false },
      volumeIds: standInVolumeIds(hub),
    }),
  };
};
const of = (objects: readonly KubeObject[], kind: string) => objects.filter((o) => o.kind === kind) as any[];
const problemKeys = (settings: Record<string, unknown>) => {
  const r = loadSettings(settings);
  return r.ok ? [] : r.problems.map((p) => p.keys.join(","));
};
const miB = (q: string) => Number(/^(\d+)Mi$/.exec(q)?.[1] ?? NaN);

describe("fit", () => {
  it("packs the CPU pods onto as many CPU-pool nodes as their memory requests need, each node within what DOKS leaves for pods", () => {
    for (const settings of [
      { tier: "k8s" },
      { tier: "k8s", ocrEngine: "docling", cpuSize: "s-8vcpu-16gb" },
      { tier: "k8s", ocrCpuFallback: true },
    ]) {
      const { hub, objects } = render(settings);
      const pool = hub.kubernetes!.cpuPool;
      const allocatableMiB = (findCpuSize(pool.size)!.ramGiB - DOKS_NODE_RESERVED_GIB) * 1024;
      const requests = of(objects, "Deployment").map((d) =>
        miB(d.spec.template.spec.containers[0].resources.requests.memory),
      );
      // Every pod fits a node, and together they fit the nodes planned (the rendered requests, not the plan's own sum).
      for (const r of requests) expect(r).toBeLessThanOrEqual(allocatableMiB);
      expect(requests.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(pool.nodes * allocatableMiB);
      expect(requests.reduce((a, b) => a + b, 0)).toBeGreaterThan((pool.nodes - 1) * allocatableMiB);
    }
  });

  it("refuses a CPU pool node too small for one service, naming cpuSize", () => {
    expect(
      problemKeys({
        tier: "k8s",
        ttsModel: "tts_models/multilingual/multi-dataset/xtts_v2",
        ttsAcceptModelLicense: true,
      }),
    ).toContain("cpuSize");
    expect(
      problemKeys({
        tier: "k8s",
        ttsModel: "tts_models/multilingual/multi-dataset/xtts_v2",
        ttsAcceptModelLicense: true,
        cpuSize: "s-8vcpu-16gb",
      }),
    ).toEqual([]);
  });

  it("checks the GPU fit as the droplet tiers do, with DOKS's 8-GPU pools allowed", () => {
    expect(
      problemKeys({ tier: "k8s", gpuSize: "gpu-l40sx1-48gb", llmQuantization: "none", ocrEngine: "none" }),
    ).toContain("llmModel,llmQuantization,gpuSize");
    expect(
      problemKeys({
        tier: "k8s",
        gpuSize: "gpu-h100x8-640gb",
        llmTensorParallelSize: 8,
        ocrEngine: "none",
        budgetUsd: 50000,
      }),
    ).toEqual([]);
  });
});

describe("refusals and warnings", () => {
  it("refuses GPU sizes DOKS does not offer self-serve, and settings that belong to the droplet pipeline", () => {
    expect(problemKeys({ tier: "k8s", region: "nyc2", gpuSize: "gpu-h200x1-141gb" })).toContain("gpuSize,tier");
    expect(problemKeys({ tier: "k8s", gpuEnabled: false })).toContain("gpuEnabled,tier");
    expect(problemKeys({ tier: "k8s", gpuWindows: ["mon-fri 08:00-18:00 UTC"] })).toContain("gpuWindows,tier");
    expect(problemKeys({ tier: "k8s", gpuPinNodes: 1, gpuPinUntil: "2030-01-01T00:00:00Z" })).toContain(
      "gpuPinNodes,gpuPinUntil,tier",
    );
    expect(problemKeys({ tier: "k8s", gpuMinNodes: 3, gpuMaxNodes: 2 })).toContain("gpuMinNodes,gpuMaxNodes");
    expect(problemKeys({ tier: "k8s", gpuSize: "gpu-h100x1-80gb", region: "atl1" })).toContain("gpuSize,region");
    expect(problemKeys({ tier: "k8s", sandbox: "on" })).toContain("sandbox,tier");
  });

  it("warns at gpuMinNodes 0, citing both of DigitalOcean's answers; not at 1", () => {
    const zero = mustLoad({ tier: "k8s" }).warnings.find((w) => w.keys.includes("gpuMinNodes"));
    expect(zero?.message).toMatch(/min_nodes 0/);
    expect(zero?.message).toMatch(/preview/);
    expect(
      mustLoad({ tier: "k8s", gpuMinNodes: 1, budgetUsd: 5000 }).warnings.some((w) => w.keys.includes("gpuMinNodes")),
    ).toBe(false);
  });

  it("asks for no SSH key and says nothing about SSH: a cluster has no node to log in to", () => {
    const hub = mustLoad({ tier: "k8s" });
    expect(hub.warnings.some((w) => w.keys.includes("sshPublicKey") || w.keys.includes("adminCidrs"))).toBe(false);
  });

  it("refuses a month above the budget, with the cluster's own lines in the breakdown", () => {
    const r = loadSettings({ tier: "k8s", budgetUsd: 300 });
    expect(r.ok).toBe(false);
    const budget = !r.ok ? r.problems.find((p) => p.keys.includes("budgetUsd")) : undefined;
    expect(budget?.message).toMatch(/Load balancer \$12\.00/);
    expect(budget?.message).toMatch(/Kubernetes control plane \$0\.00/);
  });

  it("picks the catalogue's DOKS minor, else the nearest newer one (said so), never an older one", () => {
    expect(chooseDoksVersion(["1.35.6-do.0", "1.36.1-do.0", "1.36.3-do.1", "1.37.0-do.0"], "1.36")).toEqual({
      ok: true,
      version: "1.36.3-do.1",
    });
    const newer = chooseDoksVersion(["1.35.6-do.0", "1.38.1-do.0", "1.37.2-do.0"], "1.36");
    expect(newer).toMatchObject({ ok: true, version: "1.37.2-do.0" });
    expect(newer.ok && newer.note).toMatch(/1\.36 is no longer offered/);
    expect(chooseDoksVersion(["1.34.1-do.0", "1.35.6-do.0"], "1.36")).toMatchObject({ ok: false });
  });
});

describe("cost", () => {
  it("adds up the control plane, the CPU pool, the load balancer, the GPU node-hours and every volume at catalogue prices", () => {
    const hub = mustLoad({ tier: "k8s" });
    const k = hub.kubernetes!;
    const cpu = findCpuSize(k.cpuPool.size)!;
    const gpu = findGpuSize(k.gpuPool.size)!;
    const volumesGiB =
      hub.modelCache.volumes * hub.modelCache.sizeGiB +
      hub.cpuNode.cacheGiB +
      k.statePvcs.reduce((s, v) => s + v.sizeGiB, 0);
    const expected =
      k.cpuPool.nodes * cpu.pricePerMonth +
      DOKS_PRICES.loadBalancerNodeMonthlyUsd +
      gpu.pricePerHour * hub.settings.gpuHoursPerMonth * hub.settings.gpuCount +
      volumesGiB * VOLUME_PRICE_PER_GIB_MONTH;
    expect(hub.cost.monthlyUsd).toBeCloseTo(expected, 2);
  });

  it("bills a GPU floor all month", () => {
    const hub = mustLoad({ tier: "k8s", gpuMinNodes: 2, gpuMaxNodes: 4, budgetUsd: 10000 });
    expect(hub.cost.lines.find((l) => l.item === "GPU nodes")?.monthlyUsd).toBeCloseTo(
      2 * HOURS_PER_MONTH * findGpuSize("gpu-h100x1-80gb")!.pricePerHour,
      2,
    );
  });
});

describe("moving from hybrid", () => {
  it("`npm run hub -- tier k8s` keeps the region and the model cache size and drops the on-demand settings; `gpu on` says KEDA decides", () => {
    const d = decideTier(
      cfg({ tier: "hybrid", gpuEnabled: "true", gpuHoursPerMonth: "60", modelCacheGiB: "300" }),
      "k8s",
    );
    expect(d.ok && d.changes).toEqual({
      "inference-hub:tier": "k8s",
      "inference-hub:region": "tor1",
      "inference-hub:gpuEnabled": null,
      "inference-hub:gpuHoursPerMonth": null,
    });
    expect(d.ok && d.after.modelCache.sizeGiB).toBe(300);
    const gpu = decideGpu(cfg({ tier: "k8s" }), true);
    expect(!gpu.ok && gpu.reason).toMatch(/KEDA/);
  });

  it("keeps every volume: the same resources, names, sizes and protection, now bound by id to the StatefulSet's claims", async () => {
    const volumes = (run: Awaited<ReturnType<typeof runProgram>>) =>
      new Map(
        run
          .byType("digitalocean:index/volume:Volume")
          .map((v) => [
            v.urn,
            { inputs: v.inputs, protect: v.options.protect, retain: v.options.retainOnDelete, id: v.id },
          ]),
      );
    const hybrid = volumes(await runProgram({ tier: "hybrid", gpuMaxNodes: 4 }, { stack: "move" }));
    const k8sRun = await runProgram({ tier: "k8s" }, { stack: "move" });
    const k8s = volumes(k8sRun);
    // Same URNs and inputs: Pulumi sees no change to any volume when the tier changes; k8s adds
    // one volume per state claim (what hybrid keeps on its CPU cache), protected the same way.
    const added = [...k8s.keys()].filter((urn) => !hybrid.has(urn));
    expect(added.map((urn) => urn.split("::").pop()).sort()).toEqual([
      "storage-state-alertmanager",
      "storage-state-autoscaler",
      "storage-state-grafana",
      "storage-state-prometheus",
    ]);
    for (const urn of added) expect(k8s.get(urn)!.protect && k8s.get(urn)!.retain, urn).toBe(true);
    for (const [urn, v] of hybrid) {
      expect(k8s.get(urn), urn).toEqual(v);
      expect(v.protect && v.retain, urn).toBe(true);
    }
    // Each model cache is bound to its claim by the volume's id, and never formatted.
    const pvs = k8sRun.byType("kubernetes:core/v1:PersistentVolume").map((r) => r.rawInputs as any);
    const ids = [...k8s.values()].map((v) => v.id);
    for (const pv of pvs) {
      expect(ids, pv.metadata.name).toContain(pv.spec.csi.volumeHandle);
      expect(pv.spec.csi.volumeAttributes).toEqual({ "com.digitalocean.csi/noformat": "true" });
      expect(pv.spec.persistentVolumeReclaimPolicy).toBe("Retain");
    }
    expect(pvs.map((pv) => pv.spec.claimRef.name).sort()).toEqual([
      "alertmanager-state",
      "autoscaler-state",
      "cpu-cache",
      "grafana-state",
      "model-cache-coder-0",
      "model-cache-coder-1",
      "model-cache-coder-2",
      "model-cache-coder-3",
      "prometheus-state",
    ]);
    // Destroying the cluster leaves what was attached to it (DigitalOcean's "associated resources": volumes among them).
    expect(
      k8sRun
        .byType("digitalocean:index/kubernetesCluster:KubernetesCluster")
        .map((c) => c.inputs.destroyAllAssociatedResources),
    ).toEqual([false]);
    // No claim is left to dynamic provisioning: its volume would outlive the cluster outside the stack, unlisted by hub down.
    for (const pvc of k8sRun.byType("kubernetes:core/v1:PersistentVolumeClaim").map((r) => r.rawInputs as any))
      expect(pvc.spec.volumeName, pvc.metadata.name).toBeTruthy();
  }, 120_000);
});

describe("files", () => {
  it("every directory a service mounts read-only receives the files the droplet tiers write there", () => {
    for (const settings of [
      { tier: "k8s" },
      { tier: "k8s", domain: "hub.example.com", acmeEmail: "ops@example.com", ocrEngine: "docling" },
    ]) {
      const { hub, files } = render(settings);
      for (const spec of kubernetesSpecs(hub)) {
        for (const m of spec.mounts.filter(isFilesMount))
          expect(
            filesUnder(m.hostPath, files).plain.length + filesUnder(m.hostPath, files).secret.length,
            `${spec.name}: ${m.hostPath}`,
          ).toBeGreaterThan(0);
      }
    }
  });
});

describe("exposure", () => {
  it("publishes only the load balancer's 80 and 443, to the gateway's pods; no NodePort, host port or host network anywhere", () => {
    for (const settings of [
      { tier: "k8s" },
      { tier: "k8s", domain: "hub.example.com", acmeEmail: "ops@example.com" },
    ]) {
      const { objects } = render(settings);
      const services = of(objects, "Service");
      const exposed = services.filter((s) => s.spec.type !== "ClusterIP");
      expect(exposed.map((s) => s.metadata.name)).toEqual(["gateway-public"]);
      expect(exposed[0].spec.type).toBe("LoadBalancer");
      expect(exposed[0].spec.ports.map((p: any) => p.port).sort()).toEqual([443, 80]);
      expect(exposed[0].spec.selector).toEqual({ [NAME_LABEL]: "gateway" });
      expect(objects.some((o) => o.kind === "Ingress")).toBe(false);
      for (const w of [...of(objects, "Deployment"), ...of(objects, "StatefulSet")]) {
        const pod = w.spec.template.spec;
        expect(pod.hostNetwork ?? false, w.metadata.name).toBe(false);
        for (const c of pod.containers)
          for (const p of c.ports ?? []) expect(p.hostPort, `${w.metadata.name}/${c.name}`).toBeUndefined();
      }
    }
  });

  it("every Service reference in the CRDs and the file remainder names a rendered Service and one of its ports, and every Service selects pods", () => {
    const { objects, traefik } = render({ tier: "k8s" });
    const ports = new Map(
      of(objects, "Service").map((s) => [s.metadata.name, new Set(s.spec.ports.map((p: any) => p.port))]),
    );
    const refs: { name: string; port: number; where: string }[] = [];
    for (const r of of(objects, "IngressRoute"))
      for (const route of r.spec.routes)
        for (const s of route.services) if (s.kind !== "TraefikService") refs.push({ ...s, where: r.metadata.name });
    for (const m of of(objects, "Middleware"))
      if (m.spec.errors) refs.push({ ...m.spec.errors.service, where: m.metadata.name });
    // forwardAuth asks the gatekeeper by its Service's name on its TLS port (the certificate names it).
    const auths = of(objects, "Middleware").filter((m) => m.spec.forwardAuth);
    expect(auths.length).toBeGreaterThan(2);
    for (const m of auths) {
      const u = new URL(m.spec.forwardAuth.address);
      expect(u.protocol, m.metadata.name).toBe("https:");
      refs.push({ name: u.hostname, port: Number(u.port), where: m.metadata.name });
    }
    for (const [name, svc] of Object.entries(traefik.fileConfig.http.services))
      for (const s of svc.loadBalancer?.servers ?? []) {
        const u = new URL(s.url);
        refs.push({ name: u.hostname, port: Number(u.port), where: `file ${name}` });
      }
    expect(refs.length).toBeGreaterThan(10);
    for (const ref of refs)
      expect(ports.get(ref.name)?.has(ref.port), `${ref.where} → ${ref.name}:${ref.port}`).toBe(true);
    const podLabels = [...of(objects, "Deployment"), ...of(objects, "StatefulSet")].map(
      (w) => w.spec.template.metadata.labels,
    );
    for (const s of of(objects, "Service"))
      expect(
        podLabels.some((l) => Object.entries(s.spec.selector).every(([k, v]) => l[k] === v)),
        s.metadata.name,
      ).toBe(true);
  });
});

describe("secrets", () => {
  const SECRETS = {
    hubApiKey: "hubkey-0123456789abcdefghijklmnopqrstuvwxyzABCDEF",
    auditDatabaseUrl: "postgres://audit:s3cr3t-pw@db.example.com/audit",
    apiKeys: JSON.stringify({ version: 1, keys: [] }),
    alertWebhookUrl: "https://hooks.example.com/T0/B0/webhooksecrettoken",
    autoscalerBillingToken: "dop_v1_billingsecrettoken",
  };

  it("reach the cluster only as Kubernetes Secrets made from Pulumi secrets, never in another object, a plan view or a rendered file", async () => {
    const run = await runProgram({ tier: "k8s" }, { secrets: SECRETS });
    // The gatekeeper's TLS key, as the (stand-in) tls provider made it, is in its Secret: and, like the others, nowhere else.
    const tlsSecret = run.resources.find(
      (r) => r.rawInputs.kind === "Secret" && (r.rawInputs.metadata as { name: string }).name === "gatekeeper-tls",
    );
    const tlsKey = (tlsSecret?.rawInputs.stringData as Record<string, string> | undefined)?.["tls.key"];
    expect(tlsKey).toMatch(/^-----BEGIN [A-Z ]*PRIVATE KEY-----\n/);
    const keyBody = tlsKey!.split("\n")[1];
    expect(keyBody.length).toBeGreaterThan(20);
    const values = [SECRETS.hubApiKey, "s3cr3t-pw", "webhooksecrettoken", "dop_v1_billingsecrettoken", keyBody];
    const kube = run.resources.filter((r) => r.type.startsWith("kubernetes:"));
    const inSecrets = kube.filter((r) => r.rawInputs.kind === "Secret");
    // The values do flow, and only into Secrets (the check could fail).
    for (const v of values) expect(JSON.stringify(inSecrets.map((r) => r.rawInputs)), v).toContain(v);
    for (const r of kube.filter((x) => x.rawInputs.kind !== "Secret"))
      for (const v of values) expect(JSON.stringify(r.rawInputs), `${r.name}`).not.toContain(v);
    // The plan's view of every resource, and every rendered file, shows none of them.
    for (const r of run.resources) for (const v of values) expect(JSON.stringify(r.inputs), r.name).not.toContain(v);
    for (const a of run.artifacts) for (const v of values) expect(a.content, a.path).not.toContain(v);
    for (const line of run.engineLog) for (const v of values) expect(line).not.toContain(v);
    // The certificate's digest rolls the gatekeeper's pod when the pair is renewed (a Secret's new value reaches no running environment).
    const cert = (tlsSecret?.rawInputs.stringData as Record<string, string> | undefined)?.["tls.crt"];
    expect(cert).toMatch(/^-----BEGIN CERTIFICATE-----\n/);
    const gatekeeper = kube.find(
      (r) => r.rawInputs.kind === "Deployment" && (r.rawInputs.metadata as { name: string }).name === "gatekeeper",
    )?.rawInputs as any;
    expect(gatekeeper.spec.template.metadata.annotations["inference-hub/tls-cert-sha256"]).toBe(
      createHash("sha256")
        .update(cert ?? "")
        .digest("hex"),
    );
  }, 60_000);

  it("every secret a spec asks for reaches its container by reference to the Secret, never as a value", () => {
    const { hub, objects } = render({ tier: "k8s" });
    const containers = new Map(
      [...of(objects, "Deployment"), ...of(objects, "StatefulSet")]
        .flatMap((w) => w.spec.template.spec.containers)
        .map((c: any) => [c.name, c]),
    );
    let checked = 0;
    for (const spec of kubernetesSpecs(hub)) {
      for (const [variable, secret] of Object.entries(spec.secretEnv)) {
        const env = containers.get(spec.name).env.find((e: any) => e.name === variable);
        // The gatekeeper's forwardAuth pair is a kubernetes.io/tls Secret's tls.crt and tls.key; every other secret is hub-secrets'.
        const where = {
          gatekeeperTlsCert: { name: "gatekeeper-tls", key: "tls.crt" },
          gatekeeperTlsKey: { name: "gatekeeper-tls", key: "tls.key" },
        }[secret as string] ?? { name: "hub-secrets", key: secret };
        expect(env, `${spec.name} ${variable}`).toEqual({ name: variable, valueFrom: { secretKeyRef: where } });
        checked++;
      }
    }
    expect(checked).toBeGreaterThanOrEqual(7);
    // Every reference names a key the rendered Secret has, and the pair sits in no ConfigMap.
    const secrets = new Map(of(objects, "Secret").map((s) => [s.metadata.name, s]));
    for (const c of containers.values())
      for (const e of c.env ?? [])
        if (e.valueFrom?.secretKeyRef) {
          const { name, key } = e.valueFrom.secretKeyRef;
          expect(Object.keys(secrets.get(name)?.stringData ?? {}), `${c.name} ${e.name} → ${name}/${key}`).toContain(
            key,
          );
        }
    const tls = secrets.get("gatekeeper-tls");
    expect(tls.type).toBe("kubernetes.io/tls");
    expect(tls.stringData).toEqual({
      "tls.crt": { secretRef: "gatekeeperTlsCert" },
      "tls.key": { secretRef: "gatekeeperTlsKey" },
      "ca.crt": { secretRef: "gatekeeperTlsCert" },
    });
    expect(JSON.stringify(of(objects, "ConfigMap"))).not.toMatch(/gatekeeperTls/);
  });

  it("Traefik pins the gatekeeper's certificate through the CRD's tls.caSecret, and the gatekeeper listens on its TLS port", () => {
    const { objects } = render({ tier: "k8s" });
    const auths = of(objects, "Middleware").filter((m) => m.spec.forwardAuth);
    for (const m of auths) expect(m.spec.forwardAuth.tls, m.metadata.name).toEqual({ caSecret: "gatekeeper-tls" });
    const gatekeeper = of(objects, "Deployment").find((d) => d.metadata.name === "gatekeeper").spec.template.spec
      .containers[0];
    expect(gatekeeper.ports.map((p: any) => p.containerPort)).toEqual(expect.arrayContaining([8080, 8443]));
    expect(gatekeeper.env.find((e: any) => e.name === "GATEKEEPER_TLS_PORT")?.value).toBe("8443");
  });
});

describe("scaling", () => {
  const { hub, objects } = render({ tier: "k8s" });
  const scaled = of(objects, "ScaledObject")[0];

  it("keeps KEDA's cooldown and scale-down window above the modelled cold start on DOKS (catalogue figures)", () => {
    // A DOKS node goes through these of a droplet's wake stages: no deploy pipeline, no cloud-init.
    const ON_DOKS = ["droplet create", "image pull", "weights from volume", "engine start", "first health check"];
    const model = servingModel(hub);
    if (!model.ok) throw new Error(model.reason);
    const stages = model.model.coldStart.stages;
    for (const name of ON_DOKS)
      expect(
        stages.map((st) => st.name),
        name,
      ).toContain(name);
    const expected = stages.filter((st) => ON_DOKS.includes(st.name)).reduce((sum, st) => sum + st.seconds, 0);
    expect(kubernetesColdStart(hub).totalSeconds).toBeCloseTo(expected, 6);
    expect(scaled.spec.cooldownPeriod).toBeGreaterThan(expected);
    expect(
      scaled.spec.advanced.horizontalPodAutoscalerConfig.behavior.scaleDown.stabilizationWindowSeconds,
    ).toBeGreaterThan(expected);
  });

  it("wakes on the gatekeeper's allowed coder decisions, caps at the budget ceiling and at gpuMaxNodes", () => {
    expect(scaled.spec.scaleTargetRef).toEqual({ apiVersion: "apps/v1", kind: "StatefulSet", name: "coder" });
    expect(scaled.spec.minReplicaCount).toBe(hub.settings.gpuMinNodes);
    expect(scaled.spec.maxReplicaCount).toBe(hub.settings.gpuMaxNodes);
    const demand = scaled.spec.triggers.find((t: any) => t.name === "demand");
    expect(OUTCOMES).toContain("allowed");
    // The gatekeeper's own counter and labels, and the coder route's scope.
    expect(demand.metadata.query).toContain(
      `${GATEKEEPER_METRICS.requests}{scope="${routeTable(hub).find((r) => r.name === "coder")!.scope}",outcome="allowed"}`,
    );
    expect(demand.metadata.query).not.toMatch(/unauthorized|forbidden|rate_limited/);
    expect(scaled.spec.advanced.scalingModifiers.formula).toMatch(/^min\(.*, budget\)$/);
    expect(scaled.spec.triggers.find((t: any) => t.name === "budget").metadata.query).toBe(
      "max(hub_autoscaler_budget_max_replicas)",
    );
  });

  it.runIf(Boolean(PROMTOOL_BINARY) || process.env.CI === "true")(
    "KEDA's three queries are PromQL that promtool accepts",
    async () => {
      const dir = mkdtempSync(path.join(tmpdir(), "k8s-promql-"));
      try {
        const rules = {
          groups: [
            {
              name: "keda",
              rules: scaled.spec.triggers.map((t: any) => ({ record: `hub:keda_${t.name}`, expr: t.metadata.query })),
            },
          ],
        };
        writeFileSync(path.join(dir, "keda.yml"), JSON.stringify(rules));
        const result = await runToolAsync(PROMTOOL_BINARY!, ["check", "rules", path.join(dir, "keda.yml")]);
        expect(result.status, result.output).toBe(0);
        expect(result.output).toMatch(/SUCCESS: 3 rules found/);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );

  it.runIf(existsSync(KEDA_FORMULA_BINARY()) || process.env.CI === "true")(
    "KEDA's own expression library compiles the formula and computes replicas from the three readings, as a float",
    async () => {
      const formula = scaled.spec.advanced.scalingModifiers.formula;
      const evaluate = async (readings: Record<string, number>) => {
        const out = await runToolAsync(KEDA_FORMULA_BINARY(), [formula, JSON.stringify(readings)]);
        expect(out.status, out.output).toBe(0);
        return Number(out.output.trim());
      };
      const model = servingModel(hub);
      if (!model.ok) throw new Error(model.reason);
      const perReplica = model.model.replica.concurrentSequences * (hub.settings.gpuTargetLoadPercent / 100);
      expect(await evaluate({ demand: 0, load: 0, budget: 4 })).toBe(0);
      expect(await evaluate({ demand: 3, load: 0, budget: 4 })).toBe(1);
      expect(await evaluate({ demand: 1, load: 200, budget: 10 })).toBe(Math.ceil(200 / perReplica));
      expect(await evaluate({ demand: 0, load: 100, budget: 2 })).toBe(2);
      expect(await evaluate({ demand: 5, load: 100, budget: 0 })).toBe(0);
    },
  );

  it("points KEDA, in its own namespace, at Prometheus by the name that resolves there: the hub's Service, fully qualified", () => {
    const services = new Map(
      of(objects, "Service").map((s) => [s.metadata.name, s.spec.ports.map((p: any) => p.port)]),
    );
    for (const t of scaled.spec.triggers) {
      const url = new URL(t.metadata.serverAddress);
      const [service, namespace, ...rest] = url.hostname.split(".");
      expect([namespace, ...rest].join("."), url.hostname).toBe("inference-hub.svc.cluster.local");
      expect(services.get(service), service).toContain(Number(url.port));
    }
  });

  it("Prometheus finds the GPU replicas by listing the namespace's pods (its Role allows exactly that)", () => {
    const { files, objects: o } = render({ tier: "k8s" });
    const prom = parse(files.find((f) => f.path.endsWith("/prometheus.yml"))!.content as string);
    const vllm = prom.scrape_configs.find((j: any) => j.job_name === "vllm");
    expect(vllm.kubernetes_sd_configs).toEqual([{ role: "pod", namespaces: { names: ["inference-hub"] } }]);
    expect(prom.scrape_configs.some((j: any) => j.file_sd_configs)).toBe(false);
    expect(of(o, "Role").find((r) => r.metadata.name === "prometheus").rules).toEqual([
      { apiGroups: [""], resources: ["pods"], verbs: ["get", "list", "watch"] },
    ]);
  });
});
