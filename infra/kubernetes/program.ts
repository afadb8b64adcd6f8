import * as digitalocean from "@pulumi/digitalocean";
// The modules this program uses, not the package's index: that loads every API group, and helm's
// v3 Chart with glob and js-yaml (about 100 files; 60-90 ms of each k8s plan), for one Release.
import * as apiextensions from "@pulumi/kubernetes/apiextensions";
import * as apps from "@pulumi/kubernetes/apps/v1";
import * as core from "@pulumi/kubernetes/core/v1";
import { Release } from "@pulumi/kubernetes/helm/v3/release";
import { Provider } from "@pulumi/kubernetes/provider";
import * as rbac from "@pulumi/kubernetes/rbac/v1";
import { ConfigFile } from "@pulumi/kubernetes/yaml/v2";
import * as pulumi from "@pulumi/pulumi";
import { createHash } from "node:crypto";
import * as path from "node:path";
import { stringify } from "yaml";
import { CPU_CACHE_MOUNT } from "../../services/node-setup";
import { TRAEFIK_IMAGE } from "../../services/images";
import { KEDA_CHART } from "../../stacks/catalogue/kubernetes";
import type { HubConfig } from "../../stacks/hub-config";
import { recordArtifact, SECRET_PLACEHOLDER } from "../artifacts";
import type { DeployEnvironment } from "../environment";
import type { MonitoringSecrets } from "../monitoring";
import { cloudSlug, hubTags } from "../naming";
import { providerErrorCause } from "../provider-errors";
import { HubStorage } from "../storage";
import type { SecretName } from "../../services/spec";
import { chooseDoksVersion, DoksCluster } from "./cluster";
import { kubernetesManifests } from "./manifests";
import { CLUSTER_SCOPED, fillSecrets, KubeObject, KubeSecretName, NAMESPACE, objectKey } from "./model";
import { GPU_WORKLOAD } from "./workloads";

/**
 * The k8s tier's Pulumi program: the stack's volumes (the same HubStorage every tier declares,
 * so a tier switch keeps them), the DOKS cluster, KEDA and Traefik's CRDs from their pinned
 * releases, then every object infra/kubernetes/manifests.ts renders. Secrets reach the cluster
 * only as Kubernetes Secrets made from Pulumi secrets.
 */

/** Traefik's CRDs, from the release the gateway image runs (the tests install the same file from the module). */
export const TRAEFIK_CRDS_FILE = "docs/content/reference/dynamic-configuration/kubernetes-crd-definition-v1.yml";
export const traefikCrdsUrl = (version: string): string =>
  `https://raw.githubusercontent.com/traefik/traefik/${version}/${TRAEFIK_CRDS_FILE}`;

export interface KubernetesSecrets {
  readonly env: Readonly<Record<SecretName, pulumi.Output<string>>>;
  readonly apiKeys: pulumi.Output<string>;
  readonly alerts: Omit<MonitoringSecrets, "hubApiKey">;
}

type Ctor = new (
  name: string,
  args: Record<string, unknown>,
  opts?: pulumi.CustomResourceOptions,
) => pulumi.CustomResource;
/** The typed class of each kind the tier renders; custom kinds go through CustomResource. */
const KINDS: Readonly<Record<string, Ctor>> = {
  "v1/Namespace": core.Namespace as unknown as Ctor,
  "v1/Secret": core.Secret as unknown as Ctor,
  "v1/ConfigMap": core.ConfigMap as unknown as Ctor,
  "v1/Service": core.Service as unknown as Ctor,
  "v1/ServiceAccount": core.ServiceAccount as unknown as Ctor,
  "v1/PersistentVolume": core.PersistentVolume as unknown as Ctor,
  "v1/PersistentVolumeClaim": core.PersistentVolumeClaim as unknown as Ctor,
  "apps/v1/Deployment": apps.Deployment as unknown as Ctor,
  "apps/v1/StatefulSet": apps.StatefulSet as unknown as Ctor,
  "rbac.authorization.k8s.io/v1/Role": rbac.Role as unknown as Ctor,
  "rbac.authorization.k8s.io/v1/RoleBinding": rbac.RoleBinding as unknown as Ctor,
  "rbac.authorization.k8s.io/v1/ClusterRole": rbac.ClusterRole as unknown as Ctor,
  "rbac.authorization.k8s.io/v1/ClusterRoleBinding": rbac.ClusterRoleBinding as unknown as Ctor,
};

/**
 * A rendered file as the droplet tiers' plan records it (infra/services.ts, infra/monitoring.ts):
 * the same kind and path, by where the droplet tiers write it. Bundles and secrets are not shown.
 */
function fileArtifact(file: string): { kind: string; path: string } | undefined {
  const rel = path.posix.relative(CPU_CACHE_MOUNT, file);
  const base = path.posix.basename(file);
  const table: [RegExp, string, string][] = [
    [/^traefik\/static\//, "traefik-static", `traefik/${base}`],
    [/^traefik\/dynamic\//, "traefik-dynamic", `traefik/dynamic/${base}`],
    [/^traefik\/errors\//, "errors-nginx", `errors/${base}`],
    [/^prometheus\/config\/prometheus\.yml$/, "prometheus-config", `prometheus/${base}`],
    [/^prometheus\/config\//, "prometheus-rules", `prometheus/${base}`],
    [/^alertmanager\/config\//, "alertmanager", `alertmanager/${base}`],
    [/^grafana\//, "grafana", rel],
    [/^autoscaler\/config\//, "autoscaler-config", `autoscaler/${base}`],
  ];
  const hit = table.find(([pattern]) => pattern.test(rel));
  return hit ? { kind: hit[1], path: `cpu/${hit[2]}` } : undefined;
}

/** Pulumi resource names: one per object, stable across runs. */
export const resourceName = (o: KubeObject): string => `k8s-${o.kind.toLowerCase()}-${o.metadata.name}`;

/** Resource options an object needs beyond its provider, each with its reason. */
function optionsFor(o: KubeObject): pulumi.CustomResourceOptions {
  if (o.kind === "PersistentVolume" || o.kind === "PersistentVolumeClaim") {
    // The binding of a kept volume: `pulumi destroy` leaves it (the volume itself is Retain and protected).
    return { retainOnDelete: true };
  }
  if (o.kind === "StatefulSet") {
    // Its claim template cannot change in place (the API refuses it): a new size replaces the
    // StatefulSet, whose claims (and volumes) stay (persistentVolumeClaimRetentionPolicy Retain).
    return { replaceOnChanges: ["spec.volumeClaimTemplates"], deleteBeforeReplace: true };
  }
  return {};
}

export async function kubernetesProgram(
  hub: HubConfig,
  stack: string,
  env: DeployEnvironment,
  secrets: KubernetesSecrets,
): Promise<Record<string, unknown>> {
  const plan = hub.kubernetes;
  if (!plan)
    throw new pulumi.RunError(`stack ${stack}: the k8s tier has no cluster plan (a bug in stacks/kubernetes.ts)`);
  const cloudName = `ih-${cloudSlug(stack)}`;
  const tags = hubTags(stack, hub.tier);

  // The version: the catalogue's DOKS minor as the region offers it now, or the plan says what it assumes.
  let version = plan.release.slug;
  if (env.kubernetesVersions) {
    let offered: readonly string[];
    try {
      offered = await env.kubernetesVersions.offered();
    } catch (err) {
      // As for the droplet tiers' SSH key lookup: the provider's cause, one line, no stack trace.
      throw new pulumi.RunError(
        `stack ${stack}: could not list the DOKS versions ${hub.region} offers (${providerErrorCause(err)}). Check DIGITALOCEAN_TOKEN and the network. Nothing was created or changed.`,
      );
    }
    const choice = chooseDoksVersion(offered);
    if (!choice.ok) throw new pulumi.RunError(`stack ${stack}: ${choice.problem} Nothing was created or changed.`);
    if (choice.note) void pulumi.log.warn(choice.note);
    version = choice.version;
  }

  // Same component, same names as the droplet tiers: a move from hybrid keeps every volume (protected, kept on destroy).
  const storage = new HubStorage("storage", {
    region: hub.region,
    cloudName,
    stackTag: tags.stack,
    modelCacheVolumes: hub.modelCache.volumes,
    modelCacheGiB: hub.modelCache.sizeGiB,
    cpuCacheGiB: hub.cpuNode.cacheGiB,
    stateVolumes: plan.statePvcs,
  });
  const doks = new DoksCluster("cluster", {
    cloudName,
    region: hub.region,
    version,
    plan,
    gpuVendor: hub.gpu?.size.vendor ?? "nvidia",
    tags: [tags.stack, tags.tier],
  });
  const provider = new Provider(
    "cluster",
    { kubeconfig: doks.kubeconfig, enableServerSideApply: true },
    { dependsOn: [doks.gpuPool] },
  );

  const manifests = kubernetesManifests({
    hub,
    secrets: {
      alertSmtpPassword: secrets.alerts.smtpPassword !== undefined,
      alertWebhookUrl: secrets.alerts.webhookUrl !== undefined,
    },
    volumeIds: {
      modelCaches: storage.modelCaches.map((c) => c.volume.id),
      cpuCache: storage.cpuCache.volume.id,
      state: Object.fromEntries(Object.entries(storage.stateVolumes).map(([name, c]) => [name, c.volume.id])),
    },
    stack: { name: stack, organization: pulumi.getOrganization() },
  });

  // Third-party parts by name and pinned version, fetched at deploy time, never copied.
  const keda = new Release(
    "keda",
    {
      chart: KEDA_CHART.chart,
      version: KEDA_CHART.version,
      repositoryOpts: { repo: KEDA_CHART.repo },
      namespace: "keda",
      createNamespace: true,
    },
    { provider },
  );
  const traefikCrds = new ConfigFile("traefik-crds", { file: traefikCrdsUrl(TRAEFIK_IMAGE.tag) }, { provider });

  const secretValue = (name: KubeSecretName): pulumi.Output<string> => {
    if (name === "apiKeys") return secrets.apiKeys;
    // Public (the certificate's digest): a plain annotation, so a renewed certificate shows in the plan.
    if (name === "gatekeeperTlsCertSha256")
      return secrets.env.gatekeeperTlsCert.apply((pem) => createHash("sha256").update(pem).digest("hex"));
    if (name === "alertSmtpPassword" || name === "alertWebhookUrl") {
      const value = name === "alertSmtpPassword" ? secrets.alerts.smtpPassword : secrets.alerts.webhookUrl;
      if (!value) throw new Error(`${name} is referenced but not configured`);
      return pulumi.secret(value);
    }
    return pulumi.secret(secrets.env[name]);
  };

  // The rendered files as the droplet tiers' plan shows them (same kinds and paths), for `npm run plan -- --out` and its readers.
  for (const f of manifests.files) {
    const shown = fileArtifact(f.path);
    if (shown && typeof f.content === "string") recordArtifact({ ...shown, node: "cpu", content: f.content });
  }

  const created = new Map<string, pulumi.CustomResource>();
  const namespace = manifests.objects.find((o) => o.kind === "Namespace");
  for (const o of manifests.objects) {
    const key = `${o.apiVersion}/${o.kind}`;
    const args = fillSecrets(o, secretValue) as Record<string, unknown>;
    const dependsOn: pulumi.Resource[] = [];
    if (!CLUSTER_SCOPED.has(o.kind) && namespace && created.has(objectKey(namespace)))
      dependsOn.push(created.get(objectKey(namespace))!);
    if (o.apiVersion.startsWith("traefik.io/")) dependsOn.push(traefikCrds);
    if (o.apiVersion.startsWith("keda.sh/")) dependsOn.push(keda);
    const opts = { provider, dependsOn, ...optionsFor(o) };
    const Class = KINDS[key];
    const resource = Class
      ? new Class(resourceName(o), args, opts)
      : new apiextensions.CustomResource(resourceName(o), args as apiextensions.CustomResourceArgs, opts);
    created.set(objectKey(o), resource);
    // The object as the plan shows it (--out DIR writes k8s/<kind>-<name>.yaml), secrets masked.
    const shown = fillSecrets(o, () => SECRET_PLACEHOLDER);
    recordArtifact({
      kind: "k8s-object",
      node: "cluster",
      path: `k8s/${o.kind.toLowerCase()}-${o.metadata.name}.yaml`,
      content: pulumi.output(shown as Record<string, unknown>),
      render: (v) => stringify(v, { lineWidth: 0 }),
    });
  }

  const lb = created.get("Service/gateway-public") as core.Service | undefined;
  const address = lb ? lb.status.apply((s) => s?.loadBalancer?.ingress?.[0]?.ip ?? "") : pulumi.output("");

  new digitalocean.Project("project", {
    name: `inference-hub-${cloudSlug(stack)}`,
    description: `Inference hub, stack ${stack} (${hub.tier} tier)`,
    purpose: "Machine learning / AI / Data processing",
    resources: [
      doks.cluster.clusterUrn,
      storage.cpuCache.volume.volumeUrn,
      ...storage.modelCaches.map((c) => c.volume.volumeUrn),
      ...Object.values(storage.stateVolumes).map((c) => c.volume.volumeUrn),
    ],
  });

  const volumeIds: Record<string, pulumi.Output<string>> = { "cpu-cache": storage.cpuCache.volume.id };
  storage.modelCaches.forEach((c, i) => (volumeIds[`model-cache-${i}`] = c.volume.id));
  for (const [name, c] of Object.entries(storage.stateVolumes)) volumeIds[`state-${name}`] = c.volume.id;
  return {
    tier: hub.tier,
    region: hub.region,
    kubernetesVersion: doks.cluster.version,
    namespace: NAMESPACE,
    gpuStatefulSet: GPU_WORKLOAD.statefulSet,
    gatewayAddress: address,
    baseUrl: hub.gateway.domain ? `https://${hub.gateway.domain}/v1` : pulumi.interpolate`http://${address}/v1`,
    kubeconfig: doks.kubeconfig,
    volumeIds,
    hubApiKey: secrets.env.hubApiKey,
    monthlyCostUsd: hub.cost.monthlyUsd,
    hourlyBurnUsd: hub.cost.hourlyNowUsd,
  };
}
