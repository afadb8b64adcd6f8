import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { kubernetesManifests } from "../infra/kubernetes/manifests";
import { fillSecrets, KubeObject, NAMESPACE, objectKey } from "../infra/kubernetes/model";
import { GPU_WORKLOAD } from "../infra/kubernetes/workloads";
import { DOKS_RELEASE } from "../stacks/catalogue/kubernetes";
import { builtKubeVersions, KUBERNETES_VERSION } from "../tools/kube";
import { crdTexts } from "./helpers/kube-crds";
import { kubeMissing, statusMessage, TestApiServer } from "./helpers/kube-apiserver";
import { mustLoad } from "./helpers/load";
import { runProgram } from "./helpers/mock-run";
import { standInVolumeIds } from "./helpers/k8s-volume-ids";

/**
 * Every object the k8s tier renders, checked by a real Kubernetes API server (built at the DOKS
 * release's Kubernetes version) with server-side dry-run and strict field validation, after the
 * CRDs it uses (Traefik's, KEDA's) are installed for real from their pinned modules.
 */

const missing = kubeMissing();
if (missing) console.warn(`Kubernetes API server tests skipped: ${missing}`);

it.runIf(Boolean(missing) && process.env.CI === "true")(
  "kube-apiserver, kubectl and etcd are built (required in CI)",
  () => {
    expect.fail(missing);
  },
);

it.runIf(!missing)("the built API server and kubectl are the DOKS release's Kubernetes version", () => {
  const built = builtKubeVersions();
  // The catalogue pins DOKS 1.36.1-do.0; the proxy serves k8s.io/kubernetes at exactly 1.36.1.
  expect(built.apiServer).toBe(`v${DOKS_RELEASE.kubernetes}`);
  expect(built.kubectl).toBe(`v${DOKS_RELEASE.kubernetes}`);
  expect(KUBERNETES_VERSION).toBe(`v${DOKS_RELEASE.kubernetes}`);
  expect(built.etcd).toMatch(/^3\.\d+\.\d+$/);
});

/** Stacks that between them render every kind of object and option the tier has. */
const STACKS: Record<
  string,
  { settings: Record<string, unknown>; secrets?: { alertSmtpPassword: boolean; alertWebhookUrl: boolean } }
> = {
  preset: { settings: { tier: "k8s" } },
  "tls, alerts by e-mail and webhook, docling, a GPU floor": {
    settings: {
      tier: "k8s",
      domain: "hub.example.com",
      acmeEmail: "ops@example.com",
      alertEmail: "ops@example.com",
      alertSmtpSmarthost: "smtp.example.com:587",
      alertSmtpFrom: "hub@example.com",
      alertSmtpUser: "hub",
      ocrEngine: "docling",
      fallbackModel: "none",
      gpuMinNodes: 1,
      budgetUsd: 5000,
    },
    secrets: { alertSmtpPassword: true, alertWebhookUrl: true },
  },
  "8-GPU nodes, no monitoring, no controller": {
    settings: {
      tier: "k8s",
      monitoring: false,
      autoscaler: false,
      gpuSize: "gpu-h100x8-640gb",
      llmTensorParallelSize: 8,
      ocrEngine: "none",
      gpuMaxNodes: 2,
      budgetUsd: 50000,
    },
  },
  "AMD MI300X": { settings: { tier: "k8s", region: "atl1", gpuSize: "gpu-mi300x1-192gb", ocrEngine: "docling" } },
  "LoRA adapters from the hub and the volume": {
    settings: {
      tier: "k8s",
      llmLoraAdapters: ["sql=hf:defog/sqlcoder-lora@16", "mine=volume:adapters/mine@8"],
      llmMaxLoras: 2,
    },
  },
};

const render = (name: string) => {
  const stack = STACKS[name];
  const hub = mustLoad(stack.settings);
  return kubernetesManifests({
    hub,
    secrets: stack.secrets ?? { alertSmtpPassword: false, alertWebhookUrl: false },
    volumeIds: standInVolumeIds(hub),
  });
};
const withStandIns = (o: KubeObject) => fillSecrets(o, (name) => `dry-run stand-in for ${name}`) as KubeObject;

describe.skipIf(Boolean(missing))("a real API server", () => {
  let api: TestApiServer;

  beforeAll(async () => {
    api = await TestApiServer.start();
    for (const { text } of await crdTexts()) await api.installCrds(text);
    // Dry-run needs the namespace to exist.
    const ns = await api.create({ apiVersion: "v1", kind: "Namespace", metadata: { name: NAMESPACE } });
    expect(ns.status).toBe(201);
  }, 600_000);
  afterAll(async () => api?.stop());

  it.each(Object.keys(STACKS))(
    "every object of the %s stack passes dry-run with strict field validation",
    async (name) => {
      const { objects } = render(name);
      const refused: string[] = [];
      for (const o of objects) {
        if (o.kind === "Namespace") continue;
        const answer = await api.dryRun(withStandIns(o));
        if (answer.status !== 201) refused.push(`${objectKey(o)}: ${answer.status} ${statusMessage(answer)}`);
      }
      expect(refused).toEqual([]);
      // The kinds the tier depends on were all there to be checked.
      const kinds = new Set(objects.map((o) => o.kind));
      for (const kind of [
        "Deployment",
        "Service",
        "ConfigMap",
        "Secret",
        "PersistentVolume",
        "PersistentVolumeClaim",
        "IngressRoute",
        "Middleware",
      ])
        expect(kinds).toContain(kind);
      if (name !== "8-GPU nodes, no monitoring, no controller") expect(kinds).toContain("ScaledObject");
    },
    120_000,
  );

  it("refuses what a schema alone lets through: a GPU request unequal to its limit, an unknown field, a CEL-checked ScaledObject", async () => {
    const { objects } = render("preset");
    const sts = structuredClone(withStandIns(objects.find((o) => o.kind === "StatefulSet")!)) as any;
    sts.spec.template.spec.containers[0].resources.limits["nvidia.com/gpu"] = 2;
    const gpu = await api.dryRun(sts);
    expect(gpu.status).toBe(422);
    expect(statusMessage(gpu)).toMatch(/nvidia\.com\/gpu/);

    const route = structuredClone(objects.find((o) => o.kind === "IngressRoute")!) as any;
    route.spec.routes[0].servces = route.spec.routes[0].services;
    const strict = await api.dryRun(route);
    expect(strict.status).toBe(400);
    expect(statusMessage(strict)).toMatch(/unknown field/);

    // KEDA's CRD refuses a ScaledObject without its scale target.
    const scaled = structuredClone(objects.find((o) => o.kind === "ScaledObject")!) as any;
    delete scaled.spec.scaleTargetRef;
    expect((await api.dryRun(scaled)).status).toBe(422);
  }, 60_000);

  it("the objects the Pulumi program creates are the rendered ones, and pass dry-run too", async () => {
    // A configured key, so the Secret's content is known at preview (a generated one is not).
    const run = await runProgram({ tier: "k8s" }, { secrets: { hubApiKey: "k".repeat(48) } });
    const kube = run.resources.filter(
      (r) => r.type.startsWith("kubernetes:") && r.custom && !/helm|yaml|providers/.test(r.type),
    );
    const rendered = render("preset").objects;
    expect(kube.map((r) => `${r.rawInputs.kind}/${(r.rawInputs.metadata as { name: string }).name}`).sort()).toEqual(
      rendered.map(objectKey).sort(),
    );
    const refused: string[] = [];
    for (const r of kube) {
      if (r.rawInputs.kind === "Namespace") continue;
      // Volume ids are the mock cloud's stand-ins; the API server takes any handle.
      const answer = await api.dryRun(r.rawInputs as Record<string, unknown>);
      if (answer.status !== 201) refused.push(`${r.type} ${r.name}: ${answer.status} ${statusMessage(answer)}`);
    }
    expect(refused).toEqual([]);
    // KEDA and Traefik's CRDs come from their releases at deploy time, pinned.
    expect(run.resources.find((r) => r.type === "kubernetes:helm.sh/v3:Release")?.inputs).toMatchObject({
      chart: "keda",
      version: expect.stringMatching(/^\d+\.\d+\.\d+$/),
    });
  }, 180_000);

  it("the GPU StatefulSet's claims are the static ones the program binds to the stack's volumes", () => {
    const { objects } = render("preset");
    const claims = objects.filter(
      (o) =>
        o.kind === "PersistentVolumeClaim" &&
        o.metadata.name.startsWith(`${GPU_WORKLOAD.claim}-${GPU_WORKLOAD.statefulSet}-`),
    );
    const hub = mustLoad({ tier: "k8s" });
    expect(claims.map((c) => c.metadata.name)).toEqual(
      Array.from({ length: hub.settings.gpuMaxNodes }, (_, i) => `model-cache-coder-${i}`),
    );
  });
});
