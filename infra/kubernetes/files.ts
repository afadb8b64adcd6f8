import { bundleController } from "../../programs/autoscaler/controller/bundle";
import { bundleGatekeeper } from "../../programs/gatekeeper/bundle";
import { bundleEmbeddingsFront } from "../../programs/embeddings/bundle";
import { EMBEDDINGS_FILES } from "../../services/embeddings";
import { GATEKEEPER_FILES } from "../../services/auth";
import { AUTOSCALER_FILES, autoscalerConfig, autoscalerRuns } from "../../services/autoscaler";
import { errorsNginxConf, GATEWAY_DIRS, renderYaml } from "../../services/gateway";
import { grafanaFiles } from "../../services/grafana-provisioning";
import {
  alertmanagerConfig,
  alertRules,
  CpuContainer,
  JOBS,
  MONITORING_DIRS,
  MONITORING_FILES,
  prometheusConfig,
} from "../../services/monitoring";
import type { Route } from "../../services/routes";
import type { ServiceSpec } from "../../services/spec";
import { CPU_NODE_NAME, gpuNodeName, type HubConfig } from "../../stacks/hub-config";
import type { ControllerFile } from "../../programs/autoscaler/controller/contract";
import { GPU_SERVICE_PORTS } from "../../services/ports";
import { GPU_NODE_UNNEEDED_TIME, NAMESPACE, NAME_LABEL, secretRef } from "./model";
import { kubernetesTraefikStatic, type TraefikKubernetesRendering } from "./traefik";
import { GPU_WORKLOAD, type KubeFile } from "./workloads";

/**
 * The files the droplet tiers write onto the CPU node (infra/services.ts), for the cluster: the
 * same renderers, with what differs on Kubernetes said here: Traefik's providers, Prometheus
 * finding the GPU replicas through the API instead of file_sd, and the controller in advice mode.
 */

/** Where the droplet tiers write the gateway's files (infra/services.ts GATEWAY_FILES), repeated to keep this module free of Pulumi. */
const GATEWAY_STATIC_FILE = `${GATEWAY_DIRS.static}/traefik.yml`;
const GATEWAY_DYNAMIC_FILE = `${GATEWAY_DIRS.dynamic}/routes.yml`;
const GATEWAY_ERRORS_FILE = `${GATEWAY_DIRS.errors}/default.conf`;

let gatekeeperBundled: string | undefined;
let controllerBundled: string | undefined;
let embeddingsBundled: string | undefined;

/** The Pulumi stack the controller's file names. */
export interface StackIdentity {
  readonly name: string;
  readonly organization: string;
}

/** Secret settings the stack has: each file that needs one exists only then. */
export interface SecretPresence {
  readonly alertSmtpPassword: boolean;
  readonly alertWebhookUrl: boolean;
}

/**
 * prometheus.yml for the cluster: the vLLM replicas are found by pod discovery in the hub's
 * namespace (one target per vLLM port of every coder pod), labelled as the file_sd targets are.
 */
export function kubernetesPrometheusConfig(
  hub: HubConfig,
  cpuContainers: readonly CpuContainer[],
  gpuSpecs: readonly ServiceSpec[],
): Record<string, unknown> {
  const base = prometheusConfig(hub, cpuContainers) as {
    scrape_configs: { job_name: string; file_sd_configs?: unknown }[];
  };
  const ports = gpuSpecs.filter((s) => s.program === "vllm").map((s) => `p-${s.port}`);
  const scrape = base.scrape_configs.flatMap((job) => {
    if (!job.file_sd_configs) return [job];
    if (job.job_name !== JOBS.vllm) return [];
    return [
      {
        job_name: JOBS.vllm,
        kubernetes_sd_configs: [{ role: "pod", namespaces: { names: [NAMESPACE] } }],
        relabel_configs: [
          {
            source_labels: [`__meta_kubernetes_pod_label_${NAME_LABEL.replace(/[./-]/g, "_")}`],
            regex: GPU_WORKLOAD.statefulSet,
            action: "keep",
          },
          {
            source_labels: ["__meta_kubernetes_pod_container_port_name"],
            regex: ports.join("|") || "none",
            action: "keep",
          },
          { source_labels: ["__meta_kubernetes_pod_name"], target_label: "replica" },
          { source_labels: ["__meta_kubernetes_pod_name"], target_label: "node" },
          {
            source_labels: ["__meta_kubernetes_pod_container_name"],
            target_label: "model",
            regex: "coder",
            replacement: "coder",
          },
          {
            source_labels: ["__meta_kubernetes_pod_container_name"],
            target_label: "model",
            regex: "ocr",
            replacement: "deepseek-ocr",
          },
        ],
      },
    ];
  });
  return { ...base, scrape_configs: scrape };
}

/** The headless Service's name for replica `i` of the GPU StatefulSet, as DNS in the namespace has it. */
export const replicaHost = (i: number): string =>
  `${GPU_WORKLOAD.statefulSet}-${i}.${GPU_WORKLOAD.headless}.${NAMESPACE}.svc.cluster.local`;

/**
 * The controller's file on Kubernetes: no dispatch (KEDA and the cluster autoscaler scale), one
 * replica slot per StatefulSet ordinal, counted while its pod exists, so its ledger bills the GPU
 * nodes the cluster runs and its budget ceiling (KEDA's cap) follows the month's spend. An empty
 * node lingers GPU_NODE_UNNEEDED_TIME before the cluster autoscaler removes it: billed, so counted.
 */
export function kubernetesControllerFile(file: ControllerFile, maxNodes: number): ControllerFile {
  const port =
    new URL(file.replicas[0]?.healthUrl ?? `http://x:${GPU_SERVICE_PORTS.coder}/health`).port ||
    String(GPU_SERVICE_PORTS.coder);
  const replicas = Array.from({ length: maxNodes }, (_, i) => ({
    node: gpuNodeName(i),
    metricsUrl: `http://${replicaHost(i)}:${port}/metrics`,
    healthUrl: `http://${replicaHost(i)}:${port}/health`,
  }));
  return {
    ...file,
    tier: "k8s",
    dispatch: null,
    replicas,
    kubernetes: { replicaSlots: true },
    timing: { ...file.timing, destroySeconds: file.timing.destroySeconds + durationSeconds(GPU_NODE_UNNEEDED_TIME) },
  };
}

const durationSeconds = (text: string): number => {
  const m = /^(\d+)(s|m|h)$/.exec(text);
  if (!m) throw new Error(`not a duration: ${text}`);
  return Number(m[1]) * { s: 1, m: 60, h: 3600 }[m[2] as "s" | "m" | "h"];
};

/** Every file of the CPU services, by the host path the droplet tiers use: infra/kubernetes/workloads.ts mounts each directory. */
export function kubernetesFiles(
  hub: HubConfig,
  specs: readonly ServiceSpec[],
  routes: readonly Route[],
  traefik: TraefikKubernetesRendering,
  secrets: SecretPresence,
  gpuAddresses: Readonly<Record<string, string>>,
  stack: StackIdentity,
): KubeFile[] {
  const files: KubeFile[] = [
    { path: GATEWAY_STATIC_FILE, content: renderYaml(kubernetesTraefikStatic(hub)) },
    { path: GATEWAY_DYNAMIC_FILE, content: renderYaml(traefik.fileConfig) },
    { path: GATEWAY_ERRORS_FILE, content: errorsNginxConf(hub, routes) },
    { path: GATEKEEPER_FILES.bundle, content: (gatekeeperBundled ??= bundleGatekeeper()) },
    { path: GATEKEEPER_FILES.keys, content: secretRef("apiKeys") },
    ...(hub.embeddings
      ? [{ path: EMBEDDINGS_FILES.bundle, content: (embeddingsBundled ??= bundleEmbeddingsFront()) }]
      : []),
  ];
  if (autoscalerRuns(hub)) {
    const config = kubernetesControllerFile(
      autoscalerConfig(hub, routes, {
        stack: stack.name,
        organization: stack.organization,
        privateIps: gpuAddresses,
        billingCrossCheck: false,
      }),
      hub.settings.gpuMaxNodes,
    );
    files.push(
      { path: AUTOSCALER_FILES.bundle, content: (controllerBundled ??= bundleController()) },
      { path: AUTOSCALER_FILES.config, content: `${JSON.stringify(config, null, 2)}\n` },
    );
  }
  if (hub.monitoring) {
    const cpuContainers = specs
      .filter((s) => s.node === CPU_NODE_NAME)
      .map((s) => ({ name: s.name, program: s.program, port: s.port }));
    const gpuSpecs = specs.filter((s) => s.node !== CPU_NODE_NAME);
    files.push(
      {
        path: `${MONITORING_DIRS.prometheusConfig}/${MONITORING_FILES.prometheusConfig}`,
        content: renderYaml(kubernetesPrometheusConfig(hub, cpuContainers, gpuSpecs)),
      },
      { path: `${MONITORING_DIRS.prometheusConfig}/${MONITORING_FILES.rules}`, content: renderYaml(alertRules(hub)) },
      {
        path: `${MONITORING_DIRS.alertmanagerConfig}/${MONITORING_FILES.alertmanagerConfig}`,
        content: renderYaml(
          alertmanagerConfig(hub, { webhook: secrets.alertWebhookUrl, smtpPassword: secrets.alertSmtpPassword }),
        ),
      },
    );
    if (specs.some((s) => s.program === "llama.cpp"))
      files.push({
        path: `${MONITORING_DIRS.prometheusSecrets}/${MONITORING_FILES.llamaCppKey}`,
        content: secretRef("hubApiKey"),
      });
    if (secrets.alertSmtpPassword && hub.monitoring.email?.user)
      files.push({
        path: `${MONITORING_DIRS.alertmanagerSecrets}/${MONITORING_FILES.smtpPassword}`,
        content: secretRef("alertSmtpPassword"),
      });
    if (secrets.alertWebhookUrl)
      files.push({
        path: `${MONITORING_DIRS.alertmanagerSecrets}/${MONITORING_FILES.webhookUrl}`,
        content: secretRef("alertWebhookUrl"),
      });
  }
  if (hub.grafana) for (const f of grafanaFiles(hub)) files.push({ path: f.path, content: f.content });
  return files;
}
